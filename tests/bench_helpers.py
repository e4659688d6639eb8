"""Shared pieces of the benchmark-script tests: load a script as a module, read its table."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_script(path: Path, name: str) -> ModuleType:
  """``scripts/NAME.py`` imported as module ``name`` (registered, so dataclasses resolve)."""
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


def table(stdout: str) -> dict[str, list[str]]:
  """The ``|`` table starting at the one line ``method ...``: ``{first cell: cells}``,
  header included; it ends at the first line without ``|`` or an indented note."""
  lines = stdout.splitlines()
  starts = [i for i, ln in enumerate(lines) if ln.startswith("method ")]
  assert len(starts) == 1, stdout
  rows = {}
  for line in lines[starts[0]:]:
    if "|" not in line or line.startswith(" "):
      break
    cells = [c.strip() for c in line.split("|")]
    rows[cells[0]] = cells
  return rows
