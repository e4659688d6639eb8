"""The import rules of docs/architecture.md, checked on the source (no imports run)."""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "landscape"

# Each module imports only modules of a lower rank (docs/architecture.md).
RANK = {
    "errors": 0, "_progress": 0, "_affine": 0, "grid": 1, "_guards": 1, "_validate": 1, "_cache": 1, "_imports": 1,
    "batching": 2, "io": 2, "operators": 4, "config": 3, "data": 3, "losses": 3, "models": 3, "linalg": 3,
    "directions": 3, "vtk": 3, "plotting": 3, "interactive": 3, "surface": 4, "hessian": 5, "objective": 5,
    "curvature": 6, "newton": 6, "train": 6, "critical": 7, "paths": 8, "experiment": 8,
    "direction_kinds": 8, "pipeline": 9, "cli": 10,
}
# Old names kept working by a lazy re-export from a higher module (not a dependency).
REEXPORTS = {("hessian", "curvature")}


def _modules():
  for f in sorted(PKG.glob("*.py")):
    if f.name != "__init__.py":
      yield f.stem, ast.parse(f.read_text())


def _landscape_imports(tree):
  """(module imported, names imported from it) for every import, at any depth."""
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("landscape"):
      if node.module == "landscape":
        for a in node.names:
          yield a.name, ()
      else:
        yield node.module.split(".")[1], tuple(a.name for a in node.names)
    elif isinstance(node, ast.Import):
      for a in node.names:
        if a.name.startswith("landscape."):
          yield a.name.split(".")[1], ()


def test_every_module_has_a_rank():
  assert {name for name, _ in _modules()} == set(RANK) - {"models"}


@pytest.mark.parametrize("name,tree", list(_modules()), ids=[n for n, _ in _modules()])
def test_imports_go_down_the_layers(name, tree):
  for dep, _ in _landscape_imports(tree):
    if dep in ("__version__", name) or (name, dep) in REEXPORTS:
      continue
    assert RANK[dep] < RANK[name], f"{name} (rank {RANK[name]}) imports {dep} ({RANK[dep]})"


def _private_uses(path: pathlib.Path):
  """``from landscape.x import _y`` and ``alias._y`` on an imported landscape module."""
  tree = ast.parse(path.read_text())
  aliases = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("landscape"):
      for a in node.names:
        inside = path.parent.name == node.module.split(".")[-1]   # a package's own helpers
        if a.name.startswith("_") and not (node.module == "landscape" or inside
                                           or a.name.startswith("__")):
          yield f"from {node.module} import {a.name}"
        if node.module == "landscape":
          aliases.add(a.asname or a.name)
    elif isinstance(node, ast.Import):
      for a in node.names:
        if a.name.startswith("landscape"):
          aliases.add(a.asname or a.name.split(".")[0])
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in aliases and node.attr.startswith("_")
        and not node.attr.startswith("__")):
      yield f"{node.value.id}.{node.attr}"


def test_no_module_calls_another_modules_private_names():
  found = {f.name: sorted(set(_private_uses(f))) for f in PKG.rglob("*.py")}
  assert {k: v for k, v in found.items() if v} == {}


def test_scripts_and_examples_import_no_private_landscape_name():
  files = [*(ROOT / "scripts").glob("*.py"), *(ROOT / "examples").glob("*.py")]
  found = {f.name: sorted(set(_private_uses(f))) for f in files}
  assert {k: v for k, v in found.items() if v} == {}
  for f in files:
    assert not re.search(r"landscape\._[a-z]", f.read_text()), f"{f.name} imports landscape._*"


def test_one_owner_for_h5py_matplotlib_and_plotly():
  owners = {"h5py": set(), "matplotlib": set(), "plotly": set(), "jax": set()}
  for name, tree in _modules():
    for node in ast.walk(tree):
      mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
              else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
      for m in mods:
        top = m.split(".")[0]
        if top in owners:
          owners[top].add(name)
  assert owners["h5py"] == {"io"}
  assert owners["matplotlib"] == {"plotting"}
  assert owners["plotly"] == {"interactive"}
  assert "plotting" not in owners["jax"]
  assert "interactive" not in owners["jax"]


def test_the_grid_shape_rule_is_written_once():
  """Only landscape/grid.py spells out (ny, nx) from the coordinate lengths."""
  rule = re.compile(r"\(\s*(len\(ys\)|ys\.size)\s*,\s*(len\(xs\)|xs\.size)\s*\)|"
                    r"\(\s*(len\(self\.ys\)|self\.ys\.size)\s*,")
  hits = [f"{f.relative_to(ROOT)}:{i + 1}"
          for f in [*PKG.glob("*.py"), *(ROOT / "scripts").glob("*.py")]
          for i, line in enumerate(f.read_text().splitlines())
          if rule.search(line.split("#")[0]) and "``" not in line]
  assert hits == ["landscape/grid.py:" + hits[0].split(":")[1]] if hits else hits == [], hits
