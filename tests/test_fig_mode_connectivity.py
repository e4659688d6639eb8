"""scripts/fig_mode_connectivity.py: the --tiny run end to end, the refusals, --paper's plan.

The end-to-end test runs the driver as a user does (a subprocess on the CPU) and checks
that summary.json holds what it claims: every barrier is the one stored in the result
files (train: the ``barrier`` attribute of ``paths/<method>``; test: the rise of the stored
test loss above its chord), the saddle is the stored one, the claim's boolean follows from
the two numbers, and the figures are drawn.
"""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import subprocess
import sys

import h5py
import numpy as np
import pytest
from matplotlib import image

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "fig_mode_connectivity.py"
METHODS = ("linear", "curve", "neb")


def run(out: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
  return subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=600)


def chord_barrier(t: np.ndarray, loss: np.ndarray) -> float:
  t, loss = np.asarray(t, np.float64), np.asarray(loss, np.float64)
  return float(np.max(loss - ((1 - t) * loss[0] + t * loss[-1])))


def assert_not_blank(path: pathlib.Path) -> None:
  assert path.is_file() and path.stat().st_size > 1000, path
  pixels = image.imread(path)[::3, ::3, :3]
  ink = np.any(pixels < 0.95, axis=-1).mean()   # the share of not-white pixels
  assert 0.01 < ink < 0.9, (path, ink)
  assert np.unique(pixels.reshape(-1, 3), axis=0).shape[0] > 8, path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[pathlib.Path, dict, str]:
  out = tmp_path_factory.mktemp("mode_connectivity")
  proc = run(out, "--tiny")
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
  return out, json.loads((out / "summary.json").read_text()), proc.stdout


@pytest.mark.script
def test_summary_keys_and_types(tiny):
  out, s, stdout = tiny
  assert s["size"] == "tiny" and s["seeds"] == [0, 1]
  assert s["claim"] == "the curve's barrier is lower than the linear barrier"
  assert isinstance(s["claim_held"], bool)
  assert isinstance(s["cpu"], str) and s["cpu"]
  t = s["timings"]
  assert set(t) == {"train_s", "path_s", "draw_s", "total_s"}
  assert set(t["train_s"]) == {"mlp/seed0", "mlp/seed1"} and set(t["path_s"]) == {"mlp/0-1"}
  assert all(v > 0 for v in [*t["train_s"].values(), *t["path_s"].values(), t["total_s"]])
  assert list(s["networks"]) == ["mlp"]
  net = s["networks"]["mlp"]
  assert net["model"] == "mlp" and set(net["runs"]) == {"0", "1"}
  assert list(net["pairs"]) == ["0-1"]
  p = net["pairs"]["0-1"]
  for m in METHODS:
    for key in (f"{m}_barrier", f"{m}_barrier_test", f"{m}_peak_t", f"{m}_max_train_loss"):
      assert isinstance(p[key], float) and np.isfinite(p[key]), key
  assert isinstance(p["neb_converged"], bool) and isinstance(p["neb_steps"], int)
  assert isinstance(p["curve_below_linear"], bool)
  assert p["curve_below_linear"] == (p["curve_barrier"] < p["linear_barrier"])
  assert s["claim_held"] == p["curve_below_linear"]
  sd = p["saddle"]
  assert sd["kind"] in ("saddle", "minimum", "undetermined")
  for key in ("index_lower", "index_upper", "near_zero"):
    assert isinstance(sd[key], int)
  assert sd["index_upper"] == -1 or sd["index_lower"] <= sd["index_upper"]
  assert isinstance(sd["loss"], float) and isinstance(sd["grad_norm"], float)
  assert isinstance(sd["converged"], bool) and sd["from"] == "neb"
  assert "curve<linear" in stdout and "claim:" in stdout       # the table


