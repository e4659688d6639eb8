"""Curvature maps (Li et al. 2018, Fig. 7) and the hessian/critical commands end to end."""

import os
import re
import signal
import subprocess
import sys
import time

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landscape import cli, critical, hessian, io, models, objective, surface

F32 = np.finfo(np.float32).eps


@pytest.fixture(scope="module")
def cnn_problem():
  module = models.get("cnn", num_outputs=3, features=(4,), dense=8)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(24, 8, 8, 1)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 3, size=24), jnp.int32)
  variables = models.init(module, jax.random.key(0), x)
  from landscape import losses
  obj = objective.build(module, variables, losses.get("cross_entropy"), task="multiclass")
  k1, k2 = jax.random.split(jax.random.key(1))
  dirs = [jax.tree.map(lambda p, k=k: 0.3 * jax.random.normal(k, p.shape, p.dtype), obj.params)
          for k in (k1, k2)]
  return obj, dirs, (x, y)


def test_curvature_map_matches_point_by_point(cnn_problem):
  """The vmapped and the mapped map equal a plain per-point Lanczos on a small CNN."""
  obj, dirs, data = cnn_problem
  xs, ys = np.linspace(-1, 1, 3), np.linspace(-0.5, 0.5, 2)
  key = jax.random.key(7)
  f = jax.jit(hessian.extreme_eigenvalues_fn(obj.loss_fn, data, num_steps=8, batch_size=10))
  ref_max = np.zeros((2, 3))
  ref_min = np.zeros((2, 3))
  for j, yv in enumerate(ys):
    for i, xv in enumerate(xs):
      p = surface.shift(obj.params, dirs, jnp.asarray([xv, yv], jnp.float32))
      ref_max[j, i], ref_min[j, i] = map(float, f(p, key))
  for mode in ("vmap", "map"):
    m = hessian.curvature_map(obj.loss_fn, obj.params, dirs, xs, ys, data, key=key, num_steps=8,
                              batch_size=10, point_mode=mode, chunk_size=4)
    scale = np.abs(ref_max).max()
    # vmapped convolutions reorder float32 sums: allow a few hundred eps of the spectral scale
    np.testing.assert_allclose(m.values["max_eig"], ref_max, atol=500 * F32 * scale)
    np.testing.assert_allclose(m.values["min_eig"], ref_min, atol=500 * F32 * scale)
  assert np.all(ref_max >= ref_min)


def test_curvature_map_against_dense_hessian():
  """On an analytic function the map equals eigh of the exact Hessian at every point."""
  with jax.enable_x64(True):
    A = jnp.diag(jnp.array([3.0, 1.0, -2.0]))

    def loss(p, _):
      return 0.5 * p @ A @ p + 0.1 * jnp.sum(p ** 4) + 0.05 * p[0] * p[1] ** 2

    xs, ys = np.linspace(-1, 1, 4), np.linspace(-1, 0.5, 3)
    dx, dy = jnp.array([1.0, 0.0, 0.0]), jnp.array([0.0, 1.0, 0.5])
    m = hessian.curvature_map(loss, jnp.zeros(3), (dx, dy), xs, ys, key=jax.random.key(0),
                              num_steps=3)
    for j, yv in enumerate(ys):
      for i, xv in enumerate(xs):
        ev = np.linalg.eigvalsh(np.asarray(jax.hessian(loss)(xv * dx + yv * dy, None)))
        np.testing.assert_allclose(m.values["max_eig"][j, i], ev[-1], rtol=1e-10)
        np.testing.assert_allclose(m.values["min_eig"][j, i], ev[0], rtol=1e-10)


def _mlp_problem():
  """A tanh MLP 3-5-2 (32 parameters) with an MSE loss on 40 samples, float64."""
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(40, 3)))
  y = jnp.asarray(rng.normal(size=(40, 2)))
  params = {"w1": jnp.asarray(rng.normal(size=(3, 5))), "b1": jnp.zeros(5),
            "w2": jnp.asarray(rng.normal(size=(5, 2)) * 0.5), "b2": jnp.zeros(2)}

  def loss(p, batch):
    xb, yb = batch
    h = jnp.tanh(xb @ p["w1"] + p["b1"])
    return 0.5 * jnp.mean(jnp.sum((h @ p["w2"] + p["b2"] - yb) ** 2, axis=1))

  dirs = [jax.tree.map(lambda a, s=s: jnp.asarray(rng.normal(size=a.shape)) * 0.4, params)
          for s in range(2)]
  return loss, params, dirs, (x, y)


