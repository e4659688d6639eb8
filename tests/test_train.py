"""Tests of landscape.train through pipeline.run_train: accuracy of the default experiment,
the seeds' lessons (robust regression, focal loss), exact resume, checkpoints, BatchNorm,
the pure train step, and the optimizer / schedule formulas against NumPy references."""

from __future__ import annotations

import contextlib
import csv
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

from landscape import config as lconfig
from landscape import io as lio
from landscape import losses, models, pipeline, train
from landscape.errors import ConfigError

EPS = float(np.finfo(np.float32).eps)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _quiet(_: str) -> None:
  pass


@contextlib.contextmanager
def _optimized_epochs():
  """Compile the trainer's epoch (a ``lax.scan``) at XLA's default optimization level.

  tests/conftest.py sets ``--xla_backend_optimization_level=0`` for fast compiles. On CPU
  that makes convolution gradients inside the scan ~15x slower (measured here: 7.8 s vs
  0.5 s per digits epoch of the default CNN), and the jitted gradient of the BatchNorm CNN
  comes out NaN (bn_0 and stem_conv; finite eagerly and at level 2). CNN runs therefore
  compile the trainer's own, unchanged epoch function with level 2
  (``jit(...).lower(...).compile(options)``).
  """
  original = train._epoch_fn

  def epoch_fn(step, batch_size):
    jitted, compiled = original(step, batch_size), {}

    def run_epoch(*args):
      leaves = jax.tree.leaves(args)
      sig = (jax.tree.structure(args), tuple((np.shape(a), str(a.dtype)) for a in leaves))
      if sig not in compiled:
        compiled[sig] = jitted.lower(*args).compile({"xla_backend_optimization_level": 2})
      return compiled[sig](*args)

    return run_epoch

  train._epoch_fn = epoch_fn
  try:
    yield
  finally:
    train._epoch_fn = original


def _compile(fn, *args):
  """``jax.jit(fn)`` compiled for ``args`` at XLA's default optimization level (see above)."""
  return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 2})


def _run(cfg, out, *, optimize: bool = False, **kw):
  with _optimized_epochs() if optimize else contextlib.nullcontext():
    return pipeline.run_train(cfg, out, log=_quiet, **kw)


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _read_csv(path: Path) -> list[dict[str, float]]:
  with path.open() as f:
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _assert_history_equal(a, b):
  assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
  for ra, rb in zip(a, b):
    assert ra.keys() == rb.keys()
    np.testing.assert_array_equal(np.array(list(ra.values()), float),
                                  np.array(list(rb.values()), float))


# ----------------------------------------------------------------------- trained runs

@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
  """The embedded default experiment (digits, small CNN, cross-entropy), trained once."""
  cfg = pipeline.resolve(None)
  out = tmp_path_factory.mktemp("default")
  return cfg, out, _run(cfg, out, optimize=True)


# Tiny BatchNorm CNN on 128 digits with a constant rate: a schedule that does not depend on
# train.epochs, so a run cut at k epochs and resumed is the same run as an uninterrupted one.
RESUME_EPOCHS = 3
RESUME_SET = ["name=resume", "data.n_train=128", "data.n_test=64",
              "model.kwargs={features: [4], dense: 16, batchnorm: true}",
              "train.schedule=constant", "train.lr=0.05", "train.batch_size=32",
              f"train.epochs={RESUME_EPOCHS}"]


@pytest.fixture(scope="session")
def resume_reference(tmp_path_factory):
  cfg = pipeline.resolve(None, RESUME_SET)
  out = tmp_path_factory.mktemp("reference")
  result = _run(cfg, out, optimize=True)
  values = np.array([list(r.values()) for r in result.history])
  assert np.all(np.isfinite(values))
  assert result.history[-1]["train_loss"] < 0.7 * result.history[0]["train_loss"]  # 2.3 -> 1.1
  return cfg, out, result


# ----------------------------------------------------------------------- default run

def test_default_config_reaches_95_percent_test_accuracy(default_run):
  cfg, out, result = default_run
  assert cfg == lconfig.Config()
  last = result.history[-1]
  assert last["epoch"] == cfg.train.epochs and last["test_acc"] >= 95.0
  # Independently: argmax of the restored checkpoint's logits against the labels.
  exp = pipeline.prepare(cfg)
  variables = train.load_variables(out, exp.variables)
  logits = np.asarray(exp.module.apply(variables, exp.dataset.x_test))
  acc = 100.0 * np.mean(np.argmax(logits, axis=1) == exp.dataset.y_test)
  assert acc >= 95.0
  # The history's number is a float32 mean of 0/1 values: equal to ~ulp.
  np.testing.assert_allclose(last["test_acc"], acc, rtol=8 * EPS)
  assert last["train_loss"] < 0.1 * result.history[0]["train_loss"]


