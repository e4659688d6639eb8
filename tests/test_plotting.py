"""Tests of landscape.plotting: artists checked against the stored arrays, files, errors."""

from __future__ import annotations

import io as _bytesio
import re
import subprocess
import sys
import types

import hypothesis.extra.numpy as hnp
import matplotlib
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.figure import Figure

from landscape import plotting as P
from landscape.errors import ConfigError, DataError

EPS = np.finfo(np.float64).eps
RTOL = 100 * EPS  # exact formulas in float64; 100 ulp absorbs the arithmetic order

# A non-square, non-uniform grid: nx = 5, ny = 4.
XS = np.array([-1.0, -0.6, -0.1, 0.3, 1.0])
YS = np.array([-0.5, 0.0, 0.5, 1.0])
X_EDGES = np.array([-1.2, -0.8, -0.35, 0.1, 0.65, 1.35])  # midpoints, mirrored ends
Y_EDGES = np.array([-0.75, -0.25, 0.25, 0.75, 1.25])
NAN_AT = (1, 2)       # a diverged point: value NaN, done
UNDONE_AT = (3, 4)    # a point not computed yet: finite garbage, done False
EIG_UNDONE_AT = (0, 0)


def _surface(xs, ys):
  x, y = np.meshgrid(xs, ys)
  return 0.3 + 2 * x ** 2 + 5 * y ** 2  # value[j, i] at (xs[i], ys[j])


def _result(xs=XS, ys=YS, *, groups=("hessian", "critical", "trajectory"), eig=True,
            masks=True, path="/tmp/run/surface.h5", direction_kind="random"):
  """An in-memory stand-in of landscape.io.Result built from analytic surfaces."""
  loss = _surface(xs, ys)
  done = np.ones(loss.shape, dtype=bool)
  if masks and loss.size > 4:
    loss[NAN_AT] = np.nan
    loss[UNDONE_AT] = 123.0  # garbage under done=False must never be drawn
    done[UNDONE_AT] = False
  fields = {"train_loss": loss, "test_loss": 1.5 * loss}
  dones = {"done": done}
  if eig:
    x, y = np.meshgrid(xs, ys)
    fields["max_eig"] = 1.5 + x
    fields["min_eig"] = -1.0 + 2.0 * y
    eig_done = np.ones(loss.shape, dtype=bool)
    if masks and loss.size > 4:
      eig_done[EIG_UNDONE_AT] = False
    dones["eig_done"] = eig_done
  all_groups = {
      "hessian": {"eigenvalues_largest": np.array([5.0, 3.0, 2.5]),
                  "eigenvalues_smallest": np.array([-0.75, -0.25, 0.1]),
                  "trace": np.float64(12.5), "trace_stderr": np.float64(0.4),
                  "density_grid": np.linspace(-2.0, 6.0, 81),
                  "density": np.exp(-(np.linspace(-2.0, 6.0, 81) - 1.0) ** 2),
                  "num_hvps": np.int64(40)},
      "critical": {"coords": np.array([[0.0, 0.0], [np.nan, np.nan], [0.5, 0.25],
                                       [-0.5, 0.75]]),
                   "loss": np.array([0.3, 2.0, 1.2, 3.6]),
                   "grad_norm": np.array([1e-7, 1e-6, 1e-7, 1e-7]),
                   "index": np.array([0.0, 0.25, 0.5, 0.5]),
                   "kind": np.array([b"minimum", b"saddle", b"saddle", b"saddle"]),
                   "grid_coords": np.array([[-0.1, 0.0], [1.0, 1.0]]),
                   "grid_kind": np.array(["minimum", "maximum"])},
      "trajectory": {"proj_xcoord": np.array([-0.9, -0.6, -0.3, -0.1, 0.0]),
                     "proj_ycoord": np.array([0.8, 0.5, 0.2, 0.05, 0.0]),
                     "explained_variance_ratio": np.array([0.8712, 0.0534]),
                     "epochs": np.array([0, 1, 2, 3, 4])},
  }
  return types.SimpleNamespace(
      path=path, attrs={"direction_kind": direction_kind, "config": {}}, xs=np.asarray(xs),
      ys=None if ys is None else np.asarray(ys), fields=fields, done=dones,
      groups={k: all_groups[k] for k in groups}, ndim=1 if ys is None else 2,
      is_original_layout=False)


def _result_1d(direction_kind="random", eig=False):
  xs = np.linspace(-1, 1, 9)
  loss = 0.2 + xs ** 2
  loss[3] = np.inf  # diverged
  fields = {"train_loss": loss, "test_loss": loss + 0.1, "train_acc": 100 - 20 * xs ** 2,
            "test_acc": 90 - 20 * xs ** 2}
  if eig:
    fields["max_eig"] = 2.0 + xs
    fields["min_eig"] = -xs
  return types.SimpleNamespace(
      path="/tmp/run/line.h5", attrs={"direction_kind": direction_kind}, xs=xs, ys=None,
      fields=fields, done={"done": np.ones(xs.shape, dtype=bool)}, groups={}, ndim=1)


def _ax(projection=None):
  fig = Figure(figsize=(3, 2.4))
  return fig.add_subplot(projection=projection)


def _draw(ax):
  """Render the figure (catches failures that only appear at draw time)."""
  ax.figure.savefig(_bytesio.BytesIO(), format="png", dpi=20)


def _expected_mask(shape=(4, 5)):
  mask = np.zeros(shape, dtype=bool)
  mask[NAN_AT] = mask[UNDONE_AT] = True
  return mask


# --------------------------------------------------------------------------- style


def test_plotting_never_imports_jax_and_vtk_never_matplotlib():
  code = ("import sys, landscape.vtk; assert 'matplotlib' not in sys.modules; "
          "import landscape.plotting; assert 'jax' not in sys.modules, 'jax imported'")
  run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("columns,width", [(1, 3.4), (2, 7.0)])
@pytest.mark.parametrize("aspect", [0.5, 0.75, 1.0])
def test_figure_size(columns, width, aspect):
  assert P.figure_size(columns, aspect=aspect) == pytest.approx((width, width * aspect))


@pytest.mark.parametrize("columns,aspect", [(3, 0.75), (0, 0.75), (1, 0.0), (2, -1.0),
                                            (1, float("nan"))])
def test_figure_size_rejects_bad_layouts(columns, aspect):
  with pytest.raises(ConfigError, match="columns|aspect"):
    P.figure_size(columns, aspect=aspect)


def test_use_style_sets_paper_rc_and_restores():
  before = dict(matplotlib.rcParams)
  with P.use_style():
    rc = matplotlib.rcParams
    assert rc["pdf.fonttype"] == 42 and rc["ps.fonttype"] == 42
    assert rc["text.usetex"] is False
    assert rc["image.cmap"] == "viridis"
    assert rc["savefig.bbox"] == "tight"
    assert rc["font.sans-serif"][0] == "DejaVu Sans"
    assert rc["figure.figsize"] == pytest.approx([3.4, 2.55])
  assert matplotlib.rcParams["pdf.fonttype"] == before["pdf.fonttype"]
  assert matplotlib.rcParams["savefig.bbox"] == before["savefig.bbox"]


