"""Directions in parameter space for loss-landscape plots, as pure pytree maths.

A plot shows the loss at ``θ + x·d₁ (+ y·d₂)``; this module builds the directions
``d`` and knows nothing of models, losses or data. Every direction is a pytree with
the structure, shapes and dtypes of the parameters ``θ``.

Semantics follow tomgoldstein/loss-landscape (``net_plotter.py``, ``projection.py``),
the code of Li et al. (2018), with one deliberate change of axis:

* **The filter axis.** PyTorch stores a conv kernel as ``(out, in, kh, kw)`` and the
  original iterates over the first axis. Flax stores ``(kh, kw, in, out)`` and a dense
  kernel as ``(in, out)``: output units, hence *filters*, are on the **last** axis, and
  a filter here is the slice ``d[..., k]``. A naive port normalizes the wrong slices
  without any error.
* **Norms** (``normalize_direction``), for leaves with ``ndim >= 2``:
  ``"filter"`` ``d[..., k] ← d[..., k] · ‖θ[..., k]‖ / (‖d[..., k]‖ + 1e-10)``;
  ``"layer"`` ``d ← d · ‖θ‖ / (‖d‖ + 1e-10)`` (the original has no ``1e-10`` guard);
  ``"weight"`` ``d ← d ⊙ θ`` (elementwise, the original's ``direction.mul_(weights)``);
  ``"dfilter"`` ``d[..., k] ← d[..., k] / (‖d[..., k]‖ + 1e-10)`` (unit filters);
  ``"dlayer"`` ``d ← d / (‖d‖ + 1e-10)`` (unit layer; the original has no guard);
  ``"none"`` ``d`` unchanged (the original's behaviour for its default empty ``--xnorm``).
* **Biases and norm parameters** (leaves with ``ndim <= 1``, ``normalize_directions_for_weights``),
  whatever the norm: ``ignore="biasbn"`` sets their direction to zero; ``ignore=None``
  (or ``"none"``) sets it to **the parameter itself**, ``d = θ`` (the original's
  ``d.copy_(w)``: "keep directions for weights/bias that are only 1 per node"), so a
  step ``x`` scales those parameters by ``1 + x``.
* **PCA** of a trajectory (``setup_PCA_directions``): rows ``θ_t − θ_final``, fed to
  scikit-learn's ``PCA``, which *centres* the rows; so do we. We compute it exactly
  (sklearn's ``"auto"`` solver may pick a randomized SVD for large models).

``random``, ``normalize``, ``random_plane``, ``orthogonalize``, ``cosine`` and ``target``
are traceable (usable under ``jax.jit``); ``plane_through``, ``pca``, ``project`` and
``coordinates`` validate their inputs and compute on the host in float64 NumPy.

References:
  Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets",
  NeurIPS 2018.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PyTree

from landscape import _validate
from landscape.errors import ConfigError, unknown_name

__all__ = [
    "NORMS", "IGNORES", "random", "normalize", "random_plane", "orthogonalize", "cosine",
    "target", "orthonormal_plane", "plane_through", "coordinates", "pca", "project",
]

NORMS = ("filter", "layer", "weight", "dfilter", "dlayer", "none")
IGNORES = ("biasbn", "none")  # and None, the same as "none"
_GUARD = 1e-10  # the original's guard against a zero denominator
_SCALE_NORMS = ("filter", "layer", "dfilter", "dlayer")  # idempotent: re-applying is a no-op
_RANK_RTOL = 1e-12  # PCA: eigenvalues of the Gram matrix below this times the largest are noise

Params = PyTree[Float[Array, "..."]]
Direction = PyTree[Float[Array, "..."]]


# ----------------------------------------------------------------------------- checks


def _flat(tree: PyTree) -> tuple[list[str], list[Any], Any]:
  """``(paths as keystr, leaves, treedef)`` of a pytree."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
  return [jax.tree_util.keystr(p) for p, _ in flat], [leaf for _, leaf in flat], treedef


