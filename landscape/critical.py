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

from landscape import _progress, _validate, newton, operators
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
    "Certificate", "CriticalPoint", "GridCriticalPoints", "INDEX_METHODS", "KINDS", "METHODS",
    "MinresInfo", "NOISE_FACTOR", "certify", "find", "grid_critical_points", "minres_qlp",
    "perturbations", "scan",
]

INDEX_METHODS = ("auto", "eigh", "slq")
#: The kinds of a point. ``"undetermined"``: converged, but the certified eigenvalue
#: bounds decide neither way (see :class:`Certificate`).
KINDS = ("minimum", "saddle", "maximum", "undetermined", "not_converged")
#: The measured HVP noise floor times this is the margin added to every eigenvalue
#: interval (see :func:`certify`).
NOISE_FACTOR = 10.0

# ------------------------------------------------------------------ certificate

@dataclasses.dataclass(frozen=True, eq=False)
class Certificate:
  """Certified bounds on the Morse index of a Hessian, and the ``kind`` they support.

  Made by :func:`certify` (Lanczos, ``method="lanczos"``) or by :func:`find` from the
  dense spectrum (``method="eigh"``); every ``kind`` of :func:`find`, :func:`scan` and
  the pipeline comes from :attr:`kind`.

  Attributes:
    eigenvalues: ``(k,)`` ascending: the ``k`` smallest Ritz values θ_1 ≤ … ≤ θ_k
      (``eigh``: the whole dense spectrum, ``k = num_params``).
    residuals: ``(k,)`` their residuals ``r_i = ‖H y_i − θ_i y_i‖`` (``eigh``: the
      rounding bound ``√n · ε · max|λ|`` of the dense eigensolver).
    largest: the largest Ritz value θ_max (``eigh``: λ_max).
    largest_residual: its residual.
    eps: the flat band: an eigenvalue counts as negative only when certified below
      ``−eps`` (default ``max(1e-6, √ε_dtype) · max(|θ_max|, |θ_1|)``).
    noise: the measured noise floor of the Hessian-vector product (see :func:`certify`).
    margin: ``NOISE_FACTOR · noise``, added to every residual: the interval of
      ``θ_i`` is ``[θ_i − r_i − margin, θ_i + r_i + margin]``.
    index_lower: ``#{i: θ_i + r_i + margin < −eps}``, a lower bound on the Morse index
      (Cauchy interlacing: λ_i ≤ θ_i).
    index_upper: ``#{i: θ_i − r_i − margin < −eps}``: an upper bound when
      ``exhaustive`` (else valid if Lanczos missed no eigenvalue below ``−eps``);
      ``None`` when all ``k`` may be negative and ``k < num_params``.
    near_zero: ``#{i: |θ_i| <= eps + r_i + margin}``, eigenvalues that may be flat.
    exhaustive: the Krylov space (or the dense matrix) was the whole parameter space.
    num_hvps: Hessian-vector products spent (Lanczos steps plus the noise probes;
      ``eigh``: one per parameter plus the noise probes).
    num_params: the dimension ``n`` of the Hessian.
    method: ``"lanczos"`` or ``"eigh"``.
  """
  eigenvalues: np.ndarray
  residuals: np.ndarray
  largest: float
  largest_residual: float
  eps: float
  noise: float
  margin: float
  index_lower: int
  index_upper: int | None
  near_zero: int
  exhaustive: bool
  num_hvps: int
  num_params: int
  method: str

  @property
  def kind(self) -> str:
    """``"minimum"``, ``"saddle"``, ``"maximum"`` or ``"undetermined"`` from the bounds.

    - ``"minimum"``: ``index_upper == 0`` (no eigenvalue interval reaches below
      ``−eps``) and ``θ_max − r_max − margin > eps`` (some curvature is resolved). Flat
      directions within ``eps`` (symmetries) are allowed: then ``near_zero > 0`` and
      the minimum is degenerate, as second-order tests go.
    - ``"saddle"``: ``index_lower >= 1`` and ``θ_max − r_max − margin > eps`` (by
      interlacing λ_max ≥ θ_max): an eigenvalue certified below ``−eps`` and one above
      ``+eps``.
    - ``"maximum"``: ``index_lower >= 1`` and ``θ_max + r_max + margin <= eps``.
    - ``"undetermined"``: anything else: an interval straddles ``−eps`` with none
      certified below it, the top of the spectrum is not resolved, or every
      eigenvalue is within ``eps`` of 0 (a Hessian flat to within the noise, as at a
      saturated float32 cross-entropy fit): the numbers do not support a
      classification (raise ``k`` or ``num_steps``, use float64, or read the bounds).
    """
    top = self.largest_residual + self.margin
    if self.index_upper == 0:
      return "minimum" if self.largest - top > self.eps else "undetermined"
    if self.index_lower >= 1:
      if self.largest - top > self.eps:
        return "saddle"
      if self.largest + top <= self.eps:
        return "maximum"
    return "undetermined"