def test_checkpoints_are_atomic_flax_msgpack(default_run):
  cfg, out, result = default_run
  epochs = range(cfg.train.epochs + 1)
  assert sorted(p.name for p in (out / "ckpt").iterdir()) == [
      f"epoch_{e:04d}.msgpack" for e in epochs]
  assert not [p for p in out.rglob("*") if p.suffix == ".tmp"]
  assert train.list_checkpoints(out) == list(epochs) == result.saved_epochs
  steps_per_epoch = 1437 // cfg.train.batch_size      # 1437 digits train samples
  for e in (0, 7, cfg.train.epochs):
    raw = serialization.msgpack_restore((out / "ckpt" / f"epoch_{e:04d}.msgpack").read_bytes())
    assert set(raw) == {"variables", "opt_state", "step", "epoch"}
    assert int(raw["epoch"]) == e and int(raw["step"]) == e * steps_per_epoch
  exp = pipeline.prepare(cfg)
  _assert_trees_equal(train.load_variables(out, exp.variables), result.variables)
  _assert_trees_equal(train.load_variables(out, exp.variables, epoch=0), exp.variables)
  with pytest.raises(ConfigError, match="epoch 99"):
    train.load_variables(out, exp.variables, epoch=99)


def test_history_and_trajectory_hold_every_epoch_once(default_run):
  cfg, out, result = default_run
  rows = _read_csv(out / "history.csv")
  assert list((out / "history.csv").read_text().splitlines()[0].split(",")) == list(
      train.HISTORY_FIELDS)
  assert [int(r["epoch"]) for r in rows] == list(range(cfg.train.epochs + 1))
  _assert_history_equal(rows, result.history)
  like = result.variables["params"]
  epochs, snaps = lio.read_trajectory(out / "trajectory.h5", like)
  np.testing.assert_array_equal(epochs, np.arange(cfg.train.epochs + 1))
  _assert_trees_equal(snaps[-1], like)
  _assert_trees_equal(snaps[0], pipeline.prepare(cfg).variables["params"])
  assert lconfig.load(out / "config.yaml") == cfg


# ----------------------------------------------------------------------- the seeds' lessons

@pytest.fixture(scope="session")
def regression_fits(tmp_path_factory):
  fits = {}
  for name in ("mse", "mae", "huber"):
    cfg = pipeline.resolve(str(CONFIGS / f"regression_{name}.yaml"))
    result = pipeline.run_train(cfg, tmp_path_factory.mktemp(name), log=_quiet)
    dense = result.variables["params"]["stem_dense"]
    fits[name] = float(dense["kernel"][0, 0]), float(dense["bias"][0])
  return fits, pipeline.prepare(cfg).dataset


def test_robust_losses_fit_the_true_slope_despite_outliers(regression_fits):
  fits, ds = regression_fits
  true_slope = ds.info["true_slope"]
  assert true_slope == 2.0
  x = np.asarray(ds.x_train[:, 0], np.float64)
  design = np.stack([x, np.ones_like(x)], axis=1)
  lstsq = np.linalg.lstsq(design, np.asarray(ds.y_train, np.float64), rcond=None)[0]
  # Converged: the MSE fit is the least-squares solution (observed within 1e-4).
  np.testing.assert_allclose(fits["mse"], lstsq, atol=1e-2)
  # The one-sided outliers tilt least squares (observed 2.69) ...
  assert abs(fits["mse"][0] - true_slope) >= 0.3
  # ... but not least absolute deviations nor Huber (observed 2.04 both).
  for name in ("mae", "huber"):
    assert abs(fits[name][0] - true_slope) <= 0.2, name
    assert abs(fits[name][0] - true_slope) < abs(fits["mse"][0] - true_slope) - 0.3, name


@pytest.fixture(scope="session")
def minority_recalls(tmp_path_factory):
  recalls = {}
  for name in ("bce", "focal"):
    cfg = pipeline.resolve(str(CONFIGS / f"imbalanced_{name}.yaml"))
    result = pipeline.run_train(cfg, tmp_path_factory.mktemp(name), log=_quiet)
    exp = pipeline.prepare(cfg)
    ds = exp.dataset
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
      logit = np.asarray(exp.module.apply(result.variables, x)).reshape(-1)
      positive = np.asarray(y) == 1
      recalls[name, split] = np.mean(logit[positive] > 0), int(positive.sum())
  return recalls


