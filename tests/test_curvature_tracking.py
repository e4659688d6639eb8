"""Hessian eigenvalues tracked during training (``train.curvature``, issue 14 part 1).

Warm-started probes against cold Lanczos runs and the dense Hessian (float64), fewer HVPs
warm than cold, progressive sharpening up to 2/η under full-batch gradient descent, the
training result unchanged by tracking (bitwise, also with probes between optimizer steps),
exact resume, the CLI end to end (history columns, trajectory datasets, the sharpness
figure) and the one-line refusals of bad settings.
"""

from __future__ import annotations

import csv
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from cli_helpers import assert_user_error, cli, ok
from landscape import data, io, losses, models, objective, train

TOL = 1e-4   # the probes' relative Ritz-residual tolerance in the float64 comparisons


def _quiet(_: str) -> None:
  pass


def _regression(n: int = 64, d: int = 5, dtype=jnp.float32):
  x = jax.random.normal(jax.random.key(0), (n, d), dtype)
  y = jnp.sin(x @ jnp.linspace(-1.0, 1.0, d, dtype=dtype))
  return x, y


def _mlp(x, widths=(6,)):
  module = models.get("mlp", num_outputs=1, widths=widths, activation="tanh")
  variables = models.init(module, jax.random.key(1), x)
  return module, jax.tree.map(lambda a: a.astype(x.dtype), variables)


def _train(module, variables, x, y, *, epochs, batch_size, lr=0.05, momentum=0.0,
           tracking=None, run_dir=None, l2=0.0):
  steps = x.shape[0] // batch_size
  sched = train.make_schedule("constant", lr=lr, epochs=epochs, steps_per_epoch=steps)
  tx = train.make_optimizer("sgd", sched, momentum=momentum)
  if tracking is not None:
    tracking = train.CurvatureTracking(**tracking, schedule=sched, optimizer="sgd",
                                       momentum=momentum)
  return train.train(module, variables, losses.get("mse"), task="regression", x_train=x,
                     y_train=y, x_test=x[:8], y_test=y[:8], tx=tx, epochs=epochs,
                     batch_size=batch_size, curvature=tracking, run_dir=run_dir, l2=l2,
                     log=_quiet)


def _assert_same_training(a, b):
  for p, q in zip(jax.tree.leaves(a.variables), jax.tree.leaves(b.variables)):
    np.testing.assert_array_equal(np.asarray(p), np.asarray(q))
  for ra, rb in zip(a.history, b.history):
    for key in train.HISTORY_FIELDS:
      np.testing.assert_array_equal(ra[key], rb[key])


# ------------------------------------------------------------------- the eigenvalues


def test_warm_tracking_equals_cold_runs_and_the_dense_hessian_with_fewer_hvps(tmp_path):
  with jax.enable_x64(True):
    x, y = _regression(dtype=jnp.float64)
    module, variables = _mlp(x)
    spec = {"every": 1, "which": "both", "tol": TOL, "num_steps": 43, "n_samples": 48,
            "batch_size": 16}
    warm = _train(module, variables, x, y, epochs=8, batch_size=16, l2=1e-3,
                  tracking=spec, run_dir=tmp_path / "warm")
    cold = _train(module, variables, x, y, epochs=8, batch_size=16, l2=1e-3,
                  tracking={**spec, "warm_start": False})
    w, c = warm.curvature, cold.curvature
    np.testing.assert_array_equal(w["step"], np.arange(9) * 4)
    # the dense Hessian of the objective (mean MSE + l2/2 |θ|², the first 48 samples)
    # at every probe, read back from the trajectory
    _, snaps = io.read_trajectory(tmp_path / "warm" / "trajectory.h5", variables["params"])
    obj = objective.build(module, variables, losses.get("mse"), task="regression", l2=1e-3)
    for i, params in enumerate(snaps):
      flat, unravel = ravel_pytree(params)
      h = jax.hessian(lambda f: obj.loss_fn(unravel(f), (x[:48], y[:48])))(flat)
      lam = np.linalg.eigvalsh(np.asarray(h))
      radius = np.max(np.abs(lam))
      # an extreme Ritz value lies within its residual (<= TOL·max|θ|) of an eigenvalue:
      # the extreme one, once Lanczos has found it
      for got in (w, c):
        assert abs(got["lambda_max"][i] - lam[-1]) <= TOL * radius, (i, got["lambda_max"][i])
        assert abs(got["lambda_min"][i] - lam[0]) <= TOL * radius, (i, got["lambda_min"][i])
    np.testing.assert_allclose(w["lambda_max"], c["lambda_max"], rtol=0,
                               atol=2 * TOL * np.max(np.abs(c["lambda_max"])))
    assert w["probe_hvps"][0] == c["probe_hvps"][0]        # the first probe starts cold
    ratio = w["probe_hvps"][1:].sum() / c["probe_hvps"][1:].sum()
    print(f"HVPs per probe: warm {w['probe_hvps'][1:].mean():.1f}, cold "
          f"{c['probe_hvps'][1:].mean():.1f}, ratio {ratio:.2f}")
    assert ratio < 1
    # the history rows carry the probe of their epoch
    np.testing.assert_array_equal([r["lambda_max"] for r in warm.history], w["lambda_max"])
    np.testing.assert_array_equal([r["probe_hvps"] for r in warm.history], w["probe_hvps"])


