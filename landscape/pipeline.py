"""Config consumers: train, sweep, probe, find critical points, plot — one run directory.

Only this module reads a :class:`landscape.config.Config`; it turns config values
into explicit keyword arguments for the modules below. A run directory holds

  config.yaml     the resolved config
  history.csv     epoch, train_loss, train_acc, test_loss, test_acc
  ckpt/           flax msgpack checkpoints
  trajectory.h5   parameters at every saved epoch
  landscape.h5    surface, curvature, Hessian probes, critical points
  figures/        plots
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from landscape import _progress, _validate
from landscape import config as _config
from landscape import direction_kinds as _direction_kinds
from landscape.errors import ConfigError, unknown_name
# The run objects live in landscape.experiment; these names are re-exported where they were.
from landscape.experiment import (SPLITS, Experiment, Run, load_run,  # noqa: F401
                                  open_run, prepare, resolve)
from landscape.grid import Grid, grid_critical_points

PyTree = Any
# Sections of the config that determine a surface file's contents (its identity).
SURFACE_SECTIONS = ("data", "model", "loss", "train", "surface")


#: What a run directory holds besides config.yaml (what --overwrite replaces).
RUN_FILES = ("ckpt", "trajectory.h5", "history.csv", "landscape.h5", "figures")


def _check_train(cfg: _config.Config) -> None:
  """Refuse training hyperparameters outside their domain, naming the config key."""
  t, lo = cfg.train, cfg.loss
  checks = [("train.warmup_epochs", t.warmup_epochs, t.warmup_epochs >= 0, ">= 0"),
            ("loss.l2", lo.l2, lo.l2 >= 0, ">= 0"), ("loss.l1", lo.l1, lo.l1 >= 0, ">= 0"),
            ("train.b1", t.b1, 0 <= t.b1 < 1, "in [0, 1)"),
            ("train.b2", t.b2, 0 <= t.b2 < 1, "in [0, 1)"),
            ("train.momentum", t.momentum, t.optimizer != "sgd" or 0 <= t.momentum < 1,
             "in [0, 1)")]
  for key, value, ok, want in checks:
    if not ok:
      raise ConfigError(f"{key} must be {want}, got {value}; fix it with --set {key}=...")


def _train_identity(cfg: _config.Config) -> dict:
  d = _config.to_dict(cfg)
  ident = {k: d[k] for k in ("data", "model", "loss", "train")}
  ident["train"] = {k: v for k, v in ident["train"].items() if k != "epochs"}
  return ident


def run_train(cfg: _config.Config, out: str | Path, *, overwrite: bool = False,
              log: Callable[[str], None] = print):
  """Train as ``cfg`` says into ``out`` (resuming a run with the same config).

  Everything that can refuse the request (the config, the data, the output directory,
  an existing run with another config or more epochs) is checked before anything is
  written or removed.
  """
  from landscape import io as _io
  from landscape import train as _train
  out = Path(out)
  _io.check_output_dir(out, "run directory")
  saved_cfg = out / "config.yaml"
  if out.is_dir() and not saved_cfg.is_file():
    theirs = [n for n in RUN_FILES if (out / n).exists()]
    if theirs:
      raise ConfigError(f"{out} is not a landscape run (no config.yaml) but holds "
                        f"{', '.join(theirs)}, which training would replace; choose a new or "
                        "empty --out")
  resuming = saved_cfg.is_file() and not overwrite
  _check_train(cfg)
  old = _config.load(saved_cfg) if resuming else None
  if old is not None:
    if _train_identity(old) != _train_identity(cfg):
      diff = _config.first_difference(_train_identity(old), _train_identity(cfg))
      raise ConfigError(f"{out} holds a run with a different config ({diff}); pass "
                        "--overwrite to replace it or --out to train elsewhere")
    done = _train.list_checkpoints(out)
    if done and done[-1] > cfg.train.epochs:
      raise ConfigError(f"{out} holds a checkpoint at epoch {done[-1]}, past the "
                        f"{cfg.train.epochs} epochs asked for (train.epochs); raise epochs, or "
                        "train afresh elsewhere (--out) or with --overwrite")
  exp = prepare(cfg)
  t = cfg.train
  _train.check_args(epochs=t.epochs, batch_size=t.batch_size, save_every=t.save_every,
                    num_samples=int(exp.dataset.x_train.shape[0]))
  steps = max(1, exp.dataset.x_train.shape[0] // t.batch_size)
  sched = _train.make_schedule(t.schedule, lr=t.lr, epochs=t.epochs, steps_per_epoch=steps,
                               step_epochs=t.step_epochs, step_gamma=t.step_gamma,
                               warmup_epochs=t.warmup_epochs)
  tx = _train.make_optimizer(t.optimizer, sched, momentum=t.momentum, nesterov=t.nesterov,
                             b1=t.b1, b2=t.b2, weight_decay=t.weight_decay)
  # train.curvature: Hessian eigenvalues tracked during training (checked before any write)
  curvature = _train.CurvatureTracking(
      **_config.to_dict(cfg)["train"]["curvature"], schedule=sched, optimizer=t.optimizer,
      momentum=t.momentum if t.optimizer == "sgd" else 0.0, nesterov=t.nesterov)
  curvature.check(epochs=t.epochs, steps_per_epoch=steps,
                  num_samples=int(exp.dataset.x_train.shape[0]))
  if old is not None:
    if old.train.epochs != cfg.train.epochs and cfg.train.schedule != "constant":
      _progress.warn(f"resuming {out} with train.epochs {old.train.epochs} -> "
                     f"{cfg.train.epochs}: the {cfg.train.schedule} schedule of the epochs "
                     "already trained followed the old length, so the result differs from an "
                     "uninterrupted run")
  elif overwrite and out.exists():
    _io.remove_paths(out / name for name in RUN_FILES)
  _io.make_dirs(out)
  _config.dump(cfg, saved_cfg)
  ds = exp.dataset
  log(f"training {cfg.model.name} on {cfg.data.name} ({ds.x_train.shape[0]} samples) with "
      f"{cfg.loss.name}, {t.optimizer} lr={t.lr}, {t.epochs} epochs -> {out}")
  result = _train.train(exp.module, exp.variables, exp.loss, task=ds.task,
                        x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test,
                        y_test=ds.y_test, tx=tx, epochs=t.epochs, batch_size=t.batch_size,
                        seed=t.seed, save_every=t.save_every, l2=cfg.loss.l2, l1=cfg.loss.l1,
                        run_dir=out, curvature=curvature, log=log)
  last = result.history[-1]
  log(f"trained in {result.seconds:.1f} s: train loss {last['train_loss']:.4f} "
      f"acc {last['train_acc']:.2f}%, test loss {last['test_loss']:.4f} acc {last['test_acc']:.2f}%")
  return result


def _param_bytes(tree) -> int:
  return sum(int(np.prod(np.shape(x))) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


#: Surface settings that change how fast a sweep runs, not what it computes: they are not
#: part of a result file's identity, so a sweep may be resumed with other values.
SPEED_KEYS = ("batch_size", "chunk_size", "point_mode", "factorize")


def _surface_attrs(cfg: _config.Config, run_dir: Path) -> dict:
  """The root attributes of a surface file; ``config`` is its identity (no speed keys)."""
  cfg_dict = _config.to_dict(cfg)
  ident = {k: cfg_dict[k] for k in SURFACE_SECTIONS}
  ident["surface"] = {k: v for k, v in ident["surface"].items() if k not in SPEED_KEYS}
  s = cfg.surface
  return {"config": json.dumps(ident, sort_keys=True),
          "run_config": json.dumps(cfg_dict, sort_keys=True), "seed": s.seed,
          "direction_kind": s.direction, "norm": s.norm, "ignore": str(s.ignore),
          "bn_mode": s.bn_mode, "run_dir": str(Path(run_dir).resolve())}


def _with_overrides(run: Run, overrides: Sequence[str]) -> Run:
  """The run under its config with ``--set`` overrides applied."""
  return run.with_config(_config.apply_overrides(run.cfg, overrides)) if overrides else run


def _check_surface(s: _config.SurfaceConfig) -> Grid:
  """Refuse surface settings that would fail or be ignored; the grid."""
  from landscape import objective as _objective
  from landscape import surface as _surface
  xs = _config.grid(s.x, "--x")
  ys = _config.grid(s.y, "--y") if s.y else None
  _direction_kinds.check(s.direction)
  if s.targets and s.direction not in ("target", "plane"):
    raise ConfigError(f"--target/surface.targets {list(s.targets)} is used only with --direction "
                      f"target or plane, not {s.direction!r}; drop the targets or pass "
                      "--direction target")
  if s.direction == "plane" and (len(s.targets) != 2 or ys is None):
    raise ConfigError(f"--direction plane is the plane through the run and two other models: "
                      f"pass --target B --target C (got {len(s.targets)}) and a --y grid")
  for name, value in (("batch_size", s.batch_size), ("chunk_size", s.chunk_size)):
    if value is not None:
      _validate.integer(f"surface.{name} (--{name.replace('_', '-')})", value, low=1,
                        fix="omit it for the automatic choice")
  _validate.choice("point_mode", s.point_mode, _surface.POINT_MODES)
  _validate.choice("bn_mode", s.bn_mode, _objective.BN_MODES)
  if not s.splits:
    raise ConfigError("surface.splits is empty; pass --split train, test or train,test")
  for sp in s.splits:
    _validate.choice("split", sp, SPLITS)
  return Grid.of(xs, ys)


def _run_inputs(run_dir: Path) -> list[Path]:
  """The files of a run directory that a sweep reads and must never write onto."""
  from landscape import train as _train
  files = [run_dir / "config.yaml", run_dir / "history.csv", run_dir / "trajectory.h5"]
  files += [run_dir / "ckpt" / f"epoch_{e:04d}.msgpack" for e in _train.list_checkpoints(run_dir)]
  return [f for f in files if f.exists()]


def _surface_out(run_dir: Path, out: str | Path | None) -> Path:
  return Path(out) if out is not None else run_dir / "landscape.h5"


def _precheck_surface(cfg: _config.Config, run_dir: Path, out: Path, overwrite: bool) -> bool:
  """Refuse a surface request that would be refused later; whether ``out`` is resumed."""
  from landscape import io as _io
  grid = _check_surface(cfg.surface)
  return _io.check_grid_file(out, xs=grid.xs, ys=grid.ys, attrs=_surface_attrs(cfg, run_dir),
                             overwrite=overwrite)


@_progress.reports   # sweeps (and eigen directions) report progress through log
def run_surface(run_dir: str | Path, *, out: str | Path | None = None,
                overrides: Sequence[str] = (), overwrite: bool = False,
                log: Callable[[str], None] = print) -> Path:
  """Sweep the loss surface of a trained run into an HDF5 file (resumable).

  Every check that can refuse the request runs before the file is created or opened:
  a refused request leaves the disk as it was.
  """
  from landscape import _guards
  from landscape import io as _io
  from landscape import surface as _surface
  run = _with_overrides(open_run(run_dir), overrides)
  s = run.cfg.surface
  out = _surface_out(run.dir, out)
  _io.check_output(out, inputs=_run_inputs(run.dir), overwrite=True)
  grid = _check_surface(s)
  xs, ys = grid.xs, grid.ys
  attrs = _surface_attrs(run.cfg, run.dir)
  resumed = _io.check_grid_file(out, xs=xs, ys=ys, attrs=attrs, overwrite=overwrite)
  obj = run.objective(s.bn_mode)
  splits = run.splits(s.splits)
  fields = [f"{sp}_{n}" for sp in splits for n in ("loss", *obj.metrics)]
  _guards.check_grid(grid.size, len(fields), out.parent, what=f"a sweep of {grid.size} points",
                     extra_disk=grid.ndim * _param_bytes(obj.params), new_file=not resumed)
  built = _direction_kinds.build(s.direction, _direction_kinds.Request(
      s, run, obj, splits.get("train", next(iter(splits.values()))), grid.ndim, log))
  dirs, groups = built.directions, built.groups
  if built.centre is not obj.params:
    obj = dataclasses.replace(obj, params=built.centre)
  use_factorized = s.factorize and obj.factorizable
  if use_factorized:
    point_fn, fsplits = None, {}
    for sp, d in splits.items():
      point_fn, fsplits[sp] = obj.factorized(dirs, d, batch_size=s.batch_size)
    splits = {k: jax.tree.map(jnp.asarray, v) for k, v in fsplits.items()}
  else:
    point_fn = obj.point_fn(dirs)
  writer = None
  if jax.process_index() == 0:
    writer = _io.GridFile.open(out, xs=xs, ys=ys, fields=fields, attrs=attrs, directions=dirs,
                               overwrite=overwrite)
  try:
    done = writer.done if writer is not None else None
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      done = np.asarray(multihost_utils.broadcast_one_to_all(
          done if done is not None else np.zeros(grid.shape, bool)))
    for name, group in groups.items():
      if writer is not None:
        writer.write_group(name, group)
    todo = int((~done).sum())
    log(f"sweeping {todo} of {done.size} points ({'x'.join(map(str, done.shape[::-1]))} grid, "
        f"{s.direction} directions, norm={s.norm}, bn_mode={s.bn_mode}, "
        f"{'first-layer factorized' if use_factorized else 'generic'}) -> {out}")

    written = 0

    def on_chunk(idx, vals):
      nonlocal written
      if writer is None:
        return
      writer.write_points(idx, vals)
      written += len(idx)

    try:
      surf = _surface.sweep(point_fn, xs, ys, splits=splits, batch_size=s.batch_size,
                            chunk_size=s.chunk_size, point_mode=s.point_mode, done=done,
                            on_chunk=on_chunk, dtype=_surface.float_dtype(obj.params),
                            point_bytes=_param_bytes(obj.params))
    except Exception:
      if writer is not None and not resumed and written == 0:
        writer.close()   # a file this call created and filled with nothing: leave no trace
        Path(out).unlink(missing_ok=True)
      raise
  finally:
    if writer is not None:
      writer.close()
  if surf.num_evaluated and writer is not None:
    # how this sweep ran (tuned or given; results/README.md): speed attributes, not identity
    _io.GridFile.open(out, xs=xs, ys=ys, fields=fields, attrs={
        **attrs, "sweep_point_mode": surf.point_mode, "sweep_chunk_size": int(surf.chunk_size),
        "sweep_batch_size": int(surf.batch_size or 0), "sweep_hoisted": bool(surf.hoisted),
        "sweep_tuning": surf.tuning or {}}).close()
  if surf.num_evaluated:
    tuned = ("" if surf.tuning is None else
             f", tuned over {len(surf.tuning['candidates'])} candidate(s) in "
             f"{surf.tuning['overhead_s']:.2f} s of overhead")
    log(f"swept {surf.num_evaluated} points: compile {surf.compile_seconds:.2f} s, sweep "
        f"{surf.sweep_seconds:.2f} s ({surf.points_per_second:.1f} points/s, "
        f"{surf.point_mode} mode, chunk {surf.chunk_size}, batch "
        f"{surf.batch_size or 'all'}{tuned})")
  else:
    log("nothing to do: every point of the grid is already computed")
  return out


def _result_run(path: Path) -> tuple[Path, Any]:
  """The run directory a result file was computed from (its ``run_dir`` attribute)."""
  from landscape import io as _io
  r = _io.load(path)
  run_dir = r.attrs.get("run_dir")
  if not run_dir or not (Path(run_dir) / "config.yaml").is_file():
    raise ConfigError(f"{path} does not name an existing run directory (run_dir="
                      f"{run_dir!r}); pass --run DIR")
  return Path(run_dir), r


@dataclasses.dataclass(frozen=True)
class Probe:
  """A result file to probe, and the run it was computed from.

  Attributes:
    path: the result file.
    result: its contents (:class:`landscape.io.Result`).
    run: the opened run (its config with the command's ``--set`` overrides).
    objective: the run's objective in the file's BatchNorm mode.
  """
  path: Path
  result: Any
  run: Run
  objective: Any

  def centre(self) -> PyTree:
    """The centre of the stored surface: the trained point, or the first target model."""
    obj = self.objective
    if self.result.attrs.get("direction_kind") != "target":
      return obj.params
    cfg = self.result.attrs.get("config", {})
    cfg = json.loads(cfg) if isinstance(cfg, str) else cfg
    targets = (cfg.get("surface") or {}).get("targets") or []
    if not targets:
      raise ConfigError("the target surface does not record its targets; rerun landscape "
                        "surface")
    return obj.perturbed_of(self.run.variables_of(targets[0]))

  def directions(self) -> list[PyTree]:
    """The stored directions of the surface, shaped like the objective's ``params``."""
    from landscape import io as _io
    dirs = _io.read_directions(self.path, self.objective.params)
    if not dirs:
      raise ConfigError(f"{self.path} holds no directions/ group; it cannot anchor a "
                        "curvature map")
    return dirs


def _probe(path: str | Path | None, run_dir: str | Path | None,
           overrides: Sequence[str] = ()) -> Probe:
  """The result file a probe command works on, checked, and its run."""
  from landscape import io as _io
  if path is None:
    if run_dir is None:
      raise ConfigError("pass a result FILE or --run DIR")
    path = Path(run_dir) / "landscape.h5"
    if not path.is_file():
      raise ConfigError(f"{path} does not exist; sweep a surface first: landscape surface "
                        f"--run {run_dir}")
  path = Path(path)
  _io.check_result_file(path)   # foreign, corrupt or read-only: refused before computing
  if run_dir is None:
    run_dir, result = _result_run(path)
  else:
    result = _io.load(path)
  run = open_run(run_dir)
  _check_same_model(path, result, Path(run_dir), run.cfg)
  bn_mode = str(result.attrs.get("bn_mode", run.cfg.surface.bn_mode))
  obj = run.objective(bn_mode)
  return Probe(path, result, _with_overrides(run, overrides), obj)


def _check_same_model(path: Path, result, run_dir: Path, cfg: _config.Config) -> None:
  """Refuse probing a result file with a run of another experiment (data, model or loss)."""
  stored = result.attrs.get("config")
  if not isinstance(stored, dict):
    return   # the original tool's files record no config
  mine = _config.to_dict(cfg)
  for section in ("data", "model", "loss"):
    if section in stored and stored[section] != mine[section]:
      diff = _config.first_difference(stored[section], mine[section], section)
      raise ConfigError(f"{path} was swept from another experiment than the run {run_dir} "
                        f"({diff}); pass the --run it was computed from, or sweep a surface "
                        f"of {run_dir} first")


def _counts(section: str, **values) -> None:
  """Refuse config values that must be positive integers (``None`` allowed: a default)."""
  for key, value in values.items():
    if value is not None:
      _validate.integer(f"{section}.{key}", value, low=1,
                        fix=f"set it with --set {section}.{key}=N")


def _check_hessian(h: _config.HessianConfig, *, k: int, which: str, trace: bool,
                   density: bool, curvature: bool, operators: Sequence[str] = ("hessian",)
                   ) -> None:
  """Refuse Hessian settings before any probe runs or any file is touched."""
  from landscape import hessian as _hessian
  from landscape import operators as _operators
  if not operators:
    raise ConfigError("hessian.operators is empty; pass e.g. --operator hessian,ggn")
  for op in operators:
    _validate.choice("--operator (hessian.operators)", op, _operators.OPERATORS)
  if len(set(operators)) != len(operators):
    raise ConfigError(f"--operator {','.join(operators)} names an operator twice; name each "
                      "once")
  _validate.choice("which (hessian.which)", which, _hessian.WHICH)
  _validate.choice("hessian.hvp", h.hvp, _hessian.HVP_METHODS)
  _validate.integer("--k (hessian.k)", k, low=1, fix="pass e.g. --k 5")
  _counts("hessian", n_samples=h.n_samples, batch_size=h.batch_size, num_steps=h.num_steps)
  if trace:
    _counts("hessian", trace_samples=h.trace_samples)
    _validate.choice("hessian.trace_method", h.trace_method, _hessian.TRACE_METHODS)
  if density:
    _counts("hessian", density_runs=h.density_runs, density_steps=h.density_steps)
  if curvature:
    _counts("hessian", map_steps=h.map_steps)
    _validate.positive("hessian.map_tol", h.map_tol, optional=True, upper=1.0,
                       fix="set it with --set hessian.map_tol=0.01 (null: a fixed step count)")


def _check_critical(c: _config.CriticalConfig, method: str, starts: int) -> None:
  from landscape import critical as _critical
  _validate.choice("critical method", method, _critical.METHODS)
  _validate.integer("--starts (critical.starts)", starts, low=1, fix="pass e.g. --starts 4")
  _counts("critical", n_samples=c.n_samples)
  _validate.integer("critical.max_steps", c.max_steps, low=0,
                    fix="set it with --set critical.max_steps=N")
  _validate.positive("critical.tol", c.tol, fix="set it with --set critical.tol=1e-6")
  _validate.positive("critical.scale", c.scale, zero=True,
                     fix="set it with --set critical.scale=0.1")


@_progress.reports   # Lanczos/trace/SLQ steps and curvature-map rows through log
def run_hessian(path: str | Path | None = None, *, run_dir: str | Path | None = None,
                k: int | None = None, which: str | None = None, trace: bool | None = None,
                density: bool | None = None, curvature: bool | None = None,
                operators: Sequence[str] | None = None, blocks: Any = None,
                overrides: Sequence[str] = (), log: Callable[[str], None] = print) -> Path:
  """Curvature probes at the trained point into the ``hessian/`` group of a result file.

  For each of ``operators`` (default ``hessian.operators``: ``hessian``, ``ggn``,
  ``fisher``, ``residual``; :mod:`landscape.operators`) the extreme eigenvalues, trace and
  density go to ``hessian/`` (the Hessian) or ``hessian/OPERATOR/``; with ``blocks``
  (``"layer"`` or a mapping from block names to parameter-path patterns) the same probes
  of each diagonal block go to ``.../blocks/NAME/``. With ``curvature`` also the
  per-point ``max_eig``/``min_eig`` maps of the Hessian on the file's grid.
  """
  from landscape import hessian as _hessian
  from landscape import io as _io
  from landscape import operators as _operators
  probe = _probe(path, run_dir, overrides)
  path, result, obj = probe.path, probe.result, probe.objective
  h = probe.run.cfg.hessian
  k = h.k if k is None else k
  which = which or h.which
  trace = h.trace if trace is None else trace
  density = h.density if density is None else density
  curvature = h.map if curvature is None else curvature
  ops = tuple(h.operators if operators is None else operators)
  blocks = h.blocks if blocks is None else blocks
  _check_hessian(h, k=k, which=which, trace=trace, density=density, curvature=curvature,
                 operators=ops)
  block_index = _operators.resolve_blocks(obj.params, blocks) if blocks else {}
  data = probe.run.data("train", h.n_samples)
  if curvature:
    from landscape import _guards
    from landscape import curvature as _curvature_mod
    _guards.check_grid(result.grid.size, len(_curvature_mod.FIELDS), path.parent,
                       what=f"a curvature map of {result.grid.size} points", new_file=False)
    _check_map_settings(probe, _map_settings(h, data))
  key = jax.random.key(h.seed)
  t0 = time.perf_counter()
  hvps = 0
  masses: dict[str, float] = {}
  leaves = jax.tree.leaves(obj.params)
  paths = _operators.param_paths(obj.params)
  targets = [(op, None, obj.loss_fn, obj.params) for op in ops]
  for name, index in block_index.items():
    loss_b, params_b = _operators.restrict(obj.loss_fn, obj.params, index)
    targets += [(op, name, loss_b, params_b) for op in ops]
  for op, block, loss_fn, params in targets:
    dim = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))
    kb = min(k, dim)
    t1 = time.perf_counter()
    res = _hessian.probes(loss_fn, params, data, key=key, k=kb, which=which,
                          num_steps=h.num_steps, trace=trace, trace_method=h.trace_method,
                          trace_samples=h.trace_samples, density=density,
                          density_runs=h.density_runs, density_steps=h.density_steps,
                          batch_size=h.batch_size, hvp=h.hvp, operator=op)
    hvps += res.num_hvps
    title = _operators.TITLES[op] + ("" if block is None else f" block {block}")
    group = _probe_group(res, which=which, k=kb, trace=trace, density=density, dim=dim)
    attrs = {"num_samples": int(data[0].shape[0]), "which": which, "k": kb,
             "seconds": time.perf_counter() - t1, "hvp_method": res.hvp, "operator": op,
             "num_params": dim}
    if block is None:
      names = ("largest", "smallest") if which == "both" else (which,)
      for name, e in zip(names, res.eigen):
        log(f"{name} {kb} {title} eigenvalues: "
            f"{np.array2string(np.asarray(e.values), precision=5)}")
      worst = max(float(np.max(np.asarray(e.residuals))) for e in res.eigen)
      log(f"  ({res.eigen[0].num_hvps} Lanczos steps, Ritz residuals <= {worst:.2g}; products "
          f"by {res.hvp})")
      if trace:
        how = "Krylov-deflated hutch++" if h.trace_method == "hutch++" else h.trace_method
        log(f"{title} trace {group['trace']:.6g} ± {group['trace_stderr']:.2g} ({how}, "
            f"{res.trace_hvps} HVPs of its own)")
      if density:
        masses[op] = group["negative_mass"]
        log(f"{title} spectral density (SLQ, {h.density_runs} runs of >= {h.density_steps} "
            f"steps, the first the eigenvalue run): fraction of eigenvalues below "
            f"{group['negative_threshold']:.3g}: {group['negative_fraction']:.4f}, their sum "
            f"{0.0 - group['negative_mass']:.4g}")
      gname = "hessian" if op == "hessian" else f"hessian/{op}"
    else:
      attrs["paths"] = [paths[i] for i in block_index[block]]
      top = float(np.asarray(res.eigen[0].values)[0])
      extra = f", trace {group['trace']:.4g}" if trace else ""
      log(f"{title} ({dim} parameters, {len(attrs['paths'])} of {len(leaves)} leaves): "
          f"{'λ_max' if which != 'smallest' else 'λ_min'} {top:.5g}{extra}")
      gname = f"{'hessian' if op == 'hessian' else 'hessian/' + op}/blocks/{block}"
    group["num_hvps"] = res.num_hvps
    # Only what this call recomputed is replaced: a trace or density of an earlier call that
    # this one skipped (--no-trace, --no-density) stays, and so do other operators' groups.
    _io.write_group(path, gname, group, attrs=attrs, replace=False)
  if block_index:   # the blocks in parameter order, for figures and info
    _io.write_group(path, "hessian", {"block_names": list(block_index)}, replace=False)
  if {"hessian", "ggn"} <= set(masses):
    _log_decomposition(masses, log)
  if curvature:
    _curvature(probe, data, h, key, log)
  log(f"curvature probes ({hvps} products, {time.perf_counter() - t0:.1f} s) -> {path}")
  return path


