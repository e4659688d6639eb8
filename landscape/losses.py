"""Per-example losses by name: ``get(name, **hyper)(outputs, targets) -> (n,)``.

Every loss maps model outputs and targets to one loss per example, shape ``(n,)``;
the objective takes the mean. With ``e = ŷ − y`` (output minus target):

  regression (outputs ``(n,)`` or ``(n, 1)``, real targets ``(n,)``)
    mse                    e²   (not ½e²: torch's ``MSELoss(reduction='none')``)  [optax]
    mae                    |e|
    huber(delta=1)         ½e² if |e| ≤ δ, else δ|e| − ½δ²                        [optax]
    log_cosh               log cosh e = logaddexp(e, −e) − log 2 (stable)           [optax]
    quantile(tau=0.5)      τ·max(y − ŷ, 0) + (1 − τ)·max(ŷ − y, 0)   (pinball)
    asymmetric_mse(under_weight=3, over_weight=1)
                           w·e², w = under_weight if ŷ < y else over_weight
    asymmetric_huber(under_weight=3, over_weight=1, delta=1)
                           w·huber_δ(e), the same w
  binary (one logit per example, outputs ``(n,)`` or ``(n, 1)``, targets ``(n,)``)
    bce                    −t log σ(o) − (1 − t) log σ(−o),  t ∈ {0, 1}           [optax]
    hinge                  max(0, 1 − s·o),  s ∈ {−1, +1}                          [optax]
    squared_hinge          max(0, 1 − s·o)²
    focal(alpha=0.25, gamma=2)
                           −α_t (1 − p_t)^γ log p_t, p_t = σ(o) if t = 1 else σ(−o),
                           α_t = α if t = 1 else 1 − α                             [optax]
  multiclass (logits ``(n, C)``, integer labels ``(n,)`` in ``[0, C)``)
    cross_entropy(label_smoothing=0)
                           −Σ_j y'_j log softmax(o)_j,  y' = (1 − α)·onehot(y) + α/C  [optax]
    multiclass_hinge(margin=1)
                           Σ_{j≠y} max(0, o_j − o_y + margin)   (Weston–Watkins sum form)
    multiclass_focal(gamma=2, alpha=1)
                           −α (1 − p_y)^γ log p_y,  p = softmax(o)

[optax] marks the losses computed by ``optax.losses`` (``squared_error``,
``huber_loss``, ``log_cosh``, ``sigmoid_binary_cross_entropy``, ``hinge_loss``,
``sigmoid_focal_loss``, ``softmax_cross_entropy_with_integer_labels``, and
``smooth_labels`` + ``softmax_cross_entropy`` when ``label_smoothing > 0``); each was
checked against the formula above. The others are written here: optax has no
absolute-error, pinball, asymmetric or squared-hinge loss, its
``multiclass_hinge_loss`` is the Crammer–Singer *max* form (not the Weston–Watkins
sum above) and it has no softmax focal loss.

Conventions:
  * A trailing axis of size 1 is squeezed from regression/binary outputs and from
    targets; any other shape mismatch raises :class:`~landscape.errors.DataError`
    naming both shapes (at trace time, so also under ``jax.jit``).
  * Classification losses take LOGITS and use log-sigmoid / log-softmax forms:
    values and gradients stay finite for logits of ±1e4.
  * Binary targets may be ``{0, 1}`` or ``{−1, +1}``. The convention is resolved per
    element with traceable logic (works under ``jit``; values are never inspected in
    Python): ``t = where(target < 0, 0, target)`` for bce/focal (so −1 → 0; soft
    targets in ``[0, 1]`` pass through) and ``s = 2t − 1`` for hinge/squared_hinge
    (so 0 → −1). Both conventions therefore give identical losses.
  * Multiclass labels must have an integer dtype. A label outside ``[0, C)`` cannot be
    detected under ``jit``; its loss is NaN (never a silently wrapped index).

Example:
  >>> from landscape import losses
  >>> ce = losses.get("cross_entropy", label_smoothing=0.1)
  >>> ce(jnp.zeros((4, 10)), jnp.arange(4)).shape
  (4,)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from landscape import _imports
from landscape.errors import ConfigError, DataError, unknown_name

PerExampleLoss = Callable[[Array, Array], Float[Array, "n"]]


# --------------------------------------------------------------------------- regression

def _mse(o: Array, t: Array) -> Array:
  """e², e = o − t (optax.losses.squared_error)."""
  return optax.losses.squared_error(o, t)


def _mae(o: Array, t: Array) -> Array:
  """|e|."""
  return jnp.abs(o - t)


def _huber(o: Array, t: Array, *, delta: float) -> Array:
  """½e² if |e| ≤ δ else δ|e| − ½δ².

  optax.losses.huber_loss computes ½·min(|e|,δ)² + δ·(|e| − min(|e|,δ)): the same.
  """
  return optax.losses.huber_loss(o, t, delta=delta)


def _log_cosh(o: Array, t: Array) -> Array:
  """log cosh e, as logaddexp(e, −e) − log 2 (optax.losses.log_cosh): no overflow."""
  return optax.losses.log_cosh(o, t)


def _quantile(o: Array, t: Array, *, tau: float) -> Array:
  """Pinball loss τ·max(y − ŷ, 0) + (1 − τ)·max(ŷ − y, 0)."""
  e = o - t
  return tau * jnp.maximum(-e, 0.0) + (1.0 - tau) * jnp.maximum(e, 0.0)


def _asymmetric_weight(o: Array, t: Array, under_weight: float, over_weight: float) -> Array:
  """under_weight where the prediction is below the target, over_weight elsewhere."""
  return jnp.where(o < t, under_weight, over_weight).astype(o.dtype)


def _asymmetric_mse(o: Array, t: Array, *, under_weight: float, over_weight: float) -> Array:
  """w·e² with w = under_weight if ŷ < y else over_weight."""
  return _asymmetric_weight(o, t, under_weight, over_weight) * _mse(o, t)


def _asymmetric_huber(o: Array, t: Array, *, under_weight: float, over_weight: float,
                      delta: float) -> Array:
  """w·huber_δ(e) with w = under_weight if ŷ < y else over_weight."""
  return _asymmetric_weight(o, t, under_weight, over_weight) * _huber(o, t, delta=delta)


# ------------------------------------------------------------------------------- binary

def _zero_one(t: Array) -> Array:
  """{−1, +1} or {0, 1} targets -> {0, 1} (per element, traceable)."""
  return jnp.where(t < 0, jnp.zeros_like(t), t)


def _plus_minus_one(t: Array) -> Array:
  """{−1, +1} or {0, 1} targets -> {−1, +1} (per element, traceable)."""
  return 2.0 * _zero_one(t) - 1.0


def _bce(o: Array, t: Array) -> Array:
  """−t log σ(o) − (1 − t) log σ(−o) (optax.losses.sigmoid_binary_cross_entropy)."""
  return optax.losses.sigmoid_binary_cross_entropy(o, _zero_one(t))


def _hinge(o: Array, t: Array) -> Array:
  """max(0, 1 − s·o), s ∈ {−1, +1} (optax.losses.hinge_loss)."""
  return optax.losses.hinge_loss(o, _plus_minus_one(t))


def _squared_hinge(o: Array, t: Array) -> Array:
  """max(0, 1 − s·o)²."""
  return jnp.square(_hinge(o, t))


def _focal(o: Array, t: Array, *, alpha: float, gamma: float) -> Array:
  """−α_t (1 − p_t)^γ log p_t (optax.losses.sigmoid_focal_loss; log-space focal weight)."""
  return optax.losses.sigmoid_focal_loss(o, _zero_one(t), alpha=alpha, gamma=gamma)


# --------------------------------------------------------------------------- multiclass

def _label_logit(logits: Array, labels: Array) -> Array:
  """o_y per row, shape (n,); labels must already be inside [0, C)."""
  return jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]


def _cross_entropy(o: Array, y: Array, *, label_smoothing: float) -> Array:
  """−Σ_j y'_j log softmax(o)_j with y' = (1 − α)·onehot(y) + α/C."""
  if label_smoothing == 0.0:
    return optax.losses.softmax_cross_entropy_with_integer_labels(o, y)
  onehot = jax.nn.one_hot(y, o.shape[-1], dtype=o.dtype)
  return optax.losses.softmax_cross_entropy(
      o, optax.losses.smooth_labels(onehot, label_smoothing))


def _multiclass_hinge(o: Array, y: Array, *, margin: float) -> Array:
  """Σ_{j≠y} max(0, o_j − o_y + margin) (Weston–Watkins)."""
  slack = jnp.maximum(o - _label_logit(o, y)[:, None] + margin, 0.0)
  others = jnp.arange(o.shape[-1]) != y[:, None]
  return jnp.sum(jnp.where(others, slack, 0.0), axis=-1)


def _multiclass_focal(o: Array, y: Array, *, gamma: float, alpha: float) -> Array:
  """−α (1 − p_y)^γ log p_y, with log(1 − p_y) = logsumexp_{j≠y} log p_j (stable)."""
  log_p = jax.nn.log_softmax(o, axis=-1)
  others = jnp.arange(o.shape[-1]) != y[:, None]
  log_not_y = jax.nn.logsumexp(log_p, axis=-1, where=others)
  return -alpha * jnp.exp(gamma * log_not_y) * _label_logit(log_p, y)


# ----------------------------------------------------------------------------- registry

@dataclasses.dataclass(frozen=True)
class _Spec:
  task: str
  fn: Callable[..., Array]
  defaults: Mapping[str, float]
  user: bool = False    # a user's loss: called as fn(outputs, targets, **hyper) as it is


_REGISTRY: dict[str, _Spec] = {
    "mse": _Spec("regression", _mse, {}),
    "mae": _Spec("regression", _mae, {}),
    "huber": _Spec("regression", _huber, {"delta": 1.0}),
    "log_cosh": _Spec("regression", _log_cosh, {}),
    "quantile": _Spec("regression", _quantile, {"tau": 0.5}),
    "asymmetric_mse": _Spec("regression", _asymmetric_mse,
                            {"under_weight": 3.0, "over_weight": 1.0}),
    "asymmetric_huber": _Spec("regression", _asymmetric_huber,
                              {"under_weight": 3.0, "over_weight": 1.0, "delta": 1.0}),
    "bce": _Spec("binary", _bce, {}),
    "hinge": _Spec("binary", _hinge, {}),
    "squared_hinge": _Spec("binary", _squared_hinge, {}),
    "focal": _Spec("binary", _focal, {"alpha": 0.25, "gamma": 2.0}),
    "cross_entropy": _Spec("multiclass", _cross_entropy, {"label_smoothing": 0.0}),
    "multiclass_hinge": _Spec("multiclass", _multiclass_hinge, {"margin": 1.0}),
    "multiclass_focal": _Spec("multiclass", _multiclass_focal, {"gamma": 2.0, "alpha": 1.0}),
}

# Valid range of each hyperparameter: (predicate on a finite float, description).
_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "delta": (lambda v: v > 0, "delta > 0"),
    "tau": (lambda v: 0 < v < 1, "0 < tau < 1"),
    "under_weight": (lambda v: v >= 0, "under_weight >= 0"),
    "over_weight": (lambda v: v >= 0, "over_weight >= 0"),
    "gamma": (lambda v: v >= 0, "gamma >= 0"),
    "alpha": (lambda v: 0 <= v <= 1, "0 <= alpha <= 1"),
    "label_smoothing": (lambda v: 0 <= v < 1, "0 <= label_smoothing < 1"),
    "margin": (lambda v: v >= 0, "margin >= 0"),
}


TASKS = ("regression", "binary", "multiclass")
#: The built-in loss names (the rest of :func:`names` was registered).
BUILTIN = frozenset(_REGISTRY)


def _spec(name: str) -> _Spec:
  if _imports.is_import_path(name):
    return _user_spec(name)
  if not isinstance(name, str) or name not in _REGISTRY:
    raise unknown_name("loss", name, _REGISTRY)
  return _REGISTRY[name]


_EXPECTED = ("a per-example loss fn(outputs, targets, **hyper) -> (n,) with a declared task "
             "(fn.task = 'regression' | 'binary' | 'multiclass')")


def _user_spec(path: str) -> _Spec:
  """The spec of an import-path loss: its ``task`` attribute, hyperparameters without
  defaults (any keyword the function takes)."""
  fn = _imports.load(path, "loss.name", _EXPECTED)
  task = getattr(fn, "task", None)
  if task not in TASKS:
    raise ConfigError(f"loss.name {path!r} declares no task (task={task!r}); set "
                      f"{path.split(':')[1]}.task = 'regression', 'binary' or 'multiclass' in "
                      "its module, or register it with landscape.losses.register(name, fn, "
                      "task=...)")
  return _Spec(task, fn, dict(getattr(fn, "defaults", {}) or {}), user=True)


def register(name: str, fn: Callable[..., Array], *, task: str,
             defaults: Mapping[str, float] | None = None) -> None:
  """Add a per-example loss under a short ``name`` (for configs and :func:`get`).

  Args:
    name: the new name (not a built-in one).
    fn: ``fn(outputs, targets, **hyper) -> (n,)``, pure and traceable.
    task: ``"regression"``, ``"binary"`` or ``"multiclass"`` (what accuracy means, which
      datasets it fits).
    defaults: its hyperparameters and their defaults (``loss.kwargs`` may override them).

  Example:
    >>> register("cauchy", lambda o, t, c=1.0: jnp.log1p(((o[:, 0] - t) / c) ** 2),
    ...          task="regression", defaults={"c": 1.0})
  """
  if not isinstance(name, str) or not name or _imports.is_import_path(name):
    raise ConfigError(f"loss name {name!r} must be a plain non-empty string")
  if name in _REGISTRY and not _REGISTRY[name].user:
    raise ConfigError(f"loss {name!r} is built in; register yours under another name")
  if task not in TASKS:
    raise unknown_name("task", task, TASKS)
  if not callable(fn):
    raise ConfigError(f"loss {name!r}: fn must be callable, got {type(fn).__name__}")
  _REGISTRY[name] = _Spec(task, fn, dict(defaults or {}), user=True)


def _user_loss(name: str, spec: _Spec, params: Mapping[str, Any]) -> PerExampleLoss:
  import inspect
  try:
    inspect.signature(spec.fn).bind(None, None, **params)
  except TypeError as exc:
    raise ConfigError(f"loss {name!r} cannot be called as fn(outputs, targets"
                      f"{''.join(f', {k}=...' for k in params)}): {exc}; expected "
                      f"{_EXPECTED}") from None
  except ValueError:
    pass

  def loss(outputs: Array, targets: Array) -> Float[Array, "n"]:
    out = spec.fn(outputs, targets, **params)
    n = int(jnp.shape(targets)[0])
    if jnp.shape(out) != (n,):
      raise DataError(f"loss {name!r} returned shape {tuple(jnp.shape(out))} for {n} examples; "
                      f"a per-example loss must return shape ({n},)")
    return out
  return loss


def _check_hyper(name: str, key: str, value: Any) -> float:
  """``value`` as a float inside the valid range of ``key``, else ConfigError."""
  ok, valid = _RANGES.get(key, (lambda v: True, "any finite value"))
  number = None
  if not isinstance(value, (bool, str, bytes)) and np.ndim(value) == 0:
    try:
      number = float(value)
    except (TypeError, ValueError):
      number = None
  if number is None or not math.isfinite(number) or not ok(number):
    raise ConfigError(
        f"loss {name!r}: hyperparameter {key}={value!r} is invalid; "
        f"pass a finite number with {valid}")
  return number


def _resolve(name: str, hyper: Mapping[str, Any]) -> dict[str, float]:
  defaults = _spec(name).defaults
  unknown = sorted(set(hyper) - set(defaults))
  if unknown:
    valid = ", ".join(sorted(defaults)) if defaults else "none (it takes no hyperparameters)"
    raise ConfigError(
        f"loss {name!r} has no hyperparameter {unknown[0]!r}; valid hyperparameters: {valid}")
  merged = {**defaults, **hyper}
  return {key: _check_hyper(name, key, value) for key, value in merged.items()}


# ------------------------------------------------------------------------ input checks

def _squeeze_last(a: Array) -> Array:
  return a[..., 0] if a.ndim == 2 and a.shape[-1] == 1 else a


def _float_outputs(name: str, outputs: Any) -> Array:
  outputs = jnp.asarray(outputs)
  if not jnp.issubdtype(outputs.dtype, jnp.floating):
    raise DataError(
        f"loss {name!r} needs floating-point model outputs, got dtype {outputs.dtype}; "
        "cast them with .astype(jnp.float32)")
  return outputs


def _scalar_pair(name: str, task: str, outputs: Any, targets: Any) -> tuple[Array, Array]:
  """Regression/binary: (n,) or (n, 1) outputs and targets -> two (n,) arrays, one dtype."""
  outputs, targets = _float_outputs(name, outputs), jnp.asarray(targets)
  o, t = _squeeze_last(outputs), _squeeze_last(targets)
  if o.ndim != 1 or t.shape != o.shape:
    hint = " (a (n, C) output needs a multiclass loss such as 'cross_entropy')" \
        if task == "binary" and o.ndim == 2 else ""
    raise DataError(
        f"{task} loss {name!r} expects outputs of shape (n,) or (n, 1) and targets of the "
        f"same n; got outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)}{hint}")
  return o, t.astype(o.dtype)


def _logits_labels(name: str, outputs: Any, targets: Any) -> tuple[Array, Array]:
  """Multiclass: (n, C) logits and integer (n,) or (n, 1) labels."""
  logits, labels = _float_outputs(name, outputs), jnp.asarray(targets)
  y = _squeeze_last(labels)
  if logits.ndim != 2 or logits.shape[-1] < 2 or y.shape != logits.shape[:1]:
    raise DataError(
        f"multiclass loss {name!r} expects logits of shape (n, C) with C >= 2 and integer "
        f"labels of shape (n,); got outputs {tuple(logits.shape)} and targets "
        f"{tuple(labels.shape)}")
  if not jnp.issubdtype(y.dtype, jnp.integer):
    raise DataError(
        f"multiclass loss {name!r} needs integer class labels, got targets of dtype "
        f"{y.dtype}; cast them with .astype(jnp.int32)")
  return logits, y


def _multiclass(fn: Callable[..., Array], logits: Array, labels: Array,
                hyper: Mapping[str, float]) -> Array:
  """``fn`` on labels clipped into [0, C); rows whose label is outside give NaN."""
  num_classes = logits.shape[-1]
  valid = (labels >= 0) & (labels < num_classes)
  loss = fn(logits, jnp.clip(labels, 0, num_classes - 1), **hyper)
  return jnp.where(valid, loss, jnp.nan)


# -------------------------------------------------------------------------- public API

def names() -> tuple[str, ...]:
  """The names of all losses, sorted.

  Returns:
    A sorted tuple of loss names, each valid for :func:`get`.

  Example:
    >>> "cross_entropy" in names()
    True
  """
  return tuple(sorted(_REGISTRY))


def task(name: str) -> str:
  """The kind of dataset a loss applies to: ``"regression"``, ``"binary"`` or ``"multiclass"``.

  Regression losses compare one real output with a real target; binary losses take
  one logit per example and targets in ``{0, 1}`` or ``{−1, +1}``; multiclass losses
  take ``(n, C)`` logits and integer labels. The config uses this to refuse e.g.
  ``cross_entropy`` on a regression dataset.

  Args:
    name: a loss name (see :func:`names`).

  Returns:
    One of ``"regression"``, ``"binary"``, ``"multiclass"``.

  Raises:
    ConfigError: unknown ``name`` (the message lists the valid names).

  Example:
    >>> task("hinge")
    'binary'
  """
  return _spec(name).task


def hyperparameters(name: str) -> dict[str, float]:
  """The hyperparameters of a loss and their defaults.

  Args:
    name: a loss name (see :func:`names`).

  Returns:
    A new dict ``{hyperparameter: default}`` (empty for losses without any).

  Raises:
    ConfigError: unknown ``name``.

  Example:
    >>> hyperparameters("focal")
    {'alpha': 0.25, 'gamma': 2.0}
  """
  return dict(_spec(name).defaults)


def get(name: str, **hyper: Any) -> PerExampleLoss:
  """The per-example loss ``fn(outputs, targets) -> (n,)`` called ``name``.

  The returned function is pure and traceable (jit/vmap/grad-safe); its formula
  for each name is in the module docstring, e.g. ``huber``:
  ``ℓ(e) = ½e²`` for ``|e| ≤ δ`` and ``δ|e| − ½δ²`` otherwise, ``e = ŷ − y``.
  Shapes are checked when it is called (at trace time under ``jit``).

  Args:
    name: a loss name (see :func:`names`).
    **hyper: hyperparameters overriding the defaults of :func:`hyperparameters`.

  Returns:
    ``fn(outputs, targets)``: for regression/binary losses ``outputs`` of shape
    ``(n,)`` or ``(n, 1)`` and ``targets`` ``(n,)``; for multiclass losses logits
    ``(n, C)`` and integer labels ``(n,)``. It returns the losses, shape ``(n,)``,
    in the dtype of ``outputs``.

  Raises:
    ConfigError: unknown ``name``, unknown hyperparameter, or a value outside its
      range (``delta > 0``, ``0 < tau < 1``, weights, ``gamma``, ``margin >= 0``,
      ``0 <= alpha <= 1``, ``0 <= label_smoothing < 1``).
    DataError (from ``fn``): mismatched shapes, non-float outputs, non-integer labels.

  Example:
    >>> fn = get("huber", delta=0.5)
    >>> fn(jnp.array([0.0, 2.0]), jnp.array([0.0, 0.0]))  # [0., 0.875]

  References:
    Huber, "Robust Estimation of a Location Parameter", Annals of Mathematical
    Statistics 1964. Koenker & Bassett, "Regression Quantiles", Econometrica 1978.
    Newey & Powell, "Asymmetric Least Squares Estimation and Testing", Econometrica
    1987. Cortes & Vapnik, "Support-Vector Networks", Machine Learning 1995.
    Weston & Watkins, "Support Vector Machines for Multi-Class Pattern Recognition",
    ESANN 1999. Szegedy et al., "Rethinking the Inception Architecture for Computer
    Vision", CVPR 2016 (label smoothing). Lin et al., "Focal Loss for Dense Object
    Detection", ICCV 2017. Chen et al., "Log Hyperbolic Cosine Loss Improves
    Variational Auto-Encoder", OpenReview 2019.
  """
  spec = _spec(name)
  if spec.user:
    unknown = sorted(set(hyper) - set(spec.defaults)) if spec.defaults else []
    if unknown:
      raise ConfigError(f"loss {name!r} has no hyperparameter {unknown[0]!r}; valid "
                        f"hyperparameters: {', '.join(sorted(spec.defaults))}")
    return _user_loss(name, spec, {**spec.defaults, **hyper})
  params = _resolve(name, hyper)

  if spec.task == "multiclass":
    def loss(outputs: Array, targets: Array) -> Float[Array, "n"]:
      logits, labels = _logits_labels(name, outputs, targets)
      return _multiclass(spec.fn, logits, labels, params)
  else:
    def loss(outputs: Array, targets: Array) -> Float[Array, "n"]:
      o, t = _scalar_pair(name, spec.task, outputs, targets)
      return spec.fn(o, t, **params)

  loss.__name__ = loss.__qualname__ = name
  loss.__doc__ = f"Per-example {spec.task} loss {name!r} with {params or 'no hyperparameters'}."
  return loss


__all__ = ["get", "hyperparameters", "names", "register", "task", "PerExampleLoss", "TASKS"]
