"""Matrix-free linear algebra on pytree vectors: Krylov solvers and stochastic estimators.

Every function takes the operator as ``matvec: v -> A v``, a pure (traceable)
function of a pytree ``v``, for a symmetric ``A``; nothing here knows of losses,
data or grids (the Hessian probes of :mod:`landscape.hessian` and the searches of
:mod:`landscape.critical` are compositions of these).

  lanczos, tridiagonal      Lanczos with full reorthogonalization; the tridiagonal T
  ritz                      Ritz values, vectors and residual norms of a Lanczos run
  extreme_eigenpairs        extreme Ritz pairs with an early stop on the residuals
  gauss_quadrature, slq     Gauss quadrature nodes/weights of a Lanczos run (SLQ)
  hutchinson, hutchpp       stochastic trace estimators (Rademacher probes)
  minres_qlp                minimum-length least-squares solves (MINRES-QLP)

A Krylov basis of ``m`` vectors is stored as a pytree like the vectors whose
leaves have a leading ``(m,)`` axis, so memory is ``m`` times the dimension.
The ``report`` flags compile in :func:`landscape._progress.tick` calls (one per
Lanczos step or probe block) for the progress display of an open reporter.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray

from landscape import _progress, _validate

PyTree = Any
MatVec = Callable[[PyTree], PyTree]

__all__ = [
    "MinresInfo", "Ritz", "WHICH", "extreme_eigenpairs", "gauss_quadrature", "hutchinson",
    "hutchpp", "lanczos", "minres_qlp", "num_params", "random_tree", "ritz", "slq",
    "smoothed_density", "tree_dtype", "tridiagonal",
]

WHICH = ("largest", "smallest", "both")


# ------------------------------------------------------------------ pytree helpers

def num_params(tree: PyTree) -> int:
  """The number of entries of a pytree of arrays (its dimension as a vector)."""
  return sum(math.prod(jnp.shape(leaf)) for leaf in jax.tree.leaves(tree))


def tree_dtype(tree: PyTree) -> np.dtype:
  """The common dtype of a pytree's leaves (the dtype of a vector in its space)."""
  return jnp.result_type(*jax.tree.leaves(tree))


def _rows_to_matrix(rows: PyTree) -> jax.Array:
  """Pytree with leading ``(s,)`` axes -> ``(s, n)`` matrix, for a few rows only (s ≪ n)."""
  leaves = jax.tree.leaves(rows)
  return jnp.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in leaves], axis=1)


def _matrix_to_rows(mat: jax.Array, like: PyTree) -> PyTree:
  """``(s, n)`` matrix -> pytree like ``like`` with leading ``(s,)`` axes (inverse of above)."""
  leaves, treedef = jax.tree.flatten(like)
  sizes = np.cumsum([math.prod(jnp.shape(x)) for x in leaves])[:-1]
  parts = jnp.split(mat, sizes, axis=1)
  return treedef.unflatten([p.reshape(mat.shape[0], *jnp.shape(x)).astype(x.dtype)
                            for p, x in zip(parts, leaves)])


def random_tree(key: PRNGKeyArray, like: PyTree, kind: str = "gaussian") -> PyTree:
  """I.i.d. N(0, 1) (``gaussian``) or ±1 (``rademacher``) entries shaped like ``like``.

  One draw of all ``n`` entries, split into the leaves (one PRNG call compiles
  much faster than one per leaf; the distribution is the same).
  """
  return _random_tree(key, like, kind)


@functools.partial(jax.jit, static_argnames="kind")
def _random_tree(key: PRNGKeyArray, like: PyTree, kind: str) -> PyTree:
  # compiled as a whole: op by op, the split into leaves dispatched (and, in a new
  # process, lowered) dozens of small computations per call
  sampler = jax.random.normal if kind == "gaussian" else jax.random.rademacher
  flat = sampler(key, (1, num_params(like)), tree_dtype(like))
  return jax.tree.map(lambda r: r[0], _matrix_to_rows(flat, like))


def _normalize(v: PyTree) -> PyTree:
  norm = optax.tree.norm(v)
  return optax.tree.scale(1.0 / jnp.where(norm > 0, norm, 1.0), v)


def _set_row(basis: PyTree, i: jax.Array | int, v: PyTree) -> PyTree:
  return jax.tree.map(lambda b, x: b.at[i].set(x.astype(b.dtype)), basis, v)


def _coefficients(basis: PyTree, v: PyTree) -> jax.Array:
  """``(⟨b_0, v⟩, …, ⟨b_{m-1}, v⟩)`` for a basis with leading ``(m,)`` axes."""
  parts = [jnp.tensordot(b.reshape(b.shape[0], -1), x.reshape(-1), axes=1)
           for b, x in zip(jax.tree.leaves(basis), jax.tree.leaves(v))]
  return sum(parts[1:], parts[0])


def _combine(coefficients: jax.Array, basis: PyTree) -> PyTree:
  """``Σ_i c_i b_i``; with ``c`` of shape ``(m, k)`` a pytree with leading ``(k,)`` axes."""
  return jax.tree.map(lambda b: jnp.tensordot(coefficients.T, b, axes=1).astype(b.dtype), basis)


def _project_out(w: PyTree, basis: PyTree, count: jax.Array) -> PyTree:
  """One classical Gram–Schmidt pass against the first ``count`` basis rows only.

  ``w ← w − Σ_{i<count} ⟨b_i, w⟩ b_i`` as two matrix–vector products over the whole
  preallocated basis, the coefficients of rows ``≥ count`` masked to zero (BLAS speed;
  a ``fori_loop`` over the rows paid XLA's per-iteration cost on every row and leaf).
  Applied twice, classical Gram–Schmidt keeps the basis orthonormal to working
  precision ("twice is enough", Giraud, Langou & Rozložník 2005).
  """
  rows = jax.tree.leaves(basis)[0].shape[0]
  coefficients = jnp.where(jnp.arange(rows) < count, _coefficients(basis, w), 0.0)
  return jax.tree.map(lambda x, b: x - jnp.tensordot(coefficients.astype(b.dtype), b, axes=1),
                      w, basis)


def _least_covered_unit(basis: PyTree, mask: jax.Array) -> PyTree:
  """The unit coordinate vector ``e_i`` with the least weight ``Σ_r b_r[i]²`` in the basis.

  With ``p < n`` orthonormal rows the weights sum to ``p``, so the least is
  ``≤ p/n`` and ``‖(I − VVᵀ) e_i‖² ≥ 1 − p/n > 0``: a deterministic direction
  outside the span (no PRNG needed to continue after a breakdown).
  """
  rows = jax.tree.map(lambda b: jnp.tensordot(mask.astype(b.dtype), b * b, axes=1), basis)
  weights = _rows_to_matrix(jax.tree.map(lambda w: w[None], rows))[0]
  unit = jax.nn.one_hot(jnp.argmin(weights), weights.shape[0], dtype=weights.dtype)
  return jax.tree.map(lambda u: u[0], _matrix_to_rows(unit[None], rows))


def _breakdown_tol(dtype: np.dtype) -> float:
  """``‖w‖ ≤ eps^(2/3) · max_i ‖A v_i‖`` after one projection: an invariant space."""
  # At a true breakdown one Gram–Schmidt pass leaves rounding only: measured on a
  # 99-parameter MLP with a 13-fold zero eigenvalue, 6e-18..6e-15 relative in float64
  # and 5e-9..1.9e-6 in float32, while the smallest genuine value was 7.7e-4.
  # eps^(2/3) (3.7e-11 in float64, 2.4e-5 in float32) sits between; a false alarm
  # perturbs T by at most that much.
  return float(np.finfo(dtype).eps) ** (2.0 / 3.0)


