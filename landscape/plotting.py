"""Figures of loss surfaces: loss curves and surfaces, curvature maps, spectra, critical points.

The only module of landscape that imports matplotlib (DESIGN §2). It never imports
jax and never computes a loss: every function turns arrays that are already computed
(a :class:`landscape.surface.Surface` fresh from :func:`landscape.surface.evaluate`, a
:class:`landscape.io.Result` read from a file, or plain NumPy arrays) into artists on an
Axes the caller owns, and returns those artists so that a test or a script can inspect
or restyle them. :func:`render` and :func:`render_all` draw whole figures of a result in
the paper style (``styles/paper.mplstyle``) and save them as PDF/PNG.

A *result* is read through the interface a Surface and a Result share: ``.grid`` (a
:class:`landscape.grid.Grid`: ``xs``, ``ys``, ``ndim``, ``shape``), ``.fields`` (name ->
array of the grid's shape: ``train_loss``, ``test_acc``, ``max_eig``, ... in a file;
``loss`` and one array per metric, e.g. ``acc``, from a sweep without splits),
``.done_for(name)`` (the mask of computed points covering a field, or None), ``.attrs``,
``.groups`` and ``.path``. A plain object with ``xs``, ``ys``, ``fields`` and a ``done``
dict of masks (``"done"``, ``"eig_done"``) works too. Points that are not computed yet
(done is False) or whose value is not finite (a diverged point) are masked: drawn in a
light-grey "bad" colour with a legend entry, never interpolated over, and an all-masked
surface draws a note instead of failing.

The figure kinds of :func:`render` live in one registry, :data:`FIGURE_KINDS` (name ->
:class:`FigureKind`: how to draw it, what it needs, its aspect); :data:`KINDS` is their
names. A new kind is one :func:`register_kind` call. The files of ``landscape path`` draw
as ``path`` (loss along the paths, barriers), ``plane`` (the plane through the two minima
and a bend or saddle, paths projected on it) and ``saddle_spectrum`` (the certified
smallest eigenvalues at the saddle).

  >>> import landscape as ls
  >>> res = ls.io.load("results/default/landscape.h5")
  >>> ls.plotting.kinds_supported(res)
  ['contour', 'contourf', 'heatmap', 'surface3d', 'density']
  >>> ls.plotting.render_all(res, "results/default/figures")
  >>> surf = ls.surface.evaluate(loss_fn, params, dirs, xs, ys, data=(x, y))
  >>> ls.plotting.render(surf, "contour", "figures")    # no file needed; field "loss"
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from jaxtyping import Float
from matplotlib import colors as mcolors
from matplotlib import style as mstyle
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

from landscape.errors import ConfigError, DataError, unknown_name
from landscape.grid import Grid, eig_converged, stored_map_tol

__all__ = [
    "BAD_COLOR", "DOUBLE_COLUMN_IN", "FIGURE_KINDS", "KINDS", "SINGLE_COLUMN_IN",
    "STYLE_PATH", "FigureKind", "default_field", "figure_size", "kinds_supported",
    "masked_field", "plot_1d", "plot_1d_overlay", "plot_contour", "plot_contourf",
    "plot_critical_on_contour", "plot_density", "plot_eig_map", "plot_eig_ratio",
    "plot_heatmap", "plot_linear_landscape", "plot_loss_functions", "plot_loss_vs_index",
    "plot_path_plane", "plot_paths", "plot_saddle_spectrum", "plot_sharpness",
    "plot_surface3d", "stability_threshold",
    "plot_trajectory", "register_kind", "render", "render_all",
    "unregister_kind", "use_style",
]

SINGLE_COLUMN_IN = 3.4
DOUBLE_COLUMN_IN = 7.0
BAD_COLOR = "0.85"  # light grey: not computed or non-finite
STYLE_PATH = Path(__file__).with_name("styles") / "paper.mplstyle"

# The names of the registered figure kinds, in registration order; kept in step with
# FIGURE_KINDS by register_kind/unregister_kind (read it as `plotting.KINDS`, not by
# `from landscape.plotting import KINDS`, to see kinds registered later).
KINDS: tuple[str, ...] = ()

# Contour levels the original adds above vmax to show the far, high-loss region
# (plot_2D.py, plot_contour_trajectory: np.logspace(1, 8, num=8)).
_HIGH_LEVELS = tuple(np.logspace(1, 8, num=8))
# The fields a loss figure can draw, in the order the default one is picked: a file's
# train/test splits, then a sweep's plain "loss" (and "acc" metric), then the original
# tool's name.
_LOSS_FIELDS = ("train_loss", "test_loss", "loss", "train_acc", "test_acc", "acc",
                "loss_vals")
_CURVES = (("train_loss", "-", "train loss"), ("test_loss", "--", "test loss"),
           ("loss", "-", "loss"))
_ACC_CURVES = (("train_acc", "-", "train accuracy"), ("test_acc", "--", "test accuracy"),
               ("acc", "-", "accuracy"))
_EIG_FIELDS = ("max_eig", "min_eig")
_FORMATS = ("pdf", "png", "svg", "eps", "ps")
#: The formats `landscape plot --format` takes: the figure formats, and ``html`` (the
#: interactive page of landscape.interactive).
PLOT_FORMATS = (*_FORMATS, "html")
_FIELD_LABELS = {
    "train_loss": "train loss", "test_loss": "test loss", "loss": "loss",
    "train_acc": "train accuracy (%)", "test_acc": "test accuracy (%)",
    "acc": "accuracy (%)",
    "max_eig": r"$\lambda_{\max}$", "min_eig": r"$\lambda_{\min}$",
}
_CRITICAL_STYLE = {"min": ("o", "C2"), "sad": ("X", "C1"), "max": ("^", "C3"),
                   "und": ("d", "C7"), "not": ("x", "0.6")}
_HOWTO = {
    "hessian": "run `landscape hessian FILE --density` first",
    "critical": "run `landscape critical FILE` first",
    "trajectory": "sweep the PCA plane of a training trajectory to get one",
    "paths": "compute the paths between two runs with `landscape path` first",
    "plane": "compute the paths with `landscape path ... --plane` to store a plane",
    "saddle": "compute the paths with `landscape path ... --saddle` to refine a saddle",
    "curvature": "train with --set train.curvature.every=N and plot the run's trajectory.h5",
}
# The path methods of a `landscape path` file, in drawing order, and their fixed colours
# (a method not listed here is drawn after them in the next colours).
_PATH_METHODS = ("linear", "curve", "neb")
_PATH_COLORS = {"linear": "C0", "curve": "C1", "neb": "C2"}
# A saddle spectrum whose nonzero |eigenvalues| span at least this ratio is drawn on a
# symlog axis (linear within the eps band).
_SYMLOG_SPAN = 1e3


# ----------------------------------------------------------------------------- style


def figure_size(columns: int = 1, aspect: float = 0.75) -> tuple[float, float]:
  """Figure size in inches for a one- or two-column paper layout.

  ``width = 3.4 in`` (one column) or ``7.0 in`` (two columns, full text width),
  ``height = aspect * width``.

  Args:
    columns: 1 or 2.
    aspect: height / width, > 0.

  Returns:
    ``(width, height)`` in inches, for ``Figure(figsize=...)``.

  Example:
    >>> figure_size(2, aspect=0.5)
    (7.0, 3.5)

  References:
    The column widths of the NeurIPS/ICML/IEEE two-column templates (about 3.25-3.5 in
    and 6.75-7.0 in).
  """
  widths = {1: SINGLE_COLUMN_IN, 2: DOUBLE_COLUMN_IN}
  if columns not in widths:
    raise ConfigError(f"columns={columns!r} is not a paper layout; use columns=1 or 2")
  if not np.isfinite(aspect) or aspect <= 0:
    raise ConfigError(f"aspect={aspect!r} must be a positive height/width ratio, e.g. 0.75")
  width = widths[columns]
  return width, float(width * aspect)


@contextlib.contextmanager
def use_style() -> Iterator[None]:
  """Context manager applying the paper style (``styles/paper.mplstyle``).

  TrueType (Type 42) fonts embedded in PDF/PS, no LaTeX, DejaVu fonts, viridis,
  thin lines, ``bbox_inches="tight"`` at save. Create *and save* figures inside.

  Example:
    >>> with use_style():
    ...   fig = Figure(figsize=figure_size(1)); ax = fig.add_subplot()
    ...   plot_contour(ax, result); fig.savefig("contour.pdf")
  """
  with mstyle.context(str(STYLE_PATH)):
    yield


# ------------------------------------------------------------------- result access


def _name(result: Any) -> str:
  return str(getattr(result, "path", None) or "result")


def _mapping(result: Any, attr: str) -> Mapping[str, Any]:
  return getattr(result, attr, None) or {}


def _grid_of(result: Any) -> Grid:
  """The result's :class:`Grid`; a plain object without ``.grid`` gets one from ``xs``/``ys``."""
  grid = getattr(result, "grid", None)
  if grid is None:
    ys = getattr(result, "ys", None)
    grid = Grid(np.asarray(result.xs, dtype=float).ravel(),
                None if ys is None else np.asarray(ys, dtype=float).ravel())
  return grid


def _ndim(result: Any) -> int:
  return _grid_of(result).ndim


def _coords(result: Any) -> tuple[np.ndarray, np.ndarray | None]:
  grid = _grid_of(result)
  xs = np.asarray(grid.xs, dtype=float).ravel()
  return xs, None if grid.ys is None else np.asarray(grid.ys, dtype=float).ravel()


def _grid(result: Any, what: str, *, min_points: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """The 2-D grid ``(xs, ys)``; a 1-D result or a too small grid is refused."""
  if _ndim(result) != 2:
    raise ConfigError(f"{_name(result)} is a 1-D result, so {what!r} cannot be drawn; "
                      "use plot_1d (kind 'loss1d') or sweep a 2-D plane")
  xs, ys = _coords(result)
  if min(xs.size, ys.size) < min_points:
    raise DataError(f"{_name(result)} has a {ys.size} x {xs.size} grid; {what!r} needs at "
                    f"least {min_points} x {min_points} points (use a heatmap instead)")
  return xs, ys


def _done_for(result: Any, name: str) -> Any:
  """``result.done_for(name)``; for a plain object, the entry of its ``done`` dict covering
  ``name`` (``field_done[name]``, else ``eig_done`` for an eigenvalue map, else ``done``)."""
  done_for = getattr(result, "done_for", None)
  if callable(done_for):
    return done_for(name)
  done = getattr(result, "done", None)
  if done is None or not isinstance(done, Mapping):
    return done  # one mask for every field, or none
  key = _mapping(result, "field_done").get(name)
  if key is None:
    key = "eig_done" if name in _EIG_FIELDS and "eig_done" in done else "done"
  return done.get(key)


def default_field(result: Any) -> str:
  """The field a loss figure draws when none is named.

  The first of ``train_loss``, ``test_loss``, ``loss`` (a sweep without splits),
  ``train_acc``, ``test_acc``, ``acc``, ``loss_vals`` that ``result.fields`` holds;
  ``"train_loss"`` when none is there (drawing it then names the datasets held).

  Args:
    result: a result (see the module docstring).

  Returns:
    The field name.

  Example:
    >>> default_field(ls.surface.evaluate(loss_fn, params, dirs, xs, ys))
    'loss'
  """
  fields = _mapping(result, "fields")
  return next((f for f in _LOSS_FIELDS if f in fields), "train_loss")


def masked_field(result: Any, name: str) -> np.ma.MaskedArray:
  """A field of a result as a float masked array, masked where not computed or not finite.

  The mask is ``~result.done_for(name) | ~isfinite(value)``; masked entries hold NaN, so
  ``.filled(np.nan)`` and the masked array draw the same. A new figure kind reads its
  data through this.

  Args:
    result: a result (see the module docstring).
    name: the field, e.g. ``"train_loss"``, ``"loss"`` or ``"max_eig"``.

  Returns:
    ``(ny, nx)`` or ``(nx,)`` masked float array, ``value[j, i]`` at ``(xs[i], ys[j])``.

  Raises:
    ConfigError: the result has no such field (the message lists those it holds).
    DataError: the field or its done mask does not have the grid's shape.

  Example:
    >>> z = masked_field(surface, "loss"); z.compressed().min()
  """
  fields = _mapping(result, "fields")
  if name not in fields:
    held = ", ".join(sorted(fields)) or "none"
    raise ConfigError(f"{_name(result)} has no {name!r} dataset; datasets it holds: {held}")
  z = np.asarray(fields[name], dtype=float)
  shape = _grid_of(result).shape
  if z.shape != shape:
    raise DataError(f"{_name(result)}: {name!r} has shape {z.shape} but the grid is {shape} "
                    f"{'(nx,)' if len(shape) == 1 else '(ny, nx)'}; the file is inconsistent, "
                    "recompute it")
  bad = ~np.isfinite(z)
  done = _done_for(result, name)
  if done is not None:
    flags = np.asarray(done, dtype=bool)
    if flags.shape != shape:
      raise DataError(f"{_name(result)}: the done mask of {name!r} has shape {flags.shape} "
                      f"but {name!r} has {shape}; the file is inconsistent, recompute it")
    bad |= ~flags
  return np.ma.masked_array(np.where(bad, np.nan, z), mask=bad)


def _group(result: Any, name: str, need: Sequence[str] = ()) -> Mapping[str, Any]:
  groups = _mapping(result, "groups")
  if name not in groups:
    raise ConfigError(f"{_name(result)} has no {name}/ group; {_HOWTO[name]}")
  group = groups[name]
  for key in need:
    if key not in group:
      raise ConfigError(f"{_name(result)} has no {name}/{key} dataset; {_HOWTO[name]}")
  return group


def _has_grid(result: Any) -> bool:
  """Whether the result holds grid coordinates (a `landscape path` file without
  ``--plane`` holds only groups)."""
  grid = getattr(result, "grid", None)
  xs = getattr(result, "xs", None) if grid is None else getattr(grid, "xs", None)
  return xs is not None and np.size(xs) > 0


def _group_attrs(result: Any, name: str) -> Mapping[str, Any]:
  """The attributes of group ``name`` (``"saddle"``, or a nested ``"paths/neb"``).

  Read from ``result.group_attrs``: the entry ``name`` (a nested group keyed
  ``"sub/name"``, as ``result.groups`` keys its nested datasets), else
  ``group_attrs[top][sub]`` when that is a mapping; ``{}`` when the result does not
  expose them (the callers then derive what they need from the datasets).
  """
  attrs = _mapping(result, "group_attrs")
  if isinstance(attrs.get(name), Mapping):
    return attrs[name]
  top, _, sub = name.partition("/")
  nested = attrs.get(top) if sub else None
  value = nested.get(sub) if isinstance(nested, Mapping) else None
  return value if isinstance(value, Mapping) else {}


def _subgroups(group: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
  """The subgroups of a group: ``{"linear": {"t": ..., ...}, ...}``, from the flat
  ``"linear/t"`` keys of :class:`landscape.io.Result` or from nested mappings."""
  out: dict[str, dict[str, Any]] = {}
  for key, value in group.items():
    if isinstance(value, Mapping):
      out.setdefault(str(key), {}).update(value)
    elif "/" in str(key):
      sub, _, rest = str(key).partition("/")
      out.setdefault(sub, {})[rest] = value
  return out


def _path_methods(result: Any) -> dict[str, dict[str, Any]]:
  """The methods of the ``paths`` group holding ``t`` and ``train_loss``, in drawing order
  (linear, curve, neb, then any other by name)."""
  subs = _subgroups(_mapping(result, "groups").get("paths") or {})
  usable = {m: g for m, g in subs.items() if "t" in g and "train_loss" in g}
  order = [m for m in _PATH_METHODS if m in usable] + \
      sorted(m for m in usable if m not in _PATH_METHODS)
  return {m: usable[m] for m in order}


def _path_color(method: str, methods: Sequence[str]) -> str:
  if method in _PATH_COLORS:
    return _PATH_COLORS[method]
  others = [m for m in methods if m not in _PATH_COLORS]
  return f"C{(len(_PATH_COLORS) + others.index(method)) % 10}"


def _attr(attrs: Mapping[str, Any], key: str, cast: Callable[[Any], Any]) -> Any:
  """``cast(attrs[key])`` (bytes decoded, 0-d arrays unwrapped), or None when absent or
  not castable."""
  value = attrs.get(key)
  if value is None:
    return None
  if isinstance(value, bytes):
    value = value.decode()
  if isinstance(value, np.ndarray) and value.size == 1:
    value = value.reshape(()).item()
  try:
    return cast(value)
  except (TypeError, ValueError):
    return None


def _index_text(lower: Any, upper: Any) -> str | None:
  """``"index in [l, u]"``, ``"index ≥ l"`` when the upper bound is unknown (-1)."""
  if lower is None:
    return None
  if upper is None or upper < 0:
    return f"index ≥ {lower}"
  return f"index in [{lower}, {upper}]"


def _axis_labels(result: Any) -> tuple[str, str]:
  kind = str(_mapping(result, "attrs").get("direction_kind", "random"))
  if kind == "target":
    return "interpolation coefficient", "β"
  if kind == "pca":
    return "1st PC", "2nd PC"
  return "α", "β"


def _strings(values: Any, n: int) -> np.ndarray:
  if values is None:
    return np.full(n, "point", dtype=object)
  flat = np.asarray(values).ravel()
  return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in flat], dtype=object)


