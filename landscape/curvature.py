"""Grid-level curvature analysis: extreme Hessian eigenvalues over a loss-surface grid.

Where :mod:`landscape.hessian` probes the Hessian at one point, this module sweeps a
probe over every point of a 1-D or 2-D grid of ``θ + x·dx (+ y·dy)`` with the sweep
engine of :mod:`landscape.surface` (chunked, sharded, streamed and resumable):

  curvature_map   ``λ_max`` and ``λ_min`` at every grid point (Li et al. 2018, Figs. 7–8)

``landscape.hessian.curvature_map`` is the same function, under its old name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jaxtyping import PRNGKeyArray

from landscape import _validate, surface
from landscape.hessian import extreme_eigenvalues_fn
from landscape.linalg import tree_dtype

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]

__all__ = ["curvature_map"]


def curvature_map(loss_fn: LossFn, params: PyTree, directions: Sequence[PyTree], xs, ys=None,
                  data: PyTree = None, *, key: PRNGKeyArray, num_steps: int = 16,
                  batch_size: int | None = None, chunk_size: int | None = None,
                  point_mode: str = "auto", done: np.ndarray | None = None,
                  on_chunk: Callable | None = None, progress: bool | None = None):
  """Extreme Hessian eigenvalues at every point of a grid (Li et al. 2018, Figs. 7–8).

  At each point ``θ + xs[i]·dx (+ ys[j]·dy)`` one Lanczos run of ``num_steps`` HVPs
  on the full-dataset Hessian (:func:`landscape.hessian.extreme_eigenvalues_fn`) estimates
  ``max_eig = λ_max`` and ``min_eig = λ_min``; ``|min_eig / max_eig|`` small means
  locally convex, large means strong negative curvature. The points are evaluated
  by the sweep engine of :mod:`landscape.surface` — chunks of points vmapped or
  ``lax.map``-ed, sharded over devices, streamed to ``on_chunk`` (resumable with
  ``done``) — each point seeing the whole dataset (the Lanczos run does its own
  batching, since eigenvalues are not means of per-batch values). Every point
  starts Lanczos from the same random vector drawn with ``key``, so a map is
  reproducible and a resumed map equals an uninterrupted one.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss over ``batch``.
    params: the centre θ; directions: ``(dx,)`` or ``(dx, dy)``.
    xs, ys: grid coordinates (``ys=None`` for 1-D).
    data: pytree with a leading sample axis, or ``None``.
    key: PRNG key of the Lanczos start vector.
    num_steps: Lanczos steps (= HVPs) per point.
    batch_size: data samples per batch inside each HVP.
    chunk_size, point_mode, done, on_chunk, progress: as :func:`landscape.surface.sweep`
      (the progress of a map is its rows; the Lanczos runs inside report nothing).

  Returns:
    A :class:`landscape.surface.Surface` with ``values["max_eig"]`` and
    ``values["min_eig"]`` of the grid's shape.

  Example:
    >>> cmap = curvature_map(loss_fn, params, (dx, dy), xs, ys, (x, y), key=key)
    >>> ratio = np.abs(cmap.values["min_eig"] / cmap.values["max_eig"])

  References:
    Li, Xu, Taylor, Studer & Goldstein, "Visualizing the loss landscape of neural
    nets", NeurIPS 2018.
  """
  _validate.loss_callable(loss_fn)
  _validate.prng_key(key)
  num_steps = _validate.integer("num_steps", num_steps, low=1, fix="pass num_steps >= 1, e.g. 16")
  _validate.param_tree(params)

  def point_fn(coeffs, data_):
    extremes = extreme_eigenvalues_fn(loss_fn, data_, num_steps=num_steps,
                                      batch_size=batch_size)
    lmax, lmin = extremes(surface.shift(params, directions, coeffs), key)
    return {"max_eig": lmax, "min_eig": lmin}

  return surface.sweep(point_fn, xs, ys, data, batch_size=batch_size, chunk_size=chunk_size,
                       point_mode=point_mode, done=done, on_chunk=on_chunk,
                       dtype=tree_dtype(params), reduce=False, progress=progress,
                       desc="curvature map")