# ------------------------------------------------------------------------ Lanczos

class _State(NamedTuple):
  basis: PyTree       # leaves (m, ...): rows v_0 … v_{j-1} filled, the rest zero
  alphas: jax.Array   # (m,)
  betas: jax.Array    # (m,)
  scale: jax.Array    # running max ‖A v_i‖, the breakdown yardstick
  v: PyTree           # v_j, the vector of the next step
  v_prev: PyTree      # v_{j-1} (zero at j = 0)
  beta_prev: jax.Array  # β_{j-1} (0 at j = 0)


def _init_state(v0: PyTree, num_steps: int) -> _State:
  dtype = tree_dtype(v0)
  basis = jax.tree.map(lambda x: jnp.zeros((num_steps, *jnp.shape(x)), x.dtype), v0)
  zeros = jnp.zeros((num_steps,), dtype)
  zero = jnp.zeros((), dtype)
  return _State(basis, zeros, zeros, zero, _normalize(v0), optax.tree.zeros_like(v0), zero)


def _lanczos_step(matvec: MatVec, j: jax.Array, state: _State) -> _State:
  """Step ``j`` (0-based): stores ``v_j`` as basis row ``j``, fills ``alphas[j]``, ``betas[j]``."""
  dtype = state.alphas.dtype
  v = state.v
  basis = _set_row(state.basis, j, v)
  w = matvec(v)
  alpha = optax.tree.vdot(w, v).astype(dtype)
  scale = jnp.maximum(state.scale, optax.tree.norm(w).astype(dtype))
  w = optax.tree.sub(optax.tree.add_scale(w, -alpha, v),
                     optax.tree.scale(state.beta_prev, state.v_prev))
  filled = jnp.arange(state.alphas.shape[0]) <= j
  # Gram–Schmidt twice ("twice is enough"). A tiny norm after the first pass means
  # the Krylov space is invariant (breakdown): the second pass then orthogonalizes
  # a fresh direction instead, the least-covered unit vector.
  w = _project_out(w, basis, j + 1)
  breakdown = optax.tree.norm(w).astype(dtype) <= _breakdown_tol(dtype) * scale
  # a select, not lax.cond: the unit vector is cheap (one pass over the basis) and a
  # conditional made the compiled step 2-3x slower to compile
  unit = _least_covered_unit(basis, filled)
  w = jax.tree.map(lambda u, x: jnp.where(breakdown, u, x), unit, w)
  w = _project_out(w, basis, j + 1)
  norm = optax.tree.norm(w).astype(dtype)
  nxt = optax.tree.scale(1.0 / jnp.where(norm > 0, norm, 1.0), w)
  beta = jnp.where(breakdown, 0.0, norm)
  return _State(basis, state.alphas.at[j].set(alpha), state.betas.at[j].set(beta), scale,
                nxt, v, beta)


def lanczos(matvec: MatVec, v0: PyTree, num_steps: int
            ) -> tuple[Float[Array, "m"], Float[Array, "m"], PyTree]:
  """Lanczos tridiagonalization of a symmetric operator with full reorthogonalization.

  Builds an orthonormal basis ``V = [v_1 … v_m]`` of the Krylov space
  ``span{v_1, A v_1, …, A^{m-1} v_1}``, ``v_1 = v0 / ‖v0‖``, and the tridiagonal
  ``T = Vᵀ A V`` (diagonal ``α``, off-diagonal ``β_1 … β_{m-1}``) with

      A V = V T + β_m v_{m+1} e_mᵀ,

  the three-term recurrence ``β_j v_{j+1} = A v_j − α_j v_j − β_{j-1} v_{j-1}``.
  Each new vector is reorthogonalized twice against the vectors filled so far
  (classical Gram–Schmidt, "twice is enough"), so ``V`` stays orthonormal to
  working precision and ``T`` carries no spurious copies of converged Ritz
  values. If the first pass leaves ``‖w‖ ≤ eps^(2/3) · max_i ‖A v_i‖`` the
  Krylov space is invariant (breakdown): ``β_j`` is set to 0, so ``T`` splits
  into blocks, and the process continues from the unit coordinate vector least
  represented in the basis, orthogonalized against it (deterministic, never in
  the span; this is how Lanczos run to order = dim recovers eigenvalues of any
  multiplicity).
  One compiled loop (``lax.fori_loop``), one matvec per step, fixed shapes;
  pure, so it can be jitted and vmapped.

  Args:
    matvec: ``v -> A v`` on pytrees like ``v0``; ``A`` symmetric.
    v0: nonzero start vector (a pytree); normalized here.
    num_steps: ``m``, the number of Lanczos steps = matvecs; at most the
      dimension (beyond it the basis cannot be extended).

  Returns:
    ``(alphas, betas, basis)``: ``alphas`` ``(m,)`` the diagonal of ``T``;
    ``betas`` ``(m,)`` with ``betas[:m-1]`` its off-diagonal and
    ``betas[m-1] = β_m`` the norm of the residual ``A v_m − V T e_m``
    (so ``|β_m s_{m,i}|`` is the residual norm of Ritz pair ``i``);
    ``basis`` a pytree like ``v0`` whose leaves have a leading ``(m,)`` axis,
    row ``i`` the basis vector ``v_{i+1}``.

  Example:
    >>> a = jnp.diag(jnp.arange(1.0, 6.0))
    >>> alphas, betas, basis = lanczos(lambda v: a @ v, jnp.ones(5), 5)
    >>> jnp.linalg.eigvalsh(tridiagonal(alphas, betas))  # ≈ [1, 2, 3, 4, 5]

  References:
    Lanczos, "An iteration method for the solution of the eigenvalue problem of
    linear differential and integral operators", J. Res. Nat. Bur. Standards 1950.
    Golub & Van Loan, "Matrix Computations", 4th ed., Johns Hopkins, 2013, §10.1.
    Giraud, Langou & Rozložník, "The loss of orthogonality in the Gram-Schmidt
    orthogonalization process", Computers & Mathematics with Applications 2005.
  """
  num_steps = _validate.integer("num_steps", num_steps, low=1, fix="pass e.g. num_steps=30")
  return _lanczos_loop(matvec, v0, num_steps)


def _lanczos_loop(matvec: MatVec, v0: PyTree, num_steps: int, report: bool = False):
  """:func:`lanczos` without checks; ``report``: a :func:`_progress.tick` per step.

  The tick's only operand is the (unbatched) loop counter, so under ``vmap`` (SLQ's
  runs) it fires once per step for all runs together. The curvature maps call
  :func:`lanczos` (no ticks): there the sweep reports rows.
  """
  def body(j, state):
    state = _lanczos_step(matvec, j, state)
    if report:
      _progress.tick(j + 1)
    return state

  state = jax.lax.fori_loop(0, num_steps, body, _init_state(v0, num_steps))
  return state.alphas, state.betas, state.basis


# ------------------------------------------------------- host-driven Lanczos

# XLA's CPU backend compiles a convolution's weight gradient inside any loop (``while``,
# ``scan``, ``fori_loop``) without the canonicalization it applies at the top level, and
# runs it through a naive kernel: measured 40–100x slower (0.47 s instead of 5 ms for
# one weight gradient of a 3x3x16x32 convolution on 512 8x8 images; jax 0.10.2 and
# 0.12.0, 2-core AMD EPYC). A compiled Lanczos loop around an HVP of a convolutional
# network therefore spent 145 ms a step on the digits CNN whose HVP takes 11 ms. The
# drivers below keep the loop on the host: one compiled call per step (the HVP at top
# level), the state donated from step to step, the early-stop test on the device and
# one scalar read back per step.

