"""Smoke test of scripts/bench_hessian.py, run as a user runs it (subprocess, --quick)."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest
from bench_helpers import load_script, table

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH_HESSIAN = ROOT / "scripts" / "bench_hessian.py"
COLUMNS = ["method", "HVPs", "seconds", "eigenvalues max rel err", "ratio"]
JAX_ROW = "landscape lanczos"
TORCH_ROW = "pyhessian power iteration (torch)"
HAS_TORCH = importlib.util.find_spec("torch") is not None
TOL = 1e-3


def _load_script():
  return load_script(BENCH_HESSIAN, "bench_hessian")


_table = table


@pytest.mark.slow
@pytest.mark.script
def test_bench_hessian_smoke():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, str(BENCH_HESSIAN), "--quick", "--repeats", "1",
                         "--tol", str(TOL)],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  out = proc.stdout
  assert proc.returncode == 0, out + proc.stderr
  assert "CHECK FAILED" not in out and "MISMATCH" not in out, out

  rows = _table(out)
  assert rows.pop("method") == COLUMNS
  assert list(rows) == [JAX_ROW] + ([TORCH_ROW] if HAS_TORCH else []), out
  for cells in rows.values():
    assert len(cells) == len(COLUMNS), cells
    assert int(cells[1]) >= 5, cells                      # at least k HVPs
    assert float(cells[2]) > 0, cells                     # seconds
    assert float(cells[3]) >= 0, cells                    # max rel err vs the reference

  jax_hvps, jax_err = int(rows[JAX_ROW][1]), float(rows[JAX_ROW][3])
  assert jax_err <= TOL, out                              # our top-5 reached the tolerance
  assert f"top-5 max rel err {rows[JAX_ROW][3]} vs tolerance {TOL:g}: REACHED" in out, out
  ref = re.search(r"reference: landscape lanczos, (\d+) HVPs .* max residual/abs\(λ\) (\S+);", out)
  assert ref is not None, out
  assert float(ref.group(2)) <= 1e-4, out                 # the reference is far tighter than TOL

  if HAS_TORCH:
    torch_hvps = int(rows[TORCH_ROW][1])
    assert rows[TORCH_ROW][4] == "1.00"                   # the baseline's own ratio
    assert float(rows[JAX_ROW][4]) == pytest.approx(jax_hvps / torch_hvps, abs=0.006)
    verdict = re.search(r"HVP ratio .* = (\d+)/(\d+) = (\S+) \(target <= 1/3\): (PASS|FAIL)", out)
    assert verdict is not None, out
    assert (int(verdict.group(1)), int(verdict.group(2))) == (jax_hvps, torch_hvps)
    assert verdict.group(4) == ("PASS" if jax_hvps <= torch_hvps / 3 else "FAIL")
    assert re.search(r"torch HVP \(double backward, as PyHessian\) +\S+ ms", out), out
  else:
    assert "the PyHessian baseline is skipped" in out
    assert rows[JAX_ROW][4] == "-" and "HVP ratio: - (no torch baseline)" in out

  hvp = re.search(r"HVP forward-over-reverse \(hessian.hvp_fn\) +(\S+) ms += (\S+)x a gradient "
                  r"\(target <= 3x\): (PASS|FAIL)", out)
  assert hvp is not None and float(hvp.group(1)) > 0 and float(hvp.group(2)) > 0, out
  assert "HVP jax.linearize, first" in out, out
  for method in ("forward-over-reverse (jax.jvp of grad)", "reverse-over-forward (grad of jax.jvp)",
                 "jax.linearize, first (linearize + apply)", "jax.linearize, each further (apply)"):
    m = re.search(rf"HVP {re.escape(method)} +(\S+) ms += (\S+)x a gradient", out)
    assert m is not None and float(m.group(1)) > 0 and float(m.group(2)) > 0, (method, out)
  lines = out.splitlines()
  start = next(i for i, ln in enumerate(lines) if ln.startswith("model "))
  by_model = [[c.strip() for c in ln.split("|")] for ln in lines[start + 1:start + 4]]
  assert [r[0].split(" ")[0] for r in by_model] == ["MLP", "digits", "ResNet-20"], out
  for r in by_model:
    assert all(float(c) > 0 for c in r[3:8]), r
    assert re.search(rf"best for {re.escape(r[0])}: one HVP \S+", out), out
  maps = {}
  for name in ("fixed steps (before)", "fixed steps, linearized", "converged, random start",
               "converged, warm start"):
    line = next((ln for ln in out.splitlines() if ln.startswith(name)), None)
    assert line is not None, out
    maps[name] = [c.strip() for c in line[len(name):].strip("| ").split("|")]
  for cells in maps.values():
    pts, ratio, hvps, conv, err, comp = cells
    assert float(pts) > 0 and float(ratio) > 0 and float(comp) > 0
    assert 1 <= float(hvps) <= 64 and 0 <= float(conv.rstrip("%")) <= 100
  assert float(maps["fixed steps (before)"][1]) == 1.0
  # a converged map is within its tolerance of the reference (1e-2 of |λmax|, x2 for both ends)
  for name in ("converged, random start", "converged, warm start"):
    assert maps[name][3] == "100%" and float(maps[name][4]) <= 2e-2, maps[name]
  assert re.search(r"centre: reference max_eig \S+ vs the probe's", out), out
  probes = {}
  for name in ("separate", "shared"):
    line = next((ln for ln in lines if ln.strip().startswith(name + " ")), None)
    assert line is not None, out
    probes[name] = line.split()
  sep, shared = (int(probes[n][1]) for n in ("separate", "shared"))
  assert shared < sep                                   # the probes share work
  # --quick: eigen cap 80 (or dim) + 2 SLQ runs of 10 + Hutch++ 12: the shared run saves
  # the SLQ run it reuses and the sketch
  m = re.search(r"shared/separate HVPs = (\S+) \(target <= 0.60: (PASS|FAIL)\); eigenvalues "
                r"agree to (\S+) relative", out)
  assert m is not None and float(m.group(1)) == pytest.approx(shared / sep, abs=0.006), out
  assert float(m.group(3)) <= 1e-2, out          # the same Lanczos run from the same start


@pytest.mark.parametrize("argv, fragment", [
    (["--tol", "2"], "--tol must be in (0, 1)"),
    (["--k", "0"], "--k must be >= 1"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--k", "6", "--ref-steps", "5"], "--ref-steps (5) must be >= --k (6)"),
    (["--curv-tol", "0"], "--curv-tol must be in (0, 1)"),
])
def test_bench_hessian_bad_flags(argv, fragment, capsys):
  assert _load_script().main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and fragment in err and "\n" not in err, err
