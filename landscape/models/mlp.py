"""Multi-layer perceptron on the flattened input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
from jaxtyping import Array, Float

from landscape.errors import ConfigError
from landscape.models import _common


class MLP(nn.Module):
  """A fully connected network ``x -> Dense(w1) -> act -> ... -> Dense(wL) -> act -> Dense(k)``.

  With ``h_0 = flatten(x)``, ``h_l = σ(h_{l-1} W_l + b_l)`` for the hidden widths and
  ``f(x) = h_L W_out + b_out``. ``stem`` is the pre-activation ``h_0 W_1 + b_1`` (linear in
  ``(W_1, b_1)``); ``head`` applies ``σ`` and the remaining layers. With ``widths=()`` the
  MLP is the linear model (``head`` is then the identity).

  Attributes:
    num_outputs: output dimension ``k``.
    widths: hidden layer widths ``(w1, ..., wL)``.
    activation: one of relu, tanh, gelu, sigmoid, elu, softplus, leaky_relu.

  Example:
    >>> m = MLP(num_outputs=10, widths=(64, 64))
    >>> variables = m.init(key, jnp.zeros((2, 64)))
    >>> logits = m.apply(variables, x)                        # (n, 10)

  References:
    Rumelhart, Hinton, Williams, "Learning representations by back-propagating errors",
    Nature, 1986.
  """
  num_outputs: int
  widths: Sequence[int] = (64, 64)
  activation: str = "relu"

  STEM_KEYS: ClassVar[tuple[str, ...]] = ("stem_dense",)

  def setup(self):
    sizes = (*self.widths, self.num_outputs)
    self.stem_dense = nn.Dense(sizes[0])
    self.dense = [nn.Dense(s) for s in sizes[1:]]

  def stem(self, x: Float[Array, "n ..."]) -> Float[Array, "n w1"]:
    """The first layer's pre-activation ``flatten(x) W_1 + b_1``."""
    _common.check_ndim("mlp", x, range(2, 65), "(n, ...) with a leading sample axis")
    return self.stem_dense(_common.flatten(x))

  def head(self, z: Float[Array, "n w1"], train: bool = False) -> Float[Array, "n k"]:
    """Everything after the first layer: ``σ``, the hidden layers, the output layer."""
    del train
    act = _common.activation(self.activation)
    for layer in self.dense:
      z = layer(act(z))
    return z

  def __call__(self, x: Float[Array, "n ..."], train: bool = False) -> Float[Array, "n k"]:
    return self.head(self.stem(x), train)


def mlp(*, num_outputs: int, widths: Sequence[int] = (64, 64), activation: str = "relu") -> MLP:
  """Build :class:`MLP` after checking its arguments (ConfigError on a bad one)."""
  _common.activation(activation)
  return MLP(num_outputs=_common.positive_int("mlp", "num_outputs", num_outputs),
             widths=_common.positive_ints("mlp", "widths", widths, allow_empty=True),
             activation=activation)


class _DenseBlock(nn.Module):
  """``σ(BN(Dense(σ(BN(Dense(h))))) + h)``: a ResNet basic block with Dense layers."""
  features: int
  skip: bool
  batchnorm: bool
  activation: str

  @nn.compact
  def __call__(self, h: jax.Array, train: bool) -> jax.Array:
    act = _common.activation(self.activation)

    def dense(y, name):
      return nn.Dense(self.features, use_bias=not self.batchnorm,
                      kernel_init=_common.HE_NORMAL, name=name)(y)

    def bn(y, name):
      if not self.batchnorm:
        return y
      return nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)(y)

    y = act(bn(dense(h, "dense1"), "bn1"))
    y = bn(dense(y, "dense2"), "bn2")
    return act(y + h if self.skip else y)