def _counts(theta: np.ndarray, res: np.ndarray, eps: float, dim: int
            ) -> tuple[int, int | None, int]:
  lower = int(np.sum(theta + res < -eps))
  upper = int(np.sum(theta - res < -eps))
  if upper == theta.size and theta.size < dim:
    upper = None
  near_zero = int(np.sum(np.abs(theta) <= eps + res))
  return lower, upper, near_zero


@functools.partial(jax.jit, static_argnames=("loss_fn", "batch_size", "pairs", "operator"))
def _hvp_noise_impl(params, data, key, *, loss_fn, batch_size, pairs, operator="hessian"):
  """Over ``pairs`` random unit pairs ``(u, v)`` (3 HVPs a pair): the largest linearity
  defect ``‖Ĥ(u+v) − Ĥu − Ĥv‖ / 2``, the largest symmetry defect ``|uᵀĤv − vᵀĤu|``, and
  the probes ``(pairs, 2, n)`` with their products ``Ĥu, Ĥv``."""
  flat, unravel = ravel_pytree(params)
  matvec = operators.matvec_fn(loss_fn, data, operator=operator, batch_size=batch_size)
  hvp = lambda w: ravel_pytree(matvec(params, unravel(w)))[0]  # noqa: E731

  def one(k):
    u, v = jax.random.normal(k, (2, flat.size), flat.dtype)
    u, v = u / jnp.linalg.norm(u), v / jnp.linalg.norm(v)
    hu, hv, huv = hvp(u), hvp(v), hvp(u + v)
    return (jnp.linalg.norm(huv - hu - hv) / 2, jnp.abs(u @ hv - v @ hu),
            jnp.stack([u, v]), jnp.stack([hu, hv]))

  lin, sym, probes, products = jax.lax.map(one, jax.random.split(key, pairs))
  return jnp.max(lin), jnp.max(sym), probes, products


@functools.partial(jax.jit, static_argnames=("loss_fn", "batch_size", "operator"))
def _reference_products(params, data, probes, *, loss_fn, batch_size, operator="hessian"):
  """``H w`` for every probe ``w``, traced at the dtypes given (float64 under x64)."""
  _, unravel = ravel_pytree(params)
  matvec = operators.matvec_fn(loss_fn, data, operator=operator, batch_size=batch_size)
  return jax.lax.map(lambda w: ravel_pytree(matvec(params, unravel(w)))[0], probes)


def _upcast(tree: PyTree) -> PyTree:
  """Floating leaves as float64 (call under ``jax.enable_x64``); others unchanged."""
  def up(leaf):
    if leaf is None or not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      return leaf
    return jnp.asarray(leaf, jnp.float64)
  return jax.tree.map(up, tree)


_NOISE_PAIRS = 2


def _hvp_noise(loss_fn: LossFn, params: PyTree, data: PyTree, key: jax.Array,
               batch_size: int | None, operator: str = "hessian") -> float:
  """The measured noise floor of the HVP at ``params`` (see :func:`certify`).

  ``3 · _NOISE_PAIRS`` HVPs at the working precision and, below float64,
  ``2 · _NOISE_PAIRS`` more in float64.
  """
  lin, sym, probes, products = _hvp_noise_impl(params, data, key, loss_fn=loss_fn,
                                               batch_size=batch_size, pairs=_NOISE_PAIRS,
                                               operator=operator)
  noise = max(float(lin), float(sym))
  if jnp.finfo(probes.dtype).bits < 64:
    flat_probes = np.asarray(probes, np.float64).reshape(-1, probes.shape[-1])
    products = np.asarray(products, np.float64).reshape(flat_probes.shape)
    with jax.enable_x64(True):
      ref = _reference_products(_upcast(params), _upcast(data), jnp.asarray(flat_probes),
                                loss_fn=loss_fn, batch_size=batch_size, operator=operator)
      ref = np.asarray(ref, np.float64)
    noise = max(noise, float(np.max(np.linalg.norm(products - ref, axis=-1))))
  return noise


