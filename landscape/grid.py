"""The grid of a loss surface, and the analysis done on a sampled grid.

A surface is sampled on the points ``θ + x_i·d₁ (+ y_j·d₂)`` of a 1-D line ``xs`` or a
2-D plane ``xs × ys``. :class:`Grid` is the one place that knows how such a grid is laid
out: values have shape ``(ny, nx)`` (``(nx,)`` in 1-D) with ``value[j, i]`` at
``(xs[i], ys[j])``, and points are numbered in row-major *flat* order, ``p = j·nx + i``.
The sweep engine (:mod:`landscape.surface`), the result files (:mod:`landscape.io`), the
probes that run per grid point and the figures all go through it.

:func:`grid_critical_points` finds the discrete minima, saddles and maxima of a sampled
2-D surface (finite differences on the grid); it needs only the grid and the values.

:func:`eig_converged` says which points of a curvature map met their residual tolerance, and
:func:`nonconvexity` summarizes how non-convex a 2-D surface (and its curvature map) is near
the centre: the |λ_min/λ_max| convexity fraction, the fraction of nodes where the discrete
Hessian is indefinite, and the critical points.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from jaxtyping import Float

from landscape.errors import ConfigError, DataError

__all__ = ["EIG_FIELDS", "Grid", "GridCriticalPoints", "NonConvexity", "eig_converged",
           "grid_critical_points", "nonconvexity", "stored_map_tol"]

#: The grid datasets of a curvature map (:func:`landscape.curvature.curvature_map`), all
#: under the ``eig_done`` mask of a file: the extreme eigenvalues, their Ritz residuals and
#: the Lanczos steps run per point.
EIG_FIELDS = ("max_eig", "min_eig", "max_eig_residual", "min_eig_residual", "eig_steps")


@dataclasses.dataclass(frozen=True, eq=False)
class Grid:
  """A 1-D line ``xs`` or a 2-D plane ``xs × ys`` of surface coordinates.

  Attributes:
    xs: ``(nx,)`` float64 coordinates along the first direction.
    ys: ``(ny,)`` float64 coordinates along the second, or ``None`` on a line.

  Example:
    >>> g = Grid.of(np.linspace(-1, 1, 5), np.linspace(-1, 1, 3))
    >>> g.shape, g.size, g.unravel(7)           # ((3, 5), 15, (1, 2))
  """
  xs: np.ndarray
  ys: np.ndarray | None = None

  @classmethod
  def of(cls, xs: Any, ys: Any = None) -> Grid:
    """A grid of the given coordinates: non-empty, 1-D and finite (else ConfigError)."""
    return cls(_axis("xs", xs), None if ys is None else _axis("ys", ys))

  @property
  def ndim(self) -> int:
    """1 for a line, 2 for a plane."""
    return 1 if self.ys is None else 2

  @property
  def shape(self) -> tuple[int, ...]:
    """``(ny, nx)`` on a plane, ``(nx,)`` on a line: the shape of every grid dataset."""
    return (len(self.xs),) if self.ys is None else (len(self.ys), len(self.xs))

  @property
  def size(self) -> int:
    """The number of points."""
    return math.prod(self.shape)

  def coords(self) -> np.ndarray:
    """``(size, ndim)`` float64 coordinates; row ``p`` is flat point ``p``: ``(x_i, y_j)``."""
    xs = np.asarray(self.xs, dtype=np.float64)
    if self.ys is None:
      return xs[:, None]
    gx, gy = np.meshgrid(xs, np.asarray(self.ys, dtype=np.float64))
    return np.stack([gx.ravel(), gy.ravel()], axis=1)

  def unravel(self, p: int) -> tuple[int, ...]:
    """The array index of flat point ``p``: ``(j, i)`` on a plane, ``(i,)`` on a line."""
    return tuple(int(k) for k in np.unravel_index(int(p), self.shape))

  def rows(self, start: int, count: int) -> Iterator[tuple[tuple, slice]]:
    """The flat points ``start .. start+count-1`` split at row ends.

    Yields ``(index, part)``: ``index`` addresses the points of one row in a grid dataset
    (``[j, i0:i1]``, or ``[i0:i1]`` on a line) and ``part`` the same points in the run.
    """
    nx = len(self.xs)
    offset = 0
    while offset < count:
      row, col = divmod(start + offset, nx)
      n = min(nx - col, count - offset)
      index = (slice(col, col + n),) if self.ys is None else (row, slice(col, col + n))
      yield index, slice(offset, offset + n)
      offset += n

  @staticmethod
  def runs(flat: Any) -> list[tuple[int, int]]:
    """Contiguous stretches of sorted flat indices, as ``(start, stop)`` positions in ``flat``."""
    flat = np.asarray(flat).reshape(-1)
    breaks = [0, *(np.flatnonzero(np.diff(flat) != 1) + 1).tolist(), flat.size]
    return [(a, b) for a, b in zip(breaks[:-1], breaks[1:]) if b > a]

  def check(self, name: str, values: Any) -> np.ndarray:
    """``values`` as an array of this grid's shape (else DataError naming ``name``)."""
    arr = np.asarray(values)
    if arr.shape != self.shape:
      raise DataError(f"{name} has shape {arr.shape} but the grid is {self.shape} "
                      f"({'(nx,)' if self.ys is None else '(ny, nx)'}, value[j, i] at "
                      "(xs[i], ys[j])); pass values of the grid's shape")
    return arr