# ---------------------------------------------------------------------- contours


def _drawn_levels(cs):
  return np.array([lv for lv, p in zip(cs.levels, cs.get_paths()) if len(p.vertices)])


@pytest.mark.parametrize("vmin,vmax,vlevel", [(0.1, 10.0, 0.5), (0.5, 3.0, 0.25),
                                              (1.0, 2.0, 0.3)])
def test_contour_levels_follow_original_arange(vmin, vmax, vlevel):
  ax = _ax()
  art = P.plot_contour(ax, _result(), vmin=vmin, vmax=vmax, vlevel=vlevel)
  expected = np.arange(vmin, vmax, vlevel)
  np.testing.assert_allclose(art["contour"].levels, expected, rtol=RTOL)
  # matplotlib keeps every level; only those strictly inside the finite data range draw.
  z = _surface(XS, YS)[~_expected_mask()]
  inside = expected[(expected > z.min()) & (expected < z.max())]
  np.testing.assert_allclose(_drawn_levels(art["contour"]), inside, rtol=RTOL)
  labelled = {float(t.get_text()) for t in art["clabels"]}
  assert labelled and labelled <= {float("%g" % lv) for lv in inside}
  assert ax.get_xlabel() == "α" and ax.get_ylabel() == "β"


def test_contour_log_and_user_levels():
  art = P.plot_contour(_ax(), _result(), vmin=0.01, vmax=100.0, log_levels=True,
                       num_levels=9)
  np.testing.assert_allclose(art["contour"].levels, 10.0 ** np.arange(-2, 2.25, 0.5),
                             rtol=1e3 * EPS)  # geomspace goes through exp/log
  user = [0.5, 1.0, 2.0, 4.0]
  art = P.plot_contour(_ax(), _result(), levels=user, labels=False)
  np.testing.assert_array_equal(art["contour"].levels, user)
  assert art["clabels"] == []


@pytest.mark.parametrize("kw", [{"vlevel": 0.0}, {"vmin": 5.0, "vmax": 1.0},
                                {"log_levels": True, "vmin": 0.0},
                                {"levels": [1.0, 0.5]}, {"levels": []},
                                {"log_levels": True, "num_levels": 1}])
def test_contour_rejects_bad_levels(kw):
  with pytest.raises(ConfigError, match="vlevel|vmin|levels|num_levels"):
    P.plot_contour(_ax(), _result(), **kw)


def test_contour_masks_nan_and_undone_points_with_a_legend():
  ax = _ax()
  art = P.plot_contour(ax, _result())
  mask = _expected_mask()
  quads = mask[:-1, :-1] | mask[1:, :-1] | mask[:-1, 1:] | mask[1:, 1:]
  np.testing.assert_array_equal(~np.ma.getmaskarray(art["bad"].get_array()), quads)
  texts = [t.get_text() for t in art["legend"].get_texts()]
  assert texts == ["not computed / non-finite (2 of 20)"]
  # The garbage value 123 under done=False is not contoured: no level near it is drawn.
  art = P.plot_contour(_ax(), _result(), levels=[100.0, 120.0])
  assert _drawn_levels(art["contour"]).size == 0


def test_contourf_has_colorbar_and_masked_fill():
  ax = _ax()
  art = P.plot_contourf(ax, _result(), vmin=0.1, vmax=10, vlevel=0.5)
  np.testing.assert_allclose(art["contourf"].levels, np.arange(0.1, 10, 0.5), rtol=RTOL)
  assert art["colorbar"] is not None and len(ax.figure.axes) == 2
  assert art["colorbar"].ax.get_ylabel() == "train loss"
  assert art["contourf"].extend == "both"
  assert art["legend"] is not None


# ----------------------------------------------------------------------- heatmaps


def test_heatmap_cells_sit_at_true_coordinates_of_a_nonuniform_grid():
  ax = _ax()
  art = P.plot_heatmap(ax, _result(), field="test_loss")
  coords = art["mesh"].get_coordinates()  # (ny + 1, nx + 1, 2) cell corners
  np.testing.assert_allclose(coords[0, :, 0], X_EDGES, rtol=RTOL, atol=RTOL)
  np.testing.assert_allclose(coords[:, 0, 1], Y_EDGES, rtol=RTOL, atol=RTOL)
  data = art["mesh"].get_array()
  expected = 1.5 * _surface(XS, YS)
  keep = ~_expected_mask()
  np.testing.assert_allclose(data[keep], expected[keep], rtol=RTOL)
  np.testing.assert_array_equal(np.ma.getmaskarray(data), _expected_mask())
  assert art["colorbar"] is not None and len(ax.figure.axes) == 2
  assert art["mesh"].get_cmap().get_bad() == pytest.approx(matplotlib.colors.to_rgba(
      P.BAD_COLOR))
  lo, hi = expected[keep].min(), expected[keep].max()
  assert art["mesh"].norm.vmin == pytest.approx(lo) and art["mesh"].norm.vmax == pytest.approx(hi)


def test_heatmap_log_and_limits():
  art = P.plot_heatmap(_ax(), _result(), vmin=0.5, vmax=5.0, log=True)
  assert isinstance(art["mesh"].norm, matplotlib.colors.LogNorm)
  assert (art["mesh"].norm.vmin, art["mesh"].norm.vmax) == (0.5, 5.0)
  with pytest.raises(ConfigError, match="vmin"):
    P.plot_heatmap(_ax(), _result(), vmin=2.0, vmax=1.0)
  with pytest.raises(ConfigError, match="no 'nope' dataset; datasets it holds: "
                                        "max_eig, min_eig, test_loss, train_loss"):
    P.plot_heatmap(_ax(), _result(), field="nope")
  with pytest.raises(ConfigError, match="unknown colormap 'nope'"):
    P.plot_heatmap(_ax(), _result(), cmap="nope")


@given(steps=hnp.arrays(np.float64, st.integers(2, 7), elements=st.floats(0.01, 3.0)))
def test_heatmap_cells_partition_the_axis(steps):
  xs = np.cumsum(steps) - 1.0
  ax = _ax()
  art = P.plot_heatmap(ax, _result(xs=xs, ys=YS, groups=(), eig=False, masks=False),
                       colorbar=False)
  edges = art["mesh"].get_coordinates()[0, :, 0]
  assert np.all(edges[:-1] < xs) and np.all(xs < edges[1:])          # each centre inside
  np.testing.assert_allclose(edges[1:-1], (xs[1:] + xs[:-1]) / 2, rtol=RTOL, atol=RTOL)


