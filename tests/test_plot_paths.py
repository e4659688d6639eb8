"""Figures of `landscape path` files: the `path`, `plane` and `saddle_spectrum` kinds.

Synthetic result files follow the schema of the path command (groups ``paths/<method>``,
``plane``, ``saddle``); every figure is checked against the stored arrays, rendered
through the CLI entry point, and refused with one line when its group is missing.
"""

from __future__ import annotations

import io as _bytesio
import types

import matplotlib.image as mimage
import numpy as np
import pytest
from matplotlib.figure import Figure

from landscape import cli
from landscape import io as lio
from landscape import plotting as P
from landscape.errors import ConfigError, DataError

EPS = np.finfo(np.float64).eps
RTOL = 100 * EPS

# The plane grid: non-square, non-uniform in neither (plane coordinates are distances).
XS = np.linspace(-0.5, 2.0, 11)
YS = np.linspace(-0.5, 1.5, 9)
POINTS_X = np.array([0.0, 1.5, 0.75])
POINTS_Y = np.array([0.0, 0.0, 1.0])
LABELS = ["A", "B", "bend"]

T = np.linspace(0.0, 1.0, 11)
T_NEB = np.array([0.0, 0.05, 0.15, 0.3, 0.45, 0.5, 0.55, 0.7, 0.85, 0.95, 1.0])
# Loss above the chord 0.1 + 0.1 t: height h sin^2(pi t), so the barrier is h at t = 0.5.
BARRIERS = {"linear": 0.84, "curve": 0.2, "neb": 0.3}
SADDLE_EIGS = np.array([-2.5, -1e-7, 3e-4, 0.8, 40.0])
SADDLE_RES = np.array([1e-3, 1e-6, 1e-5, 1e-3, 0.5])
SADDLE_EPS = 1e-5


def _loss(t, h):
  return 0.1 + 0.1 * t + h * np.sin(np.pi * t) ** 2


def _plane_loss():
  x, y = np.meshgrid(XS, YS)
  return 0.1 + 0.5 * (x - 0.75) ** 2 + 2.0 * y ** 2  # value[j, i] at (XS[i], YS[j])


def _path_groups(*, plane=True, acc=True, test=True):
  """name -> (arrays, attrs) of the paths/<method> groups, as the schema lays them out."""
  out = {}
  for method, h in BARRIERS.items():
    t = T_NEB if method == "neb" else T
    train = _loss(t, h)
    arrays = {"t": t, "train_loss": train}
    if test:
      arrays["test_loss"] = train + 0.05
    if acc:
      arrays["train_acc"] = 100 - 30 * np.sin(np.pi * t) ** 2
      arrays["test_acc"] = 90 - 30 * np.sin(np.pi * t) ** 2
    if plane:
      arrays["plane_x"] = 1.5 * t
      arrays["plane_y"] = {"linear": 0 * t, "curve": 2 * t * (1 - t),
                           "neb": 0.5 * np.sin(np.pi * t)}[method]
    attrs = {"method": method, "barrier": float(np.max(train - (0.1 + 0.1 * t))),
             "peak": int(np.argmax(train))}
    if method == "curve":
      arrays["history"] = np.linspace(2.0, 0.3, 7)
      attrs.update(curve_kind="bezier", bends=1)
    if method == "neb":
      arrays["history"] = np.linspace(1.0, 1e-3, 8)
      attrs.update(converged=True, steps=7)
    out[f"paths/{method}"] = (arrays, attrs)
  return out


def _saddle_group(*, upper=-1, kind="saddle"):
  return ({"eigenvalues": SADDLE_EIGS, "residuals": SADDLE_RES},
          {"loss": 0.55, "grad_norm": 1e-6, "largest": 40.0, "eps": SADDLE_EPS,
           "index_lower": 1, "index_upper": upper, "near_zero": 2, "exhaustive": False,
           "converged": True, "kind": kind, "method": "neb", "start": 4, "t": 0.5})


def _plane_group():
  return ({"points_x": POINTS_X, "points_y": POINTS_Y, "labels": LABELS},
          {"plane_kind": "three_point"})