def _check_like(tree: PyTree, ref: PyTree, name: str, ref_name: str) -> list[Any]:
  """The leaves of ``tree`` in ``ref``'s order, after checking its paths and shapes.

  Container types may differ (a FrozenDict against a dict): only the tree paths and the
  leaf shapes must agree. Raises ConfigError naming the first mismatching path.
  """
  paths, leaves, _ = _flat(tree)
  ref_paths, ref_leaves, _ = _flat(ref)
  for i in range(max(len(paths), len(ref_paths))):
    p = paths[i] if i < len(paths) else None
    q = ref_paths[i] if i < len(ref_paths) else None
    if p != q:
      if q is None:
        what = f"{name} has a leaf at {p or '<root>'} that {ref_name} lacks"
      elif p is None:
        what = f"{name} lacks the leaf {q or '<root>'} of {ref_name}"
      else:
        what = f"{name} has a leaf at {p or '<root>'} where {ref_name} has {q or '<root>'}"
      raise ConfigError(f"{what}; pass a {name} with the tree structure of {ref_name}")
  for p, a, b in zip(paths, leaves, ref_leaves):
    if jnp.shape(a) != jnp.shape(b):
      raise ConfigError(f"{name}{p} has shape {jnp.shape(a)} but {ref_name}{p} has shape "
                        f"{jnp.shape(b)}; pass a {name} shaped like {ref_name}")
  return leaves


def _check_norm(norm: str) -> None:
  if norm not in NORMS:
    raise unknown_name("norm", norm, NORMS)


def _zero_1d(ignore: str | None) -> bool:
  """Whether leaves with ``ndim <= 1`` are ignored (zeroed), after validating ``ignore``."""
  if ignore is None:
    return False
  if ignore not in IGNORES:
    raise unknown_name("ignore", ignore, IGNORES)
  return ignore == "biasbn"


# ----------------------------------------------------------------------------- normalization


def _filter_norm(x: jax.Array) -> jax.Array:
  """``‖x[..., k]‖`` for every last-axis slice, shaped ``(1, ..., 1, out)``."""
  return jnp.sqrt(jnp.sum(jnp.square(x), axis=tuple(range(x.ndim - 1)), keepdims=True))


def _normalize_leaf(d: jax.Array, w: jax.Array, norm: str, zero_1d: bool) -> jax.Array:
  d, w = jnp.asarray(d), jnp.asarray(w)
  if w.ndim <= 1:
    return jnp.zeros_like(w) if zero_1d else w
  dtype = w.dtype
  ct = jnp.promote_types(dtype, jnp.float32)  # norms of bfloat16 leaves in float32
  d, w = d.astype(ct), w.astype(ct)
  if norm == "filter":
    d = d * (_filter_norm(w) / (_filter_norm(d) + _GUARD))
  elif norm == "layer":
    d = d * (jnp.linalg.norm(w) / (jnp.linalg.norm(d) + _GUARD))
  elif norm == "weight":
    d = d * w
  elif norm == "dfilter":
    d = d / (_filter_norm(d) + _GUARD)
  elif norm == "dlayer":
    d = d / (jnp.linalg.norm(d) + _GUARD)
  return d.astype(dtype)


@functools.partial(jax.jit, static_argnames=("norm", "zero_1d"))
def _normalize_leaves(d_leaves: list[Any], p_leaves: list[Any], norm: str,
                      zero_1d: bool) -> list[jax.Array]:
  # One compiled call per tree of shapes: eager ops would compile one by one.
  return [_normalize_leaf(d, w, norm, zero_1d) for d, w in zip(d_leaves, p_leaves)]


@functools.partial(jax.jit, static_argnames=("specs",))
def _gaussian_leaves(key: jax.Array, specs: tuple[tuple[tuple[int, ...], Any], ...]
                     ) -> list[jax.Array]:
  """``N(0, I)`` draws of the given (shape, dtype)s, one key per leaf.

  The keys are ``jax.random.split(key, len(specs))`` in tree order, as
  ``optax.tree.split_key_like(key, params)`` makes them.
  """
  keys = jax.random.split(key, len(specs))
  return [jax.random.normal(keys[i], shape, dtype) for i, (shape, dtype) in enumerate(specs)]


