"""The one bridge from a Flax model and a loss to the model-agnostic core.

From a model, its variables, a per-example loss and the task, :func:`build` makes

* ``loss_fn(params, batch) -> scalar``: J(θ) = (1/n) Σ ℓ(f(x; θ), y) + λ₂·½‖θ‖² + λ₁‖θ‖₁
  over ``batch = (x, y)`` (the regularizer is part of the swept landscape), a
  :class:`landscape.operators.SplitLoss` (so the Gauss–Newton and Fisher operators see
  the model's outputs),
* ``metrics``: ``acc``, the accuracy in percent for classifiers (as the original tool stored it),
* ``params``: the pytree that directions perturb.

BatchNorm modes (DESIGN §3):

* ``eval`` (default): running statistics fixed; directions span the parameters only.
* ``states``: the running statistics are part of the perturbed pytree,
  ``{"params": ..., "batch_stats": ...}`` — the original tool's ``--dir_type states``.
  With ``ignore="biasbn"`` every statistics leaf (1-D) gets a zero direction, so the
  surface equals ``eval``'s; with ``ignore=None`` they move like the original's.
* ``recompute``: at every point the statistics are re-estimated on ``bn_samples``
  training samples (one train-mode forward pass), as mode-connectivity work does.

The model-aware sweep also exploits the first layer's linearity in its own
parameters: ``stem(x; θ + a·d₁ + b·d₂) = z₀ + a·z₁ + b·z₂`` with ``z_k = stem(x; d_k)``,
so the stem runs three times per sample for the whole grid instead of once per point.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from landscape import operators as _operators
from landscape import surface as _surface
from landscape.errors import ConfigError, unknown_name

PyTree = Any
BN_MODES = ("eval", "states", "recompute")
BN_MOMENTUM = 0.9   # the momentum of every BatchNorm in landscape.models


def regularizer(params: PyTree, l2: float = 0.0, l1: float = 0.0) -> jax.Array:
  """``l2·½‖θ‖² + l1·‖θ‖₁`` over the leaves of ``params``."""
  total = jnp.zeros((), jnp.result_type(*jax.tree.leaves(params)) if params else float)
  if l2:
    total = total + 0.5 * l2 * sum(jnp.sum(jnp.square(p)) for p in jax.tree.leaves(params))
  if l1:
    total = total + l1 * sum(jnp.sum(jnp.abs(p)) for p in jax.tree.leaves(params))
  return total


def accuracy(outputs: jax.Array, targets: jax.Array, task: str) -> jax.Array:
  """Accuracy in percent: argmax for multiclass, sign of the logit for binary."""
  if task == "multiclass":
    pred = jnp.argmax(outputs, axis=-1)
    return 100.0 * jnp.mean((pred == targets).astype(jnp.float32))
  logits = outputs.reshape(outputs.shape[0])
  positive = targets > 0
  return 100.0 * jnp.mean(((logits > 0) == positive).astype(jnp.float32))


@dataclasses.dataclass(frozen=True)
class Objective:
  """A loss function of the perturbed parameters, its metrics, and the model behind it."""
  loss_fn: Callable[[PyTree, PyTree], jax.Array]
  metrics: Mapping[str, Callable[[PyTree, PyTree], jax.Array]]
  params: PyTree
  bn_mode: str
  task: str
  module: Any = None
  variables: Mapping[str, Any] | None = None
  per_example_loss: Callable | None = None
  l2: float = 0.0
  l1: float = 0.0
  stats_fn: Callable[[PyTree], PyTree] | None = None   # recompute: params -> batch_stats

  def variables_at(self, perturbed: PyTree) -> dict:
    """Flax variables at a perturbed point (running statistics as the BN mode says)."""
    return _variables_at(self, perturbed)

  # The perturbed pytree is the model parameters, except in BatchNorm ``states`` mode,
  # where it is ``{"params", "batch_stats"}``. These three methods are the only place that
  # knows: everything else moves between the two spaces through them.

  def perturbed_of(self, variables: Mapping[str, Any]) -> PyTree:
    """The perturbed pytree of a model's Flax ``variables`` (e.g. another checkpoint)."""
    return perturbed_of(variables, self.bn_mode)

  def model_part(self, tree: PyTree) -> PyTree:
    """The model-parameter part of a perturbed pytree (or of a direction in its space)."""
    return _model_params(self, tree)

  def lift(self, direction: PyTree) -> PyTree:
    """A direction in model-parameter space as a direction of the perturbed pytree
    (``states`` mode: zero change of the running statistics)."""
    if self.bn_mode == "states":
      return {"params": direction,
              "batch_stats": jax.tree.map(jnp.zeros_like, self.params["batch_stats"])}
    return direction

  @property
  def factorizable(self) -> bool:
    """Whether the first-layer factorization applies (a model with a stem, no recompute)."""
    return (self.module is not None and hasattr(self.module, "stem")
            and hasattr(self.module, "head") and self.bn_mode != "recompute")

  def point_fn(self, directions: Sequence[PyTree]):
    """The generic grid point function ``(coeffs, batch) -> {"loss", metrics...}``."""
    return _surface.point_loss_fn(self.loss_fn, self.params, directions, self.metrics)

  def factorized(self, directions: Sequence[PyTree], data: PyTree, *,
                 batch_size: int | None = None):
    """``(point_fn, data')`` evaluating the same surface with the stem computed once.

    ``data' = (z₀, z₁, …, y)`` holds the stem outputs of the centre and of each
    direction for every sample; ``point_fn`` adds them with the point's
    coefficients and runs the rest of the network.

    This model-aware path is optional: a module without ``stem``/``head`` methods is swept
    by the generic engine (:func:`landscape.surface.evaluate`: ``affine`` point mode
    without convolutions, which finds the same factorization in the jaxpr of any loss and
    prepares it once per sweep; ``map`` with them), with the same values and, measured
    with ``scripts/bench_surface.py`` (2-core AMD EPYC with AVX-512, no AMX, jax 0.10.2,
    both auto-tuned), at the same speed or faster: MLP 784-256-256-10 12x12 generic 128
    vs model-aware 122 points/s, CNN 16-32-64 8x8 5.91 vs 5.11 (the stem precompute
    takes 2.4 s and 2.3x the memory there). The pipeline keeps it (``surface.factorize``)
    because on the default digits CNN it is the faster one: ``landscape surface`` of a
    default run, 961 points, 149-186 points/s against 108 with ``surface.factorize=false``
    (both ``map`` mode: the 8x8 images make the stem a large part of the network).
    """
    if not self.factorizable:
      raise ConfigError(f"the first-layer factorization needs a model with stem/head and "
                        f"bn_mode eval or states, got bn_mode={self.bn_mode!r}")
    module = self.module
    x, y = data
    stem = jax.jit(lambda p, xb: module.apply({"params": p}, xb, method="stem"))
    model_params = [_model_params(self, self.params)] + [
        _model_params(self, d) for d in directions]
    step = batch_size or x.shape[0]
    zs = [np.concatenate([np.asarray(stem(p, x[s:s + step])) for s in range(0, x.shape[0], step)])
          for p in model_params]
    centre = self.params

    def point_fn(coeffs, batch):
      *zb, yb = batch
      z = zb[0]
      for k in range(len(directions)):
        z = z + coeffs[k].astype(z.dtype) * zb[k + 1]
      p = _surface.shift(centre, directions, coeffs)
      out = module.apply(self.variables_at(p), z, False, method="head")
      result = {"loss": jnp.mean(self.per_example_loss(out, yb))
                + regularizer(_model_params(self, p), self.l2, self.l1)}
      if "acc" in self.metrics:
        result["acc"] = accuracy(out, yb, self.task)
      return result

    return point_fn, (*zs, np.asarray(y))


