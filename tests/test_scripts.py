"""End-to-end runs of the paper-figure drivers in scripts/ at their --tiny size.

Each test runs a driver as a user does (``python scripts/NAME.py --tiny --out TMP``, a
subprocess on the CPU), then checks that its figures exist and that the numbers it stored
agree with what they claim: the surface at the origin is the trained loss, the curvature
and critical-point groups are consistent, the seeds' lab shows the effects it is about.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from landscape import io, plotting

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The surface at the origin and the history's train loss are float32 means of the same
# per-sample losses, summed in different batch orders: they agree to a few ulps times
# the number of summands (<= 512 here), far inside 100 float32 eps.
RTOL32 = 100 * np.finfo(np.float32).eps


def run_script(name: str, out: pathlib.Path, *args: str) -> str:
  """Run ``scripts/NAME.py --tiny --out OUT ARGS``; its stdout (the test fails on exit != 0)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
  proc = subprocess.run([sys.executable, str(ROOT / "scripts" / f"{name}.py"), "--tiny",
                         "--out", str(out), *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
  return proc.stdout


def assert_figures(out: pathlib.Path, *stems: str) -> None:
  for stem in stems:
    for fmt in ("pdf", "png"):
      path = out / f"{stem}.{fmt}"
      assert path.is_file() and path.stat().st_size > 1000, path


def history_train_loss(run_dir: pathlib.Path) -> float:
  lines = (run_dir / "history.csv").read_text().strip().splitlines()
  header, last = lines[0].split(","), lines[-1].split(",")
  return float(last[header.index("train_loss")])


def value_at_origin(result: io.Result, field: str = "train_loss") -> float:
  i = int(np.flatnonzero(result.xs == 0.0)[0])
  if result.ys is None:
    return float(result.fields[field][i])
  return float(result.fields[field][int(np.flatnonzero(result.ys == 0.0)[0]), i])


@pytest.mark.script
def test_fig_skip_vs_noskip(tmp_path):
  from landscape import grid
  stdout = run_script("fig_skip_vs_noskip", tmp_path)
  assert_figures(tmp_path, "contours", "eig_ratio")
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["skip"]["title"] == "ResNet-8"
  assert summary["noskip"]["title"] == "ResNet-8-noshort"
  for variant in ("skip", "noskip"):
    res = io.load(tmp_path / variant / "landscape_seed0.h5")
    assert res.fields["train_loss"].shape == (5, 5) and res.done["done"].all()
    np.testing.assert_allclose(value_at_origin(res), history_train_loss(tmp_path / variant),
                               rtol=RTOL32)
    assert summary[variant]["surface_at_origin"] == pytest.approx(value_at_origin(res))
    # the curvature map covers the grid; Ritz values are ordered at every point
    lmax, lmin = res.fields["max_eig"], res.fields["min_eig"]
    assert res.done["eig_done"].all() and np.all(np.isfinite(lmax)) and np.all(lmax >= lmin)
    hess = res.groups["hessian"]
    assert hess["eigenvalues_largest"][0] >= hess["eigenvalues_smallest"][0]
    assert summary[variant]["lambda_max"] == pytest.approx(float(hess["eigenvalues_largest"][0]))
    assert {"contour", "eig_ratio"} <= set(plotting.kinds_supported(res))  # `landscape plot`
    # the non-convexity metrics per direction seed (--tiny: one) and across them
    s = summary[variant]
    assert s["seeds"] == s["map_seeds"] == [0] and len(s["per_seed"]) == 1
    want = grid.nonconvexity(res).as_dict()
    for key in ("ratio_fraction", "indefinite_fraction", "minima", "saddles", "num_converged",
                "num_map_points"):
      assert s["per_seed"][0][key] == want[key]
      stats = s["metrics"][key]
      assert set(stats) == {"mean", "std", "min", "max"}
      if want[key] is not None:
        assert stats["mean"] == pytest.approx(want[key]) and stats["std"] == 0
    assert s["metrics"]["num_map_points"]["mean"] == 9   # the central 3x3 of the 5x5 grid
    assert s["metrics"]["loss_at_centre"]["mean"] == pytest.approx(value_at_origin(res))
  table = stdout.split("summary ->")[-1]   # the table printed after the summary
  assert "indefinite_fraction" in table and "ResNet-8-noshort" in table


@pytest.mark.script
def test_fig_loss_choice(tmp_path):
  stdout = run_script("fig_loss_choice", tmp_path)
  assert_figures(tmp_path, "loss_functions", "regression", "imbalanced")
  s = json.loads((tmp_path / "summary.json").read_text())
  # the one-sided outliers tilt the MSE fit; MAE and Huber stay near the true slope 2
  assert s["reg_mse"]["w"] > s["reg_huber"]["w"] + 0.3
  assert s["reg_mse"]["w"] > s["reg_mae"]["w"] + 0.3
  assert abs(s["reg_mae"]["w"] - 2.0) < 0.2 and abs(s["reg_huber"]["w"] - 2.0) < 0.2
  # focal loss recalls more of the 5% minority class than BCE
  assert s["imb_focal"]["recall"] > s["imb_bce"]["recall"]
  assert "focal recall" in stdout
  for name in ("mse", "mae", "huber"):
    run_dir = tmp_path / f"reg_{name}"
    wb = io.load(run_dir / "wb.h5")
    assert wb.fields["train_loss"].shape == (9, 9) and wb.done["done"].all()
    assert wb.attrs["norm"] == "none" and "contour" in plotting.kinds_supported(wb)
    for axis in ("w", "b"):
      line = io.load(run_dir / f"slice_{axis}.h5")
      assert line.ys is None and line.done["done"].all()
      np.testing.assert_allclose(value_at_origin(line), history_train_loss(run_dir),
                                 rtol=RTOL32)
      # the fit is (near) the minimum of the convex loss along each axis
      assert value_at_origin(line) <= np.min(line.fields["train_loss"]) * (1 + RTOL32)


@pytest.mark.script
def test_fig_batch_size(tmp_path):
  stdout = run_script("fig_batch_size", tmp_path)
  assert_figures(tmp_path, "batch_size")
  summary = json.loads((tmp_path / "summary.json").read_text())
  for bs in (16, 512):
    run_dir = tmp_path / f"batch{bs}"
    res = io.load(run_dir / "landscape.h5")
    assert res.ys is None and res.fields["train_loss"].shape == (5,)
    np.testing.assert_allclose(value_at_origin(res), history_train_loss(run_dir), rtol=RTOL32)
    top = float(res.groups["hessian"]["eigenvalues_largest"][0])
    assert np.isfinite(top) and top > 0
    assert summary[f"batch{bs}"]["lambda_max"] == pytest.approx(top)
    assert f"batch {bs:>4}: top Hessian eigenvalue" in stdout
    assert "loss1d" in plotting.kinds_supported(res)


@pytest.mark.script
def test_fig_saddles(tmp_path):
  run_script("fig_saddles", tmp_path)
  assert_figures(tmp_path, "saddles")
  res = io.load(tmp_path / "run" / "landscape.h5")
  np.testing.assert_allclose(value_at_origin(res), history_train_loss(tmp_path / "run"),
                             rtol=RTOL32)
  crit = res.groups["critical"]
  kinds = [k.decode() if isinstance(k, bytes) else str(k) for k in crit["kind"]]
  eigs, negative = crit["eigenvalues"], crit["num_negative"]
  assert eigs.shape == (len(kinds), 105)                 # 2 -> 8 -> 8 -> 1 tanh MLP
  assert set(kinds) <= {"minimum", "saddle", "maximum"}  # only converged points are kept
  assert "saddle" in kinds
  assert np.all(crit["grad_norm"] <= 1e-8)
  assert np.all(np.diff(eigs, axis=1) >= 0)              # ascending spectra
  for kind, n, spectrum in zip(kinds, negative, eigs):
    assert (kind == "minimum") == (n == 0)
    assert n <= np.sum(spectrum < 0)                     # flat (|λ| <= tol) ones not counted
  np.testing.assert_allclose(crit["index"], negative / eigs.shape[1])
  assert np.all(np.diff(crit["loss"]) >= 0)              # sorted by loss
  assert crit["coords"].shape == (len(kinds), 2)
  assert {"loss_vs_index", "critical"} <= set(plotting.kinds_supported(res))
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert [p["kind"] for p in summary["points"]] == kinds


@pytest.mark.script
def test_fig_edge_of_stability(tmp_path):
  stdout = run_script("fig_edge_of_stability", tmp_path)
  assert_figures(tmp_path, "edge_of_stability")
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert set(summary) == {"lr0.02", "lr0.04"} and "edge of stability" in stdout
  for lr, m in summary.items():
    assert m["max_over_initial"] >= 1.5, (lr, m)              # progressive sharpening
    assert m["hvps_per_probe"] < m["hvps_first_probe"], (lr, m)   # warm probes are cheaper
  assert 0.8 <= summary["lr0.04"]["final_lambda_eta_over_2"] <= 1.25   # at 2/η
  run = tmp_path / "lr0.04"
  header = (run / "history.csv").read_text().splitlines()[0].split(",")
  assert header[-3:] == ["lambda_max", "lambda_min", "probe_hvps"]
  res = io.load_trajectory(run / "trajectory.h5")
  assert plotting.kinds_supported(res) == ["sharpness"]
  np.testing.assert_array_equal(res.groups["curvature"]["step"], np.arange(0, 301, 5))


@pytest.mark.script
@pytest.mark.parametrize("name", ["fig_skip_vs_noskip", "fig_loss_choice", "fig_batch_size",
                                  "fig_saddles", "fig_edge_of_stability"])
def test_bad_override_is_a_one_line_error(tmp_path, name):
  env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
  proc = subprocess.run([sys.executable, str(ROOT / "scripts" / f"{name}.py"), "--tiny",
                         "--out", str(tmp_path), "--set", "train.nosuch=1"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 2, proc.stdout + proc.stderr
  assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
  assert proc.stderr.startswith("error: ") and "train.nosuch" in proc.stderr