def _probe_group(res, *, which: str, k: int, trace: bool, density: bool, dim: int) -> dict:
  """The datasets of one operator's (or block's) probes (results/README.md)."""
  from landscape import hessian as _hessian
  group: dict[str, Any] = {}
  names = ("largest", "smallest") if which == "both" else (which,)
  for name, e in zip(names, res.eigen):
    group[f"eigenvalues_{name}"] = np.asarray(e.values)
    group[f"residuals_{name}"] = np.asarray(e.residuals)
  if trace:
    est, err = res.trace
    group["trace"], group["trace_stderr"] = float(est), float(err)
  if density:
    dens = res.density
    # The bulk of a trained network's spectrum sits at 0 and SLQ puts a heavy node of
    # either sign there: eigenvalues within 1e-3 of the spectral radius count as zero.
    theta = np.asarray(dens.ritz_values, np.float64)
    zero = -1e-3 * float(np.max(np.abs(theta)))
    weights = np.asarray(dens.weights, np.float64)
    # dim · E_v[vᵀ min(A, 0) v]: the SLQ estimate of the sum of the eigenvalues below zero
    mass = max(0.0, -dim * float(np.mean(np.sum(np.where(theta < zero, weights * theta, 0.0),
                                                 -1))))
    group.update(density_grid=np.asarray(dens.grid), density=np.asarray(dens.density),
                 ritz_values=np.asarray(dens.ritz_values), ritz_weights=np.asarray(dens.weights),
                 negative_fraction=float(_hessian.negative_fraction(dens, threshold=zero)),
                 negative_threshold=zero, negative_mass=mass)
  return group