def _axis(name: str, values: Any) -> np.ndarray:
  arr = np.asarray(values, dtype=np.float64)
  if arr.ndim != 1 or arr.size < 1 or not np.all(np.isfinite(arr)):
    raise ConfigError(f"{name} must be a non-empty 1-D array of finite coordinates, got shape "
                      f"{arr.shape}; pass e.g. np.linspace(-1, 1, 51)")
  return arr


@dataclasses.dataclass(frozen=True, eq=False)
class GridCriticalPoints:
  """Critical points of a sampled 2-D surface, sorted by loss.

  Attributes:
    coords: ``(m, 2)`` refined locations ``(x, y)``.
    loss: ``(m,)`` surface value there (the local quadratic model).
    kind: ``(m,)`` strings ``"minimum"``, ``"saddle"`` or ``"maximum"``.
    index: ``(m,)`` number of negative eigenvalues of the 2×2 finite-difference
      Hessian divided by 2 (0, 0.5 or 1).
  """
  coords: np.ndarray
  loss: np.ndarray
  kind: np.ndarray
  index: np.ndarray

  def __len__(self) -> int:
    return int(self.loss.shape[0])


def _check_axis(name: str, values: Any) -> np.ndarray:
  axis = np.asarray(values, dtype=np.float64)
  if axis.ndim != 1 or axis.size < 3:
    raise DataError(f"{name} must be a 1-D array of at least 3 coordinates, got shape "
                    f"{axis.shape}; pass the grid axis, e.g. np.linspace(-1, 1, 51)")
  steps = np.diff(axis)
  if not (np.all(np.isfinite(axis)) and (np.all(steps > 0) or np.all(steps < 0))):
    raise DataError(f"{name} must be finite and strictly monotonic; sort the grid "
                    "coordinates (and the matching axis of z)")
  return axis


def _fd_derivatives(xs: np.ndarray, ys: np.ndarray, z: np.ndarray):
  """``(zx, zy, zxx, zxy, zyy)`` of ``z[j, i] = f(xs[i], ys[j])``: ``np.gradient`` with the
  coordinates, second order everywhere, applied twice; the mixed term symmetrized."""
  with np.errstate(invalid="ignore"):
    zy, zx = np.gradient(z, ys, xs, edge_order=2)
    zxx = np.gradient(zx, xs, axis=1, edge_order=2)
    zyy = np.gradient(zy, ys, axis=0, edge_order=2)
    zxy = 0.5 * (np.gradient(zx, ys, axis=0, edge_order=2)
                 + np.gradient(zy, xs, axis=1, edge_order=2))
  return zx, zy, zxx, zxy, zyy


