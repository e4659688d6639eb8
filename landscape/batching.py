"""Full-dataset means computed in batches inside one compiled function.

Every probe of landscape (loss, metrics, gradient, Hessian-vector product) is the
mean over *all* samples of ``data``. With ``N`` samples and batch size ``B`` the
data split into ``m = N // B`` full batches and a remainder of ``r = N - mB``:

  mean = (B * sum_b f(batch_b) + r * f(remainder)) / N,

where ``f(batch)`` is itself the mean over the batch. Full batches run in a
``lax.scan`` (compiled once; unrolled on CPU for up to :data:`CPU_UNROLL` batches, where
XLA runs convolution gradients inside loops through a naive kernel); the remainder is a
second, smaller call inside the same trace. The result equals the unbatched mean exactly, up to float rounding,
with no padding and no masking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.extend import core as jax_extend_core

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


#: On CPU, up to this many full batches are unrolled instead of looped (see :func:`_unroll`).
CPU_UNROLL = 8


def has_convolution(jaxpr: Any) -> bool:
  """Whether a (closed) jaxpr contains a convolution, at any depth."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      return True
    if any(has_convolution(sub) for sub in _sub_jaxprs(eqn.params)):
      return True
  return False


def _sub_jaxprs(params):
  """The jaxprs nested in an equation's parameters (jit, scan, cond, custom_vjp, ...)."""
  if hasattr(jax_extend_core, "jaxprs_in_params"):
    yield from jax_extend_core.jaxprs_in_params(params)
    return
  for v in params.values():
    vals = v if isinstance(v, (list, tuple)) else (v,)
    for x in vals:
      if hasattr(x, "jaxpr") and hasattr(x.jaxpr, "eqns"):
        yield x.jaxpr
      elif hasattr(x, "eqns"):
        yield x


def _unroll(num_full: int, jaxpr: Any) -> int | bool:
  """``lax.scan``'s ``unroll``: on CPU the whole loop over a few batches of a function
  with convolutions, else none.

  XLA's CPU backend compiles a convolution's gradients inside a loop without the
  rewriting it applies at top level and runs them through a naive kernel: an HVP of the
  digits CNN over 4 batches of 256 took 537 ms in a ``scan`` and 28 ms unrolled (jax
  0.10.2, 2-core AMD EPYC; the same on jax 0.12). Unrolling costs compile time in
  proportion to the batches, so only a few are unrolled, only where a convolution is
  inside; accelerators keep the loop.
  """
  if num_full <= CPU_UNROLL and jax.default_backend() == "cpu" and has_convolution(jaxpr):
    return True
  return 1


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
  full, tail = split_batches(data, batch_size)
  return mean_of_batches(fn, full, batch_size, tail_fn=fn, tail=tail, num_samples_=n)


def split_batches(data: PyTree, batch_size: int) -> tuple[PyTree, PyTree | None]:
  """``(full, tail)``: the ``N // B`` full batches stacked on a new leading axis, and the
  remaining ``N mod B`` samples (``None`` if none)."""
  n = num_samples(data)
  num_full = n // batch_size
  full = jax.tree.map(
      lambda a: a[:num_full * batch_size].reshape(num_full, batch_size, *a.shape[1:]), data)
  tail = jax.tree.map(lambda a: a[num_full * batch_size:], data) if n % batch_size else None
  return full, tail


def mean_of_batches(fn: Callable[[PyTree], PyTree], full: PyTree, batch_size: int, *,
                    tail_fn: Callable[[PyTree], PyTree] | None = None, tail: PyTree = None,
                    num_samples_: int) -> PyTree:
  """``(B Σ_b fn(full[b]) + r·tail_fn(tail)) / N``: the sample-weighted mean of per-batch means.

  ``full`` holds the full batches (or anything computed from them, e.g. a sweep's
  prepared first layer) stacked on a leading axis of ``m`` entries, each a batch of
  ``batch_size`` samples; ``tail`` the remaining ``r = N − m·B`` samples (``None`` when
  ``r = 0``), evaluated by ``tail_fn``.
  """
  num_full = jax.tree.leaves(full)[0].shape[0]
  rem = num_samples_ - num_full * batch_size

  def body(total, batch):
    return optax.tree.add(total, fn(batch)), None

  first = jax.tree.map(lambda a: a[0], full)
  jaxpr, shapes = jax.make_jaxpr(fn, return_shape=True)(first)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  total, _ = jax.lax.scan(body, zeros, full, unroll=_unroll(num_full, jaxpr))
  total = optax.tree.scale(float(batch_size), total)
  if rem:
    total = optax.tree.add(total, optax.tree.scale(float(rem), tail_fn(tail)))
  return optax.tree.scale(1.0 / num_samples_, total)
