"""Smoke tests of the benchmark drivers in scripts/, run as a user runs them (subprocess)."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from bench_helpers import table

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH_SURFACE = ROOT / "scripts" / "bench_surface.py"
SURFACE_COLUMNS = ["method", "points/s", "vs torch original", "vs torch prebatched",
                   "compile s", "peak RSS MB", "% matmul peak"]
JAX_ROWS = ["jax generic", "jax model-aware"]
TORCH_ROWS = ["torch original", "torch prebatched"]
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _run(script: pathlib.Path, *args: str, block_torch: bool = False,
         timeout: float = 240) -> subprocess.CompletedProcess:
  """Run ``script`` with ``args``; ``block_torch`` makes ``import torch`` fail inside it."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  code = ("import runpy, sys; "
          + ("sys.modules['torch'] = None; " if block_torch else "")
          + f"sys.argv = {[str(script), *args]!r}; "
          + f"runpy.run_path({str(script)!r}, run_name='__main__')")
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


_table = table


@pytest.mark.slow
@pytest.mark.script
def test_bench_surface_smoke():
  proc = _run(BENCH_SURFACE, "--quick")
  assert proc.returncode == 0, proc.stdout + proc.stderr
  out = proc.stdout
  assert "CHECK FAILED" not in out and "MISMATCH" not in out, out
  # forward FLOPs per point, 2·in·out per Dense layer: MLP 784-256-256-10 on 1000 samples
  flops = 2 * (784 * 256 + 256 * 256 + 256 * 10) * 1000
  assert f"{flops / 1e9:.3g} GFLOP/point" in out, out
  rows = _table(out)
  assert rows.pop("method") == SURFACE_COLUMNS
  expected = JAX_ROWS + (TORCH_ROWS if HAS_TORCH else [])
  assert list(rows) == expected, out
  for name, cells in rows.items():
    assert len(cells) == len(SURFACE_COLUMNS), cells
    assert float(cells[1]) > 0, cells                     # points/s
    assert float(cells[5]) >= 0, cells                    # peak RSS MB
    assert float(cells[6]) > 0, cells                     # % matmul peak
    if name.startswith("jax"):
      assert float(cells[4]) > 0, cells                   # compile s
  if HAS_TORCH:
    assert float(rows["torch original"][2]) == 1.0        # its own ratio
    assert float(rows["torch prebatched"][3]) == 1.0
    # the loss grids of all four methods agree (rtol 1e-4) and each was compared
    checks = [ln for ln in out.splitlines() if "max |Δloss|" in ln]
    assert len(checks) == 3 and all(ln.rstrip().endswith("OK") for ln in checks), out
    assert any(ln.startswith("torch ") and ln.endswith(" threads") for ln in out.splitlines())
  else:
    assert "torch baselines are skipped" in out
  # the auto choice against the exhaustively timed fixed candidates, and generic/model-aware
  lines = out.splitlines()
  auto = [ln for ln in lines if ln.startswith("auto choice (jax generic): ")]
  assert len(auto) == 1 and "points/s including tuning overhead" in auto[0], out
  best = [ln for ln in lines if ln.startswith("best fixed choice of ")]
  # 3x3 grid: modes affine, vmap x chunks 4, 8, 9 x batches 250, 125, 63
  assert len(best) == 1 and best[0].startswith("best fixed choice of 18 "), out
  assert float(best[0].rsplit("auto/best ", 1)[1]) > 0, out
  ratio = [ln for ln in lines if ln.startswith("generic/model-aware: ")]
  assert len(ratio) == 1 and float(ratio[0].split()[1]) > 0, out


@pytest.mark.slow
@pytest.mark.script
def test_bench_surface_without_torch():
  proc = _run(BENCH_SURFACE, "--quick", "--grid", "2", block_torch=True)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert "torch baselines are skipped" in proc.stdout
  rows = _table(proc.stdout)
  assert list(rows) == ["method"] + JAX_ROWS, proc.stdout
  assert rows["jax generic"][2] == "-" and rows["jax generic"][3] == "-"   # no torch ratio


def _load_script(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[path.stem] = module   # dataclasses look their module up while it executes
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("rel_error, agree", [(0.0, True), (3e-5, True), (3e-4, False)])
def test_bench_surface_check_catches_disagreement(rel_error, agree):
  bench = _load_script(BENCH_SURFACE)
  loss = np.linspace(0.5, 40.0, 9)
  acc = np.full(9, 10.0)
  other = loss.copy()
  other[4] *= 1 + rel_error
  partial = np.full(9, np.nan)       # a torch row that evaluated only the first 3 points
  partial[:3] = loss[:3]
  rows = [bench.Row("jax generic", loss=loss, acc=acc), bench.Row("other", loss=other, acc=acc),
          bench.Row("torch original", loss=partial, acc=acc)]
  ok, lines = bench._check_rows(rows, rtol=1e-4)
  assert ok is agree
  assert lines[0].endswith("OK" if agree else "MISMATCH") and lines[1].endswith("OK")
  assert "on 3 points" in lines[1]
