"""Curvature operators beside the Hessian, and the Hessian of a block of parameters.

Every probe of :mod:`landscape.hessian` sees a curvature matrix as ``v -> A v`` on
parameter pytrees. With a loss split into the model and a loss on its outputs,

    J(θ) = (1/N) Σ_i ℓ(f(x_i; θ), y_i) + r(θ),          (:class:`SplitLoss`)

three such matrices are defined (``operator=``):

* ``"hessian"``: ``H = ∇² J`` (forward-over-reverse; the default of every probe).
* ``"ggn"``: the generalized Gauss–Newton ``G = (1/N) Σ_i J_iᵀ ∇²_f ℓ_i J_i + ∇² r``
  (Schraudolph 2002; Martens 2020), ``J_i = ∂f(x_i)/∂θ``, formed as a JVP through the
  model, a Hessian-vector product of the loss in output space, and a VJP back. For a
  loss convex in the outputs (MSE, cross-entropy, every loss of :mod:`landscape.losses`
  apart from the non-convex ones) and a convex regularizer, ``G`` is positive
  semidefinite, so every negative eigenvalue of ``H`` comes from
* ``"residual"``: ``R = H − G = (1/N) Σ_i Σ_k (∂ℓ_i/∂f_k) ∇²_θ f_k(x_i)``, the part
  of the Hessian from the curvature of the model itself.
* ``"fisher"``: the empirical Fisher ``F = (1/N) Σ_i g_i g_iᵀ``, ``g_i = ∇_θ ℓ_i`` of
  the data term alone (no regularizer), formed without per-example gradients as
  ``F v = (1/N) Lᵀ (L v)`` with ``L = ∂(ℓ_1 … ℓ_N)/∂θ`` (one JVP and one VJP of the
  per-example losses). Positive semidefinite by construction. It is the Fisher of the
  *empirical* labels, not the true Fisher ``E_{y~p(y|x)}``, which for the canonical
  links equals ``G`` (Kunstner, Hennig & Balles 2019).

``ggn``, ``fisher`` and ``residual`` need the split: a :class:`SplitLoss`, which is also
an ordinary ``loss_fn(params, batch)`` (the objectives that :func:`landscape.objective.build`
makes are). A plain ``loss_fn`` works with ``"hessian"`` only.

Blocks. :func:`restrict` turns ``(loss_fn, params)`` into the loss of a subset of the
parameter leaves with the rest held at their values; its Hessian is the diagonal block
``H_BB`` of the full Hessian (its GGN the block ``G_BB``), so every probe measures a block
by being handed the restricted loss. :func:`resolve_blocks` names the blocks: ``"layer"``
(leaves grouped by the module that holds them) or a mapping from block names to glob
patterns over parameter paths such as ``"Conv_0/*"`` (:func:`param_paths`).

References:
  Schraudolph, "Fast curvature matrix-vector products for second-order gradient
  descent", Neural Computation 2002.
  Martens, "New insights and perspectives on the natural gradient method", JMLR 2020.
  Kunstner, Hennig & Balles, "Limitations of the empirical Fisher approximation for
  natural gradient descent", NeurIPS 2019.
  Papyan, "Measurements of three-level hierarchical structure in the outliers in the
  spectrum of deepnet Hessians", ICML 2019 (the G/R split of the spectrum).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from landscape import _validate
from landscape.batching import batched_mean
from landscape.errors import ConfigError

PyTree = Any

OPERATORS = ("hessian", "ggn", "fisher", "residual")
#: Their names in messages and figures.
TITLES = {"hessian": "Hessian", "ggn": "Gauss-Newton", "fisher": "empirical Fisher",
          "residual": "Hessian residual (H - G)"}
#: The operators that need a :class:`SplitLoss`.
SPLIT_OPERATORS = ("ggn", "fisher", "residual")


@dataclasses.dataclass(frozen=True, eq=False)
class SplitLoss:
  """``loss(params, (x, y)) = mean(output_loss(apply(params, x), y)) + penalty(params)``.

  A loss that exposes the model's outputs, for the ``ggn``, ``fisher`` and ``residual``
  operators; called like any ``loss_fn(params, batch)``. Hashes by identity (a jit
  static argument).

  Attributes:
    apply: ``apply(params, x) -> outputs`` (any pytree of arrays with the sample axis
      first, e.g. logits ``(n, classes)``).
    output_loss: the per-example loss ``output_loss(outputs, y) -> (n,)``.
    penalty: ``penalty(params) -> scalar`` added to the mean (a regularizer), or ``None``.

  Example:
    >>> loss = SplitLoss(lambda p, x: x @ p["w"], lambda o, y: 0.5 * jnp.sum((o - y) ** 2, -1))
    >>> loss(params, (x, y))   # the mean squared error
  """
  apply: Callable[[PyTree, Any], Any]
  output_loss: Callable[[Any, Any], jax.Array]
  penalty: Callable[[PyTree], jax.Array] | None = None

  def __call__(self, params: PyTree, batch: Any) -> jax.Array:
    x, y = batch
    value = jnp.mean(self.output_loss(self.apply(params, x), y))
    if self.penalty is not None:
      value = value + self.penalty(params)
    return value


def require_split(loss_fn: Any, operator: str) -> None:
  """Refuse an ``operator`` the loss cannot give (one line: what to pass instead)."""
  _validate.choice("operator", operator, OPERATORS)
  if operator in SPLIT_OPERATORS and not isinstance(_unwrap(loss_fn), SplitLoss):
    raise ConfigError(
        f"operator={operator!r} needs a loss that exposes the model's outputs; got a plain "
        "loss_fn: pass landscape.operators.SplitLoss(apply, output_loss) (or an objective "
        "from landscape.objective.build), or operator='hessian'")


def _unwrap(loss_fn: Any) -> Any:
  return getattr(loss_fn, "fn", loss_fn)   # _validate.loss_callable's identity wrapper


# ------------------------------------------------------------------ batch products

def _hessian_batch(loss_fn: Callable, params: PyTree, v: PyTree, batch: Any,
                   method: str = "fwd-rev") -> PyTree:
  if method == "rev-fwd":
    return jax.grad(lambda p: jax.jvp(lambda q: loss_fn(q, batch), (p,), (v,))[1])(params)
  return jax.jvp(lambda p: jax.grad(loss_fn)(p, batch), (params,), (v,))[1]


def _penalty_hvp(split: SplitLoss, params: PyTree, v: PyTree) -> PyTree | None:
  if split.penalty is None:
    return None
  return jax.jvp(jax.grad(split.penalty), (params,), (v,))[1]


def _ggn_batch(split: SplitLoss, params: PyTree, v: PyTree, batch: Any) -> PyTree:
  x, y = batch
  out, jvp_fn = jax.linearize(lambda p: split.apply(p, x), params)
  jv = jvp_fn(v)
  hjv = jax.jvp(jax.grad(lambda o: jnp.mean(split.output_loss(o, y))), (out,), (jv,))[1]
  (gv,) = jax.linear_transpose(jvp_fn, params)(hjv)
  extra = _penalty_hvp(split, params, v)
  return gv if extra is None else optax.tree.add(gv, extra)


def _fisher_batch(split: SplitLoss, params: PyTree, v: PyTree, batch: Any) -> PyTree:
  x, y = batch
  losses, jvp_fn = jax.linearize(lambda p: split.output_loss(split.apply(p, x), y), params)
  s = jvp_fn(v)
  (fv,) = jax.linear_transpose(jvp_fn, params)(s)
  return optax.tree.scale(1.0 / losses.shape[0], fv)


def _batch_product(loss_fn: Callable, operator: str, method: str
                   ) -> Callable[[PyTree, PyTree, Any], PyTree]:
  split = _unwrap(loss_fn)
  if operator == "hessian":
    return lambda p, v, b: _hessian_batch(loss_fn, p, v, b, method)
  if operator == "ggn":
    return lambda p, v, b: _ggn_batch(split, p, v, b)
  if operator == "fisher":
    return lambda p, v, b: _fisher_batch(split, p, v, b)
  return lambda p, v, b: optax.tree.sub(_hessian_batch(loss_fn, p, v, b, method),
                                        _ggn_batch(split, p, v, b))


def matvec_fn(loss_fn: Callable, data: PyTree = None, *, operator: str = "hessian",
              batch_size: int | None = None, method: str = "fwd-rev"
              ) -> Callable[[PyTree, PyTree], PyTree]:
  """``(params, v) -> A(params) v`` for the dataset mean; traceable (jit/vmap-safe).

  ``A`` is the ``operator`` (module docstring) of the mean loss over all samples of
  ``data``, accumulated batch by batch (:func:`landscape.batching.batched_mean`).
  ``method`` (``"fwd-rev"`` or ``"rev-fwd"``) is how Hessian products are formed.

  Example:
    >>> gv = matvec_fn(objective.loss_fn, (x, y), operator="ggn")(params, v)
  """
  require_split(loss_fn, operator)
  _validate.choice("HVP method", method, ("fwd-rev", "rev-fwd"))
  product = _batch_product(loss_fn, operator, method)

  def matvec(params: PyTree, v: PyTree) -> PyTree:
    return batched_mean(lambda b: product(params, v, b), data, batch_size)

  return matvec


def linearized_matvec(loss_fn: Callable, params: PyTree, data: PyTree = None, *,
                      operator: str, batch_size: int | None = None
                      ) -> jax.tree_util.Partial:
  """``v -> A v`` at fixed ``params`` with the work that does not depend on ``v`` done
  once: ``jax.linearize`` of the (linear) map ``v -> A v`` at ``v = 0`` keeps the forward
  pass's intermediates, so each product runs the tangent part only."""
  require_split(loss_fn, operator)
  product = _product_jit(loss_fn, operator, batch_size)
  zero = jax.tree.map(jnp.zeros_like, params)
  # params and data enter as arguments, not as constants XLA would fold
  return jax.linearize(lambda v: product(params, data, v), zero)[1]