def _dense_spectrum(loss, params, dirs, data, xv, yv):
  from jax.flatten_util import ravel_pytree
  p = surface.shift(params, dirs, jnp.asarray([xv, yv]))
  flat, unravel = ravel_pytree(p)
  return np.linalg.eigvalsh(np.asarray(jax.hessian(lambda f: loss(unravel(f), data))(flat)))


@pytest.mark.parametrize("warm_start", [False, True])
def test_map_residuals_bound_the_eigenvalue_error(warm_start):
  """Each map point's stored Ritz residual bounds the distance of its eigenvalue estimates
  to the spectrum (dense eigh in float64); converged points are within tol·|λmax| of the
  true extremes, and a too small step cap leaves points flagged unconverged."""
  from landscape import curvature, grid
  with jax.enable_x64(True):
    loss, params, dirs, data = _mlp_problem()
    xs, ys = np.linspace(-1, 1, 3), np.linspace(-1, 1, 3)
    key = jax.random.key(0)
    tol = 1e-6
    full = curvature.curvature_map(loss, params, dirs, xs, ys, data, key=key, num_steps=32,
                                   tol=tol, warm_start=warm_start)
    short = curvature.curvature_map(loss, params, dirs, xs, ys, data, key=key, num_steps=3,
                                    tol=tol, warm_start=warm_start)
    ok_full, ok_short = grid.eig_converged(full.values, tol), grid.eig_converged(short.values, tol)
    assert ok_full.all() and not ok_short.all()
    assert np.all(full.values["eig_steps"] <= 32) and np.all(short.values["eig_steps"] == 3)
    slack = 1e-9
    for j, yv in enumerate(ys):
      for i, xv in enumerate(xs):
        lam = _dense_spectrum(loss, params, dirs, data, xv, yv)
        for m in (full, short):
          for end in ("max_eig", "min_eig"):
            theta, r = m.values[end][j, i], m.values[f"{end}_residual"][j, i]
            assert np.min(np.abs(lam - theta)) <= r + slack   # the residual bound
        assert abs(full.values["max_eig"][j, i] - lam[-1]) <= tol * abs(lam[-1]) + slack
        assert abs(full.values["min_eig"][j, i] - lam[0]) <= tol * abs(lam[-1]) + slack


def test_map_without_tolerance_runs_every_step_like_before():
  """tol=None: every point runs num_steps steps from the key's Gaussian start (the old map)."""
  from landscape import curvature
  with jax.enable_x64(True):
    loss, params, dirs, data = _mlp_problem()
    xs = np.linspace(-1, 1, 3)
    m = curvature.curvature_map(loss, params, dirs[:1], xs, None, data,
                                key=jax.random.key(5), num_steps=6, linearize=False)
    f = hessian.extreme_eigenvalues_fn(loss, data, num_steps=6)
    for i, xv in enumerate(xs):
      hi, lo = f(surface.shift(params, dirs[:1], jnp.asarray([xv])), jax.random.key(5))
      np.testing.assert_allclose([m.values["max_eig"][i], m.values["min_eig"][i]],
                                 [float(hi), float(lo)], rtol=1e-10)
    assert np.all(m.values["eig_steps"] == 6)