def _crosses_zero(corners: np.ndarray) -> np.ndarray:
  """Cells where a derivative takes both signs (or hits 0) over its 4 corners."""
  lo, hi = corners.min(axis=0), corners.max(axis=0)
  return (lo <= 0) & (hi >= 0) & (np.abs(corners).max(axis=0) > 0)


def grid_critical_points(xs: Float[np.ndarray, "nx"], ys: Float[np.ndarray, "ny"],
                         z: Float[np.ndarray, "ny nx"]) -> GridCriticalPoints:
  """Discrete minima, saddles and maxima of a sampled surface ``z[j, i] = f(xs[i], ys[j])``.

  With finite differences on the (possibly non-uniform) grid — ``np.gradient``
  with the coordinates, second order everywhere, applied twice — every node has a
  gradient ``g = (∂z/∂x, ∂z/∂y)`` and Hessian ``H`` (``∂²z/∂x∂y`` symmetrized).
  A grid cell is a candidate when both ``∂z/∂x`` and ``∂z/∂y`` change sign (or
  vanish) over its four corners. From the corner with the smallest ``‖g‖`` one
  Newton step on the local quadratic model, ``s = −H^† g``, locates the critical
  point; it is kept if it lies within the cell (up to half a cell, the reach of the
  finite-difference error), and its value is the model's
  ``z + gᵀs + ½ sᵀHs``. The signs of the eigenvalues of ``H`` classify it: two
  positive: minimum, two negative: maximum, mixed: saddle (``index`` = number
  negative / 2; a zero eigenvalue counts as positive). Candidates within one cell
  of each other with the same kind are merged (the smallest Newton step wins).
  Cells touching a non-finite value (a diverged point) or its finite-difference
  stencil are skipped. Exact for quadratic surfaces; for smooth ones the error is
  ``O(h²)``.

  Args:
    xs: ``(nx,)`` strictly monotonic x coordinates, ``nx >= 3``.
    ys: ``(ny,)`` strictly monotonic y coordinates, ``ny >= 3``.
    z: ``(ny, nx)`` surface values, ``z[j, i]`` at ``(xs[i], ys[j])``; NaN/inf allowed.

  Returns:
    :class:`GridCriticalPoints`, sorted by loss.

  Example:
    >>> xs, ys = np.linspace(-1, 1, 41), np.linspace(-1, 1, 31)
    >>> z = xs[None, :] ** 2 - ys[:, None] ** 2
    >>> grid_critical_points(xs, ys, z).kind       # array(['saddle'], dtype='<U7')

  References:
    Li, Xu, Taylor, Studer & Goldstein, "Visualizing the loss landscape of neural
    nets", NeurIPS 2018 (the surfaces).
    Fornberg, "Generation of finite difference formulas on arbitrarily spaced grids",
    Math. Comp. 1988 (the non-uniform stencils behind ``np.gradient``).
  """
  xs, ys = _check_axis("xs", xs), _check_axis("ys", ys)
  z = Grid(xs, ys).check("z", np.asarray(z, dtype=np.float64))
  if xs[1] < xs[0]:
    xs, z = xs[::-1], z[:, ::-1]
  if ys[1] < ys[0]:
    ys, z = ys[::-1], z[::-1, :]
  zx, zy, zxx, zxy, zyy = _fd_derivatives(xs, ys, z)
  fields = np.stack([z, zx, zy, zxx, zxy, zyy])                 # (6, ny, nx)
  corner = lambda a: np.stack([a[..., :-1, :-1], a[..., :-1, 1:],  # noqa: E731
                               a[..., 1:, :-1], a[..., 1:, 1:]])  # (4, ..., ny-1, nx-1)
  cells = corner(fields)
  finite = np.all(np.isfinite(cells), axis=(0, 1))
  with np.errstate(invalid="ignore"):
    candidate = finite & _crosses_zero(cells[:, 1]) & _crosses_zero(cells[:, 2])
  found = []
  for j, i in zip(*np.nonzero(candidate)):
    nodes = [(j, i), (j, i + 1), (j + 1, i), (j + 1, i + 1)]
    jn, inn = min(nodes, key=lambda n: math.hypot(zx[n], zy[n]))
    g = np.array([zx[jn, inn], zy[jn, inn]])
    h = np.array([[zxx[jn, inn], zxy[jn, inn]], [zxy[jn, inn], zyy[jn, inn]]])
    step = -np.linalg.pinv(h) @ g
    x, y = xs[inn] + step[0], ys[jn] + step[1]
    hx, hy = xs[i + 1] - xs[i], ys[j + 1] - ys[j]
    inside_x = xs[i] - hx / 2 <= x <= xs[i + 1] + hx / 2
    if not (inside_x and ys[j] - hy / 2 <= y <= ys[j + 1] + hy / 2):
      continue
    eig = np.linalg.eigvalsh(h)
    negative = int(np.sum(eig < 0))
    kind = ("minimum", "saddle", "maximum")[negative]
    value = z[jn, inn] + g @ step + 0.5 * step @ h @ step
    frac = (np.interp(x, xs, np.arange(xs.size)), np.interp(y, ys, np.arange(ys.size)))
    size = abs(step[0]) / hx + abs(step[1]) / hy
    found.append((frac, size, (x, y), value, kind, negative / 2))
  kept: list = []
  for point in sorted(found, key=lambda p: p[1]):
    if not any(q[4] == point[4] and abs(q[0][0] - point[0][0]) <= 1
               and abs(q[0][1] - point[0][1]) <= 1 for q in kept):
      kept.append(point)
  kept.sort(key=lambda p: p[3])
  return GridCriticalPoints(
      coords=np.array([p[2] for p in kept], dtype=np.float64).reshape(-1, 2),
      loss=np.array([p[3] for p in kept], dtype=np.float64),
      kind=np.array([p[4] for p in kept], dtype="<U7"),
      index=np.array([p[5] for p in kept], dtype=np.float64))