# --------------------------------------------------------------------- 3-D, curvature


def test_surface3d_clips_at_zmax_and_needs_3d_axes():
  ax3d = _ax("3d")
  art = P.plot_surface3d(ax3d, _result(), zmax=2.0)
  assert art["surface"] is not None and art["colorbar"] is not None
  assert art["surface"].norm.vmax == pytest.approx(2.0)
  low = _surface(XS, YS)[~_expected_mask()].min()  # the masked points are left out
  assert art["surface"].norm.vmin == pytest.approx(low)
  assert ax3d.get_zlabel() == "train loss"
  art = P.plot_surface3d(_ax("3d"), _result(), log=True)
  assert art["surface"].norm.vmin == pytest.approx(np.log10(low))
  assert ax3d.get_zlabel() == "train loss"
  with pytest.raises(ConfigError, match="3-D Axes"):
    P.plot_surface3d(_ax(), _result())


@pytest.mark.parametrize("signed", [False, True])
def test_eig_ratio_is_clipped_ratio_of_stored_eigenvalues(signed):
  res = _result()
  res.fields["max_eig"][2, 1] = 0.0  # ratio not finite there: bad
  ax = _ax()
  art = P.plot_eig_ratio(ax, res, signed=signed)
  lo, hi = res.fields["min_eig"], res.fields["max_eig"]
  with np.errstate(divide="ignore", invalid="ignore"):
    ratio = lo / hi
  expected = np.clip(ratio, -1, 1) if signed else np.clip(np.abs(ratio), 0, 1)
  mask = np.zeros(ratio.shape, dtype=bool)
  mask[EIG_UNDONE_AT] = mask[2, 1] = True
  data = art["mesh"].get_array()
  np.testing.assert_array_equal(np.ma.getmaskarray(data), mask)
  np.testing.assert_allclose(data[~mask], expected[~mask], rtol=RTOL)
  assert (art["mesh"].norm.vmin, art["mesh"].norm.vmax) == ((-1.0, 1.0) if signed
                                                             else (0.0, 1.0))
  assert art["mesh"].get_cmap().name.startswith("RdBu_r" if signed else "viridis")
  assert art["colorbar"] is not None
  # Some ratios exceed the clip range, so the test exercises the clipping.
  assert np.nanmax(np.abs(ratio)) > 1


def test_eig_ratio_and_map_on_a_line():
  res = _result_1d(eig=True)
  art = P.plot_eig_ratio(_ax(), res)
  expected = np.clip(np.abs(res.fields["min_eig"] / res.fields["max_eig"]), 0, 1)
  np.testing.assert_allclose(art["line"].get_ydata(), expected, rtol=RTOL)
  art = P.plot_eig_map(_ax(), res, "min_eig")
  np.testing.assert_allclose(art["line"].get_ydata(), res.fields["min_eig"], rtol=RTOL)


def test_eig_map_uses_a_centred_diverging_map_for_two_signs():
  res = _result()
  art = P.plot_eig_map(_ax(), res, "min_eig")
  bound = np.abs(res.fields["min_eig"][res.done["eig_done"]]).max()
  assert (art["mesh"].norm.vmin, art["mesh"].norm.vmax) == pytest.approx((-bound, bound))
  assert art["mesh"].get_cmap().name.startswith("RdBu_r")
  art = P.plot_eig_map(_ax(), res, "max_eig")  # one-signed: sequential
  assert art["mesh"].get_cmap().name.startswith("viridis")
  with pytest.raises(ConfigError, match="unknown eigenvalue map 'trace'"):
    P.plot_eig_map(_ax(), res, "trace")


# ----------------------------------------------------------- spectrum, trajectory


def test_density_log_scale_floor_and_eigenvalue_lines():
  res = _result()
  h = res.groups["hessian"]
  ax = _ax()
  art = P.plot_density(ax, res)
  assert ax.get_yscale() == "log"
  assert ax.get_xlabel() == "eigenvalue" and ax.get_ylabel() == "density (log scale)"
  floor = 1e-8 * h["density"].max()
  np.testing.assert_allclose(art["density"].get_ydata(), np.maximum(h["density"], floor),
                             rtol=RTOL)
  assert art["density"].get_ydata().min() == pytest.approx(floor)  # the tails are floored
  for key, lines in (("eigenvalues_largest", art["largest"]),
                     ("eigenvalues_smallest", art["smallest"])):
    np.testing.assert_array_equal([ln.get_xdata()[0] for ln in lines], h[key])
  assert "12.5" in art["trace"].get_text() and "0.4" in art["trace"].get_text()
  # The group itself works too, and a floor must be positive.
  assert P.plot_density(_ax(), h, eigenvalues=False)["largest"] == []
  with pytest.raises(ConfigError, match="floor"):
    P.plot_density(_ax(), h, floor=0.0)


def test_trajectory_path_markers_and_pca_labels():
  res = _result()
  traj = res.groups["trajectory"]
  ax = _ax()
  art = P.plot_trajectory(ax, res)
  np.testing.assert_array_equal(art["path"].get_xdata(), traj["proj_xcoord"])
  np.testing.assert_array_equal(art["path"].get_ydata(), traj["proj_ycoord"])
  assert len(art["path"].get_xdata()) == 5 and art["path"].get_marker() == "."
  assert (art["start"].get_xdata()[0], art["start"].get_ydata()[0]) == (-0.9, 0.8)
  assert (art["end"].get_xdata()[0], art["end"].get_ydata()[0]) == (0.0, 0.0)
  assert ax.get_xlabel() == "1st PC: 87.12 %"
  assert ax.get_ylabel() == "2nd PC: 5.34 %"
  # The original's extra log-spaced contours above vmax: 10^1 .. 10^8 > 9.6.
  np.testing.assert_allclose(art["contour_high"].levels, np.logspace(1, 8, 8))
  labels = [t.get_text() for t in art["legend"].get_texts()]
  assert labels[:3] == ["trajectory", "start (epoch 0)", "end (epoch 4)"]
  with pytest.raises(ConfigError, match="no trajectory/ group"):
    P.plot_trajectory(_ax(), _result(groups=()))


# ---------------------------------------------------------------- critical points


def test_critical_points_are_marked_at_their_coordinates():
  res = _result()
  crit = res.groups["critical"]
  art = P.plot_critical_on_contour(_ax(), res)
  np.testing.assert_array_equal(art["found"]["minimum"].get_offsets(), [[0.0, 0.0]])
  # The saddle with NaN coordinates (off the plane) is skipped.
  np.testing.assert_array_equal(art["found"]["saddle"].get_offsets(), crit["coords"][2:])
  np.testing.assert_array_equal(art["grid"]["minimum"].get_offsets(), [[-0.1, 0.0]])
  np.testing.assert_array_equal(art["grid"]["maximum"].get_offsets(), [[1.0, 1.0]])
  markers = {k: v.get_paths()[0] for k, v in art["found"].items()}
  assert len({tuple(map(tuple, p.vertices)) for p in markers.values()}) == 2  # distinct
  labels = [t.get_text() for t in art["legend"].get_texts()]
  assert labels[:4] == ["minimum (grid)", "maximum (grid)", "minimum (found)",
                        "saddle (found)"]


