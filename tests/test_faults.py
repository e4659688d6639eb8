"""Fault injection: nothing a user or the machine does loses a result (issue 9).

The contract, case by case:

* a user error is exactly one stderr line ``landscape: error: ...`` naming the bad value,
  exit status 2, no traceback, and the refused command changes nothing on disk (every file
  under the tree keeps its bytes; no new file, temporary or stub, appears);
* no command destroys a result: it never writes onto its own input, never replaces a file
  it did not make without ``--overwrite``, and a partial probe keeps what it did not
  recompute;
* no silent wrong result: integer parameters, empty data and misshapen foreign files are
  refused;
* resource limits (memory, disk) are checked before anything is created;
* a full disk, a read-only directory, a truncated or mismatched file are one line each,
  with the right diagnosis, and a full disk resumes once space is freed;
* arguments that would be ignored are refused; those that do not change the result
  (``--chunk-size``, ``--batch-size``) are accepted on resume;
* a SIGKILL at a random moment of ``surface`` or ``train`` resumes to exactly the
  uninterrupted result. (tests/test_cli.py kills a sweep once, deterministically, in the
  middle of its points; tests/test_train.py crashes training between a checkpoint's
  write and its rename. These tests kill at random moments instead, creation and
  resume included.)

One tiny run (the TINY overrides of tests/test_cli.py) and a 5x3 surface are made once per
module; every test works on its own copy.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import os
import pathlib
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


from cli_helpers import assert_user_error as _assert_user_error
from cli_helpers import cli as _cli
from cli_helpers import ok as _ok
from cli_helpers import subprocess_env as _subprocess_env

TINY = ["--set", "train.epochs=2", "--set", "data.n_train=200", "--set", "data.n_test=100",
        "--set", "model.kwargs.features=[4]", "--set", "model.kwargs.dense=8"]
# Hessian probes at a fraction of the default cost (trace and density still computed).
HESS_FAST = ["--set", "hessian.k=2", "--set", "hessian.trace_samples=6",
             "--set", "hessian.density_runs=2", "--set", "hessian.density_steps=10"]
FIELDS = ("train_loss", "test_loss", "train_acc", "test_acc")
F32_RTOL = 64 * float(np.finfo(np.float32).eps)
SWEEP_LINE = re.compile(r"sweeping (\d+) of (\d+) points")
AS_LIMIT = 8 << 30   # address-space ceiling of the resource-limit subprocesses


# ----------------------------------------------------------------------------- helpers


def _snapshot(root: Path) -> dict[str, str]:
  """Every path under ``root``: sha256 of a file's bytes, 'dir' for a directory."""
  snap = {}
  for p in sorted(Path(root).rglob("*")):
    rel = p.relative_to(root).as_posix()
    if p.is_symlink():
      snap[rel] = "link:" + os.readlink(p)
    elif p.is_dir():
      snap[rel + "/"] = "dir"
    else:
      snap[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
  return snap


def _assert_unchanged(before: dict[str, str], root: Path) -> None:
  after = _snapshot(root)
  added = sorted(set(after) - set(before))
  removed = sorted(set(before) - set(after))
  changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
  assert not (added or removed or changed), (f"the refused command changed {root}: added "
                                             f"{added}, removed {removed}, changed {changed}")


def _stray(root: Path) -> list[str]:
  """Temporary files left anywhere under ``root``."""
  return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*")
                if ".tmp" in p.name or p.name.endswith("~"))


def _grids(path: Path, fields=FIELDS) -> dict[str, np.ndarray]:
  with h5py.File(path, "r") as f:
    return {k: f[k][()] for k in (*fields, "done", "xcoordinates")}


def _read_history(run: Path) -> list[dict[str, float]]:
  with open(run / "history.csv", newline="") as fh:
    return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def _datasets(path: Path) -> dict[str, np.ndarray]:
  items = {}
  with h5py.File(path, "r") as f:
    f.visititems(lambda n, o: items.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset)
                 else None)
  return items


def _assert_same_run(got: Path, want: Path, epochs: int) -> None:
  """history.csv, the final checkpoint and the trajectory equal the uninterrupted run's."""
  from flax import serialization
  from landscape import train as _train
  assert _train.list_checkpoints(got) == list(range(epochs + 1))
  assert _read_history(got) == _read_history(want)
  name = f"ckpt/epoch_{epochs:04d}.msgpack"
  a = serialization.msgpack_restore((got / name).read_bytes())
  b = serialization.msgpack_restore((want / name).read_bytes())
  import jax
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  da, db = _datasets(got / "trajectory.h5"), _datasets(want / "trajectory.h5")
  assert da.keys() == db.keys()
  for k in da:
    np.testing.assert_array_equal(da[k], db[k], err_msg=k)
  assert _stray(got) == []


@contextlib.contextmanager
def _tmpfs(path: Path, size: str, readonly: bool = False):
  """A tmpfs mounted at ``path`` (root only); skips the test if it cannot be mounted."""
  path.mkdir(parents=True, exist_ok=True)
  opts = f"size={size}" + (",ro" if readonly else "")
  p = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", os.fspath(path)],
                     capture_output=True, text=True)
  if p.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip() or p.returncode})")
  try:
    yield path
  finally:
    subprocess.run(["umount", "-l", os.fspath(path)], capture_output=True)


def _limited(cmd: list[str], timeout: float = 60.0) -> tuple[subprocess.CompletedProcess, float]:
  """``landscape CMD`` in a subprocess under an address-space ceiling and a timeout (a
  regression fails the test instead of hanging or swapping the machine)."""
  boot = ("import resource, runpy, sys; "
          f"resource.setrlimit(resource.RLIMIT_AS, ({AS_LIMIT}, {AS_LIMIT})); "
          "sys.argv[0] = 'landscape'; runpy.run_module('landscape.cli', run_name='__main__')")
  t0 = time.monotonic()
  try:
    p = subprocess.run([sys.executable, "-c", boot, *map(os.fspath, cmd)],
                       capture_output=True, text=True, timeout=timeout, env=_subprocess_env())
  except subprocess.TimeoutExpired as e:
    def text(b):
      return (b.decode(errors="replace") if isinstance(b, bytes) else b or "")[-2000:]
    pytest.fail(f"landscape {' '.join(map(str, cmd))} was not refused within {timeout:.0f} s;"
                f" stdout: {text(e.stdout)!r}; stderr: {text(e.stderr)!r}")
  return p, time.monotonic() - t0


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
  """A trained tiny run holding a finished 5x3 surface in its landscape.h5."""
  run = tmp_path_factory.mktemp("faults") / "run"
  _ok("train", "--out", run, *TINY)
  _ok("surface", "--run", run, "--x=-1:1:5", "--y=-1:1:3")
  return run


@pytest.fixture
def run(template, tmp_path) -> Path:
  """This test's copy of the template run (with landscape.h5)."""
  dst = tmp_path / "run"
  shutil.copytree(template, dst)
  return dst


@pytest.fixture
def bare_run(run) -> Path:
  """This test's copy of the template run without a surface."""
  (run / "landscape.h5").unlink()
  return run


@pytest.fixture(scope="module")
def hessian_template(template, tmp_path_factory) -> Path:
  """A copy of the run whose landscape.h5 holds full Hessian probes (trace, density)."""
  run = tmp_path_factory.mktemp("hess") / "run"
  shutil.copytree(template, run)
  _ok("hessian", run / "landscape.h5", "--run", run, *HESS_FAST)
  return run


