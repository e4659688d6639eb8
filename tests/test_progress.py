"""Progress reporting: log lines off a terminal, tqdm on one, ticks from compiled loops."""

import io
import re
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from landscape import _progress, critical, hessian, losses, surface, train


@pytest.fixture
def every_update(monkeypatch):
  """A log line at every update (no 10 s interval, no 1 s grace)."""
  monkeypatch.setattr(_progress, "INTERVAL", 0.0)
  monkeypatch.setattr(_progress, "FIRST", 0.0)


@pytest.fixture
def ticks(monkeypatch):
  """Record every tick that reaches a Progress: (desc, value, add)."""
  seen = []
  original = _progress.Progress._tick

  def spy(self, value, add, postfix):
    seen.append((self.desc, value, add))
    original(self, value, add, postfix)

  monkeypatch.setattr(_progress.Progress, "_tick", spy)
  return seen


def _problem():
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  params = {"w1": jax.random.normal(k1, (4, 5)) / 2, "w2": jax.random.normal(k2, (5, 1)) / 2}
  x = jax.random.normal(k3, (32, 4))
  y = jnp.sin(x[:, :1])

  def loss(p, batch):
    xb, yb = batch
    return jnp.mean((jnp.tanh(xb @ p["w1"]) @ p["w2"] - yb) ** 2)

  return loss, params, (x, y)


# ----------------------------------------------------------------------------- Progress

def test_log_lines_have_count_rate_and_eta(every_update):
  lines = []
  with _progress.Progress(10, "points", "demo", log=lines.append) as p:
    for _ in range(5):
      time.sleep(0.002)
      p.update(2, extra=1.5)
  assert len(lines) == 5
  assert re.fullmatch(r"demo: 2/10 points, [\d.e+]+ points/s, ETA [\d.]+s, extra 1\.5", lines[0])
  assert lines[-1].startswith("demo: 10/10 points, ") and " in " in lines[-1]


def test_lines_are_time_based_and_the_end_is_logged(monkeypatch):
  now = [100.0]
  monkeypatch.setattr(_progress.time, "monotonic", lambda: now[0])
  monkeypatch.setattr(_progress, "FIRST", 1.0)
  lines = []
  with _progress.Progress(31 * 31, "points", "curvature map", log=lines.append, interval=1e6,
                          label=lambda n, t: f"rows {n // 31}/31 ({n}/{t} points)") as p:
    p.interval = 10.0           # the heartbeat thread sleeps 1e6 s; lines come from updates
    p.update(31)                # 0 s after the start: no line yet
    now[0] += 2.0
    p.update(31)                # first line: 2 s after the start
    now[0] += 5.0
    p.update(31)                # 5 s later: none
    now[0] += 6.0
    p.update(31)                # 11 s after the last line: one
    now[0] += 1.0
    p.update(31)                # none; the end line at close
  assert len(lines) == 3, lines
  assert lines[0] == "curvature map: rows 2/31 (62/961 points), 15.5 points/s, ETA 58s"
  assert lines[1].startswith("curvature map: rows 4/31 (124/961 points), 7.15 points/s, ETA ")
  assert lines[2] == "curvature map: rows 5/31 (155/961 points), 8.86 points/s, in 14s"


def test_a_quick_step_logs_nothing_and_a_heartbeat_covers_a_long_one(monkeypatch):
  lines = []
  with _progress.Progress(5, "steps", "quick", log=lines.append) as p:
    p.update(5)
  assert lines == []                           # done within FIRST seconds
  monkeypatch.setattr(_progress, "FIRST", 0.0)
  with _progress.Progress(5, "steps", "slow", log=lines.append, interval=0.05):
    time.sleep(0.2)                            # no update at all: the heartbeat logs
  assert lines and all(re.fullmatch(r"slow: 0/5 steps, [\d.]+s elapsed", s) for s in lines)


def test_tqdm_bar_on_a_terminal(monkeypatch, every_update):
  class Tty(io.StringIO):
    def isatty(self):
      return True

  err = Tty()
  monkeypatch.setattr(sys, "stderr", err)
  lines = []
  with _progress.Progress(4, "points", "bar", log=lines.append,
                          label=lambda n, t: f"rows {n // 2}/2") as p:
    p.update(2)
    p.update(2)
  assert lines == []                           # the bar replaces the log lines
  text = err.getvalue()
  assert "bar" in text and "4/4" in text and "rows 2/2" in text


def test_warnings_go_to_stderr(capsys):
  _progress.warn("training loss is nan at epoch 3; lower train.lr")
  out, err = capsys.readouterr()
  assert out == ""
  assert err == "landscape: warning: training loss is nan at epoch 3; lower train.lr\n"


# ------------------------------------------------------------------------------ ticks

def test_tick_without_a_reporter_is_a_no_op(every_update):
  calls = []

  @jax.jit
  def loop(x):
    def body(j, c):
      _progress.tick(j + 1, after=c)
      return c * 2.0
    return jax.lax.fori_loop(0, 3, body, x)

  assert float(loop(1.0)) == 8.0               # nothing open
  with _progress.Progress(3, "steps", "not ticking", log=calls.append):
    assert float(loop(1.0)) == 8.0             # open, but without ticks=True
  jax.effects_barrier()
  assert calls == [] and _progress._steps == []


def test_ticks_under_vmap_fire_once_per_step_with_unbatched_operands(every_update, ticks):
  def loop(x):
    def body(j, c):
      _progress.tick(j + 1)                    # the loop counter is not batched
      return c * 2.0
    return jax.lax.fori_loop(0, 4, body, x)

  with _progress.Progress(4, "steps", "vmap", log=lambda s: None, ticks=True):
    jax.jit(jax.vmap(loop))(jnp.ones(3))
  assert [v for _, v, _ in ticks] == [1, 2, 3, 4]