def normalize(direction: Direction, params: Params, *, norm: str = "filter",
              ignore: str | None = "biasbn") -> Direction:
  """Rescale a direction to the scale of the parameters, per filter, layer or weight.

  For every leaf ``d`` of the direction and the matching leaf ``θ`` with ``ndim >= 2``
  (Flax layout: filters are last-axis slices ``[..., k]``)::

    filter   d[..., k] · ‖θ[..., k]‖ / (‖d[..., k]‖ + 1e-10)
    layer    d · ‖θ‖ / (‖d‖ + 1e-10)
    weight   d ⊙ θ
    dfilter  d[..., k] / (‖d[..., k]‖ + 1e-10)
    dlayer   d / (‖d‖ + 1e-10)
    none     d

  and for leaves with ``ndim <= 1`` (biases, norm scales), whatever ``norm``:
  ``0`` if ``ignore="biasbn"``, else ``θ`` itself (the original's ``d.copy_(w)``).
  "filter", "layer", "dfilter" and "dlayer" are idempotent.

  Args:
    direction: pytree with the tree paths and leaf shapes of ``params``.
    params: parameter pytree θ of floating-point leaves.
    norm: one of ``NORMS``.
    ignore: ``"biasbn"`` (zero 1-D leaves) or ``None``/``"none"`` (``d = θ`` there).

  Returns:
    The normalized direction: ``params``' tree structure, shapes and dtypes.

  Example:
    >>> d = normalize(jnp.ones((3, 2)), 2 * jnp.ones((3, 2)))  # each column norm 2√3

  References:
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets",
    NeurIPS 2018 (Sec. 4, filter normalization).
  """
  _check_norm(norm)
  zero_1d = _zero_1d(ignore)
  d_leaves = _check_like(direction, params, "direction", "params")
  _validate.param_tree(params)
  _, p_leaves, treedef = _flat(params)
  return jax.tree.unflatten(treedef, _normalize_leaves(d_leaves, p_leaves, norm, zero_1d))


def random(key: jax.Array, params: Params, *, norm: str = "filter",
           ignore: str | None = "biasbn") -> Direction:
  """A random Gaussian direction, normalized to the parameters (Li et al. 2018).

  ``d = normalize(g, θ)`` with ``g_l ~ N(0, I)`` i.i.d. of leaf ``l``'s shape and dtype,
  each leaf drawn from its own key (``key`` split once per leaf, in tree order).

  Args:
    key: a JAX PRNG key, e.g. ``jax.random.key(0)``.
    params: parameter pytree θ of floating-point leaves.
    norm: one of ``NORMS``; see ``normalize``.
    ignore: ``"biasbn"`` or ``None``/``"none"``; see ``normalize``.

  Returns:
    The direction: ``params``' tree structure, shapes and dtypes.

  Example:
    >>> dx = random(jax.random.key(0), params)  # filter-normalized, biases zero

  References:
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets",
    NeurIPS 2018.
  """
  _validate.prng_key(key)
  _check_norm(norm)
  _zero_1d(ignore)
  _validate.param_tree(params)
  _, leaves, treedef = _flat(params)
  specs = tuple((tuple(jnp.shape(w)), np.dtype(jnp.result_type(w))) for w in leaves)
  draw = jax.tree.unflatten(treedef, _gaussian_leaves(key, specs))
  return normalize(draw, params, norm=norm, ignore=ignore)


# ----------------------------------------------------------------------------- geometry


@functools.partial(jax.jit, static_argnames=("mask",))
def _gram_schmidt(y_leaves: list[Any], x_leaves: list[Any],
                  mask: tuple[bool, ...]) -> list[jax.Array]:
  """``y − (⟨y, x⟩ / ⟨x, x⟩) x`` over the leaves where ``mask`` is True; others kept."""
  ys = [y for y, m in zip(y_leaves, mask) if m]
  xs = [x for x, m in zip(x_leaves, mask) if m]
  xx = optax.tree.vdot(xs, xs)
  coef = jnp.where(xx > 0, optax.tree.vdot(ys, xs) / jnp.where(xx > 0, xx, 1), 0)
  return [(y - coef * x).astype(y.dtype) if m else y
          for y, x, m in zip(y_leaves, x_leaves, mask)]


