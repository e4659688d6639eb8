"""End-to-end tests of the ``landscape`` command (cli -> pipeline -> io).

The CLI is called in-process through :func:`landscape.cli.main` (no interpreter or JAX
start-up per call) and as a real subprocess where a test needs one: the console entry
point, a SIGKILL in the middle of a sweep, and the exit status seen by a shell.

One tiny run (digits, a CNN with 4 filters and 8 dense units, 200/100 samples, 2 epochs)
is trained once per module and shared.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from landscape import config as _config
from landscape import io as _io
from landscape import pipeline, train
from landscape.cli import build_parser

from cli_helpers import assert_user_error as _assert_user_error
from cli_helpers import cli as _cli
from cli_helpers import ok as _ok
from cli_helpers import subprocess_env as _subprocess_env

TINY = ["--set", "train.epochs=2", "--set", "data.n_train=200", "--set", "data.n_test=100",
        "--set", "model.kwargs.features=[4]", "--set", "model.kwargs.dense=8"]
EPOCHS, N_TRAIN = 2, 200
HISTORY_HEADER = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc"]
FIELDS = ("train_loss", "test_loss", "train_acc", "test_acc")
# The history and the surface evaluate the same float32 objective at the same parameters,
# but sum the per-example losses in different batches and orders: a few dozen ulps.
F32_RTOL = 64 * float(np.finfo(np.float32).eps)
SWEEP_LINE = re.compile(r"sweeping (\d+) of (\d+) points")
SUBCOMMANDS = ["run", "train", "surface", "hessian", "critical", "path", "plot", "view",
               "export-vtk", "info"]


def _read_history(run: Path) -> tuple[list[str], list[dict[str, float]]]:
  with open(run / "history.csv", newline="") as f:
    reader = csv.DictReader(f)
    rows = [{k: float(v) for k, v in r.items()} for r in reader]
    return list(reader.fieldnames or []), rows


def _grids(path: Path) -> dict[str, np.ndarray]:
  with h5py.File(path, "r") as f:
    return {k: f[k][()] for k in (*FIELDS, "done", "xcoordinates")}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
  run = tmp_path_factory.mktemp("cli") / "run"
  _ok("train", "--out", run, *TINY)
  return run


@pytest.fixture(scope="module")
def surface_2d(run_dir) -> Path:
  """A non-square plane whose y range ends at 0, in the run's default landscape.h5."""
  _ok("surface", "--run", run_dir, "--x=-1:1:5", "--y=-1:0:3")
  return run_dir / "landscape.h5"


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize("sub", [[], ["run"], ["train"], ["surface"], ["info"]],
                         ids=["top", "run", "train", "surface", "info"])
def test_help_exits_zero(sub):
  rc, out, _ = _cli(*sub, "--help")
  assert rc == 0
  assert out.startswith("usage: landscape")


def test_help_as_a_real_command():
  """The module entry point runs in a fresh interpreter and lists every subcommand."""
  p = subprocess.run([sys.executable, "-m", "landscape.cli", "--help"], capture_output=True,
                     text=True, timeout=120, env=_subprocess_env())
  assert p.returncode == 0, p.stderr
  assert _listed_subcommands(p.stdout) == SUBCOMMANDS


def _listed_subcommands(help_text: str) -> list[str]:
  """The names under the ``COMMAND`` heading of ``--help``, in order (4-space indented)."""
  lines = help_text.splitlines()
  start = lines.index("  COMMAND") + 1
  names = []
  for line in lines[start:]:
    if not line.strip():
      break
    if re.match(r"    \S", line):           # a name; deeper indents continue its help
      names.append(line.split()[0])
  return names


