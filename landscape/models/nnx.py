"""Flax NNX models through the Linen interface every stage of landscape uses.

An ``nnx.Module`` holds its parameters; landscape works on pure pytrees (directions,
sweeps, Hessian products, checkpoints). :class:`NNXModule` is the one adapter: it splits
a model into its graph definition, parameters (``nnx.Param``), BatchNorm running
statistics (``nnx.BatchStat``) and any other state, and offers the two Linen calls

* ``init(key, x, train=False) -> {"params": ..., "batch_stats": ...}``
* ``apply(variables, x, train=False, mutable=False)`` -> outputs (with
  ``mutable=["batch_stats"]``: ``(outputs, {"batch_stats": updated})``)

by merging the graph with the given pytrees at every call (``nnx.merge``), in training
mode (``model.train()``: batch statistics, updated running averages) or evaluation mode
(``model.eval()``). The pytrees are plain nested dicts with string keys (an ``nnx.List``
index ``0`` becomes ``"0"``), so they save, perturb and export like a Linen model's.

A factory ``(**kwargs) -> nnx.Module`` is built in :meth:`NNXModule.init` with
``rngs=nnx.Rngs(key)`` when it takes ``rngs``, so ``train.seed`` decides the
initialization as it does for the model zoo.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
from flax import nnx

from landscape import _imports
from landscape.errors import ConfigError

__all__ = ["NNXModule", "is_nnx"]


def is_nnx(obj: Any) -> bool:
  """Whether ``obj`` is a Flax NNX module."""
  return isinstance(obj, nnx.Module)


try:   # flax's own batch statistics, so the recorded ones equal the layer's bit for bit
  from flax.nnx.nn.normalization import _canonicalize_axes, _compute_stats
except ImportError:   # pragma: no cover - a flax that moved them: see _Recording
  _compute_stats = None

#: (layer, differentiable new running mean, new running var) of the current train-mode call
_RECORDS: list[tuple[Any, Any, Any]] = []


class _Recording(nnx.BatchNorm):
  """``nnx.BatchNorm`` that also records its running-average update *with* its gradient.

  ``nnx.BatchNorm`` stop-gradients the update of its running statistics; Linen's BatchNorm
  does not, and ``bn_mode="recompute"`` (statistics re-estimated at every point) needs
  their derivatives for Hessians and gradients to be those of the loss it evaluates. The
  values are the layer's own (the same ``_compute_stats`` call).
  """

  def __call__(self, x, use_running_average=None, *, mask=None):
    use_ra = self.use_running_average if use_running_average is None else use_running_average
    if not use_ra:
      axes = _canonicalize_axes(x.ndim, self.axis)
      reduction = tuple(i for i in range(x.ndim) if i not in axes)
      xp, old_mean, old_var = self.promote_dtype((x, self.mean[...], self.var[...]),
                                                 dtype=self.dtype)
      mean, var = _compute_stats(xp, reduction, dtype=self.dtype, axis_name=self.axis_name,
                                 axis_index_groups=self.axis_index_groups,
                                 use_fast_variance=self.use_fast_variance, mask=mask)
      m = self.momentum
      _RECORDS.append((self, m * old_mean + (1 - m) * mean, m * old_var + (1 - m) * var))
    return super().__call__(x, use_running_average, mask=mask)


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _str_keys(tree: Any) -> Any:
  if isinstance(tree, Mapping):
    return {str(k): _str_keys(v) for k, v in tree.items()}
  return tree


class NNXModule:
  """A Linen-style view of a Flax NNX model (or of a factory that builds one).

  Args:
    model: an ``nnx.Module``, or a factory ``(**kwargs) -> nnx.Module``.
    kwargs: the factory's keyword arguments (``rngs`` is added when it takes one).
    name: how messages name it (e.g. the config's import path).

  Example:
    >>> linen_like = NNXModule(MyNNXModel(rngs=nnx.Rngs(0)))
    >>> variables = linen_like.init(jax.random.key(0), x[:2])
    >>> logits = linen_like.apply(variables, x)
  """

  def __init__(self, model: Any, kwargs: Mapping[str, Any] | None = None, *,
               name: str = "nnx model"):
    self.name = name
    self._factory: Callable[..., Any] | None = None
    self._kwargs = dict(kwargs or {})
    self._graphdef = None
    if is_nnx(model):
      self._split(model)
    elif callable(model):
      self._factory = model
    else:
      raise ConfigError(f"{name}: expected an nnx.Module or a factory returning one, got "
                        f"{type(model).__name__}")

  # -- building ---------------------------------------------------------------------

  def _build(self, key: jax.Array) -> Any:
    kwargs = dict(self._kwargs)
    if _imports.accepts(self._factory, "rngs"):
      kwargs["rngs"] = nnx.Rngs(key)
    model = self._factory(**kwargs)
    if not is_nnx(model):
      raise ConfigError(f"{self.name} returned a {type(model).__name__}, not an nnx.Module")
    return model

  def _split(self, model: Any) -> None:
    graphdef, params, stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    self._graphdef, self._rest = graphdef, rest
    self._params, self._stats = params, stats
    self._momenta = sorted({float(m.momentum) for _, m in nnx.iter_modules(model)
                            if isinstance(m, nnx.BatchNorm)})

  @property
  def bn_momentum(self) -> float:
    """The momentum of the model's ``nnx.BatchNorm`` layers (``bn_mode="recompute"``
    undoes it); one value for all of them."""
    if len(self._momenta) > 1:
      raise ConfigError(f"{self.name}: BatchNorm layers with different momenta "
                        f"{self._momenta}; bn_mode='recompute' needs one")
    return self._momenta[0] if self._momenta else 0.9

  def _pure(self, state: Any) -> dict:
    return _str_keys(nnx.to_pure_dict(state))

  def _state(self, template: Any, pure: Mapping[str, Any]) -> Any:
    """``template`` (an ``nnx.State``) with the leaves of the string-keyed ``pure``."""
    original = nnx.to_pure_dict(template)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(original)
    values = []
    for path, _ in leaves:
      node: Any = pure
      for entry in path:
        key = str(entry.key)
        if not isinstance(node, Mapping) or key not in node:
          raise ConfigError(f"{self.name}: the variables have no "
                            f"{'/'.join(str(e.key) for e in path)}; pass variables from "
                            "this model's init")
        node = node[key]
      values.append(node)
    state = jax.tree.map(lambda a: a, template)   # a fresh State: never mutate the template
    nnx.replace_by_pure_dict(state, jax.tree.unflatten(treedef, values))
    return state

  # -- the Linen interface ------------------------------------------------------------

  def init(self, key: jax.Array, x: Any, train: bool = False) -> dict:
    """``{"params": ..., "batch_stats": ...}`` (the latter only with BatchNorm)."""
    del x, train   # an NNX model is built with its shapes
    if self._factory is not None:
      self._split(self._build(key))
    variables = {"params": self._pure(self._params)}
    stats = self._pure(self._stats)
    if jax.tree.leaves(stats):
      variables["batch_stats"] = stats
    return variables

  def apply(self, variables: Mapping[str, Any], x: Any, train: bool = False, *,
            mutable: Any = False, method: Any = None) -> Any:
    """The model's outputs at ``variables`` (``train``: batch statistics)."""
    if self._graphdef is None:
      raise ConfigError(f"{self.name}: call init() before apply()")
    if method is not None:
      raise ConfigError(f"{self.name}: an NNX model has no method {method!r}; landscape "
                        "sweeps it with the generic engine")
    params = self._state(self._params, variables["params"])
    stats = self._state(self._stats, variables.get("batch_stats", self._pure(self._stats)))
    model = nnx.merge(self._graphdef, params, stats, self._rest)
    if train:
      model.train()
    else:
      model.eval()
    layers = {}
    if train and mutable and _compute_stats is None and self._momenta:
      warnings.warn(f"{self.name}: this flax has no nnx.nn.normalization._compute_stats; "
                    "BatchNorm running statistics are updated without their gradient "
                    "(bn_mode='recompute' Hessians then treat them as constants)", stacklevel=2)
    if train and mutable and _compute_stats is not None:
      for path, layer in nnx.iter_modules(model):
        if type(layer) is nnx.BatchNorm:   # a fresh object of this call: safe to retype
          layer.__class__ = _Recording
          layers[id(layer)] = tuple(str(p) for p in path)
    _RECORDS.clear()
    try:
      out = model(x)
      records = list(_RECORDS)
    finally:
      _RECORDS.clear()
    if mutable:
      new = self._pure(nnx.state(model, nnx.BatchStat))
      for layer, mean, var in records:
        _set(new, (*layers[id(layer)], "mean"), mean)
        _set(new, (*layers[id(layer)], "var"), var)
      return out, {"batch_stats": new}
    return out

  def __repr__(self) -> str:
    return f"NNXModule({self.name})"