def _log_decomposition(masses: dict[str, float], log: Callable[[str], None]) -> None:
  """One line on where the negative curvature of H = G + R sits."""
  parts = ", ".join(f"{op} {m:.4g}" for op, m in masses.items())
  line = f"negative spectral mass (minus the sum of eigenvalues below zero, SLQ): {parts}"
  if "residual" in masses and masses["residual"] > 0:
    line += (f"; G is positive semidefinite for a convex output loss, so H's comes from R = H - "
             f"G (H/R = {masses['hessian'] / masses['residual']:.3f})")
  log(line)


def _map_settings(h: _config.HessianConfig, data) -> dict:
  """What a curvature map's values depend on besides the surface (its ``curvature_map/``)."""
  return {"tol": np.nan if h.map_tol is None else float(h.map_tol),
          "max_steps": int(h.map_steps), "warm_start": int(h.map_warm_start),
          "num_samples": int(data[0].shape[0])}


def _check_map_settings(probe: Probe, settings: dict) -> None:
  """Refuse to resume a curvature map with other settings than it was started with."""
  result = probe.result
  done = result.done.get("eig_done")
  stored = result.groups.get("curvature_map")
  if done is None or not done.any() or stored is None:
    return   # no map yet, or one without settings (recomputed: it lacks the residuals)
  for key, value in settings.items():
    old = stored.get(key)
    same = old is not None and bool(np.isclose(float(old), float(value), rtol=1e-6,
                                               equal_nan=True))
    if not same:
      fix = " ".join(f"--set hessian.map_{k.removeprefix('max_')}={_setting(k, stored.get(k))}"
                     for k in ("tol", "max_steps", "warm_start"))
      raise ConfigError(
          f"{probe.path} holds a curvature map ({int(done.sum())} of {done.size} points) "
          f"computed with {key}={_setting(key, old)}, not {_setting(key, value)}; resume it "
          f"with the same settings ({fix}, and hessian.n_samples="
          f"{_setting('num_samples', stored.get('num_samples'))}), or sweep a new surface "
          "file for other ones")


