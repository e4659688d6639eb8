"""Tests of landscape.interactive: the HTML page's traces, fields, gaps and overlays, the CLI
(`landscape plot --format html`, `landscape view`), and the page in a headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import webbrowser

import numpy as np
import pytest

from landscape import interactive
from landscape import io
from landscape.errors import ConfigError
from cli_helpers import assert_user_error, cli, ok

pytest.importorskip("plotly")

XS = np.linspace(-1.0, 1.0, 9)
YS = np.linspace(-0.5, 1.0, 7)   # ny = 7, nx = 9: a transposed grid would show
UNDONE = (2, 3)       # done False: finite garbage stored there must never show
NAN_AT = (4, 5)       # computed, diverged
EIG_UNDONE = (0, 0)


def _loss():
  x, y = np.meshgrid(XS, YS)
  return 0.3 + 2 * x ** 2 + 5 * y ** 2


def _write_surface(path, *, eig=("max_eig", "min_eig"), groups=True, attrs=None):
  """A result file like a run's landscape.h5: train/test loss and accuracy under ``done``,
  eigenvalue maps under ``eig_done``, critical points and a trajectory."""
  x, y = np.meshgrid(XS, YS)
  loss = _loss()
  vals = {"train_loss": loss, "test_loss": 1.5 * loss, "train_acc": 100 - 10 * loss,
          "test_acc": 90 - 10 * loss}
  vals["train_loss"][UNDONE] = 123.0
  vals["train_loss"][NAN_AT] = np.nan
  done = np.ones(loss.shape, dtype=bool)
  done[UNDONE] = False
  attrs = {"direction_kind": "random", **(attrs or {})}
  with io.GridFile.open(path, xs=XS, ys=YS, fields=tuple(vals), attrs=attrs) as g:
    g.write(0, {k: v.ravel() for k, v in vals.items()}, done=done.ravel())
  if eig:
    maps = {"max_eig": 1.5 + x, "min_eig": -1.0 + 2.0 * y}
    edone = np.ones(loss.shape, dtype=bool)
    edone[EIG_UNDONE] = False
    with io.GridFile.open(path, xs=XS, ys=YS, fields=eig, done="eig_done", attrs=attrs) as g:
      g.write(0, {k: maps[k].ravel() for k in eig}, done=edone.ravel())
  if groups:
    io.write_group(path, "critical", {
        "coords": np.array([[0.0, 0.0], [np.nan, np.nan], [0.5, 0.25], [-0.5, 0.75]]),
        "kind": ["minimum", "saddle", "saddle", "saddle"],
        "loss": np.array([0.3, 2.0, 1.2, 3.6]), "index": np.array([0.0, 0.25, 0.5, 0.5]),
        "grid_coords": np.array([[-0.25, 0.0]]), "grid_kind": ["minimum"]})
    io.write_group(path, "trajectory", {
        "proj_xcoord": np.array([-0.9, -0.6, -0.3, -0.1, 0.0]),
        "proj_ycoord": np.array([0.8, 0.5, 0.2, 0.05, 0.0]),
        "explained_variance_ratio": np.array([0.8712, 0.0534]), "epochs": np.arange(5)})
  return path


@pytest.fixture(scope="module")
def surface(tmp_path_factory):
  return _write_surface(tmp_path_factory.mktemp("interactive") / "landscape.h5")


@pytest.fixture(scope="module")
def fig(surface):
  return interactive.figure(io.load(surface))


def _buttons(fig):
  return fig.layout.updatemenus[0].buttons


# ----------------------------------------------------------------------------- the figure


def test_surface_and_contour_traces_on_the_files_grid(fig):
  surf, cont = fig.data[0], fig.data[1]
  assert surf.type == "surface" and cont.type == "contour"
  for t in (surf, cont):
    np.testing.assert_array_equal(t.x, XS)
    np.testing.assert_array_equal(t.y, YS)
    assert np.asarray(t.z).shape == (YS.size, XS.size)
  assert fig.layout.scene.zaxis.title.text == "train loss"


def test_the_dropdown_lists_exactly_the_stored_fields(fig, tmp_path):
  assert [b.label for b in _buttons(fig)] == [
      "train loss", "test loss", "train accuracy (%)", "test accuracy (%)", "λ_max", "λ_min",
      "|λ_min / λ_max|"]
  one = interactive.figure(io.load(_write_surface(tmp_path / "s.h5", eig=("max_eig",), groups=False)))
  assert [b.label for b in _buttons(one)] == [
      "train loss", "test loss", "train accuracy (%)", "test accuracy (%)", "λ_max"]
  assert [t.type for t in one.data] == ["surface", "contour"]   # no overlays held


def test_undone_and_diverged_points_are_gaps(fig):
  z = np.asarray(fig.data[0].z, dtype=float)
  expected = _loss()
  expected[UNDONE] = expected[NAN_AT] = np.nan
  np.testing.assert_allclose(z, expected, rtol=1e-6)   # float32 storage
  np.testing.assert_array_equal(np.asarray(fig.data[1].z, dtype=float), z)
  by_label = {b.label: b.args[0]["z"][0] for b in _buttons(fig)}
  for label in ("λ_max", "λ_min", "|λ_min / λ_max|"):
    zz = np.asarray(by_label[label], dtype=float)
    assert np.isnan(zz[EIG_UNDONE]) and np.isfinite(zz[UNDONE]), label
  x, y = np.meshgrid(XS, YS)
  ratio = np.abs((-1.0 + 2.0 * y) / (1.5 + x))
  ratio[EIG_UNDONE] = np.nan
  np.testing.assert_allclose(np.asarray(by_label["|λ_min / λ_max|"], float), ratio, rtol=1e-5)


def test_each_button_restyles_the_surface_and_contours_with_its_field(fig):
  acc = next(b for b in _buttons(fig) if b.label == "test accuracy (%)")
  restyle, layout, traces = acc.args
  assert list(traces) == [0, 1]
  expected = 90 - 10 * _loss()
  expected[UNDONE] = np.nan   # under the same done mask as the loss
  np.testing.assert_allclose(np.asarray(restyle["z"][1], float), expected, rtol=1e-5)
  assert layout["scene.zaxis.title.text"] == "test accuracy (%)"
  eig = next(b for b in _buttons(fig) if b.label == "λ_min").args[0]
  assert eig["colorscale"][0] == "RdBu_r" and eig["zmin"][0] == -eig["zmax"][0]  # centred


def test_hover_text_has_every_field_at_the_point(fig):
  text = np.asarray(fig.data[0].text, dtype=object)
  assert text.shape == (YS.size, XS.size)
  j, i = 1, 6
  v = _loss()[j, i]
  x, y = XS[i], YS[j]
  f32 = np.float32   # the file stores float32
  for expected in (f"train loss = {f32(v):.4g}", f"test loss = {f32(1.5 * v):.4g}",
                   f"test accuracy (%) = {f32(90 - 10 * v):.4g}",
                   f"λ_max = {f32(1.5 + x):.4g}", f"λ_min = {f32(-1.0 + 2.0 * y):.4g}"):
    assert expected in text[j, i], (expected, text[j, i])
  assert "train loss = not computed" in text[UNDONE]
  assert "λ_max = not computed" in text[EIG_UNDONE]
  assert "%{x" in fig.data[0].hovertemplate and "%{y" in fig.data[0].hovertemplate
  assert fig.data[1].text is not None


def test_trajectory_and_critical_point_overlays(fig):
  over = {t.name: t for t in fig.data[2:]}
  assert set(over) == {"trajectory", "end", "minimum (found)", "saddle (found)",
                       "minimum (grid)"}
  np.testing.assert_array_equal(over["trajectory"].x, [-0.9, -0.6, -0.3, -0.1, 0.0])
  np.testing.assert_array_equal(over["trajectory"].y, [0.8, 0.5, 0.2, 0.05, 0.0])
  assert over["trajectory"].xaxis == "x" and over["trajectory"].text[0] == "epoch 0"
  # the saddle with NaN coordinates is off the plane: skipped
  np.testing.assert_array_equal(np.c_[over["saddle (found)"].x, over["saddle (found)"].y],
                                [[0.5, 0.25], [-0.5, 0.75]])
  assert "loss = 1.2" in over["saddle (found)"].text[0]
  np.testing.assert_array_equal(over["minimum (grid)"].x, [-0.25])
  assert fig.layout.xaxis.title.text == "1st PC: 87.12 %"


def test_a_path_plane_file_shows_the_plane_points_and_paths(tmp_path):
  path = _write_surface(tmp_path / "path_plane.h5", eig=(), groups=False,
                        attrs={"direction_kind": "plane"})
  io.write_group(path, "plane", {"points_x": np.array([0.0, 0.8, 0.3]),
                                 "points_y": np.array([0.0, 0.0, 0.6]),
                                 "labels": ["A", "B", "bend"]})
  io.write_group(path, "paths/linear", {"t": np.linspace(0, 1, 5),
                                        "train_loss": np.ones(5),
                                        "plane_x": np.linspace(0, 0.8, 5),
                                        "plane_y": np.zeros(5)})
  io.write_group(path, "paths/curve", {"t": np.linspace(0, 1, 3), "train_loss": np.ones(3),
                                       "plane_x": np.array([0.0, 0.3, 0.8]),
                                       "plane_y": np.array([0.0, 0.6, 0.0])})
  fig = interactive.figure(io.load(path))
  over = {t.name: t for t in fig.data[2:]}
  assert set(over) == {"path: linear", "path: curve", "plane points"}
  assert list(over["plane points"].text) == ["A", "B", "bend"]
  np.testing.assert_array_equal(over["path: curve"].x, [0.0, 0.3, 0.8])
  assert fig.layout.xaxis.title.text == "plane x (parameter distance)"


def test_a_line_file_is_a_line_plot_with_the_field_selector(tmp_path):
  xs = np.linspace(-1, 1, 11)
  loss = 0.2 + xs ** 2
  with io.GridFile.open(tmp_path / "line.h5", xs=xs, fields=("train_loss", "train_acc")) as g:
    done = np.ones(xs.size, bool)
    done[4] = False
    g.write(0, {"train_loss": loss, "train_acc": 100 - 10 * loss}, done=done)
  fig = interactive.figure(io.load(tmp_path / "line.h5"))
  assert [t.type for t in fig.data] == ["scatter", "scatter"]
  assert [t.visible for t in fig.data] == [True, False]
  y = np.asarray(fig.data[0].y, dtype=float)
  assert np.isnan(y[4]) and np.allclose(np.delete(y, 4), np.delete(loss, 4))
  assert fig.data[0].connectgaps is False
  assert [b.label for b in _buttons(fig)] == ["train loss", "train accuracy (%)"]
  assert _buttons(fig)[1].args[0]["visible"] == [False, True]
  assert fig.data[0].text[0] == "train loss = 1.2<br>train accuracy (%) = 88"
  assert "not computed" in fig.data[0].text[4]


def test_a_file_without_a_grid_or_fields_is_one_line_error():
  import types
  empty = types.SimpleNamespace(path="p.h5", xs=np.zeros(0), ys=None, fields={}, done={})
  with pytest.raises(ConfigError, match="has no grid"):
    interactive.figure(empty)
  other = types.SimpleNamespace(path="p.h5", xs=XS, ys=None, fields={"foo": XS}, done={})
  with pytest.raises(ConfigError, match="no field an interactive page can show"):
    interactive.figure(other)


def test_missing_plotly_is_a_one_line_error(monkeypatch, surface):
  monkeypatch.setitem(sys.modules, "plotly", None)
  monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
  with pytest.raises(ConfigError) as e:
    interactive.figure(io.load(surface))
  assert "pip install 'landscape[interactive]'" in str(e.value)
  assert "\n" not in str(e.value)


def test_interactive_never_imports_jax():
  code = ("import sys, types, numpy as np, landscape.interactive as I\n"
          "r = types.SimpleNamespace(xs=np.arange(3.), ys=np.arange(2.), "
          "fields={'train_loss': np.ones((2, 3))}, done={})\n"
          "I.page_html(r)\n"
          "assert 'jax' not in sys.modules, 'jax imported'\n"
          "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
  run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert run.returncode == 0, run.stderr


# ------------------------------------------------------------------------------- the page


def test_the_page_is_one_offline_file(surface, tmp_path):
  page = interactive.write_page(io.load(surface), tmp_path / "out" / "page.html")
  assert sorted(p.name for p in page.parent.iterdir()) == ["page.html"]   # no temp file
  html = page.read_text(encoding="utf-8")
  assert "<script src=" not in html and "<link" not in html   # nothing fetched
  assert "plotly.js v" in html and len(html) > 1_000_000       # the library is inline
  assert '"type":"surface"' in html and '"type":"contour"' in html
  assert '"updatemenus"' in html
  assert interactive.is_page(page) and not interactive.is_page(surface)


# --------------------------------------------------------------------------------- the CLI


def test_plot_format_html_writes_the_page_beside_the_figures(tmp_path):
  path = _write_surface(tmp_path / "landscape.h5", eig=(), groups=False)
  out = ok("plot", path, "--format", "html")
  page = tmp_path / "figures" / "landscape.html"
  assert sorted(p.name for p in page.parent.iterdir()) == ["landscape.html"]
  assert str(page) in out and interactive.is_page(page)
  before = page.stat().st_mtime_ns
  ok("plot", path, "--format", "png,html", "--kind", "contour")   # replaced, as figures are
  assert sorted(p.name for p in page.parent.iterdir()) == ["landscape.html",
                                                          "landscape_contour.png"]
  assert page.stat().st_mtime_ns >= before


def test_view_writes_and_opens_the_page(tmp_path, monkeypatch):
  path = _write_surface(tmp_path / "landscape.h5", eig=(), groups=False)
  opened = []
  monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
  out = ok("view", tmp_path)   # a run directory: its landscape.h5
  page = tmp_path / "figures" / "landscape.html"
  assert opened == [page.resolve().as_uri()] and f"wrote {page}" in out
  ok("view", path, "--no-open", "--out", tmp_path / "v.html")
  assert len(opened) == 1 and interactive.is_page(tmp_path / "v.html")
  ok("view", path, "--no-open", "--out", tmp_path / "v.html")   # our page: replaced


@pytest.mark.parametrize("failure", ["false", "error"])
def test_view_without_a_browser_prints_the_path(tmp_path, monkeypatch, failure):
  path = _write_surface(tmp_path / "landscape.h5", eig=(), groups=False)

  def no_browser(url):
    if failure == "error":
      raise webbrowser.Error("could not locate runnable browser")
    return False
  monkeypatch.setattr(webbrowser, "open", no_browser)
  rc, out, err = cli("view", path)
  assert rc == 0 and err == "", err
  assert f"open {tmp_path / 'figures' / 'landscape.html'} in one" in out


def test_view_and_plot_html_errors_are_one_line(tmp_path):
  path = _write_surface(tmp_path / "landscape.h5", eig=(), groups=False)
  assert_user_error(*cli("view", tmp_path / "missing.h5", "--no-open")[::2], "missing.h5")
  (tmp_path / "foreign.h5").write_text("not hdf5")
  assert_user_error(*cli("view", tmp_path / "foreign.h5", "--no-open")[::2], "foreign.h5")
  assert_user_error(*cli("plot", tmp_path / "foreign.h5", "--format", "html")[::2],
                    "foreign.h5")
  (tmp_path / "mine.html").write_text("<html>a user's page</html>")
  assert_user_error(*cli("view", path, "--no-open", "--out", tmp_path / "mine.html")[::2],
                    "--overwrite")
  assert (tmp_path / "mine.html").read_text() == "<html>a user's page</html>"
  ok("view", path, "--no-open", "--out", tmp_path / "mine.html", "--overwrite")
  assert_user_error(*cli("view", path, "--no-open", "--out", path)[::2], "input file")
  with io.GridFile.open(tmp_path / "nogrid.h5", xs=XS, fields=("foo",)) as g:
    g.write(0, {"foo": XS})
  assert_user_error(*cli("view", tmp_path / "nogrid.h5", "--no-open")[::2],
                    "no field an interactive page can show")
  with io.TrajectoryWriter(tmp_path / "trajectory.h5", {"w": np.zeros(2)}, resume=False) as t:
    t.append(0, {"w": np.ones(2)})
  assert_user_error(*cli("plot", tmp_path / "trajectory.h5", "--format", "html")[::2],
                    "has no grid")


# ------------------------------------------------------------------------ a real browser


def _browser() -> str | None:
  return next((b for b in (shutil.which(n) for n in ("chromium", "chromium-browser",
                                                     "google-chrome")) if b), None)


# Injected at the top of <head> of a copy of the page: records uncaught errors, unhandled
# promise rejections and console.error calls on <html data-page-errors="...">, which
# --dump-dom then shows. (Chromium's stderr log prints console.error and console.log
# alike as INFO:CONSOLE, so the log cannot tell an error from a notice.)
_PROBE = """<script>(function () {
  var seen = [];
  function note(m) {
    seen.push(String(m));
    document.documentElement.setAttribute("data-page-errors", seen.join(" | "));
  }
  window.addEventListener("error", function (ev) { note("uncaught: " + ev.message); });
  window.addEventListener("unhandledrejection", function (ev) {
    note("unhandled rejection: " + ev.reason); });
  var error = console.error;
  console.error = function () {
    note("console.error: " + Array.prototype.join.call(arguments, " "));
    return error.apply(console, arguments);
  };
})();</script>"""
# Appended to <body>: once the plot is drawn, selects every field of the dropdown in turn
# (the button's own Plotly.update arguments), then the first again, and counts them on
# <html data-fields-shown="N">.
_SELECT_ALL = """<script>window.addEventListener("load", function () {
  setTimeout(function () {
    var gd = document.querySelector(".plotly-graph-div");
    var buttons = gd.layout.updatemenus[0].buttons, chain = Promise.resolve();
    buttons.concat([buttons[0]]).forEach(function (b, i) {
      chain = chain.then(function () {
        return Plotly.update(gd, b.args[0], b.args[1], b.args[2]);
      }).then(function () {
        document.documentElement.setAttribute("data-fields-shown", String(i));
      });
    });
  }, 1000);
});</script>"""


@pytest.mark.skipif(_browser() is None, reason="no chromium, chromium-browser or google-chrome "
                    "installed (.ci/run installs chromium)")
def test_the_page_renders_in_headless_chromium(surface, tmp_path):
  """The page, loaded from disk by a headless Chromium, draws the 3-D surface (WebGL) and
  the contours with no page error, every field of the dropdown draws too, and the
  screenshot is a plot, not a blank page."""
  from matplotlib import image

  page = interactive.write_page(io.load(surface), tmp_path / "page.html")
  html = page.read_text(encoding="utf-8")
  probed = tmp_path / "probed.html"
  probed.write_text(html.replace("<head>", "<head>" + _PROBE, 1)
                    .replace("</body>", _SELECT_ALL + "</body>", 1), encoding="utf-8")
  shot = tmp_path / "shot.png"
  run = subprocess.run(
      [_browser(), "--headless", "--disable-gpu", "--no-sandbox", "--enable-unsafe-swiftshader",
       "--no-first-run", "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
       f"--screenshot={shot}", "--dump-dom", "--window-size=1200,900",
       "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0", probed.as_uri()],
      capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stderr[-2000:]
  dom, log = run.stdout, run.stderr
  html_tag = re.search(r"<html[^>]*>", dom)
  assert html_tag and "data-page-errors" not in html_tag.group(0), html_tag
  n_fields = len(interactive.figure(io.load(surface)).layout.updatemenus[0].buttons)
  assert f'data-fields-shown="{n_fields}"' in html_tag.group(0), html_tag   # all, then back
  page_log = [line for line in log.splitlines() if ":CONSOLE" in line and "Uncaught" in line]
  assert page_log == [], page_log
  assert 'class="main-svg"' in dom          # plotly drew its SVG layers
  assert 'class="gl-container"' in dom      # and the WebGL scene of the 3-D surface
  img = image.imread(shot)[..., :3]
  assert img.shape[:2] == (900, 1200)
  assert img.std() > 0.1, "the screenshot is (nearly) one colour"
  colours = np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0)
  assert len(colours) > 500, len(colours)
  # the 3-D scene (left half) and the contours (right half) each have many coloured
  # (saturated) pixels: a failed WebGL surface would leave the left half white
  rgb = img.reshape(img.shape[0], img.shape[1], 3)
  saturation = rgb.max(axis=-1) - rgb.min(axis=-1)
  for half in (saturation[:, :600], saturation[:, 600:]):
    assert (half > 0.25).mean() > 0.02, (half > 0.25).mean()