@jax.jit
def _cosine_leaves(a_leaves: list[Any], b_leaves: list[Any]) -> jax.Array:
  denom = optax.tree.norm(a_leaves) * optax.tree.norm(b_leaves)
  return jnp.where(denom > 0, optax.tree.vdot(a_leaves, b_leaves) / jnp.where(denom > 0, denom, 1), 0)


def orthogonalize(dy: Direction, dx: Direction) -> Direction:
  """The component of ``dy`` orthogonal to ``dx`` over the whole pytree (Gram–Schmidt).

  ``dy − (⟨dy, dx⟩ / ⟨dx, dx⟩) dx``, with ``⟨a, b⟩ = Σ_leaves Σ a·b``; ``dy`` unchanged
  if ``dx = 0``.

  Args:
    dy: direction pytree.
    dx: direction pytree with the tree paths and shapes of ``dy``.

  Returns:
    A pytree like ``dy`` (its structure and dtypes) with ``⟨result, dx⟩ = 0`` up to
    rounding.

  Example:
    >>> orthogonalize(jnp.array([1., 1.]), jnp.array([1., 0.]))  # [0., 1.]

  References:
    Golub, Van Loan, "Matrix Computations", Johns Hopkins University Press, 4th ed. 2013,
    Sec. 5.2.7 (Gram–Schmidt).
  """
  x_leaves = _check_like(dx, dy, "dx", "dy")
  _, y_leaves, treedef = _flat(dy)
  out = _gram_schmidt(y_leaves, x_leaves, (True,) * len(y_leaves))
  return jax.tree.unflatten(treedef, out)


def cosine(a: Direction, b: Direction) -> jax.Array:
  """Cosine similarity of two pytrees, ``⟨a, b⟩ / (‖a‖ ‖b‖)`` (0 if either is zero).

  Args:
    a: pytree.
    b: pytree with the tree paths and shapes of ``a``.

  Returns:
    A scalar in ``[-1, 1]``.

  Example:
    >>> cosine({"w": jnp.array([1., 0.])}, {"w": jnp.array([1., 1.])})  # 0.7071

  References:
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets",
    NeurIPS 2018 (Sec. 3: random directions in high dimension are nearly orthogonal).
  """
  b_leaves = _check_like(b, a, "b", "a")
  _, a_leaves, _ = _flat(a)
  return _cosine_leaves(a_leaves, b_leaves)


