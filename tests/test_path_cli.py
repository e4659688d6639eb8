"""`landscape path` end to end on two tiny runs: files, figures, resume, refusals."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from cli_helpers import assert_user_error, cli, ok

TINY = ["--set", "train.epochs=2", "--set", "data.n_train=200", "--set", "data.n_test=100",
        "--set", "model.kwargs.features=[4]", "--set", "model.kwargs.dense=8"]
FAST = ["--set", "paths.curve_steps=60", "--set", "paths.neb_steps=40",
        "--set", "paths.n_samples=100", "--set", "paths.plane_num=5",
        "--set", "paths.save_every=20", "--set", "paths.saddle_steps=20", "--num", "7"]
F32_RTOL = 64 * float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
  root = tmp_path_factory.mktemp("paths")
  out = {"a": root / "a", "b": root / "b", "c": root / "c", "other": root / "other"}
  ok("train", "--out", out["a"], *TINY)
  ok("train", "--out", out["b"], *TINY, "--set", "train.seed=1")
  ok("train", "--out", out["c"], *TINY, "--set", "train.seed=2")
  ok("train", "--out", out["other"], *TINY, "--set", "model.kwargs.dense=6")
  return out


@pytest.fixture(scope="module")
def full(runs, tmp_path_factory) -> tuple[Path, str]:
  out = tmp_path_factory.mktemp("full") / "p.h5"
  stdout = ok("path", "--run", runs["a"], "--to", runs["b"], "--plane", "--saddle", *FAST,
              "--out", out)
  return out, stdout


def _read(path: Path) -> dict[str, np.ndarray]:
  arrays = {}
  with h5py.File(path, "r") as f:
    f.visititems(lambda name, o: arrays.__setitem__(name, o[()])
                 if isinstance(o, h5py.Dataset) else None)
  return arrays


def _attrs(path: Path, group: str) -> dict:
  with h5py.File(path, "r") as f:
    return dict(f[group].attrs)


def test_path_file_holds_every_method_consistently(full):
  out, stdout = full
  a = _read(out)
  for line in ("linear  barrier", "curve   barrier", "neb     barrier", "saddle  from the neb"):
    assert line in stdout, stdout
  ts = a["xcoordinates"]
  np.testing.assert_array_equal(ts, np.linspace(0, 1, 7))
  assert a["done"].all()
  # the linear path is the file's grid
  np.testing.assert_array_equal(a["paths/linear/train_loss"], a["train_loss"])
  np.testing.assert_array_equal(a["paths/linear/t"], ts)
  for method in ("linear", "curve", "neb"):
    loss, t = a[f"paths/{method}/train_loss"].astype(np.float64), a[f"paths/{method}/t"]
    chord = (1 - t) * loss[0] + t * loss[-1]
    attrs = _attrs(out, f"paths/{method}")
    assert attrs["barrier"] == pytest.approx(np.max(loss - chord), rel=1e-12, abs=1e-12)
    assert attrs["peak"] == int(np.argmax(loss))
    # every path joins the same two models: the same losses at its ends
    np.testing.assert_allclose(loss[[0, -1]], a["train_loss"][[0, -1]], rtol=F32_RTOL)
    np.testing.assert_allclose(a[f"paths/{method}/test_acc"][[0, -1]],
                               a["test_acc"][[0, -1]], rtol=F32_RTOL)
  assert a["paths/curve/control_0000"].shape[0] == 3           # start, one bend, end
  assert a["paths/neb/images_0000"].shape[0] == 17
  assert a["paths/neb/history"].shape == (_attrs(out, "paths/neb")["steps"] + 1,)
  s = _attrs(out, "saddle")
  assert s["kind"] in ("saddle", "minimum", "undetermined")
  assert s["index_lower"] <= s["index_upper"] or s["index_upper"] == -1
  assert 0 < s["start"] < 16        # the highest interior image, never an endpoint
  assert a["saddle/eigenvalues"].shape == a["saddle/residuals"].shape == (6,)
  assert not list(out.parent.glob("*.state"))   # states are removed once stored


def test_plane_file_puts_the_three_points_and_the_paths_on_the_plane(full):
  out, _ = full
  plane = out.with_name("p_plane.h5")
  a, p = _read(out), _read(plane)
  assert p["train_loss"].shape == (5, 5) and p["done"].all()
  px, py = p["plane/points_x"], p["plane/points_y"]
  assert px[0] == py[0] == 0.0 and abs(py[1]) < 1e-5 * px[1] and py[2] > 0
  # the linear path lies on the x axis from A to B, the curve passes through the bend's
  # plane and both start at A and end at B
  np.testing.assert_allclose(p["paths/linear/plane_y"], 0.0, atol=1e-5 * px[1])
  np.testing.assert_allclose(p["paths/linear/plane_x"], px[1] * a["paths/linear/t"],
                             rtol=1e-5, atol=1e-5 * px[1])
  for method in ("curve", "neb"):
    xy = np.stack([p[f"paths/{method}/plane_x"], p[f"paths/{method}/plane_y"]], 1)
    np.testing.assert_allclose(xy[[0, -1]], [[0, 0], [px[1], py[1]]], atol=1e-4 * px[1])
    np.testing.assert_array_equal(p[f"paths/{method}/train_loss"],
                                  a[f"paths/{method}/train_loss"])
  assert p["xcoordinates"][0] < 0 < px[1] < p["xcoordinates"][-1]
  assert p["ycoordinates"][0] < 0 < py[2] < p["ycoordinates"][-1]


def test_every_path_figure_kind_is_drawn_and_info_reads_the_files(full):
  out, _ = full
  plane = out.with_name("p_plane.h5")
  stdout = ok("plot", out, "--kind", "path,saddle_spectrum,loss1d", "--format", "png")
  assert "3 figure files" in stdout, stdout
  stdout = ok("plot", plane, "--kind", "plane,path,contour", "--format", "png")
  assert "3 figure files" in stdout, stdout
  figures = {f.name for f in (out.parent / "figures").iterdir()}
  assert {"p_path.png", "p_saddle_spectrum.png", "p_plane_plane.png"} <= figures
  info = ok("info", out)
  assert "[paths]" in info and "[saddle]" in info


def test_a_rerun_reads_stored_methods_back(runs, full, tmp_path):
  out, _ = full
  before = _read(out)
  stdout = ok("path", "--run", runs["a"], "--to", runs["b"], *FAST, "--method", "curve,neb",
              "--out", out)
  assert "curve: read back" in stdout and "neb: read back" in stdout, stdout
  after = _read(out)
  for key in before:
    np.testing.assert_array_equal(after[key], before[key], err_msg=key)


def test_killed_curve_fit_and_band_resume_to_the_uninterrupted_result(runs, full, tmp_path,
                                                                     monkeypatch):
  from landscape import paths
  want = _read(full[0])
  out = tmp_path / "k.h5"
  cmd = ["path", "--run", runs["a"], "--to", runs["b"], *FAST, "--method", "curve,neb",
         "--out", out]
  real, saves = paths.StateFile.save, []

  def save(self, state):
    real(self, state)
    saves.append(self.path)
    if len(saves) in (2, 4):    # once inside the curve fit, once inside the band
      raise KeyboardInterrupt

  monkeypatch.setattr(paths.StateFile, "save", save)
  rc, _, err = cli(*cmd)
  assert rc == 130 and "rerun the same command" in err, err
  assert (tmp_path / "k.h5.curve.state").exists()
  rc, _, err = cli(*cmd)
  assert rc == 130, err
  assert (tmp_path / "k.h5.neb.state").exists()
  monkeypatch.setattr(paths.StateFile, "save", real)
  ok(*cmd)
  got = _read(out)
  for key in want:
    if key.startswith(("paths/curve/", "paths/neb/")):
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  assert not list(tmp_path.glob("*.state"))


@pytest.mark.parametrize("case", ["other_model", "same_run", "bad_method", "plane_alone",
                                  "num", "images", "curve_kind"])
def test_bad_requests_are_one_line_and_change_nothing(runs, tmp_path, case):
  a, b = runs["a"], runs["b"]
  extra, to, mention = {
      "other_model": ([], runs["other"], "model.kwargs.dense"),
      "same_run": ([], a, "is the run itself"),
      "bad_method": (["--method", "linear,spline"], b, "'spline'"),
      "plane_alone": (["--method", "linear", "--plane"], b, "add --method curve or neb"),
      "num": (["--num", "1"], b, "--num"),
      "images": (["--set", "paths.neb_images=2"], b, "paths.neb_images"),
      "curve_kind": (["--set", "paths.curve_kind=spline"], b, "'spline'"),
  }[case]
  before = sorted(p.name for p in a.iterdir())
  rc, _, err = cli("path", "--run", a, "--to", to, *extra, "--out", tmp_path / "x.h5")
  assert_user_error(rc, err, mention)
  assert sorted(p.name for p in a.iterdir()) == before
  assert list(tmp_path.iterdir()) == []


def test_a_stored_path_with_other_settings_is_refused_not_mixed(runs, full):
  out, _ = full
  before = out.read_bytes()
  rc, _, err = cli("path", "--run", runs["a"], "--to", runs["b"], *FAST,
                   "--set", "paths.curve_steps=61", "--out", out)
  assert_user_error(rc, err, "other settings", "curve_steps", "--overwrite")
  assert out.read_bytes() == before


def test_plane_direction_kind_puts_three_runs_at_their_recorded_coordinates(runs, tmp_path):
  """`surface --direction plane --target B --target C`: orthonormal directions, and the loss
  of the plane at each recorded coordinate equals the loss of that run's checkpoint."""
  import jax
  import jax.numpy as jnp
  from landscape import io as lio
  from landscape import pipeline, surface
  out = tmp_path / "plane.h5"
  ok("surface", "--run", runs["a"], "--direction", "plane", "--target", runs["b"], "--target",
     runs["c"], "--x=-1:8:4", "--y=-1:8:4", "--out", out)
  res = lio.load(out)
  xy = np.stack([res.groups["plane"]["points_x"], res.groups["plane"]["points_y"]], 1)
  run = pipeline.open_run(runs["a"])
  obj = run.objective("eval")
  u, v = lio.read_directions(out, obj.params)
  flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)]).astype(np.float64)  # noqa: E731
  fu, fv = flat(u), flat(v)
  assert abs(fu @ fu - 1) < 1e-5 and abs(fv @ fv - 1) < 1e-5 and abs(fu @ fv) < 1e-5
  models = [obj.params] + [obj.perturbed_of(run.variables_of(str(runs[k]))) for k in "bc"]
  data = run.data("train")
  for model, (x, y) in zip(models, xy):
    rel = flat(model) - flat(obj.params)
    np.testing.assert_allclose([rel @ fu, rel @ fv], [x, y], rtol=1e-5, atol=1e-5)
    got = surface.evaluate(obj.loss_fn, obj.params, (u, v), np.array([x]), np.array([y]),
                           data).values["loss"][0, 0]
    np.testing.assert_allclose(got, float(obj.loss_fn(model, data)), rtol=1e-4)
  assert xy[0].tolist() == [0.0, 0.0] and xy[2, 1] > 0
  rc, _, err = cli("surface", "--run", runs["a"], "--direction", "plane", "--target", runs["b"],
                   "--x=-1:1:3", "--y=-1:1:3", "--out", tmp_path / "bad.h5")
  assert_user_error(rc, err, "--target B --target C")