def _vector(values: ArrayLike, what: str) -> np.ndarray:
  arr = np.asarray(values, dtype=float)
  if arr.ndim != 1:
    raise DataError(f"{what} has shape {arr.shape}; pass a 1-D array")
  return arr


# ------------------------------------------------------------------- drawing helpers


def _edges(c: np.ndarray) -> np.ndarray:
  """Cell edges around grid centres: midpoints inside, mirrored half-steps at the ends."""
  if c.size == 1:
    return np.array([c[0] - 0.5, c[0] + 0.5])
  mid = (c[1:] + c[:-1]) / 2
  return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def _cmap(cmap: str | mcolors.Colormap | None) -> mcolors.Colormap:
  if isinstance(cmap, mcolors.Colormap):
    base = cmap
  else:
    name = cmap or matplotlib.rcParams["image.cmap"]
    try:
      base = matplotlib.colormaps[name]
    except KeyError:
      raise ConfigError(f"unknown colormap {name!r}; use a matplotlib colormap name such as "
                        "'viridis', 'cividis', 'magma' or 'RdBu_r'") from None
  return base.with_extremes(bad=BAD_COLOR)


def _levels(vmin: float, vmax: float, vlevel: float, levels: ArrayLike | None,
            log_levels: bool, num_levels: int) -> np.ndarray:
  """Contour levels: user levels, log-spaced, or the original ``arange(vmin, vmax, vlevel)``."""
  if levels is not None:
    lv = np.asarray(levels, dtype=float).ravel()
    if lv.size == 0 or not np.all(np.isfinite(lv)) or np.any(np.diff(lv) <= 0):
      raise ConfigError(f"levels={levels!r} must be finite and strictly increasing")
    return lv
  if not (np.isfinite(vmin) and np.isfinite(vmax) and vmax > vmin):
    raise ConfigError(f"vmin={vmin!r}, vmax={vmax!r}: need finite vmin < vmax")
  if log_levels:
    if vmin <= 0:
      raise ConfigError(f"vmin={vmin!r} must be > 0 for log_levels=True")
    if int(num_levels) < 2:
      raise ConfigError(f"num_levels={num_levels!r} must be at least 2")
    return np.geomspace(vmin, vmax, int(num_levels))
  if not (np.isfinite(vlevel) and vlevel > 0):
    raise ConfigError(f"vlevel={vlevel!r} must be a positive level spacing, e.g. 0.5")
  return np.arange(vmin, vmax, vlevel)


def _bad_handle(mask: np.ndarray) -> Patch:
  return Patch(facecolor=BAD_COLOR, edgecolor="0.6", linewidth=0.4,
               label=f"not computed / non-finite ({int(mask.sum())} of {mask.size})")


def _bad_overlay(ax: Axes, xs: np.ndarray, ys: np.ndarray, mask: np.ndarray):
  """Grey grid cells wherever a contour cannot be drawn; ``(mesh, [legend handle])``.

  A contour interpolates inside each grid quad, so a quad with a masked corner is
  (partly) undrawn: those quads are shaded under the contours (zorder below them).
  """
  if not mask.any():
    return None, []
  quad = mask[:-1, :-1] | mask[1:, :-1] | mask[:-1, 1:] | mask[1:, 1:]
  shade = np.ma.masked_array(np.ones(quad.shape), mask=~quad)
  mesh = ax.pcolormesh(xs, ys, shade, shading="flat", vmin=0, vmax=1,
                       cmap=mcolors.ListedColormap([BAD_COLOR]), zorder=0.9, rasterized=True)
  return mesh, [_bad_handle(mask)]


def _legend(ax: Axes, handles: Sequence[Any]):
  """A legend above the axes, out of the way of the surface."""
  if not handles:
    return None
  return ax.legend(handles=list(handles), loc="lower center", bbox_to_anchor=(0.5, 1.01),
                   ncol=2, fontsize="x-small", frameon=False, borderaxespad=0.0)


def _note(ax: Axes, text: str):
  put = getattr(ax, "text2D", ax.text)  # a 3-D Axes places axes-fraction text with text2D
  return put(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center",
             fontsize="small", color="0.35")


def _draw_contour(ax: Axes, result: Any, field: str | None, levels: np.ndarray, labels: bool,
                  high_levels: ArrayLike | None = None, **kw: Any) -> dict[str, Any]:
  xs, ys = _grid(result, "contour", min_points=2)
  field = default_field(result) if field is None else field
  z = masked_field(result, field)
  mask = np.ma.getmaskarray(z)
  bad, handles = _bad_overlay(ax, xs, ys, mask)
  cs = ax.contour(xs, ys, z, levels=levels, **kw)
  art: dict[str, Any] = {"contour": cs, "contour_high": None, "clabels": [], "bad": bad,
                         "bad_handles": handles, "note": None}
  if high_levels is not None:
    high = np.asarray(high_levels, dtype=float).ravel()
    high = high[high > levels[-1]]
    if high.size:
      art["contour_high"] = ax.contour(xs, ys, z, levels=high, colors="0.55",
                                       linewidths=0.6)
  if z.count() == 0:
    art["note"] = _note(ax, f"no finite {field} values to draw")
  elif labels:
    art["clabels"] = list(ax.clabel(cs, inline=True, fontsize="x-small", fmt="%g"))
    if art["contour_high"] is not None:
      art["clabels"] += list(ax.clabel(art["contour_high"], inline=True, fontsize="x-small",
                                       fmt="%g"))
  xlabel, ylabel = _axis_labels(result)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  return art


def _norm(z: np.ma.MaskedArray, vmin: float | None, vmax: float | None,
          log: bool) -> mcolors.Normalize:
  """Colour limits from the user or the finite data; never degenerate, never NaN."""
  finite = z.compressed()
  if log:
    finite = finite[finite > 0]
  if vmin is not None and vmax is not None and not vmax > vmin:
    raise ConfigError(f"vmin={vmin!r}, vmax={vmax!r}: need vmin < vmax")
  if log and vmin is not None and vmin <= 0:
    raise ConfigError(f"vmin={vmin!r} must be > 0 for a log colour scale")
  lo = vmin if vmin is not None else (finite.min() if finite.size else (0.1 if log else 0.0))
  hi = vmax if vmax is not None else (finite.max() if finite.size else lo)
  if not hi > lo:  # constant data, or a one-sided user limit beyond the data: widen,
    if vmin is not None:  # keeping the limit the user set
      hi = lo * 10 if log else lo + 1.0
    elif vmax is not None:
      lo = hi / 10 if log else hi - 1.0
    else:
      lo, hi = (lo / 10, hi * 10) if log else (lo - 0.5, hi + 0.5)
  return mcolors.LogNorm(lo, hi) if log else mcolors.Normalize(lo, hi)


def _heat(ax: Axes, xs: np.ndarray, ys: np.ndarray, z: np.ma.MaskedArray, *,
          cmap: Any, norm: mcolors.Normalize, label: str, colorbar: bool,
          extend: str = "neither", xylabels: tuple[str, str] = ("α", "β"),
          **kw: Any) -> dict[str, Any]:
  """A cell-centred heat map (cells span midpoints, so non-uniform grids are exact)."""
  mesh = ax.pcolormesh(_edges(xs), _edges(ys), z, cmap=_cmap(cmap), norm=norm,
                       **{"shading": "flat", "rasterized": True, **kw})
  cbar = ax.figure.colorbar(mesh, ax=ax, label=label, extend=extend) if colorbar else None
  mask = np.ma.getmaskarray(z)
  legend = _legend(ax, [_bad_handle(mask)] if mask.any() else [])
  note = _note(ax, f"no finite {label} values to draw") if z.count() == 0 else None
  ax.set_xlabel(xylabels[0])
  ax.set_ylabel(xylabels[1])
  return {"mesh": mesh, "colorbar": cbar, "legend": legend, "note": note}


def _critical_style(kind: str) -> tuple[str, str]:
  return _CRITICAL_STYLE.get(kind.lower()[:3], ("D", "C4"))


def _kind_order(kinds: np.ndarray) -> list[str]:
  rank = {"min": 0, "sad": 1, "max": 2, "und": 3, "not": 4}
  return sorted(set(kinds), key=lambda k: (rank.get(k.lower()[:3], 3), k))


# ------------------------------------------------------------------------- 1-D plots


def plot_1d(ax: Axes, result: Any, *, log: bool = False, acc: bool = True,
            loss_max: float | None = None, **kw: Any) -> dict[str, Any]:
  """Loss (and accuracy) along one direction: ``f(α) = L(θ + α d)``.

  Train loss solid, test loss dashed on ``ax``; accuracies (percent) on a twin axis
  (solid/dashed), as the original ``plot_1d_loss_err``. A sweep without splits (a 1-D
  :class:`landscape.surface.Surface`) draws its ``loss`` solid, and its ``acc`` metric,
  if any, on the twin axis. For a *target* direction ``d = θ₂ − θ₁`` the x axis is the
  interpolation coefficient (Goodfellow et al.).

  Args:
    ax: the Axes for the losses.
    result: a 1-D result: ``xs`` (nx,), ``fields`` with ``train_loss`` and/or
      ``test_loss`` (nx,) and optionally ``train_acc``, ``test_acc`` (nx,); or ``loss``
      and optionally ``acc`` (nx,).
    log: log-scale loss axis.
    acc: draw accuracies on a twin axis when the result has them.
    loss_max: upper limit of the loss axis (the original's ``--loss_max``); None: auto.
    **kw: passed to every ``ax.plot``.

  Returns:
    ``{"train_loss", "test_loss", "loss", "train_acc", "test_acc", "acc": Line2D
    (present ones), "ax_acc": twin Axes or None, "legend": Legend}``.

  Example:
    >>> art = plot_1d(ax, ls.io.load("interp.h5"), log=True)

  References:
    Goodfellow, Vinyals, Saxe, "Qualitatively characterizing neural network optimization
    problems", ICLR 2015. Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss
    Landscape of Neural Nets", NeurIPS 2018.
  """
  if _ndim(result) != 1:
    raise ConfigError(f"{_name(result)} is a 2-D result; plot_1d (kind 'loss1d') needs a 1-D "
                      "sweep; use plot_contour or plot_heatmap")
  xs, _ = _coords(result)
  fields = _mapping(result, "fields")
  art: dict[str, Any] = {"ax_acc": None}
  handles = []
  for name, style, label in _CURVES:
    if name in fields:
      art[name], = ax.plot(xs, masked_field(result, name).filled(np.nan),
                           **{"color": "C0", "ls": style, "label": label, **kw})
      handles.append(art[name])
  if not handles:
    raise ConfigError(f"{_name(result)} has no 'train_loss', 'test_loss' or 'loss' dataset "
                      "to plot")
  if log:
    ax.set_yscale("log")
  if loss_max is not None:
    ax.set_ylim(top=loss_max)
  ax.set_xlabel(_axis_labels(result)[0])
  ax.set_ylabel("loss", color="C0")
  if acc and any(name in fields for name, _, _ in _ACC_CURVES):
    ax2 = ax.twinx()
    for name, style, label in _ACC_CURVES:
      if name in fields:
        art[name], = ax2.plot(xs, masked_field(result, name).filled(np.nan),
                              **{"color": "C3", "ls": style, "label": label, **kw})
        handles.append(art[name])
    ax2.set_ylim(0, 100)
    ax2.set_ylabel("accuracy (%)", color="C3")
    art["ax_acc"] = ax2
  art["legend"] = _legend(ax, handles)
  return art