def test_parser_has_exactly_the_subcommands():
  import argparse
  (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
  assert list(sub.choices) == SUBCOMMANDS
  assert _listed_subcommands(_cli("--help")[1]) == SUBCOMMANDS


# ----------------------------------------------------------------------------- train


def test_train_writes_a_run_directory(run_dir):
  cfg = _config.load(run_dir / "config.yaml")
  assert cfg.train.epochs == EPOCHS and cfg.data.n_train == N_TRAIN
  assert list(cfg.model.kwargs["features"]) == [4] and cfg.model.kwargs["dense"] == 8
  header, rows = _read_history(run_dir)
  assert header == HISTORY_HEADER
  assert [r["epoch"] for r in rows] == list(range(EPOCHS + 1))   # epoch 0 = initial model
  assert all(np.isfinite(list(r.values())).all() for r in rows)
  assert all(0 <= r[k] <= 100 for r in rows for k in ("train_acc", "test_acc"))
  ckpts = sorted(p.name for p in (run_dir / "ckpt").glob("epoch_*.msgpack"))
  assert ckpts == [f"epoch_{e:04d}.msgpack" for e in range(EPOCHS + 1)]
  # The trajectory holds each saved epoch once, in order, and each snapshot is that
  # epoch's checkpointed params bit for bit.
  exp, _ = pipeline.load_run(run_dir)
  epochs, snaps = _io.read_trajectory(run_dir / "trajectory.h5", exp.variables["params"])
  assert epochs.tolist() == train.list_checkpoints(run_dir) == list(range(EPOCHS + 1))
  assert len(snaps) == len(epochs)
  for e, snap in zip(epochs.tolist(), snaps):
    want = train.load_variables(run_dir, exp.variables, e)["params"]
    _assert_trees_identical(snap, want, f"epoch {e}")
  # Training moved the params: the snapshots are not one state stored repeatedly.
  assert any(not np.array_equal(a, b) for a, b in zip(*map(_leaves, (snaps[0], snaps[-1]))))


def _leaves(tree) -> list[np.ndarray]:
  import jax
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _assert_trees_identical(got, want, what: str) -> None:
  import jax
  assert jax.tree.structure(got) == jax.tree.structure(want), what
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), _leaves(want)):
    a = np.asarray(a)
    assert a.dtype == b.dtype and a.shape == b.shape, (what, jax.tree_util.keystr(path))
    np.testing.assert_array_equal(a, b, err_msg=f"{what} {jax.tree_util.keystr(path)}")


def test_train_rerun_with_other_config_is_refused(run_dir):
  before = (run_dir / "config.yaml").read_bytes()
  rc, _, err = _cli("train", "--out", run_dir, *TINY, "--set", "train.lr=0.5")
  _assert_user_error(rc, err, str(run_dir), "--overwrite")
  assert (run_dir / "config.yaml").read_bytes() == before


# ----------------------------------------------------------------------------- surface


def test_surface_2d_file(run_dir, surface_2d):
  with h5py.File(surface_2d, "r") as f:
    np.testing.assert_array_equal(f["xcoordinates"][()], np.linspace(-1, 1, 5))
    np.testing.assert_array_equal(f["ycoordinates"][()], np.linspace(-1, 0, 3))
    for name in FIELDS:
      assert f[name].shape == (3, 5), name
      assert np.isfinite(f[name][()]).all(), name
    assert f["done"].shape == (3, 5) and f["done"][()].all()
    assert f.attrs["format"] == "landscape-hdf5"
    grid = {k: f[k][()] for k in FIELDS}
  # (x, y) = (0, 0) is x[2], y[2]: value[j, i] is at (x[i], y[j]).
  _, rows = _read_history(run_dir)
  last = rows[-1]
  for split in ("train", "test"):
    np.testing.assert_allclose(grid[f"{split}_loss"][2, 2], last[f"{split}_loss"],
                               rtol=F32_RTOL)
    # Accuracy is a count of argmax hits: equal up to a float tie flipping one sample.
    n = N_TRAIN if split == "train" else 100
    assert abs(grid[f"{split}_acc"][2, 2] - last[f"{split}_acc"]) <= 100 / n + 1e-6
  # The centre is not special: the surface actually varies over the plane.
  assert np.ptp(grid["train_loss"]) > 1e3 * F32_RTOL


def test_surface_1d_out_elsewhere(run_dir, surface_2d, tmp_path):
  out = tmp_path / "sub" / "line.h5"
  stdout = _ok("surface", "--run", run_dir, "--1d", "--x=-1:1:5", "--out", out)
  assert str(out) in stdout
  assert not (run_dir / "line.h5").exists()
  with h5py.File(out, "r") as f:
    assert "ycoordinates" not in f
    np.testing.assert_array_equal(f["xcoordinates"][()], np.linspace(-1, 1, 5))
    for name in (*FIELDS, "done"):
      assert f[name].shape == (5,), name
    assert f["done"][()].all()
    centre = f["train_loss"][2]
  _, rows = _read_history(run_dir)
  np.testing.assert_allclose(centre, rows[-1]["train_loss"], rtol=F32_RTOL)