@pytest.fixture
def path_file(tmp_path):
  """A `landscape path --plane --saddle` file: the plane grid plus every group."""
  path = tmp_path / "path.h5"
  with lio.GridFile.open(path, xs=XS, ys=YS, fields=("train_loss", "test_loss"),
                         attrs={"run_a": "runs/a", "run_b": "runs/b", "seed_a": 0,
                                "seed_b": 1}, dtype=np.float64) as g:
    loss = _plane_loss().ravel()
    g.write(0, {"train_loss": loss, "test_loss": loss + 0.05})
    groups = {**_path_groups(), "plane": _plane_group(), "saddle": _saddle_group()}
    for name, (arrays, attrs) in groups.items():
      g.write_group(name, arrays, attrs)
  return path


@pytest.fixture
def surface_file(tmp_path):
  """A plain `landscape surface` file: a loss grid, no path groups."""
  path = tmp_path / "surface.h5"
  with lio.GridFile.open(path, xs=XS, ys=YS, fields=("train_loss",),
                         attrs={"direction_kind": "random"}, dtype=np.float64) as g:
    g.write(0, {"train_loss": _plane_loss().ravel()})
  return path


def _ax():
  return Figure(figsize=(3.4, 2.7)).add_subplot()


def _draw(ax):
  ax.figure.savefig(_bytesio.BytesIO(), format="png", dpi=30)


def _not_blank(png):
  img = mimage.imread(png)
  assert img.ndim == 3 and min(img.shape[:2]) > 50
  rgb = img[..., :3].reshape(-1, 3)
  assert rgb.std() > 0.05 and len(np.unique(rgb, axis=0)) > 10


def _texts(legend):
  return [t.get_text() for t in legend.get_texts()]


# --------------------------------------------------------------------------- path


def test_path_draws_the_stored_losses_with_barriers_and_peaks(path_file):
  res = lio.load(path_file)
  art = P.plot_paths(_ax(), res)
  _draw(art["train"]["linear"].axes)
  assert list(art["train"]) == ["linear", "curve", "neb"]
  for method, h in BARRIERS.items():
    t = T_NEB if method == "neb" else T
    line, test = art["train"][method], art["test"][method]
    np.testing.assert_array_equal(line.get_xdata(), t)
    np.testing.assert_allclose(line.get_ydata(), res.groups["paths"][f"{method}/train_loss"],
                               rtol=RTOL)
    np.testing.assert_allclose(test.get_ydata(), _loss(t, h) + 0.05, rtol=RTOL)
    assert line.get_linestyle() == "-" and test.get_linestyle() == "--"
    assert line.get_color() == test.get_color() == P._PATH_COLORS[method]
    np.testing.assert_allclose(art["barrier"][method], h, rtol=1e-12)
    k = int(np.argmax(_loss(t, h)))
    assert art["peak"][method].get_xdata()[0] == t[k]
    assert art["peak"][method].get_ydata()[0] == _loss(t, h)[k]
    np.testing.assert_allclose(art["train_acc"][method].get_ydata(),
                               100 - 30 * np.sin(np.pi * t) ** 2, rtol=RTOL)
  assert art["ax_acc"] is not None
  texts = _texts(art["legend"])
  assert texts[:3] == ["linear (barrier 0.84)", "curve (barrier 0.2)", "neb (barrier 0.3)"]
  assert "saddle (index ≥ 1) from neb" in texts and "highest point" in texts
  assert (art["saddle"].get_xdata()[0], art["saddle"].get_ydata()[0]) == (0.5, 0.55)
  assert art["saddle"].get_color() == P._PATH_COLORS["neb"]


def test_path_prefers_the_stored_barrier_and_peak_when_exposed():
  """A result exposing nested group attributes as group_attrs["paths/<method>"] (the
  "sub/name" keys of .groups) has its stored barrier and peak drawn as stored."""
  arrays, _ = _path_groups(plane=False, acc=False, test=False)["paths/linear"]
  res = types.SimpleNamespace(
      path="/tmp/ab/path.h5", attrs={}, xs=None, ys=None, fields={}, done={},
      groups={"paths": {f"linear/{k}": v for k, v in arrays.items()}},
      group_attrs={"paths/linear": {"barrier": 0.5, "peak": 3}})
  art = P.plot_paths(_ax(), res)
  assert _texts(art["legend"])[0] == "linear (barrier 0.5)"
  assert art["peak"]["linear"].get_xdata()[0] == T[3]
  assert art["test"] == {} and art["ax_acc"] is None and art["saddle"] is None
  assert _texts(art["legend"]) == ["linear (barrier 0.5)", "train loss", "highest point"]


