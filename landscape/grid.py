"""The grid of a loss surface, and the analysis done on a sampled grid.

A surface is sampled on the points ``θ + x_i·d₁ (+ y_j·d₂)`` of a 1-D line ``xs`` or a
2-D plane ``xs × ys``. :class:`Grid` is the one place that knows how such a grid is laid
out: values have shape ``(ny, nx)`` (``(nx,)`` in 1-D) with ``value[j, i]`` at
``(xs[i], ys[j])``, and points are numbered in row-major *flat* order, ``p = j·nx + i``.
The sweep engine (:mod:`landscape.surface`), the result files (:mod:`landscape.io`), the
probes that run per grid point and the figures all go through it.

:func:`grid_critical_points` finds the discrete minima, saddles and maxima of a sampled
2-D surface (finite differences on the grid); it needs only the grid and the values.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from jaxtyping import Float

from landscape.errors import ConfigError, DataError

__all__ = ["Grid", "GridCriticalPoints", "grid_critical_points"]


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
  with np.errstate(invalid="ignore"):
    zy, zx = np.gradient(z, ys, xs, edge_order=2)
    zxx = np.gradient(zx, xs, axis=1, edge_order=2)
    zyy = np.gradient(zy, ys, axis=0, edge_order=2)
    zxy = 0.5 * (np.gradient(zx, ys, axis=0, edge_order=2)
                 + np.gradient(zy, xs, axis=1, edge_order=2))
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