def certify(loss_fn: LossFn, params: PyTree, data: PyTree = None, *, k: int = 6,
            eps: float | None = None, key: jax.Array | None = None,
            num_steps: int | None = None, exhaustive_threshold: int = 256,
            batch_size: int | None = None, operator: str = "hessian") -> Certificate:
  """Certified bounds on the Morse index at ``params`` and the kind they support.

  One Lanczos run (:func:`landscape.hessian.eigenvalues`, ``which="both"``, full
  reorthogonalization) gives the ``k`` smallest Ritz values θ_1 ≤ … ≤ θ_k of the
  Hessian ``H``, their residuals ``r_i`` and the largest Ritz value θ_max. For symmetric
  ``H`` with eigenvalues λ_1 ≤ … ≤ λ_n (Parlett 1998, ch. 10–11):

  - *Lower bound.* Cauchy interlacing gives ``λ_i ≤ θ_i``: every Ritz value below
    ``−eps`` proves an eigenvalue below ``−eps``. ``index_lower = #{θ_i + r_i < −eps}``
    (a margin of ``r_i`` for rounding).
  - *Upper bound.* When the Krylov space is the whole space (``exhaustive``: ``num_hvps
    >= num_params``, the default for up to ``exhaustive_threshold`` parameters) the Ritz
    values are the eigenvalues and the intervals ``[θ_i ± r_i]`` contain them, so
    ``index_upper = #{θ_i − r_i < −eps}`` bounds the index from above. Otherwise it is
    the same count, valid if Lanczos missed no eigenvalue below ``−eps`` (probability one
    for a Gaussian start and simple eigenvalues in exact arithmetic, not a proof), and
    ``None`` when all ``k`` may be negative.

  **The noise floor.** These bounds hold for the operator Lanczos applied, the
  floating-point HVP ``Ĥv = Hv + Ev`` (``E`` the rounding, not quite linear), and the
  residuals are computed with that same ``Ĥ``: they cannot see ``E``. The eigenvalues of
  ``H`` are those of ``Ĥ`` to within ``‖E‖₂`` (Weyl), so the cut must exceed it. Near
  zero loss ``‖E‖`` is *not* ``O(ε‖H‖)``: the curvatures are tiny differences of
  ``O(1)`` quantities (a saturated softmax's ``p(1 − p)``, with ``1 − p`` lost when
  ``p`` is rounded), so float32 rounding is as large as the curvatures themselves.
  ``noise`` is measured on ``_NOISE_PAIRS = 2`` pairs of random unit vectors ``(u, v)``
  as the largest of

  - the *precision defect* ``‖Ĥu − H₆₄u‖`` (and for ``v``), ``H₆₄`` the same HVP with
    the parameters and floating data cast to float64 under ``jax.enable_x64`` (below
    float64 only: 4 float64 HVPs). It is the only one of the three that sees a rounding
    error that is the same linear map for every vector (a curvature coefficient
    rounded once at θ, as in the softmax), which no self-consistency test can;
  - the *linearity defect* ``‖Ĥ(u+v) − Ĥu − Ĥv‖ / 2`` (zero in exact arithmetic);
  - the *symmetry defect* ``|uᵀĤv − vᵀĤu|``

  (6 HVPs at the working precision). ``margin = NOISE_FACTOR · noise`` (``NOISE_FACTOR
  = 10``) widens every interval to ``[θ_i − r_i − margin, θ_i + r_i + margin]`` before it
  is compared with the flat band ``[−eps, eps]``, default ``eps = max(1e-6, √ε_dtype) ·
  max(|θ_max|, |θ_1|)`` (the rounding of a well-scaled Hessian); all counts above use
  the widened intervals. Noise thus never shrinks the flat band of a well-resolved
  spectrum, it only withholds certificates the numbers cannot carry.

  Soundness: the floor is a measured *estimate* of ``‖E‖₂``, not a bound. A random unit
  probe sees ``‖Eu‖ ≈ ‖E‖_F / √n``, which is ``‖E‖₂`` up to a factor ``√(n / rank E)``
  for an error spread evenly over ``rank E`` directions: ``NOISE_FACTOR = 10`` covers a
  rank down to ``n / 100`` (the error of a dataset-mean HVP lives mostly in the span of
  the per-sample output gradients, rank ≤ samples × outputs). The float64 reference is as
  good as ``loss_fn`` lets it be: a loss that casts to float32 inside gives a reference
  no better than the HVP, and the precision defect then reads ~0. A larger margin only
  lowers ``index_lower`` and raises the share of ``"undetermined"``: the floor errs away
  from ``"saddle"``. Pass ``eps`` to impose a flat band of your own (the margin still
  applies). In float64 the floor is ~1e-16 of the curvature scale and the
  relative cut governs. Measured on a 51-parameter tanh MLP fitted by Adam to a float32
  cross-entropy of 0 (``tests/test_certify.py``): ``‖E‖₂ = 6.4e-7`` against
  ``λ_max = 8.9e-7`` (float64), the precision defect 1.7e-7, the linearity and symmetry
  defects 7e-9 (the assembled matrix's ``‖Ĥ − Ĥᵀ‖₂``: 1.1e-7) and ``√ε · max|θ| =
  1.6e-10``; the float32 spectrum had 17 "eigenvalues" below ``−√ε · max|θ|``, down to
  −9.7e-8, where float64 finds −1.1e-8.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``, the mean loss over ``batch``.
    params: parameter pytree θ (floating leaves).
    data: pytree of arrays with a leading sample axis, or ``None``.
    k: the number of smallest eigenvalues (clipped to the parameter count).
    eps: the flat-eigenvalue cut (>= 0), or ``None`` for the default above.
    key: PRNG key of the Lanczos start and the noise probes (``None``: ``key(0)``).
    num_steps: Lanczos steps; ``None``: the parameter count when it is at most
      ``exhaustive_threshold`` (exhaustive), else the default of
      :func:`landscape.hessian.eigenvalues` with its early stop.
    exhaustive_threshold: the largest parameter count run exhaustively by default.
    batch_size: data samples per batch inside every HVP (``None``: all at once).
    operator: the curvature matrix whose index is certified (:mod:`landscape.operators`):
      ``"hessian"`` (the Morse index); ``"residual"`` shows how many negative directions
      the model's own curvature ``R = H − G`` has (``"ggn"``/``"fisher"`` are positive
      semidefinite for a convex output loss, so their index is 0).

  Returns:
    A :class:`Certificate`; ``certificate.kind`` is the classification (the caller
    decides convergence: a point with ``‖∇L‖ > tol`` is no critical point).

  Example:
    >>> c = certify(loss_fn, params, (x, y), key=jax.random.key(0))
    >>> c.kind, c.index_lower, c.index_upper, c.eps, c.noise

  References:
    Parlett, "The Symmetric Eigenvalue Problem", SIAM, 1998, ch. 10–11 (interlacing,
    residual bounds).
    Higham, "Accuracy and Stability of Numerical Algorithms", SIAM, 2002 (rounding).
  """
  from landscape import hessian  # the Lanczos probes live with the other Hessian probes
  loss_fn = _validate.loss_callable(loss_fn)
  params = _strong(_validate.param_tree(params))
  eps = _validate.positive("eps", eps, zero=True, optional=True,
                           fix="pass e.g. eps=1e-8 or None for the measured default")
  k = _validate.integer("k", k, low=1, fix="pass e.g. k=6")
  exhaustive_threshold = _validate.integer("exhaustive_threshold", exhaustive_threshold, low=0,
                                           fix="pass e.g. exhaustive_threshold=256")
  key = jax.random.key(0) if key is None else _validate.prng_key(key)
  check_batch_size(batch_size)
  operators.require_split(loss_fn, operator)
  _check_loss_output(loss_fn, params, data, batch_size)
  dim = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))
  k = min(k, dim)
  if num_steps is None:
    num_steps = dim if dim <= exhaustive_threshold else None
  run_all = num_steps is not None and num_steps >= dim
  lanczos_key, noise_key = jax.random.split(key)
  top, bottom = hessian.eigenvalues(loss_fn, params, data, k=k, which="both", key=lanczos_key,
                                    num_steps=num_steps, tol=0.0 if run_all else 1e-6,
                                    batch_size=batch_size, operator=operator)
  noise = _hvp_noise(loss_fn, params, data, noise_key, batch_size, operator)
  theta = np.asarray(bottom.values, np.float64)
  res = np.asarray(bottom.residuals, np.float64)
  largest = float(np.asarray(top.values)[0])
  largest_res = float(np.asarray(top.residuals)[0])
  if eps is None:
    dtype = ravel_pytree(params)[0].dtype
    eps = _default_eig_tol(max(abs(largest), abs(float(theta[0]))), dtype)
  margin = NOISE_FACTOR * noise
  lower, upper, near_zero = _counts(theta, res + margin, float(eps), dim)
  return Certificate(theta, res, largest, largest_res, float(eps), noise, margin, lower, upper,
                     near_zero, bool(bottom.num_hvps >= dim),
                     int(bottom.num_hvps) + 3 * _NOISE_PAIRS, dim, "lanczos")


