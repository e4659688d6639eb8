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

Curvature through training (:class:`CurvatureTracking`, the config's ``train.curvature``):
every N epochs or optimizer steps the extreme Hessian eigenvalues of the training objective
on a fixed subset of the training data, by Lanczos warm-started from the previous probe's
Ritz vectors; ``lambda_max``, ``lambda_min`` and ``probe_hvps`` columns in the history and a
``curvature`` group in ``trajectory.h5`` (layout in ``results/README.md``). Probes only read
the parameters, so the training result is unchanged.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
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

from landscape import _progress, _validate
from landscape import batching as _batching
from landscape import hessian as _hessian
from landscape import linalg as _linalg
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
  curvature: dict[str, np.ndarray] | None = None   # the tracked probes (trajectory.h5 layout)
  curvature_seconds: float = 0.0                   # time spent in the probes


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


def _permutation(key, n: int, batch_size: int):
  """The epoch's batches: sample indices ``(n // batch_size, batch_size)``."""
  nb = n // batch_size
  return jax.random.permutation(key, n)[:nb * batch_size].reshape(nb, batch_size)


def _scan_batches(step, state, x, y, perm, every: int):
  """``step`` over the batches ``x[perm[i]], y[perm[i]]`` in one ``lax.scan``."""
  def body(s, idx):
    s, value = step(s, (x[idx], y[idx]))
    # the global step count and the batch loss to the open Progress (training reports
    # within an epoch, which is one compiled scan)
    jax.lax.cond(s["step"] % every == 0,
                 lambda: _progress.tick(s["step"], after=value, loss=value), lambda: None)
    return s, value

  return jax.lax.scan(body, state, perm)


def _epoch_fn(step, batch_size: int):
  def run_epoch(state, x, y, key):
    n = x.shape[0]
    perm = _permutation(key, n, batch_size)
    state, losses = _scan_batches(step, state, x, y, perm,
                                  max(1, (n // batch_size) // TICKS_PER_EPOCH))
    return state, jnp.mean(losses)
  return jax.jit(run_epoch)


def _segment_fn(step, batch_size: int):
  """``run_segment(state, x, y, perm_part)``: the epoch of :func:`_epoch_fn` run over a
  slice of its batches (``perm_part``), so that training can stop between optimizer steps
  for a curvature probe. The same scan body over the same batches: the result equals the
  whole epoch's (tests/test_curvature_tracking.py checks it bitwise)."""
  def run_segment(state, x, y, perm):
    nb = x.shape[0] // batch_size
    return _scan_batches(step, state, x, y, perm, max(1, nb // TICKS_PER_EPOCH))[0]
  return jax.jit(run_segment), jax.jit(_permutation, static_argnums=(1, 2))


# ------------------------------------------------------------ curvature through training

CURVATURE_FIELDS = ("lambda_max", "lambda_min", "probe_hvps")
CURVATURE_UNITS = ("epochs", "steps")
#: The weight of the random part of a warm start vector (see :meth:`_Tracker.start`).
WARM_NOISE = 0.1


@dataclasses.dataclass(frozen=True)
class CurvatureTracking:
  """Hessian eigenvalues computed during training (:func:`train`'s ``curvature``).

  Every ``every`` epochs or optimizer steps (``unit``), and at the start, the ``k``
  extreme eigenvalues (``which``) of the Hessian of the training objective J (the loss the
  optimizer minimises, its regularizer included, BatchNorm in eval mode with the current
  running statistics) on the first ``n_samples`` training samples (the same subset at
  every probe, so values are comparable over time) are computed by Lanczos
  (:func:`landscape.linalg.driven_lanczos`, at most ``num_steps`` Hessian-vector
  products, stopped once the wanted Ritz residuals are ``<= tol·max|θ|``), warm-started
  from the previous probe's Ritz vectors.

  Attributes:
    every: the probe interval (``0``: no tracking).
    unit: ``epochs`` or ``steps`` (optimizer steps; the epoch's scan is split there).
    k, which: the wanted eigenvalues per end (``largest``, ``smallest`` or ``both``).
    num_steps, tol: the Lanczos cap and residual tolerance per probe.
    n_samples: training samples probed (``None``: all); batch_size: the HVP batch.
    warm_start: start each probe from the previous one's Ritz vectors.
    seed: the random part of the start vectors.
    schedule: the optax learning-rate schedule (the rate at each probe is recorded).
    optimizer, momentum, nesterov: recorded for the stability threshold of the
      ``sharpness`` figure (``2/η``, ``(2 + 2β)/η`` with heavy-ball momentum β).
  """
  every: int = 0
  unit: str = "epochs"
  k: int = 1
  which: str = "both"
  num_steps: int = 40
  tol: float = 1e-3
  n_samples: int | None = 512
  batch_size: int | None = 512
  warm_start: bool = True
  seed: int = 0
  schedule: Callable[[int], Any] | None = None
  optimizer: str | None = None
  momentum: float = 0.0
  nesterov: bool = False

  @property
  def enabled(self) -> bool:
    return self.every > 0

  def check(self, *, epochs: int, steps_per_epoch: int, num_samples: int) -> None:
    """Refuse settings that cannot run (one-line ConfigErrors naming ``train.curvature``)."""
    key = "train.curvature"
    _validate.integer(f"{key}.every", self.every, low=0,
                      fix=f"use --set {key}.every=N (0: no tracking)")
    _validate.choice(f"{key}.unit", self.unit, CURVATURE_UNITS)
    _validate.choice(f"{key}.which", self.which, _linalg.WHICH)
    _validate.integer(f"{key}.k", self.k, low=1, fix=f"use --set {key}.k=1")
    _validate.integer(f"{key}.num_steps", self.num_steps, low=max(1, self.k),
                      fix=f"use --set {key}.num_steps=40 (at least k)")
    _validate.positive(f"{key}.tol", self.tol, zero=True, upper=1.0,
                       fix=f"use --set {key}.tol=1e-3")
    if self.n_samples is not None:
      _validate.integer(f"{key}.n_samples", self.n_samples, low=1,
                        fix=f"use --set {key}.n_samples=512 (null: all)")
    if self.batch_size is not None:
      _validate.integer(f"{key}.batch_size", self.batch_size, low=1,
                        fix=f"use --set {key}.batch_size=512 (null: all at once)")
    if not self.enabled:
      return
    if self.n_samples is not None and self.n_samples > num_samples:
      raise ConfigError(f"{key}.n_samples {self.n_samples} exceeds the {num_samples} training "
                        f"samples; use --set {key}.n_samples={num_samples} (or null: all)")
    length = epochs if self.unit == "epochs" else epochs * steps_per_epoch
    if self.every > length:
      raise ConfigError(f"{key}.every {self.every} exceeds the run's {length} {self.unit}; "
                        f"use --set {key}.every=N with 1 <= N <= {length} (0: no tracking)")

  def probe_steps(self, first: int, last: int, steps_per_epoch: int) -> list[int]:
    """The global optimizer steps ``t`` in ``[first, last]`` with a probe."""
    period = self.every * (steps_per_epoch if self.unit == "epochs" else 1)
    return [t for t in range(-(-first // period) * period, last + 1, period)]


@dataclasses.dataclass(frozen=True, eq=False)
class _ObjectiveHVP:
  """``apply(args, v) = H v`` of the training objective, ``args = (params, batch_stats,
  data)`` (BatchNorm in eval mode): the hashable operator of the probes' compiled Lanczos
  step (hashed by identity: one per :func:`train` call, reused by all its probes)."""
  module: Any
  loss: Callable
  l2: float
  l1: float
  batch_size: int | None

  def __call__(self, args: Any, v: PyTree) -> PyTree:
    params, stats, data = args

    def loss_fn(p, batch):
      x, y = batch
      variables = {"params": p} if stats is None else {"params": p, "batch_stats": stats}
      out = self.module.apply(variables, x, False)
      return jnp.mean(self.loss(out, y)) + _objective.regularizer(p, self.l2, self.l1)

    return _hessian.hvp_fn(loss_fn, data, batch_size=self.batch_size)(params, v)


def _ritz_ends(run: Any, k: int, which: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """The wanted Ritz values of a :func:`landscape.linalg.driven_lanczos` run per end
  (``largest`` descending, ``smallest`` ascending) with their residuals
  ``|β_n s_{n,i}|`` (``END_residual``: an unconverged probe shows there), and the
  coefficients ``(m,)`` in its basis of the sum of their unit Ritz vectors.

  On the host in float64, as the run's own early-stop test diagonalizes ``T_n`` (the same
  values :func:`landscape.linalg.krylov_pairs` gives, in the working precision there);
  the vectors are then one product with the basis (:func:`_warm_vector`) instead of an
  eager unravel of ``k`` vectors per end.
  """
  n = run.num_steps
  # (slicing on the host: a device slice compiles once per length)
  a = np.asarray(run.alphas, np.float64)[:n]
  b = np.asarray(run.betas, np.float64)[:n - 1]
  theta, s = np.linalg.eigh(np.diag(a) + np.diag(b, 1) + np.diag(b, -1))
  residuals = np.abs(float(np.asarray(run.betas, np.float64)[n - 1]) * s[n - 1])
  ends, coeff = {}, np.zeros(int(run.alphas.shape[0]))
  for end in {"largest": ("largest",), "smallest": ("smallest",),
              "both": ("largest", "smallest")}[which]:
    idx = np.arange(n - 1, n - 1 - k, -1) if end == "largest" else np.arange(k)
    ends[end] = theta[idx]
    ends[f"{end}_residual"] = residuals[idx]
    coeff[:n] += s[:, idx].sum(axis=1)
  return ends, coeff


@functools.partial(jax.jit, static_argnums=0)
def _warm_vector(flat: Any, basis: jax.Array, coeff: jax.Array) -> PyTree:
  """``Σ_i c_i v_i`` of the Lanczos basis rows, as a pytree like the parameters."""
  return flat.unravel(jnp.tensordot(coeff.astype(basis.dtype), basis, axes=1))


@jax.jit
def _start_vector(warm: PyTree, key: Any) -> PyTree:
  r = _linalg.random_tree(key, warm)
  r_norm, w_norm = optax.tree.norm(r), optax.tree.norm(warm)
  # no previous vectors (warm = 0): the random vector alone, a cold start
  scale = jnp.where(w_norm > 0, WARM_NOISE, 1.0) / r_norm
  return jax.tree.map(lambda w, q: jnp.where(w_norm > 0, w / w_norm, 0.0) + scale * q,
                      warm, r)


class _Tracker:
  """The curvature probes of one training run, their records and the warm-start vector."""

  def __init__(self, spec: CurvatureTracking, apply: _ObjectiveHVP, data: Any,
               params: PyTree, steps_per_epoch: int):
    self.spec, self.apply, self.data = spec, apply, data
    self.steps_per_epoch = steps_per_epoch
    self.size = min(int(spec.num_steps), _linalg.num_params(params))
    self.key = jax.random.key(spec.seed)
    self.warm = jax.tree.map(jnp.zeros_like, params)   # zeros: no previous probe
    self.rows: list[dict[str, float]] = []
    self.seconds = 0.0

  def start(self, step: int) -> PyTree:
    """The start vector of the probe at ``step``.

    Warm: the normalized sum of the previous probe's wanted unit Ritz vectors plus a random
    unit vector of weight :data:`WARM_NOISE`. The Hessian moves little between probes, so
    the previous extreme eigenvectors overlap the new ones strongly and Lanczos stops after
    a few products. Lanczos only finds eigenvectors the start vector has a component
    along: when a new extreme eigenvalue emerges (an eigenvalue crossing, a new outlier)
    its eigenvector may be nearly orthogonal to the old ones; the random part gives every
    direction a component (0.1 of a cold start's), which Lanczos amplifies geometrically,
    so the new extreme is found at the cost of a few more steps, while lowering the overlap
    with the old eigenvectors by only ~0.5 %. Cold (no previous probe, ``warm_start``
    off): a random unit vector. The random part is drawn from ``fold_in(key(seed), step)``,
    so a resumed run repeats it.
    """
    return _start_vector(self.warm, jax.random.fold_in(self.key, step))

  def probe(self, step: int, params: PyTree, stats: PyTree | None) -> dict[str, float]:
    """Run the probe at optimizer step ``step``; record and return its row."""
    spec = self.spec
    t0 = time.perf_counter()
    nan_k = np.full(spec.k, np.nan)
    largest = smallest = largest_res = smallest_res = nan_k
    try:
      run = _linalg.driven_lanczos(self.apply, (params, stats, self.data), self.start(step),
                                   self.size, tol=spec.tol, k=spec.k, which=spec.which,
                                   relative_to="radius")
      num_hvps = int(run.num_steps)
      ends, coeff = _ritz_ends(run, spec.k, spec.which)
      largest = ends.get("largest", nan_k)
      smallest = ends.get("smallest", nan_k)
      largest_res = ends.get("largest_residual", nan_k)
      smallest_res = ends.get("smallest_residual", nan_k)
      if spec.warm_start:
        self.warm = _warm_vector(run.flat, run.basis, jnp.asarray(coeff))
    except np.linalg.LinAlgError:
      # a diverged run (non-finite Hessian products): NaN values, the next probe cold
      num_hvps, self.warm = 0, jax.tree.map(jnp.zeros_like, self.warm)
    lr = float(spec.schedule(step)) if spec.schedule is not None else float("nan")
    seconds = time.perf_counter() - t0
    self.seconds += seconds
    row = {"step": step, "epoch": step / self.steps_per_epoch, "lambda_max": float(largest[0]),
           "lambda_min": float(smallest[0]), "probe_hvps": num_hvps, "lr": lr,
           "largest": largest, "smallest": smallest, "largest_residual": largest_res,
           "smallest_residual": smallest_res, "seconds": seconds}
    self.rows = [r for r in self.rows if r["step"] < step] + [row]
    return row

  def last_in_epoch(self, epoch: int) -> dict[str, float]:
    """The history columns of ``epoch``: its last probe (steps ``((e−1)·S, e·S]``, the
    start for epoch 0), blank (NaN) without one."""
    lo, hi = (epoch - 1) * self.steps_per_epoch, epoch * self.steps_per_epoch
    inside = [r for r in self.rows if lo < r["step"] <= hi or (epoch == 0 and r["step"] == 0)]
    if not inside:
      return {name: float("nan") for name in CURVATURE_FIELDS}
    return {name: inside[-1][name] for name in CURVATURE_FIELDS}

  def arrays(self) -> dict[str, np.ndarray]:
    """The ``curvature`` group of ``trajectory.h5``: one entry per probe."""
    k = self.spec.k
    rows = self.rows
    out = {name: np.asarray([r[name] for r in rows], np.float64)
           for name in ("epoch", "lambda_max", "lambda_min", "lr", "seconds")}
    out["step"] = np.asarray([r["step"] for r in rows], np.int64)
    out["probe_hvps"] = np.asarray([r["probe_hvps"] for r in rows], np.int64)
    for end in ("largest", "smallest", "largest_residual", "smallest_residual"):
      out[end] = (np.stack([r[end] for r in rows]) if rows else np.zeros((0, k)))
    return out

  def attrs(self) -> dict[str, Any]:
    s = self.spec
    return {"every": s.every, "unit": s.unit, "k": s.k, "which": s.which,
            "num_steps": s.num_steps, "tol": s.tol, "n_samples": int(
                _batching.num_samples(self.data)), "warm_start": s.warm_start,
            "optimizer": s.optimizer or "", "momentum": float(s.momentum),
            "nesterov": bool(s.nesterov), "steps_per_epoch": self.steps_per_epoch,
            "operator": "hessian"}

  def restore(self, arrays: Mapping[str, np.ndarray] | None, upto_step: int) -> None:
    """The probes of a resumed run up to ``upto_step``, read back from ``trajectory.h5``."""
    if not arrays or "step" not in arrays:
      return
    k = self.spec.k
    for i, step in enumerate(np.asarray(arrays["step"]).tolist()):
      if step > upto_step:
        continue
      row = {"step": int(step), "epoch": float(arrays["epoch"][i]),
             "lambda_max": float(arrays["lambda_max"][i]),
             "lambda_min": float(arrays["lambda_min"][i]),
             "probe_hvps": int(arrays["probe_hvps"][i]), "lr": float(arrays["lr"][i]),
             "seconds": float(arrays["seconds"][i]) if "seconds" in arrays else float("nan")}
      for end in ("largest", "smallest", "largest_residual", "smallest_residual"):
        got = arrays.get(end)
        row[end] = (np.asarray(got[i], np.float64) if got is not None and len(got) > i
                    else np.full(k, np.nan))
      self.rows.append(row)

  def text(self) -> str:
    r = self.rows[-1]
    parts = [f"λmax {r['lambda_max']:.4g}" if np.isfinite(r["lambda_max"]) else "",
             f"λmin {r['lambda_min']:.4g}" if np.isfinite(r["lambda_min"]) else "",
             f"{r['probe_hvps']} HVPs"]
    return f"curvature at step {r['step']}: " + ", ".join(p for p in parts if p)


def _epoch_label(epochs: int, steps_per_epoch: int) -> Callable[[int, int], str]:
  """``epoch 3/10`` at the end of an epoch, ``epoch 4/10 (step 7/22)`` within one."""
  def label(n: int, total: int) -> str:
    e, k = divmod(n, steps_per_epoch)
    if k == 0:
      return f"epoch {e}/{epochs}"
    return f"epoch {e + 1}/{epochs} (step {k}/{steps_per_epoch})"
  return label


def _row_text(row: dict[str, float]) -> str:
  text = (f"loss {row['train_loss']:.4f} acc {row['train_acc']:.1f}% | "
          f"test loss {row['test_loss']:.4f} acc {row['test_acc']:.1f}%")
  curvature = [f"{label} {row[key]:.4g}" for key, label in (("lambda_max", "λmax"),
                                                            ("lambda_min", "λmin"))
               if np.isfinite(row.get(key, np.nan))]
  return text + (" | " + " ".join(curvature) if curvature else "")


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
    # a blank cell (no curvature probe in that epoch) reads as NaN
    rows = [{k: (int(v) if k == "epoch" else float(v) if v != "" else float("nan"))
             for k, v in row.items()} for row in csv.DictReader(f)]
  return [r for r in rows if r["epoch"] <= upto]


def _cell(key: str, value: Any) -> Any:
  """A history cell: NaN (no value) as blank, an HVP count as an integer."""
  if isinstance(value, float) and value != value:
    return ""
  return int(value) if key == "probe_hvps" else value


def _write_history(path: Path, rows: list[dict[str, float]],
                   fields: tuple[str, ...] = HISTORY_FIELDS) -> None:
  from landscape import io as _io
  text = io.StringIO()
  w = csv.DictWriter(text, fieldnames=fields)
  w.writeheader()
  for r in rows:
    w.writerow({k: _cell(k, r.get(k, float("nan"))) for k in fields})
  _io.atomic_write(path, text.getvalue())


def train(module, variables: Mapping[str, Any], loss: Callable, *, task: str,
          x_train, y_train, x_test, y_test, tx: optax.GradientTransformation,
          epochs: int, batch_size: int, seed: int = 0, save_every: int = 1,
          l2: float = 0.0, l1: float = 0.0, run_dir: str | Path | None = None,
          resume: bool = True, eval_batch_size: int = 512,
          curvature: CurvatureTracking | None = None,
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
    curvature: track Hessian eigenvalues during training (:class:`CurvatureTracking`;
      ``None`` or ``every = 0``: no tracking). Each probe's ``lambda_max``, ``lambda_min``
      and ``probe_hvps`` go into the history row of its epoch (the epoch's last probe;
      blank in epochs without one) and every probe, with the learning rate, into the
      ``curvature`` group of ``trajectory.h5``. Probes only read the parameters: the
      training result is the same as without them (bitwise; with ``unit="steps"`` the
      epoch's scan runs in segments split at the probes, over the same batches). The
      warm-start vector is saved in the checkpoints, so a resumed run repeats the
      tracked values exactly.

  Returns:
    :class:`TrainResult` with the final variables and the history rows.
  """
  from landscape import io as _io
  n = int(np.shape(x_train)[0])
  check_args(epochs=epochs, batch_size=batch_size, save_every=save_every, num_samples=n)
  has_bn = _has_bn(variables)
  step = make_train_step(module, loss, tx, l2=l2, l1=l1, has_bn=has_bn)
  run_epoch = _epoch_fn(step, batch_size)
  nb = n // batch_size
  track = curvature if curvature is not None and curvature.enabled else None
  if curvature is not None:
    curvature.check(epochs=epochs, steps_per_epoch=nb, num_samples=n)
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

  tracker = None
  if track is not None:
    m = n if track.n_samples is None else track.n_samples
    tracker = _Tracker(track, _ObjectiveHVP(module, loss, l2, l1, track.batch_size),
                       (x_tr[:m], y_tr[:m]), state["params"], nb)
    run_segment, permutation = _segment_fn(step, batch_size)
  fields = HISTORY_FIELDS + (CURVATURE_FIELDS if tracker is not None else ())

  def checkpoint_of(st):
    ck = {"variables": variables_of(st), "opt_state": st["opt_state"], "step": st["step"]}
    if tracker is not None and track.warm_start:
      ck["curvature_warm"] = tracker.warm
    return ck

  run_path = Path(run_dir) if run_dir is not None else None
  start, resumed_from, history = 0, None, []
  if run_path is not None:
    run_path.mkdir(parents=True, exist_ok=True)
    done = list_checkpoints(run_path) if resume else []
    if done:
      resumed_from = done[-1]
      try:
        restored = load_checkpoint(run_path, resumed_from, checkpoint_of(state))
      except ConfigError:
        if tracker is None or not track.warm_start:
          raise
        # a checkpoint without the warm-start vector (written by train() without
        # tracking): resume, the next probe starts cold
        restored = load_checkpoint(run_path, resumed_from, {
            "variables": variables_of(state), "opt_state": state["opt_state"],
            "step": state["step"]})
      if "curvature_warm" in restored:
        tracker.warm = restored["curvature_warm"]
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
      if tracker is not None and (run_path / "trajectory.h5").is_file():
        group = _io.read_trajectory_group(run_path / "trajectory.h5", "curvature")
        tracker.restore(group[0] if group else None, resumed_from * nb)
      log(f"resuming {run_path} from epoch {resumed_from}")
  traj = (_io.TrajectoryWriter(run_path / "trajectory.h5", state["params"],
                               resume=resumed_from is not None)
          if run_path is not None else None)

  def save(epoch):
    if run_path is None:
      return
    save_checkpoint(run_path, epoch, checkpoint_of(state))
    traj.append(epoch, state["params"])
    if tracker is not None:
      traj.write_group("curvature", tracker.arrays(), tracker.attrs())
    _write_history(run_path / "history.csv", history, fields)

  def probe(t):
    tracker.probe(t, state["params"], state.get("batch_stats"))
    if progress is None:
      log(tracker.text())
    else:
      progress.set(t, text=tracker.text())

  t0 = time.perf_counter()
  saved = list_checkpoints(run_path) if run_path is not None else []
  progress = None
  try:
    if start == 0:
      history = [history_row(0, variables_of(state))]
      if tracker is not None:
        probe(0)
        history[0].update(tracker.last_in_epoch(0))
      save(0)
      saved = [0] if run_path is not None else []
    key = jax.random.key(seed)
    # steps done, rate and ETA: a line every epochs/10 epochs, at least every
    # _progress.INTERVAL seconds (within an epoch too: the epoch's scan ticks) and at the end
    every = max(1, epochs // 10)
    progress = _progress.Progress(epochs * nb, "steps", "training", log=log,
                                  initial=start * nb, label=_epoch_label(epochs, nb),
                                  ticks=True)
    for epoch in range(start + 1, epochs + 1):
      progress.text = ""
      ekey = jax.random.fold_in(key, epoch)
      first, last = (epoch - 1) * nb, epoch * nb
      probes = tracker.spec.probe_steps(first + 1, last, nb) if tracker is not None else []
      if probes and probes != [last] and track.unit == "steps":
        # the epoch's batches in segments ending at the probes (the same scan body)
        perm, done = permutation(ekey, n, batch_size), 0
        for t in probes + ([last] if probes[-1] != last else []):
          state = run_segment(state, x_tr, y_tr, perm[done:t - first])
          done = t - first
          if t in probes:
            probe(t)
      else:
        state, _ = run_epoch(state, x_tr, y_tr, ekey)
        for t in probes:
          probe(t)
      row = history_row(epoch, variables_of(state))
      if tracker is not None:
        row.update(tracker.last_in_epoch(epoch))
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
                     resumed_from=resumed_from,
                     curvature=tracker.arrays() if tracker is not None else None,
                     curvature_seconds=tracker.seconds if tracker is not None else 0.0)