@functools.partial(jax.jit, static_argnames="num_steps")
def _start(v0: PyTree, num_steps: int) -> _State:
  return _init_state(v0, num_steps)


@functools.partial(jax.jit, static_argnames="apply", donate_argnames="state")
def _driven_step(apply: Callable[[Any, jax.Array], jax.Array], args: Any, state: _State,
                 j: jax.Array) -> tuple[_State, jax.Array, jax.Array]:
  state = _lanczos_step(functools.partial(apply, args), j, state)
  return state, state.alphas[j], state.betas[j]


def _host_converged(alphas: np.ndarray, betas: np.ndarray, n: int, k: int,
                    wanted: tuple[bool, ...], tol: float, relative_to: str, eps: float) -> bool:
  """:func:`_converged` for every wanted end, on the host in float64 (``T_n`` is tiny)."""
  if tol <= 0 or n < k or not wanted:
    return False
  theta, residuals = _host_ritz(alphas, betas, n)
  radius = float(np.max(np.abs(theta)))
  for largest in wanted:
    idx = _host_select(n, k, largest)
    scale = radius if relative_to == "radius" else np.abs(theta[idx])
    if not np.all(residuals[idx] <= np.maximum(tol * scale, eps * radius)):
      return False
  return True


@dataclasses.dataclass(frozen=True)
class _Flat:
  """``apply`` on flat vectors: ``x -> ravel(apply(args, unravel(x)))``.

  The driven step works on one flat vector instead of a pytree: one fusion per
  operation instead of one per leaf, which made the compiled step ~3x faster to
  compile (1.3 s instead of 3.7 s for the digits CNN).
  """
  apply: Callable[[Any, PyTree], PyTree]
  unravel: Callable[[jax.Array], PyTree]

  def __call__(self, args: Any, x: jax.Array) -> jax.Array:
    return ravel_pytree(self.apply(args, self.unravel(x)))[0].astype(x.dtype)


@functools.lru_cache(maxsize=64)
def _flat(apply: Callable, treedef: Any, avals: tuple) -> _Flat:
  """One :class:`_Flat` per operator and vector structure, so its compiled step is reused."""
  like = jax.tree.unflatten(treedef, [jnp.zeros(shape, dtype) for shape, dtype in avals])
  return _Flat(apply, ravel_pytree(like)[1])


def _flat_for(apply: Callable, like: PyTree) -> _Flat:
  leaves, treedef = jax.tree.flatten(like)
  return _flat(apply, treedef, tuple((tuple(jnp.shape(x)), jnp.result_type(x)) for x in leaves))


class Krylov(NamedTuple):
  """A Lanczos run kept whole: ``A V = V T + β_n v_{n+1} e_nᵀ``, ``V`` the first ``n`` rows.

  Attributes:
    num_steps: ``n``, the steps run (= matvecs).
    state: the recurrence state on flat vectors (to continue the run with ``resume``).
    flat: the operator on flat vectors; ``flat.unravel`` maps a flat vector (a basis
      row) to a pytree like the start vector.

  ``alphas``, ``betas`` (``(m,)``, ``m`` the allocated size; the first ``n`` entries hold
  ``T``'s diagonal and off-diagonal, ``betas[n-1] = β_n``) and ``basis`` (the flat
  orthonormal basis ``(m, dim)``, rows ``≥ n`` zero) are properties.
  """
  num_steps: int
  state: _State
  flat: _Flat

  @property
  def alphas(self) -> jax.Array:
    return self.state.alphas

  @property
  def betas(self) -> jax.Array:
    return self.state.betas

  @property
  def basis(self) -> jax.Array:
    return self.state.basis


def driven_lanczos(apply: Callable[[Any, PyTree], PyTree], args: Any, v0: PyTree, size: int,
                   *, steps: int | None = None, tol: float = 0.0, k: int = 1,
                   which: str | None = None, relative_to: str = "value",
                   on_step: Callable[[int], None] | None = None,
                   resume: Krylov | None = None) -> Krylov:
  """Lanczos (full reorthogonalization) driven from the host, one compiled call per step.

  The same recurrence as :func:`lanczos` and the same early stop as
  :func:`extreme_eigenpairs`, but the loop runs in Python: each step is one call of a
  function compiled once per ``(apply, shapes)`` and reused by every run with the same
  allocated ``size`` (so Lanczos runs for eigenvalues, SLQ and trace probes of one
  operator share one compilation), and the HVP inside it runs at top level, not in an
  XLA loop (see the note above: convolution gradients inside XLA CPU loops are 40–100x
  slower). The step returns ``α_j, β_j``; the early-stop test diagonalizes ``T_n`` on
  the host in float64 (so the compiled step is the same with or without a stop
  test). Not traceable; use :func:`lanczos` under ``jit``/``vmap``.

  Args:
    apply: ``apply(args, v) -> A v``, hashable (a module-level function or a frozen
      dataclass): it is a static argument of the compiled step.
    args: the operator's arrays (parameters, data, a linearization), passed to every
      step as arguments, never baked into the executable.
    v0: nonzero start vector; normalized.
    size: rows allocated for the basis (``≥ steps``, ``≤`` the dimension).
    steps: steps to run at most (``None``: ``size``).
    tol: relative Ritz-residual tolerance of the early stop (0: none).
    k, which, relative_to: the wanted pairs and the test, as in :func:`extreme_eigenpairs`
      (``which=None``: no early stop).
    on_step: called with the number of steps done after each step (progress).
    resume: a run of this function to continue (same ``apply``/``args``/``size``),
      instead of starting from ``v0``.

  Returns:
    :class:`Krylov`.
  """
  wanted = () if which is None else {"largest": (True,), "smallest": (False,),
                                      "both": (True, False)}[which]
  steps = size if steps is None else min(int(steps), size)
  if resume is None:
    flat = _flat_for(apply, v0)
    state, start = _start(ravel_pytree(v0)[0], size), 0
  else:
    flat, state, start = resume.flat, resume.state, resume.num_steps
  eps = float(np.finfo(state.alphas.dtype).eps)
  alphas = np.zeros(size)
  betas = np.zeros(size)
  if start:
    alphas[:start] = np.asarray(state.alphas[:start])
    betas[:start] = np.asarray(state.betas[:start])
  j = start
  while j < steps:
    state, alpha, beta = _driven_step(flat, args, state, jnp.asarray(j))
    alphas[j], betas[j] = float(alpha), float(beta)   # waits for the step
    j += 1
    if on_step is not None:
      on_step(j)
    if _host_converged(alphas, betas, j, k, wanted, float(tol), relative_to, eps):
      break
  return Krylov(j, state, flat)


@functools.partial(jax.jit, static_argnames=("k", "which", "return_vectors"))
def _krylov_pairs(state: _State, n: jax.Array, *, k: int, which: str,
                  return_vectors: bool) -> tuple[Ritz, ...]:
  theta, s, residuals = _ritz(state.alphas, state.betas, n)
  out = []
  for largest in {"largest": (True,), "smallest": (False,), "both": (True, False)}[which]:
    idx = _select(n, k, largest)
    vectors = _combine(s[:, idx], state.basis) if return_vectors else None
    out.append(Ritz(theta[idx], vectors, residuals[idx]))
  return tuple(out)