@pytest.fixture
def readonly_dir(tmp_path):
  """A directory the current user cannot write into (a read-only tmpfs as root)."""
  d = tmp_path / "readonly"
  d.mkdir()
  if os.geteuid() != 0:
    d.chmod(0o555)
    try:
      if os.access(d, os.W_OK):
        pytest.skip("chmod 0o555 does not make a directory read-only here")
      yield d
    finally:
      d.chmod(0o755)
    return
  with _tmpfs(d, "64k", readonly=True):
    yield d


# ============================================================================ results destroyed


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink"])
def test_export_vtk_onto_its_own_input_is_refused(run, tmp_path, spelling):
  h5 = run / "landscape.h5"
  out = {"same": h5, "dotdot": run / "ckpt" / ".." / "landscape.h5",
         "symlink": tmp_path / "link.vts"}[spelling]
  if spelling == "symlink":
    out.symlink_to(h5)
  before = _snapshot(tmp_path)
  rc, _, err = _cli("export-vtk", h5, "--out", out)
  _assert_user_error(rc, err, str(out))
  _assert_unchanged(before, tmp_path)


def test_export_vtk_does_not_replace_an_unrelated_file_without_overwrite(run, tmp_path):
  notes = tmp_path / "notes.vts"
  notes.write_text("my notes, not a VTK file\n")
  before = _snapshot(tmp_path)
  rc, _, err = _cli("export-vtk", run / "landscape.h5", "--out", notes)
  _assert_user_error(rc, err, str(notes), "--overwrite")
  _assert_unchanged(before, tmp_path)
  _ok("export-vtk", run / "landscape.h5", "--out", notes, "--overwrite")
  assert "<VTKFile" in notes.read_text()


def test_partial_hessian_keeps_what_it_did_not_recompute(hessian_template, tmp_path):
  """`hessian --k 1 --which largest --no-trace --no-density` after a full probe: the new
  largest eigenvalue replaces the old ones; trace, density, Ritz values and the smallest
  eigenvalues, not recomputed, are kept."""
  from landscape import io as lio
  run = tmp_path / "run"
  shutil.copytree(hessian_template, run)
  h5 = run / "landscape.h5"
  old = lio.load(h5).groups["hessian"]
  kept = ["trace", "trace_stderr", "density", "density_grid", "ritz_values", "ritz_weights",
          "negative_fraction", "eigenvalues_smallest", "residuals_smallest"]
  assert set(kept) <= set(old), sorted(old)
  _ok("hessian", h5, "--run", run, "--k", "1", "--which", "largest", "--no-trace",
      "--no-density", *HESS_FAST)
  new = lio.load(h5).groups["hessian"]
  assert np.asarray(new["eigenvalues_largest"]).shape == (1,)
  missing = [k for k in kept if k not in new]
  assert not missing, f"the partial probe dropped {missing}"
  for k in kept:
    np.testing.assert_array_equal(new[k], old[k], err_msg=k)


def test_refused_train_with_fewer_epochs_leaves_the_run_unchanged(run, tmp_path):
  before = _snapshot(tmp_path)
  rc, _, err = _cli("train", "--out", run, *TINY, "--set", "train.epochs=1")
  _assert_user_error(rc, err, str(run), "epoch")
  _assert_unchanged(before, tmp_path)


def test_refused_surface_batch_size_0_leaves_nothing_and_the_fix_succeeds(bare_run, tmp_path):
  cmd = ["surface", "--run", bare_run, "--x=-1:1:3", "--y=-1:1:3"]
  before = _snapshot(tmp_path)
  rc, _, err = _cli(*cmd, "--batch-size", "0")
  _assert_user_error(rc, err, "batch")
  _assert_unchanged(before, tmp_path)
  _ok(*cmd, "--batch-size", "16")
  with h5py.File(bare_run / "landscape.h5", "r") as f:
    assert f["done"][()].all()


def test_run_refused_by_a_later_step_changes_nothing(run, tmp_path):
  """The surface step refuses (landscape.h5 holds another sweep, no --overwrite): the train
  step before it must not have rewritten config.yaml, history, checkpoints or trajectory."""
  before = _snapshot(tmp_path)
  rc, _, err = _cli("run", "--out", run, *TINY, "--set", "surface.seed=5",
                    "--set", "hessian.enabled=false", "--set", "plot.enabled=false")
  _assert_user_error(rc, err, str(run / "landscape.h5"), "--overwrite")
  _assert_unchanged(before, tmp_path)


# ============================================================================ silent wrong results


def _sq_loss(p, batch):
  import jax.numpy as jnp
  return jnp.sum(p["w"] ** 2)


@pytest.mark.parametrize("dir_dtype", ["int32", "float32"])
def test_evaluate_refuses_integer_params(dir_dtype):
  import jax.numpy as jnp
  from landscape import surface
  from landscape.errors import LandscapeError
  params = {"w": jnp.arange(3, dtype=jnp.int32)}
  dirs = [{"w": jnp.ones(3, dtype=dir_dtype)}]
  with pytest.raises(LandscapeError) as e:
    surface.evaluate(_sq_loss, params, dirs, np.linspace(-1, 1, 3))
  assert "\n" not in str(e.value)


@pytest.mark.parametrize("batch_size", [None, 2])
def test_evaluate_refuses_empty_data(batch_size):
  import jax.numpy as jnp
  from landscape import surface
  from landscape.errors import LandscapeError

  def mse(p, batch):
    x, y = batch
    return jnp.mean((x @ p["w"] - y) ** 2)

  params = {"w": jnp.ones(3, jnp.float32)}
  data = (np.zeros((0, 3), np.float32), np.zeros((0,), np.float32))
  with pytest.raises(LandscapeError) as e:
    surface.evaluate(mse, params, [{"w": jnp.ones(3, jnp.float32)}], np.linspace(-1, 1, 3),
                     data=data, batch_size=batch_size)
  assert "\n" not in str(e.value)


@pytest.mark.parametrize("ndim", [1, 2])
def test_plot_of_a_foreign_file_with_misshapen_field_is_refused(tmp_path, ndim):
  path = tmp_path / "foreign.h5"
  with h5py.File(path, "w") as f:   # the original tool's layout, no `format` attribute
    f["xcoordinates"] = np.linspace(-1, 1, 5)
    if ndim == 2:
      f["ycoordinates"] = np.linspace(-1, 1, 3)
    f["train_loss"] = np.ones((4, 4) if ndim == 2 else (4,))
  before = _snapshot(tmp_path)
  rc, _, err = _cli("plot", path)
  _assert_user_error(rc, err, "train_loss")
  _assert_unchanged(before, tmp_path)


# ============================================================================ resource limits


_NEEDS = re.compile(r"(?i)memory|disk|space|free|bytes|\d\s*[KMGTPE]i?B\b")


@pytest.mark.parametrize("grid", [["--x=-1:1:100000000", "--1d"],
                                  ["--x=-1:1:100000", "--y=-1:1:100000"]], ids=["1d", "2d"])
def test_huge_surface_is_refused_before_anything_is_created(bare_run, tmp_path, grid):
  before = _snapshot(tmp_path)
  try:
    p, _ = _limited(["surface", "--run", bare_run, *grid])
    line = _assert_user_error(p.returncode, p.stderr, grid[0].split("=")[1].split(":")[2])
    assert _NEEDS.search(line), f"does not say what it needs or what is free: {line}"
    _assert_unchanged(before, tmp_path)
  finally:
    (bare_run / "landscape.h5").unlink(missing_ok=True)   # never keep a GB stub around


