"""The sweep engine on several devices and several processes, in subprocesses.

A device count is fixed when the JAX backend starts, so every configuration runs in
its own Python process (``sys.executable``, CPU backend, fake host devices):

* one process with 1 device: the reference;
* one process with 8 devices (``--xla_force_host_platform_device_count=8``): the
  points of every chunk are split over the 8 devices with ``shard_map``;
* two processes with 2 devices each, joined by ``jax.distributed.initialize`` on a
  local port (CPU collectives through gloo, bundled with jaxlib), taking chunks in
  turn and gathering every round.

Each runs the same sweeps (least squares on a small pytree, a 7 x 3 grid: 21 points,
not a multiple of 8) and saves what it got; the parent compares the runs with each
other and with the float64 NumPy closed form. The last test runs
``landscape.pipeline.run_surface`` under two processes (process 0 writes the file) on
a tiny trained run and compares the HDF5 file with a single-process one.
"""

from __future__ import annotations

import inspect
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

DIM = 7
N_SAMPLES = 50
XS = np.linspace(-1.0, 0.0, 7)
YS = np.linspace(-1.0, 1.0, 3)             # 21 points: not a multiple of 8 (nor of 2 * 2)
# (grid strings quoted: unquoted, YAML 1.1 reads -1:1:5 as the base-60 integer -3665)
PIPE_OVERRIDES = ['surface.x="-1:1:5"', 'surface.y="-1:1:4"', "surface.chunk_size=3",
                  "surface.batch_size=16"]
TIMEOUT_S = 300                            # per stage; the machine may be shared and slow
F32_EPS = float(np.finfo(np.float32).eps)


# ----------------------------------------------------------------------------- the problem
# These functions run in the parent (the NumPy closed form) and, by their source, in the
# worker processes (the JAX loss): one definition of the problem for both.

def _problem() -> dict:
  rng = np.random.default_rng(11)
  return {"theta": rng.normal(size=DIM), "u": rng.normal(size=DIM), "v": rng.normal(size=DIM),
          "X": rng.normal(size=(N_SAMPLES, DIM)), "y": rng.normal(size=N_SAMPLES)}


def _tree(vec):
  import jax.numpy as jnp
  vec = np.asarray(vec)
  return {"a": jnp.asarray(vec[:3], jnp.float32),
          "w": jnp.asarray(vec[3:].reshape(2, 2), jnp.float32)}


def _residual(p, batch):
  import jax.numpy as jnp
  x, y = batch
  return x @ jnp.concatenate([p["a"], p["w"].reshape(-1)]) - y


def _lstsq_loss(p, batch):
  import jax.numpy as jnp
  return 0.5 * jnp.mean(_residual(p, batch) ** 2)


def _mae_metric(p, batch):
  import jax.numpy as jnp
  return jnp.mean(jnp.abs(_residual(p, batch)))


