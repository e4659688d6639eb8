"""``vmap`` over grid points that keeps whatever is affine in the coordinates factorized.

A sweep evaluates ``f(θ + Σ_k c_k d_k)`` at many coefficient vectors ``c``. Every
quantity the loss computes *before* its first nonlinearity is an affine function of
``c``: the first layer's pre-activation is ``x·(W + Σ c_k D_k) + b + Σ c_k e_k =
z₀ + Σ_k c_k z_k``. Plain ``vmap`` computes it once per point; :func:`affine_vmap`
computes ``z₀, z₁, …`` once per call and only combines them per point, so the first
layer of a dense network costs ``D + 1`` matmuls for the whole chunk instead of one
per point. This is the model-aware factorization of :mod:`landscape.objective`
(Li et al.'s surfaces are cheapest this way) found automatically in the jaxpr of
*any* loss function.

The interpreter walks the jaxpr of ``fn(coeffs, *args)`` twice. The first pass,
once for all points, computes

* constants: anything that does not depend on ``coeffs``;
* :class:`_Affine` values ``c₀ + Σ_k c_k·v_k``: the coefficients enter linearly; kept
  through the linear primitives of :data:`_UNARY_LINEAR` and :func:`_affine_rule`
  (sums, products with constants, matmuls and convolutions with a constant operand);

and defers every other equation. The second pass is an ordinary function of one
point that evaluates the deferred equations (an affine operand becomes its value at
the point when one reads it); it runs under a single ``jax.vmap``,
so JAX batches the rest of the network as it would the whole function.

The result equals ``jax.vmap(fn, in_axes=(0, None, ...))`` up to floating-point
rounding (the sum is reassociated: ``x·W₀ + c·(x·D)`` instead of ``x·(W₀ + c·D)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

# Primitives that act on each affine component separately: f(c₀ + Σ c_k v_k) =
# f(c₀) + Σ c_k f(v_k) for any operand, all other operands (none) constant.
_UNARY_LINEAR = frozenset({
    "neg", "reshape", "transpose", "broadcast_in_dim", "squeeze", "expand_dims", "rev",
    "copy", "copy_p", "reduce_sum", "slice", "cumsum", "real", "imag", "conj",
})
# A matmul or convolution stays factorized only when its contraction is long enough:
# per point it then costs D multiply-adds per output element instead of 2·K flops,
# but the D + 1 components are read from memory (CPUs do ~20 flops per byte moved).
# K >= 16·(D + 1) keeps the MLP first layers of the field (fan-in 64 to 3072) and
# leaves a 3x3x3 image convolution (K = 27), whose large output is about as cheap to
# recompute per point as to combine, to plain vmap.
_MIN_CONTRACTION_PER_TERM = 16

# Call-like primitives whose body is inlined (interpreted), so that affine values
# flow through nested jit, custom_jvp / custom_vjp functions and checkpointing.
_CALLS = frozenset({
    "pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call",
    "custom_vjp_call_jaxpr", "remat", "remat2", "checkpoint",
})
# Of those, checkpoints are inlined only when an affine value enters them, and
# otherwise bound as they are: merging their recomputation with the original
# (prevent_cse) would undo the memory saving of a point function that differentiates
# a checkpointed model. custom_jvp / custom_vjp bodies are always inlined, so that
# a loss and its metrics merge through activations such as ReLU: the result is for
# evaluation only (differentiate inside ``fn``, not through these wrappers).
_KEEP_UNLESS_AFFINE = frozenset({"remat", "remat2", "checkpoint"})


class _Affine:
  """``c0 + Σ_k coords[:, k]·cs[k]`` over points; ``cs[k] is None`` means zero."""
  __slots__ = ("c0", "cs")

  def __init__(self, c0, cs):
    self.c0 = c0
    self.cs = tuple(cs)


class _Deferred:
  """Marks a value that depends non-affinely on the point: computed per point."""
  __slots__ = ()


_DEFERRED = _Deferred()


def affine_vmap(fn: Callable) -> Callable:
  """``vmap`` of ``fn(coeffs, *args)`` over ``coeffs`` of shape ``(P, D)``; ``args`` unbatched.

  The affine prefix of ``fn`` (everything computed from ``args`` and affinely from
  ``coeffs``) runs once for all points; the rest runs per point, under one ``jax.vmap``.
  Repeated computations are evaluated once (see :func:`dedupe`).

  Args:
    fn: ``fn(coeffs (D,), *args) -> pytree of arrays``; pure and traceable.

  Returns:
    ``g(coords (P, D), *args)`` with the outputs of ``fn`` stacked over the points,
    equal to ``jax.vmap(fn, in_axes=(0, None, ...))(coords, *args)`` up to rounding.
  """
  def wrapped(coords, *args):
    coords = jnp.asarray(coords)
    if coords.ndim != 2:
      raise ValueError(f"coords must have shape (points, D), got {coords.shape}")
    if coords.shape[0] == 0 or not jnp.issubdtype(coords.dtype, jnp.floating):
      # the rules assume real coefficients (c·v splits; integer division would not)
      return jax.vmap(fn, in_axes=(0,) + (None,) * len(args))(coords, *args)
    closed, out_shape, arrays = _trace(fn, coords[0], *args)
    num_coords = coords.shape[1]
    eye = jnp.eye(num_coords, dtype=coords.dtype)
    start = _Affine(jnp.zeros((num_coords,), coords.dtype),
                    [eye[k] for k in range(num_coords)])
    invals = [start, *arrays[1:]]
    _, env, record = _prefix(closed.jaxpr, closed.consts, invals, {})

    def rest(c):
      materialized: dict = {}
      point = lambda v: _at_point(v, c, materialized)
      return [point(v) for v in _rest(closed.jaxpr, env, record, invals, point, {})]

    flat = jax.vmap(rest)(coords)
    flat = [jnp.broadcast_to(o, (coords.shape[0], *jnp.shape(s)))
            for o, s in zip(flat, jax.tree.leaves(out_shape))]
    return jax.tree.unflatten(jax.tree.structure(out_shape), flat)

  return wrapped


def dedupe(fn: Callable) -> Callable:
  """``fn`` with repeated computations evaluated once (common-subexpression elimination).

  A loss and its metrics given as separate functions (``loss_fn`` and
  ``metrics={"acc": ...}``) each run the network's forward pass on the same
  parameters and batch; XLA does not merge the two (measured: a ResNet-20 sweep 1.7x
  slower with an accuracy metric). This evaluates the jaxpr of ``fn`` with nested
  calls inlined and equal equations (same primitive, parameters and operands) bound
  once, so the forward pass runs once. For evaluation: differentiating through the
  wrapper would not see the custom derivative rules of inlined functions.
  """
  def wrapped(*args):
    closed, out_shape, arrays = _trace(fn, *args)
    outs, _, _ = _prefix(closed.jaxpr, closed.consts, arrays, {})
    return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

  return wrapped


def _trace(fn, *args):
  """``(closed jaxpr, output shapes, array leaves)`` of ``fn(*args)``.

  Array leaves (and tracers) become the jaxpr's inputs; any other leaf (a Python
  number used as a shape, a string) stays a static value, as under ``jax.vmap``.
  """
  leaves, tree = jax.tree.flatten(args)
  is_array = [isinstance(x, (jax.Array, np.ndarray, np.generic)) for x in leaves]
  arrays = [x for x, a in zip(leaves, is_array) if a]

  def on_arrays(*xs):
    it = iter(xs)
    return fn(*jax.tree.unflatten(tree, [next(it) if a else x for x, a in zip(leaves, is_array)]))

  spec = lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a))
  closed, out_shape = jax.make_jaxpr(on_arrays, return_shape=True)(*map(spec, arrays))
  return closed, out_shape, arrays


def _literal(v):
  return isinstance(v, jex_core.Literal)


def _is_drop(v) -> bool:
  return type(v).__name__ == "DropVar"


def _sub_jaxpr(eqn, invals=None):
  """``(jaxpr, consts)`` of an inlinable call-like equation, else ``None``."""
  if eqn.primitive.name not in _CALLS:
    return None
  if (invals is not None and eqn.primitive.name in _KEEP_UNLESS_AFFINE
      and not any(isinstance(v, _Affine) for v in invals)):
    return None
  sub = eqn.params.get("call_jaxpr", eqn.params.get("jaxpr"))
  if sub is None:
    return None
  return (sub.jaxpr, sub.consts) if hasattr(sub, "consts") else (sub, ())


def _cse_key(eqn, env):
  """A hashable key of the equation and the identity of its operands, or ``None``."""
  if eqn.effects:
    return None
  operands = tuple(("lit", repr(v.val), str(v.aval)) if _literal(v) else id(env[v])
                   for v in eqn.invars)
  key = (eqn.primitive, tuple(sorted(eqn.params.items())), operands)
  try:
    hash(key)
  except TypeError:       # an array or other unhashable parameter: no merging
    return None
  return key


def _prefix(jaxpr, consts, args, memo):
  """Pass 1, once for all points: constants and affine values; the rest deferred.

  Returns the outputs (values, or :data:`_DEFERRED`), the environment of every
  variable, and a record per equation: ``None`` (evaluated here), ``"defer"`` (per
  point), or ``(env, record)`` of an inlined call with deferred parts. ``memo``
  (shared by nested calls) maps :func:`_cse_key` to earlier results.
  """
  env: dict = {}
  read = lambda v: v.val if _literal(v) else env[v]
  for v, c in zip(jaxpr.constvars, consts):
    env[v] = c
  for v, a in zip(jaxpr.invars, args):
    env[v] = a
  record = []
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    sub = _sub_jaxpr(eqn, invals)
    deferred_in = any(isinstance(v, _Deferred) for v in invals)
    key = None if sub is not None or deferred_in else _cse_key(eqn, env)
    outvals = None
    if key is not None and key in memo:
      outvals = memo[key][0]
      record.append(None)
    elif sub is not None:
      outvals, sub_env, sub_record = _prefix(sub[0], sub[1], invals, memo)
      # deferred inside, or a per-point input handed back unchanged (jnp.atleast_1d)
      deferred = (any(r is not None for r in sub_record)
                  or any(isinstance(o, _Deferred) for o in outvals))
      record.append((sub_env, sub_record) if deferred else None)
    elif deferred_in:
      record.append("defer")
    elif any(isinstance(v, _Affine) for v in invals):
      outvals = _affine_rule(eqn, invals)
      record.append(None if outvals is not None else "defer")
    else:
      outvals = _bind(eqn, invals)
      record.append(None)
    if outvals is None:
      outvals = [_DEFERRED] * len(eqn.outvars)
    if key is not None and key not in memo and not any(isinstance(o, _Deferred) for o in outvals):
      memo[key] = (outvals, invals)       # operands kept alive: their ids stay unique
    for v, val in zip(eqn.outvars, outvals):
      if not _is_drop(v):
        env[v] = val
  return [read(v) for v in jaxpr.outvars], env, record


def _rest(jaxpr, prefix_env, record, args, point, memo):
  """Pass 2, per point: the deferred equations, the prefix's values at hand.

  ``args`` are this jaxpr's inputs at the point (prefix values or per-point values);
  an affine value becomes its value at the point (``point``) only when a deferred
  equation reads it. ``memo`` merges equal deferred equations (see :func:`_cse_key`).
  """
  env = dict(prefix_env)
  read = lambda v: v.val if _literal(v) else env[v]
  for v, a in zip(jaxpr.invars, args):
    env[v] = a
  for eqn, rec in zip(jaxpr.eqns, record):
    if rec is None:
      continue
    if rec == "defer":
      key = _cse_key(eqn, env)
      if key is not None and key in memo:
        outvals = memo[key][0]
      else:
        invals = [read(v) for v in eqn.invars]
        outvals = _bind(eqn, [point(v) for v in invals])
        if key is not None:
          memo[key] = (outvals, invals)
    else:
      sub_env, sub_record = rec
      invals = [read(v) for v in eqn.invars]
      outvals = _rest(_sub_jaxpr(eqn)[0], sub_env, sub_record, invals, point, memo)
    for v, val in zip(eqn.outvars, outvals):
      if not _is_drop(v):
        env[v] = val
  return [read(v) for v in jaxpr.outvars]


def _at_point(v, c, memo):
  """The value at the point ``c`` (``(D,)``) of a prefix or per-point value."""
  if not isinstance(v, _Affine):
    return v
  key = id(v)
  if key not in memo:
    x = v.c0
    for k, comp in enumerate(v.cs):
      if comp is not None:
        x = x + c[k].astype(jnp.result_type(v.c0)) * comp
    memo[key] = (v, x)      # v kept alive so that its id stays unique
  return memo[key][1]


def _bind_params(eqn):
  """``(subfuns, params)`` to bind ``eqn`` again (older jax returns a pair, newer the params)."""
  out = eqn.primitive.get_bind_params(eqn.params)
  return out if isinstance(out, tuple) else ((), out)


def _bind(eqn, invals) -> list:
  subfuns, params = _bind_params(eqn)
  out = eqn.primitive.bind(*subfuns, *invals, **params)
  return list(out) if eqn.primitive.multiple_results else [out]


def _one(eqn, invals):
  """``eqn`` applied to one set of (unbatched) operands."""
  return _bind(eqn, invals)[0]


def _contraction_size(eqn) -> int:
  """Multiply-adds per output element of a ``dot_general`` or ``conv_general_dilated``."""
  lhs, rhs = (v.aval.shape for v in eqn.invars)
  if eqn.primitive.name == "dot_general":
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    return math.prod(lhs[d] for d in lhs_contract)
  out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
  return math.prod(rhs) // max(1, rhs[out_feature_dim])


def _fit(x, aval):
  """``x`` broadcast to the shape of ``aval`` (components of scalar-broadcasting ops)."""
  return x if jnp.shape(x) == tuple(aval.shape) else jnp.broadcast_to(x, aval.shape)


def _affine_rule(eqn, invals):
  """The affine result of a linear primitive on affine/constant operands, else ``None``."""
  name = eqn.primitive.name
  if eqn.primitive.multiple_results:
    return None
  aval = eqn.outvars[0].aval
  is_aff = [isinstance(v, _Affine) for v in invals]
  num = len(next(v for v in invals if isinstance(v, _Affine)).cs)

  def comps(f):
    """``f(None)`` is the constant part, ``f(k)`` component ``k`` (``None``: zero)."""
    c0 = f(None)
    cs = [f(k) for k in range(num)]
    return [_Affine(_fit(c0, aval), [None if c is None else _fit(c, aval) for c in cs])]

  def through(i):
    """``eqn`` on each component of affine operand ``i``, the other operands fixed."""
    a = invals[i]

    def f(k):
      part = a.c0 if k is None else a.cs[k]
      if part is None:
        return None
      ops = list(invals)
      ops[i] = part
      return _one(eqn, ops)
    return comps(f)

  if name in _UNARY_LINEAR and len(invals) == 1:
    return through(0)
  if name == "convert_element_type":
    new = eqn.params.get("new_dtype")
    old = jnp.result_type(invals[0].c0)
    # a narrowing cast rounds each component separately: the error would scale with
    # Σ|c_k·v_k| instead of the value (cancellation in bf16/f16), so it runs per point
    if not (jnp.issubdtype(old, jnp.inexact) and new is not None
            and jnp.issubdtype(new, jnp.inexact) and np.dtype(new).itemsize >= old.itemsize):
      return None
    return through(0)
  if name in ("add", "add_any", "sub") and len(invals) == 2:
    a, b = invals
    sign = -1 if name == "sub" else 1

    def part(v, k):
      if isinstance(v, _Affine):
        return v.c0 if k is None else v.cs[k]
      return v if k is None else None

    def f(k):
      x, y = part(a, k), part(b, k)
      if x is not None and y is not None:
        return _one(eqn, [x, y])
      if x is not None:
        return x
      if y is not None:
        return -y if sign < 0 else y
      return None
    return comps(f)
  if name in ("mul", "dot_general", "conv_general_dilated") and len(invals) == 2 and sum(is_aff) == 1:
    if name != "mul" and _contraction_size(eqn) < _MIN_CONTRACTION_PER_TERM * (num + 1):
      return None
    return through(is_aff.index(True))
  if name == "div" and len(invals) == 2 and is_aff == [True, False]:
    return through(0)
  if name == "pad" and is_aff == [True, False]:
    a, pv = invals
    zero = jnp.zeros((), jnp.result_type(a.c0))
    return comps(lambda k: _one(eqn, [a.c0, pv]) if k is None
                 else (None if a.cs[k] is None else _one(eqn, [a.cs[k], zero])))
  if name == "concatenate":
    def f(k):
      if k is None:
        return _one(eqn, [v.c0 if isinstance(v, _Affine) else v for v in invals])
      parts = [v.cs[k] if isinstance(v, _Affine) else None for v in invals]
      if all(p is None for p in parts):
        return None
      return _one(eqn, [jnp.zeros(jnp.shape(v.c0 if isinstance(v, _Affine) else v),
                                  jnp.result_type(v.c0 if isinstance(v, _Affine) else v))
                        if p is None else p for v, p in zip(invals, parts)])
    return comps(f)
  return None


class AffineSplit:
  """``fn(coeffs, batch)`` split into a once-per-batch prefix and a per-point rest.

  :func:`affine_vmap` recomputes the affine prefix (the first layer's products
  ``z₀, z₁, …``) in every call, that is in every chunk of a sweep. This split hoists
  it: :meth:`prepare` evaluates the prefix of one batch and returns the arrays the rest
  of the network reads (the affine components and the constants it needs: labels,
  later layers' parameters and their directions), and :meth:`apply` evaluates the
  points from those arrays alone, so a sweep prepares each data batch once and every
  chunk only runs the per-point rest (what the model-aware path of
  :meth:`landscape.objective.Objective.factorized` does, found in any loss).

  ``prepare`` returns ``(shared, per_batch)``: ``shared`` does not depend on the batch
  (computed once, from any batch), ``per_batch`` does. ``apply(coords, shared,
  per_batch)`` equals ``affine_vmap(fn)(coords, batch)`` up to rounding.

  Args:
    fn: ``fn(coeffs (D,), batch) -> pytree of arrays``; pure and traceable.
    num_coords: ``D``.
    dtype: the coordinates' floating dtype.
    batch: a batch of the shapes and dtypes ``prepare`` will be given (abstract
      ``jax.ShapeDtypeStruct`` leaves are fine).
  """

  def __init__(self, fn: Callable, num_coords: int, dtype, batch):
    self.num_coords, self.dtype = num_coords, jnp.dtype(dtype)
    spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), batch)
    self._batch_tree = jax.tree.structure(spec)
    state: dict = {}

    def structure(*batch_leaves):
      b = jax.tree.unflatten(self._batch_tree, batch_leaves)
      coeffs = jnp.zeros((num_coords,), self.dtype)
      closed, out_shape, arrays = _trace(fn, coeffs, b)
      if len(arrays) != 1 + len(batch_leaves):
        raise ValueError("the batch must be a pytree of arrays")
      eye = jnp.eye(num_coords, dtype=self.dtype)
      start = _Affine(jnp.zeros((num_coords,), self.dtype), [eye[k] for k in range(num_coords)])
      invals = [start, *arrays[1:]]
      _, env, record = _prefix(closed.jaxpr, closed.consts, invals, {})
      found: dict = {}
      _reads(closed.jaxpr, env, record, invals, found)
      leaves: dict = {}      # id -> array read by the rest (an affine value's components)
      for val in found.values():
        for x in ((val.c0, *val.cs) if isinstance(val, _Affine) else (val,)):
          if isinstance(x, (jax.Array, np.ndarray, np.generic)):
            leaves.setdefault(id(x), x)
      state.update(closed=closed, out_shape=out_shape, env=env, record=record, invals=invals,
                   found=found, ids=list(leaves))
      return list(leaves.values())

    flat_spec = jax.tree.leaves(spec)
    self._prefix_jaxpr = jax.make_jaxpr(structure)(*flat_spec)
    self._state = state        # keeps the traced values alive: their ids stay unique
    inner = self._prefix_jaxpr.jaxpr
    dep = _depends_on_inputs(inner)
    self._shared_mask = [not d for d in dep]
    self.out_shape = state["out_shape"]
    self._prefix_fun = jex_core.jaxpr_as_fun(self._prefix_jaxpr)
    outs = self._prefix_jaxpr.out_avals
    self.shared_bytes = sum(a.size * a.dtype.itemsize for a, s in zip(outs, self._shared_mask) if s)
    self.batch_bytes = sum(a.size * a.dtype.itemsize
                           for a, s in zip(outs, self._shared_mask) if not s)

  def _prefix_outputs(self, batch, shared: bool) -> list:
    outs = self._prefix_fun(*jax.tree.leaves(batch))
    return [o for o, s in zip(outs, self._shared_mask) if s == shared]

  def prepare_shared(self, batch) -> list:
    """The prefix arrays that do not depend on the batch (any batch of the right shapes)."""
    return self._prefix_outputs(batch, True)

  def prepare(self, batch) -> list:
    """The prefix arrays of ``batch`` that depend on it (traceable, e.g. under ``lax.map``)."""
    return self._prefix_outputs(batch, False)

  def apply(self, coords, shared, per_batch):
    """The outputs of ``fn`` at every row of ``coords`` ``(P, D)``, stacked over the points."""
    st = self._state
    values = iter(shared)
    batched = iter(per_batch)
    new = {i: next(values) if s else next(batched) for i, s in zip(st["ids"], self._shared_mask)}
    subst: dict = {}
    for key, val in st["found"].items():
      if isinstance(val, _Affine):
        subst[key] = _Affine(new.get(id(val.c0), val.c0),
                             [None if c is None else new.get(id(c), c) for c in val.cs])
      elif id(val) in new:
        subst[key] = new[id(val)]
    env, record = _substitute(st["env"], st["record"], subst)
    invals = [subst.get(id(v), v) for v in st["invals"]]
    jaxpr = st["closed"].jaxpr

    def rest(c):
      materialized: dict = {}
      point = lambda v: _at_point(v, c, materialized)
      return [point(v) for v in _rest(jaxpr, env, record, invals, point, {})]

    flat = jax.vmap(rest)(coords)
    out_shape = self.out_shape
    flat = [jnp.broadcast_to(o, (coords.shape[0], *jnp.shape(s)))
            for o, s in zip(flat, jax.tree.leaves(out_shape))]
    return jax.tree.unflatten(jax.tree.structure(out_shape), flat)


def _reads(jaxpr, env, record, args, found: dict) -> None:
  """Collect (``id -> value`` in ``found``) every prefix value that :func:`_rest` reads."""
  env = dict(env)
  for v, a in zip(jaxpr.invars, args):
    env[v] = a
  read = lambda v: v.val if _literal(v) else env[v]

  def note(val):
    if not isinstance(val, _Deferred):
      found.setdefault(id(val), val)

  for eqn, rec in zip(jaxpr.eqns, record):
    if rec is None:
      continue
    invals = [read(v) for v in eqn.invars]
    if rec == "defer":
      for v, x in zip(eqn.invars, invals):
        if not _literal(v):
          note(x)
    else:
      sub_env, sub_record = rec
      _reads(_sub_jaxpr(eqn)[0], sub_env, sub_record, invals, found)
    for v in eqn.outvars:
      if not _is_drop(v):
        env[v] = _DEFERRED
  for v in jaxpr.outvars:
    if not _literal(v):
      note(read(v))


def _substitute(env, record, subst):
  """``env`` and ``record`` (nested) with every value whose id is in ``subst`` replaced."""
  new_env = {v: subst.get(id(x), x) for v, x in env.items()}
  new_record = [r if r is None or r == "defer" else _substitute(r[0], r[1], subst)
                for r in record]
  return new_env, new_record


def _depends_on_inputs(jaxpr) -> list[bool]:
  """Per output of ``jaxpr``: whether it depends on any of its inputs (forward dataflow)."""
  dep = {v for v in jaxpr.invars}
  for eqn in jaxpr.eqns:
    if any((not _literal(v)) and v in dep for v in eqn.invars):
      dep.update(v for v in eqn.outvars if not _is_drop(v))
  return [(not _literal(v)) and v in dep for v in jaxpr.outvars]