def eig_converged(values: Any, tol: float) -> np.ndarray | None:
  """Which curvature-map points met ``tol``: ``max(r_max, r_min) ≤ tol·|λ_max|``.

  For a Ritz pair ``(θ, y)`` of a symmetric matrix the residual ``r = ‖H y − θ y‖``
  bounds the distance from ``θ`` to an eigenvalue, so at a converged point both extreme
  eigenvalue estimates (and ``|λ_min/λ_max|``) are accurate to about ``tol`` relative to
  the spectral radius.

  Args:
    values: grid arrays by name holding :data:`EIG_FIELDS` (a ``Surface``'s ``values``
      or a ``Result``'s ``fields``).
    tol: the tolerance relative to ``|λ_max|``.

  Returns:
    A bool array of the grid's shape (non-finite points are not converged), or ``None``
    when the residuals are not stored (maps computed before they were recorded).
  """
  if not all(k in values for k in EIG_FIELDS[:4]):
    return None
  lmax = np.abs(np.asarray(values["max_eig"], dtype=np.float64))
  r = np.maximum(np.asarray(values["max_eig_residual"], dtype=np.float64),
                 np.asarray(values["min_eig_residual"], dtype=np.float64))
  with np.errstate(invalid="ignore"):
    return np.isfinite(lmax) & np.isfinite(r) & (r <= tol * lmax)


# ------------------------------------------------------------------ non-convexity

#: The loss fields :func:`nonconvexity` picks by default, in order (then any ``*loss``).
_LOSS_FIELDS = ("train_loss", "loss", "test_loss", "loss_vals")


def stored_map_tol(result: Any) -> float | None:
  """The tolerance a result's curvature map was run to: its ``curvature_map/tol``.

  Args:
    result: a :class:`landscape.io.Result` or anything with a ``groups`` mapping.

  Returns:
    The tolerance relative to ``|λ_max|``, or ``None`` when the file has no
    ``curvature_map`` group (a map computed before it was recorded) or its ``tol`` is NaN
    (a fixed number of Lanczos steps per point, no tolerance).
  """
  group = (getattr(result, "groups", None) or {}).get("curvature_map") or {}
  if "tol" not in group:
    return None
  tol = float(np.asarray(group["tol"], dtype=np.float64).reshape(-1)[0])
  return tol if np.isfinite(tol) else None