def _dense_certificate(loss_fn: LossFn, params: PyTree, data: PyTree, key: jax.Array,
                       batch_size: int | None, eps: float | None) -> Certificate:
  """The certificate of the exact dense spectrum (one HVP per parameter).

  The assembled ``Ĥ`` (columns ``Ĥe_j``) is not exactly symmetric in floating point;
  its eigenvalues are taken of ``(Ĥ + Ĥᵀ)/2``. The noise floor is the larger of
  ``‖Ĥ − Ĥᵀ‖₂`` (twice the norm of the antisymmetric part: a rounding error with no
  preferred symmetry has symmetric and antisymmetric parts of like size) and the
  linearity/symmetry defects of :func:`certify`.
  """
  flat = ravel_pytree(params)[0]
  n = int(flat.size)
  eigs, asym = _dense_eigenvalues_impl(params, data, loss_fn=loss_fn, batch_size=batch_size,
                                       chunk=min(n, 64))
  eigs = np.asarray(eigs, np.float64)
  noise = max(float(asym), _hvp_noise(loss_fn, params, data, key, batch_size))
  scale = float(np.max(np.abs(eigs)))
  if eps is None:
    eps = _default_eig_tol(scale, flat.dtype)
  res = np.full(n, math.sqrt(n) * float(jnp.finfo(flat.dtype).eps) * scale)
  margin = NOISE_FACTOR * noise
  lower, upper, near_zero = _counts(eigs, res + margin, float(eps), n)
  return Certificate(eigs, res, float(eigs[-1]), float(res[-1]), float(eps), noise, margin, lower,
                     upper, near_zero, True, n + 3 * _NOISE_PAIRS, n, "eigh")


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
      ``|λ| <= eps`` (``certificate.eps``: ``eig_tol`` or the measured default) count
      as zero. With SLQ it is the quadrature estimate of the spectral mass below
      ``−eps`` (an estimate, not a certificate: ``kind`` does not use it).
    kind: decided by :attr:`Certificate.kind` of ``certificate`` (one rule for
      ``eigh`` and ``slq``): ``"minimum"`` (no eigenvalue interval reaches below
      ``−eps``, one certified above ``+eps``; flat directions within ``eps`` are
      allowed), ``"saddle"`` (an eigenvalue certified below ``−eps`` and one above
      ``+eps``), ``"maximum"`` (one certified below ``−eps``, none above ``+eps``),
      ``"undetermined"`` (the bounds decide neither, or the Hessian is flat within
      ``eps`` in every direction: e.g. at a near-zero loss where every curvature is
      within the float32 noise floor of the HVP) or ``"not_converged"``
      (``grad_norm > tol`` when the search stopped).
    steps: accepted outer steps of the search.
    index_method: ``"eigh"`` (exact dense spectrum) or ``"slq"`` (stochastic Lanczos
      quadrature); ``"none"`` (``index`` NaN) only for the unconverged points
      :func:`scan` returns with ``keep_unconverged=True``.
    num_negative: exact count of eigenvalues below ``−eps`` (``eigh`` only;
      ``certificate.index_lower``).
    eigenvalues: ``(num_params,)`` ascending Hessian spectrum (``eigh`` only).
    certificate: the :class:`Certificate` behind ``kind`` (bounds ``index_lower``,
      ``index_upper``, the cut ``eps`` and the measured HVP ``noise``); ``None`` for the
      unexamined points of :func:`scan`.
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
  certificate: Certificate | None = None

  @property
  def converged(self) -> bool:
    """Whether the search reached ``grad_norm <= tol``."""
    return self.kind != "not_converged"


