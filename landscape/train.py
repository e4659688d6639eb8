"""optax training of a Flax model with checkpoints, a saved trajectory and a history.

One pure train step ``(state, batch) -> (state, loss)``; an epoch is a ``lax.scan``
of that step over a shuffled permutation of the training set (one compile).
BatchNorm statistics are updated in training mode. After every ``save_every``
epochs (and the last) the trainer writes

* ``ckpt/epoch_NNNN.msgpack``: flax msgpack of the variables, optimizer state and
  step, written to a temporary file and renamed (atomic);
* ``trajectory.h5``: the parameters at that epoch (for PCA directions), via
  :mod:`landscape.io`;
* a row of ``history.csv``: epoch, train_loss, train_acc, test_loss, test_acc
  (the objective J with its regularizer, in BatchNorm eval mode; accuracy in %).

An interrupted run resumes from its last checkpoint with the same result as an
uninterrupted one: the shuffling key of epoch ``e`` is ``fold_in(key, e)``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from landscape import _progress
from landscape import objective as _objective
from landscape.batching import batched_mean
from landscape.errors import ConfigError, unknown_name

PyTree = Any
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")
HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")


def make_schedule(name: str, *, lr: float, epochs: int, steps_per_epoch: int,
                  step_epochs: int = 10, step_gamma: float = 0.1,
                  warmup_epochs: int = 0) -> optax.Schedule:
  """Learning-rate schedule over optimizer steps: constant, step decay or cosine decay.

  With ``S = steps_per_epoch``, ``w = warmup_epochs·S`` warmup steps and ``T = epochs·S``
  steps in all, the rate at step ``t`` is ``lr·t/w`` for ``t < w``; then, with ``u = t − w``:

  * ``constant``: ``lr``;
  * ``step``: ``lr·γ^k`` with ``k`` the number of boundaries ``e·S <= u`` for
    ``e = step_epochs, 2·step_epochs, … < max(epochs, step_epochs + 1)`` (γ = ``step_gamma``);
  * ``cosine``: ``lr·½(1 + cos(π·min(u, T − w)/(T − w)))``, zero at the end of training.

  Args:
    name: ``constant``, ``step`` or ``cosine``.
    lr: peak learning rate (> 0).
    epochs, steps_per_epoch: the length of the run.
    step_epochs, step_gamma: the step schedule's period (epochs) and factor.
    warmup_epochs: linear warmup from 0, in epochs.

  Returns:
    An ``optax.Schedule``: step count -> learning rate.

  Example:
    >>> make_schedule("cosine", lr=0.1, epochs=10, steps_per_epoch=20)(100)   # 0.05

  References:
    Loshchilov, Hutter, "SGDR: stochastic gradient descent with warm restarts", ICLR 2017;
    Goyal et al., "Accurate, large minibatch SGD: training ImageNet in 1 hour", 2017 (warmup).
  """
  if name not in SCHEDULES:
    raise unknown_name("schedule", name, SCHEDULES)
  if not lr > 0:
    raise ConfigError(f"learning rate must be > 0, got {lr}")
  total = max(1, epochs * steps_per_epoch)
  if name == "constant":
    sched = optax.constant_schedule(lr)
  elif name == "step":
    if step_epochs < 1 or not 0 < step_gamma <= 1:
      raise ConfigError(f"step schedule needs step_epochs >= 1 and 0 < step_gamma <= 1, "
                        f"got {step_epochs}, {step_gamma}")
    boundaries = {e * steps_per_epoch: step_gamma
                  for e in range(step_epochs, max(epochs, step_epochs + 1), step_epochs)}
    sched = optax.piecewise_constant_schedule(lr, boundaries)
  else:
    # After a warmup the decay spans the remaining steps, so the rate reaches 0 at the end.
    sched = optax.cosine_decay_schedule(lr, max(1, total - warmup_epochs * steps_per_epoch))
  if warmup_epochs > 0:
    warm = warmup_epochs * steps_per_epoch
    sched = optax.join_schedules([optax.linear_schedule(0.0, lr, warm), sched], [warm])
  return sched


def make_optimizer(name: str, schedule: optax.Schedule, *, momentum: float = 0.9,
                   nesterov: bool = False, b1: float = 0.9, b2: float = 0.999,
                   weight_decay: float = 0.0) -> optax.GradientTransformation:
  """``sgd`` (momentum, nesterov), ``adam`` or ``adamw`` with learning rate ``η_t = schedule(t)``.

  With gradient ``g_t`` (plus ``λθ_t`` for sgd/adam when ``weight_decay = λ > 0``, i.e. L2):

  * ``sgd``: ``v_t = g_t + μ v_{t−1}``, ``θ_{t+1} = θ_t − η_t v_t`` (nesterov:
    ``θ_{t+1} = θ_t − η_t (g_t + μ v_t)``; ``μ = 0``: plain SGD), as ``torch.optim.SGD``;
  * ``adam``: ``m_t = β₁m + (1−β₁)g_t``, ``v_t = β₂v + (1−β₂)g_t²``,
    ``θ_{t+1} = θ_t − η_t m̂_t/(√v̂_t + ε)`` with ``m̂_t = m_t/(1−β₁^t)``,
    ``v̂_t = v_t/(1−β₂^t)``, ``ε = 1e-8``;
  * ``adamw``: adam's step plus decoupled decay,
    ``θ_{t+1} = θ_t − η_t(m̂_t/(√v̂_t + ε) + λθ_t)``.

  Args:
    name: ``sgd``, ``adam`` or ``adamw``.
    schedule: learning rate per step (:func:`make_schedule`).
    momentum, nesterov: sgd's momentum ``μ``.
    b1, b2: adam's ``β₁``, ``β₂``.
    weight_decay: ``λ`` (>= 0).

  Returns:
    An ``optax.GradientTransformation``.

  Example:
    >>> tx = make_optimizer("sgd", make_schedule("constant", lr=0.1, epochs=1,
    ...                     steps_per_epoch=1), momentum=0.9, nesterov=True)

  References:
    Kingma, Ba, "Adam: a method for stochastic optimization", ICLR 2015;
    Loshchilov, Hutter, "Decoupled weight decay regularization", ICLR 2019;
    Sutskever, Martens, Dahl, Hinton, "On the importance of initialization and momentum in
    deep learning", ICML 2013.
  """
  if name not in OPTIMIZERS:
    raise unknown_name("optimizer", name, OPTIMIZERS)
  if weight_decay < 0:
    raise ConfigError(f"weight_decay must be >= 0, got {weight_decay}")
  if name == "adamw":
    return optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay)
  base = (optax.sgd(schedule, momentum=momentum or None, nesterov=nesterov) if name == "sgd"
          else optax.adam(schedule, b1=b1, b2=b2))
  if weight_decay:
    return optax.chain(optax.add_decayed_weights(weight_decay), base)
  return base


@dataclasses.dataclass
class TrainResult:
  variables: dict
  history: list[dict[str, float]]
  saved_epochs: list[int]
  seconds: float
  resumed_from: int | None


def _has_bn(variables) -> bool:
  return "batch_stats" in variables and bool(jax.tree.leaves(variables["batch_stats"]))


def make_train_step(module, loss: Callable, tx: optax.GradientTransformation, *,
                    l2: float = 0.0, l1: float = 0.0, has_bn: bool = False):
  """The pure train step ``(state, (x, y)) -> (state, loss)`` (BatchNorm in training mode)."""

  def step(state, batch):
    x, y = batch

    def objective(params):
      variables = {"params": params}
      if has_bn:
        variables["batch_stats"] = state["batch_stats"]
        out, upd = module.apply(variables, x, True, mutable=["batch_stats"])
      else:
        out, upd = module.apply(variables, x, True), {}
      value = jnp.mean(loss(out, y)) + _objective.regularizer(params, l2, l1)
      return value, upd

    (value, upd), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    new = dict(state, params=optax.apply_updates(state["params"], updates),
               opt_state=opt_state, step=state["step"] + 1)
    if has_bn:
      new["batch_stats"] = upd["batch_stats"]
    return new, value

  return step


TICKS_PER_EPOCH = 100   # progress callbacks per epoch at most (each ~0.05-0.5 ms on CPU)


def _epoch_fn(step, batch_size: int):
  def run_epoch(state, x, y, key):
    n = x.shape[0]
    nb = n // batch_size
    perm = jax.random.permutation(key, n)[:nb * batch_size].reshape(nb, batch_size)
    every = max(1, nb // TICKS_PER_EPOCH)

    def body(s, idx):
      s, value = step(s, (x[idx], y[idx]))
      # the global step count and the batch loss to the open Progress (training reports
      # within an epoch, which is one compiled scan)
      jax.lax.cond(s["step"] % every == 0,
                   lambda: _progress.tick(s["step"], after=value, loss=value), lambda: None)
      return s, value

    state, losses = jax.lax.scan(body, state, perm)
    return state, jnp.mean(losses)
  return jax.jit(run_epoch)


def _epoch_label(epochs: int, steps_per_epoch: int) -> Callable[[int, int], str]:
  """``epoch 3/10`` at the end of an epoch, ``epoch 4/10 (step 7/22)`` within one."""
  def label(n: int, total: int) -> str:
    e, k = divmod(n, steps_per_epoch)
    if k == 0:
      return f"epoch {e}/{epochs}"
    return f"epoch {e + 1}/{epochs} (step {k}/{steps_per_epoch})"
  return label


def _row_text(row: dict[str, float]) -> str:
  return (f"loss {row['train_loss']:.4f} acc {row['train_acc']:.1f}% | "
          f"test loss {row['test_loss']:.4f} acc {row['test_acc']:.1f}%")


def _ckpt_path(run_dir: Path, epoch: int) -> Path:
  return run_dir / "ckpt" / f"epoch_{epoch:04d}.msgpack"


def list_checkpoints(run_dir: str | Path) -> list[int]:
  """Epochs of the checkpoints saved in ``run_dir/ckpt``, ascending."""
  d = Path(run_dir) / "ckpt"
  if not d.is_dir():
    return []
  return sorted(int(m.group(1)) for p in d.iterdir()
                if (m := re.fullmatch(r"epoch_(\d+)\.msgpack", p.name)))


def save_checkpoint(run_dir: Path, epoch: int, state: Mapping[str, Any]) -> Path:
  """Write ``state`` as flax msgpack, atomically (temporary file + rename; none left on
  failure, e.g. a full disk)."""
  from landscape import io as _io
  path = _ckpt_path(run_dir, epoch)
  _io.make_dirs(path.parent)
  _io.atomic_write(path, serialization.to_bytes(dict(state, epoch=epoch)))
  return path


def load_checkpoint(run_dir: str | Path, epoch: int, template: Mapping[str, Any]) -> dict:
  """Restore a checkpoint into the structure of ``template`` (its ``epoch`` included)."""
  path = _ckpt_path(Path(run_dir), epoch)
  try:
    restored = serialization.from_bytes(dict(template, epoch=0), path.read_bytes())
    _check_shapes(restored["variables"], template["variables"])
    return restored
  except FileNotFoundError:
    raise ConfigError(f"checkpoint {str(path)!r} not found; available epochs: "
                      f"{list_checkpoints(run_dir)}") from None
  except Exception as e:  # noqa: BLE001 - msgpack/structure errors of a foreign or corrupt file
    first = " ".join(str(e).split())[:160]
    raise ConfigError(f"cannot restore checkpoint {str(path)!r} ({type(e).__name__}: {first}); "
                      "it is corrupt or from another model: remove it or train afresh with "
                      "--overwrite") from None


def check_args(*, epochs: int, batch_size: int, save_every: int, num_samples: int) -> None:
  """Refuse training arguments that cannot run (called before anything is written)."""
  if epochs < 0 or batch_size < 1 or save_every < 1:
    raise ConfigError(f"need train.epochs >= 0, train.batch_size >= 1, train.save_every >= 1; "
                      f"got {epochs}, {batch_size}, {save_every}")
  if batch_size > num_samples:
    raise ConfigError(f"train.batch_size {batch_size} exceeds the {num_samples} training "
                      f"samples; use <= {num_samples}")


def _check_shapes(restored: Any, template: Any) -> None:
  """Refuse restored variables whose leaves differ in shape from the model's (flax does not)."""
  got = jax.tree_util.tree_flatten_with_path(restored)[0]
  want = dict(jax.tree_util.tree_flatten_with_path(dict(template))[0])
  for path, leaf in got:
    ref = want.get(path)
    if ref is not None and np.shape(leaf) != np.shape(ref):
      raise ValueError(f"{jax.tree_util.keystr(path)} is {np.shape(leaf)} in the checkpoint, "
                       f"{np.shape(ref)} in the model")