def test_surface_flags_reach_the_config(run_dir, tmp_path):
  """Typed flags are passed as strings/ints, not re-read as YAML (-1:1:3 is no base-60 int)."""
  out = tmp_path / "train_only.h5"
  _ok("surface", "--run", run_dir, "--1d", "--x=-1:1:3", "--split", "train", "--seed", "3",
      "--norm", "layer", "--out", out)
  with h5py.File(out, "r") as f:
    assert {"train_loss", "train_acc"} <= set(f) and not {"test_loss", "test_acc"} & set(f)
    assert (f.attrs["norm"], int(f.attrs["seed"])) == ("layer", 3)
    np.testing.assert_array_equal(f["xcoordinates"][()], [-1.0, 0.0, 1.0])


def test_info(surface_2d):
  out = _ok("info", surface_2d)
  assert "x: -1:1:5" in out and "y: -1:0:3" in out
  assert "15/15 points computed" in out
  settings = dict(line.split(None, 1) for line in out.splitlines()[2:] if line.strip())
  assert settings["norm"].strip() == "filter"
  assert settings["direction_kind"].strip() == "random"
  with h5py.File(surface_2d, "r") as f:
    z = f["train_loss"][()]
  assert f"min {z.min():.6g}  max {z.max():.6g}" in settings["train_loss"]


def _ce_loss_at_centre(run_dir: Path, n: int) -> float:
  """Mean cross entropy of the last checkpoint on the first ``n`` training samples."""
  import optax
  exp, variables = pipeline.load_run(run_dir)
  logits = exp.module.apply(variables, exp.dataset.x_train[:n])
  return float(np.mean(optax.softmax_cross_entropy_with_integer_labels(
      logits, exp.dataset.y_train[:n])))


def test_critical_command_stores_consistent_points(run_dir, surface_2d, tmp_path):
  """critical/ holds one entry per distinct point; kind, index and grad_norm agree."""
  n = 32
  _, rows = _read_history(run_dir)
  assert _ce_loss_at_centre(run_dir, N_TRAIN) == pytest.approx(rows[-1]["train_loss"],
                                                              rel=F32_RTOL)
  centre_loss = _ce_loss_at_centre(run_dir, n)
  common = ["--set", f"critical.n_samples={n}", "--set", "critical.tol=1e-5"]

  # No steps: the one start (the trained centre) is stored as it is, unconverged.
  start = tmp_path / "start.h5"
  shutil.copyfile(surface_2d, start)
  _ok("critical", start, "--starts", "1", "--set", "critical.max_steps=0", *common)
  c = _io.load(start).groups["critical"]
  np.testing.assert_array_equal(c["coords"], [[0.0, 0.0]])
  np.testing.assert_allclose(c["loss"], [centre_loss], rtol=F32_RTOL)
  assert c["kind"].astype(str).tolist() == ["not_converged"]
  assert c["index_method"].astype(str).tolist() == ["none"] and np.isnan(c["index"]).all()
  assert np.isfinite(c["grad_norm"]).all() and c["grad_norm"][0] > 1e3 * 1e-5

  # A real search: the centre and one perturbation both converge (Newton-MR, ~10 steps)
  # to distinct saddles of lower loss than the trained point.
  found = tmp_path / "found.h5"
  shutil.copyfile(surface_2d, found)
  _ok("critical", found, "--starts", "2", "--set", "critical.max_steps=40", *common)
  with h5py.File(found, "r") as f:
    starts, tol = int(f["critical"].attrs["starts"]), float(f["critical"].attrs["tol"])
  c = _io.load(found).groups["critical"]
  kind, method = c["kind"].astype(str), c["index_method"].astype(str)
  m = len(c["loss"])
  assert (starts, tol) == (2, 1e-5)
  assert m == starts and c["coords"].shape == (m, 2) and np.isfinite(c["coords"]).all()
  assert not np.allclose(c["coords"][0], c["coords"][1], rtol=0, atol=1e-3)   # distinct
  assert np.all(np.diff(c["loss"]) >= 0)                                      # by loss
  assert np.isfinite(c["loss"]).all() and np.all(c["loss"] < centre_loss)
  # converged <=> |grad| <= tol; a converged point is examined by eigh (few params)
  num_params = sum(int(np.size(leaf)) for leaf in _leaves(pipeline.load_run(run_dir)[0]
                                                             .variables["params"]))
  assert (kind != "not_converged").tolist() == (c["grad_norm"] <= tol).tolist() == [True] * m
  assert method.tolist() == ["eigh"] * m
  num_negative = c["index"] * num_params
  np.testing.assert_allclose(num_negative, np.round(num_negative), rtol=0, atol=1e-6)
  # kind follows the certified bounds: a saddle has an eigenvalue certified negative (and
  # not all), a minimum none that may be; the index counts the certified ones
  lower, upper = c["index_lower"], c["index_upper"]
  np.testing.assert_array_equal(lower, np.round(num_negative))
  for k, index, lo, up in zip(kind, c["index"], lower, upper):
    assert k != "minimum" or (index == 0 and up == 0), (k, index, up)
    assert k != "saddle" or (0 < index < 1 and lo >= 1), (k, index, lo)
    assert k != "maximum" or index > 0, (k, index)
    assert lo <= up or up == -1
  assert kind.tolist() == ["saddle"] * m