def test_loss_vs_index_scatter():
  crit = _result().groups["critical"]
  ax = _ax()
  art = P.plot_loss_vs_index(ax, crit["loss"], crit["index"], crit["kind"])
  np.testing.assert_array_equal(art["scatter"]["minimum"].get_offsets(), [[0.0, 0.3]])
  np.testing.assert_array_equal(art["scatter"]["saddle"].get_offsets(),
                                np.stack([crit["index"][1:], crit["loss"][1:]], axis=1))
  assert ax.get_xlabel() == "index (fraction of negative eigenvalues)"
  assert ax.get_ylabel() == "loss"
  art = P.plot_loss_vs_index(_ax(), [1.0, np.nan], np.array([0, 3]))
  np.testing.assert_array_equal(art["scatter"]["all"].get_offsets(), [[0.0, 1.0]])
  assert art["scatter"]["all"].axes.get_xlabel() == "index (number of negative eigenvalues)"
  with pytest.raises(DataError, match="losses has shape"):
    P.plot_loss_vs_index(_ax(), [1.0, 2.0], [0.0])


# ------------------------------------------------------------------------ 1-D plots


@pytest.mark.parametrize("kind,xlabel", [("random", "α"),
                                         ("target", "interpolation coefficient")])
def test_plot_1d_loss_and_accuracy(kind, xlabel):
  res = _result_1d(kind)
  ax = _ax()
  art = P.plot_1d(ax, res, log=True)
  loss = res.fields["train_loss"]
  y = art["train_loss"].get_ydata()
  finite = np.isfinite(loss)
  np.testing.assert_array_equal(y[finite], loss[finite])
  assert np.isnan(y[~finite]).all()  # the diverged point is a gap, not a spike
  assert art["train_loss"].get_linestyle() == "-" and art["test_loss"].get_linestyle() == "--"
  np.testing.assert_array_equal(art["test_acc"].get_ydata(), res.fields["test_acc"])
  assert ax.get_yscale() == "log" and ax.get_ylabel() == "loss"
  assert ax.get_xlabel() == xlabel
  assert art["ax_acc"].get_ylabel() == "accuracy (%)"
  assert art["ax_acc"].get_ylim() == (0.0, 100.0)
  assert P.plot_1d(_ax(), res, acc=False)["ax_acc"] is None
  assert P.plot_1d(_ax(), res, color="k")["train_loss"].get_color() == "k"  # kw override
  with pytest.raises(ConfigError, match="2-D result"):
    P.plot_1d(_ax(), _result())


def test_plot_1d_overlay():
  xs = np.linspace(-1, 1, 5)
  art = P.plot_1d_overlay(_ax(), {"dir 0": (xs, xs ** 2), "dir 1": (xs, 2 * xs ** 2)},
                          log=True)
  np.testing.assert_array_equal(art["dir 1"].get_ydata(), 2 * xs ** 2)
  assert [t.get_text() for t in art["legend"].get_texts()] == ["dir 0", "dir 1"]
  with pytest.raises(DataError, match="curve 'bad'"):
    P.plot_1d_overlay(_ax(), {"bad": (xs, xs[:3])})


# ------------------------------------------------------------------- teaching plots


def test_plot_loss_functions():
  e = np.linspace(-2, 2, 9)
  curves = {"squared": (e ** 2, 2 * e), "absolute": (np.abs(e), np.sign(e))}
  ax1, ax2 = _ax(), _ax()
  art = P.plot_loss_functions(ax1, ax2, e, curves)
  np.testing.assert_array_equal(art["loss"]["squared"].get_ydata(), e ** 2)
  np.testing.assert_array_equal(art["grad"]["absolute"].get_ydata(), np.sign(e))
  assert art["loss"]["absolute"].get_color() == art["grad"]["absolute"].get_color()
  with pytest.raises(DataError, match="'squared'"):
    P.plot_loss_functions(ax1, None, e, {"squared": (e[:4], e[:4])})


def test_plot_linear_landscape_marks_the_grid_minimum():
  ws, bs = np.linspace(-1, 3, 21), np.linspace(-2, 1, 16)
  w, b = np.meshgrid(ws, bs)
  z = (w - 1.0) ** 2 + 2 * (b + 0.4) ** 2 + 0.05
  ax = _ax()
  art = P.plot_linear_landscape(ax, ws, bs, z, title="squared error", levels=8)
  assert (art["minimum"].get_xdata()[0], art["minimum"].get_ydata()[0]) == (ws[10], bs[8])
  assert (ws[10], bs[8]) == pytest.approx((1.0, -0.4))
  np.testing.assert_allclose(art["contour"].levels, np.geomspace(z.min(), z.max(), 8),
                             rtol=1e3 * EPS)
  assert ax.get_title() == "squared error"
  with pytest.raises(DataError, match="z has shape"):
    P.plot_linear_landscape(_ax(), ws, bs, z.T)


# --------------------------------------------------------- degenerate inputs, files


def _all_nan(res):
  for name in res.fields:
    res.fields[name] = np.full(res.fields[name].shape, np.nan)
  return res


_DEGENERATE = {
    "all_nan": lambda: _all_nan(_result(masks=False)),
    "2x2": lambda: _result(xs=np.array([-1.0, 1.0]), ys=np.array([0.0, 1.0])),
    "none_done": lambda: _result(masks=False),
}


@pytest.mark.parametrize("case", sorted(_DEGENERATE))
def test_degenerate_surfaces_draw_without_error(case):
  res = _DEGENERATE[case]()
  if case == "none_done":
    res.done["done"][:] = False
  calls = [(P.plot_contour, None), (P.plot_contourf, None), (P.plot_heatmap, None),
           (P.plot_surface3d, "3d"), (P.plot_trajectory, None), (P.plot_eig_ratio, None),
           (P.plot_eig_map, None), (P.plot_critical_on_contour, None)]
  for fn, projection in calls:
    ax = _ax(projection)
    art = fn(ax, res)
    _draw(ax)
    if case in ("all_nan", "none_done") and fn not in (P.plot_eig_ratio, P.plot_eig_map):
      assert art["note"] is not None and "no finite" in art["note"].get_text()
  if case != "2x2":
    art = P.plot_heatmap(_ax(), res)
    assert np.ma.getmaskarray(art["mesh"].get_array()).all()