def test_huge_export_vtk_interp_is_refused(run, tmp_path):
  out = tmp_path / "big.vts"
  before = _snapshot(tmp_path)
  try:
    p, _ = _limited(["export-vtk", run / "landscape.h5", "--interp", "100000",
                           "--out", out])
    line = _assert_user_error(p.returncode, p.stderr, "100000")
    assert _NEEDS.search(line), f"does not say what it needs or what is free: {line}"
    _assert_unchanged(before, tmp_path)
  finally:
    out.unlink(missing_ok=True)


# ============================================================================ tracebacks -> one line


def test_truncated_checkpoint(bare_run, tmp_path):
  ckpt = bare_run / "ckpt" / "epoch_0002.msgpack"
  data = ckpt.read_bytes()
  ckpt.write_bytes(data[: len(data) // 2])
  before = _snapshot(tmp_path)
  rc, _, err = _cli("surface", "--run", bare_run, "--x=-1:1:3", "--y=-1:1:3")
  _assert_user_error(rc, err, "epoch_0002.msgpack")
  _assert_unchanged(before, tmp_path)


def test_config_that_no_longer_matches_its_checkpoint(bare_run, tmp_path):
  cfg = bare_run / "config.yaml"
  text = cfg.read_text()
  assert "dense: 8" in text
  cfg.write_text(text.replace("dense: 8", "dense: 16"))
  before = _snapshot(tmp_path)
  rc, _, err = _cli("surface", "--run", bare_run, "--x=-1:1:3", "--y=-1:1:3")
  _assert_user_error(rc, err, str(bare_run))
  _assert_unchanged(before, tmp_path)   # no stub landscape.h5


@pytest.fixture(params=["bytes_coords", "bytes_field"])
def bytes_file(request, tmp_path) -> Path:
  path = tmp_path / f"{request.param}.h5"
  with h5py.File(path, "w") as f:
    if request.param == "bytes_coords":
      f["xcoordinates"] = np.array([b"-1", b"0", b"1"])
      f["train_loss"] = np.ones(3)
    else:
      f["xcoordinates"] = np.linspace(-1, 1, 3)
      f["train_loss"] = np.array([b"a", b"b", b"c"])
  return path


@pytest.mark.parametrize("command", ["plot", "info"])
def test_foreign_file_with_byte_strings(bytes_file, tmp_path, command):
  before = _snapshot(tmp_path)
  rc, _, err = _cli(command, bytes_file)
  _assert_user_error(rc, err, str(bytes_file))
  _assert_unchanged(before, tmp_path)


def test_train_out_an_existing_regular_file(tmp_path):
  f = tmp_path / "results.txt"
  f.write_text("precious\n")
  before = _snapshot(tmp_path)
  rc, _, err = _cli("train", "--out", f, *TINY)
  _assert_user_error(rc, err, str(f))
  _assert_unchanged(before, tmp_path)


def test_train_batch_size_0(tmp_path):
  out = tmp_path / "new"
  rc, _, err = _cli("train", "--out", out, *TINY, "--set", "train.batch_size=0")
  _assert_user_error(rc, err, "batch_size")
  assert not out.exists()


READONLY_COMMANDS = {
    "train": lambda run, ro: ["train", "--out", ro / "run", *TINY],
    "run": lambda run, ro: ["run", "--out", ro / "run", *TINY, "--set", "hessian.enabled=false",
                            "--set", "plot.enabled=false"],
    "plot_out": lambda run, ro: ["plot", run / "landscape.h5", "--kind", "contour",
                                 "--format", "png", "--out", ro],
    "plot_out_subdir": lambda run, ro: ["plot", run / "landscape.h5", "--kind", "contour",
                                        "--format", "png", "--out", ro / "figs"],
    "export_vtk": lambda run, ro: ["export-vtk", run / "landscape.h5", "--out", ro / "s.vts"],
    "surface_out": lambda run, ro: ["surface", "--run", run, "--x=-1:1:3", "--y=-1:1:3",
                                    "--out", ro / "s.h5"],
}


@pytest.mark.parametrize("name", list(READONLY_COMMANDS))
def test_read_only_output_directory(run, readonly_dir, tmp_path, name):
  before = _snapshot(tmp_path)
  rc, _, err = _cli(*READONLY_COMMANDS[name](run, readonly_dir))
  _assert_user_error(rc, err, str(readonly_dir))
  _assert_unchanged(before, tmp_path)


# ============================================================================ full disk


def _enospc(path="") -> OSError:
  return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))


def _assert_disk_full(rc, err, where: Path) -> str:
  """One line naming the file or its directory, saying the disk is full, not 'locked'."""
  line = _assert_user_error(rc, err, str(where))
  assert re.search(r"(?i)space|full|free|disk", line), line
  assert "lock" not in line.lower(), line
  return line


def _fill(disk: Path) -> Path:
  """Fill a file system to the last byte with one file."""
  filler = disk / "filler"
  with open(filler, "wb", buffering=0) as fh:   # unbuffered: nothing left to flush on close
    try:
      while True:
        fh.write(b"\0" * 4096)
    except OSError as e:
      assert e.errno == errno.ENOSPC, e
  return filler


SMALL_TAIL = ["--x=-1:1:7", "--y=-1:1:7", "--chunk-size", "7", "--batch-size", "64"]


@pytest.fixture(scope="module")
def small_reference(template, tmp_path_factory) -> Path:
  """An uninterrupted 7x7 sweep (7 chunks of 7 points)."""
  ref = tmp_path_factory.mktemp("small") / "ref.h5"
  _ok("surface", "--run", template, *SMALL_TAIL, "--out", ref)
  return ref


FULL_TAIL = ["--x=-1:1:41", "--y=-1:1:41", "--split", "train", "--chunk-size", "41"]


@pytest.fixture(scope="module")
def full_reference(template, tmp_path_factory) -> Path:
  ref = tmp_path_factory.mktemp("full") / "ref.h5"
  _ok("surface", "--run", template, *FULL_TAIL, "--out", ref)
  return ref


def _assert_same_grid(got: Path, want: Path, fields=("train_loss", "train_acc")) -> None:
  a, b = _grids(got, fields), _grids(want, fields)
  assert a["done"].all()
  for k in b:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_surface_onto_a_too_small_tmpfs_is_refused_then_succeeds(run, tmp_path, full_reference):
  """Not enough free space from the start: refused before anything is created."""
  with _tmpfs(tmp_path / "disk", "4m") as disk:
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (4 * 1024 * 1024 - 32 * 1024))   # 32 KiB left
    out = disk / "s.h5"
    cmd = ["surface", "--run", run, *FULL_TAIL, "--out", out]
    before = _snapshot(disk)
    rc, _, err = _cli(*cmd)
    _assert_disk_full(rc, err, disk)
    _assert_unchanged(before, disk)
    filler.unlink()   # free space, rerun the same command
    _ok(*cmd)
    _assert_same_grid(out, full_reference)
    assert sorted(os.listdir(disk)) == ["s.h5"]