def test_tracking_leaves_the_training_result_unchanged():
  x, y = _regression()
  module, variables = _mlp(x)
  plain = _train(module, variables, x, y, epochs=3, batch_size=16, momentum=0.9)
  assert plain.curvature is None
  by_epoch = _train(module, variables, x, y, epochs=3, batch_size=16, momentum=0.9,
                    tracking={"every": 2, "which": "largest", "n_samples": None})
  # probes every 3 optimizer steps: the 4-step epochs run in segments split at them
  by_step = _train(module, variables, x, y, epochs=3, batch_size=16, momentum=0.9,
                   tracking={"every": 3, "unit": "steps", "which": "smallest",
                             "n_samples": 40})
  _assert_same_training(plain, by_epoch)
  _assert_same_training(plain, by_step)
  np.testing.assert_array_equal(by_epoch.curvature["step"], [0, 8])
  np.testing.assert_array_equal(by_step.curvature["step"], [0, 3, 6, 9, 12])
  assert np.isnan(by_epoch.curvature["lambda_min"]).all()
  assert np.isnan(by_step.curvature["lambda_max"]).all()
  np.testing.assert_allclose(by_step.curvature["lr"], 0.05)
  # a history row holds its epoch's last probe, blank (NaN) without one
  assert np.isnan(by_epoch.history[1]["lambda_max"]) and by_epoch.history[2]["probe_hvps"] > 0
  assert [r["lambda_min"] for r in by_step.history] == [
      by_step.curvature["lambda_min"][i] for i in (0, 1, 2, 4)]


