"""Smoke test of scripts/bench_paths.py, run as a user runs it (subprocess, --quick).

No timed assertion: the ratio is reported, never asserted (wall-clock on a shared machine).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import subprocess
import sys
import types

import pytest
from bench_helpers import load_script, table

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH_PATHS = ROOT / "scripts" / "bench_paths.py"
COLUMNS = ["method", "image-steps/s", "vs python loop", "s per run", "first call s"]
JAX_ROW = "paths.neb (compiled loop)"
LOOP_ROW = "python loop over images"


def _load_script():
  return load_script(BENCH_PATHS, "bench_paths")


_table = table


@pytest.mark.slow
@pytest.mark.script
def test_bench_paths_smoke():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, str(BENCH_PATHS), "--quick", "--repeats", "1"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  out = proc.stdout
  assert proc.returncode == 0, out + proc.stderr
  assert "CHECK FAILED" not in out and "MISMATCH" not in out, out
  assert re.search(r"^jax \S+, jaxlib \S+ on ", out, re.M), out
  assert re.search(r"^cpu: \S", out, re.M) and re.search(r"^flags: \S", out, re.M), out

  # the independent reference: the python loop's band equals paths.neb's after the check steps
  check = re.search(r"check: python loop over images vs paths\.neb after (\d+) FIRE steps "
                    r"\(9 images\): max \|Δimage\| \S+ = (\S+) of the largest move (\S+); "
                    r"losses max rel diff (\S+) \(rtol (\S+)\): OK", out)
  assert check is not None, out
  assert int(check.group(1)) >= 1 and float(check.group(3)) > 0, out
  assert float(check.group(2)) <= float(check.group(5)), out
  assert float(check.group(4)) <= float(check.group(5)), out

  rows = _table(out)
  assert rows.pop("method") == COLUMNS
  assert list(rows) == [JAX_ROW, LOOP_ROW], out
  for cells in rows.values():
    assert len(cells) == len(COLUMNS), cells
    assert float(cells[1]) > 0 and float(cells[3]) > 0 and float(cells[4]) > 0, cells
  assert rows[LOOP_ROW][2] == "1.00"                       # the baseline's own ratio
  ratio = float(rows[JAX_ROW][1]) / float(rows[LOOP_ROW][1])
  assert float(rows[JAX_ROW][2]) == pytest.approx(ratio, abs=0.006)
  verdict = re.search(r"ratio paths\.neb \(compiled loop\) / python loop over images = (\S+)x "
                      r"\(target >= 3x\): (PASS|FAIL)", out)
  assert verdict is not None, out
  assert verdict.group(2) == ("PASS" if float(verdict.group(1)) >= 3 else "FAIL")


@pytest.mark.parametrize("argv, fragment", [
    (["--models", "resnet"], "unknown --models entry"),
    (["--num-images", "2"], "--num-images must be >= 3"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--spring", "0"], "--spring must be > 0"),
    (["--rtol", "1"], "--rtol must be in (0, 1)"),
])
def test_bench_paths_bad_flags(argv, fragment, capsys):
  assert _load_script().main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and fragment in err and "\n" not in err, err


@pytest.mark.slow
def test_bench_paths_check_catches_disagreement():
  """paths.neb with another FIRE time step is a different band: the check says MISMATCH."""
  mod = _load_script()
  spec = dataclasses.replace(mod.QUICK["mlp"], samples=64, train_steps=0)
  p = mod._make_problem(spec, 0)
  args = types.SimpleNamespace(num_images=5, spring=1.0, check_steps=3, rtol=1e-3)
  opt = mod.paths.fire(**mod.FIRE)
  ok, line = mod._check(p, mod.LoopNEB(p, 5, 1.0), opt, args)
  assert ok and line.endswith(": OK"), line
  other = mod.paths.fire(**dict(mod.FIRE, dt=0.05))
  ok, line = mod._check(p, mod.LoopNEB(p, 5, 1.0), other, args)
  assert not ok and line.endswith(": MISMATCH"), line