@dataclasses.dataclass(frozen=True)
class NonConvexity:
  """How non-convex a 2-D loss surface is around its centre (see :func:`nonconvexity`).

  Attributes:
    field: the loss field the surface metrics were computed on.
    threshold: the ``|λ_min/λ_max|`` threshold of :attr:`ratio_fraction`.
    radius: the central region as a fraction of each axis' half-width.
    tol: the residual tolerance that decided convergence (relative to ``|λ_max|``), or
      ``None`` when none applied (no map, no stored tolerance, or residuals unknown).
    central_shape: ``(ny, nx)`` grid nodes in the central region.
    has_map: the result holds a curvature map (``max_eig`` and ``min_eig``).
    residuals_known: the map stores its Ritz residuals; ``False`` for maps computed
      before they were recorded (then every computed point counts).
    num_map_points: central map points computed, with finite eigenvalues.
    num_converged: of those, the ones that met ``tol`` (all of them without one).
    ratio_fraction: fraction of the converged central map points with
      ``|min_eig/max_eig| > threshold``; NaN without a map or with no converged point.
    minima, saddles, maxima: critical points of the loss (:func:`grid_critical_points`)
      inside the central region.
    num_points: central nodes where the discrete Hessian of the loss is defined
      (computed, finite, with a finite finite-difference stencil).
    indefinite_fraction: fraction of those nodes where that 2×2 Hessian is indefinite
      (``det < 0``); NaN when there is none.
  """
  field: str
  threshold: float
  radius: float
  tol: float | None
  central_shape: tuple[int, int]
  has_map: bool
  residuals_known: bool
  num_map_points: int
  num_converged: int
  ratio_fraction: float
  minima: int
  saddles: int
  maxima: int
  num_points: int
  indefinite_fraction: float

  def as_dict(self) -> dict[str, Any]:
    """The metrics as JSON-ready Python values (NaN becomes ``None``)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(self):
      v = getattr(self, f.name)
      if isinstance(v, float) and not math.isfinite(v):
        v = None
      out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def _loss_field(fields: Any, field: str | None) -> str:
  if field is not None:
    if field not in fields:
      raise ConfigError(f"no field {field!r} to measure non-convexity on; fields: "
                        f"{', '.join(fields) or 'none'}; pass one of them as field=")
    if field in EIG_FIELDS:
      raise ConfigError(f"field={field!r} is a curvature-map dataset, not a loss surface; "
                        "pass a loss field such as field='train_loss'")
    return field
  found = [f for f in _LOSS_FIELDS if f in fields] + [
      f for f in fields if str(f).endswith("loss") and f not in _LOSS_FIELDS]
  if not found:
    raise ConfigError(f"no loss field to measure non-convexity on (fields: "
                      f"{', '.join(fields) or 'none'}); pass field= with the surface's name")
  return found[0]


def _computed(result: Any, name: str, values: np.ndarray) -> np.ndarray:
  """Points of field ``name`` that are computed (its done mask) and finite."""
  ok = np.isfinite(values)
  done = result.done_for(name) if callable(getattr(result, "done_for", None)) else None
  if done is not None:
    ok &= np.asarray(done, dtype=bool).reshape(values.shape)
  return ok


def nonconvexity(result: Any, *, field: str | None = None, threshold: float = 0.1,
                 radius: float = 0.5, tol: float | None = None) -> NonConvexity:
  """Non-convexity metrics of a 2-D loss surface and its curvature map, near the centre.

  Everything is measured in the *central region*: the grid nodes with
  ``|x| ≤ radius·max|xs|`` and ``|y| ≤ radius·max|ys|`` (``radius=1``: the whole grid),
  the neighbourhood of the trained weights θ at the origin, away from the far field where
  every surface grows.

  * ``ratio_fraction`` — the convexity map of Li et al.: the fraction of central
    curvature-map points where ``|λ_min/λ_max| > threshold``, i.e. where the negative
    curvature is a sizeable part of the positive one (0 for a locally convex surface).
    Only *converged* points count (:func:`eig_converged` with ``tol``: both Ritz
    residuals ``≤ tol·|λ_max|``), so an eigenvalue Lanczos did not resolve cannot pose as
    convexity or its absence. Without stored residuals (an old file) or without a
    tolerance every computed point counts (``residuals_known`` / ``tol`` say which).
  * ``indefinite_fraction`` — the roughness of the 2-D surface itself: the fraction of
    central nodes where its finite-difference 2×2 Hessian (``np.gradient`` twice with the
    coordinates, mixed term symmetrized, as :func:`grid_critical_points`) is indefinite,
    ``det < 0``, i.e. where the surface curves up along one direction of the plane and
    down along another. A convex bowl gives 0, a saddle 1, a chaotic surface about ½.
    It sees only the plane, where the eigenvalue map sees all directions.
  * ``minima``, ``saddles``, ``maxima`` — the critical points of the sampled surface
    (:func:`grid_critical_points`) lying in the central region: one minimum and nothing
    else for a convex basin, many of each for a rough one.

  Args:
    result: a 2-D :class:`landscape.io.Result` or :class:`landscape.surface.Surface`
      (``fields``, ``done_for``, ``groups``, ``grid``).
    field: the loss field; ``None``: ``train_loss``, else ``loss``, else the first
      loss-like field.
    threshold: the ``|λ_min/λ_max|`` above which a point counts as non-convex, ``≥ 0``.
    radius: the central region per axis, in ``(0, 1]``.
    tol: the residual tolerance relative to ``|λ_max|``; ``None``: the file's
      ``curvature_map/tol`` (NaN or missing: every computed point counts as converged).

  Returns:
    A :class:`NonConvexity` (``as_dict()`` for JSON).

  Raises:
    ConfigError: a 1-D result, an unknown or missing loss field, a bad ``threshold``,
      ``radius`` or ``tol``.
    DataError: fewer than 3 × 3 grid nodes in the central region.

  Example:
    >>> m = nonconvexity(ls.io.load("results/default/landscape.h5"), radius=0.5)
    >>> m.ratio_fraction, m.indefinite_fraction, (m.minima, m.saddles, m.maxima)

  References:
    Li, Xu, Taylor, Studer & Goldstein, "Visualizing the loss landscape of neural nets",
    NeurIPS 2018, §6 and Fig. 7 (maps of ``|λ_min/λ_max|`` as a convexity measure).
    Parlett, "The Symmetric Eigenvalue Problem", SIAM 1998, §11.5 (residual bounds of
    Ritz values, behind the convergence rule).
    Milnor, "Morse Theory", Princeton 1963, §2 (the index of a critical point; in 2-D
    ``det H < 0`` is index 1, a saddle): the discrete Hessian's determinant, taken at
    every node rather than only at critical points, is the roughness measure here.
    Edelsbrunner & Harer, "Computational Topology", AMS 2010, ch. VI (critical points of
    sampled functions); the grid critical points are those of
    :func:`grid_critical_points`.
  """
  grid = getattr(result, "grid", None)
  if grid is None:
    ys_ = getattr(result, "ys", None)
    grid = Grid(np.asarray(result.xs, dtype=np.float64), None if ys_ is None else
                np.asarray(ys_, dtype=np.float64))
  if grid.ndim != 2:
    raise ConfigError("nonconvexity needs a 2-D surface but the result is a 1-D line of "
                      f"{len(grid.xs)} points; sweep a 2-D plane (e.g. --y=-1:1:51)")
  threshold = float(threshold)
  if not (math.isfinite(threshold) and threshold >= 0):
    raise ConfigError(f"threshold={threshold!r} must be a finite |λ_min/λ_max| >= 0; "
                      "pass e.g. threshold=0.1")
  radius = float(radius)
  if not (math.isfinite(radius) and 0 < radius <= 1):
    raise ConfigError(f"radius={radius!r} must be in (0, 1], the central fraction of each "
                      "axis; pass e.g. radius=0.5 (1: the whole grid)")
  if tol is not None:
    tol = float(tol)
    if not (math.isfinite(tol) and tol > 0):
      raise ConfigError(f"tol={tol!r} must be a positive residual tolerance relative to "
                        "|λ_max|; pass e.g. tol=0.01, or None for the file's")
  fields = result.fields
  field = _loss_field(fields, field)
  xs, ys = np.asarray(grid.xs, dtype=np.float64), np.asarray(grid.ys, dtype=np.float64)
  xlim = radius * np.abs(xs).max() * (1 + 1e-9)
  ylim = radius * np.abs(ys).max() * (1 + 1e-9)
  cx, cy = np.abs(xs) <= xlim, np.abs(ys) <= ylim
  if cx.sum() < 3 or cy.sum() < 3:
    raise DataError(f"the central region (radius={radius:g}) of the {len(ys)} x {len(xs)} "
                    f"grid holds {int(cy.sum())} x {int(cx.sum())} points; nonconvexity needs "
                    "at least 3 x 3: pass a larger radius (at most 1) or sweep a finer grid")
  central = cy[:, None] & cx[None, :]
  xs, ys = _check_axis("xs", xs), _check_axis("ys", ys)

  z = grid.check(field, np.asarray(fields[field], dtype=np.float64))
  z = np.where(_computed(result, field, z), z, np.nan)
  _, _, zxx, zxy, zyy = _fd_derivatives(xs, ys, z)
  defined = central & np.isfinite(z) & np.isfinite(zxx) & np.isfinite(zxy) & np.isfinite(zyy)
  with np.errstate(invalid="ignore"):
    indefinite = defined & (zxx * zyy - zxy ** 2 < 0)
  num_points = int(defined.sum())
  indefinite_fraction = indefinite.sum() / num_points if num_points else math.nan

  cps = grid_critical_points(xs, ys, z)
  inside = ((np.abs(cps.coords[:, 0]) <= xlim) & (np.abs(cps.coords[:, 1]) <= ylim)
            if len(cps) else np.zeros(0, dtype=bool))
  kinds = cps.kind[inside]

  has_map = "max_eig" in fields and "min_eig" in fields
  residuals_known = has_map and all(k in fields for k in EIG_FIELDS[:4])
  ratio_fraction, num_map, num_conv, used_tol = math.nan, 0, 0, None
  if has_map:
    hi = grid.check("max_eig", np.asarray(fields["max_eig"], dtype=np.float64))
    lo = grid.check("min_eig", np.asarray(fields["min_eig"], dtype=np.float64))
    mapped = central & _computed(result, "max_eig", hi) & _computed(result, "min_eig", lo)
    used_tol = tol if tol is not None else stored_map_tol(result)
    ok = eig_converged(fields, used_tol) if (residuals_known and used_tol is not None) \
        else None
    if ok is None:
      used_tol = None
      converged = mapped
    else:
      converged = mapped & ok
    with np.errstate(divide="ignore", invalid="ignore"):
      ratio = np.abs(lo / hi)
    usable = converged & np.isfinite(ratio)
    num_map, num_conv = int(mapped.sum()), int(converged.sum())
    if usable.any():
      ratio_fraction = float(np.mean(ratio[usable] > threshold))
  return NonConvexity(
      field=str(field), threshold=threshold, radius=radius, tol=used_tol,
      central_shape=(int(cy.sum()), int(cx.sum())), has_map=has_map,
      residuals_known=bool(residuals_known), num_map_points=num_map, num_converged=num_conv,
      ratio_fraction=ratio_fraction, minima=int(np.sum(kinds == "minimum")),
      saddles=int(np.sum(kinds == "saddle")), maxima=int(np.sum(kinds == "maximum")),
      num_points=num_points, indefinite_fraction=float(indefinite_fraction))