def test_read_like_the_original_plot_2d(surface_2d):
  """tomgoldstein/loss-landscape plot_2D.py, verbatim apart from the plotting call."""
  f = h5py.File(surface_2d, "r")
  try:
    x = f["xcoordinates"][:]
    y = f["ycoordinates"][:]
    X, Y = np.meshgrid(x, y)
    Z = np.array(f["train_loss"][:])
    assert Z.shape == X.shape
    # ... and the meshgrid pairs each value with its point: the centre is at (0, 0).
    j, i = np.unravel_index(np.argmin(np.abs(X) + np.abs(Y)), X.shape)
    assert (X[j, i], Y[j, i]) == (0.0, 0.0) and (j, i) == (2, 2)
  finally:
    f.close()


def test_xarray_opens_with_coordinates(surface_2d):
  xr = pytest.importorskip("xarray")
  pytest.importorskip("h5netcdf")
  with xr.open_dataset(surface_2d, engine="h5netcdf") as ds:
    assert ds["train_loss"].dims == ("ycoordinates", "xcoordinates")
    np.testing.assert_array_equal(ds["xcoordinates"].values, np.linspace(-1, 1, 5))
    np.testing.assert_array_equal(ds["ycoordinates"].values, np.linspace(-1, 0, 3))
    with h5py.File(surface_2d, "r") as f:
      z = f["train_loss"][()]
    np.testing.assert_array_equal(ds["train_loss"].sel(xcoordinates=0.0, ycoordinates=0.0),
                                  z[2, 2])


# ----------------------------------------------------------------------------- rerun


SMALL = ["--x=-1:1:3", "--y=-1:1:3"]


@pytest.fixture(scope="module")
def small_template(run_dir, tmp_path_factory) -> Path:
  out = tmp_path_factory.mktemp("small") / "small.h5"
  _ok("surface", "--run", run_dir, *SMALL, "--out", out)
  return out


@pytest.fixture
def small_surface(run_dir, small_template, tmp_path) -> tuple[list[str], Path]:
  """A finished 3x3 sweep (a copy of one computed once) and the command that made it."""
  out = tmp_path / "small.h5"
  shutil.copyfile(small_template, out)
  return ["surface", "--run", os.fspath(run_dir), *SMALL, "--out", os.fspath(out)], out


def _contents(path: Path) -> dict:
  """Every dataset and attribute of an HDF5 file, by name."""
  items = {}
  with h5py.File(path, "r") as f:
    items["/"] = dict(f.attrs)
    def visit(name, obj):
      attrs = {k: v for k, v in obj.attrs.items() if k not in ("DIMENSION_LIST", "REFERENCE_LIST")}
      items[name] = (attrs, obj[()] if isinstance(obj, h5py.Dataset) else None)
    f.visititems(visit)
  return items


def _assert_same_contents(a: dict, b: dict) -> None:
  assert a.keys() == b.keys()
  for name in a:
    np.testing.assert_equal(a[name], b[name], err_msg=name)


def test_rerun_of_a_finished_sweep_does_nothing(small_surface):
  cmd, out = small_surface
  before = _contents(out)
  stdout = _ok(*cmd)
  assert "nothing to do" in stdout
  assert SWEEP_LINE.search(stdout).groups() == ("0", "9")
  _assert_same_contents(_contents(out), before)


