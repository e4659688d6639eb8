"""The ``landscape`` command: argument parsing only; the work is in :mod:`landscape.pipeline`.

Every user error is a :class:`landscape.LandscapeError`: printed as one line,
without a traceback, with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from landscape.errors import ConfigError, LandscapeError

DEFAULT_OUT = "results/default"


def _add_config(p: argparse.ArgumentParser) -> None:
  p.add_argument("--config", help="YAML experiment config (default: the embedded default: "
                 "digits, small CNN, cross-entropy)")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                 help="override a config value, e.g. --set train.epochs=5 (repeatable)")


def _quoted(text: str) -> str:
  """A string as a YAML scalar that parses back to itself.

  Unquoted, YAML 1.1 reads ``-1:1:5`` as a base-60 integer (-3665) and ``1e3`` or
  ``yes`` as non-strings; a JSON string is a valid double-quoted YAML scalar.
  """
  return json.dumps(str(text))


def _surface_overrides(a: argparse.Namespace) -> list[str]:
  """Typed surface flags as config overrides (they win over --set)."""
  strings = [("x", a.x), ("y", a.y), ("direction", a.direction), ("norm", a.norm),
             ("ignore", a.ignore), ("bn_mode", a.bn_mode)]
  ints = [("batch_size", a.batch_size), ("chunk_size", a.chunk_size), ("seed", a.seed)]
  out = [f"surface.{k}={_quoted(v)}" for k, v in strings if v is not None]
  out += [f"surface.{k}={v}" for k, v in ints if v is not None]
  if a.split is not None:
    splits = [sp.strip() for sp in a.split.split(",") if sp.strip()]
    out.append(f"surface.splits=[{', '.join(_quoted(sp) for sp in splits)}]")
  if a.targets:
    out.append(f"surface.targets=[{', '.join(_quoted(t) for t in a.targets)}]")
  if a.one_d:
    out.append("surface.y=null")
  return out


def _add_surface_flags(p: argparse.ArgumentParser) -> None:
  p.add_argument("--x", help="x grid as min:max:num (the original tool's syntax), e.g. -1:1:51")
  p.add_argument("--y", help="y grid as min:max:num; omit with --1d for a 1-D sweep")
  p.add_argument("--1d", dest="one_d", action="store_true", help="sweep along x only")
  p.add_argument("--direction", help="a registered direction kind: random | pca | target | "
                 "eigen built in (landscape.direction_kinds.register adds more)")
  p.add_argument("--target", dest="targets", action="append",
                 help="for --direction target: an epoch of the run or another run dir (repeat "
                      "twice for the plane through three models)")
  p.add_argument("--norm", help="filter | layer | weight | none")
  p.add_argument("--ignore", help="biasbn (zero direction on 1-D leaves) or none")
  p.add_argument("--bn-mode", dest="bn_mode", help="eval | states | recompute")
  p.add_argument("--split", help="comma-separated splits to evaluate: train,test")
  p.add_argument("--batch-size", dest="batch_size", type=int, help="data batch per step")
  p.add_argument("--chunk-size", dest="chunk_size", type=int, help="grid points per call")
  p.add_argument("--seed", type=int, help="direction seed")


class _Parser(argparse.ArgumentParser):
  """argparse with the package's error contract: one line on stderr, exit status 2."""

  def error(self, message: str):  # noqa: D102 - argparse's hook
    print(f"landscape: error: {' '.join(message.split())}; see `{self.prog} --help`",
          file=sys.stderr)
    sys.exit(2)


def _probe_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
  """A probe command: a result file (or --run), probe flags, --set overrides."""
  p = sub.add_parser(name, help=help_text)
  p.add_argument("file", nargs="?", help="result file (default: RUN/landscape.h5)")
  p.add_argument("--run", help="run directory (default: the file's run_dir attribute)")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
  return p