def _setting(key: str, value) -> str:
  if value is None:
    return "?"
  if key == "tol":
    return "null" if np.isnan(value) else f"{float(value):g}"
  if key == "warm_start":
    return "true" if value else "false"
  return str(int(value))


def _curvature(probe: Probe, data, h, key, log) -> None:
  from landscape import curvature as _curvature_mod
  from landscape import io as _io
  dirs, centre, result = probe.directions(), probe.centre(), probe.result
  settings = _map_settings(h, data)
  with _io.GridFile.open(probe.path, xs=result.xs, ys=result.ys,
                         fields=list(_curvature_mod.FIELDS), done="eig_done") as writer:
    done = writer.done
    stop = (f"to residuals <= {h.map_tol:g}·|λ_max|, at most {h.map_steps} Lanczos steps"
            if h.map_tol is not None else f"{h.map_steps} Lanczos steps each")
    log(f"curvature map: {int((~done).sum())} of {done.size} points, {stop}"
        f"{', warm-started at the centre' if h.map_warm_start else ''}")
    if not done.any():
      writer.write_group("curvature_map", settings)
    cmap = _curvature_mod.curvature_map(
        probe.objective.loss_fn, centre, dirs, result.xs, result.ys, data,
        key=jax.random.fold_in(key, 3), num_steps=h.map_steps, tol=h.map_tol,
        warm_start=h.map_warm_start, batch_size=h.batch_size, done=done,
        on_chunk=writer.write_points)
  if cmap.num_evaluated:
    log(f"curvature map: compile {cmap.compile_seconds:.2f} s, {cmap.num_evaluated} points in "
        f"{cmap.sweep_seconds:.2f} s ({cmap.points_per_second:.2f} points/s)")


@_progress.reports   # each search's start and steps through log
def run_critical(path: str | Path | None = None, *, run_dir: str | Path | None = None,
                 starts: int | None = None, method: str | None = None,
                 overrides: Sequence[str] = (), log: Callable[[str], None] = print) -> Path:
  """Critical points near the trained model into the ``critical/`` group of a result file.

  Searches start at the trained point, at random perturbations of it, and at the
  discrete critical points of the stored 2-D surface; the grid's own minima, saddles
  and maxima (finite differences) are stored too, as ``grid_*``.
  """
  from landscape import critical as _critical
  from landscape import directions as _dirs
  from landscape import io as _io
  probe = _probe(path, run_dir, overrides)
  path, result, obj = probe.path, probe.result, probe.objective
  c = probe.run.cfg.critical
  starts = c.starts if starts is None else starts
  method = method or c.method
  _check_critical(c, method, starts)
  data = probe.run.data("train", c.n_samples)
  key = jax.random.key(c.seed)
  group: dict[str, Any] = {}
  dirs = None
  centre = obj.params
  grid_starts = []
  if result.ys is not None and "train_loss" in result.fields:
    gcp = grid_critical_points(result.xs, result.ys, result.fields["train_loss"])
    group.update(grid_coords=gcp.coords, grid_loss=gcp.loss, grid_kind=gcp.kind.astype(str),
                 grid_index=gcp.index)
    log(f"grid critical points of train_loss: {len(gcp)} "
        f"({', '.join(f'{n} {k}' for k, n in zip(*np.unique(gcp.kind, return_counts=True)))})")
    dirs, centre = probe.directions(), probe.centre()
    from landscape import surface as _surface
    grid_starts = [_surface.shift(centre, dirs, jnp.asarray(xy, _surface.float_dtype(centre)))
                   for xy in gcp.coords[: max(0, starts - 1)]]
  n_random = max(0, starts - 1 - len(grid_starts))
  start_list = [centre, *grid_starts,
                *_critical.perturbations(key, centre, n_random, c.scale)][:starts]
  labels = ["the surface centre",
            *([f"grid {kind} at ({x:.3g}, {y:.3g})"
               for (x, y), kind in zip(gcp.coords, gcp.kind)][:len(grid_starts)]
              if grid_starts else []),
            *(f"random perturbation {j + 1} (scale {c.scale:g})" for j in range(n_random))]
  t0 = time.perf_counter()
  found = _critical.scan(obj.loss_fn, start_list, data, method=method, max_steps=c.max_steps,
                         tol=c.tol, key=jax.random.fold_in(key, 1), keep_unconverged=True,
                         labels=labels[:len(start_list)])
  coords = np.full((len(found), 2), np.nan)
  if dirs is not None and len(dirs) == 2:
    for i, cp in enumerate(found):
      coords[i] = _dirs.coordinates(obj.model_part(centre), obj.model_part(dirs[0]),
                                    obj.model_part(dirs[1]), obj.model_part(cp.params))
  group.update(coords=coords, loss=np.array([cp.loss for cp in found]),
               grad_norm=np.array([cp.grad_norm for cp in found]),
               index=np.array([cp.index for cp in found]),
               kind=np.array([cp.kind for cp in found], dtype=str),
               index_method=np.array([cp.index_method for cp in found], dtype=str),
               **_certificate_arrays(found))
  _io.write_group(path, "critical", group, attrs={"method": method, "starts": len(start_list),
                                                  "num_samples": int(data[0].shape[0]),
                                                  "tol": c.tol})
  for cp in found:
    cert = cp.certificate
    bounds = "" if cert is None else (
        f", certified index in [{cert.index_lower}, "
        f"{'?' if cert.index_upper is None else cert.index_upper}] below -{cert.eps:.2g}"
        f" (margin {cert.margin:.2g})")
    log(f"  {cp.kind:<14} loss {cp.loss:.6g}  |grad| {cp.grad_norm:.2e}  index {cp.index:.4f} "
        f"({cp.index_method}, {cp.steps} steps{bounds})")
  log(f"{len(found)} distinct points from {len(start_list)} starts ({method}, "
      f"{time.perf_counter() - t0:.1f} s) -> {path}")
  return path



