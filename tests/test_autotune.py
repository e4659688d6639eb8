"""Tests of the self-tuning sweep: ``point_mode="auto"`` / ``chunk_size=None`` chosen by
timing candidates on the first chunks of the sweep itself (:func:`landscape.surface.sweep`).

Timings decide which candidate wins, so the tests check what must hold whatever wins:
the values equal a fixed-setting sweep, every point is evaluated exactly once, explicit
settings are not tuned, and the choice is recorded (in the Surface and the result file).
The budget constants are raised where a test needs tuning to happen on a tiny problem.
"""

from __future__ import annotations

import json

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landscape import surface

from cli_helpers import ok as _ok

N, D_IN, H = 96, 6, 8
XS = np.linspace(-1.0, 1.0, 80)      # 80 points: 10 chunks of TUNE_START


def _mlp_problem(dtype):
  """A one-hidden-layer tanh regression: params, two directions, data (x, y)."""
  rng = np.random.default_rng(0)

  def tree():
    return {"w1": jnp.asarray(rng.normal(size=(D_IN, H)), dtype),
            "b1": jnp.asarray(rng.normal(size=(H,)), dtype),
            "w2": jnp.asarray(rng.normal(size=(H,)), dtype)}
  params, dx, dy = tree(), tree(), tree()
  data = (jnp.asarray(rng.normal(size=(N, D_IN)), dtype), jnp.asarray(rng.normal(size=N), dtype))
  return params, (dx, dy), data


def _loss(p, batch):
  x, y = batch
  pred = jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"]
  return 0.5 * jnp.mean((pred - y) ** 2)


def _metrics():
  return {"mae": lambda p, b: jnp.mean(jnp.abs(jnp.tanh(b[0] @ p["w1"] + p["b1"]) @ p["w2"]
                                               - b[1]))}


@pytest.fixture
def always_tune(monkeypatch):
  """Tuning on a tiny sweep: no budget limit (its compilations dwarf its evaluation)."""
  monkeypatch.setattr(surface, "TUNE_BUDGET", 1e6)


def _evaluate(dirs_count=1, **kw):
  params, dirs, data = _mlp_problem(kw.pop("dtype", jnp.float32))
  dirs = dirs[:dirs_count]
  ys = kw.pop("ys", None)
  return surface.evaluate(_loss, params, dirs, kw.pop("xs", XS), ys, data=data,
                          metrics=_metrics(), **kw)


def test_tuned_sweep_equals_fixed_sweep_float64(always_tune):
  with jax.enable_x64(True):
    seen = []
    tuned = _evaluate(batch_size=40, dtype=jnp.float64,
                      on_chunk=lambda idx, vals: seen.append(np.asarray(idx)))
    fixed = _evaluate(batch_size=40, dtype=jnp.float64, point_mode="vmap", chunk_size=7)
  assert fixed.tuning is None and (fixed.point_mode, fixed.chunk_size) == ("vmap", 7)
  rec = tuned.tuning
  assert rec is not None and len(rec["candidates"]) >= 2, rec
  modes = {c["point_mode"] for c in rec["candidates"]}
  assert modes == {"affine", "vmap"}, rec                      # both modes were timed
  allowed = {b for _, _, b in surface.tuning_candidates(40, N, convolution=False)}
  assert allowed == {40, 16, 8}         # 96 samples: 3 calls of 40, then 6 of 16, 12 of 8
  assert {c["batch_size"] for c in rec["candidates"]} <= allowed
  assert all(c["points_per_s"] > 0 and c["compile_s"] > 0 for c in rec["candidates"])
  assert rec["overhead_s"] >= 0 and rec["budget_s"] > 0
  chosen = rec["chosen"]
  assert (tuned.point_mode, tuned.chunk_size, tuned.batch_size) == (
      chosen["point_mode"], chosen["chunk_size"], chosen["batch_size"])
  # float64: the batch split and the mode change rounding only
  for name in ("loss", "mae"):
    np.testing.assert_allclose(tuned.values[name], fixed.values[name], rtol=1e-12, atol=1e-14)
  # the timed chunks count: every point evaluated exactly once, none recomputed
  flat = np.concatenate(seen)
  assert sorted(flat.tolist()) == list(range(len(XS)))
  assert tuned.num_evaluated == len(XS) and tuned.done.all()
  assert sum(c["points"] for c in rec["candidates"]) <= len(XS)


def test_tuned_2d_float32_and_resume(always_tune):
  """A 2-D float32 sweep resumed from a partly done mask: only the rest is evaluated."""
  xs, ys = np.linspace(-1, 1, 12), np.linspace(-1, 1, 10)
  done = np.zeros((10, 12), bool)
  done[:3] = True
  seen = []
  tuned = _evaluate(2, xs=xs, ys=ys, dtype=jnp.float32, batch_size=32, done=done,
                    on_chunk=lambda idx, vals: seen.append(np.asarray(idx)))
  ref = _evaluate(2, xs=xs, ys=ys, dtype=jnp.float32, batch_size=32, point_mode="vmap",
                  chunk_size=16, tune=False)
  assert tuned.tuning is not None
  flat = np.sort(np.concatenate(seen))
  np.testing.assert_array_equal(flat, np.flatnonzero(~done.ravel()))
  assert tuned.num_evaluated == (~done).sum() and tuned.done.all()
  assert np.isnan(tuned.values["loss"][:3]).all()               # done points are not touched
  eps = float(np.finfo(np.float32).eps)
  np.testing.assert_allclose(tuned.values["loss"][3:], ref.values["loss"][3:], rtol=64 * eps)