def test_tmpfs_filling_up_mid_sweep_is_one_line_and_resumes(run, tmp_path, full_reference,
                                                            monkeypatch):
  """Another process fills the disk during the sweep: a real ENOSPC from HDF5."""
  from landscape import io as lio
  with _tmpfs(tmp_path / "disk", "4m") as disk:
    out = disk / "s.h5"
    cmd = ["surface", "--run", run, *FULL_TAIL, "--out", out]
    real_write, calls = lio.GridFile.write, []

    def write(self, *a, **kw):
      calls.append(1)
      if len(calls) == 3:
        _fill(disk)
      return real_write(self, *a, **kw)

    monkeypatch.setattr(lio.GridFile, "write", write)
    rc, _, err = _cli(*cmd)
    monkeypatch.setattr(lio.GridFile, "write", real_write)
    assert len(calls) >= 3, f"fault not injected (exit {rc}: {err.strip()})"
    _assert_disk_full(rc, err, disk)
    assert sorted(os.listdir(disk)) == ["filler", "s.h5"]
    (disk / "filler").unlink()
    with h5py.File(out, "r") as f:
      missing = int(np.count_nonzero(~f["done"][()]))
    assert 0 < missing < 41 * 41
    stdout = _ok(*cmd)
    assert SWEEP_LINE.search(stdout).groups() == (str(missing), str(41 * 41))
    _assert_same_grid(out, full_reference)
    assert sorted(os.listdir(disk)) == ["s.h5"]


def test_disk_full_mid_sweep_is_one_line_and_resumes_exactly(run, tmp_path, monkeypatch,
                                                             small_reference):
  """The same without a mount (any user): GridFile.write raises ENOSPC at its 3rd call."""
  from landscape import io as lio
  out = tmp_path / "out" / "s.h5"
  cmd = ["surface", "--run", run, *SMALL_TAIL, "--out", out]
  real_write, calls = lio.GridFile.write, []

  def write(self, *a, **kw):
    calls.append(1)
    if len(calls) == 3:
      raise _enospc(self.path)
    return real_write(self, *a, **kw)

  monkeypatch.setattr(lio.GridFile, "write", write)
  rc, _, err = _cli(*cmd)
  monkeypatch.setattr(lio.GridFile, "write", real_write)
  assert len(calls) >= 3, "fault not injected: the sweep no longer writes via GridFile.write"
  _assert_disk_full(rc, err, out.parent)
  assert _stray(out.parent) == []
  with h5py.File(out, "r") as f:
    missing = int(np.count_nonzero(~f["done"][()]))
  assert 0 < missing < 49
  stdout = _ok(*cmd)
  assert SWEEP_LINE.search(stdout).groups() == (str(missing), "49")
  _assert_same_grid(out, small_reference, FIELDS)


def _legacy_gzip(path: Path) -> None:
  """Rewrite a grid file's datasets the way landscape did before early allocation: gzip +
  shuffle, one row per chunk, allocated on first write."""
  with h5py.File(path, "r+") as f:
    grid = [k for k in f if isinstance(f[k], h5py.Dataset) and f[k].ndim == 2]
    for name in grid:
      attrs, data = dict(f[name].attrs), f[name][()]
      attrs.pop("DIMENSION_LIST", None)
      del f[name]
      ds = f.create_dataset(name, data=data, chunks=(1, data.shape[1]), compression="gzip",
                            shuffle=True)
      ds.attrs.update(attrs)
      ds.dims[0].attach_scale(f["ycoordinates"])
      ds.dims[1].attach_scale(f["xcoordinates"])


def _corrupt_chunk(path: Path, name: str, row: int) -> None:
  """Overwrite one stored chunk's bytes, as a process killed mid-compression can leave it."""
  with h5py.File(path, "r") as f:
    info = f[name].id.get_chunk_info_by_coord((row, 0))
  with open(path, "r+b") as fh:
    fh.seek(info.byte_offset)
    fh.write(b"\xff" * info.size)
  with h5py.File(path, "r") as f, pytest.raises(OSError):
    f[name][row]


def test_new_grid_chunks_are_allocated_uncompressed(small_reference):
  """A killed write can then only leave data bytes (guarded by ``done``), never a chunk
  that fails to decompress."""
  with h5py.File(small_reference, "r") as f:
    for name in (*FIELDS, "done"):
      ds = f[name]
      assert ds.compression is None and ds.chunks == (1, 7)
      assert ds.id.get_create_plist().get_alloc_time() == h5py.h5d.ALLOC_TIME_EARLY
      assert all(ds.id.get_chunk_info(i).size > 0 for i in range(ds.id.get_num_chunks()))


def test_unreadable_legacy_chunks_are_reset_and_recomputed_exactly(run, tmp_path,
                                                                    small_reference):
  """A gzip file (older landscape) with a chunk a kill left undecodable, in a field and in
  the done mask: the resume warns, recomputes exactly those two rows, and ends equal to the
  uninterrupted sweep; before the repair, writing to such a row failed."""
  out = tmp_path / "s.h5"
  shutil.copy(small_reference, out)
  _legacy_gzip(out)
  with h5py.File(out, "r+") as f:
    f["done"][2, 3:] = False     # an unfinished row: the resume must write into its chunk
    f["done"][5, :] = False
  _corrupt_chunk(out, "train_loss", 2)
  _corrupt_chunk(out, "done", 4)
  rc, stdout, err = _cli("surface", "--run", run, *SMALL_TAIL, "--out", out)
  assert rc == 0, err
  assert "row(s) [2, 4] of the points under mask 'done' could not be read back" in err, err
  assert SWEEP_LINE.search(stdout).groups() == (str(3 * 7), str(7 * 7))
  _assert_same_grid(out, small_reference, FIELDS)


def test_tmpfs_filling_up_at_a_checkpoint_is_one_line_and_resumes(template, tmp_path,
                                                                  monkeypatch):
  """The disk fills just before epoch 1's checkpoint: a real ENOSPC wherever it writes."""
  from landscape import train as _train
  with _tmpfs(tmp_path / "disk", "2m") as disk:
    out = disk / "run"
    real, calls = _train.save_checkpoint, []

    def save_checkpoint(run_dir, epoch, state):
      calls.append(epoch)
      if epoch == 1:
        _fill(disk)
      return real(run_dir, epoch, state)

    monkeypatch.setattr(_train, "save_checkpoint", save_checkpoint)
    rc, _, err = _cli("train", "--out", out, *TINY)
    monkeypatch.setattr(_train, "save_checkpoint", real)
    assert 1 in calls, "fault not injected: train no longer calls train.save_checkpoint"
    _assert_disk_full(rc, err, out)
    assert _stray(out) == []
    (disk / "filler").unlink()
    _ok("train", "--out", out, *TINY)
    _assert_same_run(out, template, 2)