_WORKER_BODY = r'''
import json
import os
import sys

import numpy as np

role, out = sys.argv[1], sys.argv[2]
import jax
if len(sys.argv) > 3:
  pid, nproc, port = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
  jax.config.update("jax_cpu_collectives_implementation", "gloo")   # CPU cross-process collectives
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc,
                             process_id=pid, initialization_timeout=120)
import jax.numpy as jnp
from landscape import surface

meta = {"process_index": jax.process_index(), "process_count": jax.process_count(),
        "local_device_count": jax.local_device_count(), "device_count": jax.device_count()}


def sweep_role():
  prob = _problem()
  params, dirs = _tree(prob["theta"]), (_tree(prob["u"]), _tree(prob["v"]))
  data = (jnp.asarray(prob["X"], jnp.float32), jnp.asarray(prob["y"], jnp.float32))
  xs, ys = np.asarray(XS), np.asarray(YS)
  ndev = jax.local_device_count()
  point_fn = surface.point_loss_fn(_lstsq_loss, params, dirs, {"mae": _mae_metric})
  line_fn = surface.point_loss_fn(_lstsq_loss, params, dirs[:1])
  jj, ii = np.indices((len(ys), len(xs)))
  cases = {
      "vmap_c5": (point_fn, dict(point_mode="vmap", chunk_size=5)),
      "map_c3": (point_fn, dict(point_mode="map", chunk_size=3)),
      "affine_c6": (point_fn, dict(point_mode="affine", chunk_size=6)),
      "auto": (point_fn, dict()),
      "line": (line_fn, dict(point_mode="vmap", chunk_size=2, ys=None)),
      "done": (point_fn, dict(point_mode="vmap", chunk_size=4, done=(ii + jj) % 2 == 0)),
      "splits": (point_fn, dict(point_mode="map", chunk_size=6,
                                splits={"train": jax.tree.map(lambda a: a[:30], data),
                                        "test": jax.tree.map(lambda a: a[30:], data)})),
  }
  if ndev > 1:
    # which device evaluated each point: chunk_size = ndev puts one point on each device
    def shard_fn(coeffs, batch):
      try:
        where = jax.lax.axis_index(surface.POINT_AXIS).astype(jnp.float32)
      except NameError:      # traced for shapes outside shard_map: no device axis there
        where = jnp.float32(-1)
      return {**point_fn(coeffs, batch), "shard": where}
    cases["shard"] = (shard_fn, dict(point_mode="vmap", chunk_size=ndev))
  arrays = {}
  for name, (fn, kw) in cases.items():
    kw = dict(kw)
    grid_ys = kw.pop("ys", ys)
    seen = []
    data_kw = {} if "splits" in kw else {"data": data}
    s = surface.sweep(fn, xs, grid_ys, batch_size=7, on_chunk=lambda idx, v: seen.append(idx),
                      **data_kw, **kw)
    for k, v in s.values.items():
      arrays[f"{name}/{k}"] = v
    arrays[f"{name}/done"] = s.done
    arrays[f"{name}/seen"] = np.concatenate(seen) if seen else np.zeros(0, np.int64)
    meta[name] = {"chunk_size": s.chunk_size, "point_mode": s.point_mode,
                  "num_evaluated": s.num_evaluated}
  np.savez(out + ".npz", **arrays)


def train_role():
  from landscape import pipeline
  cfg = pipeline.resolve(None, ["train.epochs=1", "data.n_train=64", "data.n_test=32",
                                "model.kwargs.features=[4]", "model.kwargs.dense=8"])
  pipeline.run_train(cfg, out, log=lambda m: None)


def pipeline_role():
  from landscape import pipeline
  run_dir, h5 = out.split("::")
  pipeline.run_surface(run_dir, out=h5, log=print, overrides=PIPE_OVERRIDES)


{"sweep": sweep_role, "train": train_role, "pipeline": pipeline_role}[role]()
if role != "pipeline" or jax.process_index() == 0:
  with open((out.split("::")[-1]) + f".{jax.process_index()}.json", "w") as f:
    json.dump(meta, f)
print("WORKER OK", flush=True)
'''