def plot_1d_overlay(ax: Axes, curves: Mapping[str, tuple[ArrayLike, ArrayLike]], *,
                    log: bool = False, xlabel: str = "α", ylabel: str = "loss",
                    **kw: Any) -> dict[str, Any]:
  """Several 1-D curves on one Axes: random directions, or several losses.

  Each curve is ``label -> (xs, values)`` with ``values[i] = f(xs[i])``; NaN values
  break the line (diverged or uncomputed points).

  Args:
    ax: the Axes.
    curves: mapping label -> ``(xs (n,), values (n,))``; n may differ per curve.
    log: log-scale y axis.
    xlabel, ylabel: axis labels.
    **kw: passed to every ``ax.plot``.

  Returns:
    ``{label: Line2D, ..., "legend": Legend}``.

  Example:
    >>> plot_1d_overlay(ax, {f"dir {k}": (r.xs, r.fields["train_loss"]) for k, r in runs})

  References:
    Li et al., "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018 (Fig. 2,
    several random directions agree).
  """
  if not curves:
    raise DataError("curves is empty; pass a mapping label -> (xs, values)")
  art: dict[str, Any] = {}
  for label, (x, y) in curves.items():
    x, y = _vector(x, f"xs of curve {label!r}"), _vector(y, f"values of curve {label!r}")
    if x.shape != y.shape:
      raise DataError(f"curve {label!r}: xs has shape {x.shape} but values {y.shape}; "
                      "pass equal lengths")
    art[label], = ax.plot(x, y, **{"label": str(label), **kw})
  if log:
    ax.set_yscale("log")
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  art["legend"] = ax.legend(fontsize="x-small")
  return art


# ------------------------------------------------------------------------- 2-D plots


def plot_contour(ax: Axes, result: Any, *, field: str | None = None, vmin: float = 0.1,
                 vmax: float = 10.0, vlevel: float = 0.5, levels: ArrayLike | None = None,
                 log_levels: bool = False, num_levels: int = 20, labels: bool = True,
                 **kw: Any) -> dict[str, Any]:
  """Contour lines of a 2-D surface ``f(α, β) = L(θ + α δ + β η)``.

  Levels as the original ``plot_2D.py``: ``np.arange(vmin, vmax, vlevel)``; or
  ``np.geomspace(vmin, vmax, num_levels)`` with ``log_levels``; or ``levels`` as
  given. matplotlib keeps every level; levels outside the data range draw nothing.
  Masked points (not done, or not finite) are grey cells with a legend entry.

  Args:
    ax: the Axes.
    result: a 2-D result (a Surface, a Result, see the module docstring): ``xs`` (nx,),
      ``ys`` (ny,), ``fields[field]`` (ny, nx) with ``value[j, i]`` at ``(xs[i], ys[j])``;
      the points ``done_for(field)`` marks not computed are masked.
    field: the dataset to draw; None: :func:`default_field` (``train_loss`` of a file,
      ``loss`` of a sweep without splits).
    vmin, vmax, vlevel: the level range and spacing (original defaults 0.1, 10, 0.5).
    levels: explicit increasing levels (overrides the above).
    log_levels: log-spaced levels, ``num_levels`` of them from vmin to vmax.
    num_levels: number of log-spaced levels.
    labels: label the lines (``clabel``).
    **kw: passed to ``ax.contour`` (e.g. ``cmap``, ``linewidths``).

  Returns:
    ``{"contour": QuadContourSet, "clabels": [Text], "bad": QuadMesh | None,
    "legend": Legend | None, "note": Text | None, ...}``.

  Example:
    >>> art = plot_contour(ax, res, vmin=0.1, vmax=10, vlevel=0.5)
    >>> art["contour"].levels  # np.arange(0.1, 10, 0.5)

  References:
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets",
    NeurIPS 2018 (Figs. 5, 6).
  """
  lv = _levels(vmin, vmax, vlevel, levels, log_levels, num_levels)
  art = _draw_contour(ax, result, field, lv, labels, **kw)
  art["legend"] = _legend(ax, art["bad_handles"])
  return art


def plot_contourf(ax: Axes, result: Any, *, field: str | None = None, vmin: float = 0.1,
                  vmax: float = 10.0, vlevel: float = 0.5, levels: ArrayLike | None = None,
                  log_levels: bool = False, num_levels: int = 20, colorbar: bool = True,
                  **kw: Any) -> dict[str, Any]:
  """Filled contours of a 2-D surface, with a colour bar.

  Same levels as :func:`plot_contour`; values beyond the first/last level take the
  colour map's under/over colours (``extend="both"``) instead of staying blank, so a
  blank (grey) region means masked points only. Log levels use a log colour norm.

  Args:
    ax: the Axes.
    result: a 2-D result (see :func:`plot_contour`).
    field, vmin, vmax, vlevel, levels, log_levels, num_levels: as :func:`plot_contour`.
    colorbar: add a colour bar.
    **kw: passed to ``ax.contourf`` (e.g. ``cmap``).

  Returns:
    ``{"contourf": QuadContourSet, "colorbar": Colorbar | None, "bad": QuadMesh | None,
    "legend": Legend | None, "note": Text | None}``.

  Example:
    >>> art = plot_contourf(ax, res, log_levels=True, vmin=0.01, vmax=100)

  References:
    Li et al., "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018.
  """
  lv = _levels(vmin, vmax, vlevel, levels, log_levels, num_levels)
  xs, ys = _grid(result, "contourf", min_points=2)
  field = default_field(result) if field is None else field
  z = masked_field(result, field)
  bad, handles = _bad_overlay(ax, xs, ys, np.ma.getmaskarray(z))
  if log_levels and "norm" not in kw:
    kw["norm"] = mcolors.LogNorm(lv[0], lv[-1])
  if lv.size < 2:  # contourf needs two levels to fill between
    lv = np.array([lv[0], lv[0] + (vlevel if np.isfinite(vlevel) and vlevel > 0 else 1.0)])
  cf = ax.contourf(xs, ys, z, levels=lv, extend="both", **kw)
  label = _FIELD_LABELS.get(field, field)
  cbar = ax.figure.colorbar(cf, ax=ax, label=label) if colorbar else None
  note = _note(ax, f"no finite {field} values to draw") if z.count() == 0 else None
  xlabel, ylabel = _axis_labels(result)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  return {"contourf": cf, "colorbar": cbar, "bad": bad, "legend": _legend(ax, handles),
          "note": note}


def plot_heatmap(ax: Axes, result: Any, *, field: str | None = None,
                 vmin: float | None = None, vmax: float | None = None, log: bool = False,
                 cmap: Any = None, colorbar: bool = True, **kw: Any) -> dict[str, Any]:
  """Heat map of a 2-D surface: one cell per grid point, origin lower, colour bar.

  Cell ``(j, i)`` is centred on ``(xs[i], ys[j])`` and spans the midpoints to its
  neighbours, so non-uniform and non-square grids are drawn at their true coordinates
  (``pcolormesh``, not an ``imshow`` of indices). Masked points take the light-grey
  "bad" colour and a legend entry.

  Args:
    ax: the Axes.
    result: a 2-D result (see :func:`plot_contour`); a 1 x n grid is allowed.
    field: the dataset to draw; None: :func:`default_field`.
    vmin, vmax: colour limits; None: the finite data range (the original used 0.1, 10).
    log: log colour scale (non-positive values are drawn as bad).
    cmap: colour map name or object; None: the style's (viridis).
    colorbar: add a colour bar.
    **kw: passed to ``ax.pcolormesh``.

  Returns:
    ``{"mesh": QuadMesh (get_array() is the masked (ny, nx) data), "colorbar",
    "legend", "note"}``.

  Example:
    >>> art = plot_heatmap(ax, res, field="test_loss", vmax=5)

  References:
    Li et al., "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018.
  """
  xs, ys = _grid(result, "heatmap")
  field = default_field(result) if field is None else field
  z = masked_field(result, field)
  return _heat(ax, xs, ys, z, cmap=cmap, norm=_norm(z, vmin, vmax, log),
               label=_FIELD_LABELS.get(field, field), colorbar=colorbar,
               xylabels=_axis_labels(result), **kw)


def plot_surface3d(ax3d: Axes, result: Any, *, field: str | None = None,
                   zmax: float | None = None, log: bool = False, cmap: Any = None,
                   colorbar: bool = True, **kw: Any) -> dict[str, Any]:
  """3-D surface plot of ``f(α, β)``, clipped at ``zmax`` (the original's ``--zlim``).

  Drawn height is ``min(f, zmax)``, or ``log10`` of it with ``log``. Masked points
  leave holes (their quads are not drawn).

  Args:
    ax3d: a 3-D Axes (``fig.add_subplot(projection="3d")``).
    result: a 2-D result (see :func:`plot_contour`).
    field: the dataset to draw; None: :func:`default_field`.
    zmax: clip heights above this value; None: no clipping.
    log: draw ``log10`` of the (clipped) values.
    cmap: colour map; None: the style's.
    colorbar: add a colour bar.
    **kw: passed to ``plot_surface`` (e.g. ``rcount``, ``ccount``).

  Returns:
    ``{"surface": Poly3DCollection | None, "colorbar", "note"}``.

  Example:
    >>> ax3d = fig.add_subplot(projection="3d"); plot_surface3d(ax3d, res, zmax=10)

  References:
    Li et al., "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018 (Fig. 1).
  """
  if getattr(ax3d, "name", "") != "3d":
    raise ConfigError("plot_surface3d needs a 3-D Axes; create it with "
                      "fig.add_subplot(projection='3d')")
  xs, ys = _grid(result, "surface3d", min_points=2)
  field = default_field(result) if field is None else field
  height = masked_field(result, field).filled(np.nan)
  if zmax is not None:
    height = np.minimum(height, float(zmax))
  label = _FIELD_LABELS.get(field, field)
  if log:
    with np.errstate(divide="ignore", invalid="ignore"):
      height = np.log10(height)
    label = f"log10 {label}"
  height = np.where(np.isfinite(height), height, np.nan)
  xlabel, ylabel = _axis_labels(result)
  ax3d.set_xlabel(xlabel)
  ax3d.set_ylabel(ylabel)
  ax3d.set_zlabel(label)
  if not np.isfinite(height).any():
    return {"surface": None, "colorbar": None,
            "note": _note(ax3d, f"no finite {field} values to draw")}
  lo, hi = np.nanmin(height), np.nanmax(height)
  hi = hi if hi > lo else lo + 1.0
  x, y = np.meshgrid(xs, ys)
  surf = ax3d.plot_surface(x, y, np.ma.masked_invalid(height), cmap=_cmap(cmap), vmin=lo,
                           vmax=hi, **{"linewidth": 0, "antialiased": False,
                                       "rasterized": True, **kw})
  cbar = ax3d.figure.colorbar(surf, ax=ax3d, shrink=0.55, pad=0.2) if colorbar else None
  return {"surface": surf, "colorbar": cbar, "note": None}


def plot_trajectory(ax: Axes, result: Any, *, field: str | None = None, vmin: float = 0.1,
                    vmax: float = 10.0, vlevel: float = 0.5, levels: ArrayLike | None = None,
                    log_levels: bool = False, num_levels: int = 20,
                    high_levels: ArrayLike | None = _HIGH_LEVELS, labels: bool = True,
                    **kw: Any) -> dict[str, Any]:
  """Optimizer path projected on the PCA plane, over the loss contours.

  The trajectory ``θ_t`` projected onto the two principal directions of
  ``{θ_t − θ_final}`` (``trajectory/proj_xcoord``, ``proj_ycoord``) as a line with
  markers, start (circle) and end (star) marked; axes read "1st PC: 87.12 %" /
  "2nd PC: 5.34 %" from ``trajectory/explained_variance_ratio`` as the original
  ``plot_contour_trajectory``, which also draws grey log-spaced contours
  ``10^1 ... 10^8`` above ``vmax`` (``high_levels``; None: off).

  Args:
    ax: the Axes.
    result: a 2-D result with a ``trajectory`` group: ``proj_xcoord`` (T,),
      ``proj_ycoord`` (T,), optional ``explained_variance_ratio`` (2,), ``epochs`` (T,).
    field, vmin, vmax, vlevel, levels, log_levels, num_levels, labels: contours, as
      :func:`plot_contour`.
    high_levels: extra contour levels drawn in grey where above the main levels.
    **kw: passed to the path's ``ax.plot``.

  Returns:
    ``{"contour", "contour_high", "path": Line2D (T points), "start", "end": Line2D,
    "legend", ...}``.

  Example:
    >>> art = plot_trajectory(ax, ls.io.load("results/x/pca_plane.h5"))

  References:
    Li et al., "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018 (Sec. 7,
    Fig. 9).
  """
  traj = _group(result, "trajectory", need=("proj_xcoord", "proj_ycoord"))
  px = _vector(traj["proj_xcoord"], "trajectory/proj_xcoord")
  py = _vector(traj["proj_ycoord"], "trajectory/proj_ycoord")
  if px.shape != py.shape or px.size == 0:
    raise DataError(f"{_name(result)}: trajectory/proj_xcoord has shape {px.shape} and "
                    f"proj_ycoord {py.shape}; they must be equal and non-empty")
  lv = _levels(vmin, vmax, vlevel, levels, log_levels, num_levels)
  art = _draw_contour(ax, result, field, lv, labels, high_levels=high_levels)
  epochs = traj.get("epochs")
  first, last = ("", "") if epochs is None or len(epochs) != px.size else \
      (f" (epoch {np.asarray(epochs)[0]:g})", f" (epoch {np.asarray(epochs)[-1]:g})")
  style = {"color": "C3", "marker": ".", "markersize": 3, "linewidth": 1.0, **kw}
  art["path"], = ax.plot(px, py, **{"label": "trajectory", "zorder": 3, **style})
  art["start"], = ax.plot(px[:1], py[:1], "o", color="C3", markerfacecolor="white",
                          markersize=5, label="start" + first, zorder=4)
  art["end"], = ax.plot(px[-1:], py[-1:], "*", color="k", markersize=8, label="end" + last,
                        zorder=4)
  ratio = traj.get("explained_variance_ratio")
  if ratio is not None and np.asarray(ratio).size >= 2:
    ratio = np.asarray(ratio, dtype=float).ravel()
    ax.set_xlabel("1st PC: %.2f %%" % (ratio[0] * 100))
    ax.set_ylabel("2nd PC: %.2f %%" % (ratio[1] * 100))
  art["legend"] = _legend(ax, [art["path"], art["start"], art["end"], *art["bad_handles"]])
  return art


# ------------------------------------------------------------------ curvature plots