def krylov_pairs(run: Krylov, *, k: int, which: str, return_vectors: bool = False
                 ) -> tuple[Ritz, ...]:
  """The ``k`` extreme Ritz pairs per end of a :func:`driven_lanczos` run.

  As :func:`extreme_eigenpairs` returns them: a tuple of :class:`Ritz`, one per end
  (``largest`` descending, ``smallest`` ascending; ``both``: largest, then smallest).
  """
  _validate.choice("which", which, WHICH)
  if not 1 <= k <= run.num_steps:
    raise ValueError(f"k={k} needs 1 <= k <= the {run.num_steps} steps of the run")
  if not return_vectors:   # values and residuals from T_n alone, on the host in float64
    n, dtype = run.num_steps, run.alphas.dtype
    theta, residuals = _host_ritz(np.asarray(run.alphas), np.asarray(run.betas), n)
    ends = {"largest": (True,), "smallest": (False,), "both": (True, False)}[which]
    return tuple(Ritz(jnp.asarray(theta[idx], dtype), None, jnp.asarray(residuals[idx], dtype))
                 for idx in (_host_select(n, k, largest) for largest in ends))
  pairs = _krylov_pairs(run.state, jnp.asarray(run.num_steps), k=k, which=which,
                        return_vectors=return_vectors)
  return tuple(p._replace(vectors=jax.vmap(run.flat.unravel)(p.vectors)) for p in pairs)


def _tridiagonal_np(alphas: np.ndarray, betas: np.ndarray) -> np.ndarray:
  n = alphas.shape[0]
  return np.diag(alphas) + np.diag(betas[:n - 1], 1) + np.diag(betas[:n - 1], -1)


def _host_ritz(alphas, betas, n: int) -> tuple[np.ndarray, np.ndarray]:
  """Ritz values (ascending) and residuals ``|β_n s_{n,i}|`` of ``T_n``, in float64 on the host."""
  theta, s = np.linalg.eigh(_tridiagonal_np(np.asarray(alphas[:n], np.float64),
                                            np.asarray(betas[:n], np.float64)))
  return theta, np.abs(float(betas[n - 1]) * s[n - 1])


def _host_select(n: int, k: int, largest: bool) -> np.ndarray:
  """:func:`_select` on the host."""
  return np.arange(n - 1, n - 1 - k, -1) if largest else np.arange(k)


def krylov_quadrature(run: Krylov) -> tuple[np.ndarray, np.ndarray]:
  """:func:`gauss_quadrature` of the ``n`` steps of a :func:`driven_lanczos` run, on the
  host in float64 (``T_n`` is tiny; no kernel to compile per run length)."""
  n = run.num_steps
  theta, s = np.linalg.eigh(_tridiagonal_np(np.asarray(run.alphas[:n], np.float64),
                                            np.asarray(run.betas[:n], np.float64)))
  return theta, s[0] ** 2


@jax.jit
def _deflate(basis: jax.Array, count: jax.Array, z: jax.Array) -> jax.Array:
  return _project_out(_project_out(z, basis, count), basis, count)


def deflate(run: Krylov, z: PyTree) -> PyTree:
  """``(I − QQᵀ) z`` for the basis ``Q`` of a :func:`driven_lanczos` run (two passes, so
  the result is orthogonal to ``Q`` to working precision)."""
  flat = _deflate(run.basis, jnp.asarray(run.num_steps), ravel_pytree(z)[0])
  return run.flat.unravel(flat)


@jax.jit
def _projections(basis: PyTree, count: jax.Array, state: _State, n: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
  """``(Qᵀ v₀, Qᵀ v₁)`` for a run's first two Lanczos vectors (``v₁``: the next vector
  when the run took one step), coefficients of rows ``≥ count`` zero."""
  mask = jnp.arange(basis.shape[0]) < count
  v0 = state.basis[0]
  v1 = jnp.where(n >= 2, state.basis[1], state.v)
  return (jnp.where(mask, _coefficients(basis, v0), 0.0),
          jnp.where(mask, _coefficients(basis, v1), 0.0))


def deflated_quadratic(sketch: Krylov, run: Krylov) -> float:
  """``v₀ᵀ P A P v₀`` with ``P = I − QQᵀ``, ``Q`` the basis of ``sketch``, ``v₀`` the unit
  start of ``run``, from quantities both runs hold (no matvec).

  The first step of ``run`` gives ``A v₀ = α₀ v₀ + β₀ v₁`` (exact up to rounding with
  full reorthogonalization), and ``QᵀAQ = T`` (the sketch's tridiagonal), so with
  ``c = Qᵀv₀`` and ``d = QᵀAv₀ = α₀ c + β₀ Qᵀv₁``:

      v₀ᵀ P A P v₀ = α₀ − 2 cᵀd + cᵀ T c.

  This is how the trace estimator reuses SLQ's runs as deflated Hutchinson probes.
  """
  m = sketch.num_steps
  c, c1 = _projections(sketch.basis, jnp.asarray(m), run.state, jnp.asarray(run.num_steps))
  c, c1 = np.asarray(c[:m], np.float64), np.asarray(c1[:m], np.float64)
  alpha0, beta0 = float(run.alphas[0]), float(run.betas[0])
  d = alpha0 * c + beta0 * c1
  t = _tridiagonal_np(np.asarray(sketch.alphas[:m], np.float64),
                      np.asarray(sketch.betas[:m], np.float64))
  return float(alpha0 - 2.0 * c @ d + c @ t @ c)


def tridiagonal(alphas: Float[Array, "m"], betas: Float[Array, "m"] | Float[Array, "m-1"]
                ) -> Float[Array, "m m"]:
  """The dense symmetric tridiagonal ``T`` with diagonal ``alphas`` and off-diagonal ``betas``.

  ``T_ii = α_i``, ``T_{i,i+1} = T_{i+1,i} = β_i`` for ``i < m − 1``; a trailing
  ``β_m`` (the residual norm that :func:`lanczos` returns last) is ignored.

  Args:
    alphas: ``(m,)`` diagonal.
    betas: ``(m,)`` or ``(m − 1,)``; the first ``m − 1`` entries are used.

  Returns:
    ``(m, m)`` array.

  Example:
    >>> tridiagonal(jnp.array([1.0, 2.0]), jnp.array([0.5, 9.0]))  # [[1, .5], [.5, 2]]

  References:
    Golub & Van Loan, "Matrix Computations", 4th ed., Johns Hopkins, 2013, §8.3.
  """
  m = alphas.shape[0]
  off = betas[:m - 1]
  return jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)


