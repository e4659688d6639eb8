"""Shared plumbing of the paper-figure drivers in ``scripts/fig_*.py``.

Flags, run directories, figure saving and the one-line error exit. No maths: the
drivers and this module only call ``landscape.pipeline``, the model-agnostic core
(``surface``, ``hessian``, ``critical``), ``landscape.io`` and ``landscape.plotting``.

Every driver takes the same flags::

  --tiny        smoke-test size (the tests in tests/test_scripts.py): seconds to a minute on a CPU
  --paper       the paper's scale (GPU-sized; the flags only, documented in scripts/README.md)
  --out DIR     output directory (default results/figures/NAME/)
  --set K=V     extra config override for every run it trains (repeatable)
  --overwrite   retrain and recompute instead of resuming what DIR holds
  --format F    figure formats, default pdf,png
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape import io, pipeline, surface
from landscape.errors import LandscapeError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
RESULTS = Path("results") / "figures"


def parser(name: str, doc: str) -> argparse.ArgumentParser:
  """The common command line of a figure driver; ``doc`` is its module docstring."""
  ap = argparse.ArgumentParser(prog=f"scripts/{name}.py", description=doc,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  size = ap.add_mutually_exclusive_group()
  size.add_argument("--tiny", action="store_true",
                    help="smoke-test size: one epoch, ~100 samples, 5x5 grids (CI)")
  size.add_argument("--paper", action="store_true",
                    help="the paper's scale (GPU-sized: deep nets, many epochs, 51x51 grids)")
  ap.add_argument("--out", type=Path, default=RESULTS / name,
                  help=f"output directory (default {RESULTS / name})")
  ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                  help="config override applied to every run, e.g. --set train.epochs=3")
  ap.add_argument("--overwrite", action="store_true",
                  help="retrain and recompute (default: resume what the output directory holds)")
  ap.add_argument("--format", dest="formats", default="pdf,png",
                  help="comma-separated figure formats (default pdf,png)")
  return ap


def size_of(args: argparse.Namespace) -> str:
  """``"tiny"``, ``"paper"`` or ``"default"``."""
  return "tiny" if args.tiny else "paper" if args.paper else "default"


def formats(args: argparse.Namespace) -> list[str]:
  return [f.strip() for f in args.formats.split(",") if f.strip()]


def train_run(config: str | Path | None, overrides: Sequence[str], run_dir: Path, *,
              overwrite: bool, log: Callable[[str], None] = print) -> Path:
  """Train ``config`` with ``overrides`` into ``run_dir`` (resumed when it holds the same run)."""
  cfg = pipeline.resolve(str(config) if config is not None else None, list(overrides))
  pipeline.run_train(cfg, run_dir, overwrite=overwrite, log=log)
  return run_dir


def train_and_sweep(config: str | Path | None, overrides: Sequence[str], run_dir: Path, *,
                    overwrite: bool, log: Callable[[str], None] = print) -> Path:
  """Train, then sweep the surface the config's ``surface`` section describes; the file path."""
  train_run(config, overrides, run_dir, overwrite=overwrite, log=log)
  return pipeline.run_surface(run_dir, overwrite=overwrite, log=log)


def final_train_loss(run_dir: Path) -> float:
  """The last ``train_loss`` of a run's ``history.csv``."""
  with open(Path(run_dir) / "history.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  return float(rows[-1]["train_loss"])


def at_origin(result: io.Result, field: str = "train_loss") -> float:
  """A grid field at the grid point nearest to the origin (the trained model)."""
  values = result.fields[field]
  i = int(np.argmin(np.abs(result.xs)))
  if result.ys is None:
    return float(values[i])
  return float(values[int(np.argmin(np.abs(result.ys))), i])


def sweep_to_file(path: Path, loss_fn: Callable, params: Any, directions: Sequence[Any], xs,
                  ys=None, data: Any = None, *, attrs: Mapping[str, Any], overwrite: bool,
                  field: str = "train_loss", batch_size: int | None = None) -> io.Result:
  """``surface.evaluate`` of ``loss_fn`` streamed into a resumable result file; the result.

  The file has the landscape-hdf5 layout (``landscape plot FILE`` draws it): ``field`` on
  the grid, the directions, and ``attrs`` (an existing file with other attrs, grid or
  directions is refused unless ``overwrite``).
  """
  with io.GridFile.open(path, xs=xs, ys=ys, fields=(field,), attrs=attrs,
                        directions=list(directions), overwrite=overwrite) as grid:
    surface.evaluate(loss_fn, params, directions, xs, ys, data, batch_size=batch_size,
                     done=grid.done,
                     on_chunk=lambda idx, values: grid.write_points(idx, {field: values["loss"]}))
  return io.load(path)


def save(fig: Any, out: Path, stem: str, fmts: Sequence[str]) -> list[Path]:
  """Save a matplotlib ``Figure`` as ``out/stem.FMT`` for every format; the paths."""
  out.mkdir(parents=True, exist_ok=True)
  paths = []
  for fmt in fmts:
    path = out / f"{stem}.{fmt}"
    fig.savefig(path, format=fmt)
    paths.append(path)
  print(f"wrote {', '.join(str(p) for p in paths)}")
  return paths


def write_summary(out: Path, summary: Mapping[str, Any]) -> Path:
  """The key numbers of a figure as ``out/summary.json`` (also printed, one per line)."""
  out.mkdir(parents=True, exist_ok=True)
  path = out / "summary.json"
  path.write_text(json.dumps(summary, indent=2, sort_keys=True, default=_plain) + "\n")
  print(f"summary -> {path}")
  for key, value in sorted(summary.items()):
    print(f"  {key}: {json.dumps(value, sort_keys=True, default=_plain)}")
  return path


def _plain(value: Any) -> Any:
  return np.asarray(value).tolist()


def run(main: Callable[[], None]) -> None:
  """Run a driver's ``main``; a :class:`LandscapeError` is one line on stderr and exit 2."""
  try:
    main()
  except LandscapeError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
