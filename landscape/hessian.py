"""Hessian probes of a dataset-mean loss: HVP, Lanczos spectra, trace, spectral density.

Every probe sees the Hessian as an operator ``v -> H v`` on parameter pytrees
(forward-over-reverse, never formed), of the mean loss over *all* samples of
``data`` (DESIGN §3), accumulated batch by batch inside one compiled function.

  hvp, hvp_fn               Hessian-vector products (Pearlmutter 1994)
  lanczos, tridiagonal      the Krylov primitive (from :mod:`landscape.linalg`, re-exported)
  eigenvalues               extreme eigenpairs with an early stop on the Ritz residuals
  extreme_eigenvalues_fn    a pure ``(params, key) -> (λ_max, λ_min)`` for curvature maps
  trace                     Hutchinson and Hutch++ trace estimators
  density, negative_fraction  stochastic Lanczos quadrature of the spectral density

The probes are thin compositions of the matvec-level algorithms of
:mod:`landscape.linalg` (Lanczos, Ritz pairs, SLQ quadrature, Hutchinson/Hutch++)
with the HVP operator; this module adds the defaults and results, and the argument
checks of :mod:`landscape._validate`. Grid-level curvature maps (``curvature_map``,
still importable from here) live in :mod:`landscape.curvature`.
A Krylov basis of ``m`` vectors is stored as a pytree like ``params`` whose leaves
have a leading ``(m,)`` axis, so memory is ``m`` times the parameter count.
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
from jaxtyping import Array, Float, PRNGKeyArray

from landscape import _progress, _validate, linalg, operators
from landscape.batching import batched_mean, check_batch_size, num_samples
from landscape.errors import ConfigError, ProbeError
# The matvec-level algorithms live in landscape.linalg; re-exported here, where they were.
from landscape.linalg import WHICH, lanczos, tridiagonal  # noqa: F401
from landscape.linalg import num_params, random_tree

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]

TRACE_METHODS = ("hutchinson", "hutch++")


# --------------------------------------------------------------------------- HVP

def hvp(loss_fn: LossFn, params: PyTree, v: PyTree, data: PyTree = None, *,
        batch_size: int | None = None) -> PyTree:
  """Hessian-vector product of the dataset-mean loss, forward-over-reverse.

  Computes ``H v`` with ``H = ∇²_θ (1/N) Σ_i ℓ(θ; z_i)`` as
  ``jvp(grad(loss_fn), (θ,), (v,))`` per batch, weighted by batch size, so the
  result is that of the full-dataset mean (not the sum over batches).

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``, the mean loss over ``batch``.
    params: parameter pytree θ.
    v: pytree with the structure, shapes and dtypes of ``params``.
    data: pytree of arrays with a leading sample axis, or ``None``.
    batch_size: samples per batch inside the computation (``None``: all at once).

  Returns:
    ``H v`` as a pytree like ``params``.

  Example:
    >>> hv = hvp(lambda p, _: (p ** 4).sum(), jnp.ones(3), jnp.ones(3))  # 12 * ones

  References:
    Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 1994.
  """
  return hvp_fn(loss_fn, data, batch_size=batch_size)(params, v)


def hvp_fn(loss_fn: LossFn, data: PyTree = None, *, batch_size: int | None = None,
           method: str = "fwd-rev") -> Callable[[PyTree, PyTree], PyTree]:
  """``(params, v) -> H(params) v`` for the dataset-mean loss; traceable (jit/vmap-safe).

  ``method``: ``"fwd-rev"`` (forward-over-reverse, ``jvp`` of the gradient) or
  ``"rev-fwd"`` (reverse-over-forward, the gradient of the directional derivative);
  the same product. For a gradient linearized once and applied to many vectors see
  :func:`linearized_hvp`; ``scripts/bench_hessian.py`` measures all three.
  """
  return operators.matvec_fn(loss_fn, data, operator="hessian", batch_size=batch_size,
                             method=method)


@functools.partial(jax.jit, static_argnames=("loss_fn", "batch_size"))
def _mean_grad(loss_fn: LossFn, params: PyTree, data: PyTree, batch_size: int | None) -> PyTree:
  return batched_mean(lambda b: jax.grad(loss_fn)(params, b), data, batch_size)


def linearized_hvp(loss_fn: LossFn, params: PyTree, data: PyTree = None, *,
                   batch_size: int | None = None) -> jax.tree_util.Partial:
  """``v -> H v`` at fixed ``params``, the gradient linearized once (``jax.linearize``).

  The forward and backward passes at ``params`` run once and their residuals (the
  activations and what the backward pass needs of them, for all samples of ``data``)
  are kept; each product then costs about one gradient instead of ~1.3–1.5
  (measured in ``scripts/bench_hessian.py``). Memory: :func:`linearized_bytes`. The
  result is a :class:`jax.tree_util.Partial`, a pytree that can be passed into
  compiled functions as an argument.
  """
  _, lin = jax.linearize(lambda p: _mean_grad(loss_fn, p, data, batch_size), params)
  return lin


def linearized_bytes(loss_fn: LossFn, params: PyTree, data: PyTree = None, *,
                     batch_size: int | None = None, operator: str = "hessian") -> int:
  """Bytes :func:`linearized_hvp` keeps (its residuals), from an abstract trace only
  (``operator``: of :func:`landscape.operators.linearized_matvec` instead)."""
  def residuals(p, d):
    if operator == "hessian":
      return jax.tree.leaves(jax.linearize(lambda q: _mean_grad(loss_fn, q, d, batch_size), p)[1])
    return jax.tree.leaves(operators.linearized_matvec(loss_fn, p, d, operator=operator,
                                                       batch_size=batch_size))
  leaves = jax.eval_shape(residuals, params, data)
  return int(sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in leaves))


HVP_METHODS = ("auto", "fwd-rev", "rev-fwd", "linearize")
#: ``hvp="auto"`` linearizes when the residuals take at most this fraction of the
#: available memory (and at most LINEARIZE_MAX_BYTES); else forward-over-reverse.
LINEARIZE_MEMORY_FRACTION = 0.25
LINEARIZE_MAX_BYTES = 4 << 30


@dataclasses.dataclass(frozen=True)
class _Apply:
  """``apply(args, v) -> A v``: hashable, the static part of a compiled Lanczos step."""
  loss_fn: LossFn
  batch_size: int | None
  method: str
  operator: str = "hessian"

  def __call__(self, args: Any, v: PyTree) -> PyTree:
    if self.method == "linearize":
      return args(v)
    params, data = args
    return operators.matvec_fn(self.loss_fn, data, operator=self.operator,
                               batch_size=self.batch_size, method=self.method)(params, v)


def _operator(loss_fn: LossFn, params: PyTree, data: PyTree, batch_size: int | None,
              method: str, operator: str = "hessian") -> tuple[_Apply, Any]:
  """The product ``v -> A v`` of ``operator`` at ``params`` as ``(apply, args)`` for
  :func:`landscape.linalg.driven_lanczos`."""
  _validate.choice("hvp", method, HVP_METHODS)
  operators.require_split(loss_fn, operator)
  if method == "auto":
    from landscape import _guards
    budget = min(LINEARIZE_MAX_BYTES, LINEARIZE_MEMORY_FRACTION * _guards.available_memory())
    fits = linearized_bytes(loss_fn, params, data, batch_size=batch_size,
                            operator=operator) <= budget
    method = "linearize" if fits else "fwd-rev"
  apply = _Apply(loss_fn, batch_size, method, operator)
  if method == "linearize":
    if operator == "hessian":
      return apply, linearized_hvp(loss_fn, params, data, batch_size=batch_size)
    return apply, operators.linearized_matvec(loss_fn, params, data, operator=operator,
                                              batch_size=batch_size)
  return apply, (params, data)


# -------------------------------------------------------------------- eigenvalues

class Eigen(NamedTuple):
  """Extreme Ritz pairs of the Hessian.

  Attributes:
    values: ``(k,)`` eigenvalue estimates; ``largest``: descending,
      ``smallest``: ascending (most negative first).
    vectors: unit Ritz vectors as a pytree like ``params`` whose leaves have a
      leading ``(k,)`` axis (row ``i`` belongs to ``values[i]``), or ``None``.
    num_hvps: Hessian-vector products used (= Lanczos steps run; the finiteness
      check at the probe point costs one more gradient, not counted).
    residuals: ``(k,)`` Ritz residual norms ``‖H y_i − θ_i y_i‖ = |β_n s_{n,i}|``;
      ``|θ_i − λ| ≤ residuals[i]`` for some eigenvalue λ, so
      ``residuals / |values|`` bounds the relative error.
  """
  values: Float[Array, "k"]
  vectors: PyTree | None
  num_hvps: int
  residuals: Float[Array, "k"]


@functools.partial(jax.jit, static_argnames=("loss_fn", "batch_size"))
def _loss_and_grad_norm(loss_fn: LossFn, params: PyTree, data: PyTree, batch_size: int | None):
  loss, grad = batched_mean(lambda b: jax.value_and_grad(loss_fn)(params, b), data, batch_size)
  return loss, optax.tree.norm(grad)


def _check_probe_point(loss_fn: LossFn, params: PyTree, data: PyTree,
                       batch_size: int | None) -> None:
  """Raise ProbeError unless the loss and its gradient are finite at ``params``."""
  loss, grad_norm = _loss_and_grad_norm(loss_fn, params, data, batch_size)
  loss, grad_norm = float(loss), float(grad_norm)
  if not math.isfinite(loss):
    raise ProbeError(f"loss is {loss} at the probe point; probe a finite point "
                     "(check the checkpoint for diverged weights and the data for nan/inf)")
  if not math.isfinite(grad_norm):
    raise ProbeError(f"gradient norm is {grad_norm} at the probe point (loss {loss:.6g}); "
                     "probe a point where the loss is differentiable and finite")


def _prepare(loss_fn: LossFn, params: PyTree, data: PyTree, key: Any,
             batch_size: int | None, operator: str = "hessian") -> tuple[LossFn, int]:
  """Validate the common probe arguments; return a hashable ``loss_fn`` and the dimension."""
  loss_fn = _validate.loss_callable(loss_fn)
  operators.require_split(loss_fn, operator)
  _validate.param_tree(params)
  _validate.prng_key(key)
  check_batch_size(batch_size)
  if data is not None:
    num_samples(data)  # raises DataError for leaves without a common sample axis
  _check_probe_point(loss_fn, params, data, batch_size)
  return loss_fn, num_params(params)


def _default_num_steps(k: int, dim: int) -> int:
  """The default Lanczos cap ``min(dim, max(2k + 60, 80))`` of :func:`eigenvalues`."""
  return min(dim, max(2 * k + 60, 80))


def eigenvalues(loss_fn: LossFn, params: PyTree, data: PyTree = None, *, k: int = 1,
                which: str = "largest", key: PRNGKeyArray, num_steps: int | None = None,
                tol: float = 1e-6, batch_size: int | None = None,
                return_vectors: bool = False, hvp: str = "auto",
                operator: str = "hessian") -> Eigen | tuple[Eigen, Eigen]:
  """Extreme eigenvalues (and eigenvectors) of the dataset-mean Hessian by Lanczos.

  Runs :func:`lanczos` on ``v -> H v`` from a Gaussian start drawn with ``key``,
  with full reorthogonalization, one compiled call per step driven from the host
  (:func:`landscape.linalg.driven_lanczos`: convolution gradients inside XLA CPU
  loops run 40–100x slower than at top level). After
  every step ``n`` the tridiagonal ``T_n = S diag(θ) Sᵀ`` is diagonalized (it is
  tiny) and the Ritz pairs ``(θ_i, y_i = V_n s_i)`` have residuals

      ‖H y_i − θ_i y_i‖ = |β_n s_{n,i}|,

  and ``|θ_i − λ| ≤ |β_n s_{n,i}|`` for some eigenvalue ``λ`` of ``H``. The loop
  stops once the ``k`` wanted pairs satisfy ``r_i ≤ max(tol·|θ_i|, eps·max|θ|)``
  (the floor is the precision limit for eigenvalues at 0) or after ``num_steps``
  steps; ``tol=0`` always runs ``num_steps``. Eigenvalues are algebraic:
  ``smallest`` means most negative. A small residual certifies that each value
  is an eigenvalue to that accuracy, not that no more extreme one was missed;
  that needs a start vector with a tiny component along its eigenvector
  (improbable for a Gaussian start; a second ``key`` exposes it), and
  single-vector Lanczos sees one copy of a repeated eigenvalue.

  Choosing ``num_steps`` (default ``min(dim, max(2k + 60, 80))``, a cap: the
  loop usually stops much earlier): well-separated extremes converge in tens of
  steps; clustered ones (the smallest of a Hessian with a large near-zero bulk)
  need more; read ``residuals``. Memory is ``num_steps`` copies of ``params``.
  The stopping rule certifies residuals, and eigenvalue errors are then of
  order ``r²/gap``, far below ``tol·|θ|``: measured on a 99-parameter MLP
  (float64), ``k=5, tol=1e-3`` stopped after 21–22 HVPs with relative errors
  ≤ 2e-6, where PyHessian-style power iteration with deflation (its tol 1e-3)
  used 67–93 HVPs and reached relative errors up to 5e-2.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss over ``batch``.
    params: parameter pytree θ (floating point).
    data: pytree of arrays with a leading sample axis, or ``None``.
    k: number of eigenpairs per end, ``1 ≤ k ≤ dim``.
    which: ``"largest"``, ``"smallest"`` or ``"both"`` (one shared Lanczos run).
    key: PRNG key for the Gaussian start vector.
    num_steps: maximal number of Lanczos steps = HVPs; ``k ≤ num_steps``;
      clipped to ``dim``.
    tol: relative residual tolerance of the early stop.
    batch_size: data samples per batch inside the HVP (``None``: all at once).
    return_vectors: also return the unit Ritz vectors.
    hvp: how products are formed: ``"fwd-rev"``, ``"rev-fwd"``, ``"linearize"`` (the
      gradient linearized once, :func:`linearized_hvp`) or ``"auto"`` (linearize when
      its residuals fit in a quarter of the free memory, else ``"fwd-rev"``).
    operator: ``"hessian"``, or ``"ggn"``, ``"fisher"``, ``"residual"`` of a
      :class:`landscape.operators.SplitLoss` (:mod:`landscape.operators`).

  Returns:
    :class:`Eigen` (``values`` ``(k,)``, ``vectors`` with leaves ``(k, …)`` or
    ``None``, ``num_hvps``, ``residuals`` ``(k,)``); for ``which="both"`` a
    tuple ``(largest, smallest)`` of two :class:`Eigen` from the same run (both
    report that run's ``num_hvps``).

  Example:
    >>> top = eigenvalues(loss_fn, params, (x, y), k=5, key=jax.random.key(0))
    >>> top.values, top.num_hvps

  References:
    Lanczos, J. Res. Nat. Bur. Standards 1950.
    Parlett, "The Symmetric Eigenvalue Problem", SIAM, 1998, ch. 11–13.
    Ghorbani, Krishnan & Xiao, "An investigation into neural net optimization via
    Hessian eigenvalue density", ICML 2019.
  """
  _validate.choice("which", which, WHICH)
  dim = num_params(_validate.param_tree(params))
  k = _validate.integer("k", k, low=1, fix="pass k=1 or more")
  if k > dim:
    raise ConfigError(f"k={k} exceeds the number of parameters ({dim}); pass k <= {dim}")
  if num_steps is None:
    num_steps = _default_num_steps(k, dim)
  num_steps = _validate.integer("num_steps", num_steps, low=1, fix=f"pass num_steps >= k ({k})")
  if num_steps < k:
    raise ConfigError(f"num_steps={num_steps} is smaller than k={k}; pass num_steps >= {k}")
  tol = _validate.positive("tol", tol, zero=True, fix="pass e.g. tol=1e-6")
  loss_fn, _ = _prepare(loss_fn, params, data, key, batch_size, operator)
  apply, args = _operator(loss_fn, params, data, batch_size, hvp, operator)
  steps = min(num_steps, dim)
  with _progress.progress(steps, "steps", f"{operators.TITLES[operator]} eigenvalues ({which}, Lanczos)",
                          cap=tol > 0) as progress:
    run = linalg.driven_lanczos(apply, args, random_tree(key, params), steps, tol=tol, k=k,
                                which=which, on_step=progress.set)
    out = linalg.krylov_pairs(run, k=k, which=which, return_vectors=bool(return_vectors))
  results = tuple(Eigen(r.values, r.vectors, run.num_steps, r.residuals) for r in out)
  return results if which == "both" else results[0]


def extreme_eigenvalues_fn(loss_fn: LossFn, data: PyTree = None, *, num_steps: int = 20,
                           batch_size: int | None = None, operator: str = "hessian"
                           ) -> Callable[[PyTree, PRNGKeyArray],
                                         tuple[Float[Array, ""], Float[Array, ""]]]:
  """A pure ``(params, key) -> (λ_max, λ_min)`` for per-point curvature maps.

  One Lanczos run of ``num_steps`` steps (clipped to the parameter count) from
  a Gaussian start drawn with ``key``; the largest and smallest Ritz values of
  ``T`` estimate ``λ_max`` and ``λ_min``. The extremes of the spectrum converge
  first and fastest in Lanczos (Kaniel–Paige–Saad bounds: the error falls like
  a Chebyshev polynomial of the relative gap), so a few tens of steps suffice
  where the extremes are separated; both are ≤ ``|λ|`` in magnitude, i.e. Ritz
  values lie inside ``[λ_min, λ_max]``. The ratio ``|λ_min / λ_max|`` over a
  grid is the convexity map of Li et al. (2018), Fig. 7. No checks and no
  early stop: it can be jitted, vmapped or ``lax.map``-ed over many points
  (fixed shapes, ``num_steps`` HVPs per point).

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss over ``batch``.
    data: pytree of arrays with a leading sample axis, or ``None``.
    num_steps: Lanczos steps = HVPs per point.
    batch_size: data samples per batch inside the HVP.
    operator: the curvature matrix (:mod:`landscape.operators`).

  Returns:
    ``f(params, key) -> (max_eig, min_eig)``, two scalars.

  Example:
    >>> f = extreme_eigenvalues_fn(loss_fn, (x, y), num_steps=20)
    >>> lmax, lmin = jax.jit(jax.vmap(f))(stacked_params, jax.random.split(key, n))

  References:
    Li, Xu, Taylor, Studer & Goldstein, "Visualizing the loss landscape of neural
    nets", NeurIPS 2018.
    Saad, "On the rates of convergence of the Lanczos and the block-Lanczos
    methods", SIAM J. Numer. Anal. 1980.
  """
  matvec_at = operators.matvec_fn(loss_fn, data, operator=operator, batch_size=batch_size)

  def extremes(params: PyTree, key: PRNGKeyArray) -> tuple[jax.Array, jax.Array]:
    steps = min(num_steps, num_params(params))
    alphas, betas, _ = lanczos(functools.partial(matvec_at, params),
                               random_tree(key, params), steps)
    theta = jnp.linalg.eigvalsh(tridiagonal(alphas, betas))
    return theta[-1], theta[0]

  return extremes


# -------------------------------------------------------------------------- trace

@functools.partial(jax.jit, static_argnames=("loss_fn", "num_samples", "method", "batch_size",
                                             "probe_chunk", "report", "operator"))
def _trace_impl(loss_fn, params, data, key, *, num_samples, method, batch_size, probe_chunk,
                report=False, operator="hessian"):
  matvec = functools.partial(operators.matvec_fn(loss_fn, data, operator=operator,
                                                 batch_size=batch_size), params)
  estimator = linalg.hutchinson if method == "hutchinson" else linalg.hutchpp
  return estimator(matvec, params, key, num_samples, probe_chunk=probe_chunk, report=report)


def trace(loss_fn: LossFn, params: PyTree, data: PyTree = None, *, key: PRNGKeyArray,
          num_samples: int = 100, method: str = "hutchinson", batch_size: int | None = None,
          probe_chunk: int | None = None, operator: str = "hessian"
          ) -> tuple[Float[Array, ""], Float[Array, ""]]:
  """Stochastic estimate of the Hessian trace and its standard error.

  ``hutchinson``: with Rademacher probes ``z_1 … z_m`` (entries ±1),
  ``E[zᵀ H z] = tr H``, so ``tr H ≈ (1/m) Σ_j z_jᵀ H z_j`` with standard error
  ``std_j(z_jᵀ H z_j) / √m`` (sample std, ddof 1); the variance is
  ``2 Σ_{i≠j} H_ij²``, i.e. ~``2‖H‖_F²``.

  ``hutch++``: the ``m`` HVPs split in thirds. ``s = ⌊m/3⌋`` sketch HVPs
  ``Y = H S``, ``Q = orth(Y)`` (QR of the ``n × s`` matrix), ``s`` more for the
  exact ``tr(Qᵀ H Q)``, and Hutchinson with the remaining ``g = m − 2s`` probes
  on the deflated ``(I − QQᵀ) H (I − QQᵀ)``:

      tr H = tr(Qᵀ H Q) + tr((I − QQᵀ) H (I − QQᵀ)).

  Unbiased; the standard error is that of the deflated Hutchinson part (given
  ``Q``). When the spectrum decays (a few large outliers, as in neural-net
  Hessians) the deflated part has a far smaller Frobenius norm and Hutch++
  needs O(1/ε) instead of O(1/ε²) HVPs for relative error ε.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss over ``batch``.
    params: parameter pytree θ.
    data: pytree of arrays with a leading sample axis, or ``None``.
    key: PRNG key of the probes.
    num_samples: total HVPs ``m`` (≥ 2 for hutchinson, ≥ 4 for hutch++).
    method: ``"hutchinson"`` or ``"hutch++"``.
    batch_size: data samples per batch inside the HVP.
    probe_chunk: probes evaluated together (``lax.map`` batch size); ``None``
      vmaps all of them at once (fastest, memory grows with ``num_samples``).
    operator: the curvature matrix (:mod:`landscape.operators`).

  Returns:
    ``(estimate, stderr)``, two scalars.

  Example:
    >>> tr, se = trace(loss_fn, params, (x, y), key=jax.random.key(0), method="hutch++")

  References:
    Hutchinson, "A stochastic estimator of the trace of the influence matrix for
    Laplacian smoothing splines", Comm. Statist. Simulation Comput. 1990.
    Meyer, Musco, Musco & Woodruff, "Hutch++: optimal stochastic trace
    estimation", SOSA 2021.
    Yao, Gholami, Keutzer & Mahoney, "PyHessian: neural networks through the lens
    of the Hessian", IEEE BigData 2020.
  """
  _validate.choice("trace method", method, TRACE_METHODS)
  low = 2 if method == "hutchinson" else 4
  num_samples = _validate.integer(
      "num_samples", num_samples, low=low,
      fix=f"{method} needs at least {low} HVPs for an estimate with a standard error")
  if probe_chunk is not None:
    _validate.integer("probe_chunk", probe_chunk, low=1, fix="pass a positive chunk size or None")
  loss_fn, _ = _prepare(loss_fn, params, data, key, batch_size, operator)
  with _progress.progress(num_samples, "HVPs", f"{operators.TITLES[operator]} trace ({method})",
                          ticks=True) as progress:
    return jax.block_until_ready(_trace_impl(
        loss_fn, params, data, key, num_samples=num_samples, method=method,
        batch_size=batch_size, probe_chunk=probe_chunk, report=progress.enabled,
        operator=operator))


# ------------------------------------------------------------------------ density

class Density(NamedTuple):
  """A smoothed spectral density from stochastic Lanczos quadrature.

  Attributes:
    grid: ``(grid_size,)`` eigenvalue axis.
    density: ``(grid_size,)`` density values; trapezoid integral over ``grid`` is 1.
    ritz_values: ``(num_runs, num_steps)`` Gauss quadrature nodes θ.
    weights: ``(num_runs, num_steps)`` quadrature weights (squared first
      components of T's eigenvectors); each run's weights sum to 1.
    num_hvps: Hessian-vector products used (``num_runs · num_steps``).
  """
  grid: Float[Array, "grid_size"]
  density: Float[Array, "grid_size"]
  ritz_values: Float[Array, "num_runs num_steps"]
  weights: Float[Array, "num_runs num_steps"]
  num_hvps: int


def density(loss_fn: LossFn, params: PyTree, data: PyTree = None, *, key: PRNGKeyArray,
            num_runs: int = 4, num_steps: int = 40, grid_size: int = 1000,
            sigma: float | None = None, batch_size: int | None = None,
            margin: float | None = None, hvp: str = "auto", operator: str = "hessian") -> Density:
  """Spectral density of the Hessian by stochastic Lanczos quadrature (SLQ).

  The spectral density ``φ(t) = (1/n) Σ_i δ(t − λ_i)`` smoothed with a
  Gaussian ``g_σ`` is ``(1/n) tr g_σ(t − H) = E_v[vᵀ g_σ(t − H) v]`` for probes
  with ``E[v vᵀ] = I/n``. For each of ``num_runs`` normalized Rademacher
  probes, ``num_steps`` Lanczos steps give ``T = S diag(θ) Sᵀ`` and the Gauss
  quadrature ``vᵀ f(H) v ≈ Σ_i τ_i f(θ_i)`` with ``τ_i = S_{1i}²`` (exact for
  polynomials of degree < 2·num_steps). Then

      φ_σ(t) ≈ (1/R) Σ_r Σ_i τ_{r,i} g_σ(t − θ_{r,i}),

  evaluated on ``grid_size`` points over ``[θ_min − margin, θ_max + margin]``
  and renormalized so its trapezoid integral on the grid is 1.
  Defaults: ``sigma = (θ_max − θ_min) / 100`` (1 % of the spectral width;
  PyHessian uses variance ``1e-5 × width``, which on a wide spectrum resolves
  only the outliers), ``margin = 5 σ`` (the Gaussian tails of the extreme
  nodes stay on the grid). Steps beyond the parameter count are clipped.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss over ``batch``.
    params: parameter pytree θ.
    data: pytree of arrays with a leading sample axis, or ``None``.
    key: PRNG key of the probes.
    num_runs: independent probes ``R`` (run one after the other, each a host-driven
      Lanczos run sharing one compiled step; memory ``num_steps`` parameter copies).
      Variance falls like ``1/(R n)``.
    num_steps: Lanczos steps per run.
    grid_size: number of grid points.
    sigma: kernel standard deviation (``None``: see above).
    batch_size: data samples per batch inside the HVP.
    margin: grid extension beyond the extreme Ritz values (``None``: ``5 σ``).
    hvp: how products are formed (see :func:`eigenvalues`).
    operator: the curvature matrix (:mod:`landscape.operators`).

  Returns:
    :class:`Density`.

  Example:
    >>> d = density(loss_fn, params, (x, y), key=jax.random.key(0))
    >>> negative_fraction(d)

  References:
    Lin, Saad & Yang, "Approximating spectral densities of large matrices",
    SIAM Review 2016.
    Ghorbani, Krishnan & Xiao, "An investigation into neural net optimization via
    Hessian eigenvalue density", ICML 2019.
    Yao, Gholami, Keutzer & Mahoney, "PyHessian: neural networks through the lens
    of the Hessian", IEEE BigData 2020.
  """
  num_runs = _validate.integer("num_runs", num_runs, low=1, fix="pass e.g. num_runs=4")
  num_steps = _validate.integer("num_steps", num_steps, low=1, fix="pass e.g. num_steps=40")
  grid_size = _validate.integer("grid_size", grid_size, low=2, fix="pass e.g. grid_size=1000")
  sigma = _validate.positive("sigma", sigma, optional=True, fix="pass sigma=None for the default")
  margin = _validate.positive("margin", margin, zero=True, optional=True,
                              fix="pass margin=None for the default")
  loss_fn, dim = _prepare(loss_fn, params, data, key, batch_size, operator)
  apply, args = _operator(loss_fn, params, data, batch_size, hvp, operator)
  steps = min(num_steps, dim)
  with _progress.progress(num_runs * steps, "HVPs",
                          f"spectral density (SLQ, {num_runs} runs)") as progress:
    nodes = []
    for r, k in enumerate(jax.random.split(key, num_runs)):
      run = linalg.driven_lanczos(apply, args, random_tree(k, params, "rademacher"), steps,
                                  on_step=lambda j, r=r: progress.set(r * steps + j))
      nodes.append(linalg.krylov_quadrature(run))
  dtype = linalg.tree_dtype(params)
  theta, tau = (jnp.asarray(np.stack(x), dtype) for x in zip(*nodes))
  grid, phi = linalg.smoothed_density(theta, tau, sigma, margin, grid_size=grid_size)
  return Density(grid, phi, theta, tau, num_runs * steps)


def negative_fraction(density_result: Density, threshold: float = 0.0) -> float:
  """SLQ estimate of the fraction of Hessian eigenvalues below ``threshold``.

  ``(1/R) Σ_r Σ_i τ_{r,i} [θ_{r,i} < threshold]``, the quadrature of the step
  function ``1[t < threshold]`` (no smoothing). Its standard deviation over
  probes is about ``√(2 f (1 − f) / (R n))`` for a true fraction ``f`` and
  ``n`` parameters, plus the quadrature error of a discontinuous function
  (≈ the weight of the Ritz node nearest the threshold).

  Args:
    density_result: a :class:`Density` from :func:`density`.
    threshold: eigenvalue cut (0: negative eigenvalues).

  Returns:
    A Python float in ``[0, 1]``.

  Example:
    >>> negative_fraction(density(loss_fn, params, (x, y), key=key))  # e.g. 0.12

  References:
    Ghorbani, Krishnan & Xiao, ICML 2019 (the negative-eigenvalue mass, §4).
  """
  below = np.asarray(density_result.ritz_values) < threshold
  weights = np.asarray(density_result.weights)
  return float(np.mean(np.sum(np.where(below, weights, 0.0), axis=-1)))


# ------------------------------------------------------------- shared probes

@jax.jit
def _norm2(tree: PyTree) -> jax.Array:
  return optax.tree.vdot(tree, tree)


class Probes(NamedTuple):
  """Eigenvalues, trace and density at one point from Lanczos runs that share their work.

  Attributes:
    eigen: one :class:`Eigen` per wanted end (``which="both"``: largest, smallest).
    trace: ``(estimate, stderr)`` or ``None``.
    trace_hvps: HVPs spent on the trace alone (the rest is reused).
    density: :class:`Density` or ``None``; its first run is the eigenvalue run.
    num_hvps: all Hessian-vector products (each product counted once).
    hvp: the HVP method used (``"linearize"``, ``"fwd-rev"``, ``"rev-fwd"``).
  """
  eigen: tuple[Eigen, ...]
  trace: tuple[jax.Array, jax.Array] | None
  trace_hvps: int
  density: Density | None
  num_hvps: int
  hvp: str


def probes(loss_fn: LossFn, params: PyTree, data: PyTree = None, *, key: PRNGKeyArray,
           k: int = 5, which: str = "both", num_steps: int | None = None, tol: float = 1e-6,
           trace: bool = True, trace_method: str = "hutch++", trace_samples: int = 30,
           density: bool = True, density_runs: int = 4, density_steps: int = 30,
           grid_size: int = 1000, batch_size: int | None = None, hvp: str = "auto",
           operator: str = "hessian") -> Probes:
  """The extreme eigenvalues, the trace and the spectral density at one point, sharing work.

  One HVP operator (linearized once where it fits, :func:`linearized_hvp`) and one
  compiled Lanczos step serve every probe (:func:`landscape.linalg.driven_lanczos`):

  1. **Eigenvalues**: the Lanczos run of :func:`eigenvalues` (Gaussian start, early
     stop at ``tol``, at most ``num_steps`` steps).
  2. **Density** (SLQ): that run is the first of the ``density_runs`` samples (a unit
     Gaussian start is isotropic, ``E[v vᵀ] = I/n``, like a normalized Rademacher
     one); it is continued to ``density_steps`` steps if it stopped earlier, and its
     quadrature uses all its steps (more nodes, exact to a higher degree). The other
     ``density_runs − 1`` runs start from Rademacher vectors, ``density_steps`` each.
     ``ritz_values``/``weights`` are padded to the longest run with weight-0 nodes.
  3. **Trace**. ``hutch++`` becomes the Krylov-aware estimator: the eigenvalue run's
     basis ``Q`` (``n`` vectors) is the sketch, ``tr(QᵀHQ) = Σ α_i`` exactly (no HVP),
     and the deflated remainder ``tr((I − QQᵀ) H (I − QQᵀ))`` is Hutchinson's estimate
     from ``g = m − 2⌊m/3⌋`` Rademacher probes (``m = trace_samples``, as many as
     Hutch++ spends on its remainder). The SLQ runs' start vectors are such probes
     for free (:func:`landscape.linalg.deflated_quadratic`); the rest cost one HVP
     each. Unbiased given ``Q`` (the probes are independent of it); the standard
     error is that of the deflated part. A Lanczos sketch of ``n`` steps captures the
     top of the spectrum far better than Hutch++'s ``⌊m/3⌋`` random products, so the
     error is smaller for fewer HVPs (Chen & Hallman 2023). ``hutchinson``: plain
     Hutchinson with ``m`` probes, the SLQ starts among them (``zᵀHz = n·α₀``).

  Args:
    loss_fn, params, data, key, k, which, num_steps, tol, batch_size, hvp, operator: as
      :func:`eigenvalues`.
    trace, trace_method, trace_samples: whether and how to estimate the trace.
    density, density_runs, density_steps, grid_size: the SLQ density (as :func:`density`).

  Returns:
    :class:`Probes`.

  Example:
    >>> p = probes(loss_fn, params, (x, y), key=jax.random.key(0))
    >>> p.eigen[0].values, p.trace, negative_fraction(p.density), p.num_hvps

  References:
    Meyer, Musco, Musco & Woodruff, "Hutch++: optimal stochastic trace estimation",
    SOSA 2021.
    Chen & Hallman, "Krylov-aware stochastic trace estimation", SIAM J. Matrix Anal.
    Appl. 2023.
    Lin, Saad & Yang, "Approximating spectral densities of large matrices", SIAM
    Review 2016.
  """
  _validate.choice("which", which, WHICH)
  _validate.choice("trace method", trace_method, TRACE_METHODS)
  dim = num_params(_validate.param_tree(params))
  k = _validate.integer("k", k, low=1, fix="pass k=1 or more")
  if k > dim:
    raise ConfigError(f"k={k} exceeds the number of parameters ({dim}); pass k <= {dim}")
  cap = _default_num_steps(k, dim) if num_steps is None else _validate.integer(
      "num_steps", num_steps, low=k, fix=f"pass num_steps >= k ({k})")
  tol = _validate.positive("tol", tol, zero=True, fix="pass e.g. tol=1e-6")
  runs = _validate.integer("density_runs", density_runs, low=1, fix="pass e.g. density_runs=4")
  dsteps = min(dim, _validate.integer("density_steps", density_steps, low=1,
                                      fix="pass e.g. density_steps=30"))
  low = 2 if trace_method == "hutchinson" else 4
  samples = _validate.integer("trace_samples", trace_samples, low=low,
                              fix=f"{trace_method} needs at least {low} HVPs")
  loss_fn, _ = _prepare(loss_fn, params, data, key, batch_size, operator)
  apply, args = _operator(loss_fn, params, data, batch_size, hvp, operator)
  cap = min(cap, dim)
  size = max(cap, dsteps if density else 0)
  extra_runs = runs - 1 if density else 0
  free = extra_runs if trace else 0
  wanted = (samples - 2 * (samples // 3) if trace_method == "hutch++" else samples) if trace else 0
  probes_left = max(0, wanted - free)
  total = cap + extra_runs * dsteps + probes_left
  slq_key, trace_key = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
  slq_starts = jax.random.split(slq_key, max(extra_runs, 1))[:extra_runs]
  with _progress.progress(total, "HVPs", f"{operators.TITLES[operator]} probes (Lanczos {which}, "
                          f"{runs if density else 0} SLQ runs, {trace_method if trace else 'no'}"
                          " trace)", cap=tol > 0) as bar:
    done = 0

    def tick(j):
      bar.set(done + j)

    first = linalg.driven_lanczos(apply, args, random_tree(key, params), size, steps=cap,
                                  tol=tol, k=k, which=which, on_step=tick)
    pairs = linalg.krylov_pairs(first, k=k, which=which)
    eigen = tuple(Eigen(r.values, None, first.num_steps, r.residuals) for r in pairs)
    if density and first.num_steps < dsteps:   # continued to be a full SLQ sample
      first = linalg.driven_lanczos(apply, args, None, size, steps=dsteps, resume=first,
                                    on_step=tick)
    done = first.num_steps
    nodes, samples_q = [], []
    if density:
      nodes.append(linalg.krylov_quadrature(first))
    n = float(dim)
    for start in slq_starts:
      run = linalg.driven_lanczos(apply, args, random_tree(start, params, "rademacher"), size,
                                  steps=dsteps, on_step=tick)
      nodes.append(linalg.krylov_quadrature(run))
      if trace:
        samples_q.append(n * (linalg.deflated_quadratic(first, run)
                              if trace_method == "hutch++" else float(run.alphas[0])))
      done += run.num_steps
    for probe_key in jax.random.split(trace_key, max(probes_left, 1))[:probes_left]:
      z = random_tree(probe_key, params, "rademacher")
      if trace_method == "hutch++":
        z = linalg.deflate(first, z)
      run = linalg.driven_lanczos(apply, args, z, size, steps=1)
      samples_q.append(float(_norm2(z)) * float(run.alphas[0]))
      done += 1
      bar.set(done)
  est = None
  dtype = first.alphas.dtype
  if trace:
    q = np.asarray(samples_q, np.float64)
    base = (float(np.sum(np.asarray(first.alphas[:first.num_steps], np.float64)))
            if trace_method == "hutch++" else 0.0)
    est = (jnp.asarray(base + q.mean(), dtype), jnp.asarray(q.std(ddof=1) / np.sqrt(q.size), dtype))
  dens = None
  if density:
    width = max(int(t.shape[0]) for t, _ in nodes)
    theta = jnp.asarray(np.stack([np.pad(t, (0, width - t.shape[0]), mode="edge")
                                  for t, _ in nodes]), dtype)
    tau = jnp.asarray(np.stack([np.pad(w, (0, width - w.shape[0])) for _, w in nodes]), dtype)
    grid, phi = linalg.smoothed_density(theta, tau, None, None, grid_size=grid_size)
    dens = Density(grid, phi, theta, tau, first.num_steps + extra_runs * dsteps)
  return Probes(eigen, est, probes_left, dens, done, apply.method)


# ------------------------------------------------ curvature map (landscape.curvature)

def __getattr__(name: str):
  if name == "curvature_map":
    from landscape.curvature import curvature_map
    return curvature_map
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