@pytest.mark.parametrize("kw, tuned", [
    ({"point_mode": "affine", "chunk_size": 8}, False),
    ({"point_mode": "map"}, True),
    ({"chunk_size": 8}, True),
    ({"tune": False}, False),
], ids=["both-given", "mode-given", "chunk-given", "tune-off"])
def test_explicit_settings_are_not_tuned(always_tune, kw, tuned):
  s = _evaluate(batch_size=None, **kw)
  assert (s.tuning is not None) is tuned
  if "point_mode" in kw:
    assert s.point_mode == kw["point_mode"]
  if "chunk_size" in kw:
    assert s.chunk_size == kw["chunk_size"]
  if tuned:
    for c in s.tuning["candidates"]:
      for key in ("point_mode", "chunk_size"):
        if key in kw:
          assert c[key] == kw[key], s.tuning
  assert s.num_evaluated == len(XS)


def test_small_sweep_and_budget_use_the_rule(monkeypatch):
  s = _evaluate(xs=np.linspace(-1, 1, 20))     # fewer than TUNE_MIN_CHUNKS chunks
  assert s.tuning is None and s.point_mode == "affine" and s.chunk_size == 20
  monkeypatch.setattr(surface, "TUNE_BUDGET", 0.0)
  s = _evaluate()                              # no budget: only the starting candidate runs
  assert [c["chunk_size"] for c in s.tuning["candidates"]] == [surface.TUNE_START]
  assert s.tuning["overhead_s"] == 0.0 and s.num_evaluated == len(XS)


def test_tuning_candidates():
  cands = surface.tuning_candidates(250, 1000, convolution=False, point_bytes=1 << 10,
                                    platform="cpu")
  assert cands[0] == ("affine", 4, 250) and len(cands) == 2 * 5 * 3
  assert {c[0] for c in cands} == {"affine", "vmap"}
  assert {c[1] for c in cands} == {4, 8, 16, 32, 64} and {c[2] for c in cands} == {250, 125, 63}
  # a conv model: map first; no inner batches without reduce (e.g. a Lanczos point function)
  cands = surface.tuning_candidates(250, 1000, convolution=True, point_bytes=1 << 10,
                                    reduce=False, platform="gpu")
  assert cands[0][0] == "map" and {c[0] for c in cands} == {"map", "vmap"}
  assert {c[2] for c in cands} == {250}
  # on a CPU a vmapped convolution (a grouped one) is too slow even to time
  cands = surface.tuning_candidates(250, 1000, convolution=True, platform="cpu")
  assert {c[0] for c in cands} == {"map"}
  # two devices: per-device chunks times two; several processes use the rules
  cands = surface.tuning_candidates(None, 0, convolution=False, point_bytes=1 << 10,
                                    num_devices=2)
  assert {c[1] for c in cands} == {8, 16, 32, 64, 128} and {c[2] for c in cands} == {None}
  assert surface._tuning_plan("auto", "affine", None, 250, 1000, True, 1 << 10, 500, 1,
                              2) is None


# ----------------------------------------------------------------------------- CLI


TINY = ["--set", "train.epochs=1", "--set", "data.n_train=120", "--set", "data.n_test=60",
        "--set", "model.kwargs.features=[4]", "--set", "model.kwargs.dense=8"]


def test_cli_records_the_choice(tmp_path, monkeypatch):
  run = tmp_path / "run"
  _ok("train", "--out", run, *TINY)
  monkeypatch.setattr(surface, "TUNE_BUDGET", 1e6)
  monkeypatch.setattr(surface, "TUNE_START", 2)
  monkeypatch.setattr(surface, "TUNE_MIN_CHUNKS", 1)
  monkeypatch.setattr(surface, "TUNE_CHUNKS", (2, 4))
  monkeypatch.setattr(surface, "TUNE_BATCH_DIVISORS", (2,))
  out = _ok("surface", "--run", run, "--x=-1:1:5", "--y=-1:1:4", "--set",
            "surface.batch_size=40")
  line = next(ln for ln in out.splitlines() if ln.startswith("swept "))
  with h5py.File(run / "landscape.h5", "r") as f:
    mode, chunk = str(f.attrs["sweep_point_mode"]), int(f.attrs["sweep_chunk_size"])
    batch, tuning = int(f.attrs["sweep_batch_size"]), json.loads(f.attrs["sweep_tuning"])
    assert f["done"][()].all()
  assert mode in surface.POINT_MODES and chunk in (2, 4) and batch in (40, 20)
  assert tuning["chosen"] == {**tuning["chosen"], "point_mode": mode, "chunk_size": chunk,
                              "batch_size": batch}
  assert f"{mode} mode, chunk {chunk}, batch {batch}, tuned over" in line, line
  # explicit settings: not tuned, recorded as given (a new file)
  other = tmp_path / "fixed.h5"
  out = _ok("surface", "--run", run, "--x=-1:1:5", "--out", other, "--set",
            "surface.point_mode=vmap", "--set", "surface.chunk_size=3")
  with h5py.File(other, "r") as f:
    assert (str(f.attrs["sweep_point_mode"]), int(f.attrs["sweep_chunk_size"])) == ("vmap", 3)
    assert json.loads(f.attrs["sweep_tuning"]) == {}
    assert not f.attrs["sweep_hoisted"]
  assert "vmap mode, chunk 3, batch" in out and "tuned over" not in out
  # affine mode prepares the prefix of every data batch once (the file records it)
  hoisted = tmp_path / "affine.h5"
  _ok("surface", "--run", run, "--x=-1:1:5", "--out", hoisted, "--set",
      "surface.point_mode=affine", "--set", "surface.chunk_size=3")
  with h5py.File(hoisted, "r") as f, h5py.File(other, "r") as g:
    assert str(f.attrs["sweep_point_mode"]) == "affine" and f.attrs["sweep_hoisted"]
    np.testing.assert_allclose(f["train_loss"][()], g["train_loss"][()], rtol=1e-5)
