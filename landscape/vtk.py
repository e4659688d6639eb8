"""Export a 2-D loss surface as a VTK XML StructuredGrid (``.vts``) for ParaView.

Pure NumPy (no vtk/pyvista import). The original tool wrote a ``.vtp`` PolyData of
quads (``h52vtp.py``) and assumed a square grid; a StructuredGrid carries the same
surface with its true ``nx x ny`` topology, so non-square and non-uniform grids are
exact. ParaView opens the file directly (File > Open, then "Warp By Scalar" is not
needed: the z coordinate already is the displayed loss).

Point order is VTK's: x fastest, then y. For ``z[j, i]`` at ``(xs[i], ys[j])`` the
point index is ``j * nx + i``, ``WholeExtent="0 nx-1 0 ny-1 0 0"``.

  >>> from landscape.vtk import write_vts
  >>> write_vts("surface.vts", res.xs, res.ys, res.fields["train_loss"], log=True)
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
from jaxtyping import Float
from numpy.typing import ArrayLike

from landscape.errors import ConfigError, DataError
from landscape.grid import Grid

__all__ = ["LOG_OFFSET", "resample_bilinear", "write_vts"]

# The original h52vtp.py writes log(z + 0.1) for --log.
LOG_OFFSET = 0.1
_ENCODINGS = ("binary", "ascii")


def _axis(values: ArrayLike, name: str) -> np.ndarray:
  arr = np.asarray(values, dtype=float)
  if arr.ndim != 1 or arr.size == 0:
    raise DataError(f"{name} has shape {arr.shape}; pass a non-empty 1-D coordinate array")
  if not np.all(np.isfinite(arr)):
    raise DataError(f"{name} holds non-finite coordinates; pass finite grid coordinates")
  steps = np.diff(arr)
  if arr.size > 1 and not (np.all(steps > 0) or np.all(steps < 0)):
    raise DataError(f"{name} is not strictly monotonic; pass sorted, distinct coordinates")
  return arr


def _increasing(coords: np.ndarray, z: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
  if coords.size > 1 and coords[1] < coords[0]:
    return coords[::-1], np.flip(z, axis=axis)
  return coords, z


def resample_bilinear(xs: Float[np.ndarray, "nx"], ys: Float[np.ndarray, "ny"],
                      z: Float[np.ndarray, "ny nx"], xq: Float[np.ndarray, "mx"],
                      yq: Float[np.ndarray, "my"]) -> Float[np.ndarray, "my mx"]:
  """Bilinear interpolation of a rectilinear grid onto another rectilinear grid.

  In the cell ``xs[i] <= x <= xs[i+1]``, ``ys[j] <= y <= ys[j+1]`` with
  ``s = (x - xs[i]) / (xs[i+1] - xs[i])``, ``t = (y - ys[j]) / (ys[j+1] - ys[j])``:
  ``f = (1-s)(1-t) z[j,i] + s(1-t) z[j,i+1] + (1-s)t z[j+1,i] + st z[j+1,i+1]``,
  computed separably (``np.interp`` along x for every row, then along y for every
  column), which is exactly bilinear on a rectilinear grid. A NaN corner makes its
  cells NaN; queries outside the grid take the edge value.

  Args:
    xs: (nx,) strictly monotonic x coordinates; ys: (ny,) y coordinates.
    z: (ny, nx) values, ``z[j, i]`` at ``(xs[i], ys[j])``.
    xq: (mx,) query x coordinates; yq: (my,) query y coordinates.

  Returns:
    (my, mx) interpolated values at ``(xq[i], yq[j])``.

  Example:
    >>> resample_bilinear(np.array([0., 1.]), np.array([0., 1.]),
    ...                   np.array([[0., 1.], [2., 3.]]), np.array([.5]), np.array([.5]))
    array([[1.5]])

  References:
    Press, Teukolsky, Vetterling, Flannery, "Numerical Recipes", 3rd ed., Cambridge
    University Press 2007, Sec. 3.6 (bilinear interpolation).
  """
  xs, ys = _axis(xs, "xs"), _axis(ys, "ys")
  z = Grid(xs, ys).check("z", np.asarray(z, dtype=float))
  xs, z = _increasing(xs, z, axis=1)
  ys, z = _increasing(ys, z, axis=0)
  xq, yq = np.asarray(xq, dtype=float).ravel(), np.asarray(yq, dtype=float).ravel()
  rows = np.stack([np.interp(xq, xs, row) for row in z]) if xs.size > 1 else \
      np.repeat(z, xq.size, axis=1)
  if ys.size == 1:
    return np.repeat(rows, yq.size, axis=0)
  return np.stack([np.interp(yq, ys, col) for col in rows.T], axis=1)


def _encode(values: np.ndarray, encoding: str) -> str:
  if encoding == "ascii":
    return " ".join(repr(v) for v in values.ravel().tolist())
  raw = np.ascontiguousarray(values).tobytes()
  header = np.array([len(raw)], dtype="<u8").tobytes()
  return base64.b64encode(header + raw).decode("ascii")


def _data_array(values: np.ndarray, vtk_type: str, name: str | None, components: int,
                encoding: str) -> str:
  named = "" if name is None else f" Name={quoteattr(name)}"
  return (f'        <DataArray type="{vtk_type}"{named} NumberOfComponents="{components}" '
          f'format="{encoding}">\n          {_encode(values, encoding)}\n'
          f'        </DataArray>\n')


def write_vts(path: str | Path, xs: Float[np.ndarray, "nx"], ys: Float[np.ndarray, "ny"],
              z: Float[np.ndarray, "ny nx"], *, interp: int | None = None, log: bool = False,
              zmax: float | None = None, field_name: str = "train_loss",
              encoding: str = "binary") -> Path:
  """Write a loss surface as a VTK XML StructuredGrid (``.vts``) file.

  Points are ``(x, y, h)`` with the displayed height ``h = min(z, zmax)`` (no clip
  when ``zmax`` is None), then ``h = log(h + 0.1)`` when ``log`` (the original
  ``h52vtp.py``: clip first, then log). Point data: ``field_name``, the (resampled)
  loss itself, unclipped; ``height``, ``h``; ``valid``, 1 where ``h`` is finite.
  Non-finite heights (NaN, inf, masked points) are written as NaN; use ParaView's
  Threshold on ``valid`` to hide them.

  With ``interp=N`` the surface is first resampled to an ``N x N`` grid spanning the
  same ranges by exact bilinear interpolation (:func:`resample_bilinear`; the original
  used a cubic ``interp2d``, removed from SciPy).

  Args:
    path: output file, by convention ``*.vts``.
    xs: (nx,) x coordinates; ys: (ny,) y coordinates (strictly monotonic).
    z: (ny, nx) values, ``z[j, i]`` at ``(xs[i], ys[j])``; a masked array's mask
      becomes NaN.
    interp: resample to an ``interp x interp`` grid (>= 2); None: keep the grid.
    log: write ``log(h + 0.1)`` as the height.
    zmax: clip heights above ``zmax``.
    field_name: name of the loss point-data array.
    encoding: ``"binary"`` (base64 inline, exact, NaN-safe; default) or ``"ascii"``
      (readable, but VTK's ASCII parser may not read ``nan``).

  Returns:
    The written path.

  Example:
    >>> write_vts("surf.vts", res.xs, res.ys, res.fields["train_loss"], zmax=10, interp=200)

  References:
    Kitware, "VTK File Formats" (XML StructuredGrid), VTK User's Guide, 11th ed., 2010.
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets",
    NeurIPS 2018 (Fig. 1, rendered in ParaView).
  """
  if encoding not in _ENCODINGS:
    raise ConfigError(f"encoding={encoding!r} is not supported; use 'binary' or 'ascii'")
  if not field_name or field_name in ("height", "valid"):
    raise ConfigError(f"field_name={field_name!r} must be a non-empty name other than "
                      "'height' and 'valid'")
  xs, ys = _axis(xs, "xs"), _axis(ys, "ys")
  values = Grid(xs, ys).check("z", np.ma.filled(np.ma.asarray(z, dtype=float), np.nan))
  if interp is not None:
    if int(interp) != interp or interp < 2:
      raise ConfigError(f"interp={interp!r} must be an integer >= 2 (points per axis)")
    check_size(int(interp) ** 2, os.path.dirname(os.fspath(path)) or ".", encoding)
    if min(xs.size, ys.size) < 2:
      raise DataError(f"a {ys.size} x {xs.size} grid cannot be interpolated; it needs at "
                      "least 2 x 2 points")
    xq = np.linspace(xs.min(), xs.max(), int(interp))
    yq = np.linspace(ys.min(), ys.max(), int(interp))
    values = resample_bilinear(xs, ys, values, xq, yq)
    xs, ys = xq, yq
  if zmax is not None and not np.isfinite(zmax):
    raise ConfigError(f"zmax={zmax!r} must be a finite number or None")
  finite = values[np.isfinite(values)]
  if zmax is not None and finite.size and zmax <= finite.min():
    raise ConfigError(f"zmax={zmax:g} is at or below every value of {field_name} (min "
                      f"{finite.min():.6g}), so the surface would be flat; pass a zmax above "
                      "the minimum, e.g. a few times it")
  height = values if zmax is None else np.minimum(values, float(zmax))
  if log:
    with np.errstate(divide="ignore", invalid="ignore"):
      height = np.log(height + LOG_OFFSET)
  valid = np.isfinite(height)
  height = np.where(valid, height, np.nan)

  ny, nx = values.shape
  gx, gy = np.meshgrid(xs, ys)  # (ny, nx): C order ravel gives index j * nx + i
  points = np.stack([gx.ravel(), gy.ravel(), height.ravel()], axis=1).astype("<f8")
  extent = f"0 {nx - 1} 0 {ny - 1} 0 0"
  text = (
      '<?xml version="1.0"?>\n'
      '<VTKFile type="StructuredGrid" version="1.0" byte_order="LittleEndian" '
      'header_type="UInt64">\n'
      f'  <StructuredGrid WholeExtent="{extent}">\n'
      f'    <Piece Extent="{extent}">\n'
      f'      <PointData Scalars={quoteattr(field_name)}>\n'
      + _data_array(values.ravel().astype("<f8"), "Float64", field_name, 1, encoding)
      + _data_array(height.ravel().astype("<f8"), "Float64", "height", 1, encoding)
      + _data_array(valid.ravel().astype(np.uint8), "UInt8", "valid", 1, encoding)
      + '      </PointData>\n'
      '      <Points>\n'
      + _data_array(points, "Float64", "Points", 3, encoding)
      + '      </Points>\n'
      '    </Piece>\n'
      '  </StructuredGrid>\n'
      '</VTKFile>\n')
  out = Path(path)
  from landscape import io as _io
  _io.atomic_write(out, text.encode("ascii"))
  return out


#: Bytes per grid point of a .vts file (base64 float64 height, value, 3 coordinates and a
#: byte, 4/3 expansion; ascii writes up to ~25 characters a number) and of writing it.
_DISK_PER_POINT = {"binary": 60, "ascii": 130}
_MEMORY_PER_POINT = 400


def check_size(num_points: int, directory: str, encoding: str = "binary") -> None:
  """Refuse an export of ``num_points`` that cannot fit in memory or on disk."""
  from landscape import _guards
  what = f"a VTK export of {num_points} points"
  fix = "use a smaller --interp (200-500 is plenty for ParaView)"
  _guards.check_memory(num_points * _MEMORY_PER_POINT, what, fix)
  _guards.check_disk(directory, num_points * _DISK_PER_POINT.get(encoding, 130), what, fix)