def random_plane(key: jax.Array, params: Params, *, norm: str = "filter",
                 ignore: str | None = "biasbn",
                 orthogonalize: bool = False) -> tuple[Direction, Direction]:
  """Two independent random normalized directions ``(dx, dy)`` spanning a 2-D plot.

  ``dx = random(k₁, θ)``, ``dy = random(k₂, θ)`` with ``k₁, k₂ = split(key)``.
  With ``orthogonalize=True``, ``dy`` is then replaced by its component orthogonal to
  ``dx`` over the leaves with ``ndim >= 2`` (Gram–Schmidt; the 1-D leaves keep their
  ``0`` or ``θ``, which under ``ignore=None`` are equal in ``dx`` and ``dy`` by
  construction) and, for the scale norms ("filter", "layer", "dfilter", "dlayer"),
  **re-normalized**, which restores the norm constraint exactly (they are idempotent)
  at the price of exact orthogonality. For the groups ``k`` the norm acts on (filters,
  or leaves for "layer"/"dlayer"), with target norms ``n_k`` (``‖θ_k‖``, or 1 for the
  d-norms), weights ``w_k = n_k² / Σ_j n_j²``, group cosines ``c_k = cos(dx_k, dy_k)``
  and ``ε = Σ_k w_k c_k = cos(dx, dy)`` before the projection, re-normalizing scales
  group ``k`` by ``s_k = (1 − 2ε c_k + ε²)^(-1/2)`` and leaves (up to the 1e-10 guard)

    cos(dx, dy) = Σ_k w_k s_k (c_k − ε) = Σ_k w_k (s_k − 1)(c_k − ε) ≈ ε · Var_w(c_k),

  the product of two small numbers (``|ε| = O(1/√P)`` and ``Var_w(c_k) = O(1/filter
  size)`` for random draws), over the leaves with ``ndim >= 2``. For "weight" and "none"
  nothing is re-normalized and ``dy ⊥ dx`` holds to rounding.

  Args:
    key: a JAX PRNG key.
    params: parameter pytree θ of floating-point leaves.
    norm: one of ``NORMS``; see ``normalize``.
    ignore: ``"biasbn"`` or ``None``/``"none"``; see ``normalize``.
    orthogonalize: make ``dy`` orthogonal to ``dx`` as above.

  Returns:
    ``(dx, dy)``, each with ``params``' tree structure, shapes and dtypes.

  Example:
    >>> dx, dy = random_plane(jax.random.key(0), params, orthogonalize=True)

  References:
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets",
    NeurIPS 2018.
  """
  _validate.prng_key(key)
  kx, ky = jax.random.split(key)
  dx = random(kx, params, norm=norm, ignore=ignore)
  dy = random(ky, params, norm=norm, ignore=ignore)
  if orthogonalize:
    _, x_leaves, _ = _flat(dx)
    _, y_leaves, treedef = _flat(dy)
    mask = tuple(jnp.ndim(y) >= 2 for y in y_leaves)
    dy = jax.tree.unflatten(treedef, _gram_schmidt(y_leaves, x_leaves, mask))
    if norm in _SCALE_NORMS:
      dy = normalize(dy, params, norm=norm, ignore=ignore)
  return dx, dy


def target(params_from: Params, params_to: Params) -> Direction:
  """The direction from one model to another, ``d = θ_to − θ_from``.

  The point at ``x`` is ``θ_from + x·d``: ``x = 0`` is ``θ_from``, ``x = 1`` is
  ``θ_to`` (linear interpolation, the original's ``create_target_direction``).

  Args:
    params_from: parameter pytree θ_from.
    params_to: pytree with the tree paths and shapes of ``params_from``.

  Returns:
    ``θ_to − θ_from`` with ``params_from``'s structure and dtypes.

  Example:
    >>> d = target(params_init, params_trained)

  References:
    Goodfellow, Vinyals, Saxe, "Qualitatively characterizing neural network optimization
    problems", ICLR 2015.
  """
  to_leaves = _check_like(params_to, params_from, "params_to", "params_from")
  _validate.param_tree(params_from, "params_from")
  _, from_leaves, treedef = _flat(params_from)
  out = [(jnp.asarray(b) - jnp.asarray(a)).astype(jnp.result_type(a))
         for a, b in zip(from_leaves, to_leaves)]
  return jax.tree.unflatten(treedef, out)


def plane_through(p0: Params, p1: Params, p2: Params) -> tuple[Params, Direction, Direction]:
  """The 2-D plane through three models: ``(origin, dx, dy)``.

  ``origin = p0``, ``dx = p1 − p0``, ``dy = (p2 − p0) − (⟨p2 − p0, dx⟩ / ‖dx‖²) dx``
  (Gram–Schmidt, not unit-normed), so ``p0`` is at ``(0, 0)``, ``p1`` at ``(1, 0)`` and
  ``p2`` at ``(⟨p2 − p0, dx⟩ / ‖dx‖², 1)`` (see ``coordinates``). All leaves count,
  biases included.

  Args:
    p0, p1, p2: parameter pytrees with the same tree paths and shapes.

  Returns:
    ``(origin, dx, dy)``, pytrees like ``p0``.

  Raises:
    ConfigError: if ``p1 = p0`` or ``p2`` lies on the line through ``p0`` and ``p1``.

  Example:
    >>> origin, dx, dy = plane_through(w_a, w_b, w_c)
    >>> a, b = coordinates(origin, dx, dy, w_c)  # b == 1

  References:
    Garipov, Izmailov, Podoprikhin, Vetrov, Wilson, "Loss Surfaces, Mode Connectivity, and
    Fast Ensembling of DNNs", NeurIPS 2018.
  """
  dx = target(p0, p1)
  r2 = target(p0, p2)
  dy = orthogonalize(r2, dx)
  _, dx_leaves, _ = _flat(dx)
  if float(optax.tree.norm(dx)) == 0.0:
    raise ConfigError("plane_through: p1 equals p0, so they span no direction; "
                      "pass three distinct models")
  eps = float(max(jnp.finfo(jnp.result_type(leaf)).eps for leaf in dx_leaves))
  if float(optax.tree.norm(dy)) <= 100 * eps * float(optax.tree.norm(r2)):
    raise ConfigError("plane_through: p2 lies on the line through p0 and p1 (its "
                      "component orthogonal to p1 - p0 is zero); pass three models not on a line")
  return p0, dx, dy