def test_tiny_grids_are_refused_for_contours_but_not_heatmaps():
  res = _result(xs=XS, ys=np.array([0.0]), masks=False)
  with pytest.raises(DataError, match="1 x 5 grid"):
    P.plot_contour(_ax(), res)
  P.plot_heatmap(_ax(), res)
  assert "contour" not in P.kinds_supported(res) and "heatmap" in P.kinds_supported(res)


def test_kinds_supported():
  assert P.kinds_supported(_result()) == [
      "contour", "contourf", "heatmap", "surface3d", "trajectory", "eig_ratio", "eig_map",
      "density", "critical", "loss_vs_index"]
  assert P.kinds_supported(_result(groups=(), eig=False)) == [
      "contour", "contourf", "heatmap", "surface3d"]
  assert P.kinds_supported(_result_1d()) == ["loss1d"]
  assert P.kinds_supported(_result_1d(eig=True)) == ["loss1d", "eig_ratio", "eig_map"]


def test_render_errors_are_one_line_config_errors(tmp_path):
  res = _result(groups=("critical",), eig=False)
  with pytest.raises(ConfigError) as err:
    P.render(res, "density", tmp_path)
  assert str(err.value) == (
      "/tmp/run/surface.h5 has no hessian/ group, so 'density' cannot be drawn; kinds this "
      "file supports: contour, contourf, heatmap, surface3d, critical, loss_vs_index")
  with pytest.raises(ConfigError, match=r"unknown plot kind 'nope'; valid plot kind names: "
                                        r"blocks, contour, contourf, critical, density"):
    P.render(res, "nope", tmp_path)
  with pytest.raises(ConfigError, match="unknown figure format 'jpeg'"):
    P.render(res, "contour", tmp_path, formats=("jpeg",))
  with pytest.raises(ConfigError, match="option of kind 'heatmap' is not accepted"):
    P.render(res, "heatmap", tmp_path, formats="png", not_an_option=3)
  with pytest.raises(ConfigError, match="1-D result, so 'contour'"):
    P.render(_result_1d(), "contour", tmp_path)
  assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
  out = tmp_path_factory.mktemp("figures")
  paths = P.render_all(_result(), out, formats=("pdf", "png"), dpi=40)
  paths["loss1d"] = P.render(_result_1d(), "loss1d", out, formats=("pdf", "png"), dpi=40)
  return paths


def test_render_all_writes_every_supported_kind(rendered):
  import matplotlib.pyplot as plt  # only to check that no pyplot figure was left open
  assert plt.get_fignums() == []
  assert sorted(rendered) == sorted(P.kinds_supported(_result()) + ["loss1d"])
  for kind, paths in rendered.items():
    assert [p.suffix for p in paths] == [".pdf", ".png"]
    stem = "line" if kind == "loss1d" else "surface"
    assert paths[0].name == f"{stem}_{kind}.pdf"
    assert paths[0].read_bytes().startswith(b"%PDF")
    assert paths[1].read_bytes().startswith(b"\x89PNG")


def test_pdfs_embed_truetype_fonts(rendered):
  # pdf.fonttype 42: each font is a Type0 font with a CIDFontType2 (TrueType) descendant
  # and its glyphs in a /FontFile2 stream; never Type 3 (bitmap-like) or Type 1 fonts.
  for kind, paths in rendered.items():
    pdf = paths[0].read_bytes()
    assert b"/FontFile2" in pdf and b"/CIDFontType2" in pdf, kind
    assert re.search(rb"/Subtype\s*/Type3", pdf) is None, kind
    assert re.search(rb"/Subtype\s*/Type1", pdf) is None, kind
  # The check can fail: matplotlib's default (fonttype 3) writes Type 3 fonts.
  fig = Figure(figsize=(1, 1))
  fig.text(0.5, 0.5, "loss")
  buf = _bytesio.BytesIO()
  with matplotlib.rc_context({"pdf.fonttype": 3}):
    fig.savefig(buf, format="pdf")
  assert re.search(rb"/Subtype\s*/Type3", buf.getvalue()) is not None


def test_render_options_reach_the_plot_and_the_file_name(tmp_path):
  paths = P.render(_result(), "heatmap", tmp_path, formats="png", dpi=20, field="test_loss",
                   log=True, stem="run")
  assert [p.name for p in paths] == ["run_heatmap_test_loss_log.png"]
  with pytest.raises(ConfigError, match="options given for kind 'density'"):
    P.render_all(_result(groups=()), tmp_path, options={"density": {}})


# ------------------------------------------------------------- landscape.io round trip


def test_render_from_a_file_written_by_landscape_io(tmp_path):
  lio = pytest.importorskip("landscape.io", reason="landscape.io is not importable yet")
  if not hasattr(lio, "GridFile") or not hasattr(lio, "load"):
    pytest.skip("landscape.io has no GridFile/load yet")
  path = tmp_path / "surface.h5"
  loss = _surface(XS, YS)
  with lio.GridFile.open(path, xs=XS, ys=YS, fields=("train_loss", "test_loss"),
                         attrs={"direction_kind": "random", "seed": 0},
                         dtype=np.float64) as g:
    flat = loss.ravel()
    g.write(0, {"train_loss": flat[:15], "test_loss": 2 * flat[:15]})  # rows 0-2 only
    g.write_group("hessian", {k: v for k, v in _result().groups["hessian"].items()})
    g.write_group("critical", {"coords": np.array([[0.0, 0.0]]), "loss": np.array([0.3]),
                               "grad_norm": np.array([0.0]), "index": np.array([0.0]),
                               "kind": ["minimum"]})
  res = lio.load(path)
  assert P.kinds_supported(res) == ["contour", "contourf", "heatmap", "surface3d", "density",
                                    "critical", "loss_vs_index"]
  art = P.plot_heatmap(_ax(), res)
  mask = np.ma.getmaskarray(art["mesh"].get_array())
  np.testing.assert_array_equal(mask, np.arange(20).reshape(4, 5) >= 15)  # unwritten row
  np.testing.assert_allclose(art["mesh"].get_array()[~mask], loss.ravel()[:15], rtol=RTOL)
  paths = P.render_all(res, tmp_path / "fig", kinds=["contour", "critical"], formats="png",
                       dpi=20)
  assert [p.name for p in paths["critical"]] == ["surface_critical.png"]


# ------------------------------------------------ a Surface straight from a sweep


def _quadratic(x, y=0.0):
  """The loss of the sweep below at (x, y): w = (0.5 + x, -1 + y), b = 0.25 + 0.5 y."""
  return (0.5 + x) ** 2 + (-1.0 + y) ** 2 + 2 * (0.25 + 0.5 * y) ** 2