def _ritz(alphas: jax.Array, betas: jax.Array, n: jax.Array
          ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Ritz values (ascending), vectors and residuals of the leading ``n × n`` block of T.

  Works on the fixed-size ``(m, m)`` matrix: the unfilled diagonal is padded
  with a value above the Gershgorin bound of the filled block, so the first
  ``n`` eigenvalues of the padded matrix are the Ritz values of ``T_n``
  (their eigenvectors vanish on the padded rows).
  """
  m = alphas.shape[0]
  idx = jnp.arange(m)
  inside = idx < n
  couple = jnp.where(idx[:m - 1] < n - 1, betas[:m - 1], 0.0)
  radius = jnp.abs(jnp.concatenate([couple, jnp.zeros(1, couple.dtype)]))
  radius = radius + jnp.abs(jnp.concatenate([jnp.zeros(1, couple.dtype), couple]))
  hi = jnp.max(jnp.where(inside, alphas + radius, -jnp.inf))
  lo = jnp.min(jnp.where(inside, alphas - radius, jnp.inf))
  spread = jnp.maximum(hi - lo, jnp.maximum(jnp.abs(hi), jnp.abs(lo)))
  pad = hi + jnp.where(spread > 0, spread, 1.0)
  t = tridiagonal(jnp.where(inside, alphas, pad), couple)
  theta, s = jnp.linalg.eigh(t)
  residuals = jnp.abs(betas[n - 1] * s[n - 1])
  return theta, s, residuals


def _select(n: jax.Array, k: int, largest: bool) -> jax.Array:
  """Indices of the ``k`` largest (descending) or smallest (ascending) of ``n`` Ritz values."""
  return n - 1 - jnp.arange(k) if largest else jnp.arange(k)


def _converged(theta: jax.Array, residuals: jax.Array, idx: jax.Array, n: jax.Array,
               tol: jax.Array, relative_to: str = "value") -> jax.Array:
  """``r_i ≤ max(tol·|θ_i|, eps·max_j |θ_j|)`` for the selected pairs, once ``n ≥ k``
  (``relative_to="radius"``: ``r_i ≤ tol·max_j |θ_j|``)."""
  eps = np.finfo(theta.dtype).eps
  inside = jnp.arange(theta.shape[0]) < n
  radius = jnp.max(jnp.where(inside, jnp.abs(theta), 0.0))
  scale = radius if relative_to == "radius" else jnp.abs(theta[idx])
  ok = residuals[idx] <= jnp.maximum(tol * scale, eps * radius)
  return jnp.all(ok) & (n >= idx.shape[0])


# ------------------------------------------------------------------ Ritz pairs

class Ritz(NamedTuple):
  """Ritz pairs of a Lanczos run.

  Attributes:
    values: ``(k,)`` Ritz values θ_i.
    vectors: unit Ritz vectors ``y_i = V s_i`` as a pytree whose leaves have a
      leading ``(k,)`` axis (row ``i`` belongs to ``values[i]``), or ``None``.
    residuals: ``(k,)`` residual norms ``‖A y_i − θ_i y_i‖ = |β_m s_{m,i}|``;
      ``|θ_i − λ| ≤ residuals[i]`` for some eigenvalue λ of ``A``.
  """
  values: Float[Array, "k"]
  vectors: PyTree | None
  residuals: Float[Array, "k"]


def ritz(alphas: Float[Array, "m"], betas: Float[Array, "m"], basis: PyTree | None = None
         ) -> Ritz:
  """All ``m`` Ritz pairs (ascending) of a :func:`lanczos` run ``(alphas, betas, basis)``.

  ``T = S diag(θ) Sᵀ``; the Ritz vectors are ``y_i = V s_i`` and, from
  ``A V = V T + β_m v_{m+1} e_mᵀ``, their residuals are ``|β_m s_{m,i}|``.

  Args:
    alphas, betas: ``(m,)`` each, as returned by :func:`lanczos`.
    basis: the Lanczos basis (leaves ``(m, …)``), or ``None`` for no vectors.

  Returns:
    :class:`Ritz` with ``m`` pairs, values ascending.

  Example:
    >>> alphas, betas, basis = lanczos(lambda v: a @ v, v0, 20)
    >>> values, vectors, residuals = ritz(alphas, betas, basis)

  References:
    Parlett, "The Symmetric Eigenvalue Problem", SIAM, 1998, ch. 13.
  """
  m = alphas.shape[0]
  theta, s, residuals = _ritz(alphas, betas, jnp.asarray(m))
  vectors = None if basis is None else _combine(s, basis)
  return Ritz(theta, vectors, residuals)


def extreme_eigenpairs(matvec: MatVec, v0: PyTree, tol: float | jax.Array, *, k: int,
                       which: str, num_steps: int, return_vectors: bool = False,
                       report: bool = False, relative_to: str = "value"
                       ) -> tuple[jax.Array, tuple[Ritz, ...]]:
  """Extreme eigenpairs of a symmetric operator by Lanczos, with an early stop.

  Runs the :func:`lanczos` recurrence from ``v0`` in one ``lax.while_loop``;
  after every step ``n`` the Ritz pairs of ``T_n`` are computed and the loop
  stops once the ``k`` wanted pairs satisfy ``r_i ≤ max(tol·|θ_i|, eps·max|θ|)``
  (``relative_to="radius"``: ``r_i ≤ tol·max|θ|``, the spectral radius estimate, so an
  eigenvalue near 0 need not be resolved to its own relative accuracy) or after
  ``num_steps`` steps (``tol = 0``: always ``num_steps``). For every Ritz pair there is
  an eigenvalue of ``A`` within ``r_i`` of ``θ_i`` (symmetric ``A``). A breakdown
  (invariant Krylov space) gives ``β_n = 0``, zero residuals and an immediate stop.

  Args:
    matvec: ``v -> A v`` on pytrees like ``v0``; ``A`` symmetric.
    v0: nonzero start vector.
    tol: relative residual tolerance (a scalar, may be traced).
    k: pairs per end, ``k ≤ num_steps``.
    which: ``"largest"``, ``"smallest"`` or ``"both"``.
    num_steps: maximal number of steps (= matvecs), at most the dimension.
    return_vectors: also form the unit Ritz vectors.
    report: a :func:`landscape._progress.tick` per step.
    relative_to: ``"value"`` or ``"radius"``: what ``tol`` is relative to.

  Returns:
    ``(n, pairs)``: ``n`` the steps run; ``pairs`` a tuple of :class:`Ritz`
    with ``k`` pairs each, one per end (``largest`` descending, ``smallest``
    ascending; ``both``: largest, then smallest).

  References:
    Parlett, "The Symmetric Eigenvalue Problem", SIAM, 1998, ch. 11–13.
  """
  _validate.choice("which", which, WHICH)
  _validate.choice("relative_to", relative_to, ("value", "radius"))
  wanted = {"largest": (True,), "smallest": (False,), "both": (True, False)}[which]

  def body(carry):
    j, state, _, _ = carry
    state = _lanczos_step(matvec, j, state)
    if report:   # compiled in only when reported: a callback costs ~0.1 ms a step
      _progress.tick(j + 1, after=state.alphas[j])
    ritz = _ritz(state.alphas, state.betas, j + 1)
    done = functools.reduce(jnp.logical_and, [
        _converged(ritz[0], ritz[2], _select(j + 1, k, largest), j + 1, tol, relative_to)
        for largest in wanted], tol > 0)
    return j + 1, state, done, ritz

  state = _init_state(v0, num_steps)
  ritz = (state.alphas, jnp.eye(num_steps, dtype=state.alphas.dtype), state.alphas)
  j, state, _, (theta, s, residuals) = jax.lax.while_loop(
      lambda carry: (carry[0] < num_steps) & ~carry[2], body,
      (jnp.asarray(0), state, jnp.asarray(False), ritz))
  out = []
  for largest in wanted:
    idx = _select(j, k, largest)
    vectors = _combine(s[:, idx], state.basis) if return_vectors else None
    out.append(Ritz(theta[idx], vectors, residuals[idx]))
  return j, tuple(out)


# ------------------------------------------------------------------------- SLQ

def gauss_quadrature(alphas: Float[Array, "m"], betas: Float[Array, "m"]
                     ) -> tuple[Float[Array, "m"], Float[Array, "m"]]:
  """Gauss quadrature nodes and weights of a Lanczos run: ``vᵀ f(A) v ≈ Σ_i τ_i f(θ_i)``.

  With ``T = S diag(θ) Sᵀ`` the nodes are the Ritz values ``θ`` and the weights
  ``τ_i = S_{1i}²`` (summing to 1), for the unit start vector ``v``; exact for
  polynomials ``f`` of degree ``< 2m``.

  References:
    Golub & Meurant, "Matrices, Moments and Quadrature with Applications",
    Princeton, 2010, ch. 6.
  """
  theta, s = jnp.linalg.eigh(tridiagonal(alphas, betas))
  return theta, s[0] ** 2


def slq(matvec: MatVec, v0: PyTree, num_steps: int, report: bool = False
        ) -> tuple[Float[Array, "m"], Float[Array, "m"]]:
  """One stochastic-Lanczos-quadrature run: ``num_steps`` Lanczos steps from ``v0``,
  then :func:`gauss_quadrature`; ``Σ τ_i f(θ_i) ≈ v0ᵀ f(A) v0 / ‖v0‖²``.

  With a Rademacher ``v0`` (``E[v vᵀ / n] = I/n``) the average over runs estimates
  ``(1/n) tr f(A)``; vmap over start vectors for several runs. ``report``: a
  :func:`landscape._progress.tick` per step (unbatched under vmap: once per step
  for all runs).

  References:
    Lin, Saad & Yang, "Approximating spectral densities of large matrices",
    SIAM Review 2016.
  """
  alphas, betas, _ = _lanczos_loop(matvec, v0, num_steps, report=report)
  return gauss_quadrature(alphas, betas)


@functools.partial(jax.jit, static_argnames="grid_size")
def smoothed_density(theta: Float[Array, "r m"], tau: Float[Array, "r m"],
                     sigma: float | None, margin: float | None, *, grid_size: int
                     ) -> tuple[Float[Array, "g"], Float[Array, "g"]]:
  """The Gaussian-smoothed SLQ density ``(1/R) Σ_r Σ_i τ_{r,i} g_σ(t − θ_{r,i})`` on a grid.

  ``theta``, ``tau``: the nodes and weights of ``R`` :func:`slq` runs. The grid has
  ``grid_size`` points over ``[min θ − margin, max θ + margin]``; ``sigma=None`` is
  1 % of the spectral width, ``margin=None`` is ``5 σ``. The density is renormalized
  so its trapezoid integral over the grid is 1. Returns ``(grid, density)``.

  References:
    Lin, Saad & Yang, "Approximating spectral densities of large matrices",
    SIAM Review 2016.
  """
  lo, hi = jnp.min(theta), jnp.max(theta)
  width = hi - lo
  width = jnp.where(width > 0, width, jnp.maximum(jnp.abs(hi), 1.0))
  sig = width / 100.0 if sigma is None else jnp.asarray(sigma, theta.dtype)
  pad = 5.0 * sig if margin is None else jnp.asarray(margin, theta.dtype)
  grid = jnp.linspace(lo - pad, hi + pad, grid_size, dtype=theta.dtype)
  z = (grid[:, None] - theta.reshape(-1)[None, :]) / sig
  kernel = jnp.exp(-0.5 * z ** 2) / (sig * np.sqrt(2.0 * np.pi))
  phi = kernel @ tau.reshape(-1) / theta.shape[0]
  return grid, phi / jnp.trapezoid(phi, grid)


# ----------------------------------------------------------------------- trace

def _map(f: Callable, xs: Any, chunk: int | None, report: bool = False) -> Any:
  """``vmap(f)(xs)``, or ``lax.map`` in blocks of ``chunk``; with ``report`` a tick per block.

  Each tick adds the block's size and waits for one entry of its result (an
  unbatched scalar: one callback per block, not per probe).
  """
  if not report:
    return jax.vmap(f)(xs) if chunk is None else jax.lax.map(f, xs, batch_size=chunk)

  def block(x):
    out = jax.vmap(f)(x)
    size = jax.tree.leaves(x)[0].shape[0]
    _progress.tick(size, add=True, after=jax.tree.leaves(out)[0].reshape(-1)[0])
    return out

  n = jax.tree.leaves(xs)[0].shape[0]
  if chunk is None or chunk >= n:
    return block(xs)
  full = n // chunk * chunk
  head = jax.tree.map(lambda a: a[:full].reshape(n // chunk, chunk, *a.shape[1:]), xs)
  out = jax.tree.map(lambda a: a.reshape(full, *a.shape[2:]), jax.lax.map(block, head))
  if full == n:
    return out
  rest = block(jax.tree.map(lambda a: a[full:], xs))
  return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, rest)


def hutchinson(matvec: MatVec, like: PyTree, key: PRNGKeyArray, num_samples: int, *,
               probe_chunk: int | None = None, report: bool = False
               ) -> tuple[Float[Array, ""], Float[Array, ""]]:
  """Hutchinson's trace estimate ``(1/m) Σ_j z_jᵀ A z_j`` and its standard error.

  Rademacher probes ``z_j`` (entries ±1, shaped like ``like``, one key each from
  ``split(key, m)``) give ``E[zᵀ A z] = tr A`` with variance ``2 Σ_{i≠j} A_ij²``;
  the standard error is ``std_j(z_jᵀ A z_j) / √m`` (ddof 1), so ``m ≥ 2``.

  Args:
    matvec: ``v -> A v`` on pytrees like ``like``.
    like: a pytree with the shapes and dtypes of the vectors.
    key: PRNG key of the probes.
    num_samples: probes = matvecs ``m``.
    probe_chunk: probes evaluated together (``lax.map`` batch); ``None``: vmap all.
    report: a :func:`landscape._progress.tick` per block of probes.

  References:
    Hutchinson, "A stochastic estimator of the trace of the influence matrix for
    Laplacian smoothing splines", Comm. Statist. Simulation Comput. 1990.
  """
  def quadratic(z):
    return optax.tree.vdot(z, matvec(z))

  q = _map(lambda k: quadratic(random_tree(k, like, "rademacher")),
           jax.random.split(key, num_samples), probe_chunk, report)
  return jnp.mean(q), jnp.std(q, ddof=1) / np.sqrt(num_samples)


def hutchpp(matvec: MatVec, like: PyTree, key: PRNGKeyArray, num_samples: int, *,
            probe_chunk: int | None = None, report: bool = False
            ) -> tuple[Float[Array, ""], Float[Array, ""]]:
  """Hutch++ trace estimate and the standard error of its Hutchinson part.

  The ``m`` matvecs split in thirds: ``s = ⌊m/3⌋`` sketch products ``Y = A S``
  (Rademacher ``S``), ``Q = orth(Y)``, ``s`` more for the exact ``tr(Qᵀ A Q)``,
  and Hutchinson with ``g = m − 2s`` probes on ``(I − QQᵀ) A (I − QQᵀ)``:
  ``tr A = tr(Qᵀ A Q) + tr((I − QQᵀ) A (I − QQᵀ))``. Unbiased; exact (up to
  rounding) when ``rank A ≤ s``. Needs ``m ≥ 4``.

  Args:
    as :func:`hutchinson`.

  References:
    Meyer, Musco, Musco & Woodruff, "Hutch++: optimal stochastic trace
    estimation", SOSA 2021.
  """
  def quadratic(z):
    return optax.tree.vdot(z, matvec(z))

  def rademacher(k):
    return random_tree(k, like, "rademacher")

  s = num_samples // 3
  g = num_samples - 2 * s
  sketch_key, residual_key = jax.random.split(key)
  hs = _map(lambda k: matvec(rademacher(k)), jax.random.split(sketch_key, s), probe_chunk,
            report)
  q_mat, _ = jnp.linalg.qr(_rows_to_matrix(hs).T)           # (n, s), orthonormal columns
  q_rows = _matrix_to_rows(q_mat.T, like)
  trace_q = jnp.sum(_map(quadratic, q_rows, probe_chunk, report))   # tr(Qᵀ A Q)

  def residual_quadratic(k):
    z = rademacher(k)
    z = optax.tree.sub(z, jax.tree.map(lambda r: jnp.tensordot(_coefficients(q_rows, z), r, 1),
                                       q_rows))
    return quadratic(z)

  q = _map(residual_quadratic, jax.random.split(residual_key, g), probe_chunk, report)
  return trace_q + jnp.mean(q), jnp.std(q, ddof=1) / np.sqrt(g)


# ----------------------------------------------------------------------- MINRES-QLP

class MinresInfo(NamedTuple):
  """Diagnostics of :func:`minres_qlp` (all 0-d arrays).

  Attributes:
    iterations: Lanczos iterations (matrix-vector products) done.
    flag: why it stopped; 0: b = 0; 1: ``‖r‖ <= rtol ‖b‖``; 2: ``‖A r‖ <= rtol
      ‖A‖ ‖r‖`` (least-squares solution of an inconsistent system); 3: Krylov space
      exhausted: ``β_{k+1} <= ε^{3/4} ‖A‖``, ``|μ̄_k| <= √ε ‖A‖`` (a null vector
      entered the Krylov space: the minimum-length least-squares solution) or
      ``k = n`` (the dimension of ``b``); 4: ``maxiter`` reached.
    residual_norm: recurred estimate of ``‖b − (A − σI) x_k‖``.
    ls_residual_norm: recurred estimate of ``‖(A − σI) r_{k−1}‖``.
    a_norm: estimate of ``‖A − σI‖₂`` (max column norm of the Lanczos T).
    a_cond: estimate of the condition number (ratio of extreme QLP pivots).
  """
  iterations: jax.Array
  flag: jax.Array
  residual_norm: jax.Array
  ls_residual_norm: jax.Array
  a_norm: jax.Array
  a_cond: jax.Array


class _QLPState(NamedTuple):
  k: jax.Array             # iterations done
  flag: jax.Array          # -1 while running, else MinresInfo.flag
  v_prev: PyTree           # Lanczos v_{k-1}
  v: PyTree                # Lanczos v_k
  beta: jax.Array          # β_k (β_1 = ‖b‖)
  c1: jax.Array            # left Givens c_{k-1}, s_{k-1}
  s1: jax.Array
  c2: jax.Array            # left Givens c_{k-2}, s_{k-2}
  s2: jax.Array
  zetabar: jax.Array       # ζ̄_k (= ±‖r_{k-1}‖)
  mubis2: jax.Array        # μ̈_{k-2}  (LQ pivots, Choi-Paige-Saunders notation)
  psibar2: jax.Array       # ψ̄_{k-2}
  mubar1: jax.Array        # μ̄_{k-1}
  xi1: jax.Array           # ξ_{k-1}: ζ_{k-1} − ρ_{k-3} τ_{k-3}
  num2: jax.Array          # numerator of τ_{k-2}: ξ_{k-2} − ψ_{k-3} τ_{k-3}
  w1: PyTree               # W_k = V_k P_kᵀ, last two columns
  w: PyTree
  x: PyTree                # Σ τ_j w_j over the finished columns j <= k-2
  tau1: jax.Array          # provisional τ_{k-1}, τ_k and pivot μ̄_k
  tau: jax.Array
  mubar: jax.Array
  anorm: jax.Array
  mu_max: jax.Array
  mu_min: jax.Array
  rnorm: jax.Array
  arnorm: jax.Array


def _sym_givens(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Stable symmetric reflection: ``[c s; s −c] [a; b] = [r; 0]``, ``r >= 0``."""
  abs_a, abs_b = jnp.abs(a), jnp.abs(b)
  one = jnp.ones_like(a)
  sign_a = jnp.where(a < 0, -one, one)
  sign_b = jnp.where(b < 0, -one, one)
  b_big = abs_b > abs_a
  t = jnp.where(b_big, a / jnp.where(b == 0, one, b), b / jnp.where(a == 0, one, a))
  root = jnp.sqrt(1 + t * t)
  c = jnp.where(b_big, sign_b * t / root, sign_a / root)
  s = jnp.where(b_big, sign_b / root, sign_a * t / root)
  r = jnp.where(b_big, abs_b, abs_a) * root
  c = jnp.where(b == 0, sign_a, jnp.where(a == 0, 0 * one, c))
  s = jnp.where(b == 0, 0 * one, jnp.where(a == 0, sign_b, s))
  r = jnp.where(b == 0, abs_a, jnp.where(a == 0, abs_b, r))
  return c, s, r


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
  nonzero = den != 0
  return jnp.where(nonzero, num / jnp.where(nonzero, den, 1), 0)