def orthonormal_plane(p0: Params, p1: Params, p2: Params
                      ) -> tuple[Params, Direction, Direction, np.ndarray]:
  """The plane through three models with an orthonormal basis: ``(origin, u, v, coords)``.

  :func:`plane_through`'s ``dx`` and ``dy`` scaled to unit Euclidean norm over all leaves,
  so plane coordinates are parameter-space distances (a figure with equal aspect shows the
  true geometry, as in Garipov et al. 2018, Fig. 1). ``coords`` ``(3, 2)`` are the three
  models' coordinates: ``p0`` at ``(0, 0)``, ``p1`` at ``(‖p1 − p0‖, 0)``, ``p2`` at
  ``(⟨p2 − p0, u⟩, ‖(p2 − p0)⊥‖)``.

  Raises:
    ConfigError: as :func:`plane_through`.
  """
  origin, dx, dy = plane_through(p0, p1, p2)
  u, v = (jax.tree.map(lambda a, n=optax.tree.norm(d): a / n.astype(a.dtype), d)
          for d in (dx, dy))
  coords = np.array([coordinates(origin, u, v, p) for p in (p0, p1, p2)])
  return origin, u, v, coords


# ----------------------------------------------------------------------------- trajectories


def _np64(leaf: Any) -> np.ndarray:
  return np.asarray(leaf).astype(np.float64)


def _trajectory_columns(trajectory: Any, final_params: Params
                        ) -> tuple[int, Callable[[int], np.ndarray]]:
  """``(T, column)``: ``column(l)`` is the ``(T, size_l)`` float64 block ``θ_t,l − θ_final,l``.

  ``trajectory`` is a stacked pytree (``final_params``' paths, leaves ``(T, *shape)``) or
  a sequence of pytrees like ``final_params``.
  """
  paths, final_leaves, _ = _flat(final_params)
  t_paths, t_leaves, _ = _flat(trajectory)
  if t_paths == paths and paths:  # stacked: a leading T axis on every leaf
    for p, a, w in zip(paths, t_leaves, final_leaves):
      if jnp.ndim(a) != jnp.ndim(w) + 1 or jnp.shape(a)[1:] != jnp.shape(w):
        raise ConfigError(
            f"stacked trajectory{p} has shape {jnp.shape(a)} but final_params{p} has shape "
            f"{jnp.shape(w)}; stack the T points on a leading axis, shape (T, *shape)")
    lengths = sorted({int(jnp.shape(a)[0]) for a in t_leaves})
    if len(lengths) > 1:
      raise ConfigError(f"stacked trajectory leaves have different leading (T) lengths "
                        f"{lengths}; stack the same T points in every leaf")
    num = lengths[0]

    def rows(l: int) -> np.ndarray:
      return _np64(t_leaves[l]).reshape(num, -1)
  elif isinstance(trajectory, Sequence) and not isinstance(trajectory, str):
    num = len(trajectory)
    points = [_check_like(pt, final_params, f"trajectory[{t}]", "final_params")
              for t, pt in enumerate(trajectory)]

    def rows(l: int) -> np.ndarray:
      size = int(np.size(final_leaves[l]))
      return np.stack([_np64(pt[l]).ravel() for pt in points]) if num else np.zeros((0, size))
  else:
    raise ConfigError(f"trajectory must be a list of parameter pytrees like final_params or "
                      f"one pytree with a leading T axis, got {type(trajectory).__name__}")

  def column(l: int) -> np.ndarray:
    return rows(l) - _np64(final_leaves[l]).ravel()

  return num, column