@pytest.mark.parametrize("split, margin", [("test", 0.2), ("train", 0.15)])
def test_focal_loss_recalls_more_of_the_minority_than_bce(minority_recalls, split, margin):
  """Observed minority recall: test 0.30 (bce) vs 0.60 (focal) of 20 positives; train 0.35
  vs 0.575 of 80. The margins leave 2 (test) and 5 (train) positives of slack."""
  (bce, n), (focal, _) = minority_recalls["bce", split], minority_recalls["focal", split]
  assert n == (20 if split == "test" else 80)
  assert focal >= bce + margin, (bce, focal)


# ----------------------------------------------------------------------- resume

def _assert_same_run(out: Path, result, ref_out: Path, ref, epochs: int):
  _assert_trees_equal(result.variables, ref.variables)
  _assert_history_equal(result.history, ref.history)
  rows = _read_csv(out / "history.csv")
  assert [int(r["epoch"]) for r in rows] == list(range(epochs + 1))   # no duplicates
  _assert_history_equal(rows, ref.history)
  like = result.variables["params"]
  got_epochs, got = lio.read_trajectory(out / "trajectory.h5", like)
  ref_epochs, want = lio.read_trajectory(ref_out / "trajectory.h5", like)
  np.testing.assert_array_equal(got_epochs, np.arange(epochs + 1))
  np.testing.assert_array_equal(ref_epochs, got_epochs)
  _assert_trees_equal(got, want)
  # Optimizer state and step too: the last checkpoints hold the same tree.
  name = f"ckpt/epoch_{epochs:04d}.msgpack"
  _assert_trees_equal(serialization.msgpack_restore((out / name).read_bytes()),
                      serialization.msgpack_restore((ref_out / name).read_bytes()))
  assert not [p for p in out.rglob("*") if p.suffix == ".tmp"]


class _Killed(Exception):
  pass


def test_interrupted_runs_resume_to_exactly_the_uninterrupted_run(resume_reference, tmp_path,
                                                                  monkeypatch):
  """Stop after k = 1 epochs (train.epochs=1, then the full count: the run's identity
  ignores train.epochs), then crash between writing epoch 3's temporary checkpoint and
  renaming it, then resume from epoch 2. Exact equality with the reference: the same
  compiled epoch on the same restored state, step counts and per-epoch keys."""
  cfg, ref_out, ref = resume_reference
  short = lconfig.apply_overrides(cfg, ["train.epochs=1"])
  first = _run(short, tmp_path, optimize=True)
  assert first.resumed_from is None and train.list_checkpoints(tmp_path) == [0, 1]

  real_replace = lio.os.replace

  def replace(src, dst):
    if Path(dst).name == "epoch_0003.msgpack":
      raise _Killed
    real_replace(src, dst)

  monkeypatch.setattr(lio.os, "replace", replace)
  with pytest.raises(_Killed):
    _run(cfg, tmp_path, optimize=True)
  monkeypatch.setattr(lio.os, "replace", real_replace)
  assert train.list_checkpoints(tmp_path) == [0, 1, 2]
  # the temporary checkpoint is removed on the way out (a SIGKILL would leave a hidden
  # ".epoch_0003.tmp-PID.msgpack", which list_checkpoints ignores)
  assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
      f"epoch_{e:04d}.msgpack" for e in (0, 1, 2)]
  assert [int(r["epoch"]) for r in _read_csv(tmp_path / "history.csv")] == [0, 1, 2]
  epochs, _ = lio.read_trajectory(tmp_path / "trajectory.h5", ref.variables["params"])
  np.testing.assert_array_equal(epochs, [0, 1, 2])

  result = _run(cfg, tmp_path, optimize=True)
  assert result.resumed_from == 2 and result.saved_epochs == [0, 1, 2, 3]
  assert "batch_stats" in result.variables
  _assert_same_run(tmp_path, result, ref_out, ref, RESUME_EPOCHS)

  # Asking for fewer epochs than the run holds is refused, not silently ignored.
  with pytest.raises(ConfigError, match=f"epoch {RESUME_EPOCHS}, past the 1 epochs"):
    _run(short, tmp_path)
  # overwrite=True trains afresh with another config.
  other = lconfig.apply_overrides(short, ["train.lr=0.02"])
  again = _run(other, tmp_path, overwrite=True, optimize=True)
  assert again.resumed_from is None and [r["epoch"] for r in again.history] == [0, 1]
  assert train.list_checkpoints(tmp_path) == [0, 1]
  assert lconfig.load(tmp_path / "config.yaml") == other
  epochs, _ = lio.read_trajectory(tmp_path / "trajectory.h5", again.variables["params"])
  np.testing.assert_array_equal(epochs, [0, 1])
  assert not _trees_close(again.variables["params"], first.variables["params"])


