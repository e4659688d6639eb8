"""Smoke test of scripts/bench_gpu.py (and its wrapper), run as a user runs it: --quick on CPU."""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import subprocess
import sys

import pytest
from bench_helpers import load_script

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH_GPU = ROOT / "scripts" / "bench_gpu.py"
SWEEPS = {("mlp", "auto"), ("resnet20", "vmap"), ("resnet20", "map"), ("resnet56", "map")}
HVP_ROWS = ("MLP 784-256-256-10", "digits CNN", "ResNet-20")


def _rows(out: str, header: str) -> list[list[str]]:
  lines = out.splitlines()
  start = next(i for i, ln in enumerate(lines) if ln.startswith(header))
  rows = []
  for line in lines[start + 1:]:
    if "|" not in line or line.startswith(" "):
      break
    rows.append([c.strip() for c in line.split("|")])
  return rows


def _positive(text: str) -> bool:
  v = float(text.replace(",", ""))
  return math.isfinite(v) and v > 0


@pytest.mark.slow
@pytest.mark.script
def test_bench_gpu_quick_on_cpu(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHON=sys.executable)
  out_json = tmp_path / "gpu.json"
  proc = subprocess.run(["bash", str(ROOT / "scripts" / "bench_gpu.sh"), "--quick", "--device",
                         "cpu", "--json", str(out_json)],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  out = proc.stdout
  assert proc.returncode == 0, out + proc.stderr
  assert re.search(r"^jax \S+ \(jaxlib \S+\) on CPU: .*; flags: ", out, re.M), out

  peak = re.search(r"\(a\) matmul peak: 1024x1024 float32, best of \d+: (\S+) GFLOP/s", out)
  assert peak is not None and _positive(peak.group(1)), out

  sweeps = _rows(out, "sweep ")
  assert {(r[0], r[1]) for r in sweeps} == SWEEPS, out
  for r in sweeps:
    assert len(r) == 9, r
    assert all(_positive(c) for c in r[2:7] + r[8:]), r      # chunk .. % peak, grid seconds
    assert math.isfinite(float(r[7])) and float(r[7]) >= 0, r  # compile s
  assert re.search(r"resnet20: vmap / map = \S+x \((vmap|map) is faster\)", out), out
  ext = re.search(r"\(e\) ResNet-56 51x51 surface \(2601 points\).*extrapolated (\S+) s", out)
  assert ext is not None and _positive(ext.group(1)), out

  hvp = _rows(out, "model ")
  assert len(hvp) == 3 and all(r[0].startswith(n) for r, n in zip(hvp, HVP_ROWS)), out
  for r in hvp:
    assert all(_positive(c) for c in r[1:8]), r
    assert r[8] in ("fwd-over-rev", "rev-over-fwd", "linearized 1st")
    assert r[9] in ("fwd-over-rev", "rev-over-fwd", "linearized next")

  res = json.loads(out_json.read_text())
  assert res["matmul"]["flops_per_s"] > 0 and len(res["sweeps"]) == len(SWEEPS)
  assert len(res["hvp"]) == 3 and res["resnet56_grid"]["grid_s"] > 0


@pytest.mark.parametrize("argv, fragment", [
    (["--grid", "1"], "--grid must be >= 2"),
    (["--chunks", "1"], "--chunks must be >= 2"),
    (["--chunk-size", "0"], "--chunk-size must be >= 1"),
])
def test_bench_gpu_bad_flags(argv, fragment, capsys):
  assert load_script(BENCH_GPU, "bench_gpu").main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and fragment in err and "\n" not in err, err