def pca(trajectory: Sequence[Params] | Params, final_params: Params, n: int = 2,
        ignore: str | None = "biasbn") -> tuple[list[Direction], np.ndarray]:
  """PCA directions of an optimization trajectory, as in Li et al. (2018, Sec. 7).

  ``M`` is the ``T × P`` matrix with rows ``θ_t − θ_final`` flattened over the leaves
  (leaves with ``ndim <= 1`` left out under ``ignore="biasbn"``, all leaves under
  ``None``). Like the original, which fits ``sklearn.decomposition.PCA`` to ``M``, the
  rows are **centred**: ``M_c = M − 1 μᵀ``, ``μ`` the mean row. With ``M_c = U S Vᵀ``,
  the components are the first ``n`` rows of ``Vᵀ`` (unit norm; signed so that the
  entry of largest magnitude is positive, sklearn's convention) and the explained
  variance ratios ``S_k² / Σ_j S_j²``. Computed exactly in float64 from the ``T × T``
  Gram matrix ``M_c M_cᵀ``, accumulated leaf by leaf (memory ``O(T² + T·max leaf)``).

  Args:
    trajectory: ``T`` parameter pytrees θ_t (a list), or one pytree whose leaves have a
      leading ``T`` axis; ``T >= n + 1``.
    final_params: parameter pytree θ_final (the centre of the plot).
    n: number of components.
    ignore: ``"biasbn"`` (1-D leaves excluded and zero in the components) or
      ``None``/``"none"`` (all leaves included).

  Returns:
    ``(directions, explained_variance_ratio)``: a list of ``n`` unit-norm pytrees with
    ``final_params``' structure and dtypes, and a float64 array of shape ``(n,)``.

  Raises:
    ConfigError: fewer than ``n + 1`` points, or a trajectory whose variance spans fewer
      than ``n`` directions (relative eigenvalue below 1e-12).

  Example:
    >>> (dx, dy), ratio = pca(checkpoints, checkpoints[-1], n=2)
    >>> xs, ys = project(checkpoints, checkpoints[-1], (dx, dy))

  References:
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets",
    NeurIPS 2018 (Sec. 7).
  """
  n = _validate.integer("n", n, low=1, fix="pass e.g. pca(..., n=2) for a plane")
  zero_1d = _zero_1d(ignore)
  _validate.param_tree(final_params, "final_params")
  _, final_leaves, treedef = _flat(final_params)
  num, column = _trajectory_columns(trajectory, final_params)
  if num < n + 1:
    raise ConfigError(f"pca: {n} component(s) need at least {n + 1} trajectory points, got "
                      f"{num}; save more checkpoints or ask for fewer components")
  kept = [l for l, w in enumerate(final_leaves) if not (zero_1d and jnp.ndim(w) <= 1)]

  def centred(l: int) -> np.ndarray:
    m = column(l)
    return m - m.mean(axis=0)

  gram = np.zeros((num, num))
  for l in kept:
    m = centred(l)
    gram += m @ m.T
  evals, evecs = np.linalg.eigh(gram)
  evals, evecs = np.clip(evals[::-1], 0.0, None), evecs[:, ::-1]
  total = float(evals.sum())
  rank = int(np.sum(evals > _RANK_RTOL * evals[0])) if total > 0 else 0
  if rank < n:
    raise ConfigError(f"pca: the trajectory varies in only {rank} direction(s) (over the "
                      f"non-ignored leaves), fewer than n={n}; ask for n <= {rank}")
  comps = {l: evecs[:, :n].T @ centred(l) / np.sqrt(evals[:n])[:, None] for l in kept}
  norms = np.sqrt(sum(np.sum(c * c, axis=1) for c in comps.values()))
  peaks = np.zeros(n)  # the entry of largest magnitude of each component, first in order
  for c in comps.values():
    idx = np.argmax(np.abs(c), axis=1)
    cand = c[np.arange(n), idx]
    peaks = np.where(np.abs(cand) > np.abs(peaks), cand, peaks)
  signs = np.where(peaks < 0, -1.0, 1.0) / norms
  directions = []
  for k in range(n):
    leaves = [jnp.asarray((signs[k] * comps[l][k]).reshape(np.shape(w)), jnp.result_type(w))
              if l in comps else jnp.zeros(jnp.shape(w), jnp.result_type(w))
              for l, w in enumerate(final_leaves)]
    directions.append(jax.tree.unflatten(treedef, leaves))
  return directions, evals[:n] / total


