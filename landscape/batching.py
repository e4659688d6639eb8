"""Full-dataset means computed in batches inside one compiled function.

Every probe of landscape (loss, metrics, gradient, Hessian-vector product) is the
mean over *all* samples of ``data``. With ``N`` samples and batch size ``B`` the
data split into ``m = N // B`` full batches and a remainder of ``r = N - mB``:

  mean = (B * sum_b f(batch_b) + r * f(remainder)) / N,

where ``f(batch)`` is itself the mean over the batch. Full batches run in a
``lax.scan`` (compiled once); the remainder is a second, smaller call inside the
same trace. The result equals the unbatched mean exactly, up to float rounding,
with no padding and no masking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from landscape import _validate
from landscape.errors import DataError

PyTree = Any


def num_samples(data: PyTree) -> int:
  """The common leading (sample) axis length of the leaves of ``data``."""
  leaves = jax.tree.leaves(data)
  if not leaves:
    raise DataError("data has no arrays; pass a pytree of arrays with a leading sample axis, or None")
  sizes = {int(jnp.shape(leaf)[0]) if jnp.ndim(leaf) else -1 for leaf in leaves}
  if len(sizes) != 1 or -1 in sizes:
    raise DataError(
        f"data leaves must share a leading sample axis; got leading sizes {sorted(sizes)} "
        "(pass e.g. (x, y) with x.shape[0] == y.shape[0])")
  n = sizes.pop()
  if n == 0:
    raise DataError("data has 0 samples: every mean over it would be NaN; pass at least one "
                    "sample (check the dataset split and n_train/n_test)")
  return n


def check_batch_size(batch_size: int | None) -> None:
  """Refuse a ``batch_size`` that is not a positive integer or ``None`` (a bad argument)."""
  if batch_size is not None:
    _validate.integer("batch_size", batch_size, low=1,
                      fix="pass a positive integer, or None for the whole dataset at once")


def batched_mean(fn: Callable[[PyTree], PyTree], data: PyTree,
                 batch_size: int | None = None) -> PyTree:
  """Sample-weighted mean of ``fn`` over the batches of ``data``.

  Args:
    fn: ``fn(batch) -> pytree``, the mean of some quantity over ``batch``.
    data: a pytree of arrays with a common leading sample axis, or ``None``
      (then ``fn(None)`` is returned).
    batch_size: samples per batch; ``None`` evaluates the whole of ``data`` at once.

  Returns:
    The pytree ``sum_b n_b fn(batch_b) / N`` (same structure as ``fn``'s output).
  """
  check_batch_size(batch_size)
  if data is None:
    return fn(None)
  n = num_samples(data)
  if batch_size is None or batch_size >= n:
    return fn(data)
  num_full, rem = divmod(n, batch_size)
  full = jax.tree.map(
      lambda a: a[:num_full * batch_size].reshape(num_full, batch_size, *a.shape[1:]), data)

  def body(total, batch):
    return optax.tree.add(total, fn(batch)), None

  first = jax.tree.map(lambda a: a[0], full)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(fn, first))
  total, _ = jax.lax.scan(body, zeros, full)
  total = optax.tree.scale(float(batch_size), total)
  if rem:
    tail = jax.tree.map(lambda a: a[num_full * batch_size:], data)
    total = optax.tree.add(total, optax.tree.scale(float(rem), fn(tail)))
  return optax.tree.scale(1.0 / n, total)