@pytest.mark.parametrize("loss,warning", [
    ([1.0, 1.5, 2.0, 1.2, 0.9], None),                          # a barrier: quiet
    ([1.0, 0.2, 0.1, 0.3, 0.9], "go below both ends"),          # slid off the ends
    ([2.0, 1.5, 1.2, 1.1, 1.0], "no barrier"),                  # downhill from A to B
])
def test_a_band_without_a_barrier_is_reported(capsys, loss, warning):
  from landscape import paths, pipeline
  loss = np.asarray(loss)
  band = paths.Path("neb", np.linspace(0, 1, 5), {"loss": loss}, 0.0, int(np.argmax(loss)),
                    None, None)
  pipeline._check_band(band, 100)
  err = capsys.readouterr().err
  if warning is None:
    assert err == ""
  else:
    assert warning in err and err.startswith("landscape: warning:"), err


def test_overwrite_drops_the_saved_state_of_an_earlier_request(runs, tmp_path):
  out = tmp_path / "o.h5"
  (tmp_path / "o.h5.curve.state").write_bytes(b"a state from another request")
  ok("path", "--run", runs["a"], "--to", runs["b"], *FAST, "--method", "curve",
     "--set", "paths.curve_steps=10", "--out", out, "--overwrite")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["o.h5"]
