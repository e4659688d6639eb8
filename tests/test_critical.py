"""Tests of landscape.critical: MINRES-QLP, Newton-MR / GNM critical points, Morse
indices, deduplicating scans and grid critical points.

References are independent of the code under test: NumPy pinv/lstsq/solve,
dense ``jnp.linalg.eigh(jax.hessian(...))`` in float64, analytic critical points
(double well, deep linear autoencoder, quadratics) and explicit NumPy gradients.
Shapes are fixed per test so each search compiles once.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from landscape import critical
from landscape.errors import ConfigError, DataError, LandscapeError, ProbeError

EPS64 = float(np.finfo(np.float64).eps)


# ------------------------------------------------------------------ MINRES-QLP

N_SYS = 10                  # fixed system size: one compile
RTOL = 1e-12


@jax.jit
def _minres_dense(a, b, shift):
  return critical.minres_qlp(lambda v: a @ v, b, rtol=RTOL, maxiter=4 * N_SYS, shift=shift)


def _symmetric(rng: np.random.Generator, rank: int, n: int = N_SYS) -> np.ndarray:
  """Symmetric indefinite matrix of the given rank; nonzero |λ| in [0.5, 3] (cond <= 6)."""
  q = np.linalg.qr(rng.normal(size=(n, n)))[0]
  lam = rng.uniform(0.5, 3.0, size=n) * rng.choice([-1.0, 1.0], size=n)
  lam[rank:] = 0.0
  a = (q * lam) @ q.T
  return 0.5 * (a + a.T)


def _atol(b, ref, consistent, min_gap=0.5):
  """Error bound on x.

  Consistent: ‖x − x*‖ <= ‖A^†‖ ‖r‖ <= rtol ‖b‖ / min|λ≠0| (min_gap = 0.5 here,
  0.25 with the shift), plus 1e3 ε ‖x*‖ of Lanczos rounding. Inconsistent: the
  minimum-length solution is exact up to the √ε numerical-rank cut of MINRES-QLP
  (measured <= 1.5 √ε ‖x*‖ over 1000 random systems; 10 √ε allowed).
  """
  if consistent:
    return RTOL * np.linalg.norm(b) / min_gap + 1e3 * EPS64 * np.linalg.norm(ref)
  return 10 * math.sqrt(EPS64) * np.linalg.norm(ref)


@pytest.mark.parametrize("case", ["nonsingular", "singular_consistent",
                                  "singular_inconsistent", "shifted"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_minres_qlp_matches_numpy(case, seed):
  rng = np.random.default_rng(seed)
  rank = N_SYS if case in ("nonsingular", "shifted") else N_SYS - 3
  a = _symmetric(rng, rank)
  b = a @ rng.normal(size=N_SYS) if case == "singular_consistent" else rng.normal(size=N_SYS)
  shift = 0.25 if case == "shifted" else 0.0   # 0.25 is no eigenvalue: |λ| >= 0.5
  with jax.enable_x64(True):
    x, info = _minres_dense(jnp.asarray(a), jnp.asarray(b), shift)
  x = np.asarray(x)
  consistent = case != "singular_inconsistent"
  if rank == N_SYS:
    ref = np.linalg.solve(a - shift * np.eye(N_SYS), b)
  else:
    ref = np.linalg.pinv(a, rcond=1e-10) @ b
    lstsq = np.linalg.lstsq(a, b, rcond=1e-10)[0]           # also the min-norm LS solution
    np.testing.assert_allclose(ref, lstsq, rtol=0, atol=1e3 * EPS64 * np.linalg.norm(ref))
  atol = _atol(b, ref, consistent, min_gap=0.25 if shift else 0.5)
  np.testing.assert_allclose(x, ref, rtol=0, atol=atol)
  if consistent:
    assert int(info.flag) in (1, 3)              # residual test / Krylov space exhausted
    assert float(info.residual_norm) <= RTOL * np.linalg.norm(b)
  else:
    # The LS residual is orthogonal to range(A), and x has no null-space component.
    lam, vec = np.linalg.eigh(a)
    null = vec[:, np.abs(lam) < 1e-8]
    assert null.shape[1] == 3
    assert np.linalg.norm(null.T @ x) <= atol
    # A r = A² (x* − x) since A r* = 0; ‖A‖ <= 3.
    assert np.linalg.norm(a @ (b - a @ x)) <= 9.0 * atol
    assert int(info.flag) in (2, 3)              # least-squares / Krylov space exhausted
  assert int(info.iterations) <= N_SYS


@given(seed=st.integers(0, 2**31 - 1), rank=st.integers(N_SYS - 4, N_SYS),
       consistent=st.booleans())
def test_minres_qlp_is_pseudoinverse_property(seed, rank, consistent):
  rng = np.random.default_rng(seed)
  a = _symmetric(rng, rank)
  b = a @ rng.normal(size=N_SYS) if consistent else rng.normal(size=N_SYS)
  with jax.enable_x64(True):
    x, _ = _minres_dense(jnp.asarray(a), jnp.asarray(b), 0.0)
  ref = np.linalg.pinv(a, rcond=1e-10) @ b
  np.testing.assert_allclose(np.asarray(x), ref, rtol=0,
                             atol=_atol(b, ref, consistent or rank == N_SYS))


def test_minres_qlp_on_pytrees_and_zero_rhs():
  rng = np.random.default_rng(3)
  a = _symmetric(rng, N_SYS - 2)
  b = rng.normal(size=N_SYS)
  with jax.enable_x64(True):
    tree_b = {"u": jnp.asarray(b[:4]), "w": jnp.asarray(b[4:]).reshape(2, 3)}
    flat = lambda t: jnp.concatenate([t["u"], t["w"].reshape(-1)])  # noqa: E731
    unflat = lambda v: {"u": v[:4], "w": v[4:].reshape(2, 3)}       # noqa: E731
    solve = jax.jit(lambda rhs: critical.minres_qlp(lambda t: unflat(jnp.asarray(a) @ flat(t)),
                                                    rhs, rtol=RTOL, maxiter=40))
    x, _ = solve(tree_b)
    assert x["w"].shape == (2, 3) and x["u"].dtype == jnp.float64
    ref = np.linalg.pinv(a, rcond=1e-10) @ b
    np.testing.assert_allclose(np.asarray(flat(x)), ref, rtol=0,
                               atol=_atol(b, ref, consistent=False))
    x0, info0 = solve(jax.tree.map(jnp.zeros_like, tree_b))
  assert int(info0.flag) == 0 and int(info0.iterations) == 0
  assert all(np.all(np.asarray(leaf) == 0) for leaf in jax.tree.leaves(x0))


# ------------------------------------------------------------------- double well

def double_well(params, batch):
  """f(x, y) = x⁴/4 − x²/2 + y²/2: minima (±1, 0) (f = −1/4), saddle (0, 0) (f = 0)."""
  del batch
  x, y = params["x"], params["y"]
  return x ** 4 / 4 - x ** 2 / 2 + y ** 2 / 2


def _dw_hessian_eigs(x):
  return np.sort([3 * x ** 2 - 1, 1.0])


@pytest.mark.parametrize("method,options", [("newton_mr", {}), ("gnm", {"max_steps": 400})])
@pytest.mark.parametrize("start,target,kind,loss", [
    ((0.2, -0.3), (0.0, 0.0), "saddle", 0.0),
    ((0.8, 0.2), (1.0, 0.0), "minimum", -0.25),
    ((-0.9, -0.15), (-1.0, 0.0), "minimum", -0.25),
])
def test_double_well_critical_points(method, options, start, target, kind, loss):
  tol = 1e-8
  with jax.enable_x64(True):
    params0 = {"x": jnp.asarray(start[0]), "y": jnp.asarray(start[1])}
    cp = critical.find(double_well, params0, method=method, tol=tol, **options)
  assert cp.kind == kind and cp.converged
  assert cp.grad_norm <= tol and 0 < cp.steps
  # |θ − θ*| <= ‖g‖ / min|λ(H)| with min|λ| = 1 near every critical point here.
  found = np.array([float(cp.params["x"]), float(cp.params["y"])])
  assert np.linalg.norm(found - np.array(target)) <= 2 * tol
  assert abs(cp.loss - loss) <= tol ** 2 + 8 * EPS64
  assert cp.index_method == "eigh"
  assert cp.index == (0.5 if kind == "saddle" else 0.0)
  assert cp.num_negative == (1 if kind == "saddle" else 0)
  # Exact spectrum vs the analytic Hessian diag(3x² − 1, 1) at the target; the
  # third derivative (6x) times the distance bounds the difference.
  np.testing.assert_allclose(cp.eigenvalues, _dw_hessian_eigs(target[0]), rtol=0,
                             atol=12 * tol + 8 * EPS64)


def test_gnm_accepts_an_optax_optimizer():
  with jax.enable_x64(True):
    cp = critical.find(double_well, {"x": jnp.asarray(0.1), "y": jnp.asarray(0.2)},
                       method="gnm", optimizer=optax.sgd(0.5), max_steps=300, tol=1e-8)
  assert cp.kind == "saddle" and cp.index == 0.5 and cp.grad_norm <= 1e-8


def test_max_steps_zero_classifies_the_start():
  with jax.enable_x64(True):
    cp = critical.find(double_well, {"x": jnp.asarray(0.3), "y": jnp.asarray(0.1)},
                       max_steps=0)
  assert cp.kind == "not_converged" and not cp.converged and cp.steps == 0
  assert float(cp.params["x"]) == 0.3
  np.testing.assert_allclose(cp.eigenvalues, _dw_hessian_eigs(0.3), rtol=8 * EPS64)
  assert cp.num_negative == 1 and cp.index == 0.5


# -------------------------------------------------- deep linear autoencoder

D, P, N_AE = 4, 2, 16
LAM = np.array([4.0, 3.0, 2.0, 1.0])        # distinct eigenvalues of Σ = X Xᵀ / N


def ae_loss(params, x):
  """(1/2N) ‖X − W₂W₁X‖²_F as a mean over samples x_i (rows of ``x``)."""
  rec = x @ params["w1"].T @ params["w2"].T
  return 0.5 * jnp.mean(jnp.sum((x - rec) ** 2, axis=-1))


@pytest.fixture(scope="module")
def autoencoder():
  rng = np.random.default_rng(0)
  u = np.linalg.qr(rng.normal(size=(D, D)))[0]
  q = np.linalg.qr(rng.normal(size=(N_AE, D)))[0]       # orthonormal columns
  x = u @ np.diag(np.sqrt(N_AE * LAM)) @ q.T             # (D, N): X Xᵀ / N = U Λ Uᵀ
  np.testing.assert_allclose(x @ x.T / N_AE, u @ np.diag(LAM) @ u.T, atol=1e3 * EPS64)
  return u, x.T


def _ae_index(subset):
  """Morse index at W₂W₁ = U_S U_Sᵀ (|S| = p).

  Writing W₂ = U_S + E₂, W₁ = U_Sᵀ + E₁ and expanding L to second order, the
  Hessian splits into 2×2 blocks, one per pair (j ∉ S, s ∈ S) with matrix
  [[λ_s, −λ_j], [−λ_j, λ_j]] (determinant λ_j (λ_s − λ_j)): negative exactly when
  λ_j > λ_s; the p² directions W₂ ↦ W₂A, W₁ ↦ −AW₁ are flat (the GL(p) symmetry)
  and the rest positive. Any other C (W₂ = U_S C, W₁ = C⁻¹U_Sᵀ) is a congruent
  Hessian, hence the same inertia (Sylvester). Cf. Baldi & Hornik, Neural Networks
  1989; Kawaguchi, NeurIPS 2016; Frye et al., Neural Computation 2021.
  """
  return sum(1 for j in range(D) if j not in subset for s in subset if LAM[j] > LAM[s])


@pytest.mark.parametrize("subset", [(0, 1), (0, 2), (1, 2), (2, 3)])
def test_linear_autoencoder_critical_points(autoencoder, subset):
  u, data = autoencoder
  rng = np.random.default_rng(sum(subset) + 7)
  u_s = u[:, subset]
  c = np.eye(P) + 0.3 * rng.normal(size=(P, P))
  loss_ref = 0.5 * sum(LAM[i] for i in range(D) if i not in subset)
  index_ref = _ae_index(subset)
  with jax.enable_x64(True):
    exact = {"w1": jnp.asarray(np.linalg.inv(c) @ u_s.T), "w2": jnp.asarray(u_s @ c)}
    # Independent reference: dense float64 Hessian at the analytic critical point.
    flat, unravel = jax.flatten_util.ravel_pytree(exact)
    hess = jax.hessian(lambda v: ae_loss(unravel(v), jnp.asarray(data)))(flat)
    eigs = np.asarray(jnp.linalg.eigh(hess)[0])
    cut = 1e-8 * np.abs(eigs).max()
    assert int(np.sum(eigs < -cut)) == index_ref
    assert int(np.sum(np.abs(eigs) <= cut)) == P * P                  # GL(p) flat directions
    assert float(ae_loss(exact, jnp.asarray(data))) == pytest.approx(loss_ref, rel=1e3 * EPS64)
    start = jax.tree.map(lambda w: w + 1e-2 * jnp.asarray(rng.normal(size=w.shape)), exact)
    cp = critical.find(ae_loss, start, jnp.asarray(data), tol=1e-10)
  assert cp.converged and cp.grad_norm <= 1e-10
  assert cp.loss == pytest.approx(loss_ref, rel=1e-8)
  assert cp.num_negative == index_ref
  assert cp.index == index_ref / (2 * D * P)
  assert cp.kind == ("minimum" if index_ref == 0 else "saddle")
  assert int(np.sum(np.abs(cp.eigenvalues) <= 1e-6 * np.abs(cp.eigenvalues).max())) == P * P
  # The found point reconstructs with the projection onto the chosen eigenvectors.
  proj = np.asarray(cp.params["w2"]) @ np.asarray(cp.params["w1"])
  np.testing.assert_allclose(proj, u_s @ u_s.T, rtol=0, atol=1e-8)


# ------------------------------------------------------- full-dataset semantics

def tanh_loss(params, batch):
  x, y = batch
  return 0.5 * jnp.mean((y - jnp.tanh(x @ params["w"] + params["b"])) ** 2)


def _tanh_grad_numpy(w, b, x, y):
  """Explicit gradient of (1/2N) Σ (y − tanh(xw + b))²."""
  t = np.tanh(x @ w + b)
  r = (t - y) * (1 - t ** 2)
  return np.concatenate([x.T @ r, [r.sum()]]) / len(y)


def test_batched_search_equals_unbatched():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(30, 3))
  y = np.tanh(x @ np.array([0.7, -0.4, 0.2]) + 0.1) + 0.05 * rng.normal(size=30)
  with jax.enable_x64(True):
    data = (jnp.asarray(x), jnp.asarray(y))
    start = {"w": jnp.zeros(3), "b": jnp.asarray(0.0)}
    full = critical.find(tanh_loss, start, data, tol=1e-9)
    batched = critical.find(tanh_loss, start, data, tol=1e-9, batch_size=7)  # 4 × 7 + 2
  for cp in (full, batched):
    assert cp.kind == "minimum" and cp.grad_norm <= 1e-9
    grad = _tanh_grad_numpy(np.asarray(cp.params["w"]), float(cp.params["b"]), x, y)
    assert np.linalg.norm(grad) <= 1e-9 * (1 + 1e-3)               # independent gradient
  # Same point up to ‖g‖/λ_min of either (λ_min ≈ 0.3 here) and summation rounding.
  np.testing.assert_allclose(np.asarray(batched.params["w"]), np.asarray(full.params["w"]),
                             rtol=0, atol=1e-8)
  assert batched.loss == pytest.approx(full.loss, rel=1e-12)
  np.testing.assert_allclose(batched.eigenvalues, full.eigenvalues, rtol=0,
                             atol=1e-8 * np.abs(full.eigenvalues).max())


# --------------------------------------------------------- classification

def quadratic(theta, batch):
  """½ θᵀAθ + cᵀθ; A and c ride in ``batch`` (one compile for every spectrum)."""
  a, c = batch
  return 0.5 * theta @ a @ theta + c @ theta


def _quadratic_data(spec, seed=0):
  rng = np.random.default_rng(seed)
  q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
  a = (q * np.asarray(spec, dtype=np.float64)) @ q.T
  a = 0.5 * (a + a.T)
  theta_star = rng.normal(size=3)
  return a, -a @ theta_star                        # c in range(A): critical points exist


@pytest.mark.parametrize("spec,eig_tol,kind,num_negative", [
    ((1.0, 2.0, 3.0), None, "minimum", 0),
    ((-1.0, -2.0, -3.0), None, "maximum", 3),
    ((-1.0, 2.0, 3.0), None, "saddle", 1),
    ((0.0, 1.0, 2.0), None, "minimum", 0),        # a flat direction is not negative
    ((0.0, -1.0, -2.0), None, "maximum", 2),
    ((-1e-4, 1.0, 2.0), None, "saddle", 1),       # |λ| = 1e-4 > 1e-6 · max|λ|: counted
    ((-1e-4, 1.0, 2.0), 1e-3, "minimum", 0),      # ... but flat under eig_tol = 1e-3
    ((1e-4, -1.0, -2.0), 1e-3, "maximum", 2),
])
def test_classification_thresholds(spec, eig_tol, kind, num_negative):
  a, c = _quadratic_data(spec)
  with jax.enable_x64(True):
    start = jnp.asarray(np.linalg.pinv(a) @ -c + 0.1)
    cp = critical.find(quadratic, start, (jnp.asarray(a), jnp.asarray(c)), eig_tol=eig_tol,
                       tol=1e-10)
  assert cp.kind == kind and cp.num_negative == num_negative
  assert cp.index == num_negative / 3
  np.testing.assert_allclose(cp.eigenvalues, np.sort(spec), rtol=0, atol=1e3 * EPS64)


def test_not_converged_from_a_far_start():
  # From x = 1000 Newton-MR shrinks x by about 1/3 a step: 3 real steps end far from
  # every critical point of the double well, with |grad| ~ x³ ≫ tol.
  tol, x0 = 1e-8, 1e3
  with jax.enable_x64(True):
    cp = critical.find(double_well, {"x": jnp.asarray(x0), "y": jnp.asarray(5.0)},
                       tol=tol, max_steps=3)
  x = float(cp.params["x"])
  assert cp.steps == 3 and not cp.converged and cp.kind == "not_converged"
  assert cp.grad_norm > 1e3 * tol and 1.0 < x < x0  # it moved, towards x = 1, not there
  g = np.array([x ** 3 - x, float(cp.params["y"])])
  np.testing.assert_allclose(cp.grad_norm, np.linalg.norm(g), rtol=1e-12)
  # The spectrum is still reported, at the end point: diag(3x² − 1, 1).
  np.testing.assert_allclose(cp.eigenvalues, _dw_hessian_eigs(x), rtol=1e-12)
  assert cp.num_negative == 0 and cp.index == 0.0


@pytest.mark.parametrize("spec,kind,index", [((-1.0, 2.0, 3.0), "saddle", 1 / 3),
                                             ((1.0, 2.0, 3.0), "minimum", 0.0)])
def test_slq_index_on_diagonal_quadratic(spec, kind, index):
  # H = diag(spec): a normalized Rademacher probe has weight exactly 1/n on each
  # eigenvector and Lanczos run to n steps is exact, so SLQ gives #negative / n.
  a = np.diag(spec)
  with jax.enable_x64(True):
    cp = critical.find(quadratic, 1e-3 * jnp.ones(3), (jnp.asarray(a), jnp.zeros(3)),
                       dense_threshold=2, key=jax.random.key(0), slq_runs=2, slq_steps=3)
  assert cp.index_method == "slq" and cp.eigenvalues is None and cp.num_negative is None
  assert cp.kind == kind
  assert cp.index == pytest.approx(index, abs=1e3 * EPS64)


# -------------------------------------------------------------------- scan

def test_scan_deduplicates_the_double_well():
  with jax.enable_x64(True):
    centres = [{"x": jnp.asarray(x), "y": jnp.asarray(0.05)} for x in (-0.95, 0.1, 0.95)]
    starts = [p for i, centre in enumerate(centres)
              for p in [centre] + critical.perturbations(jax.random.key(i), centre, 3, 0.1)]
    far = {"x": jnp.asarray(1e3), "y": jnp.asarray(5.0)}   # Newton: x shrinks ~2/3 a step
    nan = {"x": jnp.asarray(jnp.nan), "y": jnp.asarray(0.0)}
    points = critical.scan(double_well, starts + [far, nan], tol=1e-9, max_steps=8)
    with_far = critical.scan(double_well, [nan, far] + starts, tol=1e-9, max_steps=8,
                             keep_unconverged=True)
  assert [p.kind for p in points] == ["minimum", "minimum", "saddle"]
  xs = sorted(float(p.params["x"]) for p in points)
  np.testing.assert_allclose(xs, [-1.0, 0.0, 1.0], atol=1e-8)
  assert [p.loss for p in points] == sorted(p.loss for p in points)
  assert [p.index for p in points] == [0.0, 0.0, 0.5]
  assert [p.kind for p in with_far] == ["minimum", "minimum", "saddle"] + ["not_converged"] * 2
  assert with_far[-2].loss > 1e5 and math.isnan(with_far[-1].loss)
  assert with_far[-1].index_method == "none" and math.isnan(with_far[-1].index)


def test_perturbations_are_relative_per_leaf():
  params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.zeros(3, jnp.float32)}
  out = critical.perturbations(jax.random.key(0), params, 4, 0.1)
  again = critical.perturbations(jax.random.key(0), params, 4, 0.1)
  assert len(out) == 4
  for p, q in zip(out, again):
    assert jax.tree.structure(p) == jax.tree.structure(params)
    assert p["w"].shape == (2, 3) and p["b"].dtype == jnp.float32
    rel = np.linalg.norm(np.asarray(p["w"] - params["w"])) / np.linalg.norm(params["w"])
    assert rel == pytest.approx(0.1, rel=1e-5)    # float32 leaves: rounding ~1e-7
    assert np.linalg.norm(np.asarray(p["b"])) > 0  # a zero leaf moves by scale · N(0, I)
    np.testing.assert_array_equal(np.asarray(p["w"]), np.asarray(q["w"]))
  assert not np.array_equal(np.asarray(out[0]["w"]), np.asarray(out[1]["w"]))
  assert critical.perturbations(jax.random.key(0), params, 0, 0.1) == []


# ------------------------------------------------------------- grid surfaces

_T = np.linspace(-1.0, 1.0, 37)
XS = 1.8 * np.sinh(1.3 * _T) / np.sinh(1.3) + 0.05      # non-uniform, 37 points
_S = np.linspace(-1.2, 1.1, 29)
YS = 0.8 * _S ** 3 + 0.5 * _S                             # non-uniform, 29 points


def _spacing(axis, at):
  i = int(np.clip(np.searchsorted(axis, at), 1, axis.size - 1))
  return axis[i] - axis[i - 1]


@pytest.mark.parametrize("name,fn,expected", [
    ("saddle", lambda x, y: x ** 2 - y ** 2, [((0.0, 0.0), "saddle", 0.0)]),
    ("double_well", lambda x, y: (x ** 2 - 1) ** 2 + y ** 2,
     [((-1.0, 0.0), "minimum", 0.0), ((1.0, 0.0), "minimum", 0.0), ((0.0, 0.0), "saddle", 1.0)]),
    ("maximum", lambda x, y: -(x ** 2 + y ** 2), [((0.0, 0.0), "maximum", 0.0)]),
])
def test_grid_critical_points_on_analytic_surfaces(name, fn, expected):
  z = fn(XS[None, :], YS[:, None])
  res = critical.grid_critical_points(XS, YS, z)
  assert len(res) == len(expected)
  assert res.coords.shape == (len(expected), 2)
  for (target, kind, loss) in expected:
    dist = np.abs(res.coords - np.array(target))
    i = int(np.argmin(dist.sum(axis=1)))
    # Exact for quadratics; the quartic well has an O(h²) finite-difference error.
    assert dist[i, 0] <= 0.1 * _spacing(XS, target[0])
    assert dist[i, 1] <= 0.1 * _spacing(YS, target[1])
    assert res.kind[i] == kind
    assert res.index[i] == {"minimum": 0.0, "saddle": 0.5, "maximum": 1.0}[kind]
    assert res.loss[i] == pytest.approx(loss, abs=1e-2 if name == "double_well" else 1e-12)
  assert list(res.loss) == sorted(res.loss)


def test_grid_skips_nan_cells_and_accepts_decreasing_axes():
  z = (XS[None, :] ** 2 - 1) ** 2 + YS[:, None] ** 2
  clean = critical.grid_critical_points(XS, YS, z)
  z_far = z.copy()
  z_far[:4, :4] = np.nan                         # diverged corner far from the points
  z_hit = z.copy()
  j0, i0 = int(np.argmin(np.abs(YS))), int(np.argmin(np.abs(XS - 1.0)))
  z_hit[j0 - 1:j0 + 2, i0 - 1:i0 + 2] = np.inf   # diverged around the minimum at (1, 0)
  far = critical.grid_critical_points(XS, YS, z_far)
  hit = critical.grid_critical_points(XS, YS, z_hit)
  np.testing.assert_array_equal(far.coords, clean.coords)
  assert sorted(hit.kind) == ["minimum", "saddle"]
  assert np.all(np.abs(hit.coords[:, 0] - 1.0) > 0.5)
  flipped = critical.grid_critical_points(XS[::-1], YS[::-1], z[::-1, ::-1])
  np.testing.assert_allclose(flipped.coords, clean.coords, rtol=0, atol=1e-12)


@given(seed=st.integers(0, 2**31 - 1), signs=st.sampled_from([(1, 1), (1, -1), (-1, -1)]))
def test_grid_quadratic_property(seed, signs):
  rng = np.random.default_rng(seed)
  rot = np.linalg.qr(rng.normal(size=(2, 2)))[0]
  h = (rot * (np.array(signs) * rng.uniform(0.5, 2.0, size=2))) @ rot.T
  centre = np.array([rng.uniform(-1.0, 1.0), rng.uniform(-0.8, 0.8)])
  offset = rng.normal()
  gx, gy = np.meshgrid(XS, YS)
  d = np.stack([gx - centre[0], gy - centre[1]], axis=-1)
  z = 0.5 * np.einsum("...i,ij,...j->...", d, h, d) + offset
  res = critical.grid_critical_points(XS, YS, z)
  assert len(res) == 1
  np.testing.assert_allclose(res.coords[0], centre, rtol=0, atol=1e-9)
  assert res.loss[0] == pytest.approx(offset, abs=1e-9)
  negatives = sum(s < 0 for s in signs)
  assert res.kind[0] == ("minimum", "saddle", "maximum")[negatives]
  assert res.index[0] == negatives / 2


@pytest.mark.parametrize("xs,ys,z", [
    (XS, YS, np.zeros((YS.size, XS.size + 1))),
    (XS[::-1].copy()[np.r_[0, 2, 1, 3:XS.size]], YS, np.zeros((YS.size, XS.size))),
    (XS[:2], YS, np.zeros((YS.size, 2))),
])
def test_grid_bad_input(xs, ys, z):
  with pytest.raises(DataError) as err:
    critical.grid_critical_points(xs, ys, z)
  assert "\n" not in str(err.value)


# -------------------------------------------------------------------- bad input

def _start():
  return {"x": jnp.asarray(0.2), "y": jnp.asarray(0.1)}


@pytest.mark.parametrize("kwargs,error,text", [
    ({"method": "lbfgs"}, ConfigError, "'lbfgs'"),
    ({"index_method": "lanczos"}, ConfigError, "'lanczos'"),
    ({"max_steps": -1}, ConfigError, "max_steps"),
    ({"max_steps": 2.5}, ConfigError, "max_steps"),
    ({"tol": 0.0}, ConfigError, "tol"),
    ({"tol": -1e-3}, ConfigError, "tol"),
    ({"tol": float("nan")}, ConfigError, "tol"),
    ({"inner_rtol": 1e-3, "method": "gnm"}, ConfigError, "inner_rtol"),
    ({"ls_beta": 1.5}, ConfigError, "ls_beta"),
    ({"index_method": "slq"}, ConfigError, "key"),
    ({"eig_tol": -1.0}, ConfigError, "eig_tol"),
    ({"batch_size": 0}, ConfigError, "batch_size"),
])
def test_bad_arguments(kwargs, error, text):
  with pytest.raises(error) as err:
    critical.find(double_well, _start(), **kwargs)
  message = str(err.value)
  assert text in message and "\n" not in message
  assert isinstance(err.value, LandscapeError)


def test_unknown_method_lists_the_valid_ones():
  with pytest.raises(ConfigError, match="gnm, newton_mr"):
    critical.find(double_well, _start(), method="newton")


@pytest.mark.parametrize("x,y,value", [(0.0, math.inf, "inf"), (math.nan, 0.0, "nan")])
def test_non_finite_start_is_a_probe_error(x, y, value):
  with pytest.raises(ProbeError) as err, jax.enable_x64(True):   # x64: reuses the compile
    critical.find(double_well, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, tol=1e-8)
  message = str(err.value)
  assert f"is {value}" in message and "params0" in message and "\n" not in message


def test_bad_params_and_loss():
  with pytest.raises(ConfigError, match="int32"):
    critical.find(double_well, {"x": jnp.asarray(1, jnp.int32), "y": jnp.asarray(0.0)})
  with pytest.raises(ConfigError, match="scalar"):
    critical.find(lambda p, _: p["x"] * jnp.ones(3), _start())
  with pytest.raises(ConfigError, match="empty"):
    critical.scan(double_well, [])
  with pytest.raises(ConfigError, match="structure"):
    critical.scan(double_well, [_start(), {"x": jnp.asarray(0.1)}])
  with pytest.raises(ConfigError, match="scale"):
    critical.perturbations(jax.random.key(0), _start(), 2, -1.0)