@functools.lru_cache(maxsize=64)
def _product_jit(loss_fn: Callable, operator: str, batch_size: int | None) -> Callable:
  return jax.jit(lambda p, d, v: matvec_fn(loss_fn, d, operator=operator,
                                           batch_size=batch_size)(p, v))


# ---------------------------------------------------------------------------- blocks

def param_paths(params: PyTree) -> list[str]:
  """The leaf paths of ``params`` as ``"Conv_0/kernel"`` strings, in leaf order."""
  return [_path_str(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _path_str(path: Sequence[Any]) -> str:
  parts = []
  for entry in path:
    for attr in ("key", "name", "idx"):
      if hasattr(entry, attr):
        parts.append(str(getattr(entry, attr)))
        break
    else:
      parts.append(str(entry))
  return "/".join(parts)


def resolve_blocks(params: PyTree, blocks: str | Mapping[str, str | Sequence[str]]
                   ) -> dict[str, list[int]]:
  """Block name -> the indices of its leaves (in ``jax.tree.leaves`` order).

  ``"layer"``: one block per module, named by the leaf path without its last part
  (``Conv_0/kernel`` and ``Conv_0/bias`` form ``Conv_0``), in leaf order. A mapping:
  each name's glob pattern(s) (``fnmatch``, ``*`` matches across ``/``) over
  :func:`param_paths`; a pattern that matches no leaf is refused, naming the paths.
  """
  paths = param_paths(params)
  if isinstance(blocks, str):
    if blocks != "layer":
      raise ConfigError(f"blocks={blocks!r} is not a block rule; pass blocks='layer' or a "
                        "mapping from block names to parameter-path patterns")
    out: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
      out.setdefault(p.rsplit("/", 1)[0] if "/" in p else p, []).append(i)
    return out
  if not isinstance(blocks, Mapping) or not blocks:
    raise ConfigError(f"blocks must be 'layer' or a non-empty mapping from names to "
                      f"parameter-path patterns, got {blocks!r}")
  out = {}
  for name, patterns in blocks.items():
    pats = [patterns] if isinstance(patterns, str) else list(patterns)
    idx: list[int] = []
    for pat in pats:
      hits = [i for i, p in enumerate(paths) if fnmatch.fnmatchcase(p, str(pat))]
      if not hits:
        raise ConfigError(f"block {name!r}: pattern {pat!r} matches no parameter; the "
                          f"parameter paths are {', '.join(paths)}")
      idx.extend(i for i in hits if i not in idx)
    out[str(name)] = sorted(idx)
  return out


@dataclasses.dataclass(frozen=True, eq=False)
class _Merge:
  """``block leaves -> full params`` with the other leaves held at ``rest``."""
  treedef: Any
  index: tuple[int, ...]
  rest: tuple[Any, ...]

  def __call__(self, block: Sequence[Any]) -> PyTree:
    leaves = list(self.rest)
    for i, leaf in zip(self.index, block):
      leaves[i] = leaf
    return jax.tree.unflatten(self.treedef, leaves)


def restrict(loss_fn: Callable, params: PyTree, index: Sequence[int]
             ) -> tuple[Callable, list[Any]]:
  """``(loss_B, params_B)``: the loss as a function of the leaves ``index`` of ``params``
  (a list of arrays), the others fixed at their values in ``params``.

  ``∇² loss_B = H_BB``, the diagonal block of the full Hessian; for a
  :class:`SplitLoss` the result is one too, so its GGN is ``G_BB``.
  """
  leaves, treedef = jax.tree.flatten(params)
  index = tuple(int(i) for i in index)
  if not index:
    raise ConfigError("a block needs at least one parameter leaf")
  merge = _Merge(treedef, index, tuple(leaves))
  block = [leaves[i] for i in index]
  inner = _unwrap(loss_fn)
  if isinstance(inner, SplitLoss):
    penalty = inner.penalty
    restricted: Callable = SplitLoss(
        apply=lambda b, x: inner.apply(merge(b), x), output_loss=inner.output_loss,
        penalty=None if penalty is None else (lambda b: penalty(merge(b))))
  else:
    def restricted(b, batch):
      return loss_fn(merge(b), batch)
  return restricted, block
