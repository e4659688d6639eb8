"""Hessian probes of a dataset-mean loss: HVP, Lanczos spectra, trace, density, curvature maps.

Every probe sees the Hessian as an operator ``v -> H v`` on parameter pytrees
(forward-over-reverse, never formed), of the mean loss over *all* samples of
``data`` (DESIGN §3), accumulated batch by batch inside one compiled function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from landscape._batching import batched_mean

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]


def hvp(loss_fn: LossFn, params: PyTree, v: PyTree, data: PyTree = None, *,
        batch_size: int | None = None) -> PyTree:
  """Hessian-vector product of the dataset-mean loss, forward-over-reverse.

  Computes ``H v`` with ``H = ∇²_θ (1/N) Σ_i ℓ(θ; z_i)`` as
  ``jvp(grad(loss_fn), (θ,), (v,))`` per batch, weighted by batch size, so the
  result is that of the full-dataset mean (not the sum over batches).

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``, the mean loss over ``batch``.
    params: parameter pytree θ.
    v: pytree with the structure, shapes and dtypes of ``params``.
    data: pytree of arrays with a leading sample axis, or ``None``.
    batch_size: samples per batch inside the computation (``None``: all at once).

  Returns:
    ``H v`` as a pytree like ``params``.

  Example:
    >>> hv = hvp(lambda p, _: (p ** 4).sum(), jnp.ones(3), jnp.ones(3))  # 12 * ones

  References:
    Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 1994.
  """
  return hvp_fn(loss_fn, data, batch_size=batch_size)(params, v)


def hvp_fn(loss_fn: LossFn, data: PyTree = None, *,
           batch_size: int | None = None) -> Callable[[PyTree, PyTree], PyTree]:
  """``(params, v) -> H(params) v`` for the dataset-mean loss; traceable (jit/vmap-safe)."""
  grad_fn = jax.grad(loss_fn)

  def matvec(params: PyTree, v: PyTree) -> PyTree:
    def batch_hvp(batch):
      return jax.jvp(lambda p: grad_fn(p, batch), (params,), (v,))[1]
    return batched_mean(batch_hvp, data, batch_size)

  return matvec