@pytest.mark.parametrize("override, name", [
    ("train.lr=0.5", "train.lr"), ("model.kwargs.dense=8", "model.kwargs.dense"),
    ("loss.name=multiclass_hinge", "loss.name"), ("data.seed=1", "data.seed"),
    ("train.seed=3", "train.seed"),
])
def test_a_different_config_in_a_run_dir_is_refused(resume_reference, override, name):
  cfg, out, _ = resume_reference
  before = {p.name: p.read_bytes() for p in sorted((out / "ckpt").iterdir())}
  other = lconfig.apply_overrides(cfg, [override])
  with pytest.raises(ConfigError) as err:
    pipeline.run_train(other, out, log=_quiet)
  msg = str(err.value)
  assert name in msg and "--overwrite" in msg and "\n" not in msg
  assert lconfig.load(out / "config.yaml") == cfg
  assert {p.name: p.read_bytes() for p in sorted((out / "ckpt").iterdir())} == before


# ----------------------------------------------------------------------- BatchNorm, purity

def _np_first_bn_input(x, params):
  """relu(conv(x; K) + b), the input of the first BatchNorm, in float64 NumPy ('SAME',
  cross-correlation, channels last)."""
  k = np.asarray(params["stem_conv"]["kernel"], np.float64)       # (3, 3, 1, c)
  b = np.asarray(params["stem_conv"]["bias"], np.float64)
  x = np.asarray(x, np.float64)
  n, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  z = sum(np.einsum("nhwi,io->nhwo", xp[:, i:i + h, j:j + w], k[i, j])
          for i in range(3) for j in range(3)) + b
  return np.maximum(z, 0.0)


@pytest.fixture(scope="session")
def bn_step():
  """A jitted train step of a BatchNorm CNN (adamw, l2 and l1), a state and a batch."""
  from landscape import data
  ds = data.load("digits")
  module = models.get("cnn", num_outputs=10, features=(4,), dense=8, batchnorm=True)
  variables = models.init(module, jax.random.key(0), ds.x_train[:2])
  sched = train.make_schedule("cosine", lr=0.1, epochs=2, steps_per_epoch=3)
  tx = train.make_optimizer("adamw", sched, weight_decay=1e-3)
  step = train.make_train_step(module, losses.get("cross_entropy"), tx, l2=1e-3, l1=1e-4,
                               has_bn=True)
  state = {"params": variables["params"], "opt_state": tx.init(variables["params"]),
           "step": jnp.zeros((), jnp.int32), "batch_stats": variables["batch_stats"]}
  batch = (ds.x_train[:32], ds.y_train[:32])
  return _compile(step, state, batch), state, batch


def test_train_step_updates_batchnorm_statistics_in_training_mode(bn_step):
  step, state, (x, y) = bn_step
  new, _ = step(state, (x, y))
  z = _np_first_bn_input(x, state["params"])
  mean, var = z.mean(axis=(0, 1, 2)), z.var(axis=(0, 1, 2))
  stats = new["batch_stats"]["bn_0"]
  # Flax: running = 0.9·running + 0.1·batch statistic (biased variance), from (0, 1).
  # float32 sums over 2048 values per channel: relative error ~1e-6.
  np.testing.assert_allclose(stats["mean"], 0.1 * mean, rtol=64 * EPS, atol=64 * EPS)
  np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * var, rtol=64 * EPS)
  assert int(new["step"]) == 1
  assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(new))


def test_train_step_is_pure(bn_step):
  step, state, batch = bn_step
  copy = jax.tree.map(np.array, state)
  a, b = step(state, batch), step(state, batch)
  _assert_trees_equal(a, b)
  _assert_trees_equal(state, copy)                   # the inputs are not modified
  c = step(jax.tree.map(jnp.asarray, copy), batch)   # equal inputs, fresh buffers
  _assert_trees_equal(a, c)
  assert not _trees_close(a[0]["params"], state["params"])