@pytest.mark.script
def test_barriers_are_the_stored_ones(tiny):
  out, s, _ = tiny
  p = s["networks"]["mlp"]["pairs"]["0-1"]
  path = out / "mlp" / "path_0_1.h5"
  assert pathlib.Path(p["file"]) == path and pathlib.Path(p["plane_file"]).is_file()
  with h5py.File(path, "r") as f:
    for m in METHODS:
      g = f[f"paths/{m}"]
      assert p[f"{m}_barrier"] == float(g.attrs["barrier"])
      assert p[f"{m}_barrier"] == pytest.approx(chord_barrier(g["t"][()], g["train_loss"][()]),
                                                rel=1e-12, abs=1e-12)
      assert p[f"{m}_barrier_test"] == pytest.approx(
          chord_barrier(g["t"][()], g["test_loss"][()]), rel=1e-12, abs=1e-12)
      assert p[f"{m}_peak_t"] == float(g["t"][int(g.attrs["peak"])])
    assert p["neb_converged"] == bool(f["paths/neb"].attrs["converged"])
    assert p["neb_steps"] == int(f["paths/neb"].attrs["steps"])
    sa = f["saddle"].attrs
    sd = p["saddle"]
    assert sd["kind"] == str(sa["kind"])
    assert (sd["index_lower"], sd["index_upper"]) == (int(sa["index_lower"]),
                                                      int(sa["index_upper"]))
    assert sd["loss"] == float(sa["loss"]) and sd["grad_norm"] == float(sa["grad_norm"])
    np.testing.assert_array_equal(sd["eigenvalues"], f["saddle/eigenvalues"][()])
    # the linear path is the file's grid, from run A (t = 0) to run B (t = 1)
    assert p["endpoint_train_loss"] == [float(f["train_loss"][0]), float(f["train_loss"][-1])]
  with h5py.File(out / "mlp" / "path_0_1_plane.h5", "r") as f:
    assert f["train_loss"].shape == (5, 5) and "plane" in f
    assert all(f"paths/{m}/plane_x" in f for m in METHODS)


@pytest.mark.script
def test_figures_are_drawn(tiny):
  out, _, _ = tiny
  for stem in ("path", "plane", "saddle_spectrum"):
    assert (out / f"{stem}.pdf").stat().st_size > 1000
    assert_not_blank(out / f"{stem}.png")


@pytest.mark.script
@pytest.mark.parametrize("seeds", ["0", "0,0,1", "a,b"])
def test_bad_seeds_are_a_one_line_error(tmp_path, seeds):
  proc = run(tmp_path / "out", "--tiny", f"--seeds={seeds}")
  assert proc.returncode == 2, proc.stdout + proc.stderr
  assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
  assert proc.stderr.startswith("error: --seeds") and seeds in proc.stderr
  assert not (tmp_path / "out").exists()        # refused before anything is written


@pytest.mark.script
def test_bad_override_is_a_one_line_error(tmp_path):
  proc = run(tmp_path / "out", "--tiny", "--set", "paths.nosuch=1")
  assert proc.returncode == 2, proc.stdout + proc.stderr
  assert proc.stderr.count("\n") == 1 and "paths.nosuch" in proc.stderr
  assert not (tmp_path / "out").exists()


@pytest.fixture()
def script(monkeypatch):
  monkeypatch.syspath_prepend(str(ROOT / "scripts"))
  return importlib.import_module("fig_mode_connectivity")


def test_paper_plan_resolves_the_cifar_configs(script):
  """--paper is not run here: its networks, seeds and paths settings resolve."""
  plan = script.plan(script.parse_args(["--paper", "--set", "paths.neb_steps=5"]))
  assert plan["size"] == "paper" and plan["seeds"] == [0, 1, 2]
  assert plan["pairs"] == [(0, 1), (0, 2), (1, 2)]
  nets = plan["nets"]
  assert set(nets) == {"resnet20", "vgg9"}
  assert nets["resnet20"]["config"] == ROOT / "configs" / "resnet20_skip.yaml"
  assert nets["resnet20"]["cfg"].model.name == "resnet"
  assert nets["vgg9"]["cfg"].model.name == "vgg9"
  assert dict(nets["vgg9"]["cfg"].model.kwargs) == {"batchnorm": True}
  for spec in nets.values():
    cfg = spec["cfg"]
    assert cfg.train.epochs == 200 and cfg.train.optimizer == "sgd"
    assert cfg.paths.neb_images == 33 and cfg.paths.plane_num == 51
    assert cfg.paths.neb_steps == 5                     # a user's paths.* --set wins
    assert not any(o.startswith("paths.") for o in spec["overrides"])   # not in training
  assert plan["path_overrides"][-1] == "paths.neb_steps=5"


def test_seeds_and_overrides_are_parsed(script):
  plan = script.plan(script.parse_args(["--seeds", "3,1,2", "--set", "train.epochs=7"]))
  assert plan["seeds"] == [3, 1, 2] and plan["pairs"] == [(3, 1), (3, 2), (1, 2)]
  spec = plan["nets"]["mlp"]
  assert spec["cfg"].train.epochs == 7 and spec["cfg"].paths.n_samples is None
  assert spec["overrides"][-1] == "train.epochs=7"