def _lin(a: jax.Array, x: PyTree, b: jax.Array, y: PyTree) -> PyTree:
  """``a x + b y`` on pytrees, cast back to the dtypes of ``x``."""
  return optax.tree.cast_like(optax.tree.add(optax.tree.scale(a, x), optax.tree.scale(b, y)), x)


def minres_qlp(matvec: MatVec, b: PyTree, *, rtol: float, maxiter: int | jax.Array,
               shift: float = 0.0) -> tuple[PyTree, MinresInfo]:
  """MINRES-QLP: minimum-length least-squares solution of a symmetric system on pytrees.

  Solves ``min ‖x‖ subject to x ∈ argmin ‖(A − σI) x − b‖`` for a symmetric
  (possibly indefinite, singular or inconsistent) operator ``A`` given as
  ``matvec``. Lanczos builds ``(A − σI) V_k = V_{k+1} T_{k+1,k}``; a left QR
  ``Q_k T_{k+1,k} = [R_k; 0]`` (as in MINRES) is followed by a right LQ
  ``R_k P_k = L_k`` that reveals rank in the last pivot ``μ̄_k``; with
  ``L_k t_k = z_k = (Q_k β₁e₁)_{1:k}`` the iterate is ``x_k = V_k P_kᵀ t_k``.
  When the Krylov space contains a null vector of ``A − σI`` (an inconsistent
  singular system), ``μ̄_k → 0`` and the last component ``τ_k`` is dropped, which
  gives the pseudoinverse solution ``x = (A − σI)^† b`` that plain MINRES misses.
  This implementation runs every iteration in QLP form (no MINRES phase), in one
  ``lax.while_loop``; ``τ_k`` is dropped when ``|μ̄_k| <= √ε ‖A‖`` (numerical
  rank, like ``pinv`` with ``rcond = √ε``). Before
  the Krylov space is exhausted the iterates of an inconsistent system carry a
  null-space component (they are least-squares solutions, not yet minimum-length
  ones), and Lanczos runs without reorthogonalization, so on large
  ill-conditioned inconsistent systems the pseudoinverse is reached only to
  about ``cond · ε`` (exact on small well-separated spectra, see the tests).

  Stops when ``‖r_k‖ <= rtol ‖b‖``, when ``‖A r_{k−1}‖ <= rtol ‖A‖ ‖r_{k−1}‖``
  (a least-squares solution), when the Krylov space is exhausted
  (``β_{k+1} <= ε^{3/4} ‖A‖``; or ``|μ̄_k| <= √ε ‖A‖``, which in exact
  arithmetic happens only when a null vector has entered the Krylov space; or
  ``k = n``, the dimension of ``b``: in floating point Lanczos loses orthogonality
  and β need not vanish, and iterating past exhaustion only adds rounding noise)
  or after ``maxiter`` iterations; ``x_0 = 0``.

  Args:
    matvec: ``v -> A v``, symmetric, on pytrees like ``b`` (traceable).
    b: right-hand side pytree (floating leaves).
    rtol: relative tolerance of both stopping tests (e.g. ``1e-8``).
    maxiter: maximum number of iterations (matrix-vector products).
    shift: σ; solves with ``A − σI``.

  Returns:
    ``(x, info)``: ``x`` a pytree like ``b``; ``info`` a :class:`MinresInfo`.

  Example:
    >>> a = jnp.diag(jnp.array([2., -1., 0.]))
    >>> x, info = minres_qlp(lambda v: a @ v, jnp.ones(3), rtol=1e-10, maxiter=10)
    >>> # x == [0.5, -1., 0.]: the minimum-length least-squares solution

  References:
    Choi, Paige & Saunders, "MINRES-QLP: A Krylov subspace method for indefinite or
    singular symmetric systems", SIAM J. Sci. Comput. 2011.
    Choi & Saunders, "Algorithm 937: MINRES-QLP for symmetric and Hermitian linear
    equations and least-squares problems", ACM Trans. Math. Softw. 2014.
  """
  leaves = jax.tree.leaves(b)
  dtype = jnp.result_type(*leaves)
  eps = float(jnp.finfo(dtype).eps)
  tiny = eps ** 0.75           # breakdown tolerance β_{k+1} / ‖A‖
  rank_tol = eps ** 0.5        # numerical-rank tolerance μ̄_k / ‖A‖
  scalar = functools.partial(jnp.asarray, dtype=dtype)
  beta1 = scalar(optax.tree.norm(b))
  zeros = optax.tree.zeros_like(b)
  dim = sum(int(np.size(leaf)) for leaf in leaves)
  z = scalar(0.0)
  maxiter = jnp.asarray(maxiter)
  flag0 = jnp.where(beta1 == 0, 0, jnp.where(maxiter <= 0, 4, -1))
  state = _QLPState(
      k=jnp.asarray(0), flag=flag0, v_prev=zeros,
      v=optax.tree.cast_like(optax.tree.scale(_safe_div(scalar(1.0), beta1), b), b),
      beta=beta1, c1=scalar(-1.0), s1=z, c2=z, s2=z, zetabar=beta1, mubis2=z,
      psibar2=z, mubar1=z, xi1=z, num2=z, w1=zeros, w=zeros, x=zeros, tau1=z, tau=z,
      mubar=z, anorm=z, mu_max=z, mu_min=scalar(jnp.inf), rnorm=beta1, arnorm=z)

  def body(s: _QLPState) -> _QLPState:
    k = s.k + 1
    first, second = k == 1, k <= 2
    # Lanczos: β_{k+1} v_{k+1} = (A − σI) v_k − α_k v_k − β_k v_{k−1}.
    p = optax.tree.cast_like(matvec(s.v), b)
    p = _lin(scalar(1.0), p, -scalar(shift), s.v)
    p = _lin(scalar(1.0), p, -s.beta, s.v_prev)
    alpha = scalar(optax.tree.vdot(s.v, p))
    p = _lin(scalar(1.0), p, -alpha, s.v)
    beta_n = scalar(optax.tree.norm(p))
    v_next = optax.tree.cast_like(optax.tree.scale(_safe_div(scalar(1.0), beta_n), p), b)
    # Left reflections Q: previous two, then the new one annihilating β_{k+1}.
    eps2 = s.s2 * s.beta                  # ε_{k−2}
    gbar1 = -s.c2 * s.beta                # γ̄_{k−1}
    gamma1 = s.c1 * gbar1 + s.s1 * alpha  # γ_{k−1}
    lbar = s.s1 * gbar1 - s.c1 * alpha    # λ̄_k
    c, sn, lam = _sym_givens(lbar, beta_n)
    zeta = c * s.zetabar
    zetabar_n = sn * s.zetabar
    # Right reflections P: columns (k−2, k), then (k−1, k).
    cp, sp, mu2 = _sym_givens(s.mubis2, eps2)
    cp, sp = jnp.where(second, -1, cp).astype(dtype), jnp.where(second, 0, sp).astype(dtype)
    psi2 = cp * s.psibar2 + sp * gamma1   # ψ_{k−2}
    theta = sp * s.psibar2 - cp * gamma1
    rho2 = sp * lam                       # ρ_{k−2}
    eta = -cp * lam
    cd, sd, mubis1 = _sym_givens(s.mubar1, theta)
    cd, sd = jnp.where(first, -1, cd).astype(dtype), jnp.where(first, 0, sd).astype(dtype)
    mubis1 = jnp.where(first, 0, mubis1).astype(dtype)
    psibar1 = sd * eta                    # ψ̄_{k−1}
    mubar = -cd * eta                     # μ̄_k
    # Forward substitution L_k t_k = z_k (rows k−2, k−1, k change).
    tau2 = jnp.where(second, 0, _safe_div(s.num2, mu2)).astype(dtype)
    num1 = s.xi1 - psi2 * tau2
    tau1 = jnp.where(first, 0, _safe_div(num1, mubis1)).astype(dtype)
    xi = zeta - rho2 * tau2
    tau = _safe_div(xi - psibar1 * tau1, mubar)
    # Columns of W_k = V_k P_kᵀ; column k−2 is final and enters x.
    w2 = _lin(cp, s.w1, sp, s.v)
    aux = _lin(sp, s.w1, -cp, s.v)
    w1_n = _lin(cd, s.w, sd, aux)
    w_n = _lin(sd, s.w, -cd, aux)
    x = _lin(scalar(1.0), s.x, tau2, w2)
    # Norm estimates and stopping tests.
    col = jnp.sqrt(jnp.where(first, 0, s.beta) ** 2 + alpha ** 2 + beta_n ** 2)
    anorm = jnp.maximum(s.anorm, col)
    pivots = jnp.stack([jnp.where(second, jnp.abs(mubar), mu2),
                        jnp.where(first, jnp.abs(mubar), mubis1), jnp.abs(mubar)])
    mu_max = jnp.maximum(s.mu_max, jnp.max(pivots))
    mu_min = jnp.minimum(s.mu_min, jnp.min(pivots))
    rnorm = jnp.abs(zetabar_n)
    rnorm_prev = jnp.abs(s.zetabar)
    arnorm = rnorm_prev * jnp.sqrt(lbar ** 2 + (s.c1 * beta_n) ** 2)
    solved = rnorm <= rtol * beta1
    lsq = arnorm <= rtol * anorm * rnorm_prev
    # Krylov space exhausted: β_{k+1} ≈ 0, or a (near) null vector of A − σI entered
    # it (μ̄_k ≈ 0: then A p(A) b ≈ 0 for a polynomial p of degree < k), or k = n.
    exhausted = (beta_n <= tiny * anorm) | (jnp.abs(mubar) <= rank_tol * anorm) | (k >= dim)
    flag = jnp.select([solved, lsq, exhausted, k >= maxiter], [1, 2, 3, 4], -1)
    return _QLPState(
        k=k, flag=flag, v_prev=s.v, v=v_next, beta=beta_n, c1=c, s1=sn, c2=s.c1, s2=s.s1,
        zetabar=zetabar_n, mubis2=mubis1, psibar2=psibar1, mubar1=mubar, xi1=xi, num2=num1,
        w1=w1_n, w=w_n, x=x, tau1=tau1, tau=tau, mubar=mubar, anorm=anorm, mu_max=mu_max,
        mu_min=mu_min, rnorm=rnorm, arnorm=arnorm)

  s = jax.lax.while_loop(lambda s: s.flag < 0, body, state)
  drop = jnp.abs(s.mubar) <= rank_tol * s.anorm
  tau = jnp.where(drop, 0, s.tau).astype(dtype)
  x = _lin(scalar(1.0), s.x, s.tau1, s.w1)
  x = _lin(scalar(1.0), x, tau, s.w)
  info = MinresInfo(iterations=s.k, flag=s.flag, residual_norm=s.rnorm,
                    ls_residual_norm=s.arnorm, a_norm=s.anorm,
                    a_cond=s.mu_max / s.mu_min)
  return x, info
