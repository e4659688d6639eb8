"""The examples in examples/ run as a user runs them (tiny sizes)."""

import runpy
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_surface_in_a_notebook(tmp_path):
  module = runpy.run_path(str(ROOT / "examples" / "surface_in_a_notebook.py"))
  out = tmp_path / "fig.png"
  got = module["main"](["--out", str(out), "--grid", "3", "--steps", "20"])
  assert out.stat().st_size > 10_000
  plane, line = got["plane"], got["line"]
  assert plane.shape == (3, 3) and line.shape == (12,)
  assert plane.done.all() and np.isfinite(plane.values["loss"]).all()
  # the centre of the plane is the trained point: the line through it passes below its ends
  assert plane.values["loss"][1, 1] < max(line.values["loss"][0], line.values["loss"][-1])