def perturbed_of(variables: Mapping[str, Any], bn_mode: str) -> PyTree:
  """What a sweep perturbs in ``bn_mode``: the parameters, or (``states``) parameters and
  running statistics."""
  if bn_mode == "states":
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  return variables["params"]


def _model_params(obj: Objective, perturbed: PyTree) -> PyTree:
  return perturbed["params"] if obj.bn_mode == "states" else perturbed


def _variables_at(obj: Objective, perturbed: PyTree) -> dict:
  variables = dict(obj.variables or {})
  if obj.bn_mode == "states":
    variables.update(perturbed)
    return variables
  variables["params"] = perturbed
  if obj.bn_mode == "recompute" and "batch_stats" in variables:
    variables["batch_stats"] = obj.stats_fn(perturbed)
  return variables


def from_nnx(model: Any, loss: Callable[[jax.Array, jax.Array], jax.Array], *, task: str,
             bn_mode: str = "eval", l2: float = 0.0, l1: float = 0.0,
             bn_data: jax.Array | np.ndarray | None = None, bn_samples: int = 2048
             ) -> Objective:
  """The objective of a Flax NNX model (``model(x) -> outputs``) with a per-example loss.

  The model is split into graph, parameters and BatchNorm statistics
  (:class:`landscape.models.nnx.NNXModule`) and merged at every point, so everything that
  takes an :class:`Objective` (sweeps with every direction kind, Hessian probes, critical
  points, paths) works on it; the arguments are those of :func:`build`. The model itself
  is not changed.

  Example:
    >>> obj = from_nnx(MyNNXNet(rngs=nnx.Rngs(0)), losses.get("cross_entropy"),
    ...                task="multiclass")
    >>> obj.loss_fn(obj.params, (x, y))
  """
  from landscape.models.nnx import NNXModule
  module = model if isinstance(model, NNXModule) else NNXModule(model)
  variables = module.init(jax.random.key(0), None)
  return build(module, variables, loss, task=task, bn_mode=bn_mode, l2=l2, l1=l1,
               bn_data=bn_data, bn_samples=bn_samples)