class ResMLP(nn.Module):
  """A deep fully connected ResNet of depth ``2n + 2``; ``skip=False`` drops the shortcuts.

  ``h_0 = σ(BN(flatten(x) W_0))``, then ``n`` basic blocks of two Dense layers of the same
  width, ``h_l = σ(BN(σ(BN(h_{l−1} W_{l,1})) W_{l,2}) + h_{l−1})`` (without the ``+ h_{l−1}``
  when ``skip=False``), then ``f(x) = h_n W_out + b_out``: the block of He et al. (2016) and
  Li et al.'s "noshort" ablation (2018, §5) with Dense layers for convolutions, so that a
  deep network with and without skip connections fits a CPU (e.g. on MNIST-1D signals).
  He-normal initialization; with BatchNorm the hidden Dense layers have no bias.

  Attributes:
    num_outputs: number of outputs ``k``.
    depth: ``2n + 2`` with ``n >= 1`` (20, 56, 110 as for the CIFAR ResNets).
    width: hidden width.
    skip: keep the identity shortcuts.
    batchnorm: BatchNorm after every hidden Dense layer.
    activation: one of relu, tanh, gelu, sigmoid, elu, softplus, leaky_relu.

  Example:
    >>> m = ResMLP(num_outputs=10, depth=56, width=32, skip=False)
    >>> variables = m.init(key, jnp.zeros((2, 40)))           # 'params', 'batch_stats'

  References:
    He, Zhang, Ren, Sun, "Deep residual learning for image recognition", CVPR 2016.
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the loss landscape of neural nets",
    NeurIPS 2018.
  """
  num_outputs: int
  depth: int = 20
  width: int = 32
  skip: bool = True
  batchnorm: bool = True
  activation: str = "relu"

  STEM_KEYS: ClassVar[tuple[str, ...]] = ("stem_dense",)

  def setup(self):
    if (isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 4
        or self.depth % 2):
      raise ConfigError(f"resmlp: depth must be 2n+2 with n >= 1 (e.g. 20, 56), got "
                        f"{self.depth!r}")
    self.stem_dense = nn.Dense(self.width, use_bias=not self.batchnorm,
                               kernel_init=_common.HE_NORMAL)
    if self.batchnorm:
      self.stem_bn = nn.BatchNorm(momentum=0.9)
    self.blocks = [_DenseBlock(self.width, self.skip, self.batchnorm, self.activation)
                   for _ in range((self.depth - 2) // 2)]
    self.out = nn.Dense(self.num_outputs)

  def stem(self, x: Float[Array, "n ..."]) -> Float[Array, "n width"]:
    """The first Dense layer (pre-BatchNorm)."""
    _common.check_ndim("resmlp", x, range(2, 65), "(n, ...) with a leading sample axis")
    return self.stem_dense(_common.flatten(x))

  def head(self, z: Float[Array, "n width"], train: bool = False) -> Float[Array, "n k"]:
    """Everything after the first Dense layer."""
    if self.batchnorm:
      z = self.stem_bn(z, use_running_average=not train)
    z = _common.activation(self.activation)(z)
    for block in self.blocks:
      z = block(z, train)
    return self.out(z)

  def __call__(self, x: Float[Array, "n ..."], train: bool = False) -> Float[Array, "n k"]:
    return self.head(self.stem(x), train)


def resmlp(*, num_outputs: int, depth: int = 20, width: int = 32, skip: bool = True,
           batchnorm: bool = True, activation: str = "relu") -> ResMLP:
  """Build :class:`ResMLP` after checking its arguments (ConfigError on a bad one)."""
  _common.activation(activation)
  depth = _common.positive_int("resmlp", "depth", depth)
  if depth < 4 or depth % 2:
    raise ConfigError(f"resmlp: depth must be 2n+2 with n >= 1 (e.g. 20, 56), got {depth}")
  return ResMLP(num_outputs=_common.positive_int("resmlp", "num_outputs", num_outputs),
                depth=depth, width=_common.positive_int("resmlp", "width", width),
                skip=_common.boolean("resmlp", "skip", skip),
                batchnorm=_common.boolean("resmlp", "batchnorm", batchnorm),
                activation=activation)