def test_lanczos_steps_are_ticked_once_each(every_update, ticks):
  loss, params, data = _problem()
  lines = []
  with _progress.reporting(lines.append):
    e = hessian.eigenvalues(loss, params, data, k=1, key=jax.random.key(1), num_steps=20,
                            tol=1e-3)
    d = hessian.density(loss, params, data, key=jax.random.key(2), num_runs=3, num_steps=6)
    hessian.trace(loss, params, data, key=jax.random.key(3), num_samples=10, probe_chunk=3)
  # Lanczos runs on the host (linalg.driven_lanczos): a Progress update per step, no
  # ticks from compiled code; with every_update, a line per step.
  assert not [t for t in ticks if t[0].startswith(("Hessian eigenvalues", "spectral density"))]
  eig = [int(m.group(1)) for s in lines
         if (m := re.match(r"Hessian eigenvalues \(largest, Lanczos\): (\d+) of at most 20", s))]
  assert eig == list(range(1, e.num_hvps + 1)) and e.num_hvps < 20
  slq = [int(m.group(1)) for s in lines
         if (m := re.match(r"spectral density \(SLQ, 3 runs\): (\d+)/18 HVPs", s))]
  assert slq == list(range(1, 19)) and d.num_hvps == 18      # one line per step of 3 runs
  tr = [(v, add) for desc, v, add in ticks if desc.startswith("Hessian trace")]
  assert tr == [(3, True)] * 3 + [(1, True)]
  assert any(f"{e.num_hvps} of at most 20 steps" in s for s in lines)
  assert any(s.startswith("Hessian trace (hutchinson): 10/10 HVPs") for s in lines)


def test_library_calls_are_quiet_outside_a_reporting_scope(every_update, ticks, capsys):
  loss, params, data = _problem()
  hessian.eigenvalues(loss, params, data, k=1, key=jax.random.key(1), num_steps=8)
  surface.evaluate(loss, params, [params], np.linspace(-1, 1, 3), data=data)
  assert ticks == [] and capsys.readouterr().out == ""


# ------------------------------------------------------------------ sweeps and searches

def test_sweep_reports_rows_and_the_curvature_map_only_rows(every_update, ticks, capsys):
  loss, params, data = _problem()
  xs, ys = np.linspace(-1, 1, 3), np.linspace(-1, 1, 2)
  fn = surface.point_loss_fn(loss, params, [params, params])
  surface.sweep(fn, xs, ys, data, chunk_size=3, progress=True, desc="surface")
  out = capsys.readouterr().out.splitlines()
  assert [s.split(",")[0] for s in out] == ["surface: rows 1/2 (3/6 points)",
                                            "surface: rows 2/2 (6/6 points)"]
  assert "points/s" in out[0] and "ETA" in out[0]
  lines = []
  with _progress.reporting(lines.append):
    hessian.curvature_map(loss, params, [params, params], xs, ys, data, key=jax.random.key(0),
                          num_steps=4, chunk_size=2)
  assert [s.split(" (")[0] for s in lines] == [f"curvature map: rows {r}/2" for r in (0, 1, 2)]
  assert ticks == []                           # the per-point Lanczos runs do not tick


def test_scan_reports_each_start_and_its_steps(every_update):
  loss, params, data = _problem()
  lines = []
  starts = [params, jax.tree.map(lambda a: 1.1 * a, params)]
  with _progress.reporting(lines.append):
    critical.scan(loss, starts, data, max_steps=3, labels=["the centre", "grid saddle"],
                  keep_unconverged=True)
  assert lines[0] == "search 1/2 from the centre"
  steps = [s for s in lines if s.startswith("search 1/2: ") and "of at most 3 steps" in s]
  assert [s.split(",")[0] for s in steps] == [f"search 1/2: {i} of at most 3 steps"
                                              for i in (1, 2, 3)]
  assert "grad_norm" in steps[0]
  assert any(re.match(r"search 1/2: (not )?converged after 3 steps, \|grad\| ", s) for s in lines)
  assert "search 2/2 from grid saddle" in lines


# ------------------------------------------------------------------------------ training

class _Tiny(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(3)(nn.tanh(nn.Dense(6)(x)))


def _train(tx, log, epochs=2):
  rng = np.random.RandomState(0)
  x = rng.randn(48, 4).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32)
  module = _Tiny()
  variables = module.init(jax.random.key(0), x[:2])
  return train.train(module, variables, losses.get("cross_entropy"), task="multiclass",
                     x_train=x, y_train=y, x_test=x, y_test=y, tx=tx, epochs=epochs,
                     batch_size=16, log=log)


def test_training_reports_steps_within_epochs(every_update):
  lines = []
  _train(optax.sgd(0.1), lines.append)
  within = [s for s in lines if "(step " in s]
  assert [s.split(",")[0] for s in within] == [f"training: epoch {e}/2 (step {k}/3)"
                                               for e in (1, 2) for k in (1, 2)]
  assert all("loss " in s for s in within)
  # the first tick comes after the epoch's compile: elapsed time, no rate; then rate and ETA
  assert "s elapsed" in within[0] and "steps/s" not in within[0]
  assert all("steps/s" in s and "ETA" in s for s in within[1:])
  ends = [s for s in lines if "| test loss" in s]
  assert [s.split(",")[0] for s in ends] == ["training: epoch 1/2", "training: epoch 2/2"]


def test_training_warns_on_stderr(capsys):
  _train(optax.sgd(jnp.inf), print, epochs=1)
  out, err = capsys.readouterr()
  assert "landscape: warning: training loss is nan at epoch 1; lower train.lr" in err
  assert "warning" not in out