# ------------------------------------------------------------------- index / kind

@functools.partial(jax.jit, static_argnames=("loss_fn", "batch_size", "chunk"))
def _dense_eigenvalues_impl(params, data, *, loss_fn, batch_size, chunk):
  """Ascending spectrum of ``(Ĥ + Ĥᵀ)/2`` and ``‖Ĥ − Ĥᵀ‖₂`` of the assembled Hessian."""
  flat, unravel = ravel_pytree(params)
  matvec = hvp_fn(loss_fn, data, batch_size=batch_size)
  column = lambda e: ravel_pytree(matvec(params, unravel(e)))[0]  # noqa: E731
  hess = jax.lax.map(column, jnp.eye(flat.size, dtype=flat.dtype), batch_size=chunk)
  skew = hess - hess.T
  asym = jnp.sqrt(jnp.maximum(jnp.max(jnp.linalg.eigvalsh(skew.T @ skew)), 0.0))
  return jnp.linalg.eigvalsh(0.5 * (hess + hess.T)), asym


def _default_eig_tol(scale: float, dtype: np.dtype) -> float:
  """``max(1e-6, √ε) · max|λ|``: the relative part of the default cut."""
  return max(1e-6, math.sqrt(float(jnp.finfo(dtype).eps))) * scale


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
  num_params = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))
  noise_key = jax.random.key(0) if key is None else jax.random.fold_in(key, 1)
  if s.index_method == "eigh":
    cert = _dense_certificate(s.loss_fn, params, s.data, noise_key, s.batch_size, s.eig_tol)
    kind = cert.kind if converged else "not_converged"
    return CriticalPoint(params, loss, gnorm, cert.index_lower / num_params, kind, steps,
                         "eigh", cert.index_lower, cert.eigenvalues, cert)
  from landscape import hessian  # the SLQ density lives with the other Hessian probes
  cert = certify(s.loss_fn, params, s.data, eps=s.eig_tol, key=noise_key,
                 batch_size=s.batch_size)
  dens = hessian.density(s.loss_fn, params, s.data, key=key, num_runs=s.slq_runs,
                         num_steps=s.slq_steps, batch_size=s.batch_size)
  index = float(hessian.negative_fraction(dens, threshold=-(cert.eps + cert.margin)))
  kind = cert.kind if converged else "not_converged"
  return CriticalPoint(params, loss, gnorm, index, kind, steps, "slq", certificate=cert)


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
  spectrum λ; else SLQ (:func:`landscape.hessian.density`) estimates the index and
  :func:`certify` (one Lanczos run) bounds it. Eigenvalues with ``|λ| <= eps`` are
  *flat* (zero; symmetries make them common): ``eps = eig_tol`` if given, else
  ``max(1e-6, √ε) · max|λ|`` with ε the parameters' machine epsilon. Every eigenvalue
  interval is widened by ``margin = NOISE_FACTOR · noise``, ``noise`` the measured
  floating-point noise of the HVP (with ``eigh`` also the asymmetry ``‖Ĥ − Ĥᵀ‖₂`` of the
  assembled matrix; see :func:`certify`). ``kind``: ``not_converged`` if ``‖∇L‖ > tol``;
  else :attr:`Certificate.kind` (``minimum``, ``saddle``, ``maximum`` or
  ``undetermined`` when the bounds cannot decide); ``index = #{λ + margin < −eps} /
  num_params`` (``eigh``) or the SLQ mass below ``−(eps + margin)``.

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
    eig_tol: flat-eigenvalue cut (absolute); ``None``: the measured default above.
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
