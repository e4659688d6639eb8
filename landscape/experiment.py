"""A config resolved into objects, and a trained run directory opened at one epoch.

:func:`prepare` turns a :class:`landscape.config.Config` into an :class:`Experiment`
(the dataset, the Flax module, the per-example loss, the initial variables);
:func:`open_run` opens a run directory that ``landscape train`` wrote into a :class:`Run`
(the directory, its experiment and the variables of one checkpoint). Every stage of
:mod:`landscape.pipeline` and the paper scripts take a :class:`Run` and ask it for what
they need: the objective in a BatchNorm mode (:meth:`Run.objective`), the training data
(:meth:`Run.data`) or another model to interpolate to (:meth:`Run.variables_of`).

  >>> run = open_run("results/default")
  >>> obj = run.objective("eval")
  >>> obj.loss_fn(obj.params, run.data("train"))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from landscape import config as _config
from landscape.errors import ConfigError, unknown_name

__all__ = ["Experiment", "Run", "SPLITS", "load_run", "open_run", "prepare", "resolve"]

SPLITS = ("train", "test")


@dataclasses.dataclass
class Experiment:
  """What a config resolves to: the dataset, the model, the loss and initial variables."""
  cfg: _config.Config
  dataset: Any
  module: Any
  loss: Callable
  variables: dict


def resolve(config_path: str | None = None, overrides: Sequence[str] = ()) -> _config.Config:
  """The config of a run: the embedded default or a YAML file, then ``--set`` overrides."""
  from landscape import _imports
  cfg = _config.load(config_path) if config_path else _config.Config()
  cfg = _config.apply_overrides(cfg, overrides) if overrides else cfg
  named = (cfg.model.name, cfg.loss.name, cfg.data.name)
  if config_path and any(_imports.is_import_path(n) for n in named):
    # the user's module named by an import path may sit beside the config
    here = str(Path(config_path).resolve().parent)
    if here not in cfg.search_path:
      cfg = dataclasses.replace(cfg, search_path=(*cfg.search_path, here))
  return cfg


def prepare(cfg: _config.Config) -> Experiment:
  """Load the data, build the loss and the model, initialize; check task/loss agreement."""
  from landscape import data as _data
  from landscape import losses as _losses
  from landscape import models as _models
  from landscape import _imports
  _imports.add_to_path(cfg.search_path)
  d = cfg.data
  ds = _data.load(d.name, seed=d.seed, standardize=d.standardize, n_train=d.n_train,
                  n_test=d.n_test, path=d.path, **dict(d.kwargs))
  loss = _losses.get(cfg.loss.name, **dict(cfg.loss.kwargs))
  want = _losses.task(cfg.loss.name)
  if want != ds.task:
    good = [n for n in _losses.names() if _losses.task(n) == ds.task]
    raise ConfigError(f"loss {cfg.loss.name!r} is for {want} tasks but dataset {d.name!r} is "
                      f"{ds.task}; use one of: {', '.join(good)}")
  module = _models.get(cfg.model.name, num_outputs=ds.num_outputs, **dict(cfg.model.kwargs))
  # a user's model failing on the data is one line, like every other user error
  variables = _imports.guarded(
      f"model {cfg.model.name!r} failed on inputs of shape {tuple(ds.x_train[:2].shape)}",
      _models.init, module, jax.random.key(cfg.train.seed), ds.x_train[:2])
  if _imports.is_import_path(cfg.loss.name) or cfg.loss.name not in _losses.BUILTIN:
    _check_user_loss(cfg.loss.name, module, variables, loss, ds)
  return Experiment(cfg, ds, module, loss, dict(variables))


def _check_user_loss(name: str, module: Any, variables: dict, loss: Callable, ds: Any) -> None:
  """A user's loss on two training samples: the shape ``(n,)`` it must return, one line."""
  from landscape import _imports
  x, y = jnp.asarray(ds.x_train[:2]), jnp.asarray(ds.y_train[:2])
  out = _imports.guarded(f"loss {name!r} failed on the model's outputs for 2 samples",
                         jax.eval_shape, lambda v: loss(module.apply(v, x, False), y), variables)
  if out.shape != (2,):
    raise ConfigError(f"loss {name!r} returned shape {out.shape} for 2 samples; a per-example "
                      "loss must return shape (n,)")