def test_one_epoch_of_training_changes_batchnorm_statistics(resume_reference):
  cfg, out, _ = resume_reference
  template = pipeline.prepare(cfg).variables
  before, after = (train.load_variables(out, template, epoch=e)["batch_stats"] for e in (0, 1))
  _assert_trees_equal(before, template["batch_stats"])          # mean 0, var 1 at init
  for b, a in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    assert np.all(np.isfinite(a)) and np.all(np.asarray(b) != np.asarray(a))


def _trees_close(a, b) -> bool:
  return all(np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ----------------------------------------------------------------------- schedules

def _expected_lr(name, t, *, lr, epochs, spe, step_epochs=10, gamma=0.1, warmup=0):
  """The documented formulas, by hand (float64)."""
  w, total = warmup * spe, epochs * spe
  if t < w:
    return lr * t / w
  u = t - w
  if name == "constant":
    return lr
  if name == "step":
    bounds = [e * spe for e in range(step_epochs, max(epochs, step_epochs + 1), step_epochs)]
    return lr * gamma ** sum(b <= u for b in bounds)
  span = max(1, total - w)
  return lr * 0.5 * (1 + math.cos(math.pi * min(u, span) / span))


@pytest.mark.parametrize("name, kw, steps", [
    ("constant", {}, [0, 1, 57, 150, 10_000]),
    ("step", {"step_epochs": 10, "gamma": 0.1}, [0, 49, 50, 99, 100, 149, 150, 500]),
    ("step", {"step_epochs": 7, "gamma": 0.5}, [0, 34, 35, 69, 70, 104, 105, 149]),
    ("cosine", {}, [0, 1, 37, 75, 112, 149, 150, 300]),
    ("cosine", {"warmup": 2}, [0, 1, 5, 9, 10, 11, 80, 149, 150]),
    ("step", {"warmup": 3, "step_epochs": 10, "gamma": 0.1}, [0, 7, 15, 64, 65, 115, 150]),
    ("constant", {"warmup": 1}, [0, 2, 4, 5, 6]),
])
def test_schedule_values_equal_the_formulas(name, kw, steps):
  lr, epochs, spe = 0.3, 30, 5
  sched = train.make_schedule(name, lr=lr, epochs=epochs, steps_per_epoch=spe,
                              step_epochs=kw.get("step_epochs", 10),
                              step_gamma=kw.get("gamma", 0.1),
                              warmup_epochs=kw.get("warmup", 0))
  for t in steps:
    want = _expected_lr(name, t, lr=lr, epochs=epochs, spe=spe, **kw)
    np.testing.assert_allclose(float(sched(t)), want, rtol=4 * EPS, atol=4 * EPS * lr,
                               err_msg=f"step {t}")


def test_schedule_spot_values():
  """A few values worked out by hand, independent of the helper above."""
  cos = train.make_schedule("cosine", lr=0.1, epochs=10, steps_per_epoch=20)
  assert [round(float(cos(t)), 6) for t in (0, 100, 200)] == [0.1, 0.05, 0.0]
  step = train.make_schedule("step", lr=1.0, epochs=30, steps_per_epoch=2, step_epochs=10,
                             step_gamma=0.5)
  assert [float(step(t)) for t in (19, 20, 39, 40, 59)] == [1.0, 0.5, 0.5, 0.25, 0.25]
  warm = train.make_schedule("cosine", lr=0.1, epochs=10, steps_per_epoch=20, warmup_epochs=2)
  assert [round(float(warm(t)), 6) for t in (0, 20, 40, 120, 200)] == [0.0, 0.05, 0.1, 0.05, 0.0]


# ----------------------------------------------------------------------- optimizers

def _np_optimizer(name, params, grads, lrs, *, momentum=0.9, nesterov=False, b1=0.9,
                  b2=0.999, wd=0.0, eps=1e-8):
  """SGD (torch.optim.SGD's momentum/nesterov), Adam and AdamW by hand, float64."""
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  v = {k: np.zeros_like(a) for k, a in p.items()}
  m = {k: np.zeros_like(a) for k, a in p.items()}
  for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
    for k in p:
      gk = np.asarray(g[k], np.float64)
      if name != "adamw":
        gk = gk + wd * p[k]                                   # coupled L2
      if name == "sgd":
        if momentum:
          v[k] = gk + momentum * v[k]
          d = gk + momentum * v[k] if nesterov else v[k]
        else:
          d = gk
        p[k] = p[k] - lr * d
      else:
        m[k] = b1 * m[k] + (1 - b1) * gk
        v[k] = b2 * v[k] + (1 - b2) * gk ** 2
        d = (m[k] / (1 - b1 ** t)) / (np.sqrt(v[k] / (1 - b2 ** t)) + eps)
        if name == "adamw":
          d = d + wd * p[k]                                   # decoupled decay
        p[k] = p[k] - lr * d
  return p


@pytest.mark.parametrize("name, kw", [
    ("sgd", {"momentum": 0.0}),
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("sgd", {"momentum": 0.5, "wd": 0.1}),
    ("adam", {}),
    ("adam", {"b1": 0.5, "b2": 0.9, "wd": 0.05}),
    ("adamw", {"wd": 0.1}),
    ("adamw", {"wd": 0.0}),
])
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_optimizer_updates_equal_the_formulas(name, kw, schedule):
  rng = np.random.default_rng(0)
  params = {"w": rng.standard_normal((3, 2)).astype(np.float32),
            "b": rng.standard_normal(2).astype(np.float32)}
  grads = [{k: rng.standard_normal(a.shape).astype(np.float32) for k, a in params.items()}
           for _ in range(5)]
  lr, epochs, spe = 0.05, 2, 3
  sched = train.make_schedule(schedule, lr=lr, epochs=epochs, steps_per_epoch=spe)
  tx = train.make_optimizer(name, sched, momentum=kw.get("momentum", 0.9),
                            nesterov=kw.get("nesterov", False), b1=kw.get("b1", 0.9),
                            b2=kw.get("b2", 0.999), weight_decay=kw.get("wd", 0.0))
  p, state = jax.tree.map(jnp.asarray, params), tx.init(params)
  for g in grads:
    updates, state = tx.update(g, state, p)
    p = optax.apply_updates(p, updates)
  lrs = [_expected_lr(schedule, t, lr=lr, epochs=epochs, spe=spe) for t in range(len(grads))]
  want = _np_optimizer(name, params, grads, lrs, **kw)
  # float32 arithmetic over 5 steps of O(1) values; Adam's normalized steps amplify the
  # rounding of m/sqrt(v) where v is small: a few hundred ulps.
  for k in params:
    np.testing.assert_allclose(np.asarray(p[k]), want[k], rtol=256 * EPS, atol=256 * EPS)


@pytest.mark.parametrize("call, valid", [
    (lambda: train.make_optimizer("rmsprop", optax.constant_schedule(0.1)),
     train.OPTIMIZERS),
    (lambda: train.make_schedule("linear", lr=0.1, epochs=1, steps_per_epoch=1),
     train.SCHEDULES),
])
def test_unknown_optimizer_or_schedule_lists_the_valid_names(call, valid):
  with pytest.raises(ConfigError) as err:
    call()
  msg = str(err.value)
  assert "\n" not in msg and ("rmsprop" in msg or "linear" in msg)
  assert all(v in msg for v in valid)


@pytest.mark.parametrize("call, needle", [
    (lambda: train.make_schedule("constant", lr=0.0, epochs=1, steps_per_epoch=1), "0.0"),
    (lambda: train.make_schedule("cosine", lr=-1.0, epochs=1, steps_per_epoch=1), "-1.0"),
    (lambda: train.make_schedule("step", lr=0.1, epochs=5, steps_per_epoch=1,
                                 step_gamma=0.0), "0.0"),
    (lambda: train.make_schedule("step", lr=0.1, epochs=5, steps_per_epoch=1,
                                 step_epochs=0), "step_epochs"),
    (lambda: train.make_optimizer("adam", optax.constant_schedule(0.1), weight_decay=-0.1),
     "-0.1"),
])
def test_bad_hyperparameters_raise_one_line_config_errors(call, needle):
  with pytest.raises(ConfigError) as err:
    call()
  assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("kw, needle", [
    ({"epochs": -1}, "got -1, 4, 1"), ({"batch_size": 0}, "got 1, 0, 1"),
    ({"save_every": 0}, "got 1, 4, 0"), ({"batch_size": 1000}, "batch_size 1000 exceeds"),
])
def test_bad_train_arguments_raise_config_errors(kw, needle):
  x = np.zeros((8, 3), np.float32)
  y = np.zeros(8, np.float32)
  module = models.get("linear", num_outputs=1)
  variables = models.init(module, jax.random.key(0), x)
  args = {"epochs": 1, "batch_size": 4, "save_every": 1, **kw}
  with pytest.raises(ConfigError, match=needle):
    train.train(module, variables, losses.get("mse"), task="regression", x_train=x,
                y_train=y, x_test=x, y_test=y, tx=optax.sgd(0.1), log=_quiet, **args)
