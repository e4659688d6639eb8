"""Interactive figures of a result file: one self-contained, offline HTML page (plotly).

The only module of landscape that imports plotly, as :mod:`landscape.plotting` is for
matplotlib; like it, it never imports jax and never computes a loss. plotly is an
optional extra (``pip install 'landscape[interactive]'``), imported on first use, so
``import landscape.interactive`` works without it and a page request without it is one
:class:`landscape.ConfigError`.

A 2-D result gets a rotatable 3-D surface (left) and its contour view (right), with the
overlays the file holds drawn on the contours: the training trajectory projected on the
PCA plane (``trajectory/proj_xcoord``, ``proj_ycoord``), critical points
(``critical/coords`` and ``critical/grid_coords`` with their ``kind``/``grid_kind``),
and for a ``landscape path --plane`` file the three points of the plane
(``plane/points_x``, ``points_y``, ``labels``) and each path projected on it
(``paths/<method>/plane_x``, ``plane_y``). A 1-D result gets a line plot. A dropdown
(plotly ``updatemenus``) selects the field drawn among those stored: train/test loss,
train/test accuracy, ``max_eig``, ``min_eig`` and, when both are stored, the eigenvalue
ratio ``|min_eig / max_eig|``. Hovering a point shows its coordinates and every stored
field there. Points not computed (done False) or not finite are gaps (NaN), never
interpolated over.

The page embeds plotly's JavaScript (no network needed), is written atomically and is
derived from the result file: :func:`write_page` replaces it, as ``landscape plot``
replaces its figures.

  >>> import landscape as ls
  >>> res = ls.io.load("results/default/landscape.h5")
  >>> ls.interactive.write_page(res, "results/default/figures/landscape.html")
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from landscape.errors import ConfigError
from landscape.grid import Grid

__all__ = ["FIELDS", "GENERATOR", "field_values", "figure", "is_page", "page_html",
           "write_page"]

# The fields a page can select, in dropdown order, with their labels. ``eig_ratio`` is
# derived (|min_eig / max_eig|) when both eigenvalue maps are stored.
FIELDS: dict[str, str] = {
    "train_loss": "train loss", "test_loss": "test loss", "loss": "loss",
    "train_acc": "train accuracy (%)", "test_acc": "test accuracy (%)", "acc": "accuracy (%)",
    "loss_vals": "loss", "max_eig": "λ_max", "min_eig": "λ_min",
    "eig_ratio": "|λ_min / λ_max|",
}
# The <meta name="generator"> of a page written here: how a later write knows the file
# is a page of ours (derived, replaced) and not a user's file.
GENERATOR = "landscape.interactive"
_INSTALL = "pip install 'landscape[interactive]'"
# Marker colours of critical points by kind (the first three letters: min, sad, max).
_CRITICAL_COLORS = {"min": "#2ca02c", "sad": "#ff7f0e", "max": "#d62728"}
_PATH_COLORS = {"linear": "#1f77b4", "curve": "#ff7f0e", "neb": "#2ca02c"}
_EIG_SCALE = "RdBu_r"
_SCALE = "Viridis"


def _plotly():
  """``plotly.graph_objects`` and ``plotly.subplots.make_subplots``; a one-line error
  when plotly is not installed."""
  try:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
  except ImportError:
    raise ConfigError(f"interactive figures need plotly, which is not installed; "
                      f"{_INSTALL}") from None
  return go, make_subplots


def _name(result: Any) -> str:
  return str(getattr(result, "path", None) or "result")


def _mapping(result: Any, attr: str) -> Mapping[str, Any]:
  return getattr(result, attr, None) or {}


def _coords(result: Any) -> tuple[np.ndarray, np.ndarray | None]:
  xs = getattr(result, "xs", None)
  if xs is None or np.size(xs) == 0:
    raise ConfigError(f"{_name(result)} has no grid (no xcoordinates), so it has no "
                      "interactive page; draw its figures with `landscape plot FILE` "
                      "(formats pdf, png, svg)")
  ys = getattr(result, "ys", None)
  return (np.asarray(xs, dtype=float).ravel(),
          None if ys is None else np.asarray(ys, dtype=float).ravel())


def _done_for(result: Any, name: str) -> Any:
  """The mask of computed points of ``name`` (``result.done_for``, or a plain ``done``
  dict: ``field_done[name]``, else ``eig_done`` for an eigenvalue map, else ``done``)."""
  done_for = getattr(result, "done_for", None)
  if callable(done_for):
    return done_for(name)
  done = getattr(result, "done", None)
  if not isinstance(done, Mapping):
    return done
  key = _mapping(result, "field_done").get(name) or (
      "eig_done" if name in ("max_eig", "min_eig") and "eig_done" in done else "done")
  return done.get(key)


def _masked(result: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
  """Field ``name`` as float64 with NaN where not computed or not finite."""
  z = np.asarray(result.fields[name], dtype=np.float64)
  if z.shape != shape:
    raise ConfigError(f"{_name(result)}: {name!r} has shape {z.shape} but the grid is "
                      f"{shape}; the file is inconsistent, recompute it")
  z = np.where(np.isfinite(z), z, np.nan)
  done = _done_for(result, name)
  if done is not None:
    done = np.asarray(done, dtype=bool)
    if done.shape == shape:
      z = np.where(done, z, np.nan)
  return z


def field_values(result: Any) -> dict[str, np.ndarray]:
  """The selectable fields of a result, in dropdown order, NaN where there is no value.

  The stored fields named in :data:`FIELDS` (train/test loss and accuracy, ``max_eig``,
  ``min_eig``), then ``eig_ratio`` = ``|min_eig / max_eig|`` when both eigenvalue maps
  are stored. A point not computed (its done mask False) or not finite is NaN.

  Args:
    result: a :class:`landscape.io.Result` (or an object with ``xs``, ``ys``,
      ``fields`` and ``done``/``done_for``, as :mod:`landscape.plotting` reads).

  Returns:
    Field name -> ``(ny, nx)`` (or ``(nx,)``) float64 array.

  Raises:
    ConfigError: the result has no grid or no field a page can show.

  Example:
    >>> list(field_values(ls.io.load("results/default/landscape.h5")))
    ['train_loss', 'test_loss', 'train_acc', 'test_acc', 'max_eig', 'min_eig', 'eig_ratio']
  """
  xs, ys = _coords(result)
  shape = Grid(xs, ys).shape
  stored = _mapping(result, "fields")
  out = {name: _masked(result, name, shape) for name in FIELDS if name in stored}
  if "max_eig" in out and "min_eig" in out:
    with np.errstate(divide="ignore", invalid="ignore"):
      ratio = np.abs(out["min_eig"] / out["max_eig"])
    out["eig_ratio"] = np.where(np.isfinite(ratio), ratio, np.nan)
  if not out:
    held = ", ".join(sorted(stored)) or "none"
    raise ConfigError(f"{_name(result)} holds no field an interactive page can show "
                      f"(datasets: {held}); expected one of {', '.join(FIELDS)}")
  return out


def _axis_titles(result: Any) -> tuple[str, str]:
  kind = str(_mapping(result, "attrs").get("direction_kind", "random"))
  if kind == "plane":
    return "plane x (parameter distance)", "plane y (parameter distance)"
  traj = _mapping(result, "groups").get("trajectory") or {}
  ratio = traj.get("explained_variance_ratio")
  if ratio is not None and np.size(ratio) >= 2:
    r = np.asarray(ratio, dtype=float).ravel()
    return f"1st PC: {100 * r[0]:.2f} %", f"2nd PC: {100 * r[1]:.2f} %"
  if kind == "pca":
    return "1st PC", "2nd PC"
  if kind == "target":
    return "interpolation coefficient", "β"
  return "α", "β"


def _strings(values: Any, n: int, default: str) -> list[str]:
  if values is None:
    return [default] * n
  flat = np.asarray(values).ravel()
  return [v.decode() if isinstance(v, bytes) else str(v) for v in flat]


def _fmt(v: float) -> str:
  return "not computed" if not np.isfinite(v) else f"{v:.4g}"


def _hover_text(names: list[str], values: dict[str, np.ndarray]) -> np.ndarray:
  """Per point, every field there as ``label = value`` lines (the hover text)."""
  shape = values[names[0]].shape
  text = np.empty(shape, dtype=object)
  for idx in np.ndindex(shape):
    text[idx] = "<br>".join(f"{FIELDS[n]} = {_fmt(values[n][idx])}" for n in names)
  return text


def _range(name: str, z: np.ndarray) -> dict[str, Any]:
  """Colour scale and limits of a field: diverging and centred at 0 for an eigenvalue map
  of both signs, else Viridis over the finite values."""
  finite = z[np.isfinite(z)]
  if not finite.size:
    return {"colorscale": _SCALE, "lo": 0.0, "hi": 1.0}
  lo, hi = float(finite.min()), float(finite.max())
  if name in ("max_eig", "min_eig") and lo < 0 < hi:
    m = max(-lo, hi)
    return {"colorscale": _EIG_SCALE, "lo": -m, "hi": m}
  return {"colorscale": _SCALE, "lo": lo, "hi": hi if hi > lo else lo + 1.0}


def _title(result: Any, name: str) -> str:
  return f"{Path(_name(result)).name}: {FIELDS[name]}"


def _critical_traces(go: Any, crit: Mapping[str, Any]) -> list[Any]:
  """Markers of the critical points: found ones filled, grid ones hollow, by kind."""
  traces = []
  sets = (("found", "coords", "kind", "circle"), ("grid", "grid_coords", "grid_kind",
                                                  "circle-open"))
  for tag, ckey, kkey, symbol in sets:
    if ckey not in crit:
      continue
    coords = np.asarray(crit[ckey], dtype=float)
    if coords.size == 0 or coords.ndim != 2 or coords.shape[1] != 2:
      continue
    kinds = _strings(crit.get(kkey), len(coords), "point")
    if len(kinds) != len(coords):
      kinds = ["point"] * len(coords)
    loss = crit.get("loss" if tag == "found" else "grid_loss")
    index = crit.get("index" if tag == "found" else "grid_index")
    on_plane = np.all(np.isfinite(coords), axis=1)
    for kind in sorted(set(k for k, ok in zip(kinds, on_plane) if ok)):
      sel = [i for i, (k, ok) in enumerate(zip(kinds, on_plane)) if ok and k == kind]
      text = []
      for i in sel:
        parts = [f"{kind} ({tag})"]
        if loss is not None and np.size(loss) == len(coords):
          parts.append(f"loss = {float(np.ravel(loss)[i]):.4g}")
        if index is not None and np.size(index) == len(coords):
          parts.append(f"index = {float(np.ravel(index)[i]):.4g}")
        text.append("<br>".join(parts))
      color = _CRITICAL_COLORS.get(kind[:3].lower(), "#7f7f7f")
      traces.append(go.Scatter(
          x=coords[sel, 0], y=coords[sel, 1], mode="markers", name=f"{kind} ({tag})",
          text=text, hovertemplate="%{text}<br>(%{x:.4g}, %{y:.4g})<extra></extra>",
          marker={"symbol": symbol, "size": 11, "color": color,
                  "line": {"width": 1.5 if tag == "grid" else 1, "color":
                           color if tag == "grid" else "black"}}))
  return traces


def _overlays(go: Any, result: Any) -> list[Any]:
  """The scatter traces drawn over the contours: trajectory, critical points, plane
  points and paths (those the result holds)."""
  groups = _mapping(result, "groups")
  traces = []
  traj = groups.get("trajectory") or {}
  if "proj_xcoord" in traj and "proj_ycoord" in traj:
    px = np.asarray(traj["proj_xcoord"], dtype=float).ravel()
    py = np.asarray(traj["proj_ycoord"], dtype=float).ravel()
    if px.size and px.shape == py.shape:
      epochs = traj.get("epochs")
      text = ([f"epoch {e:g}" for e in np.asarray(epochs, dtype=float).ravel()]
              if epochs is not None and np.size(epochs) == px.size
              else [f"snapshot {i}" for i in range(px.size)])
      traces.append(go.Scatter(
          x=px, y=py, mode="lines+markers", name="trajectory", text=text,
          hovertemplate="trajectory, %{text}<br>(%{x:.4g}, %{y:.4g})<extra></extra>",
          line={"color": "#d62728", "width": 2}, marker={"size": 5}))
      traces.append(go.Scatter(x=px[-1:], y=py[-1:], mode="markers", name="end",
                               text=text[-1:], hovertemplate="end, %{text}<extra></extra>",
                               marker={"symbol": "star", "size": 14, "color": "black"}))
  crit = groups.get("critical")
  if crit:
    traces += _critical_traces(go, crit)
  paths: dict[str, dict[str, Any]] = {}
  for key, value in (groups.get("paths") or {}).items():
    method, _, rest = str(key).partition("/")
    if isinstance(value, Mapping):
      paths.setdefault(method, {}).update(value)
    elif rest:
      paths.setdefault(method, {})[rest] = value
  for method in sorted(paths, key=lambda m: (m not in _PATH_COLORS, m)):
    group = paths[method]
    if "plane_x" in group and "plane_y" in group:
      x = np.asarray(group["plane_x"], dtype=float).ravel()
      y = np.asarray(group["plane_y"], dtype=float).ravel()
      if x.shape == y.shape:
        traces.append(go.Scatter(
            x=x, y=y, mode="lines+markers", name=f"path: {method}",
            hovertemplate=f"{method}<br>(%{{x:.4g}}, %{{y:.4g}})<extra></extra>",
            line={"color": _PATH_COLORS.get(method, "#9467bd"), "width": 2},
            marker={"size": 3}))
  plane = groups.get("plane") or {}
  if "points_x" in plane and "points_y" in plane:
    px = np.asarray(plane["points_x"], dtype=float).ravel()
    py = np.asarray(plane["points_y"], dtype=float).ravel()
    if px.shape == py.shape:
      labels = _strings(plane.get("labels"), px.size, "point")
      traces.append(go.Scatter(
          x=px, y=py, mode="markers+text", name="plane points", text=labels,
          textposition="top right", hovertemplate="%{text}<br>(%{x:.4g}, %{y:.4g})"
          "<extra></extra>", marker={"size": 10, "color": "white",
                                     "line": {"width": 2, "color": "black"}}))
  return traces


def figure(result: Any) -> Any:
  """The interactive figure of a result (a ``plotly.graph_objects.Figure``).

  2-D: trace 0 is the ``Surface`` (the 3-D scene), trace 1 the ``Contour`` (the plane
  view) of the first field, then the overlay ``Scatter`` traces on the contour view. The
  dropdown (``layout.updatemenus[0]``) has one button per field, labelled as
  :data:`FIELDS`, that restyles traces 0 and 1 with that field's values and colour
  scale; the hover text of a point lists every field. 1-D: one ``Scatter`` line per
  field, the dropdown shows one at a time.

  Args:
    result: a result with a grid (see :func:`field_values`).

  Returns:
    The figure; ``figure(r).data[0].z`` is the first field, NaN where there is no value.

  Raises:
    ConfigError: plotly is missing, or the result has no grid or no field to show.

  Example:
    >>> fig = figure(ls.io.load("results/default/landscape.h5")); fig.show()
  """
  go, make_subplots = _plotly()
  values = field_values(result)
  names = list(values)
  xs, ys = _coords(result)
  xname, yname = _axis_titles(result)
  text = _hover_text(names, values)
  buttons = []
  if ys is None:
    fig = go.Figure()
    for i, name in enumerate(names):
      fig.add_trace(go.Scatter(x=xs, y=values[name], mode="lines+markers", name=FIELDS[name],
                               text=text, visible=i == 0, connectgaps=False,
                               hovertemplate=f"{xname} = %{{x:.4g}}<br>%{{text}}"
                               "<extra></extra>"))
    for i, name in enumerate(names):
      buttons.append({"label": FIELDS[name], "method": "update", "args": [
          {"visible": [j == i for j in range(len(names))]},
          {"title.text": _title(result, name), "yaxis.title.text": FIELDS[name]}]})
    fig.update_layout(xaxis_title=xname, yaxis_title=FIELDS[names[0]])
  else:
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45],
                        specs=[[{"type": "scene"}, {"type": "xy"}]],
                        subplot_titles=("surface (drag to rotate)", "contours"),
                        horizontal_spacing=0.08)
    template = f"{xname} = %{{x:.4g}}<br>{yname} = %{{y:.4g}}<br>%{{text}}<extra></extra>"
    first, r0 = values[names[0]], _range(names[0], values[names[0]])
    fig.add_trace(go.Surface(x=xs, y=ys, z=first, text=text, hovertemplate=template,
                             name="surface", showscale=False, colorscale=r0["colorscale"],
                             cmin=r0["lo"], cmax=r0["hi"]), row=1, col=1)
    fig.add_trace(go.Contour(x=xs, y=ys, z=first, text=text, hovertemplate=template,
                             name="contours", connectgaps=False, showlegend=False,
                             colorscale=r0["colorscale"], zmin=r0["lo"], zmax=r0["hi"],
                             ncontours=30, contours={"coloring": "heatmap"},
                             colorbar={"title": {"text": FIELDS[names[0]]}, "len": 0.8}),
                  row=1, col=2)
    for trace in _overlays(go, result):
      fig.add_trace(trace, row=1, col=2)
    for name in names:
      z, r = values[name], _range(name, values[name])
      buttons.append({"label": FIELDS[name], "method": "update", "args": [
          {"z": [z, z], "colorscale": [r["colorscale"]] * 2, "cmin": [r["lo"]] * 2,
           "cmax": [r["hi"]] * 2, "zmin": [r["lo"]] * 2, "zmax": [r["hi"]] * 2,
           "colorbar.title.text": [FIELDS[name]] * 2},
          {"title.text": _title(result, name), "scene.zaxis.title.text": FIELDS[name]},
          [0, 1]]})
    fig.update_layout(scene={"xaxis_title": xname, "yaxis_title": yname,
                             "zaxis_title": FIELDS[names[0]],
                             "aspectmode": "manual", "aspectratio": {"x": 1, "y": 1, "z": 0.7},
                             "camera": {"eye": {"x": 1.6, "y": -1.6, "z": 1.1}}})
    fig.update_xaxes(title_text=xname, row=1, col=2)
    fig.update_yaxes(title_text=yname, row=1, col=2)
  fig.update_layout(
      title={"text": _title(result, names[0]), "x": 0.5},
      template="plotly_white", height=650, margin={"l": 40, "r": 20, "t": 100, "b": 40},
      legend={"orientation": "h", "y": -0.1},
      updatemenus=[{"buttons": buttons, "direction": "down", "showactive": True,
                    "x": 0.0, "xanchor": "left", "y": 1.15, "yanchor": "top"}])
  return fig


def page_html(result: Any) -> str:
  """The page of :func:`figure` as one HTML document with plotly's JavaScript inline."""
  fig = figure(result)
  html = fig.to_html(include_plotlyjs=True, full_html=True,
                     config={"responsive": True, "displaylogo": False})
  meta = f'<meta name="generator" content="{GENERATOR}">'
  return html.replace("<head>", f"<head>\n{meta}", 1)


def is_page(path: str | os.PathLike) -> bool:
  """Whether ``path`` is a page :func:`write_page` wrote (its generator meta tag)."""
  try:
    with open(path, "rb") as f:
      head = f.read(400)
  except OSError:
    return False
  return f'<meta name="generator" content="{GENERATOR}">'.encode() in head


def write_page(result: Any, path: str | os.PathLike) -> Path:
  """Write the interactive page of a result to ``path`` (replaced; atomic).

  Args:
    result: a result with a grid (see :func:`field_values`).
    path: the ``.html`` file; missing parent directories are created.

  Returns:
    ``path`` as a :class:`~pathlib.Path`.

  Raises:
    ConfigError: plotly is missing, or the result has no grid or no field to show.
    ResultFileError: the directory cannot be created or written.

  Example:
    >>> write_page(ls.io.load("results/default/landscape.h5"), "landscape.html")
  """
  from landscape import io as _io   # io imports jax: only when writing
  path = Path(path)
  html = page_html(result)
  _io.check_output_dir(path.parent, "figure directory")
  _io.make_dirs(path.parent)
  _io.atomic_write(path, html)
  return path