# ----------------------------------------------------------------------- paths

PATH_METHODS = ("linear", "curve", "neb")
_NEB_INITS = ("curve", "linear")


def _check_paths(p: _config.PathsConfig, methods: Sequence[str], num: int) -> None:
  """Refuse path settings before anything is computed or written."""
  from landscape import paths as _paths
  if not methods:
    raise ConfigError("--method names no method; pass e.g. --method linear,curve,neb")
  for m in methods:
    _validate.choice("path method", m, PATH_METHODS)
  if len(set(methods)) != len(methods):
    raise ConfigError(f"--method lists a method twice ({','.join(methods)}); name each once")
  _validate.integer("--num (paths.num)", num, low=2, fix="pass e.g. --num 33")
  _validate.choice("paths.curve_kind", p.curve_kind, _paths.CURVE_KINDS)
  _validate.choice("paths.neb_init", p.neb_init, _NEB_INITS)
  _counts("paths", bends=p.bends, curve_batch_size=p.curve_batch_size, n_samples=p.n_samples,
          batch_size=p.batch_size, saddle_k=p.saddle_k, save_every=p.save_every)
  _validate.integer("paths.neb_images", p.neb_images, low=3,
                    fix="set it with --set paths.neb_images=17")
  _validate.integer("paths.plane_num", p.plane_num, low=2,
                    fix="set it with --set paths.plane_num=21")
  for key in ("curve_steps", "neb_steps", "saddle_steps"):
    _validate.integer(f"paths.{key}", getattr(p, key), low=0,
                      fix=f"set it with --set paths.{key}=N")
  for key in ("curve_lr", "neb_tol", "spring", "saddle_tol"):
    _validate.positive(f"paths.{key}", getattr(p, key), fix=f"set it with --set paths.{key}=...")
  _validate.positive("paths.plane_margin", p.plane_margin, zero=True,
                     fix="set it with --set paths.plane_margin=0.25")


def _check_path_runs(a: Run, b: Run) -> None:
  """Refuse two runs that are not two trainings of one model on one dataset and loss."""
  if a.dir.resolve() == b.dir.resolve():
    raise ConfigError(f"--to {b.dir} is the run itself; pass a second run of the same config "
                      f"(e.g. `landscape train --set train.seed=1 --out {a.dir}_seed1`)")
  ca, cb = _config.to_dict(a.cfg), _config.to_dict(b.cfg)
  for section in ("data", "model", "loss"):
    if ca[section] != cb[section]:
      diff = _config.first_difference(ca[section], cb[section], section)
      raise ConfigError(f"the runs {a.dir} and {b.dir} differ in {diff}; a path joins two "
                        "minima of one model: train the second run from the same config with "
                        "another train.seed")


def _method_settings(p: _config.PathsConfig, method: str, num: int) -> dict:
  """The settings that determine a stored path (its group's identity)."""
  keys = {"linear": (), "curve": ("curve_kind", "bends", "curve_steps", "curve_lr",
                                  "curve_batch_size", "seed"),
          "neb": ("neb_images", "neb_steps", "neb_tol", "spring", "neb_init", "n_samples",
                  "curve_kind", "bends", "curve_steps", "curve_lr", "curve_batch_size", "seed")}
  out = {k: getattr(p, k) for k in keys[method]}
  if method == "neb" and p.neb_init == "linear":
    out = {k: v for k, v in out.items() if not k.startswith("curve") and k not in ("bends",)}
  if method != "neb":
    out["num"] = num
  return out


def _stored_settings(result: Any, method: str) -> dict | None:
  attrs = result.group_attrs.get(f"paths/{method}")
  if not attrs or "settings" not in attrs:
    return None
  s = attrs["settings"]
  return json.loads(s) if isinstance(s, str) else s