def build_parser() -> argparse.ArgumentParser:
  ap = _Parser(
      prog="landscape",
      description="Loss landscapes and Hessian spectra of JAX/Flax models "
                  "(Li et al. 2018 filter-normalized surfaces; Lanczos spectra; HDF5 results).")
  sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
  sub.required = True

  p = sub.add_parser("run", help="train, sweep the surface, probe the Hessian and plot")
  _add_config(p)
  p.add_argument("--out", default=None, help=f"run directory (default: {DEFAULT_OUT} for the "
                 "embedded config, results/NAME otherwise)")
  p.add_argument("--overwrite", action="store_true", help="replace an existing run")

  p = sub.add_parser("train", help="train a model as the config says")
  _add_config(p)
  p.add_argument("--out", default=None, help="run directory")
  p.add_argument("--overwrite", action="store_true", help="replace an existing run")

  p = sub.add_parser("surface", help="sweep the loss surface of a trained run into HDF5")
  p.add_argument("--run", required=True, help="run directory (from landscape train/run)")
  _add_surface_flags(p)
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--out", help="result file (default: RUN/landscape.h5)")
  p.add_argument("--overwrite", action="store_true", help="replace an existing result file")

  p = _probe_parser(sub, "hessian", "Hessian probes (eigenvalues, trace, density, curvature "
                     "map) into a result file")
  p.add_argument("--k", type=int, help="eigenvalues per end (default: config hessian.k)")
  p.add_argument("--which", help="largest | smallest | both")
  p.add_argument("--trace", action=argparse.BooleanOptionalAction, default=None)
  p.add_argument("--density", action=argparse.BooleanOptionalAction, default=None)
  p.add_argument("--map", action=argparse.BooleanOptionalAction, default=None,
                 help="per-grid-point max_eig/min_eig maps on the file's grid (resumable)")
  p.add_argument("--operator", help="curvature operators, comma-separated: hessian | ggn | "
                 "fisher | residual (default: config hessian.operators)")
  p.add_argument("--blocks", help="per-block spectra: 'layer', or a YAML mapping of block names "
                 "to parameter-path patterns, e.g. \"{conv: 'Conv_*/*', head: 'Dense_*/*'}\"")

  p = _probe_parser(sub, "critical", "critical points (Newton-MR / GNM) with Morse index "
                    "into a result file")
  p.add_argument("--starts", type=int, help="number of searches")
  p.add_argument("--method", help="newton_mr | gnm")

  p = sub.add_parser("path", help="paths between the minima of two runs (linear, fitted "
                     "curve, nudged elastic band), the saddle on them, the plane through them")
  p.add_argument("--run", required=True, help="run A (t = 0)")
  p.add_argument("--to", required=True, help="run B (t = 1): the same config trained with "
                 "another seed (landscape train --set train.seed=1 --out DIR)")
  p.add_argument("--method", help="comma-separated: linear, curve, neb (default: config "
                 "paths.methods)")
  p.add_argument("--num", type=int, help="points along the linear path and the curve")
  p.add_argument("--plane", action="store_true", help="also sweep the plane through A, B and "
                 "the curve's bend (or the band's peak) into OUT_plane.h5")
  p.add_argument("--saddle", action="store_true", help="refine the band's peak to a critical "
                 "point and certify its Morse index")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--out", help="result file (default: RUN/path.h5)")
  p.add_argument("--overwrite", action="store_true", help="replace existing result files")

  p = sub.add_parser("plot", help="draw figures from a result file")
  p.add_argument("file")
  p.add_argument("--kind", help="comma-separated kinds (default: every kind the file supports): "
                 "loss1d, contour, contourf, heatmap, surface3d, trajectory, eig_ratio, eig_map, "
                 "density, critical, loss_vs_index, path, plane, saddle_spectrum built in (landscape.plotting.register_kind "
                 "adds more)")
  p.add_argument("--format", default="pdf,png", help="comma-separated: pdf, png, svg, html "
                 "(html: one interactive page per file, FILE_STEM.html; needs plotly)")
  p.add_argument("--out", help="output directory (default: figures/ beside the file)")

  p = sub.add_parser("view", help="write a result file's interactive HTML page and open it")
  p.add_argument("file", help="result file (or a run directory: its landscape.h5)")
  p.add_argument("--out", help="page path (default: figures/FILE_STEM.html beside the file)")
  p.add_argument("--no-open", dest="open", action="store_false",
                 help="write the page only; do not open a web browser")
  p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")

  p = sub.add_parser("export-vtk", help="write a ParaView .vts surface of a 2-D result")
  p.add_argument("file")
  p.add_argument("--field", default="train_loss")
  p.add_argument("--interp", type=int, help="resample to an N x N grid (bilinear)")
  p.add_argument("--log", action="store_true", help="height log(loss + 0.1), as the original")
  p.add_argument("--zmax", type=float, help="clip the loss at this value")
  p.add_argument("--out", help="output .vts path (default: FILE_FIELD.vts beside the file)")
  p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")

  p = sub.add_parser("info", help="summarize a result file")
  p.add_argument("file")
  return ap


def _default_out(cfg) -> str:
  return DEFAULT_OUT if cfg.name == "default" else f"results/{cfg.name}"


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  if hasattr(sys.stdout, "reconfigure"):
    sys.stdout.reconfigure(line_buffering=True)  # progress lines appear as they happen
  saved = sys.stdout
  sys.stdout = safe = _PipeSafe(saved)   # `landscape surface ... | head` keeps computing
  try:
    return _run(args)
  finally:
    # restore the caller's stdout; after a broken pipe keep a quiet one, so that the
    # interpreter's final flush does not complain either
    sys.stdout = safe._stream if safe.broken else saved


