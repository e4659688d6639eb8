"""A small convolutional network for digits, MNIST-1D signals and CIFAR-sized images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
from jaxtyping import Array, Float

from landscape.models import _common


class CNN(nn.Module):
  """Stages of ``conv(k, SAME) -> act -> [BatchNorm] -> maxpool(2)``, then a 2-layer classifier.

  For stage ``s`` with ``c_s`` filters, ``h_s = pool(BN(σ(conv(h_{s-1}; K_s) + b_s)))``; then
  ``f(x) = σ(flatten(h_S) W_1 + b_1) W_2 + b_2`` with ``W_1`` of width ``dense``. Pooling
  halves every spatial axis of length >= 2 and is skipped once all are 1, so the same
  network runs on 8x8 digits, 32x32 CIFAR images and 1-D signals. Inputs are channels-last:
  ``(n, H, W, C)`` (2-D convolutions), ``(n, L, C)`` or ``(n, L)`` (1-D convolutions; a
  missing channel axis is added). BatchNorm (``batchnorm=True``) uses batch statistics when
  ``train`` and the running averages (momentum 0.9, collection ``batch_stats``) otherwise.

  ``stem`` is the first convolution, ``conv(x; K_1) + b_1`` (linear in ``(K_1, b_1)``);
  ``head`` is everything after it.

  Attributes:
    num_outputs: output dimension ``k``.
    features: filters per stage ``(c_1, ..., c_S)``.
    kernel_size: side of the (square / cubic) convolution kernels.
    dense: width of the hidden Dense layer.
    batchnorm: add BatchNorm after each convolution's activation.
    activation: one of relu, tanh, gelu, sigmoid, elu, softplus, leaky_relu.

  Example:
    >>> m = CNN(num_outputs=10)
    >>> variables = m.init(key, jnp.zeros((2, 8, 8, 1)))
    >>> logits = m.apply(variables, x)                        # (n, 10)

  References:
    LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document
    recognition", Proc. IEEE, 1998.
    Ioffe, Szegedy, "Batch normalization", ICML 2015.
  """
  num_outputs: int
  features: Sequence[int] = (16, 32, 64)
  kernel_size: int = 3
  dense: int = 128
  batchnorm: bool = False
  activation: str = "relu"

  STEM_KEYS: ClassVar[tuple[str, ...]] = ("stem_conv",)

  def setup(self):
    self.stem_conv = _common.ConvND(self.features[0], self.kernel_size)
    self.conv = [_common.ConvND(f, self.kernel_size) for f in self.features[1:]]
    if self.batchnorm:
      self.bn = [nn.BatchNorm(momentum=0.9) for _ in self.features]
    self.hidden = nn.Dense(self.dense)
    self.out = nn.Dense(self.num_outputs)

  def stem(self, x: Float[Array, "n *spatial"]) -> Float[Array, "n *spatial c1"]:
    """The first convolution ``conv(x; K_1) + b_1`` (pre-activation)."""
    _common.check_ndim("cnn", x, (2, 3, 4), "(n, H, W, C), (n, L, C) or (n, L)")
    if x.ndim == 2:
      x = x[..., None]
    return self.stem_conv(x)

  def head(self, z: Float[Array, "n *spatial c1"], train: bool = False) -> Float[Array, "n k"]:
    """Everything after the first convolution."""
    act = _common.activation(self.activation)
    convs = [None, *self.conv]
    for s, conv in enumerate(convs):
      if conv is not None:
        z = conv(z)
      z = act(z)
      if self.batchnorm:
        z = self.bn[s](z, use_running_average=not train)
      z = _common.max_pool2(z)
    z = act(self.hidden(_common.flatten(z)))
    return self.out(z)

  def __call__(self, x: Float[Array, "n *spatial"], train: bool = False) -> Float[Array, "n k"]:
    return self.head(self.stem(x), train)


def cnn(*, num_outputs: int, features: Sequence[int] = (16, 32, 64), kernel_size: int = 3,
        dense: int = 128, batchnorm: bool = False, activation: str = "relu") -> CNN:
  """Build :class:`CNN` after checking its arguments (ConfigError on a bad one)."""
  _common.activation(activation)
  return CNN(num_outputs=_common.positive_int("cnn", "num_outputs", num_outputs),
             features=_common.positive_ints("cnn", "features", features, allow_empty=False),
             kernel_size=_common.positive_int("cnn", "kernel_size", kernel_size),
             dense=_common.positive_int("cnn", "dense", dense),
             batchnorm=_common.boolean("cnn", "batchnorm", batchnorm),
             activation=activation)