def test_path_of_nested_mappings_and_an_unknown_upper_index_bound():
  groups = {"paths": {m: a for m, (a, _) in
                      ((k.split("/")[1], v) for k, v in _path_groups(plane=False).items())},
            "saddle": _saddle_group(upper=2)[0]}
  res = types.SimpleNamespace(path="p.h5", xs=None, fields={}, groups=groups,
                              group_attrs={"saddle": _saddle_group(upper=2)[1]})
  art = P.plot_paths(_ax(), res)
  assert list(art["train"]) == ["linear", "curve", "neb"]
  assert "saddle (index in [1, 2]) from neb" in _texts(art["legend"])
  assert P.kinds_supported(res) == ["path", "saddle_spectrum"]


def test_path_rejects_curves_of_another_length():
  arrays, _ = _path_groups(plane=False)["paths/linear"]
  res = types.SimpleNamespace(path="p.h5", xs=None, fields={},
                              groups={"paths": {"linear": {**arrays, "test_loss": T[:4]}}})
  with pytest.raises(DataError, match=r"paths/linear/test_loss has shape \(4,\) but "
                                      r"paths/linear/t has \(11,\)"):
    P.plot_paths(_ax(), res)


# -------------------------------------------------------------------------- plane


def test_plane_draws_contours_points_and_projected_paths(path_file):
  res = lio.load(path_file)
  art = P.plot_path_plane(_ax(), res, vmax=3.0, vlevel=0.25)
  _draw(art["points"].axes)
  np.testing.assert_array_equal(art["points"].get_xdata(), POINTS_X)
  np.testing.assert_array_equal(art["points"].get_ydata(), POINTS_Y)
  assert [a.get_text() for a in art["point_labels"]] == LABELS
  assert [a.xy for a in art["point_labels"]] == list(zip(POINTS_X, POINTS_Y))
  np.testing.assert_allclose(art["contour"].levels, np.arange(0.1, 3.0, 0.25), rtol=RTOL)
  assert list(art["paths"]) == ["linear", "curve", "neb"]
  for method in BARRIERS:
    stored = res.groups["paths"]
    np.testing.assert_array_equal(art["paths"][method].get_xdata(), stored[f"{method}/plane_x"])
    np.testing.assert_array_equal(art["paths"][method].get_ydata(), stored[f"{method}/plane_y"])
    assert art["paths"][method].get_color() == P._PATH_COLORS[method]
  ax = art["points"].axes
  assert ax.get_aspect() == 1.0
  assert _texts(art["legend"]) == ["linear", "curve", "neb", "plane points"]


def test_plane_rejects_mismatched_points(path_file):
  res = lio.load(path_file)
  res.groups["plane"]["labels"] = np.array(["A", "B"])
  with pytest.raises(DataError, match="plane/labels has 2 entries for 3 points"):
    P.plot_path_plane(_ax(), res)


# ----------------------------------------------------------------- saddle spectrum


def test_saddle_spectrum_draws_the_ritz_values_with_their_residuals(path_file):
  res = lio.load(path_file)
  art = P.plot_saddle_spectrum(_ax(), res)
  ax = art["title"].axes
  _draw(ax)
  data_line, _, (bars,) = art["errorbar"].lines
  n = np.arange(1, SADDLE_EIGS.size + 1)
  np.testing.assert_array_equal(data_line.get_xdata(), n)
  np.testing.assert_array_equal(data_line.get_ydata(), SADDLE_EIGS)
  segments = np.array(bars.get_segments())  # (k, 2, 2): (x, θ - r) to (x, θ + r)
  np.testing.assert_allclose(segments[:, 0, 1], SADDLE_EIGS - SADDLE_RES, rtol=RTOL)
  np.testing.assert_allclose(segments[:, 1, 1], SADDLE_EIGS + SADDLE_RES, rtol=RTOL)
  # Only -2.5 is certainly negative (θ + r < -eps); -1e-7 lies inside the band.
  np.testing.assert_array_equal(art["negative"].get_ydata(), [-2.5])
  band = art["band"]  # a Rectangle (matplotlib >= 3.9) or a Polygon
  ys = [band.get_y(), band.get_y() + band.get_height()] if hasattr(band, "get_height") \
      else sorted(set(np.asarray(band.get_xy())[:, 1]))
  np.testing.assert_allclose(ys, [-SADDLE_EPS, SADDLE_EPS], rtol=RTOL)
  assert art["symlog"] and ax.get_yscale() == "symlog"  # |λ| spans 1e-7 .. 40
  assert art["title"].get_text() == "saddle: index ≥ 1"