class _HalfWriter:
  """A file that takes half of the first write, then reports a full disk."""

  def __init__(self, fh, path):
    self._fh, self._path = fh, path

  def write(self, data):
    self._fh.write(data[: len(data) // 2])
    self._fh.flush()
    raise _enospc(self._path)

  def __getattr__(self, name):
    return getattr(self._fh, name)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._fh.close()


def test_disk_full_during_a_checkpoint_is_one_line_and_leaves_no_tmp(template, tmp_path,
                                                                      monkeypatch):
  """The same without a mount: while epoch 1's checkpoint is saved, any file opened for
  writing under ckpt/ takes half the bytes and raises ENOSPC."""
  import builtins
  import io as _stdio
  from landscape import train as _train
  out = tmp_path / "run"
  real_save, real_open, real_write_bytes = _train.save_checkpoint, builtins.open, \
      pathlib.Path.write_bytes
  faults = []

  def faulty_open(file, mode="r", *a, **kw):
    fh = real_open(file, mode, *a, **kw)
    if isinstance(file, (str, os.PathLike)) and Path(file).parent.name == "ckpt" \
        and any(c in mode for c in "wax"):
      faults.append(file)
      return _HalfWriter(fh, file)
    return fh

  def faulty_write_bytes(self, data):
    with faulty_open(self, "wb") as fh:
      fh.write(data)

  def save_checkpoint(run_dir, epoch, state):
    if epoch != 1:
      return real_save(run_dir, epoch, state)
    with monkeypatch.context() as m:
      m.setattr(builtins, "open", faulty_open)
      m.setattr(_stdio, "open", faulty_open)
      m.setattr(pathlib.Path, "write_bytes", faulty_write_bytes)
      return real_save(run_dir, epoch, state)

  monkeypatch.setattr(_train, "save_checkpoint", save_checkpoint)
  rc, _, err = _cli("train", "--out", out, *TINY)
  monkeypatch.setattr(_train, "save_checkpoint", real_save)
  assert faults, "fault not injected: the checkpoint is not written through open()"
  _assert_disk_full(rc, err, out)
  assert _stray(out) == []
  _ok("train", "--out", out, *TINY)
  _assert_same_run(out, template, 2)


# ============================================================================ wrong diagnoses


@pytest.mark.parametrize("command", ["info", "plot", "surface"])
def test_truncated_result_file_is_called_corrupt_not_locked(run, tmp_path, command):
  h5 = run / "landscape.h5"
  data = h5.read_bytes()
  h5.write_bytes(data[: len(data) // 2])
  argv = {"info": ["info", h5], "plot": ["plot", h5],
          "surface": ["surface", "--run", run, "--x=-1:1:5", "--y=-1:1:3"]}[command]
  before = _snapshot(tmp_path)
  rc, _, err = _cli(*argv)
  line = _assert_user_error(rc, err, str(h5))
  assert "lock" not in line.lower(), line
  assert re.search(r"(?i)corrupt|truncat", line), line
  _assert_unchanged(before, tmp_path)


@pytest.fixture(params=["original_layout", "unrelated"])
def foreign_h5(request, tmp_path) -> Path:
  path = tmp_path / f"{request.param}.h5"
  with h5py.File(path, "w") as f:
    if request.param == "original_layout":   # tomgoldstein/loss-landscape's surface file
      f["xcoordinates"] = np.linspace(-1, 1, 5)
      f["ycoordinates"] = np.linspace(-1, 1, 3)
      f["train_loss"] = np.linspace(1, 2, 15).reshape(3, 5)
    else:
      f["weights"] = np.ones((4, 4))
  return path


@pytest.mark.parametrize("command", ["hessian", "critical"])
def test_probe_of_a_foreign_file_is_refused_before_computing(run, foreign_h5, tmp_path,
                                                             monkeypatch, command):
  from landscape import critical, hessian

  def computed(*a, **kw):
    raise AssertionError(f"{command} computed before refusing the foreign file")

  for mod, names in ((hessian, ("eigenvalues", "trace", "density", "curvature_map")),
                     (critical, ("scan",))):
    for n in names:
      monkeypatch.setattr(mod, n, computed)
  before = _snapshot(tmp_path)
  rc, _, err = _cli(command, foreign_h5, "--run", run)
  line = _assert_user_error(rc, err, str(foreign_h5))
  assert "--overwrite" not in line, line
  _assert_unchanged(before, tmp_path)


@pytest.mark.parametrize("grid, bad", [
    (["--x=nan:1:5", "--y=-1:1:3"], "nan:1:5"),
    (["--x=-inf:1:5", "--y=-1:1:3"], "-inf:1:5"),
    (["--x=-1:1:5", "--y=-1:inf:3"], "-1:inf:3"),
], ids=["nan", "-inf", "y_inf"])
def test_non_finite_grid_bounds_are_named(bare_run, tmp_path, grid, bad):
  before = _snapshot(tmp_path)
  rc, _, err = _cli("surface", "--run", bare_run, *grid)
  line = _assert_user_error(rc, err, bad)
  assert "max > min" not in line, line
  _assert_unchanged(before, tmp_path)


# ============================================================================ ignored arguments


IGNORED = {
    "y_with_1d": (lambda run, t: ["surface", "--run", run, "--1d", "--x=-1:1:3", "--y=-1:1:3"],
                  ["--y"]),
    "target_with_random": (lambda run, t: ["surface", "--run", run, "--x=-1:1:3", "--y=-1:1:3",
                                           "--direction", "random", "--target", "0"],
                           ["--target"]),
    "zmax_below_every_loss": (lambda run, t: ["export-vtk", run / "landscape.h5", "--zmax",
                                              "-1", "--out", t / "z.vts"], ["zmax", "-1"]),
}


@pytest.mark.parametrize("name", list(IGNORED))
def test_ignored_argument_is_refused(run, tmp_path, name):
  argv, mentions = IGNORED[name]
  before = _snapshot(tmp_path)
  rc, _, err = _cli(*argv(run, tmp_path))
  _assert_user_error(rc, err, *mentions)
  _assert_unchanged(before, tmp_path)


@pytest.mark.parametrize("change", [["--chunk-size", "5"], ["--batch-size", "16"]],
                         ids=["chunk_size", "batch_size"])
def test_resume_with_another_chunk_or_batch_size_is_accepted(run, tmp_path, monkeypatch,
                                                             small_reference, change):
  """Interrupted (Ctrl-C) after 2 of 7 chunks, resumed with another --chunk-size or
  --batch-size: accepted, only the missing points computed, the same values up to float32
  summation order."""
  from landscape import io as lio
  tail, ref = SMALL_TAIL, small_reference
  out = tmp_path / "s.h5"
  real_write, calls = lio.GridFile.write, []

  def write(self, *a, **kw):
    calls.append(1)
    if len(calls) == 3:
      raise KeyboardInterrupt
    return real_write(self, *a, **kw)

  monkeypatch.setattr(lio.GridFile, "write", write)
  rc, _, err = _cli("surface", "--run", run, *tail, "--out", out)
  monkeypatch.setattr(lio.GridFile, "write", real_write)
  assert rc != 0 and len(calls) >= 3, (rc, err)
  with h5py.File(out, "r") as f:
    missing = int(np.count_nonzero(~f["done"][()]))
  assert 0 < missing < 49
  rc, stdout, err = _cli("surface", "--run", run, *tail, *change, "--out", out)
  assert rc == 0, f"resume with {' '.join(change)} refused: {err.strip()}"
  assert SWEEP_LINE.search(stdout).groups() == (str(missing), "49")
  got, want = _grids(out), _grids(ref)
  assert got["done"].all()
  for k in FIELDS:
    np.testing.assert_allclose(got[k], want[k], rtol=F32_RTOL, err_msg=k)


# ============================================================================ SIGKILL at random moments


def _launch_and_kill(cmd: list, log: Path, delay: float, started=None,
                     timeout: float = 150.0) -> str:
  """Run ``landscape CMD``; SIGKILL it ``delay`` s after ``started()`` turns true (after
  the start if None). Returns 'killed', or 'finished' if it exited first (status 0)."""
  with open(log, "w") as fh:
    proc = subprocess.Popen([sys.executable, "-m", "landscape.cli", *map(os.fspath, cmd)],
                            stdout=fh, stderr=subprocess.STDOUT, env=_subprocess_env())
  try:
    deadline = time.monotonic() + timeout
    t_mark = None if started is not None else time.monotonic()
    while time.monotonic() < deadline:
      if proc.poll() is not None:
        assert proc.returncode == 0, f"landscape {cmd[0]} exited {proc.returncode}:\n" \
                                     f"{log.read_text()}"
        return "finished"
      if t_mark is None and started():
        t_mark = time.monotonic()
      if t_mark is not None and time.monotonic() - t_mark >= delay:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return "killed"
      time.sleep(0.002)
    pytest.fail(f"landscape {cmd[0]} still running after {timeout:.0f} s:\n{log.read_text()}")
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait(timeout=30)


def _kill_chain(cmd: list, started, work: float, log_dir: Path, seed: int,
                kills: int = 2, reset=None) -> list[tuple[float, str]]:
  """Launch ``cmd`` ``kills`` times, each SIGKILLed at a random moment of its work: the first
  after ``started()`` (e.g. the output appears), the others the same span after their start.

  ``work`` is measured on an earlier run; a loaded machine can make that span too long, so
  that every launch finishes before its kill: then ``reset()`` removes the finished output
  and the chain is repeated from scratch with spans halved, up to three times."""
  events: list[tuple[float, str]] = []
  for attempt in range(4):
    if attempt:
      reset()
    events += _kill_chain_once(cmd, started, work / 2 ** attempt, log_dir, seed + attempt, kills)
    if any(e == "killed" for _, e in events) or reset is None:
      break
  return events


def _kill_chain_once(cmd: list, started, work: float, log_dir: Path, seed: int,
                     kills: int) -> list[tuple[float, str]]:
  rng = np.random.default_rng(seed)
  t_start = None
  events = []
  for i in range(kills):
    if i == 0:
      t0 = time.monotonic()
      def first():
        nonlocal t_start
        if started():
          t_start = time.monotonic() - t0
          return True
        return False
      delay = float(rng.uniform(0.0, work))
      events.append((delay, _launch_and_kill(cmd, log_dir / f"kill{i}.log", delay, first)))
    else:
      lead = t_start if t_start is not None else 3.0
      delay = float(rng.uniform(max(0.0, lead - 0.5), lead + work))
      events.append((delay, _launch_and_kill(cmd, log_dir / f"kill{i}.log", delay)))
  return events


@pytest.mark.slow
def test_surface_resumes_exactly_after_sigkills_at_random_moments(run, tmp_path):
  tail = ["--x=-1:1:41", "--y=-1:1:41", "--batch-size", "4", "--chunk-size", "41"]
  ref = tmp_path / "ref.h5"
  t0 = time.monotonic()
  _ok("surface", "--run", run, *tail, "--out", ref)
  work = max(1.0, time.monotonic() - t0)
  sweep_dir = tmp_path / "sweep"
  sweep_dir.mkdir()
  out = sweep_dir / "s.h5"
  cmd = ["surface", "--run", run, *tail, "--out", out]
  events = _kill_chain(cmd, lambda: any(sweep_dir.iterdir()), work, tmp_path, seed=9,
                       reset=lambda: shutil.rmtree(sweep_dir) or sweep_dir.mkdir())
  assert any(e == "killed" for _, e in events), events
  rc, stdout, err = _cli(*cmd)
  assert rc == 0, f"after kills {events}: {err}"
  got, want = _grids(out), _grids(ref)
  assert got["done"].all(), events
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=f"{k} after kills {events}")
  assert sorted(os.listdir(sweep_dir)) == ["s.h5"], events


@pytest.mark.slow
def test_train_resumes_exactly_after_sigkills_at_random_moments(tmp_path):
  tail = [*TINY, "--set", "train.epochs=6", "--set", "train.batch_size=8"]
  ref = tmp_path / "ref"
  t0 = time.monotonic()
  _ok("train", "--out", ref, *tail)
  work = max(1.0, time.monotonic() - t0)
  out = tmp_path / "run"
  cmd = ["train", "--out", out, *tail]
  events = _kill_chain(cmd, out.exists, work, tmp_path, seed=9,
                       reset=lambda: shutil.rmtree(out))
  assert any(e == "killed" for _, e in events), events
  rc, stdout, err = _cli(*cmd)
  assert rc == 0, f"after kills {events}: {err}"
  _assert_same_run(out, ref, 6)


# ============================================================================ refused commands, one per subcommand


REFUSED = {
    # id: (argv from (run dir, landscape.h5, tmp_path), words the one line must name)
    "hessian-which_sideways": (lambda r, h, t: ["hessian", h, "--which", "sideways"],
                               ["sideways"]),
    "hessian-k_0": (lambda r, h, t: ["hessian", h, "--k", "0"], ["0"]),
    "critical-starts_0": (lambda r, h, t: ["critical", h, "--starts", "0"], ["0"]),
    "critical-method_bogus": (lambda r, h, t: ["critical", h, "--method", "bogus"], ["bogus"]),
    "plot-kind_bogus": (lambda r, h, t: ["plot", h, "--kind", "bogus"], ["bogus"]),
    "plot-format_bmp": (lambda r, h, t: ["plot", h, "--format", "bmp"], ["bmp"]),
    "export-vtk-field_nope": (lambda r, h, t: ["export-vtk", h, "--field", "nope"], ["nope"]),
    "surface-direction_bogus": (lambda r, h, t: ["surface", "--run", r, "--direction", "bogus"],
                                ["bogus"]),
    "surface-other_grid": (lambda r, h, t: ["surface", "--run", r, "--x=-1:1:7", "--y=-1:1:7"],
                           ["--overwrite"]),
    "train-other_config": (lambda r, h, t: ["train", "--out", r, *TINY, "--set",
                                            "train.lr=0.5"], ["lr"]),
    "run-hessian_which_bogus": (lambda r, h, t: ["run", "--out", r, *TINY, "--set",
                                                 "hessian.which=bogus"], ["bogus"]),
    "info-missing": (lambda r, h, t: ["info", t / "missing.h5"], ["missing.h5"]),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_command_changes_nothing(hessian_template, tmp_path, monkeypatch, case):
  """Each subcommand refusing a realistic bad request on a finished run (landscape.h5 with a
  hessian/ group): exit 2, one line, and every file under the tree (the working directory
  included) keeps its bytes; nothing is added."""
  run = tmp_path / "run"
  shutil.copytree(hessian_template, run)
  monkeypatch.chdir(tmp_path)   # a default output beside the cwd would show up too
  argv, mentions = REFUSED[case]
  before = _snapshot(tmp_path)
  rc, _, err = _cli(*argv(run, run / "landscape.h5", tmp_path))
  _assert_user_error(rc, err, *mentions)
  _assert_unchanged(before, tmp_path)


# ============================================================================ HDF5 open errors by cause


def _hold_open_for_writing(path: Path):
  """A subprocess holding ``path`` open with h5py in mode 'r+' (HDF5's exclusive lock)."""
  code = ("import sys, time, h5py\n"
          "f = h5py.File(sys.argv[1], 'r+')\n"
          "print('held', flush=True)\n"
          "time.sleep(120)\n")
  proc = subprocess.Popen([sys.executable, "-c", code, os.fspath(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=_subprocess_env())
  line = proc.stdout.readline()
  if line.strip() != "held":
    proc.kill()
    proc.wait(timeout=30)
    pytest.fail(f"the lock holder did not start: {proc.stderr.read()}")
  return proc


H5_CAUSES = ["missing", "directory", "empty", "text", "truncated", "locked"]


@pytest.mark.parametrize("cause", H5_CAUSES)
def test_info_names_the_cause_of_an_hdf5_open_error(template, tmp_path, cause):
  path = tmp_path / ("adir" if cause == "directory" else f"{cause}.h5")
  holder = None
  if cause == "directory":
    path.mkdir()
  elif cause == "empty":
    path.write_bytes(b"")
  elif cause == "text":
    path.write_text("train_loss,test_loss\n1.0,2.0\n")
  elif cause == "truncated":
    data = (template / "landscape.h5").read_bytes()
    path.write_bytes(data[: len(data) // 2])
  elif cause == "locked":
    flag = os.environ.get("HDF5_USE_FILE_LOCKING", "").upper()
    if flag in ("FALSE", "0", "NO"):
      pytest.skip(f"HDF5 file locking is disabled (HDF5_USE_FILE_LOCKING={flag})")
    shutil.copy(template / "landscape.h5", path)
  try:
    if cause == "locked":
      holder = _hold_open_for_writing(path)
    before = _snapshot(tmp_path)
    rc, _, err = _cli("info", path)
    line = _assert_user_error(rc, err, str(path))
    want = {"missing": r"does not exist", "directory": r"directory",
            "empty": r"not an HDF5 file", "text": r"not an HDF5 file",
            "truncated": r"truncated", "locked": r"locked"}[cause]
    assert re.search(want, line), f"{cause}: {line}"
    wrong = {c: w for c, w in (("locked", "lock"), ("truncated", "truncat"),
                               ("missing", "does not exist")) if c != cause}
    for c, w in wrong.items():
      assert w not in line.lower(), f"{cause} diagnosed as {c}: {line}"
    _assert_unchanged(before, tmp_path)
  finally:
    if holder is not None:
      holder.kill()
      holder.wait(timeout=30)


# ============================================================================ SIGKILL: curvature map, whole run


MAP_ARGS = ["--map", "--k", "1", "--which", "largest", "--no-trace", "--no-density",
            "--set", "hessian.num_steps=6", "--set", "hessian.map_steps=4",
            "--set", "hessian.n_samples=64"]
MAP_DONE = re.compile(r"curvature map: compile ([\d.]+) s, \d+ points in ([\d.]+) s")


def _log_says(log: Path, text: str):
  return lambda: log.exists() and text in log.read_text(errors="replace")


@pytest.mark.slow
def test_curvature_map_resumes_exactly_after_sigkills_at_random_moments(template, small_reference,
                                                                        tmp_path):
  """`hessian FILE --map` on a 7x7 surface (4 chunks of 13 points), SIGKILLed at a seeded
  random moment of the map (counted from its `curvature map:` line), then rerun: the max_eig/min_eig grids equal an
  uninterrupted map's exactly (a point's Lanczos run starts from the same vector whatever
  chunk it falls in, and the CNN's map mode evaluates the points of a chunk one by one, so
  the chunking of the remaining points cannot change a value), every point is done, the
  surface is untouched and no temporary file is left."""
  ref = tmp_path / "ref" / "landscape.h5"
  ref.parent.mkdir()
  shutil.copy(small_reference, ref)
  stdout = _ok("hessian", ref, "--run", template, *MAP_ARGS)
  m = MAP_DONE.search(stdout)
  assert m, stdout
  work = max(1.0, float(m.group(1)) + float(m.group(2)))
  sweep_dir = tmp_path / "sweep"
  sweep_dir.mkdir()
  h5 = sweep_dir / "landscape.h5"
  shutil.copy(small_reference, h5)
  cmd = ["hessian", h5, "--run", template, *MAP_ARGS]
  delay = float(np.random.default_rng(13).uniform(0.0, work))
  log = tmp_path / "kill.log"
  events = [(delay, _launch_and_kill(cmd, log, delay, _log_says(log, "curvature map:")))]
  assert events[0][1] == "killed", events
  try:   # how far it got (an unreadable file is for the rerun to diagnose)
    with h5py.File(h5, "r") as f:
      events.append(f"{int(f['eig_done'][()].sum())} of 49 points kept" if "eig_done" in f
                    else "no map yet")
  except OSError as e:
    events.append(f"unreadable after the kill: {e}")
  rc, _, err = _cli(*cmd)
  assert rc == 0, f"after kills {events}: {err}"
  got, want = _grids(h5, ("max_eig", "min_eig", "train_loss")), \
      _grids(ref, ("max_eig", "min_eig", "train_loss"))
  with h5py.File(h5, "r") as f:
    assert f["eig_done"][()].all(), events
    assert f["done"][()].all(), events
  for k in ("max_eig", "min_eig", "train_loss"):
    np.testing.assert_array_equal(got[k], want[k], err_msg=f"{k} after kills {events}")
  assert sorted(os.listdir(sweep_dir)) == ["landscape.h5"], events


@pytest.mark.slow
def test_run_resumes_after_a_sigkill_at_a_random_moment(template, tmp_path):
  """A whole `landscape run` (tiny: train, 5x3 surface, eigenvalues, plots) SIGKILLed at a
  seeded random moment, then rerun: it finishes, history.csv and the surface equal the
  uninterrupted run's (the module's template: same data/model/loss/train/surface config),
  the Hessian group and the figures are there and no temporary file is left."""
  out = tmp_path / "run"
  cmd = ["run", "--out", out, *TINY, "--set", "surface.x=-1:1:5", "--set", "surface.y=-1:1:3",
         "--set", "hessian.k=1", "--set", "hessian.which=largest", "--set", "hessian.num_steps=6",
         "--set", "hessian.trace=false", "--set", "hessian.density=false",
         "--set", "plot.kinds=[contour]", "--set", "plot.formats=[png]"]
  rng = np.random.default_rng(5)
  delay = float(rng.uniform(0.0, 1.5))   # the run takes ~2-3 s after its directory appears
  event = _launch_and_kill(cmd, tmp_path / "kill.log", delay, out.exists)
  assert event == "killed", (delay, event)
  rc, _, err = _cli(*cmd)
  assert rc == 0, f"after a kill at {delay:.2f} s: {err}"
  assert _read_history(out) == _read_history(template)
  got, want = _grids(out / "landscape.h5"), _grids(template / "landscape.h5")
  assert got["done"].all()
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=f"{k} after a kill at {delay:.2f} s")
  with h5py.File(out / "landscape.h5", "r") as f:
    assert "eigenvalues_largest" in f["hessian"], list(f["hessian"])
  assert any((out / "figures").glob("*.png"))
  assert _stray(out) == [], delay


# ============================================================================ found by a hostile user


def test_train_into_a_directory_that_is_not_a_run_keeps_its_files(tmp_path):
  """`train --out DIR` where DIR exists, holds no config.yaml (not a run) but a history.csv
  and a trajectory.h5 of the user's own: never replaced without --overwrite."""
  d = tmp_path / "mydir"
  d.mkdir()
  (d / "history.csv").write_text("epoch,my_metric\n0,1.0\n")
  with h5py.File(d / "trajectory.h5", "w") as f:
    f["mine"] = np.arange(3)
  before = _snapshot(tmp_path)
  rc, _, err = _cli("train", "--out", d, *TINY)
  _assert_user_error(rc, err, str(d))
  _assert_unchanged(before, tmp_path)


def test_train_overwrite_of_a_directory_that_is_not_a_run_keeps_foreign_files(tmp_path):
  """`train --out DIR --overwrite` "replaces an existing run": DIR holds no run (no
  config.yaml), so the user's figures/paper.pdf there is not the tool's to delete."""
  d = tmp_path / "project"
  (d / "figures").mkdir(parents=True)
  (d / "figures" / "paper.pdf").write_bytes(b"%PDF-1.4 my paper\n")
  rc, _, err = _cli("train", "--out", d, *TINY, "--overwrite")
  assert (d / "figures" / "paper.pdf").is_file(), \
      f"exit {rc}: train --overwrite deleted a file it did not make ({err.strip()})"


@pytest.mark.parametrize("setting", ["train.warmup_epochs=-1", "loss.l2=-1", "loss.l1=-1",
                                     "train.b1=2", "train.b2=1.5"])
def test_out_of_range_training_hyperparameters_are_refused(tmp_path, setting):
  """Accepted today and trained on silently (a negative warmup changes the schedule, a
  negative penalty makes the objective unbounded below, Adam's b1/b2 outside [0, 1) are not
  moment averages); train.weight_decay=-1 is already refused."""
  out = tmp_path / "run"
  rc, _, err = _cli("train", "--out", out, *TINY, "--set", setting)
  _assert_user_error(rc, err, setting.split("=")[0].split(".")[-1])
  assert not out.exists()


@pytest.mark.parametrize("command", ["hessian", "critical"])
def test_negative_n_samples_is_refused(run, tmp_path, command):
  """`--set hessian.n_samples=-1` (or critical.n_samples) silently used all training samples
  but the last (x[:-1]) and stored the result."""
  argv = {"hessian": ["hessian", run / "landscape.h5", "--k", "1", "--no-trace", "--no-density",
                      "--set", "hessian.num_steps=6", "--set", "hessian.n_samples=-1"],
          "critical": ["critical", run / "landscape.h5", "--starts", "1", "--set",
                       "critical.max_steps=1", "--set", "critical.n_samples=-1"]}[command]
  before = _snapshot(tmp_path)
  rc, _, err = _cli(*argv)
  _assert_user_error(rc, err, "n_samples")
  _assert_unchanged(before, tmp_path)


def test_hessian_map_with_a_bad_map_setting_changes_nothing(run, tmp_path):
  """`hessian FILE --map --set hessian.map_steps=0` was refused only after the eigenvalue
  probe had rewritten the file's hessian/ group, and named `num_steps`, not map_steps."""
  before = _snapshot(tmp_path)
  rc, _, err = _cli("hessian", run / "landscape.h5", "--map", "--k", "1", "--no-trace",
                    "--no-density", "--set", "hessian.num_steps=6", "--set", "hessian.map_steps=0")
  _assert_unchanged(before, tmp_path)
  _assert_user_error(rc, err, "map_steps")


@pytest.fixture(scope="module")
def other_run(tmp_path_factory) -> Path:
  """A trained tiny run of another model (dense=6) than the template's."""
  run = tmp_path_factory.mktemp("other") / "run"
  _ok("train", "--out", run, *TINY, "--set", "model.kwargs.dense=6")
  return run


@pytest.mark.parametrize("probe", ["eigenvalues", "map"])
def test_hessian_with_the_model_of_another_run_is_refused(run, other_run, tmp_path, probe):
  """`hessian FILE --run OTHER` where OTHER's config is not the one FILE was swept from.
  Without --map it silently stored OTHER's Hessian in FILE (exit 0); with --map it was
  refused (`leaf ... has shape (8,), but like has (6,)`) only after rewriting FILE's
  hessian/ group."""
  argv = ["hessian", run / "landscape.h5", "--run", other_run, "--k", "1", "--no-trace",
          "--no-density", "--set", "hessian.num_steps=6", "--set", "hessian.map_steps=2"]
  if probe == "map":
    argv.append("--map")
  before = _snapshot(tmp_path)
  rc, _, err = _cli(*argv)
  _assert_unchanged(before, tmp_path)
  _assert_user_error(rc, err, str(other_run))


@pytest.mark.parametrize("grid", ["-1e308:1e308:3", "-1e300:1e300:3"], ids=["1e308", "1e300"])
def test_grid_bounds_beyond_the_model_precision_are_refused(bare_run, tmp_path, grid):
  """1e308: numpy overflow warnings on stderr (5 lines in a shell) and a message about
  `xs ... got array([nan, inf, 1e+308]); pass e.g. np.linspace(...)` that does not name
  --x; 1e300: exit 0, coordinates stored as ±1e300 but swept at float32 ±inf
  (NaN losses), with a RuntimeWarning on stderr."""
  before = _snapshot(tmp_path)
  rc, _, err = _cli("surface", "--run", bare_run, f"--x={grid}", "--y=-1:1:3")
  _assert_user_error(rc, err, grid)
  _assert_unchanged(before, tmp_path)


def test_chunk_size_beyond_the_grid_is_harmless(bare_run, tmp_path):
  """`--chunk-size 1000000` on a 3x3 grid: each chunk is padded to the chunk size, so 9
  points cost a million points' memory ("the device ran out of memory" after ~10 s here;
  a traceback without the address-space limit; --chunk-size 100000 took 24 GB and was
  OOM-killed). A speed setting larger than the grid must not change anything."""
  p, _ = _limited(["surface", "--run", bare_run, "--x=-1:1:3", "--y=-1:1:3",
                   "--chunk-size", "1000000"], timeout=90)
  assert p.returncode == 0, f"exit {p.returncode}: {p.stderr.strip()[-500:]}"
  with h5py.File(bare_run / "landscape.h5", "r") as f:
    assert f["done"][()].all()


ARGPARSE_ERRORS = {
    "hessian_k_abc": lambda r: ["hessian", r / "landscape.h5", "--k", "abc"],
    "surface_batch_size_abc": lambda r: ["surface", "--run", r, "--batch-size", "abc"],
    "export_vtk_zmax_-inf": lambda r: ["export-vtk", r / "landscape.h5", "--zmax", "-inf"],
    "info_without_file": lambda r: ["info"],
    "unknown_command": lambda r: ["bogus"],
    "unknown_flag": lambda r: ["plot", r / "landscape.h5", "--colour", "red"],
}


@pytest.mark.parametrize("name", list(ARGPARSE_ERRORS))
def test_argument_errors_are_one_line(run, tmp_path, name):
  """argparse's own errors print a usage block and `landscape SUBCOMMAND: error: ...`."""
  before = _snapshot(tmp_path)
  rc, _, err = _cli(*ARGPARSE_ERRORS[name](run))
  _assert_user_error(rc, err)
  _assert_unchanged(before, tmp_path)


def test_closed_stdout_is_not_blamed_on_the_file(template):
  """`landscape info FILE | head -0` (the reader gone): the broken pipe was reported as
  `cannot access: Broken pipe; check the path, its permissions and free space` (and a
  sweep piped to `head` stopped half-way with it)."""
  p = subprocess.Popen([sys.executable, "-m", "landscape.cli", "info",
                        os.fspath(template / "landscape.h5")], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env=_subprocess_env())
  p.stdout.close()
  err = p.stderr.read()
  p.wait(timeout=60)
  assert "Traceback" not in err, err
  assert not re.search(r"(?i)check the path|permission|free space", err), err


def test_export_vtk_out_in_a_new_nested_directory(run, tmp_path):
  """surface --out and plot --out create missing directories; export-vtk --out passed its
  pre-check (the nearest existing ancestor is writable) and then failed writing:
  `cannot write .../x.vts: No such file or directory`."""
  out = tmp_path / "new" / "deep dir" / "ö" / "x.vts"
  rc, _, err = _cli("export-vtk", run / "landscape.h5", "--out", out)
  assert rc == 0, err
  assert "<VTKFile" in out.read_text()


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
  """A stale ``.NAME.tmp-PID.SUFFIX`` of a dead process goes at the next write of NAME; a
  live process's (this one's parent) and other files stay."""
  import subprocess
  import sys
  from landscape import io as lio
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  pid = int(dead.stdout)
  stale = tmp_path / f".landscape.tmp-{pid}.h5"
  live = tmp_path / f".landscape.tmp-{os.getppid()}.h5"
  other = tmp_path / f".other.tmp-{pid}.h5"
  for p in (stale, live, other):
    p.write_bytes(b"partial")
  lio.atomic_write(tmp_path / "landscape.h5", b"done")
  assert (tmp_path / "landscape.h5").read_bytes() == b"done"
  assert not stale.exists() and live.exists() and other.exists()