@pytest.fixture(scope="module")
def swept():
  """A 2-D (on XS x YS) and a 1-D Surface from landscape.surface.evaluate; no file."""
  import jax.numpy as jnp

  from landscape import surface
  params = {"w": jnp.array([0.5, -1.0]), "b": jnp.array(0.25)}
  dx = {"w": jnp.array([1.0, 0.0]), "b": jnp.array(0.0)}
  dy = {"w": jnp.array([0.0, 1.0]), "b": jnp.array(0.5)}

  def loss_fn(p, batch):
    return jnp.sum(p["w"] ** 2) + 2 * p["b"] ** 2

  def acc_fn(p, batch):
    return 100.0 / (1.0 + loss_fn(p, batch))

  plane = surface.evaluate(loss_fn, params, (dx, dy), XS, YS)
  line = surface.evaluate(loss_fn, params, (dx,), np.linspace(-1, 1, 9),
                          metrics={"acc": acc_fn})
  return types.SimpleNamespace(plane=plane, line=line)


def test_swept_surface_holds_the_analytic_loss(swept):
  # The values the figures below must carry; float32 sweep.
  x, y = np.meshgrid(XS, YS)
  np.testing.assert_allclose(swept.plane.values["loss"], _quadratic(x, y), rtol=1e-5)
  np.testing.assert_allclose(swept.line.values["loss"], _quadratic(swept.line.xs), rtol=1e-5)
  assert swept.plane.done.all() and swept.line.done.all()
  assert swept.plane.path is None and not hasattr(swept.plane.done, "keys")  # not a file


def test_a_surface_reads_as_a_result(swept):
  assert P.default_field(swept.plane) == "loss" and P.default_field(swept.line) == "loss"
  assert P.kinds_supported(swept.plane) == ["contour", "contourf", "heatmap", "surface3d"]
  assert P.kinds_supported(swept.line) == ["loss1d"]
  z = P.masked_field(swept.plane, "loss")
  assert not np.ma.getmaskarray(z).any()
  np.testing.assert_array_equal(z.data, swept.plane.values["loss"])


def test_heatmap_of_a_surface_carries_its_values(swept):
  surf = swept.plane
  ax = _ax()
  art = P.plot_heatmap(ax, surf)  # field defaults to the sweep's "loss"
  data = art["mesh"].get_array()
  assert not np.ma.getmaskarray(data).any()
  np.testing.assert_array_equal(data.data, surf.values["loss"])
  coords = art["mesh"].get_coordinates()
  np.testing.assert_allclose(coords[0, :, 0], X_EDGES, rtol=RTOL, atol=RTOL)
  np.testing.assert_allclose(coords[:, 0, 1], Y_EDGES, rtol=RTOL, atol=RTOL)
  assert art["colorbar"].ax.get_ylabel() == "loss"
  assert art["legend"] is None  # nothing masked
  _draw(ax)


def test_contour_of_a_surface_draws_its_levels(swept):
  surf = swept.plane
  ax = _ax()
  art = P.plot_contour(ax, surf, vmin=0.1, vmax=10.0, vlevel=0.5)
  values = surf.values["loss"].astype(float)
  expected = np.arange(0.1, 10.0, 0.5)
  inside = expected[(expected > values.min()) & (expected < values.max())]
  assert inside.size >= 3
  np.testing.assert_allclose(_drawn_levels(art["contour"]), inside, rtol=RTOL)
  assert art["bad"] is None and art["legend"] is None
  # The contour set is drawn on the swept values: its z range is theirs.
  assert (art["contour"].zmin, art["contour"].zmax) == (values.min(), values.max())
  assert ax.get_xlabel() == "α" and ax.get_ylabel() == "β"
  _draw(ax)


def test_plot_1d_of_a_surface_draws_loss_and_acc(swept):
  line = swept.line
  ax = _ax()
  art = P.plot_1d(ax, line)
  np.testing.assert_array_equal(art["loss"].get_xdata(), line.xs)
  np.testing.assert_array_equal(art["loss"].get_ydata(), line.values["loss"])
  np.testing.assert_array_equal(art["acc"].get_ydata(), line.values["acc"])
  assert art["ax_acc"] is not None and art["ax_acc"].get_ylabel() == "accuracy (%)"
  assert [t.get_text() for t in art["legend"].get_texts()] == ["loss", "accuracy"]
  assert "train_loss" not in art and "test_loss" not in art
  _draw(ax)


def test_render_a_surface_without_a_file(swept, tmp_path):
  paths = P.render(swept.plane, "contour", tmp_path, formats="png", dpi=20)
  assert paths == [tmp_path / "result_contour.png"]  # no file, so the stem is "result"
  assert paths[0].read_bytes().startswith(b"\x89PNG")
  paths = P.render(swept.line, "loss1d", tmp_path, formats="png", dpi=20, stem="line")
  assert [p.name for p in paths] == ["line_loss1d.png"]
  written = P.render_all(swept.plane, tmp_path / "all", formats="png", dpi=20)
  assert list(written) == ["contour", "contourf", "heatmap", "surface3d"]
  assert all(p[0].exists() for p in written.values())


def test_a_partly_computed_surface_masks_the_points_not_done(swept):
  import dataclasses
  done = np.ones(swept.plane.shape, dtype=bool)
  undone = [(0, 1), (2, 3), (3, 0)]
  for at in undone:
    done[at] = False
  # The values there stay finite: only the done mask tells them apart.
  surf = dataclasses.replace(swept.plane, done=done)
  assert np.isfinite(surf.values["loss"]).all()
  art = P.plot_heatmap(_ax(), surf)
  np.testing.assert_array_equal(np.ma.getmaskarray(art["mesh"].get_array()), ~done)
  assert [t.get_text() for t in art["legend"].get_texts()] == [
      "not computed / non-finite (3 of 20)"]
  art = P.plot_contour(_ax(), surf)
  assert art["bad"] is not None
  assert [t.get_text() for t in art["legend"].get_texts()] == [
      "not computed / non-finite (3 of 20)"]
  line = dataclasses.replace(swept.line, done=np.arange(9) < 6)
  art = P.plot_1d(_ax(), line, acc=False)
  y = art["loss"].get_ydata()
  np.testing.assert_array_equal(y[:6], line.values["loss"][:6])
  assert np.isnan(y[6:]).all()


# ------------------------------------------------------------- figure-kind registry


BUILTIN_KINDS = ("loss1d", "contour", "contourf", "heatmap", "surface3d", "trajectory",
                 "eig_ratio", "eig_map", "density", "blocks", "operators", "critical",
                 "loss_vs_index", "path", "plane",
                 "saddle_spectrum", "sharpness")