def project(trajectory: Sequence[Params] | Params, final_params: Params,
            directions: Sequence[Direction]) -> tuple[np.ndarray, ...]:
  """Coordinates of each ``θ_t − θ_final`` in the span of the directions (least squares).

  With ``A = [d₁ … d_k]`` (flattened over all leaves) and ``r_t = θ_t − θ_final``, the
  coordinates ``c_t = argmin_c ‖A c − r_t‖`` solve the normal equations
  ``(AᵀA) c_t = Aᵀ r_t`` in float64 (minimum-norm solution if ``AᵀA`` is singular).
  This is the original's ``proj_method="lstsq"``; for orthogonal directions it equals
  its ``"cos"`` method ``⟨r_t, d_i⟩ / ‖d_i‖²`` (the original divides by ‖d_i‖ once,
  which agrees for its unit-norm PCA directions).

  Args:
    trajectory: ``T`` parameter pytrees (a list) or one pytree with a leading ``T`` axis.
    final_params: parameter pytree θ_final, the origin of the coordinates.
    directions: ``k`` direction pytrees like ``final_params``, e.g. ``(dx, dy)``.

  Returns:
    ``k`` float64 arrays of shape ``(T,)``: ``(xcoords, ycoords)`` for two directions.

  Example:
    >>> xs, ys = project(checkpoints, checkpoints[-1], (dx, dy))

  References:
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets",
    NeurIPS 2018 (Sec. 7).
  """
  if (not isinstance(directions, Sequence) or isinstance(directions, str)
      or len(directions) < 1):
    raise ConfigError(f"directions must be a non-empty list of direction pytrees such as "
                      f"(dx, dy), got {type(directions).__name__}")
  dirs = [_check_like(d, final_params, f"directions[{i}]", "final_params")
          for i, d in enumerate(directions)]
  num, column = _trajectory_columns(trajectory, final_params)
  k = len(dirs)
  gram, rhs = np.zeros((k, k)), np.zeros((k, num))
  for l in range(len(dirs[0])):
    a = np.stack([_np64(d[l]).ravel() for d in dirs])
    gram += a @ a.T
    rhs += a @ column(l).T
  coords = np.linalg.lstsq(gram, rhs, rcond=None)[0] if num else rhs
  return tuple(coords)


def coordinates(origin: Params, dx: Direction, dy: Direction,
                p: Params) -> tuple[float, float]:
  """Least-squares coordinates ``(a, b)`` of a point in the plane ``origin + a·dx + b·dy``.

  ``(a, b) = argmin ‖a·dx + b·dy − (p − origin)‖`` over all leaves, in float64; exact
  for a point of the plane, the orthogonal projection otherwise.

  Args:
    origin: parameter pytree.
    dx, dy: direction pytrees like ``origin``.
    p: parameter pytree like ``origin``.

  Returns:
    ``(a, b)`` as Python floats.

  Example:
    >>> origin, dx, dy = plane_through(w_a, w_b, w_c)
    >>> coordinates(origin, dx, dy, w_b)  # (1.0, 0.0)

  References:
    Garipov, Izmailov, Podoprikhin, Vetrov, Wilson, "Loss Surfaces, Mode Connectivity, and
    Fast Ensembling of DNNs", NeurIPS 2018.
  """
  xs, ys = project([p], origin, (dx, dy))
  return float(xs[0]), float(ys[0])
