"""Multi-layer perceptron on the flattened input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
from jaxtyping import Array, Float

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