TINY = ["--set", "train.epochs=2", "--set", "data.n_train=200", "--set", "data.n_test=60",
        "--set", "model.kwargs.features=[4]", "--set", "model.kwargs.dense=8"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  run = tmp_path_factory.mktemp("curv") / "run"
  assert cli.main(["train", "--out", str(run), *TINY]) == 0
  assert cli.main(["surface", "--run", str(run), "--x=-1:1:5", "--y=-1:1:4"]) == 0
  return run


def test_hessian_command_writes_the_group(tiny_run, capsys):
  path = tiny_run / "landscape.h5"
  rc = cli.main(["hessian", str(path), "--k", "3", "--set", "hessian.density_steps=12",
                 "--set", "hessian.trace_samples=9", "--set", "hessian.n_samples=64"])
  assert rc == 0
  r = io.load(path)
  h = r.groups["hessian"]
  lo, hi = h["eigenvalues_smallest"], h["eigenvalues_largest"]
  assert lo.shape == hi.shape == (3,)
  assert np.all(np.diff(hi) <= 0) and np.all(np.diff(lo) >= 0) and hi[0] >= lo[0]
  grid, dens = h["density_grid"], h["density"]
  np.testing.assert_allclose(np.trapezoid(dens, grid), 1.0, atol=1e-3)
  assert grid[0] <= lo[0] and grid[-1] >= hi[0]
  assert int(h["num_hvps"]) > 0 and np.isfinite(h["trace"])
  # the surface is untouched
  assert r.done["done"].all() and np.isfinite(r.fields["train_loss"]).all()


def test_critical_command(tiny_run):
  path = tiny_run / "landscape.h5"
  rc = cli.main(["critical", str(path), "--starts", "2", "--set", "critical.max_steps=3",
                 "--set", "critical.n_samples=32"])
  assert rc == 0
  c = io.load(path).groups["critical"]
  assert c["loss"].shape == c["index"].shape == c["kind"].shape
  assert c["coords"].shape == (c["loss"].shape[0], 2)
  # a search is "not_converged" exactly when its gradient norm is above the tolerance
  # (the full kind/index rule is checked in test_cli.test_critical_command_stores_...)
  kinds = np.asarray(c["kind"]).astype(str)
  np.testing.assert_array_equal(kinds == "not_converged", np.asarray(c["grad_norm"]) > 1e-5)
  # the grid's own critical points are those of the stored train_loss surface
  r = io.load(path)
  gcp = critical.grid_critical_points(r.xs, r.ys, r.fields["train_loss"])
  np.testing.assert_array_equal(c["grid_coords"], gcp.coords)
  np.testing.assert_array_equal(np.asarray(c["grid_kind"]).astype(str), gcp.kind.astype(str))
  np.testing.assert_array_equal(c["grid_loss"], gcp.loss)


def test_map_with_other_settings_is_refused_and_the_file_kept(tiny_run, tmp_path, capsys):
  """A stored map is resumed only with its own settings: another tolerance, cap or sample
  count is one line (exit 2) and leaves the file byte-identical; its own settings are
  accepted, and `landscape info` counts the converged points."""
  path = tmp_path / "map.h5"
  path.write_bytes((tiny_run / "landscape.h5").read_bytes())
  sets = ["--no-trace", "--no-density", "--k", "1", "--set", "hessian.num_steps=6",
          "--set", "hessian.n_samples=50", "--set", "hessian.map_steps=5"]
  assert cli.main(["hessian", str(path), "--map", *sets]) == 0
  r = io.load(path)
  assert r.done["eig_done"].all() and float(r.groups["curvature_map"]["max_steps"]) == 5
  assert np.all(r.fields["eig_steps"] <= 5)
  before = path.read_bytes()
  capsys.readouterr()
  for other in (["--set", "hessian.map_tol=0.05"], ["--set", "hessian.map_steps=9"],
                ["--set", "hessian.n_samples=40"], ["--set", "hessian.map_tol=2"]):
    assert cli.main(["hessian", str(path), "--map", *sets, *other]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("landscape: error: "), err
    assert path.read_bytes() == before, other
  assert cli.main(["hessian", str(path), "--map", *sets]) == 0
  assert cli.main(["info", str(path)]) == 0
  out = capsys.readouterr().out
  ok = int(np.sum(grid_eig_converged(io.load(path))))
  assert re.search(rf"curvature map\s+{ok}/20 points converged \(tol 0.01, max 5 steps", out), out


def grid_eig_converged(result):
  from landscape import grid
  return grid.eig_converged(result.fields, float(result.groups["curvature_map"]["tol"]))


def test_curvature_map_resumes_after_kill(tiny_run, tmp_path):
  """A killed `landscape hessian --map` resumes to exactly the uninterrupted map."""
  src = tiny_run / "landscape.h5"
  env = dict(os.environ, HDF5_USE_FILE_LOCKING="FALSE")
  sets = ["--no-trace", "--no-density", "--k", "1", "--set", "hessian.map_steps=6",
          "--set", "hessian.n_samples=200", "--set", "hessian.batch_size=8",
          "--set", "hessian.num_steps=6"]

  def cmd(path):
    return [sys.executable, "-m", "landscape.cli", "hessian", str(path), "--map", *sets]

  full = tmp_path / "full.h5"
  full.write_bytes(src.read_bytes())
  subprocess.run(cmd(full), check=True, capture_output=True, env=env, timeout=300)
  killed = tmp_path / "killed.h5"
  killed.write_bytes(src.read_bytes())
  proc = subprocess.Popen(cmd(killed), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
  deadline = time.time() + 240
  partial = None
  while time.time() < deadline and proc.poll() is None:
    time.sleep(0.2)
    try:
      with h5py.File(killed, "r", locking=False) as f:
        if "eig_done" in f:
          n = int(f["eig_done"][()].sum())
          if 0 < n < f["eig_done"].size:
            partial = n
            break
    except OSError:
      continue
  if partial is None:
    proc.kill()
    proc.wait()
    pytest.skip("the map finished before it could be interrupted")
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  out = subprocess.run(cmd(killed), check=True, capture_output=True, text=True, env=env,
                       timeout=300).stdout
  m = re.search(r"curvature map: (\d+) of (\d+) points", out)
  assert m is not None, out
  with h5py.File(killed, "r", locking=False) as f:
    assert int(m.group(1)) <= int(m.group(2)) - partial
  a, b = io.load(full), io.load(killed)
  for name in ("max_eig", "min_eig"):
    np.testing.assert_array_equal(a.fields[name], b.fields[name])
  assert b.done["eig_done"].all()


def test_eigen_directions(tiny_run, tmp_path):
  """--direction eigen sweeps along the filter-normalized top-2 Hessian eigenvectors."""
  from landscape import directions, pipeline
  out = tmp_path / "eigen.h5"
  rc = cli.main(["surface", "--run", str(tiny_run), "--direction", "eigen", "--x=-1:1:3",
                 "--y=-1:1:3", "--out", str(out), "--split", "train"])
  assert rc == 0
  run = pipeline.open_run(tiny_run)
  exp, obj = run.experiment, run.objective("eval")
  dx, dy = io.read_directions(out, obj.params)
  data = (jnp.asarray(exp.dataset.x_train), jnp.asarray(exp.dataset.y_train))
  e = hessian.eigenvalues(obj.loss_fn, obj.params, data, k=2, which="largest",
                          key=jax.random.key(0), batch_size=512, return_vectors=True)
  stored = io.load(out).groups["eigen_directions"]["eigenvalues"]
  np.testing.assert_allclose(stored, np.asarray(e.values), rtol=1e-4)
  for i, d in enumerate((dx, dy)):
    v = jax.tree.map(lambda a: a[i], e.vectors)
    want = directions.normalize(v, obj.params, norm="filter", ignore="biasbn")
    for a, b in zip(jax.tree.leaves(d), jax.tree.leaves(want)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-5)


def test_plot_reads_the_original_tool_layout(tmp_path):
  """`landscape plot` draws a file with only xcoordinates/ycoordinates/train_loss."""
  path = tmp_path / "orig.h5"
  xs, ys = np.linspace(-1, 1, 6), np.linspace(-1, 1, 6)
  X, Y = np.meshgrid(xs, ys)
  with h5py.File(path, "w") as f:
    f["xcoordinates"], f["ycoordinates"] = xs, ys
    f["train_loss"] = 1.0 + X ** 2 + 2 * Y ** 2
  out = tmp_path / "figs"
  assert cli.main(["plot", str(path), "--format", "png", "--out", str(out)]) == 0
  names = sorted(p.name for p in out.iterdir())
  assert "orig_contour.png" in names and "orig_heatmap.png" in names
  assert cli.main(["export-vtk", str(path), "--out", str(tmp_path / "o.vts")]) == 0
  text = (tmp_path / "o.vts").read_text()
  assert 'WholeExtent="0 5 0 5 0 0"' in text


def test_plot_refuses_an_unsupported_kind(tiny_run, capsys):
  rc = cli.main(["plot", str(tiny_run / "landscape.h5"), "--kind", "trajectory"])
  err = capsys.readouterr().err
  assert rc == 2 and err.count("\n") == 1 and "contour" in err