def load_variables(run_dir: str | Path, template_variables: Mapping[str, Any],
                   epoch: int | None = None) -> dict:
  """The model variables of the checkpoint at ``epoch`` (default: the last)."""
  epochs = list_checkpoints(run_dir)
  if not epochs:
    raise ConfigError(f"no checkpoints in {str(Path(run_dir) / 'ckpt')!r}; train first "
                      "(landscape train --out DIR)")
  epoch = epochs[-1] if epoch is None else epoch
  path = _ckpt_path(Path(run_dir), epoch)
  if not path.is_file():
    raise ConfigError(f"no checkpoint for epoch {epoch} in {run_dir}; available: {epochs}")
  try:
    raw = serialization.msgpack_restore(path.read_bytes())
  except Exception as e:  # noqa: BLE001 - msgpack's errors for truncated/corrupt bytes
    raise ConfigError(f"checkpoint {str(path)!r} is truncated or corrupt ({type(e).__name__}, "
                      f"{path.stat().st_size} bytes); remove it to resume from the one "
                      "before, or train afresh with --overwrite") from None
  if not isinstance(raw, dict) or "variables" not in raw:
    raise ConfigError(f"checkpoint {str(path)!r} holds no model variables; it is not a "
                      "landscape checkpoint: remove it or train afresh with --overwrite")
  try:
    restored = serialization.from_state_dict(dict(template_variables), raw["variables"])
    _check_shapes(restored, template_variables)
    return restored
  except Exception as e:  # noqa: BLE001 - flax raises plain exceptions on mismatches
    first = " ".join(str(e).split())[:160] or type(e).__name__
    raise ConfigError(f"checkpoint {str(path)!r} does not match the model of "
                      f"{str(Path(run_dir) / 'config.yaml')!r} ({first}); restore the config "
                      "it was trained with, or train afresh with --overwrite") from None