def test_builtin_kinds_keep_their_order_aspects_and_projection():
  assert P.KINDS == BUILTIN_KINDS == tuple(P.FIGURE_KINDS)
  aspects = {name: kind.aspect for name, kind in P.FIGURE_KINDS.items()}
  assert aspects == {"loss1d": 0.75, "contour": 0.8, "contourf": 0.8, "heatmap": 0.8,
                     "surface3d": 0.85, "trajectory": 0.8, "eig_ratio": 0.8, "eig_map": 0.8,
                     "density": 0.75, "blocks": 0.7, "operators": 0.75, "critical": 0.8, "loss_vs_index": 0.75, "path": 0.8,
                     "plane": 1.0, "saddle_spectrum": 0.75, "sharpness": 0.75}
  assert [n for n, k in P.FIGURE_KINDS.items() if k.projection] == ["surface3d"]
  assert P.FIGURE_KINDS["eig_map"].defaults(_result()) == {"which": "max_eig"}
  assert P.FIGURE_KINDS["contour"].defaults(_result()) == {"field": "train_loss"}
  with pytest.raises(TypeError):
    P.FIGURE_KINDS["nope"] = P.FIGURE_KINDS["contour"]  # read-only: use register_kind


def _hist_draw(ax, result, *, field, bins=4):
  counts, edges, _ = ax.hist(P.masked_field(result, field).compressed(), bins=bins)
  return {"counts": counts, "edges": edges}


def _hist_requires(result):
  fields = getattr(result, "fields", {})
  return None if any(f in fields for f in ("train_loss", "test_loss", "loss")) else \
      "has no loss dataset to histogram"


@pytest.fixture
def loss_hist():
  """A toy kind, registered for one test: a histogram of the default loss field."""
  kind = P.register_kind(P.FigureKind("loss_hist", _hist_draw, _hist_requires, aspect=0.6,
                                      defaults=lambda r: {"field": P.default_field(r)}))
  try:
    yield kind
  finally:
    if "loss_hist" in P.FIGURE_KINDS:
      P.unregister_kind("loss_hist")


def test_a_registered_kind_is_drawn_like_a_builtin_one(loss_hist, swept, tmp_path):
  assert P.KINDS == (*BUILTIN_KINDS, "loss_hist")
  assert P.FIGURE_KINDS["loss_hist"] is loss_hist
  assert P.kinds_supported(swept.plane) == ["contour", "contourf", "heatmap", "surface3d",
                                            "loss_hist"]
  assert P.kinds_supported(swept.line) == ["loss1d", "loss_hist"]
  assert P.kinds_supported(_result())[-1] == "loss_hist"
  paths = P.render(swept.line, "loss_hist", tmp_path, formats="png", dpi=20)
  assert paths == [tmp_path / "result_loss_hist.png"] and paths[0].exists()
  # Options reach draw and the file name, as for a built-in kind.
  paths = P.render(_result(), "loss_hist", tmp_path, formats="png", dpi=20,
                   field="test_loss", bins=3)
  assert [p.name for p in paths] == ["surface_loss_hist_test_loss.png"]
  with pytest.raises(ConfigError, match="option of kind 'loss_hist' is not accepted"):
    P.render(_result(), "loss_hist", tmp_path, formats="png", colour="red")
  written = P.render_all(swept.plane, tmp_path / "all", formats="png", dpi=20)
  assert list(written) == ["contour", "contourf", "heatmap", "surface3d", "loss_hist"]
  assert written["loss_hist"][0].name == "result_loss_hist.png"
  # Drawn on an Axes of the caller, the kind's draw gets the swept values.
  art = loss_hist.draw(_ax(), swept.line, **loss_hist.defaults(swept.line))
  assert art["counts"].sum() == swept.line.values["loss"].size


def test_a_registered_kind_reports_why_it_cannot_be_drawn(loss_hist, tmp_path):
  res = _result(groups=())
  del res.fields["train_loss"], res.fields["test_loss"]
  assert P.kinds_supported(res) == ["eig_ratio", "eig_map"]
  with pytest.raises(ConfigError) as err:
    P.render(res, "loss_hist", tmp_path)
  assert str(err.value) == (
      "/tmp/run/surface.h5 has no loss dataset to histogram, so 'loss_hist' cannot be "
      "drawn; kinds this file supports: eig_ratio, eig_map")
  with pytest.raises(ConfigError, match="'loss_hist' cannot be drawn"):
    P.render_all(res, tmp_path, kinds=["eig_map", "loss_hist"])
  assert not list(tmp_path.iterdir())  # refused before anything is drawn


def test_register_kind_refuses_duplicates_and_bad_kinds(loss_hist):
  with pytest.raises(ConfigError, match="figure kind 'loss_hist' is already registered; "
                                        ".*replace=True"):
    P.register_kind(P.FigureKind("loss_hist", _hist_draw, _hist_requires))
  with pytest.raises(ConfigError, match="'contour' is already registered"):
    P.register_kind(P.FigureKind("contour", _hist_draw, _hist_requires))
  assert P.FIGURE_KINDS["contour"].draw is P.plot_contour
  # replace=True swaps the kind in place.
  wide = P.register_kind(P.FigureKind("loss_hist", _hist_draw, _hist_requires, aspect=0.5),
                         replace=True)
  assert P.FIGURE_KINDS["loss_hist"] is wide and P.KINDS == (*BUILTIN_KINDS, "loss_hist")
  with pytest.raises(ConfigError, match="takes a FigureKind, got dict"):
    P.register_kind({"name": "x"})
  with pytest.raises(ConfigError, match="'Loss Hist' is not a lower-case identifier"):
    P.FigureKind("Loss Hist", _hist_draw, _hist_requires)
  with pytest.raises(ConfigError, match="requires=None is not callable"):
    P.FigureKind("loss_hist2", _hist_draw, None)
  with pytest.raises(ConfigError, match="aspect=0 must be a positive"):
    P.FigureKind("loss_hist2", _hist_draw, _hist_requires, aspect=0)
  # Unregistering takes it out of every listing again.
  P.unregister_kind("loss_hist")
  assert P.KINDS == BUILTIN_KINDS and "loss_hist" not in P.kinds_supported(_result())
  with pytest.raises(ConfigError, match="unknown plot kind 'loss_hist'"):
    P.render(_result(), "loss_hist", "/tmp/never_written")
  with pytest.raises(ConfigError, match="unknown plot kind 'loss_hist'"):
    P.unregister_kind("loss_hist")


def test_landscape_plot_draws_a_registered_kind(loss_hist, tmp_path):
  lio = pytest.importorskip("landscape.io")
  from landscape import cli
  path = tmp_path / "surface.h5"
  with lio.GridFile.open(path, xs=XS, ys=YS, fields=("train_loss",),
                         attrs={"direction_kind": "random"}, dtype=np.float64) as g:
    g.write(0, {"train_loss": _surface(XS, YS).ravel()})
  assert cli.main(["plot", str(path), "--kind", "loss_hist", "--format", "png",
                   "--out", str(tmp_path / "fig")]) == 0
  assert [p.name for p in (tmp_path / "fig").iterdir()] == ["surface_loss_hist.png"]


# ------------------------------------------------------- curvature-map convergence


UNCONVERGED_AT = ((1, 3), (2, 0), (3, 2))  # computed, finite, residual above the tolerance