def _run(args: argparse.Namespace) -> int:
  from landscape import _cache
  _cache.enable()
  try:
    return _dispatch(args)
  except LandscapeError as e:
    return _error(str(e))
  except KeyboardInterrupt:
    print("landscape: interrupted; rerun the same command to resume", file=sys.stderr)
    return 130
  except BrokenPipeError:  # a reader that went away under a write not through stdout
    return 141
  except MemoryError:
    return _error("out of host memory; use a smaller grid, --chunk-size or --batch-size "
                  "(a sweep resumes where it stopped)")
  except OSError as e:  # a file-system fault no check foresaw (full disk, read-only mount)
    if os.environ.get("LANDSCAPE_TRACEBACK"):
      raise
    where = f" {e.filename}" if getattr(e, "filename", None) else ""
    return _error(f"cannot access{where}: {e.strerror or e}; check the path, its permissions "
                  "and free space, then rerun the same command (finished work is kept)")
  except Exception as e:  # noqa: BLE001 - accelerator out of memory, reported in one line
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    return _error("the device ran out of memory; pass a smaller --chunk-size or --batch-size "
                  "(a sweep resumes where it stopped)")


class _PipeSafe:
  """stdout that goes quiet instead of failing when its reader has gone (a broken pipe)."""

  def __init__(self, stream):
    self._stream, self.broken = stream, False

  def _quiet(self) -> None:
    self._stream, self.broken = open(os.devnull, "w"), True  # noqa: SIM115 - as long as stdout

  def write(self, text: str) -> int:
    try:
      return self._stream.write(text)
    except BrokenPipeError:
      self._quiet()
      return len(text)

  def flush(self) -> None:
    try:
      self._stream.flush()
    except BrokenPipeError:
      self._quiet()

  def __getattr__(self, name: str):
    return getattr(self._stream, name)


def _error(text: str) -> int:
  print(f"landscape: error: {' '.join(text.split())}", file=sys.stderr)
  return 2


def _blocks(text: str | None) -> Any:
  """``--blocks``: ``layer`` or a YAML mapping of block names to path patterns."""
  if text is None or text.strip() == "layer":
    return text and text.strip()
  from landscape import config
  value = config.parse_override(f"blocks={text}")[1]
  if not isinstance(value, dict):
    raise ConfigError(f"--blocks {text!r} is neither 'layer' nor a mapping; pass --blocks layer "
                      "or e.g. --blocks \"{conv: 'Conv_*/*'}\"")
  return value


def _csv(text: str | None) -> list[str] | None:
  return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _dispatch(a: argparse.Namespace) -> int:
  from landscape import pipeline
  if a.command in ("run", "train"):
    cfg = pipeline.resolve(a.config, a.overrides)
    out = a.out or _default_out(cfg)
    if a.command == "run":
      pipeline.run(cfg, out, overwrite=a.overwrite)
    else:
      pipeline.run_train(cfg, out, overwrite=a.overwrite)
  elif a.command == "surface":
    if a.one_d and a.y is not None:
      raise ConfigError(f"--y {a.y} is ignored by a --1d sweep; drop --y, or drop --1d for a "
                        "2-D surface")
    pipeline.run_surface(a.run, out=a.out, overrides=[*a.overrides, *_surface_overrides(a)],
                         overwrite=a.overwrite)
  elif a.command == "hessian":
    pipeline.run_hessian(a.file, run_dir=a.run, k=a.k, which=a.which, trace=a.trace,
                         density=a.density, curvature=a.map, operators=_csv(a.operator),
                         blocks=_blocks(a.blocks), overrides=a.overrides)
  elif a.command == "critical":
    pipeline.run_critical(a.file, run_dir=a.run, starts=a.starts, method=a.method,
                          overrides=a.overrides)
  elif a.command == "path":
    pipeline.run_path(a.run, a.to, out=a.out, methods=_csv(a.method), num=a.num,
                      plane=a.plane, saddle=a.saddle, overrides=a.overrides,
                      overwrite=a.overwrite)
  elif a.command == "plot":
    pipeline.run_plot(a.file, kinds=_csv(a.kind), formats=_csv(a.format) or ("pdf",), out=a.out)
  elif a.command == "view":
    pipeline.run_view(a.file, out=a.out, open_browser=a.open, overwrite=a.overwrite)
  elif a.command == "export-vtk":
    pipeline.run_export_vtk(a.file, out=a.out, field=a.field, interp=a.interp, log_scale=a.log,
                            zmax=a.zmax, overwrite=a.overwrite)
  elif a.command == "info":
    print(pipeline.run_info(a.file))
  return 0


if __name__ == "__main__":
  sys.exit(main())