def build(module, variables: Mapping[str, Any], loss: Callable[[jax.Array, jax.Array], jax.Array],
          *, task: str, bn_mode: str = "eval", l2: float = 0.0, l1: float = 0.0,
          bn_data: jax.Array | np.ndarray | None = None, bn_samples: int = 2048) -> Objective:
  """The objective of a Flax model with a per-example loss.

  Args:
    module: a ``flax.linen`` module called as ``module.apply(variables, x, train)``.
    variables: its variables (``params`` and, with BatchNorm, ``batch_stats``).
    loss: per-example loss ``loss(outputs, targets) -> (n,)`` (``landscape.losses.get``).
    task: ``"regression"``, ``"binary"`` or ``"multiclass"`` (accuracy for the latter two).
    bn_mode: ``"eval"``, ``"states"`` or ``"recompute"`` (module docstring).
    l2, l1: regularization weights: J = mean loss + l2·½‖θ‖² + l1·‖θ‖₁.
    bn_data: training inputs for ``recompute`` (the first ``bn_samples`` are used).

  Returns:
    An :class:`Objective`; ``objective.loss_fn(objective.params, (x, y))`` is J at the
    trained point.
  """
  if bn_mode not in BN_MODES:
    raise unknown_name("bn_mode", bn_mode, BN_MODES)
  variables = dict(variables)
  has_bn = "batch_stats" in variables and bool(jax.tree.leaves(variables["batch_stats"]))
  if bn_mode == "recompute" and has_bn and bn_data is None:
    raise ConfigError("bn_mode='recompute' needs training inputs (bn_data) to re-estimate "
                      "BatchNorm statistics")
  perturbed = perturbed_of(variables, bn_mode)
  stats_fn = None
  if bn_mode == "recompute" and has_bn:
    xb = jnp.asarray(np.asarray(bn_data)[:bn_samples])
    zero_stats = jax.tree.map(jnp.zeros_like, variables["batch_stats"])
    momentum = getattr(module, "bn_momentum", BN_MOMENTUM)   # an NNX model's own

    def stats_fn(params):
      _, state = module.apply({"params": params, "batch_stats": zero_stats}, xb, True,
                              mutable=["batch_stats"])
      # Flax: new = m·old + (1−m)·batch statistic, and old = 0 here.
      return jax.tree.map(lambda s: s / (1.0 - momentum), state["batch_stats"])

  skeleton = Objective(loss_fn=None, metrics={}, params=perturbed, bn_mode=bn_mode,  # type: ignore[arg-type]
                       task=task, module=module, variables=variables, per_example_loss=loss,
                       l2=l2, l1=l1, stats_fn=stats_fn)

  def outputs(p, x):
    return module.apply(skeleton.variables_at(p), x, False)

  penalty = None
  if l2 or l1:
    def penalty(p):
      return regularizer(_model_params(skeleton, p), l2, l1)
  # A SplitLoss is an ordinary loss_fn(params, batch) that also exposes the model's outputs,
  # for the Gauss-Newton, Fisher and residual operators of landscape.operators.
  loss_fn = _operators.SplitLoss(apply=outputs, output_loss=loss, penalty=penalty)

  metrics = {}
  if task in ("binary", "multiclass"):
    metrics["acc"] = lambda p, batch: accuracy(outputs(p, batch[0]), batch[1], task)
  obj = dataclasses.replace(skeleton, loss_fn=loss_fn, metrics=metrics)
  return obj