def _result_with_residuals(tol=0.01):
  """_result() with Ritz residuals: tiny everywhere but large at UNCONVERGED_AT."""
  res = _result()
  lmax = np.abs(res.fields["max_eig"])
  r = 1e-4 * lmax
  for at in UNCONVERGED_AT:
    r[at] = 0.5 * lmax[at]
  res.fields["max_eig_residual"] = r
  res.fields["min_eig_residual"] = 1e-4 * lmax
  res.fields["eig_steps"] = np.full(lmax.shape, 20.0)
  res.groups["curvature_map"] = {"tol": np.float64(tol), "max_steps": np.int64(64),
                                 "warm_start": np.int64(1), "num_samples": np.int64(100)}
  return res


def _legend_texts(art):
  return [t.get_text() for t in art["legend"].get_texts()] if art["legend"] else []


@pytest.mark.parametrize("kind", ["ratio", "max_eig", "min_eig"])
def test_eig_maps_mask_and_hatch_unconverged_points(kind):
  res = _result_with_residuals()
  ax = _ax()
  art = (P.plot_eig_ratio(ax, res) if kind == "ratio" else P.plot_eig_map(ax, res, kind))
  _draw(ax)
  unconverged = np.zeros((4, 5), dtype=bool)
  for at in UNCONVERGED_AT:
    unconverged[at] = True
  expected = unconverged.copy()
  expected[EIG_UNDONE_AT] = True
  drawn = np.ma.getmaskarray(art["mesh"].get_array()).reshape(4, 5)
  np.testing.assert_array_equal(drawn, expected)
  np.testing.assert_array_equal(art["unconverged"], unconverged)
  assert art["unconverged_overlay"] is not None
  assert art["unconverged_overlay"].get_hatch() == "//"
  assert len(art["unconverged_overlay"].get_paths()) == len(UNCONVERGED_AT)
  texts = _legend_texts(art)
  assert any(t.startswith("not converged (r > 0.01·|λmax|) (3 of 20)") for t in texts), texts
  assert any(t.startswith("not computed / non-finite (1 of 20)") for t in texts), texts
  assert art["colorbar"].ax.get_ylabel().endswith("(converged points only)")
  if kind != "ratio":  # the colour limits come from the converged points only
    z = np.where(expected, np.nan, res.fields[kind])
    finite = z[np.isfinite(z)]
    norm = art["mesh"].norm
    if finite.min() < 0 < finite.max():
      assert norm.vmax == pytest.approx(np.abs(finite).max())
    else:
      assert (norm.vmin, norm.vmax) == pytest.approx((finite.min(), finite.max()))


@pytest.mark.parametrize("case", ["no_residuals", "tol_nan", "no_group", "all_converged"])
def test_eig_maps_mask_nothing_more_without_a_usable_tolerance(case):
  res = _result_with_residuals(tol=np.nan if case == "tol_nan" else 0.01)
  if case == "no_residuals":
    for k in ("max_eig_residual", "min_eig_residual", "eig_steps"):
      del res.fields[k]
  elif case == "no_group":
    del res.groups["curvature_map"]
  elif case == "all_converged":
    res.fields["max_eig_residual"] = res.fields["min_eig_residual"].copy()
  for art in (P.plot_eig_ratio(_ax(), res), P.plot_eig_map(_ax(), res, "max_eig")):
    expected = np.zeros((4, 5), dtype=bool)
    expected[EIG_UNDONE_AT] = True
    np.testing.assert_array_equal(
        np.ma.getmaskarray(art["mesh"].get_array()).reshape(4, 5), expected)
    assert art["unconverged_overlay"] is None
    assert not any("not converged" in t for t in _legend_texts(art))
    assert "converged points only" not in art["colorbar"].ax.get_ylabel()


def test_eig_ratio_on_a_line_leaves_out_unconverged_points():
  res = _result_1d(eig=True)
  r = np.full(res.fields["max_eig"].shape, 1e-6)
  r[2] = 10.0
  res.fields.update(max_eig_residual=r, min_eig_residual=np.full(r.shape, 1e-6))
  res.groups = {"curvature_map": {"tol": np.float64(1e-3)}}
  art = P.plot_eig_ratio(_ax(), res)
  y = art["line"].get_ydata()
  assert np.isnan(y[2]) and np.isfinite(np.delete(y, 2)).all()
  assert art["unconverged"].tolist() == [i == 2 for i in range(r.size)]


def _operator_result():
  grid = np.linspace(-1.0, 3.0, 50)
  bump = lambda c: np.exp(-0.5 * ((grid - c) / 0.2) ** 2)  # noqa: E731
  group = {"density_grid": grid, "density": bump(1.0), "eigenvalues_largest": np.array([2.0]),
           "negative_mass": np.array(0.5), "block_names": np.array(["Conv_0", "Dense_0"],
                                                                     dtype=object)}
  for op in ("ggn", "residual"):
    group[f"{op}/density_grid"] = grid
    group[f"{op}/density"] = bump(0.5 if op == "ggn" else 0.0)
    group[f"{op}/negative_mass"] = np.array(0.0 if op == "ggn" else 0.7)
  for i, b in enumerate(("Conv_0", "Dense_0")):
    group[f"blocks/{b}/eigenvalues_largest"] = np.array([1.0 + i])
    group[f"blocks/{b}/trace"] = np.array(10.0 * (i + 1))
    group[f"ggn/blocks/{b}/eigenvalues_largest"] = np.array([0.5 + i])
    group[f"ggn/blocks/{b}/trace"] = np.array(5.0 * (i + 1))
  return types.SimpleNamespace(groups={"hessian": group}, fields={}, attrs={}, done={},
                               path="r.h5")


def test_blocks_and_operators_kinds_draw_what_is_stored():
  res = _operator_result()
  assert {"blocks", "operators"} <= set(P.kinds_supported(res))
  art = P.plot_blocks(_ax(), res)
  assert list(art["bars"]) == ["hessian", "ggn"]
  assert [b.get_height() for b in art["bars"]["ggn"]] == [0.5, 1.5]
  np.testing.assert_allclose(art["trace"]["hessian"].get_ydata(), [10.0, 20.0])
  assert art["bars"]["hessian"][0].axes.get_yscale() == "log"
  labels = [t.get_text() for t in art["bars"]["hessian"][0].axes.get_xticklabels()]
  assert labels == ["Conv_0", "Dense_0"]
  art = P.plot_operators(_ax(), res)
  assert list(art["density"]) == ["hessian", "ggn", "residual"]
  texts = [t.get_text() for t in art["legend"].get_texts()]
  assert "residual R = H - G (negative mass 0.7)" in texts
  bare = types.SimpleNamespace(groups={"hessian": {"density": 1}}, fields={}, attrs={}, done={},
                               path="r.h5")
  assert not {"blocks", "operators"} & set(P.kinds_supported(bare))
