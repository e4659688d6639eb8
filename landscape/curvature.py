"""Grid-level curvature analysis: extreme Hessian eigenvalues over a loss-surface grid.

Where :mod:`landscape.hessian` probes the Hessian at one point, this module sweeps a
probe over every point of a 1-D or 2-D grid of ``θ + x·dx (+ y·dy)`` with the sweep
engine of :mod:`landscape.surface` (chunked, sharded, streamed and resumable):

  curvature_map   ``λ_max`` and ``λ_min`` at every grid point with their Ritz residuals
                  (Li et al. 2018, Figs. 7–8), each point run to a tolerance
  centre_start    the warm start of a map: the extreme eigenvectors at the centre

``landscape.hessian.curvature_map`` is the same function, under its old name.

Convergence. For a Ritz pair ``(θ, y)`` of the symmetric Hessian ``H`` the residual
``r = ‖H y − θ y‖`` (computed by Lanczos at no extra cost, ``|β_m s_m|``) bounds the
distance from ``θ`` to an eigenvalue of ``H``: ``min_i |λ_i − θ| ≤ r``. A map point is
*converged* when both extremes satisfy ``r ≤ tol·|θ_max|``, i.e. the two eigenvalue
estimates, and so ``|λ_min / λ_max|``, are accurate to about ``tol`` relative to the
spectral radius. The residuals are stored beside the eigenvalues, so a figure or a
metric can use only the points that converged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import PRNGKeyArray

from landscape import _validate, linalg, operators, surface
from landscape.batching import batched_mean
from landscape.grid import EIG_FIELDS, eig_converged as converged  # noqa: F401

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]

__all__ = ["FIELDS", "centre_start", "converged", "curvature_map"]

#: The grid datasets of a curvature map (all under the ``eig_done`` mask of a file).
FIELDS = EIG_FIELDS
#: The weight of the random part of a warm start (the rest: the centre's eigenvectors).
WARM_NOISE = 0.1


def _matvec_at(loss_fn: LossFn, params: PyTree, data: PyTree, batch_size: int | None,
               linearize: bool, operator: str = "hessian") -> Callable[[PyTree], PyTree]:
  """``v -> H(params) v`` of the dataset-mean loss.

  ``linearize``: the gradient is linearized once at ``params`` (``jax.linearize``: one
  forward and backward pass whose intermediates are kept), so each further product
  costs one tangent pass instead of a forward-over-reverse pass from scratch; the
  intermediates of all batches stay in memory for the point's Lanczos run. Other
  operators (:mod:`landscape.operators`) are linearized in ``v`` at 0 instead.
  """
  if operator != "hessian":
    product = functools.partial(
        operators.matvec_fn(loss_fn, data, operator=operator, batch_size=batch_size), params)
    if linearize:
      return jax.linearize(product, jax.tree.map(jnp.zeros_like, params))[1]
    return product
  grad_fn = jax.grad(loss_fn)
  if linearize:
    def mean_grad(p):
      return batched_mean(lambda b: grad_fn(p, b), data, batch_size)
    return jax.linearize(mean_grad, params)[1]

  def matvec(v):
    return batched_mean(lambda b: jax.jvp(lambda p: grad_fn(p, b), (params,), (v,))[1],
                        data, batch_size)
  return matvec


def _extremes(matvec, v0, num_steps: int, tol: float | None) -> dict[str, jax.Array]:
  n, (hi, lo) = linalg.extreme_eigenpairs(matvec, v0, 0.0 if tol is None else tol, k=1,
                                          which="both", num_steps=num_steps,
                                          relative_to="radius")
  return {"max_eig": hi.values[0], "min_eig": lo.values[0],
          "max_eig_residual": hi.residuals[0], "min_eig_residual": lo.residuals[0],
          "eig_steps": n.astype(hi.values.dtype)}


def centre_start(loss_fn: LossFn, params: PyTree, data: PyTree = None, *, key: PRNGKeyArray,
                 num_steps: int, tol: float | None = None, batch_size: int | None = None,
                 linearize: bool = True, operator: str = "hessian"
                 ) -> tuple[PyTree, dict[str, float]]:
  """The warm start of a curvature map: ``(v0, centre)``.

  The extreme eigenvectors ``u_max``, ``u_min`` at the centre are found by Lanczos (to
  ``tol``, at most ``num_steps`` steps); ``v0 = u_max + u_min + 0.1·g/‖g‖·√2`` with ``g``
  Gaussian drawn with ``key``. Along a smooth surface the extreme eigenvectors of nearby
  points are close to the centre's, so Lanczos from ``v0`` resolves both ends of their
  spectra in fewer steps than from a random vector; the random part keeps every
  eigendirection present. ``centre`` holds the centre's eigenvalues, residuals and steps.
  """
  matvec = _matvec_at(loss_fn, params, data, batch_size, linearize, operator)
  n, (hi, lo) = linalg.extreme_eigenpairs(
      matvec, linalg.random_tree(key, params), 0.0 if tol is None else tol, k=1, which="both",
      num_steps=min(num_steps, linalg.num_params(params)), return_vectors=True,
      relative_to="radius")
  first = lambda tree: jax.tree.map(lambda v: v[0], tree)  # noqa: E731
  noise = linalg.random_tree(jax.random.fold_in(key, 1), params)
  noise = optax.tree.scale(WARM_NOISE * np.sqrt(2.0) / optax.tree.norm(noise), noise)
  v0 = optax.tree.add(optax.tree.add(first(hi.vectors), first(lo.vectors)), noise)
  centre = {"max_eig": float(hi.values[0]), "min_eig": float(lo.values[0]),
            "max_eig_residual": float(hi.residuals[0]),
            "min_eig_residual": float(lo.residuals[0]), "eig_steps": int(n)}
  return v0, centre


def curvature_map(loss_fn: LossFn, params: PyTree, directions: Sequence[PyTree], xs, ys=None,
                  data: PyTree = None, *, key: PRNGKeyArray, num_steps: int = 16,
                  tol: float | None = None, warm_start: bool = False, linearize: bool = True,
                  batch_size: int | None = None, chunk_size: int | None = None,
                  point_mode: str = "auto", done: np.ndarray | None = None,
                  on_chunk: Callable | None = None, progress: bool | None = None,
                  operator: str = "hessian"):
  """Extreme Hessian eigenvalues at every point of a grid (Li et al. 2018, Figs. 7–8).

  At each point ``θ + xs[i]·dx (+ ys[j]·dy)`` a Lanczos run on the full-dataset Hessian
  estimates ``max_eig = λ_max`` and ``min_eig = λ_min``; ``|min_eig / max_eig|`` small
  means locally convex, large means strong negative curvature. With ``tol`` each point
  stops once both Ritz residuals are ``≤ tol·|λ_max|`` (at most ``num_steps`` steps);
  without, every point runs ``num_steps`` steps. The residuals and the steps run are
  returned beside the eigenvalues (:data:`FIELDS`); :func:`converged` says which points
  met the tolerance (:func:`landscape.grid.eig_converged`). The points are evaluated by the sweep engine of
  :mod:`landscape.surface` — chunks of points vmapped (``lax.map``-ed with
  convolutions), sharded over devices, streamed to ``on_chunk`` (resumable with
  ``done``) — each point seeing the whole dataset.

  Every point starts Lanczos from the same vector: a Gaussian drawn with ``key``, or with
  ``warm_start`` the centre's extreme eigenvectors plus noise (:func:`centre_start`), so a
  map is reproducible and a resumed map equals an uninterrupted one.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss over ``batch``.
    params: the centre θ; directions: ``(dx,)`` or ``(dx, dy)``.
    xs, ys: grid coordinates (``ys=None`` for 1-D).
    data: pytree with a leading sample axis, or ``None``.
    key: PRNG key of the Lanczos start vector.
    num_steps: Lanczos steps (= HVPs) per point, the cap when ``tol`` is given.
    tol: residual tolerance relative to ``|λ_max|`` (e.g. ``1e-2``), or ``None``.
    warm_start: start every point from the centre's extreme eigenvectors.
    linearize: linearize the gradient once per point (faster HVPs, more memory).
    batch_size: data samples per batch inside each HVP.
    chunk_size, point_mode, done, on_chunk, progress: as :func:`landscape.surface.sweep`
      (``"auto"``: ``map`` with convolutions, else ``vmap``).
    operator: the curvature matrix (:mod:`landscape.operators`), e.g. ``"ggn"``.

  Returns:
    A :class:`landscape.surface.Surface` with the :data:`FIELDS` of the grid's shape.

  Example:
    >>> cmap = curvature_map(loss_fn, params, (dx, dy), xs, ys, (x, y), key=key, tol=1e-2,
    ...                      num_steps=60, warm_start=True)
    >>> ok = converged(cmap.values, 1e-2)
    >>> ratio = np.where(ok, np.abs(cmap.values["min_eig"] / cmap.values["max_eig"]), np.nan)

  References:
    Li, Xu, Taylor, Studer & Goldstein, "Visualizing the loss landscape of neural
    nets", NeurIPS 2018.
    Parlett, "The Symmetric Eigenvalue Problem", SIAM 1998, §11.5 (residual bounds).
  """
  _validate.loss_callable(loss_fn)
  operators.require_split(loss_fn, operator)
  _validate.prng_key(key)
  num_steps = _validate.integer("num_steps", num_steps, low=1, fix="pass num_steps >= 1, e.g. 16")
  tol = _validate.positive("tol", tol, optional=True, upper=1.0, fix="pass e.g. tol=1e-2")
  _validate.param_tree(params)
  steps = min(num_steps, linalg.num_params(params))
  if warm_start:
    v0, _ = centre_start(loss_fn, params, data, key=key, num_steps=steps, tol=tol,
                         batch_size=batch_size, linearize=linearize, operator=operator)
  else:
    v0 = linalg.random_tree(key, params)
  if point_mode == "auto":
    probe = None if data is None else jax.tree.map(lambda a: a[:1], data)
    point_mode = "map" if surface.has_convolution(loss_fn, params, probe) else "vmap"

  def point_fn(coeffs, data_):
    p = surface.shift(params, directions, coeffs)
    return _extremes(_matvec_at(loss_fn, p, data_, batch_size, linearize, operator), v0, steps,
                     tol)

  return surface.sweep(point_fn, xs, ys, data, batch_size=batch_size, chunk_size=chunk_size,
                       point_mode=point_mode, done=done, on_chunk=on_chunk,
                       dtype=linalg.tree_dtype(params), reduce=False, progress=progress,
                       desc="curvature map")