_UNCONVERGED_COLOR = "0.6"  # mid grey, hatched: a map point Lanczos did not converge at
_CONVERGED_ONLY = " (converged points only)"


def _unconverged(result: Any, mask: np.ndarray) -> tuple[np.ndarray | None, float | None]:
  """Map points drawn now (not in ``mask``) that missed the file's tolerance.

  ``(unconverged, tol)``: a bool array, or ``(None, None)`` when nothing is masked for it
  (no ``curvature_map/tol`` or NaN, or residuals not stored).
  """
  tol = stored_map_tol(result)
  if tol is None:
    return None, None
  ok = eig_converged(_mapping(result, "fields"), tol)
  if ok is None:
    return None, None
  return np.asarray(~ok, dtype=bool).reshape(mask.shape) & ~mask, tol


def _mask_unconverged(ax: Axes, result: Any, values: np.ma.MaskedArray, draw: Callable,
                      label: str, two_d: bool) -> dict[str, Any]:
  """Draw ``values`` with unconverged map points masked (2-D: hatched, with a legend).

  ``draw(values, label)`` draws the (re-masked) values and returns the artists dict;
  ``unconverged`` (bool array or None) and ``unconverged_overlay`` are added to it.
  """
  mask = np.ma.getmaskarray(values)
  bad, tol = _unconverged(result, mask)
  if bad is None or not bad.any():
    art = draw(values, label)
    art.update(unconverged=bad, unconverged_overlay=None)
    return art
  values = np.ma.masked_array(np.where(bad, np.nan, values.filled(np.nan)), mask=mask | bad)
  art = draw(values, label + _CONVERGED_ONLY)
  art["unconverged"], art["unconverged_overlay"] = bad, None
  if not two_d:
    return art
  xs, ys = _coords(result)
  shade = np.ma.masked_array(np.ones(bad.shape), mask=~bad)
  art["unconverged_overlay"] = ax.pcolor(
      _edges(xs), _edges(ys), shade, cmap=mcolors.ListedColormap([_UNCONVERGED_COLOR]),
      vmin=0, vmax=1, hatch="//", edgecolor="0.3", linewidth=0.0, zorder=1.5)
  handle = Patch(facecolor=_UNCONVERGED_COLOR, edgecolor="0.3", hatch="//", linewidth=0.4,
                 label=f"not converged (r > {tol:g}·|λmax|) ({int(bad.sum())} of {bad.size})")
  handles = [_bad_handle(mask)] if mask.any() else []
  art["legend"] = _legend(ax, [*handles, handle])
  return art


def plot_eig_ratio(ax: Axes, result: Any, *, signed: bool = False, cmap: Any = None,
                   colorbar: bool = True, **kw: Any) -> dict[str, Any]:
  """Convexity map: ``|λ_min / λ_max|`` of the Hessian at each grid point.

  Li et al. (2018, Fig. 7) map ``|λ_min/λ_max|``: near 0 the surface is (almost)
  convex along every direction, large values mean strong negative curvature. The
  absolute ratio is clipped to ``[0, 1]`` on a perceptually uniform map (viridis);
  ``signed=True`` draws ``λ_min/λ_max`` clipped to ``[-1, 1]`` on a diverging map
  centred at 0 (RdBu_r). Points where either eigenvalue is masked or the ratio is not
  finite (``λ_max = 0``) are bad. Points that missed the file's residual tolerance
  (``curvature_map/tol``, :func:`landscape.grid.eig_converged`) are masked too and drawn
  grey and hatched, with a legend entry, and the colour bar says "converged points only";
  nothing more is masked when the tolerance is NaN or missing or the residuals are not
  stored. A 1-D result draws the ratio as a line (unconverged points left out).

  Args:
    ax: the Axes.
    result: a result with ``fields["min_eig"]``, ``fields["max_eig"]`` (ny, nx) or (nx,);
      optional ``done["eig_done"]``, ``fields["max_eig_residual"]``,
      ``fields["min_eig_residual"]`` and ``groups["curvature_map"]["tol"]``.
    signed: draw the signed ratio instead of its absolute value.
    cmap: colour map; None: viridis (absolute) or RdBu_r (signed).
    colorbar: add a colour bar (2-D).
    **kw: passed to ``pcolormesh`` (2-D) or ``plot`` (1-D).

  Returns:
    2-D: ``{"mesh" (get_array() = clipped ratio, masked), "colorbar", "legend", "note",
    "unconverged" (bool array of the points masked for convergence, or None),
    "unconverged_overlay" (the hatched PolyCollection, or None)}``;
    1-D: ``{"line": Line2D, "unconverged"}``.

  Example:
    >>> art = plot_eig_ratio(ax, res)

  References:
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets",
    NeurIPS 2018 (Sec. 6, Fig. 7).
  """
  lo, hi = masked_field(result, "min_eig"), masked_field(result, "max_eig")
  with np.errstate(divide="ignore", invalid="ignore"):
    ratio = lo.filled(np.nan) / hi.filled(np.nan)
  bad = ~np.isfinite(ratio)
  clip = (-1.0, 1.0) if signed else (0.0, 1.0)
  values = np.clip(ratio if signed else np.abs(ratio), *clip)
  values = np.ma.masked_array(np.where(bad, np.nan, values), mask=bad)
  label = r"$\lambda_{\min} / \lambda_{\max}$" if signed else \
      r"$|\lambda_{\min} / \lambda_{\max}|$"
  if _ndim(result) == 1:
    def draw_line(v, text):
      line, = ax.plot(_coords(result)[0], v.filled(np.nan), **kw)
      ax.set_ylim(*clip)
      ax.set_xlabel(_axis_labels(result)[0])
      ax.set_ylabel(text)
      return {"line": line}
    return _mask_unconverged(ax, result, values, draw_line, label, two_d=False)
  xs, ys = _grid(result, "eig_ratio")

  def draw(v, text):
    return _heat(ax, xs, ys, v, cmap=cmap or ("RdBu_r" if signed else "viridis"),
                 norm=mcolors.Normalize(*clip), label=text, colorbar=colorbar,
                 extend="both" if signed else "max", xylabels=_axis_labels(result), **kw)
  return _mask_unconverged(ax, result, values, draw, label, two_d=True)


def plot_eig_map(ax: Axes, result: Any, which: str = "max_eig", *, cmap: Any = None,
                 colorbar: bool = True, **kw: Any) -> dict[str, Any]:
  """Map of one extreme Hessian eigenvalue over the grid (``max_eig`` or ``min_eig``).

  Values that take both signs are drawn on a diverging map centred at 0 (RdBu_r,
  symmetric limits ``±max|λ|``) so the sign of the curvature reads at a glance;
  one-signed values on viridis. A 1-D result draws a line. Points that missed the file's
  residual tolerance are masked and hatched as in :func:`plot_eig_ratio`.

  Args:
    ax: the Axes.
    result: a result with ``fields[which]`` (ny, nx) or (nx,); optional residuals and
      ``curvature_map/tol`` as :func:`plot_eig_ratio`.
    which: ``"max_eig"`` or ``"min_eig"``.
    cmap: colour map; None: chosen as above.
    colorbar: add a colour bar (2-D).
    **kw: passed to ``pcolormesh`` (2-D) or ``plot`` (1-D).

  Returns:
    2-D: ``{"mesh", "colorbar", "legend", "note", "unconverged", "unconverged_overlay"}``;
    1-D: ``{"line": Line2D, "unconverged"}``.

  Example:
    >>> plot_eig_map(ax, res, "min_eig")

  References:
    Li et al., "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018 (Sec. 6).
  """
  if which not in _EIG_FIELDS:
    raise unknown_name("eigenvalue map", which, _EIG_FIELDS)
  z = masked_field(result, which)
  label = _FIELD_LABELS[which]
  if _ndim(result) == 1:
    def draw_line(v, text):
      line, = ax.plot(_coords(result)[0], v.filled(np.nan), **kw)
      ax.axhline(0.0, color="0.6", linewidth=0.5)
      ax.set_xlabel(_axis_labels(result)[0])
      ax.set_ylabel(text)
      return {"line": line}
    return _mask_unconverged(ax, result, z, draw_line, label, two_d=False)
  xs, ys = _grid(result, "eig_map")

  def draw(v, text):
    finite = v.compressed()
    two_signed = finite.size > 0 and finite.min() < 0 < finite.max()
    if two_signed:
      bound = float(np.abs(finite).max())
      norm: mcolors.Normalize = mcolors.Normalize(-bound, bound)
    else:
      norm = _norm(v, None, None, False)
    return _heat(ax, xs, ys, v, cmap=cmap or ("RdBu_r" if two_signed else "viridis"),
                 norm=norm, label=text, colorbar=colorbar, xylabels=_axis_labels(result),
                 **kw)
  return _mask_unconverged(ax, result, z, draw, label, two_d=True)


def plot_density(ax: Axes, result: Any, *, floor: float | None = None,
                 eigenvalues: bool = True, **kw: Any) -> dict[str, Any]:
  """Hessian eigenvalue density on a log-scale y axis, extreme eigenvalues marked.

  Draws ``max(φ(t), floor)`` against ``t`` (``hessian/density`` over
  ``hessian/density_grid``, the Gaussian-smoothed stochastic Lanczos quadrature
  estimate), with the floor (default ``1e-8 · max φ``) keeping empty regions on the
  log axis; the computed top/bottom eigenvalues are vertical lines, and the trace
  estimate ``tr H ± stderr`` is noted when stored.

  Args:
    ax: the Axes.
    result: a result with a ``hessian`` group (``density_grid`` (g,), ``density`` (g,),
      optional ``eigenvalues_largest`` (k,), ``eigenvalues_smallest`` (k,), ``trace``,
      ``trace_stderr``), or that group itself as a mapping.
    floor: smallest density drawn; None: ``1e-8`` times the largest density.
    eigenvalues: mark the stored extreme eigenvalues.
    **kw: passed to the density's ``ax.plot``.

  Returns:
    ``{"density": Line2D, "largest": [Line2D], "smallest": [Line2D], "trace": Text | None,
    "legend": Legend}``.

  Example:
    >>> art = plot_density(ax, res); art["density"].axes.get_yscale()
    'log'

  References:
    Ghorbani, Krishnan, Xiao, "An Investigation into Neural Net Optimization via Hessian
    Eigenvalue Density", ICML 2019. Yao, Gholami, Keutzer, Mahoney, "PyHessian: Neural
    Networks Through the Lens of the Hessian", IEEE BigData 2020.
  """
  group = result if isinstance(result, Mapping) else \
      _group(result, "hessian", need=("density_grid", "density"))
  if "density" not in group or "density_grid" not in group:
    raise ConfigError("the hessian group has no density/density_grid; "
                      f"{_HOWTO['hessian']}")
  grid = _vector(group["density_grid"], "hessian/density_grid")
  dens = _vector(group["density"], "hessian/density")
  if grid.shape != dens.shape:
    raise DataError(f"hessian/density has shape {dens.shape} but density_grid "
                    f"{grid.shape}; they must match")
  finite = dens[np.isfinite(dens) & (dens > 0)]
  if floor is None:
    floor = 1e-8 * finite.max() if finite.size else 1e-12
  elif not floor > 0:
    raise ConfigError(f"floor={floor!r} must be > 0 for a log-scale density")
  line, = ax.plot(grid, np.maximum(np.where(np.isfinite(dens), dens, floor), floor),
                  **{"color": "C0", "label": "density", **kw})
  ax.set_yscale("log")
  ax.set_xlabel("eigenvalue")
  ax.set_ylabel("density (log scale)")
  art: dict[str, Any] = {"density": line, "largest": [], "smallest": [], "trace": None}
  if eigenvalues:
    for key, color, style, label in (("eigenvalues_largest", "C3", "--", "top"),
                                     ("eigenvalues_smallest", "C2", ":", "bottom")):
      vals = np.asarray(group.get(key, []), dtype=float).ravel()
      vals = vals[np.isfinite(vals)]
      for n, v in enumerate(vals):
        art[key.split("_")[1]].append(ax.axvline(
            v, color=color, linestyle=style, linewidth=0.8,
            label=f"{label}-{vals.size} eigenvalues" if n == 0 else None))
  if "trace" in group:
    trace = float(np.asarray(group["trace"]))
    err = group.get("trace_stderr")
    text = f"tr H ≈ {trace:.4g}" + ("" if err is None else f" ± {float(np.asarray(err)):.2g}")
    art["trace"] = ax.text(0.98, 0.97, text, transform=ax.transAxes, ha="right", va="top",
                           fontsize="x-small")
  art["legend"] = ax.legend(loc="lower center", fontsize="x-small")
  return art


_OPERATOR_LABELS = {"hessian": "Hessian H", "ggn": "Gauss-Newton G", "fisher": "empirical Fisher F",
                    "residual": "residual R = H - G"}