def test_rerun_of_a_finished_sweep_leaves_the_bytes_unchanged(small_surface):
  cmd, out = small_surface
  before = out.read_bytes()
  _ok(*cmd)
  assert out.read_bytes() == before


@pytest.mark.parametrize("change, mention", [
    (["--x=-2:2:5"], "xcoordinates"),
    (["--seed", "1"], "seed"),
], ids=["grid", "seed"])
def test_rerun_with_other_request_is_refused_then_overwritten(small_surface, change, mention):
  cmd, out = small_surface
  before = out.read_bytes()
  rc, _, err = _cli(*cmd, *change)
  _assert_user_error(rc, err, str(out), mention, "--overwrite")
  assert out.read_bytes() == before
  _ok(*cmd, *change, "--overwrite")
  with h5py.File(out, "r") as f:
    assert f["done"][()].all()
    if "--seed" in change:
      assert int(f.attrs["seed"]) == 1
      assert f["xcoordinates"].shape == (3,)
    else:
      np.testing.assert_array_equal(f["xcoordinates"][()], np.linspace(-2, 2, 5))
      assert f["train_loss"].shape == (3, 5)


# ----------------------------------------------------------------------------- resume


def _done_count(path: Path) -> int | None:
  """Points marked done in a file another process is writing (None if unreadable now)."""
  try:
    with h5py.File(path, "r", locking=False) as f:
      return int(np.count_nonzero(f["done"][()]))
  except (OSError, KeyError, RuntimeError, ValueError):
    return None   # not there yet, or caught mid-write: poll again


def _start_and_kill(cmd: list[str], out: Path, total: int, log: Path,
                    timeout: float = 150.0) -> bool:
  """Run ``landscape CMD`` and SIGKILL it once some but not all points are done.

  Returns False if the sweep finished (or died) before it could be caught mid-way.
  """
  with open(log, "w") as fh:
    proc = subprocess.Popen([sys.executable, "-m", "landscape.cli", *cmd], stdout=fh,
                            stderr=subprocess.STDOUT, env=_subprocess_env())
  try:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if proc.poll() is not None:
        return False
      n = _done_count(out) if out.exists() else None
      if n is not None and 0 < n < total:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return True
      time.sleep(0.005)
    pytest.fail(f"landscape {' '.join(cmd)} did not reach the sweep in {timeout:.0f} s:\n"
                f"{log.read_text()}")
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait(timeout=30)
  return False


def test_resume_after_sigkill_is_exact_and_computes_only_missing_points(run_dir, tmp_path):
  total = 21 * 21
  base = ["surface", "--run", os.fspath(run_dir), "--x=-1:1:21", "--y=-1:1:21",
          "--chunk-size", "7"]
  # Smaller data batches make the sweep slower (more steps per point): easier to catch.
  for attempt, extra in enumerate([[], ["--batch-size", "16"], ["--batch-size", "4"]]):
    out = tmp_path / f"killed{attempt}.h5"
    cmd = [*base, *extra, "--out", os.fspath(out)]
    if _start_and_kill(cmd, out, total, tmp_path / f"log{attempt}.txt"):
      break
  else:
    pytest.fail("every sweep finished before it could be killed mid-way")

  with h5py.File(out, "r") as f:   # the killed writer is gone: an ordinary read
    done_at_restart = f["done"][()]
  missing = int(np.count_nonzero(~done_at_restart))
  assert 0 < missing < total

  stdout = _ok(*cmd)
  todo, size = map(int, SWEEP_LINE.search(stdout).groups())
  assert (todo, size) == (missing, total)
  assert f"swept {missing} points" in stdout

  ref = tmp_path / "uninterrupted.h5"
  _ok(*[a if a != os.fspath(out) else os.fspath(ref) for a in cmd])
  got, want = _grids(out), _grids(ref)
  assert got["done"].all()
  for name in (*FIELDS, "done", "xcoordinates"):
    assert np.array_equal(got[name], want[name]), name


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> dict[str, Path]:
  d = tmp_path_factory.mktemp("bad")
  np.savez(d / "no_y_test.npz", x_train=np.zeros((8, 4), np.float32),
           y_train=np.zeros(8, np.int32), x_test=np.zeros((4, 4), np.float32))
  (d / "garbage.h5").write_bytes(b"this is not an HDF5 file\x00\xff" * 64)
  (d / "not_a_run").mkdir()
  return {"npz": d / "no_y_test.npz", "garbage": d / "garbage.h5", "dir": d / "not_a_run",
          "out": d / "train_out"}