def test_progressive_sharpening_up_to_the_edge_of_stability():
  """Full-batch GD on a digits regression (MSE, tanh MLP 32): λ_max rises from its initial
  value and, at η = 0.04, reaches 2/η = 50 and hovers there; at η = 0.01 (2/η = 200) it
  stays well below, which the same band check refuses."""
  ds = data.load("digits", n_train=200, n_test=20)
  x = np.asarray(ds.x_train, np.float32)
  y = ((np.asarray(ds.y_train, np.float32) - 4.5) / 2.87).astype(np.float32)
  module, variables = _mlp(jnp.asarray(x), widths=(32,))
  spec = {"every": 5, "unit": "steps", "which": "largest", "n_samples": None,
          "batch_size": None, "tol": 1e-3}
  ratios = {}
  for lr in (0.04, 0.01):
    result = _train(module, variables, x, y, epochs=300, batch_size=200, lr=lr,
                    tracking=spec)
    lam = result.curvature["lambda_max"]
    assert np.isfinite(lam).all()
    assert lam.max() >= 1.5 * lam[0], (lr, lam[0], lam.max())   # progressive sharpening
    ratios[lr] = float(np.mean(lam[-len(lam) // 4:]) * lr / 2)
  print(f"mean λ_max·η/2 over the last quarter: {ratios}")
  assert 0.8 <= ratios[0.04] <= 1.25          # at the edge of stability
  assert not 0.8 <= ratios[0.01] <= 1.25      # still sharpening, far below 2/η


# ------------------------------------------------------------------------ the CLI

TINY = ["--set", "data.n_train=120", "--set", "data.n_test=40", "--set", "model.name=mlp",
        "--set", "model.kwargs={widths: [8]}", "--set", "train.batch_size=40",
        "--set", "train.schedule=constant", "--set", "train.curvature.n_samples=60"]


def _history(path: Path) -> list[dict[str, str]]:
  with path.open() as f:
    return list(csv.DictReader(f))


def test_cli_train_tracks_curvature_resumes_exactly_and_plots_sharpness(tmp_path):
  run = tmp_path / "run"
  ok("train", "--out", run, *TINY, "--set", "train.epochs=3",
     "--set", "train.curvature.every=2", "--set", "train.curvature.unit=steps")
  rows = _history(run / "history.csv")
  assert list(rows[0])[-3:] == ["lambda_max", "lambda_min", "probe_hvps"]
  # 3 steps per epoch, probes at steps 0, 2, 4, 6, 8: every epoch has one
  assert all(r["lambda_max"] and r["probe_hvps"] for r in rows)
  curv = io.read_trajectory_group(run / "trajectory.h5", "curvature")
  assert curv is not None
  arrays, attrs = curv
  np.testing.assert_array_equal(arrays["step"], [0, 2, 4, 6, 8])
  assert {"lambda_max", "lambda_min", "probe_hvps", "lr", "epoch"} <= set(arrays)
  # every probe stores its Ritz residuals; a converged one is within tol of the radius
  radius = np.maximum(np.abs(arrays["largest"][:, 0]), np.abs(arrays["smallest"][:, 0]))
  for end in ("largest_residual", "smallest_residual"):
    r = arrays[end][:, 0]
    assert np.all(np.isfinite(r))
    done = arrays["probe_hvps"] < attrs["num_steps"]
    assert np.all(r[done] <= attrs["tol"] * radius[done] * (1 + 1e-6) + 1e-12)
  assert attrs["optimizer"] == "adam" and attrs["unit"] == "steps"
  # a run stopped after 2 epochs and resumed gives the same tracked values, bitwise
  part = tmp_path / "part"
  ok("train", "--out", part, *TINY, "--set", "train.epochs=2",
     "--set", "train.curvature.every=2", "--set", "train.curvature.unit=steps")
  ok("train", "--out", part, *TINY, "--set", "train.epochs=3",
     "--set", "train.curvature.every=2", "--set", "train.curvature.unit=steps")
  resumed = io.read_trajectory_group(part / "trajectory.h5", "curvature")[0]
  for key in ("step", "lambda_max", "lambda_min", "probe_hvps"):
    np.testing.assert_array_equal(resumed[key], arrays[key])
  assert _history(part / "history.csv") == rows
  # the sharpness figure of the run directory (its trajectory.h5)
  out = ok("plot", run, "--kind", "sharpness", "--format", "png")
  assert "sharpness" in out
  assert (run / "figures" / "trajectory_sharpness.png").stat().st_size > 1000
  # `landscape info` reads the trajectory's curvature
  text = ok("info", run / "trajectory.h5")
  assert "5 probes, steps 0..8 (every 2 steps" in text
  assert f"first {arrays['lambda_max'][0]:.5g}" in text and "per later probe" in text
  assert "largest Ritz residual" in text


@pytest.mark.parametrize("extra,mentions", [
    (["train.curvature.every=5"], ["train.curvature.every", "5", "2 epochs"]),
    (["train.curvature.every=7", "train.curvature.unit=steps"],
     ["train.curvature.every", "7", "6 steps"]),
    (["train.curvature.every=1", "train.curvature.n_samples=500"],
     ["train.curvature.n_samples", "500", "120"]),
    (["train.curvature.every=1", "train.curvature.which=top"],
     ["train.curvature.which", "'top'", "largest"]),
    (["train.curvature.every=1", "train.curvature.unit=batches"],
     ["train.curvature.unit", "'batches'", "steps"]),
    (["train.curvature.every=1", "train.curvature.k=0"], ["train.curvature.k", "0"]),
], ids=["every_epochs", "every_steps", "n_samples", "which", "unit", "k"])
def test_cli_refuses_bad_curvature_settings_in_one_line(tmp_path, extra, mentions):
  sets = [a for item in extra for a in ("--set", item)]
  out = tmp_path / "run"
  rc, _, err = cli("train", "--out", out, *TINY, "--set", "train.epochs=2", *sets)
  assert_user_error(rc, err, *mentions)
  assert not out.exists()   # refused before anything is written


def test_sharpness_threshold_and_adam_note(tmp_path):
  from landscape import plotting
  from matplotlib.figure import Figure
  lr = np.array([0.1, 0.1, 0.05])
  np.testing.assert_allclose(plotting.stability_threshold(lr, "sgd"), [20, 20, 40])
  np.testing.assert_allclose(plotting.stability_threshold(lr, "sgd", 0.9), [38, 38, 76])
  assert plotting.stability_threshold(lr, "adam") is None
  res = io.Result(path="r", attrs={}, xs=np.zeros(0), ys=None, fields={}, done={},
                  groups={"curvature": {"step": np.arange(3), "lambda_max": np.ones(3),
                                        "lr": lr}},
                  group_attrs={"curvature": {"optimizer": "sgd", "momentum": 0.9}})
  assert plotting.kinds_supported(res) == ["sharpness"]
  art = plotting.plot_sharpness(Figure().add_subplot(), res)
  np.testing.assert_allclose(art["threshold"].get_ydata(), [38, 38, 76])
  res.group_attrs["curvature"] = {"optimizer": "adamw"}
  art = plotting.plot_sharpness(Figure().add_subplot(), res)
  assert art["threshold"] is None and "preconditioned" in art["note"].get_text()