def test_saddle_spectrum_bounds_linear_axis_and_unconverged_title():
  arrays, attrs = _saddle_group(upper=2, kind="undetermined")
  arrays = {"eigenvalues": np.array([-1.0, -0.5, 0.2, 2.0]),
            "residuals": np.array([0.01, 0.02, 0.01, 0.0])}
  res = types.SimpleNamespace(path="s.h5", groups={"saddle": arrays},
                              group_attrs={"saddle": {**attrs, "converged": False}})
  art = P.plot_saddle_spectrum(_ax(), res)
  assert not art["symlog"] and art["title"].axes.get_yscale() == "linear"
  assert art["title"].get_text() == "undetermined: index in [1, 2] (not converged)"
  np.testing.assert_array_equal(art["negative"].get_ydata(), [-1.0, -0.5])
  with pytest.raises(DataError, match="residuals has shape"):
    P.plot_saddle_spectrum(_ax(), types.SimpleNamespace(
        path="s.h5", groups={"saddle": {**arrays, "residuals": np.ones(2)}}))


# ----------------------------------------------------------- rendering and refusal


def test_a_path_file_renders_every_kind_through_landscape_plot(path_file, tmp_path):
  res = lio.load(path_file)
  assert P.kinds_supported(res) == ["contour", "contourf", "heatmap", "surface3d", "path",
                                    "plane", "saddle_spectrum"]
  out = tmp_path / "fig"
  assert cli.main(["plot", str(path_file), "--kind", "path,plane,saddle_spectrum",
                   "--format", "png", "--out", str(out)]) == 0
  names = sorted(p.name for p in out.iterdir())
  assert names == ["path_path.png", "path_plane.png", "path_saddle_spectrum.png"]
  for name in names:
    _not_blank(out / name)


@pytest.mark.parametrize("kind,group", [("path", "paths"), ("plane", "plane"),
                                        ("saddle_spectrum", "saddle")])
def test_a_surface_file_refuses_the_path_kinds(surface_file, tmp_path, kind, group):
  res = lio.load(surface_file)
  assert kind not in P.kinds_supported(res)
  with pytest.raises(ConfigError) as err:
    P.render(res, kind, tmp_path / "fig")
  assert str(err.value) == (
      f"{surface_file} has no {group}/ group, so {kind!r} cannot be drawn; kinds this file "
      "supports: contour, contourf, heatmap, surface3d")
  assert "\n" not in str(err.value) and not (tmp_path / "fig").exists()
  assert cli.main(["plot", str(surface_file), "--kind", kind, "--format", "png",
                   "--out", str(tmp_path / "fig")]) != 0


def test_incomplete_groups_are_refused_with_their_reason(tmp_path):
  res = types.SimpleNamespace(path="p.h5", xs=None, fields={},
                              groups={"paths": {"linear/t": T}, "saddle": {"residuals": T},
                                      "plane": {"points_x": POINTS_X}})
  reasons = {k: P.FIGURE_KINDS[k].requires(res) for k in ("path", "plane", "saddle_spectrum")}
  assert reasons == {"path": "has no paths/<method>/t and train_loss",
                     "plane": "has no grid (no xcoordinates)",
                     "saddle_spectrum": "has no saddle/eigenvalues"}
  assert P.kinds_supported(res) == []
  with pytest.raises(ConfigError, match="p.h5 has no grid .no xcoordinates., so 'plane' "
                                        "cannot be drawn; kinds this file supports: none"):
    P.render(res, "plane", tmp_path)
