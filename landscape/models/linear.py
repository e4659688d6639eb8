"""Linear (and logistic / softmax) regression: one Dense layer on the flattened input."""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
from jaxtyping import Array, Float

from landscape.models import _common


class Linear(nn.Module):
  """``f(x) = flatten(x) W + b``: linear regression, or logistic/softmax regression under CE.

  The whole model is its own first layer, so ``stem`` is the model and ``head`` the
  identity; the loss is then convex in ``(W, b)`` for squared error and cross-entropy,
  a useful sanity case for Hessian probes (PSD Hessian, a single minimum).

  Attributes:
    num_outputs: output dimension ``k`` (1 for regression, the class count otherwise).

  Example:
    >>> m = Linear(num_outputs=10)
    >>> variables = m.init(key, jnp.zeros((2, 8, 8, 1)))      # W: (64, 10), b: (10,)

  References:
    Hastie, Tibshirani, Friedman, "The Elements of Statistical Learning", Springer, 2009.
  """
  num_outputs: int

  STEM_KEYS: ClassVar[tuple[str, ...]] = ("stem_dense",)

  def setup(self):
    self.stem_dense = nn.Dense(self.num_outputs)

  def stem(self, x: Float[Array, "n ..."]) -> Float[Array, "n k"]:
    """The first (and only) layer, ``flatten(x) W + b``: linear in ``(W, b)`` jointly."""
    _common.check_ndim("linear", x, range(2, 65), "(n, ...) with a leading sample axis")
    return self.stem_dense(_common.flatten(x))

  def head(self, z: Float[Array, "n k"], train: bool = False) -> Float[Array, "n k"]:
    """The identity: nothing follows the first layer."""
    del train
    return z

  def __call__(self, x: Float[Array, "n ..."], train: bool = False) -> Float[Array, "n k"]:
    return self.head(self.stem(x), train)


def linear(*, num_outputs: int) -> Linear:
  """Build :class:`Linear` after checking its arguments (ConfigError on a bad one)."""
  return Linear(num_outputs=_common.positive_int("linear", "num_outputs", num_outputs))