def _operator_groups(group: Mapping[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
  """Operator name -> its datasets, for ``hessian`` (the group's own) and each
  ``hessian/OPERATOR/`` subgroup, under ``prefix`` (e.g. ``"blocks/Conv_0/"``)."""
  out: dict[str, dict[str, Any]] = {}
  for op in _OPERATOR_LABELS:
    head = prefix if op == "hessian" else f"{op}/{prefix}"
    sub = {k[len(head):]: v for k, v in group.items()
           if k.startswith(head) and "/" not in k[len(head):]}
    if sub:
      out[op] = sub
  return out


def _block_names(group: Mapping[str, Any]) -> list[str]:
  if "block_names" in group:
    return [str(b) for b in np.asarray(group["block_names"]).ravel()]
  names = []
  for key in group:
    parts = key.split("/")
    if "blocks" in parts[:-2]:
      name = parts[parts.index("blocks") + 1]
      if name not in names:
        names.append(name)
  return names


def plot_blocks(ax: Axes, result: Any, *, log: bool | None = None) -> dict[str, Any]:
  """Per-block top eigenvalue (bars, left axis) and trace (markers, right axis).

  One bar group per parameter block (``hessian/blocks/NAME/``, in the order of
  ``hessian/block_names``) and one bar per stored operator (the Hessian, and the
  Gauss-Newton, Fisher or residual blocks under ``hessian/OPERATOR/blocks/``): the top
  eigenvalue of the Hessian restricted to the block, ``λ_max(H_BB)``, and its trace.
  The PyHessian-style per-layer view: which layers carry the sharp directions.

  Args:
    ax: the Axes (a twin Axes on the right holds the traces).
    result: a result with per-block probes (``landscape hessian --blocks layer``).
    log: log-scale eigenvalue axis; None: when every value drawn is positive.

  Returns:
    ``{"bars": {operator: BarContainer}, "trace": {operator: Line2D}, "trace_ax": Axes,
    "legend": Legend}``.
  """
  group = _group(result, "hessian")
  names = _block_names(group)
  if not names:
    raise ConfigError(f"{_name(result)} has no per-block probes; run `landscape hessian FILE "
                      "--blocks layer`")
  per_op: dict[str, list[tuple[float, float]]] = {}
  for name in names:
    for op, sub in _operator_groups(group, f"blocks/{name}/").items():
      top = np.asarray(sub.get("eigenvalues_largest", [np.nan]), float).ravel()
      per_op.setdefault(op, [(np.nan, np.nan)] * len(names))
      per_op[op][names.index(name)] = (float(top[0]) if top.size else np.nan,
                                       float(np.asarray(sub.get("trace", np.nan))))
  x = np.arange(len(names))
  width = 0.8 / max(len(per_op), 1)
  tax = ax.twinx()
  art: dict[str, Any] = {"bars": {}, "trace": {}, "trace_ax": tax}
  values = []
  for i, (op, rows) in enumerate(per_op.items()):
    top, tr = (np.asarray(v) for v in zip(*rows))
    values.append(top[np.isfinite(top)])
    off = (i - (len(per_op) - 1) / 2) * width
    art["bars"][op] = ax.bar(x + off, np.nan_to_num(top), width, color=f"C{i}",
                             label=f"λ_max, {_OPERATOR_LABELS[op]}")
    art["trace"][op], = tax.plot(x + off, tr, "o", color=f"C{i}", markeredgecolor="k",
                                 markersize=4, label=f"trace, {_OPERATOR_LABELS[op]}")
  drawn = np.concatenate(values) if values else np.array([])
  if log is None:
    log = bool(drawn.size) and bool(np.all(drawn > 0))
  if log:
    ax.set_yscale("log")
  ax.set_xticks(x)
  ax.set_xticklabels(names, rotation=30, ha="right", fontsize="x-small")
  ax.set_ylabel("top eigenvalue of the block")
  tax.set_ylabel("trace of the block (markers)")
  handles = [h for a in (ax, tax) for h in a.get_legend_handles_labels()[0]]
  # headroom above the tallest bar and marker for the legend
  if drawn.size and np.nanmax(drawn) > 0:
    top = np.nanmax(drawn)
    ax.set_ylim(top=top * (30.0 if log else 1.7))
  traces = np.concatenate([np.asarray(line.get_ydata(), float) for line in art["trace"].values()]
                          ) if art["trace"] else np.array([])
  if np.isfinite(traces).any() and np.nanmax(traces) > 0:
    tax.set_ylim(bottom=min(0.0, np.nanmin(traces)), top=np.nanmax(traces) * 1.7)
  art["legend"] = ax.legend(handles=handles, fontsize="xx-small", loc="upper center", ncol=2)
  return art


def plot_operators(ax: Axes, result: Any, *, floor: float | None = None) -> dict[str, Any]:
  """The spectral densities of every stored operator on one log-scale axis.

  ``hessian/density`` and each ``hessian/OPERATOR/density`` (SLQ, :mod:`landscape.operators`),
  labelled with the stored negative spectral mass (minus the sum of the eigenvalues below
  the group's ``negative_threshold``). With H, G and R = H − G stored, the figure shows
  where the negative curvature of H = G + R sits: G (positive semidefinite for a convex
  output loss) has none, R carries at least as much as H.

  Returns:
    ``{"density": {operator: Line2D}, "legend": Legend}``.
  """
  group = _group(result, "hessian")
  ops = {op: sub for op, sub in _operator_groups(group).items() if "density" in sub}
  if not ops:
    raise ConfigError(f"{_name(result)} has no operator densities; run `landscape hessian FILE "
                      "--operator hessian,ggn,residual`")
  top = max(float(np.nanmax(np.asarray(sub["density"], float))) for sub in ops.values())
  floor = 1e-8 * top if floor is None else floor
  art: dict[str, Any] = {"density": {}}
  styles = {"hessian": "-", "ggn": "--", "fisher": "-.", "residual": ":"}
  for i, (op, sub) in enumerate(ops.items()):
    grid = _vector(sub["density_grid"], f"hessian/{op}/density_grid")
    dens = np.asarray(sub["density"], float)
    label = _OPERATOR_LABELS[op]
    if "negative_mass" in sub:
      label += f" (negative mass {float(np.asarray(sub['negative_mass'])):.3g})"
    art["density"][op], = ax.plot(grid, np.maximum(np.nan_to_num(dens), floor),
                                  styles[op], color=f"C{i}", label=label)
  ax.set_yscale("log")
  ax.axvline(0.0, color="0.5", linewidth=0.6)
  ax.set_xlabel("eigenvalue")
  ax.set_ylabel("density (log scale)")
  art["legend"] = ax.legend(fontsize="x-small", loc="upper right")
  return art


# ------------------------------------------------------------ critical-point plots


def plot_critical_on_contour(ax: Axes, result: Any, *, field: str | None = None,
                             vmin: float = 0.1, vmax: float = 10.0, vlevel: float = 0.5,
                             levels: ArrayLike | None = None, log_levels: bool = False,
                             num_levels: int = 20, labels: bool = False, grid: bool = True,
                             found: bool = True, **kw: Any) -> dict[str, Any]:
  """Critical points of the plane over the loss contours, one marker per kind.

  Minima (circle, green), saddles (X, orange), maxima (triangle, red), any other kind
  (diamond). Discrete grid critical points (``critical/grid_coords``, ``grid_kind``)
  are hollow; points found by the critical-point search (``critical/coords``,
  ``kind``) are filled; found points off the plane (NaN coordinates) are skipped.

  Args:
    ax: the Axes.
    result: a 2-D result with a ``critical`` group: ``coords`` (m, 2), ``kind`` (m,),
      optional ``grid_coords`` (q, 2), ``grid_kind`` (q,).
    field, vmin, vmax, vlevel, levels, log_levels, num_levels, labels: the contours,
      as :func:`plot_contour`.
    grid: draw the grid critical points.
    found: draw the found critical points.
    **kw: passed to every ``ax.scatter``.

  Returns:
    ``{"contour", "grid": {kind: PathCollection}, "found": {kind: PathCollection},
    "legend", "note", ...}``; ``collection.get_offsets()`` are the drawn coordinates.

  Example:
    >>> art = plot_critical_on_contour(ax, res); art["found"]["saddle"].get_offsets()

  References:
    Dauphin, Pascanu, Gulcehre, Cho, Ganguli, Bengio, "Identifying and attacking the
    saddle point problem in high-dimensional non-convex optimization", NeurIPS 2014.
  """
  crit = _group(result, "critical")
  lv = _levels(vmin, vmax, vlevel, levels, log_levels, num_levels)
  art = _draw_contour(ax, result, field, lv, labels)
  art["grid"], art["found"] = {}, {}
  sets = (("grid", "grid_coords", "grid_kind", grid), ("found", "coords", "kind", found))
  for tag, ckey, kkey, wanted in sets:
    if not wanted or ckey not in crit:
      continue
    coords = np.asarray(crit[ckey], dtype=float)
    if coords.size == 0:
      continue
    if coords.ndim != 2 or coords.shape[1] != 2:
      raise DataError(f"{_name(result)}: critical/{ckey} has shape {coords.shape}; "
                      "expected (m, 2) plane coordinates")
    kinds = _strings(crit.get(kkey), len(coords))
    if kinds.size != len(coords):
      raise DataError(f"{_name(result)}: critical/{kkey} has {kinds.size} entries for "
                      f"{len(coords)} points; they must match")
    on_plane = np.all(np.isfinite(coords), axis=1)
    for kind in _kind_order(kinds[on_plane]):
      sel = on_plane & (kinds == kind)
      marker, color = _critical_style(kind)
      style = ({"facecolors": "none", "edgecolors": color, "s": 30, "linewidths": 1.0}
               if tag == "grid" else {"c": color, "edgecolors": "k", "s": 40,
                                      "linewidths": 0.5})
      art[tag][kind] = ax.scatter(coords[sel, 0], coords[sel, 1], marker=marker,
                                  **{"label": f"{kind} ({tag})", "zorder": 4, **style,
                                     **kw})
  handles = [*art["grid"].values(), *art["found"].values(), *art["bad_handles"]]
  if not art["grid"] and not art["found"] and art["note"] is None:
    art["note"] = _note(ax, "no critical points on this plane")
  art["legend"] = _legend(ax, handles)
  return art


def plot_loss_vs_index(ax: Axes, losses: Float[np.ndarray, "m"],
                       indices: Float[np.ndarray, "m"], kinds: ArrayLike | None = None, *,
                       xlabel: str | None = None, **kw: Any) -> dict[str, Any]:
  """Loss against index of critical points (Dauphin et al. 2014, Fig. 1 style).

  The index ``α`` is the fraction (float) or number (integer) of negative Hessian
  eigenvalues; Dauphin et al. observe the loss growing with the index: low-loss
  critical points are minima, high-loss ones saddles.

  Args:
    ax: the Axes.
    losses: (m,) loss at each critical point.
    indices: (m,) index of each point; integer dtype reads as a count.
    kinds: optional (m,) kind strings ("minimum", "saddle", ...) to colour by.
    xlabel: x label; None: from the dtype of ``indices``.
    **kw: passed to every ``ax.scatter``.

  Returns:
    ``{"scatter": {kind: PathCollection}, "legend": Legend | None}`` (kind "all" when
    ``kinds`` is None); non-finite points are dropped.

  Example:
    >>> c = res.groups["critical"]; plot_loss_vs_index(ax, c["loss"], c["index"], c["kind"])

  References:
    Dauphin, Pascanu, Gulcehre, Cho, Ganguli, Bengio, "Identifying and attacking the
    saddle point problem in high-dimensional non-convex optimization", NeurIPS 2014.
  """
  idx_raw = np.asarray(indices)
  loss = _vector(losses, "losses")
  idx = _vector(idx_raw, "indices")
  if loss.shape != idx.shape:
    raise DataError(f"losses has shape {loss.shape} but indices {idx.shape}; pass one "
                    "index per critical point")
  names = np.full(loss.size, "all", dtype=object) if kinds is None else \
      _strings(kinds, loss.size)
  if names.size != loss.size:
    raise DataError(f"kinds has {names.size} entries for {loss.size} points; they must match")
  ok = np.isfinite(loss) & np.isfinite(idx)
  art: dict[str, Any] = {"scatter": {}}
  for kind in _kind_order(names[ok]):
    sel = ok & (names == kind)
    marker, color = ("o", "C0") if kinds is None else _critical_style(kind)
    art["scatter"][kind] = ax.scatter(idx[sel], loss[sel], marker=marker,
                                      **{"c": color, "s": 20, "label": kind, **kw})
  if xlabel is None:
    xlabel = ("index (number of negative eigenvalues)"
              if np.issubdtype(idx_raw.dtype, np.integer)
              else "index (fraction of negative eigenvalues)")
  ax.set_xlabel(xlabel)
  ax.set_ylabel("loss")
  art["legend"] = ax.legend(fontsize="x-small") if kinds is not None and art["scatter"] \
      else None
  if not art["scatter"]:
    _note(ax, "no finite critical points to draw")
  return art


# ------------------------------------------------------------------ teaching plots


def plot_loss_functions(ax_loss: Axes, ax_grad: Axes | None,
                        errors: Float[np.ndarray, "n"],
                        curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
                        **kw: Any) -> dict[str, Any]:
  """Loss functions and their derivatives against the error ``e = ŷ − y``.

  For each loss ``ℓ`` the caller computes ``ℓ(e)`` and ``dℓ/dŷ (e)`` (e.g. with
  ``landscape.losses`` and ``jax.grad``); this draws them on two Axes with matching
  colours, e.g. squared error (``e²``, slope ``2e``), absolute error (``|e|``, slope
  ``sign e``), Huber (quadratic inside ``δ``, linear outside).

  Args:
    ax_loss: Axes for the losses.
    ax_grad: Axes for the derivatives, or None.
    errors: (n,) the errors.
    curves: mapping name -> ``(values (n,), grads (n,))``.
    **kw: passed to every ``plot``.

  Returns:
    ``{"loss": {name: Line2D}, "grad": {name: Line2D}, "legend": Legend}``.

  Example:
    >>> e = np.linspace(-3, 3, 201)
    >>> plot_loss_functions(a1, a2, e, {"squared": (e**2, 2*e), "absolute": (abs(e), sign(e))})

  References:
    Huber, "Robust Estimation of a Location Parameter", Ann. Math. Statist. 1964.
  """
  e = _vector(errors, "errors")
  if not curves:
    raise DataError("curves is empty; pass a mapping name -> (values, grads)")
  art: dict[str, Any] = {"loss": {}, "grad": {}}
  for n, (name, (values, grads)) in enumerate(curves.items()):
    v, g = _vector(values, f"values of {name!r}"), _vector(grads, f"grads of {name!r}")
    if v.shape != e.shape or g.shape != e.shape:
      raise DataError(f"loss {name!r}: values {v.shape} and grads {g.shape} must both have "
                      f"the shape of errors {e.shape}")
    style = {"color": f"C{n % 10}", "label": str(name), **kw}
    art["loss"][name], = ax_loss.plot(e, v, **style)
    if ax_grad is not None:
      art["grad"][name], = ax_grad.plot(e, g, **style)
  ax_loss.set_xlabel("error ŷ − y")
  ax_loss.set_ylabel("loss ℓ")
  if ax_grad is not None:
    ax_grad.axhline(0.0, color="0.6", linewidth=0.5)
    ax_grad.set_xlabel("error ŷ − y")
    ax_grad.set_ylabel("derivative dℓ/dŷ")
  art["legend"] = ax_loss.legend(fontsize="x-small")
  return art


def plot_linear_landscape(ax: Axes, ws: Float[np.ndarray, "nw"], bs: Float[np.ndarray, "nb"],
                          z: Float[np.ndarray, "nb nw"], *, title: str | None = None,
                          levels: int | ArrayLike = 15, log_levels: bool = True,
                          labels: bool = False, **kw: Any) -> dict[str, Any]:
  """The (w, b) loss landscape of a linear model ``ŷ = w x + b``, minimum marked.

  ``z[j, i] = (1/N) Σ_n ℓ(ws[i] x_n + bs[j] − y_n)`` (computed by the caller) is convex
  for a convex loss; contours (log-spaced by default, as the loss grows fast away from
  the minimum) and a star at the grid minimum ``argmin z``.

  Args:
    ax: the Axes.
    ws: (nw,) slopes; bs: (nb,) intercepts.
    z: (nb, nw) mean loss; NaN points are ignored.
    title: axes title (e.g. the loss name).
    levels: number of levels or explicit increasing levels.
    log_levels: with an integer ``levels``, space them geometrically between the
      smallest positive and the largest value.
    labels: label the contour lines.
    **kw: passed to ``ax.contour``.

  Returns:
    ``{"contour": QuadContourSet, "minimum": Line2D | None, "clabels", "legend"}``.

  Example:
    >>> plot_linear_landscape(ax, ws, bs, mse_grid, title="squared error")

  References:
    Bishop, "Pattern Recognition and Machine Learning", Springer 2006 (Sec. 3.1).
  """
  w, b = _vector(ws, "ws"), _vector(bs, "bs")
  z = np.ma.masked_invalid(np.asarray(z, dtype=float))
  if z.shape != (b.size, w.size) or min(z.shape) < 2:
    raise DataError(f"z has shape {z.shape}; expected (len(bs), len(ws)) = "
                    f"({b.size}, {w.size}), at least 2 x 2")
  finite = z.compressed()
  lv: Any = levels
  if np.ndim(levels) == 0:
    if int(levels) < 2:
      raise ConfigError(f"levels={levels!r} must be at least 2 or a sequence of levels")
    positive = finite[finite > 0]
    if log_levels and positive.size and positive.max() > positive.min():
      lv = np.geomspace(positive.min(), positive.max(), int(levels))
    elif finite.size and finite.max() > finite.min():
      lv = np.linspace(finite.min(), finite.max(), int(levels))
    else:
      lv = None
  art: dict[str, Any] = {"contour": None, "minimum": None, "clabels": [], "legend": None}
  if lv is not None:
    art["contour"] = ax.contour(w, b, z, levels=lv, **kw)
    if labels:
      art["clabels"] = list(ax.clabel(art["contour"], inline=True, fontsize="x-small",
                                      fmt="%.3g"))
  if finite.size:
    j, i = np.unravel_index(np.argmin(z.filled(np.inf)), z.shape)
    art["minimum"], = ax.plot(w[i:i + 1], b[j:j + 1], "*", color="C3", markersize=9,
                              label=f"minimum (w={w[i]:.3g}, b={b[j]:.3g})", zorder=4)
    art["legend"] = ax.legend(fontsize="x-small", loc="upper right")
  else:
    _note(ax, "no finite values to draw")
  ax.set_xlabel("w")
  ax.set_ylabel("b")
  if title:
    ax.set_title(title)
  return art


# ---------------------------------------------------------------------- path plots


def _path_curve(result: Any, method: str, group: Mapping[str, Any],
                key: str) -> np.ndarray | None:
  """``paths/<method>/<key>`` as a float vector of the length of its ``t``, or None."""
  if key not in group:
    return None
  values = _vector(group[key], f"paths/{method}/{key}")
  n = np.size(group["t"])
  if values.shape != (n,):
    raise DataError(f"{_name(result)}: paths/{method}/{key} has shape {values.shape} but "
                    f"paths/{method}/t has ({n},); they must match, recompute the paths")
  return values


def _path_barrier(t: np.ndarray, loss: np.ndarray) -> float:
  """``max_t [L(t) − ((1 − t) L(0) + t L(1))]`` as the schema defines it (NaN if the ends
  or every point are not finite)."""
  if t.size < 2 or not (np.isfinite(loss[0]) and np.isfinite(loss[-1])):
    return float("nan")
  above = loss - ((1 - t) * loss[0] + t * loss[-1])
  above = above[np.isfinite(above)]
  return float(above.max()) if above.size else float("nan")


def plot_paths(ax: Axes, result: Any, *, log: bool = False, acc: bool = True,
               saddle: bool = True, **kw: Any) -> dict[str, Any]:
  """Loss along the paths between two minima, one colour per method, barriers in the legend.

  Draws the train loss (solid) and test loss (dashed) of every method the ``paths`` group
  holds (linear blue, curve orange, neb green) against ``t`` (linear, curve: the path
  parameter; neb: normalized arc length), the highest point of each train curve as a
  triangle, and accuracies (when stored) on a twin axis (dotted train, dash-dotted test).
  The legend reads ``"linear (barrier 0.84)"``: the stored ``barrier`` attribute of
  ``paths/<method>`` when the result exposes it, else the same quantity computed from the
  train loss, ``max_t [L(t) − ((1 − t) L(0) + t L(1))]``. A ``saddle`` group (a refined
  critical point) is marked at its ``t`` and loss (attributes), with its kind and index
  bounds in the legend.

  Args:
    ax: the Axes for the losses.
    result: a result with a ``paths`` group: ``paths/<method>/t``, ``train_loss`` (m,),
      optional ``test_loss``, ``train_acc``, ``test_acc`` (m,); attributes (``barrier``,
      ``peak``) from ``result.group_attrs["paths/<method>"]`` when present; optional
      ``saddle`` group attributes ``t``, ``loss``, ``kind``, ``index_lower``,
      ``index_upper``, ``method``.
    log: log-scale loss axis.
    acc: draw stored accuracies on a twin axis.
    saddle: mark the saddle when the result has one.
    **kw: passed to every loss ``ax.plot``.

  Returns:
    ``{"train": {method: Line2D}, "test": {method: Line2D}, "train_acc", "test_acc":
    {method: Line2D}, "peak": {method: Line2D}, "barrier": {method: float},
    "saddle": Line2D | None, "ax_acc": Axes | None, "legend": Legend}``.

  Raises:
    ConfigError: no ``paths`` group, or no method in it with ``t`` and ``train_loss``.
    DataError: a curve's length differs from its ``t``.

  Example:
    >>> art = plot_paths(ax, ls.io.load("results/ab/path.h5")); art["barrier"]["neb"]

  References:
    Garipov, Izmailov, Podoprikhin, Vetrov, Wilson, "Loss Surfaces, Mode Connectivity, and
    Fast Ensembling of DNNs", NeurIPS 2018. Draxler, Veschgini, Salmhofer, Hamprecht,
    "Essentially No Barriers in Neural Network Energy Landscape", ICML 2018. Frankle,
    Dziugaite, Roy, Carbin, "Linear Mode Connectivity and the Lottery Ticket Hypothesis",
    ICML 2020.
  """
  _group(result, "paths")
  methods = _path_methods(result)
  if not methods:
    raise ConfigError(f"{_name(result)} has no paths/<method>/t and train_loss datasets; "
                      f"{_HOWTO['paths']}")
  art: dict[str, Any] = {"train": {}, "test": {}, "train_acc": {}, "test_acc": {},
                         "peak": {}, "barrier": {}, "saddle": None, "ax_acc": None}
  handles: list[Any] = []
  has_test = has_acc = False
  for method, group in methods.items():
    color = _path_color(method, list(methods))
    t = _vector(group["t"], f"paths/{method}/t")
    train = _path_curve(result, method, group, "train_loss")
    attrs = _group_attrs(result, f"paths/{method}")
    barrier = _attr(attrs, "barrier", float)
    if barrier is None:
      barrier = _path_barrier(t, train)
    art["barrier"][method] = barrier
    label = f"{method} (barrier {barrier:.3g})" if np.isfinite(barrier) else method
    art["train"][method], = ax.plot(t, train, **{"color": color, "ls": "-", "label": label,
                                                 **kw})
    handles.append(art["train"][method])
    test = _path_curve(result, method, group, "test_loss")
    if test is not None:
      has_test = True
      art["test"][method], = ax.plot(t, test, **{"color": color, "ls": "--", **kw})
    peak = _attr(attrs, "peak", int)
    if peak is None or not 0 <= peak < t.size or not np.isfinite(train[peak]):
      peak = int(np.nanargmax(np.where(np.isfinite(train), train, -np.inf))) \
          if np.isfinite(train).any() else None
    if peak is not None:
      art["peak"][method], = ax.plot(t[peak:peak + 1], train[peak:peak + 1], "^",
                                     color=color, markeredgecolor="k", markersize=5,
                                     zorder=4)
    has_acc |= acc and any(k in group for k in ("train_acc", "test_acc"))
  if has_acc:
    ax2 = ax.twinx()
    for method, group in methods.items():
      color = _path_color(method, list(methods))
      t = _vector(group["t"], f"paths/{method}/t")
      for key, style in (("train_acc", ":"), ("test_acc", "-.")):
        values = _path_curve(result, method, group, key)
        if values is not None:
          art[key][method], = ax2.plot(t, values, color=color, ls=style, alpha=0.7,
                                       linewidth=0.8)
    ax2.set_ylabel("accuracy (dotted)")
    art["ax_acc"] = ax2
  handles.append(Line2D([], [], color="0.2", ls="-", label="train loss"))
  if has_test:
    handles.append(Line2D([], [], color="0.2", ls="--", label="test loss"))
  if art["peak"]:
    handles.append(Line2D([], [], ls="none", marker="^", color="0.5", markeredgecolor="k",
                          markersize=5, label="highest point"))
  if saddle and "saddle" in _mapping(result, "groups"):
    attrs = _group_attrs(result, "saddle")
    st, sl = _attr(attrs, "t", float), _attr(attrs, "loss", float)
    if st is not None and sl is not None and np.isfinite(st) and np.isfinite(sl):
      kind = _attr(attrs, "kind", str) or "critical point"
      index = _index_text(_attr(attrs, "index_lower", int), _attr(attrs, "index_upper", int))
      origin = _attr(attrs, "method", str)
      label = kind + (f" ({index})" if index else "") + (f" from {origin}" if origin else "")
      color = _path_color(origin, list(methods)) if origin in methods else "k"
      art["saddle"], = ax.plot([st], [sl], "X", color=color, markeredgecolor="k",
                               markersize=7, zorder=5, label=label)
      handles.append(art["saddle"])
  if log:
    ax.set_yscale("log")
  ax.set_xlabel("t (neb: normalized arc length)" if "neb" in methods else "t")
  ax.set_ylabel("loss")
  art["legend"] = _legend(ax, handles)
  return art


def plot_path_plane(ax: Axes, result: Any, *, field: str | None = None, vmin: float = 0.1,
                    vmax: float = 10.0, vlevel: float = 0.5, levels: ArrayLike | None = None,
                    log_levels: bool = False, num_levels: int = 20, labels: bool = True,
                    paths: bool = True, **kw: Any) -> dict[str, Any]:
  """The plane through three points (two minima and a bend or a saddle) with the paths.

  Loss contours of the stored 2-D grid (levels as :func:`plot_contour`), the three points
  that define the plane (``plane/points_x``, ``points_y``) as white circles labelled
  with ``plane/labels``, and each method's path projected onto the plane
  (``paths/<method>/plane_x``, ``plane_y``) as a polyline in the method's colour (linear
  blue, curve orange, neb green). The plane coordinates are distances in parameter space,
  so the axes have equal aspect.

  Args:
    ax: the Axes.
    result: a 2-D result with a ``plane`` group: ``points_x`` (3,), ``points_y`` (3,),
      optional ``labels`` (3,); optional ``paths/<method>/plane_x``, ``plane_y`` (m,).
    field, vmin, vmax, vlevel, levels, log_levels, num_levels, labels: the contours, as
      :func:`plot_contour`.
    paths: draw the projected paths.
    **kw: passed to ``ax.contour``.

  Returns:
    ``{"contour", "points": Line2D (the three points), "point_labels": [Annotation],
    "paths": {method: Line2D}, "legend", "note", ...}``.

  Raises:
    ConfigError: no ``plane`` group, or a 1-D result.
    DataError: ``points_x``/``points_y``/``labels`` or a path's ``plane_x``/``plane_y``
      differ in length.

  Example:
    >>> art = plot_path_plane(ax, ls.io.load("results/ab/path.h5"), vmax=5)

  References:
    Garipov, Izmailov, Podoprikhin, Vetrov, Wilson, "Loss Surfaces, Mode Connectivity, and
    Fast Ensembling of DNNs", NeurIPS 2018 (Fig. 1: the plane through the two minima and
    the bend of the curve).
  """
  plane = _group(result, "plane", need=("points_x", "points_y"))
  px = _vector(plane["points_x"], "plane/points_x")
  py = _vector(plane["points_y"], "plane/points_y")
  if px.shape != py.shape or px.size == 0:
    raise DataError(f"{_name(result)}: plane/points_x has shape {px.shape} and points_y "
                    f"{py.shape}; they must be equal and non-empty")
  names = _strings(plane.get("labels"), px.size)
  if names.size != px.size:
    raise DataError(f"{_name(result)}: plane/labels has {names.size} entries for "
                    f"{px.size} points; they must match")
  lv = _levels(vmin, vmax, vlevel, levels, log_levels, num_levels)
  art = _draw_contour(ax, result, field, lv, labels, **kw)
  art["paths"] = {}
  if paths:
    subs = _subgroups(_mapping(result, "groups").get("paths") or {})
    order = [m for m in _PATH_METHODS if m in subs] + \
        sorted(m for m in subs if m not in _PATH_METHODS)
    for method in order:
      group = subs[method]
      if "plane_x" not in group or "plane_y" not in group:
        continue
      x = _vector(group["plane_x"], f"paths/{method}/plane_x")
      y = _vector(group["plane_y"], f"paths/{method}/plane_y")
      if x.shape != y.shape:
        raise DataError(f"{_name(result)}: paths/{method}/plane_x has shape {x.shape} but "
                        f"plane_y {y.shape}; they must match, recompute the paths")
      art["paths"][method], = ax.plot(x, y, color=_path_color(method, order), marker=".",
                                      markersize=2, linewidth=1.0, label=method, zorder=3)
  art["points"], = ax.plot(px, py, ls="none", marker="o", color="k",
                           markerfacecolor="white", markersize=5, zorder=5,
                           label="plane points")
  art["point_labels"] = [
      ax.annotate(str(name), (x, y), xytext=(4, 4), textcoords="offset points",
                  fontsize="x-small", zorder=6)
      for name, x, y in zip(names, px, py)]
  ax.set_aspect("equal")
  ax.set_xlabel("plane x (parameter distance)")
  ax.set_ylabel("plane y (parameter distance)")
  art["legend"] = _legend(ax, [*art["paths"].values(), art["points"], *art["bad_handles"]])
  return art


def plot_saddle_spectrum(ax: Axes, result: Any, *, symlog: bool | None = None,
                         **kw: Any) -> dict[str, Any]:
  """The smallest Hessian eigenvalues at a refined saddle, with their certified bounds.

  The Ritz values ``θ_i`` (``saddle/eigenvalues``, ascending) with error bars of their
  residuals ``r_i = ‖H v_i − θ_i v_i‖`` (``saddle/residuals``): an eigenvalue of the
  Hessian lies within ``r_i`` of each ``θ_i``. The band ``[−ε, ε]`` (attribute ``eps``)
  of eigenvalues treated as zero is shaded; values certainly negative
  (``θ_i + r_i < −ε``, the ones ``index_lower`` counts) are red. The title gives the
  point's kind and its index bounds, ``"saddle: index in [1, 2]"``, or
  ``"index ≥ 1"`` when the upper bound is unknown (``index_upper = −1``). Values whose
  nonzero magnitudes span three decades or more are drawn on a symlog axis (linear
  inside ``ε``).

  Args:
    ax: the Axes.
    result: a result with a ``saddle`` group: ``eigenvalues`` (k,), optional
      ``residuals`` (k,); attributes (``result.group_attrs["saddle"]``) ``eps``, ``kind``,
      ``index_lower``, ``index_upper``, ``converged``.
    symlog: force (True) or forbid (False) the symlog axis; None: by the span.
    **kw: passed to ``ax.errorbar``.

  Returns:
    ``{"errorbar": ErrorbarContainer, "negative": Line2D | None, "band": Polygon | None,
    "title": Text, "symlog": bool, "legend": Legend}``.

  Raises:
    ConfigError: no ``saddle`` group or no ``saddle/eigenvalues``.
    DataError: residuals of another length than the eigenvalues, or negative ones.

  Example:
    >>> art = plot_saddle_spectrum(ax, ls.io.load("results/ab/path.h5"))

  References:
    Parlett, "The Symmetric Eigenvalue Problem", SIAM 1998 (Thm. 4.5.1: an eigenvalue lies
    within the residual norm of each Ritz value). Dauphin et al., "Identifying and
    attacking the saddle point problem in high-dimensional non-convex optimization",
    NeurIPS 2014.
  """
  group = _group(result, "saddle", need=("eigenvalues",))
  attrs = _group_attrs(result, "saddle")
  ev = _vector(group["eigenvalues"], "saddle/eigenvalues")
  res = None
  if "residuals" in group:
    res = _vector(group["residuals"], "saddle/residuals")
    if res.shape != ev.shape:
      raise DataError(f"{_name(result)}: saddle/residuals has shape {res.shape} but "
                      f"eigenvalues {ev.shape}; they must match")
    if np.any(res < 0):
      raise DataError(f"{_name(result)}: saddle/residuals holds negative values; residual "
                      "norms are >= 0, recompute the saddle")
  n = np.arange(1, ev.size + 1)
  eps = _attr(attrs, "eps", float)
  eps = eps if eps is not None and np.isfinite(eps) and eps >= 0 else None
  art: dict[str, Any] = {"band": None, "negative": None}
  if eps:
    art["band"] = ax.axhspan(-eps, eps, color="0.88", zorder=0,
                             label=f"|λ| ≤ ε = {eps:.2g}")
  ax.axhline(0.0, color="0.6", linewidth=0.5, zorder=0.5)
  yerr = None if res is None else np.where(np.isfinite(res), res, 0.0)
  art["errorbar"] = ax.errorbar(n, ev, yerr=yerr, **{
      "fmt": "o", "color": "C0", "markersize": 3, "capsize": 2, "elinewidth": 0.8,
      "label": "Ritz value ± residual" if res is not None else "Ritz value", **kw})
  upper = ev + (0.0 if yerr is None else yerr)
  with np.errstate(invalid="ignore"):
    neg = np.isfinite(ev) & (upper < -(eps or 0.0))
  if neg.any():
    art["negative"], = ax.plot(n[neg], ev[neg], ls="none", marker="o", color="C3",
                               markersize=3, zorder=3, label="certainly negative")
  magnitude = np.abs(ev[np.isfinite(ev) & (ev != 0)])
  if symlog is None:
    symlog = magnitude.size > 1 and magnitude.max() / magnitude.min() >= _SYMLOG_SPAN
  if symlog and magnitude.size:
    ax.set_yscale("symlog", linthresh=float(eps or magnitude.min()))
  art["symlog"] = bool(symlog and magnitude.size)
  kind = _attr(attrs, "kind", str)
  index = _index_text(_attr(attrs, "index_lower", int), _attr(attrs, "index_upper", int))
  title = ": ".join(p for p in (kind, index) if p) or "smallest Hessian eigenvalues"
  if _attr(attrs, "converged", bool) is False:
    title += " (not converged)"
  art["title"] = ax.set_title(title, fontsize="small")
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.set_xlabel("Ritz value (smallest first)")
  ax.set_ylabel("Hessian eigenvalue λ")
  if ev.size == 0 or not np.isfinite(ev).any():
    _note(ax, "no finite eigenvalues to draw")
  art["legend"] = ax.legend(fontsize="x-small", loc="best")
  return art


def stability_threshold(lr: ArrayLike, optimizer: str, momentum: float = 0.0,
                        nesterov: bool = False) -> np.ndarray | None:
  """The sharpness above which gradient descent on a quadratic diverges, per step.

  ``2/η`` for gradient descent, ``(2 + 2β)/η`` with heavy-ball momentum β and
  ``(2 + 2β)/((1 + 2β)η)`` with Nesterov momentum (Cohen et al. 2021, appendix); NaN
  where ``η <= 0``. None for adaptive optimizers (``adam``, ``adamw``), whose stability
  is set by the preconditioned Hessian, not the raw one.

  Example:
    >>> stability_threshold([0.1, 0.05], "sgd", momentum=0.9)   # [38., 76.]
  """
  if optimizer not in ("sgd", "gd"):
    return None
  eta = np.asarray(lr, dtype=np.float64)
  beta = float(momentum or 0.0)
  num = 2.0 + 2.0 * beta
  den = (1.0 + 2.0 * beta) if (nesterov and beta) else 1.0
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(eta > 0, num / (den * eta), np.nan)


def plot_sharpness(ax: Axes, result: Any, *, log: bool = False, threshold: bool = True,
                   **kw: Any) -> dict[str, Any]:
  """λ_max of the training loss's Hessian against optimizer steps, with 2/η.

  Draws ``curvature/lambda_max`` against ``curvature/step`` (the Hessian eigenvalues
  tracked during training, ``train.curvature``) and the stability threshold of the
  run's optimizer at the learning rate of each probe (``curvature/lr``; a curve when the
  rate is scheduled): ``2/η`` for gradient descent, ``(2 + 2β)/η`` with momentum β (see
  :func:`stability_threshold`), dashed. Sharpness rising to the threshold and hovering
  there is the edge of stability of Cohen et al. (2021). For Adam/AdamW no threshold is
  drawn: the figure notes that only the raw Hessian's sharpness is tracked, not the
  preconditioned sharpness of Cohen et al. (2022) that governs adaptive methods.

  Args:
    ax: the Axes.
    result: a result with a ``curvature`` group (``step``, ``lambda_max``, optional
      ``lr``; attributes ``optimizer``, ``momentum``, ``nesterov``), e.g. a run's
      ``trajectory.h5`` read by :func:`landscape.io.load_trajectory`.
    log: a logarithmic y axis.
    threshold: draw the stability threshold (when the optimizer has one).
    **kw: passed to ``ax.plot`` of λ_max.

  Returns:
    ``{"lambda_max": Line2D, "threshold": Line2D | None, "note": Text | None,
    "legend": Legend}``.

  Raises:
    ConfigError: no ``curvature`` group, or no ``curvature/step`` and ``lambda_max``.
    DataError: arrays of different lengths.

  Example:
    >>> art = plot_sharpness(ax, ls.io.load_trajectory("results/run/trajectory.h5"))

  References:
    Cohen, Kaur, Li, Kolter, Talwalkar, "Gradient descent on neural networks typically
    occurs at the edge of stability", ICLR 2021; Cohen et al., "Adaptive gradient methods
    at the edge of stability", 2022.
  """
  group = _group(result, "curvature", need=("step", "lambda_max"))
  attrs = _group_attrs(result, "curvature")
  steps = _vector(group["step"], "curvature/step")
  lam = _vector(group["lambda_max"], "curvature/lambda_max")
  lr = _vector(group["lr"], "curvature/lr") if "lr" in group else None
  for name, arr in (("lambda_max", lam), ("lr", lr)):
    if arr is not None and arr.shape != steps.shape:
      raise DataError(f"{_name(result)}: curvature/{name} has {arr.size} values but "
                      f"curvature/step {steps.size}; they must match")
  optimizer = str(_attr(attrs, "optimizer", str) or "")
  momentum = _attr(attrs, "momentum", float) or 0.0
  nesterov = bool(_attr(attrs, "nesterov", bool))
  art: dict[str, Any] = {"threshold": None, "note": None}
  marker = "o" if steps.size <= 60 else None
  art["lambda_max"], = ax.plot(steps, lam, **{"color": "C0", "marker": marker,
                                              "markersize": 2.5, "label": r"$\lambda_{\max}$",
                                              **kw})
  limit = (stability_threshold(lr, optimizer, momentum, nesterov)
           if threshold and lr is not None else None)
  if limit is not None and np.isfinite(limit).any():
    label = (r"$2/\eta$" if not momentum else
             r"$(2+2\beta)/((1+2\beta)\eta)$" if nesterov else r"$(2+2\beta)/\eta$")
    if momentum:
      label += f", β = {momentum:g}"
    art["threshold"], = ax.plot(steps, limit, color="C3", ls="--", lw=1.0,
                                drawstyle="steps-post", label=label)
    # a rate decaying to 0 sends the threshold to infinity: keep λ_max readable, the
    # threshold leaves the axes above 1.5x the larger of max λ_max and min threshold
    top = 1.5 * max(np.nanmax(np.where(np.isfinite(lam), lam, np.nan), initial=0.0),
                    np.nanmin(limit))
    if not log and np.isfinite(top) and top > 0 and np.nanmax(limit) > top:
      low = np.nanmin(np.where(np.isfinite(lam), lam, np.nan), initial=0.0)
      ax.set_ylim(min(0.0, 1.05 * low), top)
  elif optimizer in ("adam", "adamw"):
    # above the axes (a note inside could hide data)
    art["note"] = ax.set_title(f"{optimizer}: raw Hessian sharpness only; the preconditioned\n"
                               "sharpness (Cohen et al. 2022) is not tracked, no threshold",
                               fontsize="x-small", color="0.35")
  if log:
    ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel(r"sharpness $\lambda_{\max}$")
  if steps.size == 0 or not np.isfinite(lam).any():
    _note(ax, "no finite λ_max to draw")
  art["legend"] = ax.legend(fontsize="x-small", loc="best")
  return art


# ---------------------------------------------------------------- figures of a file


@dataclasses.dataclass(frozen=True)
class FigureKind:
  """A figure kind :func:`render` can draw: how to draw it, what it needs, its layout.

  Attributes:
    name: the kind's name: what :func:`render`, ``landscape plot --kind`` and a config's
      ``plot.kinds`` take, and part of the file name. A lower-case identifier.
    draw: ``draw(ax, result, **opts) -> dict`` of the artists drawn (the ``plot_*``
      functions have this form). An option it does not take is a ConfigError of render.
    requires: ``requires(result) -> str | None``: None when ``result`` holds what the kind
      needs, else the reason it does not, worded to follow the result's name, e.g.
      ``"has no hessian/ group"``; render reports
      ``"{file} {reason}, so {name!r} cannot be drawn; kinds this file supports: ..."``.
    aspect: the figure's default height / width.
    defaults: ``defaults(result) -> dict`` of options used unless the caller gives them
      (e.g. the field drawn); they do not enter the file name. None: no defaults.
    projection: the Axes projection, e.g. ``"3d"``; None: a plain Axes.

  Example:
    >>> def draw(ax, result, *, bins=30):
    ...   z = masked_field(result, default_field(result)).compressed()
    ...   return {"hist": ax.hist(z, bins=bins)}
    >>> register_kind(FigureKind("loss_hist", draw, lambda r: None if r.fields else
    ...                          "has no datasets", aspect=0.75))
  """

  name: str
  draw: Callable[..., dict[str, Any]]
  requires: Callable[[Any], str | None]
  aspect: float = 0.8
  defaults: Callable[[Any], dict[str, Any]] | None = None
  projection: str | None = None

  def __post_init__(self) -> None:
    if not isinstance(self.name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
      raise ConfigError(f"figure kind name {self.name!r} is not a lower-case identifier; "
                        "use e.g. 'loss_hist' (it becomes part of file names)")
    for attr in ("draw", "requires", "defaults"):
      value = getattr(self, attr)
      if not (callable(value) or (attr == "defaults" and value is None)):
        raise ConfigError(f"FigureKind {self.name!r}: {attr}={value!r} is not callable; pass "
                          f"a function (see the FigureKind docstring)")
    if isinstance(self.aspect, bool) or not isinstance(self.aspect, (int, float)) \
        or not np.isfinite(self.aspect) or self.aspect <= 0:
      raise ConfigError(f"FigureKind {self.name!r}: aspect={self.aspect!r} must be a "
                        "positive height/width ratio, e.g. 0.75")


_REGISTRY: dict[str, FigureKind] = {}
#: The registered figure kinds by name, in registration order (a read-only view; change
#: it with :func:`register_kind` and :func:`unregister_kind`).
FIGURE_KINDS: Mapping[str, FigureKind] = types.MappingProxyType(_REGISTRY)


def register_kind(kind: FigureKind, *, replace: bool = False) -> FigureKind:
  """Add a figure kind to :data:`FIGURE_KINDS` (and its name to :data:`KINDS`).

  From then on :func:`render`, :func:`render_all` and :func:`kinds_supported` (and so
  ``landscape plot`` and the pipeline's plot step) draw it like a built-in kind. A new
  name goes last; a replaced kind keeps its place.

  Args:
    kind: the :class:`FigureKind`.
    replace: replace a registered kind of the same name instead of refusing it.

  Returns:
    ``kind``.

  Raises:
    ConfigError: ``kind`` is not a FigureKind, or its name is taken and ``replace`` is
      False.

  Example:
    >>> register_kind(FigureKind("loss_hist", draw_hist, needs_loss, aspect=0.75))
  """
  global KINDS
  if not isinstance(kind, FigureKind):
    raise ConfigError(f"register_kind takes a FigureKind, got {type(kind).__name__}; build "
                      "one with FigureKind(name, draw, requires)")
  if kind.name in _REGISTRY and not replace:
    raise ConfigError(f"figure kind {kind.name!r} is already registered; pick another name "
                      "or pass replace=True to replace it")
  _REGISTRY[kind.name] = kind
  KINDS = tuple(_REGISTRY)
  return kind


def unregister_kind(name: str) -> FigureKind:
  """Remove a figure kind from :data:`FIGURE_KINDS` and :data:`KINDS`.

  Args:
    name: the kind's name.

  Returns:
    The removed :class:`FigureKind`.

  Raises:
    ConfigError: no kind of that name is registered.

  Example:
    >>> unregister_kind("loss_hist")
  """
  global KINDS
  if not isinstance(name, str) or name not in _REGISTRY:
    raise unknown_name("plot kind", name, KINDS)
  kind = _REGISTRY.pop(name)
  KINDS = tuple(_REGISTRY)
  return kind


def kinds_supported(result: Any) -> list[str]:
  """The figure kinds :func:`render` can draw from ``result``, in :data:`KINDS` order.

  A kind is supported when its :attr:`FigureKind.requires` finds what it needs. The
  built-in kinds need: ``loss1d`` a 1-D sweep with ``train_loss``, ``test_loss`` or
  ``loss``; ``contour``, ``contourf``, ``heatmap``, ``surface3d`` a 2-D loss grid
  (``heatmap`` 1 x n or larger, the others at least 2 x 2); ``trajectory`` also a
  ``trajectory`` group; ``eig_ratio`` both ``max_eig`` and ``min_eig``; ``eig_map``
  either; ``density`` ``hessian/density``; ``critical`` a 2-D grid and a ``critical``
  group; ``loss_vs_index`` ``critical/index`` and ``critical/loss``; ``path`` a ``paths``
  group with ``<method>/t`` and ``<method>/train_loss`` for some method; ``plane`` a 2-D
  grid and ``plane/points_x``, ``plane/points_y``; ``saddle_spectrum``
  ``saddle/eigenvalues``. A result without a grid (a ``landscape path`` file without
  ``--plane``) supports only the group kinds.

  Args:
    result: a result (see the module docstring).

  Returns:
    List of kind names.

  Example:
    >>> kinds_supported(ls.io.load("results/x/landscape.h5"))
    ['contour', 'contourf', 'heatmap', 'surface3d', 'density']
  """
  return [name for name, kind in _REGISTRY.items() if kind.requires(result) is None]


def _check_kind(result: Any, kind: str) -> FigureKind:
  spec = _REGISTRY.get(kind) if isinstance(kind, str) else None
  if spec is None:
    raise unknown_name("plot kind", kind, KINDS)
  reason = spec.requires(result)
  if reason is not None:
    supported = ", ".join(kinds_supported(result)) or "none"
    raise ConfigError(f"{_name(result)} {reason}, so {kind!r} cannot be drawn; kinds this "
                      f"file supports: {supported}")
  return spec


# The built-in kinds: what each needs.

def _needs_line_loss(result: Any) -> str | None:
  if not _has_grid(result):
    return "has no grid (no xcoordinates)"
  if _ndim(result) == 2:
    return "is a 2-D result (use contour, contourf, heatmap or surface3d)"
  fields = _mapping(result, "fields")
  return None if any(name in fields for name, _, _ in _CURVES) else \
      "has no train_loss/test_loss/loss dataset"


def _needs_plane(min_points: int) -> Callable[[Any], str | None]:
  """A 2-D grid of at least ``min_points`` per side, with a loss (or accuracy) field."""
  def requires(result: Any) -> str | None:
    if not _has_grid(result):
      return "has no grid (no xcoordinates)"
    if _ndim(result) != 2:
      return "is a 1-D result"
    fields = _mapping(result, "fields")
    if not any(f in fields for f in _LOSS_FIELDS):
      return "has no train_loss/test_loss/loss/train_acc/test_acc dataset"
    xs, ys = _coords(result)
    if min(xs.size, ys.size) < min_points:
      return f"has a {ys.size} x {xs.size} grid (at least {min_points} x {min_points} needed)"
    return None
  return requires


def _needs_group(name: str, keys: Sequence[str], missing: str, *,
                 any_key: bool = False) -> Callable[[Any], str | None]:
  """A group ``name`` holding all of ``keys`` (any one with ``any_key``)."""
  def requires(result: Any) -> str | None:
    group = _mapping(result, "groups").get(name)
    if group is None:
      return f"has no {name}/ group"
    held = [key in group for key in keys]
    return None if (any(held) if any_key else all(held)) else missing
  return requires


def _needs_blocks(result: Any) -> str | None:
  group = _mapping(result, "groups").get("hessian")
  if group is None:
    return "has no hessian/ group"
  return None if _block_names(group) else (
      "has no per-block probes (run `landscape hessian FILE --blocks layer`)")


def _needs_operators(result: Any) -> str | None:
  group = _mapping(result, "groups").get("hessian")
  if group is None:
    return "has no hessian/ group"
  if any(f"{op}/density" in group for op in _OPERATOR_LABELS if op != "hessian"):
    return None
  return ("has no Gauss-Newton, Fisher or residual density (run `landscape hessian FILE "
          "--operator hessian,ggn,residual`)")


def _needs_fields(names: Sequence[str], missing: str, *,
                  any_name: bool = False) -> Callable[[Any], str | None]:
  def requires(result: Any) -> str | None:
    held = [name in _mapping(result, "fields") for name in names]
    return None if (any(held) if any_name else all(held)) else missing
  return requires


def _needs_all(*checks: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
  """The first reason any of ``checks`` gives, or None."""
  def requires(result: Any) -> str | None:
    return next((r for r in (check(result) for check in checks) if r is not None), None)
  return requires


def _needs_paths(result: Any) -> str | None:
  """A ``paths`` group with at least one method holding ``t`` and ``train_loss``."""
  if "paths" not in _mapping(result, "groups"):
    return "has no paths/ group"
  return None if _path_methods(result) else "has no paths/<method>/t and train_loss"


def _field_default(result: Any) -> dict[str, Any]:
  return {"field": default_field(result)}


def _eig_default(result: Any) -> dict[str, Any]:
  return {"which": "max_eig" if "max_eig" in _mapping(result, "fields") else "min_eig"}


def _draw_loss_vs_index(ax: Axes, result: Any, **opts: Any) -> dict[str, Any]:
  crit = _group(result, "critical", need=("loss", "index"))
  return plot_loss_vs_index(ax, crit["loss"], crit["index"], crit.get("kind"), **opts)


def _builtin_kinds() -> list[FigureKind]:
  plane, heat = _needs_plane(2), _needs_plane(1)
  return [
      FigureKind("loss1d", plot_1d, _needs_line_loss, aspect=0.75),
      FigureKind("contour", plot_contour, plane, defaults=_field_default),
      FigureKind("contourf", plot_contourf, plane, defaults=_field_default),
      FigureKind("heatmap", plot_heatmap, heat, defaults=_field_default),
      FigureKind("surface3d", plot_surface3d, plane, aspect=0.85, defaults=_field_default,
                 projection="3d"),
      FigureKind("trajectory", plot_trajectory, _needs_all(plane, _needs_group(
          "trajectory", ("proj_xcoord", "proj_ycoord"),
          "has no trajectory/proj_xcoord and proj_ycoord")), defaults=_field_default),
      FigureKind("eig_ratio", plot_eig_ratio, _needs_fields(
          _EIG_FIELDS, "has no max_eig and min_eig datasets")),
      FigureKind("eig_map", plot_eig_map, _needs_fields(
          _EIG_FIELDS, "has no max_eig or min_eig dataset", any_name=True),
          defaults=_eig_default),
      FigureKind("density", plot_density, _needs_group(
          "hessian", ("density", "density_grid"),
          "has no hessian/density (run `landscape hessian FILE --density`)"), aspect=0.75),
      FigureKind("blocks", plot_blocks, _needs_blocks, aspect=0.7),
      FigureKind("operators", plot_operators, _needs_operators, aspect=0.75),
      FigureKind("critical", plot_critical_on_contour, _needs_all(plane, _needs_group(
          "critical", ("coords", "grid_coords"),
          "has no critical/coords or critical/grid_coords", any_key=True)),
          defaults=_field_default),
      FigureKind("loss_vs_index", _draw_loss_vs_index, _needs_group(
          "critical", ("index", "loss"), "has no critical/index and critical/loss"),
          aspect=0.75),
      FigureKind("path", plot_paths, _needs_paths, aspect=0.8),
      FigureKind("plane", plot_path_plane, _needs_all(plane, _needs_group(
          "plane", ("points_x", "points_y"), "has no plane/points_x and plane/points_y")),
          aspect=1.0, defaults=_field_default),
      FigureKind("saddle_spectrum", plot_saddle_spectrum, _needs_group(
          "saddle", ("eigenvalues",), "has no saddle/eigenvalues"), aspect=0.75),
      FigureKind("sharpness", plot_sharpness, _needs_group(
          "curvature", ("step", "lambda_max"), "has no curvature/step and lambda_max "
          "(train with --set train.curvature.every=N)"), aspect=0.75),
  ]


for _kind in _builtin_kinds():
  register_kind(_kind)
del _kind


def _formats(formats: str | Sequence[str]) -> tuple[str, ...]:
  if isinstance(formats, str):
    formats = formats.split(",")
  out = tuple(f.strip().lstrip(".").lower() for f in formats if f.strip())
  for f in out:
    if f not in _FORMATS:
      raise unknown_name("figure format", f, _FORMATS)
  if not out:
    raise ConfigError(f"formats={formats!r} is empty; pass e.g. ('pdf', 'png')")
  return out


def _tag(kind: str, opts: Mapping[str, Any]) -> str:
  parts = [kind]
  for key in ("field", "which"):
    if key in opts:
      parts.append(str(opts[key]))
  parts += [key for key in ("signed", "log", "log_levels") if opts.get(key)]
  return "_".join(parts)


def render(result: Any, kind: str, out_dir: str | Path,
           formats: str | Sequence[str] = ("pdf", "png"), *, stem: str | None = None,
           dpi: float | None = None, columns: int = 1, aspect: float | None = None,
           **opts: Any) -> list[Path]:
  """Draw one figure kind of a result in the paper style and save it.

  The figure is built on a ``matplotlib.figure.Figure`` (never pyplot, so no global
  figure is left open) inside :func:`use_style`, saved once per format as
  ``out_dir/{stem}_{kind}[_{field}].{fmt}`` and released.

  Args:
    result: a result (see the module docstring).
    kind: a registered kind (one of :data:`KINDS`); it must be in
      ``kinds_supported(result)``.
    out_dir: output directory (created).
    formats: file formats: any of pdf, png, svg, eps, ps (a tuple or "pdf,png").
    stem: file-name stem; None: the result file's stem (or "result").
    dpi: raster resolution; None: the style's 300 dpi.
    columns: 1 (3.4 in wide) or 2 (7.0 in wide).
    aspect: height / width; None: the kind's :attr:`FigureKind.aspect`.
    **opts: options of the kind's plot function (e.g. ``field="test_loss"``,
      ``vmax=5``, ``log=True``, ``signed=True``, ``which="min_eig"``).

  Returns:
    The written paths, one per format.

  Raises:
    ConfigError: unknown kind or format, a kind this result cannot support (the message
      lists the kinds it supports), or an option the kind does not take.

  Example:
    >>> render(res, "contour", "results/x/figures", ("pdf",), vmax=5)
    [PosixPath('results/x/figures/landscape_contour.pdf')]

  References:
    Li et al., "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018.
  """
  spec = _check_kind(result, kind)
  fmts = _formats(formats)
  from landscape import io as _io
  out = Path(out_dir)
  _io.check_output_dir(out, "figure directory")
  _io.make_dirs(out)
  base = stem or (Path(str(result.path)).stem if getattr(result, "path", None) else "result")
  paths = []
  with use_style():
    fig = Figure(figsize=figure_size(columns, aspect or spec.aspect))
    try:
      ax = fig.add_subplot(projection=spec.projection)
      try:
        spec.draw(ax, result, **{**(spec.defaults(result) if spec.defaults else {}), **opts})
      except (TypeError, AttributeError) as err:
        if "unexpected keyword" not in str(err):
          raise
        raise ConfigError(f"an option of kind {kind!r} is not accepted ({err}); options: "
                          f"{', '.join(sorted(opts)) or 'none'}") from None
      for fmt in fmts:
        path = out / f"{base}_{_tag(kind, opts)}.{fmt}"
        with _io.atomic_path(path) as tmp:
          fig.savefig(tmp, format=fmt, **({} if dpi is None else {"dpi": dpi}))
        paths.append(path)
    finally:
      fig.clear()
  return paths


def render_all(result: Any, out_dir: str | Path, kinds: Sequence[str] | None = None,
               formats: str | Sequence[str] = ("pdf", "png"), *, stem: str | None = None,
               dpi: float | None = None, columns: int = 1,
               options: Mapping[str, Mapping[str, Any]] | None = None,
               ) -> dict[str, list[Path]]:
  """Draw several figure kinds of a result (default: every supported kind).

  Args:
    result: a result (see the module docstring).
    out_dir: output directory (created).
    kinds: kinds to draw; None: ``kinds_supported(result)``. A kind the result cannot
      support raises :class:`ConfigError` before anything is drawn.
    formats, stem, dpi, columns: as :func:`render`.
    options: per-kind options, e.g. ``{"contour": {"vmax": 5}, "heatmap": {"log": True}}``.

  Returns:
    ``{kind: [paths]}`` in the order drawn.

  Example:
    >>> render_all(ls.io.load("results/x/landscape.h5"), "results/x/figures", formats="pdf")

  References:
    Li et al., "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018.
  """
  chosen = kinds_supported(result) if kinds is None else list(kinds)
  for kind in chosen:
    _check_kind(result, kind)
  options = options or {}
  for kind in options:
    if kind not in chosen:
      raise ConfigError(f"options given for kind {kind!r}, which is not drawn; kinds drawn: "
                        f"{', '.join(chosen) or 'none'}")
  return {kind: render(result, kind, out_dir, formats, stem=stem, dpi=dpi, columns=columns,
                       **dict(options.get(kind, {})))
          for kind in chosen}