@dataclasses.dataclass(frozen=True)
class Run:
  """A trained run directory at one checkpoint.

  Attributes:
    dir: the run directory (``config.yaml``, ``ckpt/``, ``trajectory.h5``, ...).
    experiment: its resolved config, dataset, model and loss.
    variables: the Flax variables of the checkpoint opened (default: the last).
  """
  dir: Path
  experiment: Experiment
  variables: dict

  @property
  def cfg(self) -> _config.Config:
    """The run's resolved config."""
    return self.experiment.cfg

  @property
  def dataset(self) -> Any:
    """The run's :class:`landscape.data.Dataset`."""
    return self.experiment.dataset

  def with_config(self, cfg: _config.Config) -> Run:
    """The same run and checkpoint under ``cfg`` (e.g. with ``--set`` overrides applied to
    the surface or probe sections; data, model and loss must stay those of the run)."""
    return dataclasses.replace(self, experiment=dataclasses.replace(self.experiment, cfg=cfg))

  def objective(self, bn_mode: str | None = None, *, variables: dict | None = None,
                dtype: Any = None):
    """The :class:`landscape.objective.Objective` of the run's model, loss and
    regularizer at ``variables`` (default: the checkpoint opened) in ``bn_mode`` (default:
    ``surface.bn_mode``); ``dtype`` casts the variables (e.g. ``jnp.float64``)."""
    from landscape import objective as _objective
    exp, s = self.experiment, self.cfg.surface
    variables = self.variables if variables is None else variables
    if dtype is not None:
      variables = jax.tree.map(lambda a: jnp.asarray(a, dtype), variables)
    return _objective.build(exp.module, variables, exp.loss, task=exp.dataset.task,
                            bn_mode=bn_mode or s.bn_mode, l2=self.cfg.loss.l2,
                            l1=self.cfg.loss.l1, bn_data=exp.dataset.x_train,
                            bn_samples=s.bn_samples)

  def data(self, split: str = "train", n: int | None = None, dtype: Any = None) -> tuple:
    """``(x, y)`` of a split as JAX arrays: its first ``n`` samples (default: all);
    ``dtype`` casts the inputs."""
    if split not in SPLITS:
      raise unknown_name("split", split, SPLITS)
    ds = self.dataset
    x, y = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    if n is not None:
      x, y = x[:n], y[:n]
    return jnp.asarray(x, dtype), jnp.asarray(y)

  def splits(self, names: Sequence[str]) -> dict:
    """``{split: (x, y)}`` for each named split (``train``, ``test``)."""
    return {name: self.data(name) for name in names}

  def checkpoints(self) -> list[int]:
    """The epochs of the run's checkpoints, ascending."""
    from landscape import train as _train
    return _train.list_checkpoints(self.dir)

  def variables_of(self, spec: str | int) -> dict:
    """Another model of the same architecture: an epoch of this run (``"3"``), or the last
    checkpoint of another run directory."""
    from landscape import train as _train
    s = str(spec)
    if s.isdigit():
      return _train.load_variables(self.dir, self.experiment.variables, int(s))
    p = Path(s)
    if p.is_dir():
      return _train.load_variables(p, self.experiment.variables)
    raise ConfigError(f"target {s!r} is neither an epoch of {self.dir} (available: "
                      f"{self.checkpoints()}) nor a run directory")


def open_run(run_dir: str | Path, epoch: int | None = None) -> Run:
  """The trained run in ``run_dir`` at checkpoint ``epoch`` (default: the last)."""
  from landscape import train as _train
  run_dir = Path(run_dir)
  if not (run_dir / "config.yaml").is_file():
    raise ConfigError(f"{run_dir} is not a run directory (no config.yaml); train first: "
                      f"landscape train --out {run_dir}")
  exp = prepare(_config.load(run_dir / "config.yaml"))
  return Run(run_dir, exp, _train.load_variables(run_dir, exp.variables, epoch))


def load_run(run_dir: str | Path, epoch: int | None = None) -> tuple[Experiment, dict]:
  """``(experiment, variables)`` of :func:`open_run` (the older spelling)."""
  run = open_run(run_dir, epoch)
  return run.experiment, run.variables