def _read_history(path: Path, upto: int) -> list[dict[str, float]]:
  if not path.is_file():
    return []
  with path.open() as f:
    rows = [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()}
            for row in csv.DictReader(f)]
  return [r for r in rows if r["epoch"] <= upto]


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
  from landscape import io as _io
  text = io.StringIO()
  w = csv.DictWriter(text, fieldnames=HISTORY_FIELDS)
  w.writeheader()
  for r in rows:
    w.writerow({k: r[k] for k in HISTORY_FIELDS})
  _io.atomic_write(path, text.getvalue())


def train(module, variables: Mapping[str, Any], loss: Callable, *, task: str,
          x_train, y_train, x_test, y_test, tx: optax.GradientTransformation,
          epochs: int, batch_size: int, seed: int = 0, save_every: int = 1,
          l2: float = 0.0, l1: float = 0.0, run_dir: str | Path | None = None,
          resume: bool = True, eval_batch_size: int = 512,
          log: Callable[[str], None] = print) -> TrainResult:
  """Train ``module`` from ``variables`` with ``tx`` and record everything under ``run_dir``.

  Args:
    module, variables: a Flax module and its initial variables.
    loss: per-example loss ``loss(outputs, targets) -> (n,)``.
    task: ``regression``, ``binary`` or ``multiclass`` (accuracy is recorded for the latter).
    x_train, y_train, x_test, y_test: arrays with a leading sample axis.
    tx: an optax optimizer (see :func:`make_optimizer`).
    epochs, batch_size, seed: the schedule of the run; the last partial batch of an
      epoch is dropped (a new permutation each epoch).
    save_every: checkpoint, trajectory point and history row every N epochs (and the last).
    l2, l1: regularization added to the objective (part of the swept landscape).
    run_dir: where ``ckpt/``, ``trajectory.h5`` and ``history.csv`` go (``None``: nowhere).
    resume: continue from the last checkpoint in ``run_dir`` if there is one.

  Returns:
    :class:`TrainResult` with the final variables and the history rows.
  """
  from landscape import io as _io
  n = int(np.shape(x_train)[0])
  check_args(epochs=epochs, batch_size=batch_size, save_every=save_every, num_samples=n)
  has_bn = _has_bn(variables)
  step = make_train_step(module, loss, tx, l2=l2, l1=l1, has_bn=has_bn)
  run_epoch = _epoch_fn(step, batch_size)
  x_tr, y_tr = jnp.asarray(x_train), jnp.asarray(y_train)
  train_data, test_data = (x_tr, y_tr), (jnp.asarray(x_test), jnp.asarray(y_test))

  state = {"params": variables["params"], "opt_state": tx.init(variables["params"]),
           "step": jnp.zeros((), jnp.int32)}
  if has_bn:
    state["batch_stats"] = variables["batch_stats"]

  def variables_of(st):
    v = {"params": st["params"]}
    if has_bn:
      v["batch_stats"] = st["batch_stats"]
    return v

  @jax.jit
  def evaluate(v, data):
    obj = _objective.build(module, v, loss, task=task, l2=l2, l1=l1)
    fns = {"loss": obj.loss_fn, **obj.metrics}
    return batched_mean(lambda b: {k: f(obj.params, b) for k, f in fns.items()}, data,
                        eval_batch_size)

  def history_row(epoch, v):
    tr, te = evaluate(v, train_data), evaluate(v, test_data)
    nan = float("nan")
    return {"epoch": epoch, "train_loss": float(tr["loss"]),
            "train_acc": float(tr.get("acc", nan)),
            "test_loss": float(te["loss"]), "test_acc": float(te.get("acc", nan))}

  run_path = Path(run_dir) if run_dir is not None else None
  start, resumed_from, history = 0, None, []
  if run_path is not None:
    run_path.mkdir(parents=True, exist_ok=True)
    done = list_checkpoints(run_path) if resume else []
    if done:
      resumed_from = done[-1]
      restored = load_checkpoint(run_path, resumed_from, {"variables": variables_of(state),
                                                         "opt_state": state["opt_state"],
                                                         "step": state["step"]})
      state = dict(state, params=restored["variables"]["params"],
                   opt_state=restored["opt_state"], step=jnp.asarray(restored["step"]))
      if has_bn:
        state["batch_stats"] = restored["variables"]["batch_stats"]
      if resumed_from > epochs:
        raise ConfigError(f"{run_path} holds a checkpoint at epoch {resumed_from}, past the "
                          f"{epochs} epochs asked for; raise epochs, or train afresh elsewhere "
                          "(--out) or with --overwrite")
      start = resumed_from
      history = _read_history(run_path / "history.csv", resumed_from)
      log(f"resuming {run_path} from epoch {resumed_from}")
  traj = (_io.TrajectoryWriter(run_path / "trajectory.h5", state["params"],
                               resume=resumed_from is not None)
          if run_path is not None else None)

  def save(epoch):
    if run_path is None:
      return
    save_checkpoint(run_path, epoch, {"variables": variables_of(state),
                                      "opt_state": state["opt_state"], "step": state["step"]})
    traj.append(epoch, state["params"])
    _write_history(run_path / "history.csv", history)

  t0 = time.perf_counter()
  saved = list_checkpoints(run_path) if run_path is not None else []
  progress = None
  try:
    if start == 0:
      history = [history_row(0, variables_of(state))]
      save(0)
      saved = [0] if run_path is not None else []
    key = jax.random.key(seed)
    # steps done, rate and ETA: a line every epochs/10 epochs, at least every
    # _progress.INTERVAL seconds (within an epoch too: the epoch's scan ticks) and at the end
    nb, every = n // batch_size, max(1, epochs // 10)
    progress = _progress.Progress(epochs * nb, "steps", "training", log=log,
                                  initial=start * nb, label=_epoch_label(epochs, nb),
                                  ticks=True)
    for epoch in range(start + 1, epochs + 1):
      progress.text = ""
      state, _ = run_epoch(state, x_tr, y_tr, jax.random.fold_in(key, epoch))
      row = history_row(epoch, variables_of(state))
      if not np.isfinite(row["train_loss"]):
        _progress.warn(f"training loss is {row['train_loss']} at epoch {epoch}; "
                       "lower train.lr")
      history.append(row)
      progress.postfix = {}
      progress.set(epoch * nb, force=epoch % every == 0 or epoch == epochs,
                   text=_row_text(row))
      if epoch % save_every == 0 or epoch == epochs:
        save(epoch)
        if run_path is not None:
          saved.append(epoch)
    progress.close()
  finally:
    if progress is not None:
      progress.close()
    if traj is not None:
      traj.close()
  return TrainResult(variables=variables_of(state), history=history,
                     saved_epochs=sorted(set(saved)), seconds=time.perf_counter() - t0,
                     resumed_from=resumed_from)