def _worker_source() -> str:
  helpers = "\n\n".join(inspect.getsource(f) for f in (_problem, _tree, _residual, _lstsq_loss,
                                                          _mae_metric))
  header = (f"DIM, N_SAMPLES = {DIM}, {N_SAMPLES}\nXS = {XS.tolist()!r}\nYS = {YS.tolist()!r}\n"
            f"PIPE_OVERRIDES = {PIPE_OVERRIDES!r}\n")
  return "import numpy as np\n" + header + helpers + textwrap.dedent(_WORKER_BODY)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(script: Path, role: str, out: str, devices: int, dist: tuple = ()) -> subprocess.Popen:
  env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
  env.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} "
                       "--xla_backend_optimization_level=0")
  return subprocess.Popen([sys.executable, str(script), role, out, *map(str, dist)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          cwd=script.parent)


def _wait_all(procs: dict[str, subprocess.Popen]) -> dict[str, str]:
  """Wait for every process (killing the rest on a timeout); their outputs, or fail."""
  outputs, failed = {}, []
  deadline = time.monotonic() + TIMEOUT_S
  for name, p in procs.items():
    try:
      outputs[name], _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      for q in procs.values():
        if q.poll() is None:
          q.kill()
      outputs[name] = p.communicate()[0] + f"\n[timed out after {TIMEOUT_S} s]"
    if p.returncode != 0 or "WORKER OK" not in outputs[name]:
      failed.append(name)
  if failed:
    pytest.fail("worker(s) failed: " + "; ".join(
        f"{n} (rc={procs[n].returncode}): ...{outputs[n][-3000:]}" for n in failed))
  return outputs


def _load(prefix: Path, process: int = 0) -> tuple[dict, dict]:
  with np.load(f"{prefix}.npz") as z:
    arrays = dict(z)
  return arrays, json.loads(Path(f"{prefix}.{process}.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Start every sweep worker and the training run at once (they overlap), then wait."""
  tmp = tmp_path_factory.mktemp("distributed")
  script = tmp / "worker.py"
  script.write_text(_worker_source())
  port = _free_port()
  procs = {
      "single": _launch(script, "sweep", str(tmp / "single"), 1),
      "sharded": _launch(script, "sweep", str(tmp / "sharded"), 8),
      "mp0": _launch(script, "sweep", str(tmp / "mp0"), 2, (0, 2, port)),
      "mp1": _launch(script, "sweep", str(tmp / "mp1"), 2, (1, 2, port)),
      "train": _launch(script, "train", str(tmp / "run"), 1),
  }
  _wait_all(procs)
  return {"tmp": tmp, "script": script,
          "single": _load(tmp / "single"), "sharded": _load(tmp / "sharded"),
          "mp0": _load(tmp / "mp0", 0), "mp1": _load(tmp / "mp1", 1)}


# ----------------------------------------------------------------------------- references

def _closed_form(prob, t, rows=slice(None)):
  """Least squares and mean |residual| at points ``t (..., DIM)`` in float64.

  Returns ``(loss, mae, loss_scale, mae_scale)``; the scales are the sums of absolute
  terms that bound the float32 rounding error.
  """
  x, y = prob["X"][rows], prob["y"][rows]
  r = np.einsum("nd,...d->...n", x, t) - y
  size = np.einsum("nd,...d->...n", abs(x), abs(t)) + abs(y)
  return (0.5 * np.mean(r * r, axis=-1), np.mean(np.abs(r), axis=-1),
          0.5 * np.mean(size ** 2, axis=-1), np.mean(size, axis=-1))


def _points(prob, ys=YS):
  if ys is None:
    return np.stack([prob["theta"] + x * prob["u"] for x in XS])
  return np.stack([np.stack([prob["theta"] + x * prob["u"] + y * prob["v"] for x in XS])
                   for y in ys])


# the float32 forward-error bound of the least-squares value, as in test_surface.py:
# 64·eps·Σ|terms| covers the inputs, the shift, the length-7 residual and the mean
F32_FACTOR = 64
# The same point in a differently shaped chunk (8 devices x 1 point vs 1 device x 5
# points) may be summed in another order: equal up to a few roundings of the value.
CROSS_RTOL = 16 * F32_EPS

SHAPE = (len(YS), len(XS))
CHECKER_DONE = (np.indices(SHAPE).sum(0) % 2 == 0)


def _check_against_closed_form(arrays):
  prob = _problem()
  t = _points(prob)
  loss, mae, scale, mae_scale = _closed_form(prob, t)
  for case in ("vmap_c5", "map_c3", "affine_c6", "auto"):
    np.testing.assert_array_less(np.abs(arrays[f"{case}/loss"] - loss),
                                 F32_FACTOR * F32_EPS * scale)
    np.testing.assert_array_less(np.abs(arrays[f"{case}/mae"] - mae),
                                 F32_FACTOR * F32_EPS * mae_scale)
  line, _, line_scale, _ = _closed_form(prob, _points(prob, None))
  np.testing.assert_array_less(np.abs(arrays["line/loss"] - line),
                               F32_FACTOR * F32_EPS * line_scale)
  for split, rows in (("train", slice(0, 30)), ("test", slice(30, None))):
    want, _, s, _ = _closed_form(prob, t, rows)
    np.testing.assert_array_less(np.abs(arrays[f"splits/{split}_loss"] - want),
                                 F32_FACTOR * F32_EPS * s)
  todo = ~CHECKER_DONE
  assert np.all(np.isnan(arrays["done/loss"][CHECKER_DONE]))
  np.testing.assert_array_less(np.abs(arrays["done/loss"][todo] - loss[todo]),
                               F32_FACTOR * F32_EPS * scale[todo])


def _check_same_sweeps(got: dict, ref: dict):
  names = sorted(k for k in ref if not k.startswith("shard/"))
  assert names == sorted(k for k in got if not k.startswith("shard/"))
  for k in names:
    if k.endswith(("/done", "/seen")):
      np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    else:
      np.testing.assert_allclose(got[k], ref[k], rtol=CROSS_RTOL, err_msg=k)


def _check_bookkeeping(arrays, meta):
  full = np.arange(XS.size * YS.size)
  for case in ("vmap_c5", "map_c3", "affine_c6", "auto", "splits"):
    np.testing.assert_array_equal(arrays[f"{case}/seen"], full)
    assert arrays[f"{case}/done"].all() and meta[case]["num_evaluated"] == full.size
  np.testing.assert_array_equal(arrays["line/seen"], np.arange(XS.size))
  np.testing.assert_array_equal(arrays["done/seen"], np.flatnonzero(~CHECKER_DONE.ravel()))
  assert meta["done"]["num_evaluated"] == int((~CHECKER_DONE).sum())


# ----------------------------------------------------------------------------- tests

def test_single_device_reference_matches_closed_form(runs):
  arrays, meta = runs["single"]
  assert meta["local_device_count"] == 1 and meta["process_count"] == 1
  assert meta["vmap_c5"]["chunk_size"] == 5 and meta["map_c3"]["chunk_size"] == 3
  _check_against_closed_form(arrays)
  _check_bookkeeping(arrays, meta)


def test_sharded_sweep_on_8_devices_equals_single_device(runs):
  arrays, meta = runs["sharded"]
  ref, _ = runs["single"]
  assert meta["local_device_count"] == 8 and meta["process_count"] == 1
  # chunk sizes are rounded up to a multiple of the device count
  assert meta["vmap_c5"]["chunk_size"] == 8 and meta["map_c3"]["chunk_size"] == 8
  assert meta["line"]["chunk_size"] == 8 and meta["auto"]["chunk_size"] % 8 == 0
  assert meta["auto"]["point_mode"] == "affine"
  _check_same_sweeps(arrays, ref)
  _check_against_closed_form(arrays)
  _check_bookkeeping(arrays, meta)
  # every device evaluated points: with one point per device, point p ran on device p % 8
  np.testing.assert_array_equal(arrays["shard/shard"].ravel(), np.arange(XS.size * YS.size) % 8)
  np.testing.assert_allclose(arrays["shard/loss"], ref["vmap_c5/loss"], rtol=CROSS_RTOL)


def test_two_processes_equal_single_process(runs):
  (a0, m0), (a1, m1) = runs["mp0"], runs["mp1"]
  ref, _ = runs["single"]
  for i, m in enumerate((m0, m1)):
    assert (m["process_index"], m["process_count"]) == (i, 2)
    assert m["local_device_count"] == 2 and m["device_count"] == 4
  # chunk_size=3 -> 4 (2 devices per process). The "shard" sweep (chunks of 2: 11) and the
  # "done" sweep (10 points in chunks of 4: 3) have an odd number of chunks, so process 1
  # has nothing to do in the last round and must still take part in the gather.
  assert m0["map_c3"]["chunk_size"] == 4 and m0["line"]["chunk_size"] == 2
  # process 0 collects every chunk; every process ends with the same full surface
  _check_same_sweeps(a0, ref)
  _check_against_closed_form(a0)
  _check_bookkeeping(a0, m0)
  _check_bookkeeping(a1, m1)
  for k in a0:
    np.testing.assert_array_equal(a0[k], a1[k], err_msg=k)
  # within each chunk of 2, point p ran on local device p % 2 of its process
  np.testing.assert_array_equal(a0["shard/shard"].ravel(), np.arange(XS.size * YS.size) % 2)


@pytest.mark.slow
def test_two_process_run_surface_writes_the_single_process_file(runs):
  from landscape import io as lio
  tmp, script = runs["tmp"], runs["script"]
  run_dir = tmp / "run"
  assert (run_dir / "config.yaml").is_file()
  port = _free_port()
  mp_h5, sp_h5 = tmp / "mp.h5", tmp / "sp.h5"
  procs = {
      "pipe_mp0": _launch(script, "pipeline", f"{run_dir}::{mp_h5}", 2, (0, 2, port)),
      "pipe_mp1": _launch(script, "pipeline", f"{run_dir}::{mp_h5}", 2, (1, 2, port)),
  }
  try:   # the single-process reference, here (one device), while the two processes run
    from landscape import pipeline
    pipeline.run_surface(run_dir, out=sp_h5, overrides=PIPE_OVERRIDES, log=lambda m: None)
  finally:
    _wait_all(procs)
  meta = json.loads(Path(f"{mp_h5}.0.json").read_text())
  assert meta["process_count"] == 2 and meta["local_device_count"] == 2
  mp, sp = lio.load(mp_h5), lio.load(sp_h5)
  np.testing.assert_array_equal(mp.xs, np.linspace(-1, 1, 5))
  np.testing.assert_array_equal(mp.ys, np.linspace(-1, 1, 4))
  assert set(mp.fields) == set(sp.fields) == {"train_loss", "train_acc", "test_loss", "test_acc"}
  for name, mask in mp.done.items():
    assert mask.shape == (4, 5) and mask.all(), name
  for name in sp.fields:
    assert np.all(np.isfinite(mp.fields[name])), name
    # the CNN's loss: same points, different chunk shapes (4 vs 3 points per call)
    np.testing.assert_allclose(mp.fields[name], sp.fields[name], rtol=CROSS_RTOL, atol=0,
                               err_msg=name)
  for key in ("direction_kind", "norm", "seed"):
    assert mp.attrs[key] == sp.attrs[key]
  # one result file, written by process 0 (no temporary or per-process files left)
  assert sorted(p.name for p in tmp.iterdir() if p.name.startswith("mp.h5")) == [
      "mp.h5", "mp.h5.0.json"]