TRAIN_ERRORS = {
    "loss": (["--set", "loss.name=nope"], ["'nope'", "cross_entropy"]),
    "model": (["--set", "model.name=nope"], ["'nope'", "cnn"]),
    "dataset": (["--set", "data.name=nope"], ["'nope'", "digits"]),
    "optimizer": (["--set", "train.optimizer=nope"], ["'nope'", "adam"]),
    "set_without_equals": (["--set", "train.epochs"], ["train.epochs", "="]),
    "unknown_key": (["--set", "train.nope=1"], ["train.nope"]),
    "missing_config": (["--config", "/nonexistent/cfg.yaml"], ["/nonexistent/cfg.yaml"]),
    "missing_data_file": (["--set", "data.name=file", "--set", "data.path=/nonexistent.npz"],
                          ["/nonexistent.npz"]),
    "data_file_keys": (["--set", "data.name=file", "--set", "data.path={npz}"], ["y_test"]),
    "task_loss_mismatch": (["--set", "data.name=regression_outliers", "--set",
                            "data.n_train=100", "--set", "data.n_test=40"],
                           ["cross_entropy", "regression"]),
}


@pytest.mark.parametrize("name", list(TRAIN_ERRORS))
def test_train_bad_input(name, bad_inputs):
  extra, mentions = TRAIN_ERRORS[name]
  extra = [a.format(npz=bad_inputs["npz"]) for a in extra]
  out = bad_inputs["out"] / name
  rc, _, err = _cli("train", "--out", out, *TINY, *extra)
  _assert_user_error(rc, err, *mentions)


SURFACE_ERRORS = {
    "range_reversed": (["--x=1:-1:5"], ["1:-1:5"]),
    "range_not_numbers": (["--x=a:b:c"], ["a:b:c"]),
    "direction": (["--direction", "nope"], ["'nope'", "random"]),
    "norm": (["--norm", "nope"], ["'nope'", "filter"]),
}


@pytest.mark.parametrize("name", list(SURFACE_ERRORS))
def test_surface_bad_input(name, run_dir, tmp_path):
  extra, mentions = SURFACE_ERRORS[name]
  out = tmp_path / "s.h5"
  rc, _, err = _cli("surface", "--run", run_dir, "--x=-1:1:3", "--y=-1:1:3", *extra,
                    "--out", out)
  _assert_user_error(rc, err, *mentions)
  assert not out.exists()


def test_surface_on_a_directory_that_is_not_a_run(bad_inputs):
  rc, _, err = _cli("surface", "--run", bad_inputs["dir"], "--x=-1:1:3", "--y=-1:1:3")
  _assert_user_error(rc, err, str(bad_inputs["dir"]), "landscape train")
  assert list(bad_inputs["dir"].iterdir()) == []


def test_corrupt_result_file_is_reported_and_never_overwritten(run_dir, bad_inputs):
  garbage = bad_inputs["garbage"]
  before = garbage.read_bytes()
  rc, _, err = _cli("info", garbage)
  _assert_user_error(rc, err, str(garbage))
  rc, _, err = _cli("surface", "--run", run_dir, "--x=-1:1:3", "--y=-1:1:3", "--out", garbage)
  _assert_user_error(rc, err, str(garbage))
  assert garbage.read_bytes() == before


def test_user_error_in_a_real_process(bad_inputs):
  """The shell sees exit status 2 and one stderr line, without a traceback."""
  p = subprocess.run([sys.executable, "-m", "landscape.cli", "info", bad_inputs["garbage"]],
                     capture_output=True, text=True, timeout=120, env=_subprocess_env())
  _assert_user_error(p.returncode, p.stderr, str(bad_inputs["garbage"]))
  assert p.stdout == ""


def test_failed_train_does_not_block_the_corrected_command(bad_inputs):
  out = bad_inputs["out"] / "retry"
  rc, _, err = _cli("train", "--out", out, *TINY, "--set", "train.optimizer=nope")
  _assert_user_error(rc, err, "'nope'")
  rc, _, err = _cli("train", "--out", out, *TINY)
  assert rc == 0, err
