"""Critical points of a dataset-mean loss: search, Morse index and grid critical points.

A critical point of ``L(θ) = (1/N) Σ_i ℓ(θ; z_i)`` is a θ with ``∇L(θ) = 0``. Its
*Morse index* is the number of negative eigenvalues of the Hessian ``H = ∇²L(θ)``;
following Dauphin et al. (2014) and Frye et al. (2019, 2021) we report the *index
fraction* ``num_negative / num_params`` in ``[0, 1]``.

Two searches that converge to saddles as well as minima, because both minimize the
squared gradient norm ``‖∇L‖²`` rather than ``L``:

- ``newton_mr``: Newton-MR, each step a MINRES-QLP least-squares solve of
  ``H p = −g`` on Hessian-vector products followed by an Armijo line search on ‖g‖²;
- ``gnm``: gradient-norm minimization, an optax optimizer on ``½‖∇L‖²`` whose
  gradient ``H ∇L`` costs one HVP.

This module resolves and validates the search (:func:`find`, :func:`scan`,
:func:`perturbations`) and classifies where it ends (Morse index, ``kind``); the
compiled solver loops live in :mod:`landscape.newton`. Each search runs as one
compiled ``lax.while_loop`` (compiled once per loss function and method, reused by
:func:`scan`). The module knows nothing of models or datasets:
it takes ``loss_fn(params, batch) -> scalar`` and a params pytree, with the
full-dataset semantics of DESIGN §3 (every loss, gradient and HVP is the mean over
all samples of ``data``, batched by ``batch_size``).

The discrete critical points of a stored 2-D surface (:func:`grid_critical_points`)
are analysis of a sampled grid and live in :mod:`landscape.grid`; they are re-exported
here under their old name.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from landscape import _progress, _validate, newton
from landscape.batching import batched_mean, check_batch_size
from landscape.errors import ConfigError, ProbeError
from landscape.grid import GridCriticalPoints, grid_critical_points  # their home is landscape.grid
from landscape.hessian import hvp_fn
# MINRES-QLP lives in landscape.linalg; re-exported here, where it was.
from landscape.linalg import MinresInfo, minres_qlp
from landscape.newton import METHODS

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]

__all__ = [
    "CriticalPoint", "GridCriticalPoints", "INDEX_METHODS", "KINDS", "METHODS", "MinresInfo",
    "find", "grid_critical_points", "minres_qlp", "perturbations", "scan",
]

INDEX_METHODS = ("auto", "eigh", "slq")
KINDS = ("minimum", "saddle", "maximum", "not_converged")

# ------------------------------------------------------------------------- find

@dataclasses.dataclass(frozen=True, eq=False)
class CriticalPoint:
  """A point returned by :func:`find`, with its Morse index.

  Attributes:
    params: the parameter pytree θ* where the search stopped.
    loss: ``L(θ*)``, the full-dataset mean loss.
    grad_norm: ``‖∇L(θ*)‖₂``.
    index: fraction of negative Hessian eigenvalues, ``num_negative / num_params``
      in ``[0, 1]`` (Dauphin et al. 2014; Frye et al. 2019); eigenvalues with
      ``|λ| <= eig_tol`` count as zero. With SLQ it is the quadrature estimate of
      the spectral mass below ``−eig_tol``.
    kind: ``"minimum"`` (no eigenvalue below ``−eig_tol``), ``"maximum"`` (none
      above ``+eig_tol``), ``"saddle"`` (both signs) or ``"not_converged"``
      (``grad_norm > tol`` when the search stopped). A point whose Hessian is flat
      within ``eig_tol`` in every direction reports ``"minimum"``.
    steps: accepted outer steps of the search.
    index_method: ``"eigh"`` (exact dense spectrum) or ``"slq"`` (stochastic Lanczos
      quadrature); ``"none"`` (``index`` NaN) only for the unconverged points
      :func:`scan` returns with ``keep_unconverged=True``.
    num_negative: exact count of eigenvalues below ``−eig_tol`` (``eigh`` only).
    eigenvalues: ``(num_params,)`` ascending Hessian spectrum (``eigh`` only).
  """
  params: PyTree
  loss: float
  grad_norm: float
  index: float
  kind: str
  steps: int
  index_method: str
  num_negative: int | None = None
  eigenvalues: np.ndarray | None = None

  @property
  def converged(self) -> bool:
    """Whether the search reached ``grad_norm <= tol``."""
    return self.kind != "not_converged"


# ------------------------------------------------------------------- index / kind

def _dense_eigenvalues(loss_fn: LossFn, params: PyTree, data: PyTree,
                       batch_size: int | None) -> np.ndarray:
  """Exact ascending spectrum of the dataset-mean Hessian (small models only)."""
  flat = ravel_pytree(params)[0]
  n = int(flat.size)
  return np.asarray(_dense_eigenvalues_impl(params, data, loss_fn=loss_fn, batch_size=batch_size,
                                            chunk=min(n, 64)))


@functools.partial(jax.jit, static_argnames=("loss_fn", "batch_size", "chunk"))
def _dense_eigenvalues_impl(params, data, *, loss_fn, batch_size, chunk):
  flat, unravel = ravel_pytree(params)
  matvec = hvp_fn(loss_fn, data, batch_size=batch_size)
  column = lambda e: ravel_pytree(matvec(params, unravel(e)))[0]  # noqa: E731
  hess = jax.lax.map(column, jnp.eye(flat.size, dtype=flat.dtype), batch_size=chunk)
  return jnp.linalg.eigvalsh(0.5 * (hess + hess.T))


def _default_eig_tol(scale: float, dtype: np.dtype) -> float:
  """``max(1e-6, √ε) · max|λ|``: the flat-direction cut when ``eig_tol`` is None."""
  return max(1e-6, math.sqrt(float(jnp.finfo(dtype).eps))) * scale


def _kind(lowest: float, highest: float, eig_tol: float) -> str:
  if lowest >= -eig_tol:
    return "minimum"
  if highest <= eig_tol:
    return "maximum"
  return "saddle"


def _strong(params: PyTree) -> PyTree:
  """Strongly typed leaves: a weak-typed leaf (from a Python float) would compile anew."""
  return jax.tree.map(lambda leaf: jnp.asarray(leaf, dtype=jnp.result_type(leaf)), params)


def _check_loss_output(loss_fn: LossFn, params: PyTree, data: PyTree,
                       batch_size: int | None) -> None:
  out = jax.eval_shape(lambda p, d: batched_mean(lambda b: loss_fn(p, b), d, batch_size),
                       params, data)
  if out.shape != () or not jnp.issubdtype(out.dtype, jnp.floating):
    raise ConfigError(f"loss_fn must return a floating scalar (the mean loss over the batch), "
                      f"got shape {out.shape} dtype {out.dtype}; reduce it with .mean()")


# -------------------------------------------------------------------------- API

class _Search(NamedTuple):
  """Everything :func:`find` resolves once; :func:`scan` reuses it for every start."""
  loss_fn: LossFn
  data: PyTree
  method: str
  max_steps: int
  tol: float
  batch_size: int | None
  index_method: str
  dense_threshold: int
  eig_tol: float | None
  slq_runs: int
  slq_steps: int
  opts: dict
  optimizer: Any


def _resolve(loss_fn, params0, data, *, method, max_steps, tol, batch_size, index_method,
             dense_threshold, key, eig_tol, slq_runs, slq_steps, method_options) -> _Search:
  loss_fn = _validate.loss_callable(loss_fn)
  _validate.choice("critical-point method", method, METHODS)
  _validate.choice("index method", index_method, INDEX_METHODS)
  max_steps = _validate.integer("max_steps", max_steps, low=0, fix="pass e.g. max_steps=100")
  tol = _validate.positive("tol", tol, fix="pass e.g. tol=1e-6")
  dense_threshold = _validate.integer("dense_threshold", dense_threshold, low=0,
                                      fix="pass e.g. dense_threshold=2000")
  eig_tol = _validate.positive("eig_tol", eig_tol, zero=True, optional=True,
                               fix="pass e.g. eig_tol=1e-8 or None for the relative default")
  slq_runs = _validate.integer("slq_runs", slq_runs, low=1, fix="pass e.g. slq_runs=4")
  slq_steps = _validate.integer("slq_steps", slq_steps, low=1, fix="pass e.g. slq_steps=80")
  if key is not None:
    _validate.prng_key(key)
  check_batch_size(batch_size)
  num_params = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params0))
  if index_method == "auto":
    index_method = "eigh" if num_params <= dense_threshold else "slq"
  if index_method == "slq" and key is None:
    raise ConfigError(f"the SLQ index ({num_params} parameters, dense_threshold="
                      f"{dense_threshold}) needs a PRNG key; pass key=jax.random.key(0)")
  opts, optimizer = newton.method_options(method, dict(method_options), num_params)
  return _Search(loss_fn, data, method, max_steps, tol, batch_size, index_method,
                 dense_threshold, eig_tol, slq_runs, slq_steps, opts, optimizer)


def _run(search: _Search, params0: PyTree, key: jax.Array | None, *,
         examine_unconverged: bool = True, name: str = "params0",
         desc: str = "critical-point search", final: bool = True) -> CriticalPoint:
  """Search from ``params0`` and classify the end point.

  With ``examine_unconverged=False`` (``scan``) a start whose loss is not finite
  or that does not converge comes back unexamined (``index_method="none"``).
  Inside :func:`landscape._progress.reporting` the steps are reported as ``desc``.
  """
  s = search
  _check_loss_output(s.loss_fn, params0, s.data, s.batch_size)
  with _progress.progress(s.max_steps, "steps", desc, cap=True, ticks=True,
                          final=final) as progress:
    params, loss, gnorm, steps, loss0 = jax.block_until_ready(newton.solve(
        params0, s.data, s.max_steps, s.tol, s.opts, loss_fn=s.loss_fn, method=s.method,
        batch_size=s.batch_size, optimizer=s.optimizer, report=progress.enabled))
  loss0 = float(loss0)
  if not math.isfinite(loss0):
    if not examine_unconverged:
      return CriticalPoint(params, loss0, math.nan, math.nan, "not_converged", 0, "none")
    raise ProbeError(f"the loss at {name} is {loss0} (not finite); start from finite "
                     "parameters where loss_fn is defined (check the data and the loss)")
  loss, gnorm, steps = float(loss), float(gnorm), int(steps)
  converged = gnorm <= s.tol
  if not (converged or examine_unconverged):
    return CriticalPoint(params, loss, gnorm, math.nan, "not_converged", steps, "none")
  dtype = ravel_pytree(params)[0].dtype
  num_params = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))
  if s.index_method == "eigh":
    eigs = _dense_eigenvalues(s.loss_fn, params, s.data, s.batch_size)
    scale = float(np.max(np.abs(eigs)))
    tol_eig = _default_eig_tol(scale, dtype) if s.eig_tol is None else float(s.eig_tol)
    num_negative = int(np.sum(eigs < -tol_eig))
    kind = _kind(float(eigs[0]), float(eigs[-1]), tol_eig) if converged else "not_converged"
    return CriticalPoint(params, loss, gnorm, num_negative / num_params, kind, steps, "eigh",
                         num_negative, eigs)
  from landscape import hessian  # the SLQ density lives with the other Hessian probes
  dens = hessian.density(s.loss_fn, params, s.data, key=key, num_runs=s.slq_runs,
                         num_steps=s.slq_steps, batch_size=s.batch_size)
  ritz = np.asarray(dens.ritz_values)
  lowest, highest = float(ritz.min()), float(ritz.max())
  scale = max(abs(lowest), abs(highest))
  tol_eig = _default_eig_tol(scale, dtype) if s.eig_tol is None else float(s.eig_tol)
  index = float(hessian.negative_fraction(dens, threshold=-tol_eig))
  kind = _kind(lowest, highest, tol_eig) if converged else "not_converged"
  return CriticalPoint(params, loss, gnorm, index, kind, steps, "slq")


def find(loss_fn: LossFn, params0: PyTree, data: PyTree = None, *, method: str = "newton_mr",
         max_steps: int = 100, tol: float = 1e-6, batch_size: int | None = None,
         index_method: str = "auto", dense_threshold: int = 2000,
         key: jax.Array | None = None, eig_tol: float | None = None, slq_runs: int = 4,
         slq_steps: int = 80, **method_options: Any) -> CriticalPoint:
  """Find a critical point ``∇L(θ) = 0`` near ``params0`` and its Morse index.

  Both methods minimize the gradient norm, so they converge to saddles and maxima
  as readily as to minima (whichever critical point is near the start):

  - ``"newton_mr"`` (Newton-MR): ``p_k ≈ argmin_p ‖H_k p + g_k‖`` by
    :func:`minres_qlp` on Hessian-vector products (inexact: ``inner_rtol``,
    ``inner_maxiter``; the minimum-length solution when ``H_k`` is singular), then
    ``θ_{k+1} = θ_k + α p_k`` with the largest ``α = ls_beta^j`` that satisfies the
    Armijo condition ``‖g(θ_k + α p_k)‖² <= ‖g_k‖² + 2 ls_rho α ⟨p_k, H_k g_k⟩``
    (``⟨p_k, H_k g_k⟩ = −‖H_k p_k‖² < 0`` for MINRES iterates; should it fail,
    ``p_k = −H_k g_k``). Options: ``inner_rtol=1e-4``, ``inner_maxiter=None``
    (``min(num_params, 100)``), ``ls_rho=1e-4``, ``ls_beta=0.5``, ``ls_max_steps=40``.
  - ``"gnm"`` (gradient-norm minimization): minimize ``½‖∇L‖²``, whose gradient
    ``H ∇L`` is one HVP, with an optax optimizer. Options: ``optimizer=None``
    (gradient descent with optax's backtracking line search,
    ``max_learning_rate=1.0``, ``ls_max_steps=40``) or any optax transformation,
    e.g. ``optimizer=optax.adam(1e-2)`` (reuse one object to reuse its compile).
    Converges linearly, at a rate set by the condition number of ``H²``: give it
    far more ``max_steps`` than Newton-MR.

  The search stops at ``‖∇L‖ <= tol``, after ``max_steps`` accepted steps, or when
  no step is accepted. In *gradient-flat* regions, where ``∇L`` lies (nearly) in
  the kernel of ``H``, Newton-MR steps barely reduce ‖g‖ and the search ends
  ``not_converged`` (Frye et al. 2021 find such regions common in neural-network
  losses; raising ``max_steps`` or lowering ``inner_rtol`` helps only slowly).

  Then, if ``num_params <= dense_threshold`` (``index_method="auto"``) or
  ``index_method="eigh"``, the exact Hessian (one HVP per parameter) gives the
  spectrum λ; else SLQ (:func:`landscape.hessian.density`) estimates it. Eigenvalues with ``|λ| <= eig_tol`` are *flat* (zero; symmetries
  make them common), default ``eig_tol = max(1e-6, √ε) · max|λ|`` with ε the
  parameters' machine epsilon. ``kind``: ``not_converged`` if ``‖∇L‖ > tol``; else
  ``minimum`` if no ``λ < −eig_tol``, ``maximum`` if no ``λ > eig_tol``, otherwise
  ``saddle``; ``index = #{λ < −eig_tol} / num_params``. With SLQ the kind comes from
  the extreme Ritz values and the index from the quadrature mass below ``−eig_tol``.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``, the mean loss over ``batch``.
    params0: starting parameter pytree (floating leaves).
    data: pytree of arrays with a leading sample axis, or ``None``.
    method: ``"newton_mr"`` or ``"gnm"``.
    max_steps: maximum accepted outer steps (0: only classify ``params0``).
    tol: gradient-norm tolerance (> 0).
    batch_size: data samples per batch inside every probe (``None``: all at once).
    index_method: ``"auto"``, ``"eigh"`` or ``"slq"``.
    dense_threshold: largest parameter count for the dense spectrum under ``auto``.
    key: PRNG key of the SLQ probes (required when SLQ is used).
    eig_tol: flat-eigenvalue cut (absolute); ``None``: the relative default above.
    slq_runs, slq_steps: SLQ probes and Lanczos steps per probe.
    **method_options: options of ``method`` listed above.

  Returns:
    A :class:`CriticalPoint`.

  Example:
    >>> f = lambda p, _: p["x"] ** 4 / 4 - p["x"] ** 2 / 2 + p["y"] ** 2 / 2
    >>> cp = find(f, {"x": jnp.array(0.2), "y": jnp.array(-0.3)})
    >>> cp.kind, cp.index            # ('saddle', 0.5)

  References:
    Roosta, Liu, Xu & Mahoney, "Newton-MR: Inexact Newton method with minimum
    residual sub-problem solver", EURO J. Comput. Optim. 2022.
    Liu & Roosta, "MINRES: from negative curvature detection to monotonicity
    properties", SIAM J. Optim. 2022.
    Pennington & Bahri, "Geometry of neural network loss surfaces via random matrix
    theory", ICML 2017.
    Frye, Simon, Wadia, Ligeralde, DeWeese & Bouchard, "Critical point-finding
    methods reveal gradient-flat regions of deep network losses", Neural
    Computation 2021.
    Dauphin, Pascanu, Gulcehre, Cho, Ganguli & Bengio, "Identifying and attacking
    the saddle point problem in high-dimensional non-convex optimization", NeurIPS 2014.
  """
  params0 = _strong(_validate.param_tree(params0, "params0"))
  search = _resolve(loss_fn, params0, data, method=method, max_steps=max_steps, tol=tol,
                    batch_size=batch_size, index_method=index_method,
                    dense_threshold=dense_threshold, key=key, eig_tol=eig_tol,
                    slq_runs=slq_runs, slq_steps=slq_steps, method_options=method_options)
  return _run(search, params0, key)


def _flat(params: PyTree) -> np.ndarray:
  leaves = jax.tree.leaves(params)
  return np.concatenate([np.ravel(np.asarray(leaf, np.float64)) for leaf in leaves])


def _same_point(a: CriticalPoint, b: CriticalPoint, dedup_tol: float) -> bool:
  theta_a = _flat(a.params)
  same_place = np.linalg.norm(theta_a - _flat(b.params)) <= dedup_tol * (
      1.0 + np.linalg.norm(theta_a))
  return bool(same_place) and abs(a.loss - b.loss) <= dedup_tol * (1.0 + abs(a.loss))


def scan(loss_fn: LossFn, starts: Sequence[PyTree], data: PyTree = None, *,
         method: str = "newton_mr", max_steps: int = 100, tol: float = 1e-6,
         batch_size: int | None = None, index_method: str = "auto",
         dense_threshold: int = 2000, key: jax.Array | None = None,
         eig_tol: float | None = None, slq_runs: int = 4, slq_steps: int = 80,
         dedup_tol: float = 1e-4, keep_unconverged: bool = False,
         labels: Sequence[str] | None = None,
         **method_options: Any) -> list[CriticalPoint]:
  """Run :func:`find` from many starts; return the distinct critical points by loss.

  Two converged points ``a``, ``b`` are the same when
  ``‖θ_a − θ_b‖ <= dedup_tol (1 + ‖θ_a‖)`` and
  ``|L_a − L_b| <= dedup_tol (1 + |L_a|)``; of each group the point with the
  smallest gradient norm is kept. Points related by a symmetry of the loss (e.g.
  permuted hidden units) are distinct parameters and stay distinct. The search is
  compiled once and reused for every start.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``, the mean loss over ``batch``.
    starts: starting pytrees of one structure (e.g. grid points, trajectory
      points, :func:`perturbations`).
    data, method, max_steps, tol, batch_size, index_method, dense_threshold,
      eig_tol, slq_runs, slq_steps, **method_options: as in :func:`find`.
    key: PRNG key of the SLQ probes, split once per start.
    dedup_tol: relative tolerance of the duplicate test.
    keep_unconverged: also return the points that did not reach ``tol``, or whose
      start has a non-finite loss (not deduplicated, not examined:
      ``kind="not_converged"``, ``index_method="none"``, ``index`` NaN).
    labels: a description of each start for the progress lines (``"grid saddle at
      (0.1, -0.2)"``); inside :func:`landscape._progress.reporting` every search
      reports its start (``search 2/5 from ...``), its steps and its end.

  Returns:
    A list of :class:`CriticalPoint` sorted by loss (ascending; NaN last).

  Example:
    >>> starts = perturbations(jax.random.key(0), params, num=16, scale=0.1)
    >>> points = scan(loss_fn, starts, (x, y), batch_size=256)
    >>> [(p.kind, p.loss) for p in points]

  References:
    Frye, Simon, Wadia, Ligeralde, DeWeese & Bouchard, "Critical point-finding
    methods reveal gradient-flat regions of deep network losses", Neural
    Computation 2021.
  """
  starts = [_strong(_validate.param_tree(p, f"starts[{i}]")) for i, p in enumerate(starts)]
  if not starts:
    raise ConfigError("starts is empty; pass a non-empty list of parameter pytrees")
  structure = jax.tree.structure(starts[0])
  for i, p in enumerate(starts):
    if jax.tree.structure(p) != structure:
      raise ConfigError(f"starts[{i}] has tree structure {jax.tree.structure(p)}, unlike "
                        f"starts[0] ({structure}); pass starts of one parameter structure")
  _validate.positive("dedup_tol", dedup_tol, fix="pass e.g. dedup_tol=1e-4")
  search = _resolve(loss_fn, starts[0], data, method=method, max_steps=max_steps, tol=tol,
                    batch_size=batch_size, index_method=index_method,
                    dense_threshold=dense_threshold, key=key, eig_tol=eig_tol,
                    slq_runs=slq_runs, slq_steps=slq_steps, method_options=method_options)
  keys = jax.random.split(key, len(starts)) if key is not None else [None] * len(starts)
  if labels is not None and len(labels) != len(starts):
    raise ConfigError(f"labels has {len(labels)} entries for {len(starts)} starts; pass one "
                      "description per start, or None")
  found = []
  for i, (p, k) in enumerate(zip(starts, keys)):
    desc = f"search {i + 1}/{len(starts)}"
    _progress.message(f"{desc} from {labels[i] if labels is not None else f'start {i}'}")
    t0 = time.monotonic()
    point = _run(search, p, k, examine_unconverged=False, desc=desc, final=False)
    if _progress.active() is not None:
      _progress.message(
          f"{desc}: {'converged' if point.converged else 'not converged'} after {point.steps} "
          f"steps, |grad| {point.grad_norm:.3g}, loss {point.loss:.6g} "
          f"({_progress.format_seconds(time.monotonic() - t0)})")
    found.append(point)
  kept: list[CriticalPoint] = []
  for point in sorted((p for p in found if p.converged), key=lambda p: p.loss):
    twin = next((i for i, q in enumerate(kept) if _same_point(q, point, dedup_tol)), None)
    if twin is None:
      kept.append(point)
    elif point.grad_norm < kept[twin].grad_norm:
      kept[twin] = point
  if keep_unconverged:
    kept += [p for p in found if not p.converged]
  return sorted(kept, key=lambda p: (math.isnan(p.loss), p.loss))


def perturbations(key: jax.Array, params: PyTree, num: int, scale: float) -> list[PyTree]:
  """``num`` Gaussian perturbations of ``params``, each leaf relative to its norm.

  ``θ_i = θ + scale · (‖θ_ℓ‖ / ‖d_ℓ‖) d_ℓ`` per leaf ℓ with ``d_ℓ ~ N(0, I)``
  (one key per perturbation and leaf), so every leaf moves by ``scale`` times its
  own norm; an all-zero leaf (e.g. fresh biases) gets ``θ_ℓ + scale · d_ℓ``.

  Args:
    key: PRNG key.
    params: parameter pytree θ (floating leaves).
    num: number of perturbed copies (>= 0).
    scale: relative size (>= 0).

  Returns:
    A list of ``num`` pytrees shaped like ``params``.

  Example:
    >>> starts = [params] + perturbations(jax.random.key(1), params, num=8, scale=0.05)
  """
  _validate.prng_key(key)
  params = _strong(_validate.param_tree(params, "params"))
  num = _validate.integer("num", num, low=0, fix="pass e.g. num=8")
  scale = _validate.positive("scale", scale, zero=True, fix="pass e.g. scale=0.1")

  if not num:
    return []
  batch = _perturb(jax.random.split(key, num), params, jnp.asarray(scale))
  return [jax.tree.map(lambda leaf, i=i: leaf[i], batch) for i in range(num)]


@jax.jit
@functools.partial(jax.vmap, in_axes=(0, None, None))
def _perturb(key: jax.Array, params: PyTree, scale: jax.Array) -> PyTree:
  def shift(w, d):
    nw, nd = jnp.linalg.norm(w), jnp.linalg.norm(d)
    factor = jnp.where(nw > 0, nw / jnp.where(nd > 0, nd, 1.0), 1.0)
    return (w + scale * factor * d).astype(w.dtype)
  return jax.tree.map(shift, params, optax.tree.random_like(key, params, jax.random.normal))