def _tree_arrays(prefix: str, tree: PyTree) -> dict:
  return {f"{prefix}_{i:04d}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(tree))}


def _tree_from(group: dict, prefix: str, like: PyTree) -> PyTree:
  leaves = [jnp.asarray(group[f"{prefix}_{i:04d}"]) for i in range(len(jax.tree.leaves(like)))]
  return jax.tree.unflatten(jax.tree.structure(like), leaves)


def _path_group(path: Any, settings: dict) -> tuple[dict, dict]:
  """The ``paths/<method>`` arrays and attributes of an evaluated path."""
  arrays = {"t": np.asarray(path.ts, np.float64), "barrier": path.barrier, "peak": path.peak}
  arrays.update({k: np.asarray(v) for k, v in path.values.items()})
  attrs = {"method": path.method, "barrier": path.barrier, "peak": path.peak,
           "settings": json.dumps(settings, sort_keys=True)}
  return arrays, attrs


def _path_line(name: str, path: Any, extra: str = "") -> str:
  loss = path.values["train_loss"]
  return (f"  {name:<7} barrier {path.barrier:.4g} (train loss max {np.nanmax(loss):.4g} at "
          f"t={path.ts[path.peak]:.3f}; ends {loss[0]:.4g}, {loss[-1]:.4g}){extra}")


def _check_band(band: Any, num_samples: int) -> None:
  """Warn when a relaxed band does not join two minima over a barrier."""
  loss = np.asarray(band.values["loss"], np.float64)
  low, ends = float(np.nanmin(loss[1:-1])), (float(loss[0]), float(loss[-1]))
  if low < min(ends):
    _progress.warn(f"the band's images go below both ends on its {num_samples} samples (lowest "
                   f"{low:.4g}, ends {ends[0]:.4g}, {ends[1]:.4g}): the runs are not minima of "
                   "that loss, so the band slides off them and has no barrier to climb; train "
                   "both runs to convergence (full batch, an L2 term) or use more samples "
                   "(--set paths.n_samples=null)")
  elif band.peak in (0, len(loss) - 1):
    _progress.warn("the band has no barrier: its highest point is an end, so there is no "
                   "saddle between the two runs on this loss")


@_progress.reports   # curve-fit and band steps, sweeps and the saddle search through log
def run_path(run_dir: str | Path, to: str | Path, *, out: str | Path | None = None,
             methods: Sequence[str] | None = None, num: int | None = None,
             plane: bool = False, saddle: bool = False, overrides: Sequence[str] = (),
             overwrite: bool = False, log: Callable[[str], None] = print) -> Path:
  """Paths between the minima of two runs: linear, a fitted curve, a nudged elastic band.

  ``out`` (default ``RUN/path.h5``) is a 1-D result file along the segment from run A
  (``t = 0``) to run B (``t = 1``): its grid is the linear path (fields ``train_loss``,
  ``test_loss``, ``train_acc``, ``test_acc``; direction ``x = B − A``), swept and resumed
  like any surface. Each method adds ``paths/<method>`` (``t``, the four fields along the
  path, ``barrier``, ``peak``; the curve's control points, the band's images and force
  history); ``saddle`` adds ``saddle/`` (the band's peak refined by Newton-MR with a
  certified Morse index); ``plane`` writes ``OUT_plane.h5``, the surface on the plane
  through A, B and the curve's bend (or the band's peak) with every path projected on it.
  Curve fitting and the band save their state beside ``out`` every ``paths.save_every``
  steps, so a killed run resumes to the uninterrupted result; a method already stored
  with the same settings is read back, not recomputed.
  """
  from landscape import io as _io
  from landscape import paths as _paths
  from landscape import surface as _surface
  run = _with_overrides(open_run(run_dir), overrides)
  other = open_run(to)
  _check_path_runs(run, other)
  p = run.cfg.paths
  methods = list(methods or p.methods)
  num = p.num if num is None else num
  _check_paths(p, methods, num)
  if plane and not {"curve", "neb"} & set(methods):
    raise ConfigError("--plane draws the plane through A, B and the curve's bend or the "
                      "band's peak; add --method curve or neb")
  out = Path(out) if out is not None else run.dir / "path.h5"
  plane_out = out.with_name(out.stem + "_plane.h5")
  inputs = [*_run_inputs(run.dir), *_run_inputs(other.dir)]
  _io.check_output(out, inputs=inputs, overwrite=True)
  if plane:
    _io.check_output(plane_out, inputs=[*inputs, out], overwrite=True)
  variables = run.variables
  bn_mode = "recompute" if "batch_stats" in variables else "eval"
  obj = run.objective(bn_mode)
  start = obj.params
  end = obj.perturbed_of(other.variables)
  try:
    start, end = _paths.check_endpoints(start, end)
  except ConfigError as exc:
    raise ConfigError(f"the checkpoints of {run.dir} and {other.dir} differ: {exc}") from None
  ts = np.linspace(0.0, 1.0, num)
  direction = jax.tree.map(lambda a, b: b - a, start, end)
  attrs = {**_surface_attrs(run.cfg, run.dir), "direction_kind": "target", "norm": "none",
           "ignore": "none", "bn_mode": bn_mode, "path_to": str(other.dir),
           "path_to_config": json.dumps(_config.to_dict(other.cfg), sort_keys=True)}
  resumed = _io.check_grid_file(out, xs=ts, attrs=attrs, overwrite=overwrite)
  stored = _io.load(out) if resumed else None
  if stored is not None:
    for m in methods:
      have = _stored_settings(stored, m)
      if have is not None and have != _method_settings(p, m, num):
        diff = _config.first_difference(have, _method_settings(p, m, num), f"paths.{m}")
        raise ConfigError(f"{out} holds a {m} path made with other settings ({diff}); pass "
                          "--overwrite to recompute it, or another --out")
  splits = run.splits(["train", "test"])
  subset = run.data("train", p.n_samples)
  fields = [f"{sp}_{n}" for sp in splits for n in ("loss", *obj.metrics)]
  dtype = _surface.float_dtype(start)
  state_of = {m: out.with_name(out.name + f".{m}.state") for m in ("curve", "neb")}
  log(f"paths from {run.dir} (t=0) to {other.dir} (t=1): {', '.join(methods)}"
      f"{' + saddle' if saddle else ''}{' + plane' if plane else ''} -> {out}")

  if overwrite:   # the saved states of an earlier request go with the file they fed
    _io.remove_paths([f for f in state_of.values() if f.exists()])
  # The linear path is the file's grid: a resumable 1-D sweep.
  with _io.GridFile.open(out, xs=ts, fields=fields, attrs=attrs, directions=[direction],
                         overwrite=overwrite) as writer:
    done = writer.done
    if not done.all():
      _surface.sweep(obj.point_fn([direction]), ts, None, splits=splits,
                     batch_size=p.batch_size, done=done, on_chunk=writer.write_points,
                     dtype=dtype, point_bytes=_param_bytes(start), desc="linear path")
  result = _io.load(out)
  barrier_fn = _paths.barrier
  lin_values = {k: result.fields[k] for k in fields}
  b, peak = barrier_fn(ts, lin_values["train_loss"].astype(np.float64))
  found: dict[str, Any] = {"linear": _paths.Path("linear", ts, lin_values, b, peak, start, end)}
  groups: dict[str, tuple[dict, dict]] = {}
  if "linear" in methods:
    groups["linear"] = _path_group(found["linear"], _method_settings(p, "linear", num))
    _io.write_group(out, "paths/linear", *groups["linear"])
  log(_path_line("linear", found["linear"]))

  curve = None
  neb_stored = ("neb" in methods and _stored_settings(result, "neb") == _method_settings(
      p, "neb", num) and "neb/images_0000" in result.groups.get("paths", {}))
  if "curve" in methods or ("neb" in methods and p.neb_init == "curve" and not neb_stored):
    settings = _method_settings(p, "curve", num)
    group = result.groups.get("paths", {})
    if _stored_settings(result, "curve") == settings and "curve/control_0000" in group:
      sub = {k.removeprefix("curve/"): v for k, v in group.items() if k.startswith("curve/")}
      bends = jax.tree.map(lambda a: a[1:-1], _tree_from(sub, "control", jax.tree.map(
          lambda a: jnp.stack([a, a, a]), start)))
      curve = _paths.Curve(p.curve_kind, start, end, bends, np.asarray(sub["history"]),
                           p.curve_steps)
      log(f"curve: read back from {out} (fitted before with the same settings)")
    else:
      import optax
      curve = _paths.fit_curve(obj.loss_fn, start, end, run.data("train"), kind=p.curve_kind,
                               bends=p.bends, steps=p.curve_steps,
                               optimizer=optax.adam(p.curve_lr),
                               batch_size=p.curve_batch_size, key=jax.random.key(p.seed),
                               state_path=state_of["curve"], save_every=p.save_every,
                               tag=json.dumps(settings, sort_keys=True))
    along = _paths.evaluate(obj.loss_fn, curve, ts=num, splits=splits, batch_size=p.batch_size,
                            metrics=obj.metrics)
    found["curve"] = along
    if "curve" in methods:
      arrays, gattrs = _path_group(along, settings)
      arrays.update(_tree_arrays("control", curve.control_points), history=curve.history)
      gattrs.update(curve_kind=curve.kind, bends=curve.num_bends, steps=curve.steps)
      groups["curve"] = (arrays, gattrs)
      _io.write_group(out, "paths/curve", arrays, gattrs)
      log(_path_line("curve", along, f", {curve.kind} with {curve.num_bends} bend(s), "
                     f"{curve.steps} steps"))
    state_of["curve"].unlink(missing_ok=True)

  band = None
  if "neb" in methods:
    settings = _method_settings(p, "neb", num)
    group = {k.removeprefix("neb/"): v for k, v in result.groups.get("paths", {}).items()
             if k.startswith("neb/")}
    if neb_stored:
      images = _tree_from(group, "images", start)
      hist = np.asarray(group["history"])
      gat = result.group_attrs.get("paths/neb", {})
      band = _paths.Path("neb", np.asarray(group["t"]), {"loss": np.asarray(group["band_loss"])},
                         float(gat["band_barrier"]), int(gat["band_peak"]), start, end, images,
                         hist, bool(gat["converged"]), int(gat["steps"]))
      log(f"neb: read back from {out} (relaxed before with the same settings)")
    else:
      init = None
      if p.neb_init == "curve" and curve is not None:
        init = curve.at(np.linspace(0.0, 1.0, p.neb_images))
      band = _paths.neb(obj.loss_fn, start, end, subset, num_images=p.neb_images,
                        steps=p.neb_steps, tol=p.neb_tol, spring=p.spring,
                        batch_size=p.batch_size, init=init, state_path=state_of["neb"],
                        save_every=p.save_every)
    _check_band(band, int(subset[0].shape[0]))
    on_data = _paths.evaluate(obj.loss_fn, band, splits=splits, batch_size=p.batch_size,
                              metrics=obj.metrics)
    found["neb"] = on_data
    arrays, gattrs = _path_group(on_data, settings)
    arrays.update(_tree_arrays("images", band.images), history=band.history,
                  band_loss=band.values["loss"])
    gattrs.update(converged=bool(band.converged), steps=int(band.steps),
                  num_images=p.neb_images, band_barrier=band.barrier, band_peak=band.peak,
                  num_samples=int(subset[0].shape[0]))
    groups["neb"] = (arrays, gattrs)
    _io.write_group(out, "paths/neb", arrays, gattrs)
    state_of["neb"].unlink(missing_ok=True)
    log(_path_line("neb", on_data, f", {band.steps} steps, "
                   f"{'converged' if band.converged else 'not converged'} (max force "
                   f"{band.history[-1]:.3g}, tol {p.neb_tol:g}, on {subset[0].shape[0]} samples)"))

  saddle_group = None
  if saddle:
    source = band if band is not None else found.get("curve") or found["linear"]
    name = source.method
    cs = _paths.saddle(obj.loss_fn, source, subset, k=p.saddle_k, tol=p.saddle_tol,
                       max_steps=p.saddle_steps, batch_size=p.batch_size,
                       key=jax.random.key(p.seed))
    upper = -1 if cs.index_upper is None else int(cs.index_upper)
    saddle_group = ({"eigenvalues": cs.eigenvalues, "residuals": cs.residuals},
                    {"loss": cs.loss, "grad_norm": cs.grad_norm, "largest": cs.largest,
                     "eps": cs.eps, "noise": cs.noise, "margin": cs.margin,
                     "index_lower": cs.index_lower, "index_upper": upper,
                     "near_zero": cs.near_zero, "exhaustive": bool(cs.exhaustive),
                     "converged": bool(cs.converged), "kind": cs.kind, "method": name,
                     "start": int(cs.start), "t": float(source.ts[cs.start]),
                     "num_samples": int(subset[0].shape[0])})
    _io.write_group(out, "saddle", *saddle_group)
    ends = source.values.get("loss", source.values.get("train_loss"))
    if cs.loss < min(float(ends[0]), float(ends[-1])):
      _progress.warn(f"the critical point found from the {name} peak has loss {cs.loss:.4g}, "
                     f"below both ends ({float(ends[0]):.4g}, {float(ends[-1]):.4g}): it is not "
                     "the barrier between them (the ends are not minima of this loss)")
    bounds = f"[{cs.index_lower}, {'?' if cs.index_upper is None else cs.index_upper}]"
    note = "" if cs.kind == "saddle" and cs.index_lower == 1 and cs.index_upper == 1 else (
        "  (not a certified index-1 saddle: a minimum-energy path's highest point should be)")
    log(f"  saddle  from the {name} peak (t={source.ts[cs.start]:.3f}): {cs.kind}, loss "
        f"{cs.loss:.6g}, |grad| {cs.grad_norm:.2e}, index in {bounds}, {cs.near_zero} "
        f"near-zero of {len(cs.eigenvalues)} smallest (eps {cs.eps:.2e}){note}")

  if plane:
    _path_plane(plane_out, obj, start, end, curve, band, found, groups, saddle_group, attrs,
                p, splits, fields, overwrite, log)
  return out


def _path_plane(plane_out: Path, obj, start, end, curve, band, found, groups, saddle_group,
                attrs, p, splits, fields, overwrite, log) -> None:
  """The surface on the plane through A, B and the bend (or the band's peak)."""
  from landscape import io as _io
  from landscape import paths as _paths
  from landscape import surface as _surface
  if curve is not None:
    third, label = jax.tree.map(lambda a: a[0], curve.bends), "bend"
  else:
    third, label = band.point(band.peak), "NEB peak"
  pl = _paths.plane(start, end, third, labels=("A", "B", label))
  xs_pts, ys_pts = pl.points[:, 0], pl.points[:, 1]
  dist = float(xs_pts[1])
  m = p.plane_margin * dist
  xs = np.linspace(min(xs_pts.min(), 0.0) - m, max(xs_pts.max(), dist) + m, p.plane_num)
  ys = np.linspace(min(ys_pts.min(), 0.0) - m, max(ys_pts.max(), 0.0) + m, p.plane_num)
  plane_attrs = {**attrs, "direction_kind": "plane"}
  with _io.GridFile.open(plane_out, xs=xs, ys=ys, fields=fields, attrs=plane_attrs,
                         directions=[pl.u, pl.v], overwrite=overwrite) as writer:
    done = writer.done
    if not done.all():
      log(f"plane through A, B and the {label}: {p.plane_num}x{p.plane_num} grid -> "
          f"{plane_out}")
      _surface.sweep(_surface.point_loss_fn(obj.loss_fn, pl.origin, [pl.u, pl.v], obj.metrics),
                     xs, ys, splits=splits, batch_size=p.batch_size, done=done,
                     on_chunk=writer.write_points, dtype=_surface.float_dtype(start),
                     point_bytes=2 * _param_bytes(start), desc="plane")
    writer.write_group("plane", {"points_x": xs_pts, "points_y": ys_pts,
                                 "labels": list(pl.labels)}, {"plane_kind": pl.kind})
    for name, path in found.items():
      if name not in groups:
        continue
      arrays, gattrs = groups[name]
      xy = pl.project(path.points)
      keep = {k: v for k, v in arrays.items()
              if not k.startswith(("control_", "images_"))}
      writer.write_group(f"paths/{name}", {**keep, "plane_x": xy[:, 0], "plane_y": xy[:, 1]},
                         gattrs)
    if saddle_group is not None:
      writer.write_group("saddle", *saddle_group)


def _certificate_arrays(found: Sequence[Any]) -> dict[str, np.ndarray]:
  """Per point: the certified index bounds, the flat band and the noise margin (−1/NaN for
  a point that was not examined; ``index_upper`` −1 also when it is unknown)."""
  def get(cp, name, missing):
    cert = cp.certificate
    value = None if cert is None else getattr(cert, name)
    return missing if value is None else value
  return {"index_lower": np.array([get(cp, "index_lower", -1) for cp in found]),
          "index_upper": np.array([get(cp, "index_upper", -1) for cp in found]),
          "eig_eps": np.array([get(cp, "eps", np.nan) for cp in found], float),
          "eig_margin": np.array([get(cp, "margin", np.nan) for cp in found], float)}


def run_info(path: str | Path) -> str:
  """A human-readable summary of a result file.

  Besides the grid, settings, done masks, field ranges and groups: for a curvature map how
  many points converged to the file's tolerance (``curvature_map/tol``), and for a 2-D
  surface the non-convexity metrics of :func:`landscape.grid.nonconvexity` (defaults:
  the central half of each axis, threshold 0.1).
  """
  from landscape import grid as _grid
  from landscape import io as _io
  from landscape.errors import DataError

  def _frac(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:.3g}"

  if _io.is_trajectory(path):
    return _trajectory_info(path)
  r = _io.load(path)
  lines = [f"{path}: {'original loss-landscape layout' if r.is_original_layout else 'landscape-hdf5'}"]
  g = f"x: {r.xs[0]:g}:{r.xs[-1]:g}:{len(r.xs)}"
  if r.ys is not None:
    g += f"   y: {r.ys[0]:g}:{r.ys[-1]:g}:{len(r.ys)}"
  lines.append(f"grid  {g}")
  for k in ("direction_kind", "norm", "ignore", "bn_mode", "seed", "created",
            "landscape_version", "jax_version"):
    if k in r.attrs:
      lines.append(f"{k:<18}{r.attrs[k]}")
  for name, mask in r.done.items():
    lines.append(f"{name:<18}{int(mask.sum())}/{mask.size} points computed")
  for name, v in r.fields.items():
    finite = v[np.isfinite(v)]
    if finite.size:
      lines.append(f"{name:<18}min {finite.min():.6g}  max {finite.max():.6g}  "
                   f"({v.size - finite.size} not finite/not computed)")
    else:
      lines.append(f"{name:<18}no finite values yet")
  for gname, group in r.groups.items():
    if gname == "hessian":
      lines += _curvature_lines(group)
    else:
      lines.append(f"[{gname}] " + ", ".join(sorted(group)))
  if "max_eig" in r.fields and "min_eig" in r.fields:
    eig_done = r.done_for("max_eig")
    computed = np.isfinite(r.fields["max_eig"]) & np.isfinite(r.fields["min_eig"])
    if eig_done is not None:
      computed &= eig_done
    n = int(computed.sum())
    settings = r.groups.get("curvature_map", {})
    steps = settings.get("max_steps")
    steps = "?" if steps is None else str(int(np.asarray(steps)))
    tol = _grid.stored_map_tol(r)
    if not all(k in r.fields for k in _grid.EIG_FIELDS[:4]):
      status = (f"{n} points computed, residuals not stored (computed before they were "
                "recorded)")
    elif tol is None:
      status = f"{n} points computed, no tolerance ({steps} Lanczos steps each)"
    else:
      ok = _grid.eig_converged(r.fields, tol)
      warm = settings.get("warm_start")
      start = "" if warm is None else (", warm start" if int(np.asarray(warm)) else
                                       ", cold start")
      status = (f"{int((ok & computed).sum())}/{n} points converged (tol {tol:g}, max "
                f"{steps} steps{start})")
    lines.append(f"{'curvature map':<18}{status}")
  if r.ys is not None:
    try:
      m = _grid.nonconvexity(r)
    except (ConfigError, DataError) as exc:
      lines.append(f"{'non-convexity':<18}not computed: {exc}")
    else:
      ny, nx = m.central_shape
      lines.append(f"{'non-convexity':<18}{m.field}, central {ny} x {nx} points "
                   f"(|x|, |y| <= {m.radius:g}·max of each axis)")
      if m.has_map:
        which = (f"{m.num_converged} converged (tol {m.tol:g}) of {m.num_map_points}"
                 if m.tol is not None else f"{m.num_map_points}" + (
                     "" if m.residuals_known else ", convergence unknown,"))
        lines.append(f"  {'eig_ratio':<16}{_frac(m.ratio_fraction)}  (fraction of {which} "
                     f"map points with |min_eig/max_eig| > {m.threshold:g})")
      lines.append(f"  {'indefinite':<16}{_frac(m.indefinite_fraction)}  (fraction of "
                   f"{m.num_points} points where the plane's finite-difference Hessian has "
                   "det < 0)")
      lines.append(f"  {'critical':<16}{m.minima} minima, {m.saddles} saddles, "
                   f"{m.maxima} maxima")
  return "\n".join(lines)


def _trajectory_info(path: str | Path) -> str:
  """The summary of a training run's ``trajectory.h5``: its curvature probes, if tracked."""
  from landscape import io as _io
  r = _io.load_trajectory(path)
  lines = [f"{path}: landscape training trajectory"]
  for k in ("created", "landscape_version", "jax_version"):
    if k in r.attrs:
      lines.append(f"{k:<18}{r.attrs[k]}")
  c = r.groups.get("curvature")
  if not c or not np.size(c.get("step", [])):
    lines.append("curvature         not tracked (train with --set train.curvature.every=N)")
    return "\n".join(lines)
  a = r.group_attrs.get("curvature", {})
  steps, hvps = np.asarray(c["step"]), np.asarray(c["probe_hvps"])
  lines.append(f"{'curvature':<18}{steps.size} probes, steps {int(steps[0])}..{int(steps[-1])} "
               f"(every {a.get('every', '?')} {a.get('unit', '?')}, k={a.get('k', '?')}, "
               f"{a.get('which', '?')}, tol {a.get('tol', '?')}, {a.get('n_samples', '?')} "
               f"samples{', warm-started' if a.get('warm_start') else ''})")
  for key, label in (("lambda_max", "λ_max"), ("lambda_min", "λ_min")):
    v = np.asarray(c.get(key, []), float)
    if v.size and np.isfinite(v).any():
      lines.append(f"  {label:<16}first {v[0]:.5g}, last {v[-1]:.5g}, range "
                   f"[{np.nanmin(v):.5g}, {np.nanmax(v):.5g}]")
  res = [np.asarray(c[k], float) for k in ("largest_residual", "smallest_residual") if k in c]
  res = np.concatenate([r.ravel() for r in res]) if res else np.array([])
  if res.size and np.isfinite(res).any():
    lines.append(f"  {'residuals':<16}largest Ritz residual {np.nanmax(res):.3g} (tol "
                 f"{a.get('tol', '?')} of the spectral radius)")
  rest = hvps[1:] if hvps.size > 1 else hvps
  lines.append(f"  {'HVPs':<16}{int(hvps.sum())} in all: {int(hvps[0])} for the first probe, "
               f"{float(rest.mean()):.3g} per later probe")
  lr = np.asarray(c.get("lr", []), float)
  if lr.size and np.isfinite(lr).any():
    lines.append(f"  {'learning rate':<16}{np.nanmin(lr):.4g}..{np.nanmax(lr):.4g} "
                 f"({a.get('optimizer', '?')}, momentum {a.get('momentum', 0)})")
  return "\n".join(lines)


def _curvature_lines(group: dict) -> list[str]:
  """``[hessian]``'s own datasets, then one summary line per operator and block."""
  lines = ["[hessian] " + ", ".join(sorted(k for k in group if "/" not in k))]
  prefixes = sorted({k.rsplit("/", 1)[0] for k in group if "/" in k})
  for prefix in [""] + prefixes:
    sub = {k[len(prefix) + 1:] if prefix else k: v for k, v in group.items()
           if (k.rsplit("/", 1)[0] if "/" in k else "") == prefix}
    parts = []
    for key, label in (("eigenvalues_largest", "λ_max"), ("eigenvalues_smallest", "λ_min")):
      if key in sub and np.size(sub[key]):
        parts.append(f"{label} {float(np.asarray(sub[key]).ravel()[0]):.5g}")
    if "trace" in sub:
      parts.append(f"trace {float(np.asarray(sub['trace'])):.5g}")
    if "negative_mass" in sub:
      parts.append(f"negative mass {float(np.asarray(sub['negative_mass'])):.4g}")
    if parts:
      name = "hessian" if not prefix else prefix.replace("blocks/", "block ")
      if prefix and not prefix.startswith("blocks/") and "/blocks/" not in prefix:
        name = f"{prefix} (operator)"
      lines.append(f"  {name:<24} " + ", ".join(parts))
  return lines


def run_plot(path: str | Path, *, kinds: Sequence[str] | None = None,
             formats: Sequence[str] = ("pdf", "png"), out: str | Path | None = None,
             log: Callable[[str], None] = print) -> dict[str, list[Path]]:
  """Figures of a result file (every kind it supports by default) into ``out``.

  The default output directory is ``figures/`` beside the file; figures there are
  replaced, as they are derived from the file. A run directory stands for its
  ``landscape.h5``, or for its ``trajectory.h5`` (whose figure is ``sharpness``, with
  ``train.curvature`` tracking) when ``kinds`` asks for ``sharpness`` or the run has no
  surface file.
  """
  from landscape import io as _io
  from landscape import plotting as _plotting
  path = Path(path)
  if path.is_dir():   # a run directory: its surface, or its training trajectory
    sharpness = bool(kinds) and "sharpness" in kinds
    path = path / ("trajectory.h5" if sharpness or not (path / "landscape.h5").is_file()
                   else "landscape.h5")
  for f in formats:   # every format checked before anything is written
    if f.strip().lstrip(".").lower() not in _plotting.PLOT_FORMATS:
      raise unknown_name("figure format", f.strip(), _plotting.PLOT_FORMATS)
  result = _io.load_trajectory(path) if _io.is_trajectory(path) else _io.load(path)
  out = Path(out) if out is not None else path.parent / "figures"
  pages = _html_page(result, path, out, formats, log)   # `--format html`: landscape.interactive
  formats = [f for f in formats if f.strip().lower() != "html"]
  if pages and not formats:
    return pages
  written = _plotting.render_all(result, out, kinds=list(kinds) if kinds else None,
                                 formats=tuple(formats))
  written.update(pages)
  n = sum(len(v) for v in written.values())
  log(f"{n} figure files ({', '.join(written)}) -> {out}")
  return written


def _html_page(result: Any, path: Path, out: Path, formats: Sequence[str],
               log: Callable[[str], None]) -> dict[str, list[Path]]:
  """``out/STEM.html``, the interactive page, when ``formats`` names ``html`` (replaced,
  as the figures are); ``{"html": [page]}`` or ``{}``."""
  if not any(f.strip().lower() == "html" for f in formats):
    return {}
  from landscape import interactive as _interactive
  page = _interactive.write_page(result, out / f"{path.stem}.html")
  log(f"interactive page -> {page}")
  return {"html": [page]}


def run_view(path: str | Path, *, out: str | Path | None = None, open_browser: bool = True,
             overwrite: bool = False, log: Callable[[str], None] = print) -> Path:
  """Write the interactive HTML page of a result file and open it in a web browser.

  The default page, ``figures/STEM.html`` beside the file (what ``landscape plot FILE
  --format html`` writes), is replaced, as it is derived from the file; an explicit
  ``out`` that exists is replaced only when it is such a page or with ``overwrite``, and
  never when it is the input file. A run directory stands for its ``landscape.h5``. When
  no browser can be opened (a headless machine), the page's path is printed instead: that
  is not an error.
  """
  import webbrowser
  from landscape import interactive as _interactive
  from landscape import io as _io
  path = Path(path)
  if path.is_dir():   # a run directory: its surface
    path = path / "landscape.h5"
  result = _io.load(path)
  default = out is None
  out = Path(out) if out is not None else path.parent / "figures" / f"{path.stem}.html"
  _io.check_output(out, inputs=[path], overwrite=overwrite,
                   derived=default or _interactive.is_page(out))
  page = _interactive.write_page(result, out)
  log(f"wrote {page}")
  if open_browser:
    try:
      opened = webbrowser.open(page.resolve().as_uri())
    except (webbrowser.Error, OSError):
      opened = False
    if not opened:
      log(f"no web browser could be opened here; open {page} in one")
  return page


def _is_our_vts(path: Path) -> bool:
  """Whether ``path`` is a StructuredGrid .vts file as :func:`landscape.vtk.write_vts` writes."""
  try:
    with open(path, "rb") as f:
      head = f.read(200)
  except OSError:
    return False
  return head.startswith(b'<?xml version="1.0"?>\n<VTKFile type="StructuredGrid"')


def run_export_vtk(path: str | Path, *, out: str | Path | None = None, field: str = "train_loss",
                   interp: int | None = None, log_scale: bool = False,
                   zmax: float | None = None, overwrite: bool = False,
                   log: Callable[[str], None] = print) -> Path:
  """A ParaView ``.vts`` StructuredGrid of one 2-D field of a result file.

  The default output (``FILE_FIELD[_log].vts`` beside the file) is derived from the file
  and replaced; an explicit ``out`` that exists is replaced only with ``overwrite``, and
  never when it is the input file.
  """
  from landscape import io as _io
  from landscape import vtk as _vtk
  path = Path(path)
  default = out is None
  out = Path(out) if out is not None else path.with_name(
      f"{path.stem}_{field}{'_log' if log_scale else ''}.vts")
  _io.check_output(out, inputs=[path], overwrite=overwrite,
                   derived=default and _is_our_vts(out))
  r = _io.load(path)
  if r.ys is None:
    raise ConfigError(f"{path} holds a 1-D sweep; export-vtk needs a 2-D surface")
  if field not in r.fields:
    raise ConfigError(f"{path} has no field {field!r}; fields: {', '.join(r.fields)}")
  z = np.asarray(r.fields[field], dtype=np.float64)
  done = r.done_for(field)
  if done is not None:
    z = np.where(done, z, np.nan)
  _io.make_dirs(out.parent)
  _vtk.write_vts(out, r.xs, r.ys, z, interp=interp, log=log_scale, zmax=zmax, field_name=field)
  log(f"wrote {out}")
  return out


def _precheck_run(cfg: _config.Config, out: Path, overwrite: bool) -> None:
  """Refuse, before training, a ``run`` that a later step would refuse (nothing written)."""
  from landscape import io as _io
  from landscape import plotting as _plotting
  _io.check_output_dir(out, "run directory")
  h, c = cfg.hessian, cfg.critical
  if h.enabled:
    _check_hessian(h, k=h.k, which=h.which, trace=h.trace, density=h.density, curvature=h.map,
                   operators=tuple(h.operators))
  if c.enabled:
    _check_critical(c, c.method, c.starts)
  if cfg.plot.enabled and cfg.plot.kinds:
    unknown = [k for k in cfg.plot.kinds if k not in _plotting.KINDS]
    if unknown:
      _validate.choice("plot kind", unknown[0], _plotting.KINDS)
  _precheck_surface(cfg, out, _surface_out(out, None), overwrite)


def run(cfg: _config.Config, out: str | Path, *, overwrite: bool = False,
        log: Callable[[str], None] = print) -> dict[str, Path]:
  """The main job: train, sweep the surface, probe the Hessian, plot."""
  t0 = time.perf_counter()
  out = Path(out)
  _precheck_run(cfg, out, overwrite)
  run_train(cfg, out, overwrite=overwrite, log=log)
  paths: dict[str, Any] = {"run": out,
                           "surface": run_surface(out, overwrite=overwrite, log=log)}
  if cfg.hessian.enabled:
    run_hessian(paths["surface"], run_dir=out, log=log)
  if cfg.critical.enabled:
    run_critical(paths["surface"], run_dir=out, log=log)
  if cfg.plot.enabled:
    paths["figures"] = out / "figures"
    run_plot(paths["surface"], kinds=cfg.plot.kinds, formats=cfg.plot.formats,
             out=paths["figures"], log=log)
  log(f"done in {time.perf_counter() - t0:.1f} s:")
  for name, p in paths.items():
    log(f"  {name:<9}{p}")
  return paths
