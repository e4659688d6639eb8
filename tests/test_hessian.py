"""Tests of landscape.hessian against dense float64 references.

References are independent of the code under test: ``jax.hessian`` of the
raveled loss and ``jnp.linalg.eigh`` (float64), closed-form quadratics, and
NumPy formulas. Every problem is tiny (≤ 99 parameters, 50 samples) and each
compiled function is built once per module (compilation dominates on CPU).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

from landscape import hessian as hs
from landscape import linalg
from landscape.errors import ConfigError, DataError, LandscapeError, ProbeError

EPS = float(np.finfo(np.float64).eps)
NUM_SAMPLES = 50
RAGGED = 7          # 50 = 7 * 7 + 1: seven full batches and a ragged last one
KEY = 0


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


# ------------------------------------------------------------------ test problems

def _mlp(loss: str, seed: int = 0):
  """A 4-12-3 tanh MLP at a random (non-minimal) point: 99 parameters, indefinite H."""
  rng = np.random.default_rng(seed)
  params = {"w1": rng.normal(size=(4, 12)), "b1": 0.1 * rng.normal(size=12),
            "w2": rng.normal(size=(12, 3)) / np.sqrt(12), "b2": 0.1 * rng.normal(size=3)}
  x = rng.normal(size=(NUM_SAMPLES, 4))
  y = rng.normal(size=(NUM_SAMPLES, 3)) if loss == "mse" else rng.integers(0, 3, NUM_SAMPLES)

  def loss_fn(p, batch):
    xb, yb = batch
    out = jnp.tanh(xb @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    if loss == "mse":
      return 0.5 * jnp.mean(jnp.sum((out - yb) ** 2, axis=-1))
    picked = jnp.take_along_axis(out, yb[:, None], axis=-1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(out, axis=-1) - picked)

  return loss_fn, jax.tree.map(jnp.asarray, params), (jnp.asarray(x), jnp.asarray(y))


@functools.partial(jax.jit, static_argnums=0)
def _dense_hessian(loss_fn, params, data):
  """The reference: ``jax.hessian`` of the raveled loss, an (n, n) matrix."""
  flat, unravel = ravel_pytree(params)
  return jax.hessian(lambda f: loss_fn(unravel(f), data))(flat)


def _problem(loss: str) -> dict:
  with jax.enable_x64(True):
    loss_fn, params, data = _mlp(loss)
    h = _dense_hessian(loss_fn, params, data)
    evals, evecs = np.linalg.eigh(np.asarray(h))
    return dict(loss_fn=loss_fn, params=params, data=data, h=np.asarray(h), evals=evals,
                evecs=evecs, dim=evals.size)


@pytest.fixture(scope="module")
def mse():
  """MSE regression: a generic indefinite spectrum (44 of 99 eigenvalues negative)."""
  return _problem("mse")


@pytest.fixture(scope="module")
def ce():
  """Softmax cross-entropy: logit-shift invariance gives a 13-fold zero eigenvalue."""
  return _problem("ce")


# NumPy-side pytree <-> vector helpers, in ravel_pytree's leaf order (eager jnp ops would
# each compile a kernel).

def _flat(tree) -> np.ndarray:
  return np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(tree)])


def _unflat(vec: np.ndarray, like):
  leaves, treedef = jax.tree.flatten(like)
  parts = np.split(np.asarray(vec), np.cumsum([np.size(x) for x in leaves])[:-1])
  return treedef.unflatten([jnp.asarray(p.reshape(np.shape(x))) for p, x in zip(parts, leaves)])


def _rows(tree) -> np.ndarray:
  """A pytree with leading (m,) axes -> (m, n) NumPy matrix."""
  leaves = [np.asarray(x) for x in jax.tree.leaves(tree)]
  return np.concatenate([x.reshape(x.shape[0], -1) for x in leaves], axis=1)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _lanczos_run(loss_fn, params, data, num_steps):
  v0 = linalg.random_tree(jax.random.key(KEY), params)
  return hs.lanczos(functools.partial(hs.hvp_fn(loss_fn, data), params), v0, num_steps)


# ---------------------------------------------------------------------------- HVP

@functools.partial(jax.jit, static_argnums=0, static_argnames="batch_size")
def _hvp(loss_fn, params, v, data, *, batch_size=None):
  return hs.hvp(loss_fn, params, v, data, batch_size=batch_size)


@pytest.mark.parametrize("batch_size", [RAGGED, NUM_SAMPLES])
def test_hvp_matches_dense_batched_or_not(mse, batch_size):
  v = _unflat(np.random.default_rng(1).normal(size=mse["dim"]), mse["params"])
  unbatched = _flat(_hvp(mse["loss_fn"], mse["params"], v, mse["data"]))
  batched = _flat(_hvp(mse["loss_fn"], mse["params"], v, mse["data"], batch_size=batch_size))
  ref = mse["h"] @ _flat(v)
  # Different summation orders: a few eps relative (measured ~2 eps); 100 eps margin.
  atol = 100 * EPS * np.linalg.norm(ref)
  np.testing.assert_allclose(unbatched, ref, rtol=0, atol=atol)
  np.testing.assert_allclose(batched, ref, rtol=0, atol=atol)
  np.testing.assert_allclose(batched, unbatched, rtol=0, atol=atol)


# ------------------------------------------------------------------------ Lanczos

@pytest.mark.parametrize("problem", ["mse", "ce"])
def test_lanczos_to_full_order_reproduces_spectrum(problem, request):
  p = request.getfixturevalue(problem)
  alphas, betas, _ = _lanczos_run(p["loss_fn"], p["params"], p["data"], p["dim"])
  ritz = np.linalg.eigvalsh(np.asarray(hs.tridiagonal(alphas, betas)))
  scale = np.abs(p["evals"]).max()
  # Backward-stable eigenvalues move by ~dim·eps·‖H‖ (Weyl); measured 7e-16 relative.
  np.testing.assert_allclose(ritz, p["evals"], rtol=0, atol=100 * p["dim"] * EPS * scale)
  # Each breakdown (an invariant Krylov space) is continued by a restart with β = 0:
  # single-vector Lanczos sees one copy of a repeated eigenvalue, so the m-fold zero
  # eigenvalue of the CE loss needs exactly m - 1 restarts (none for the MSE loss).
  multiplicity = int(np.sum(np.abs(p["evals"]) < 1e-10 * scale))
  assert int(np.sum(np.asarray(betas[:-1]) == 0)) == max(multiplicity - 1, 0)
  assert (problem == "ce") == (multiplicity == 13)


def test_lanczos_relation_and_orthonormal_basis(mse):
  """At order m = dim the relation A V − V T = β_m v_{m+1} e_mᵀ has β_m = 0: T = Vᵀ H V."""
  alphas, betas, basis = _lanczos_run(mse["loss_fn"], mse["params"], mse["data"], mse["dim"])
  v = _rows(basis).T                                     # (n, m), columns v_1 … v_m
  t = np.asarray(hs.tridiagonal(alphas, betas))
  scale = np.linalg.norm(mse["h"], 2)
  tol = 100 * mse["dim"] * EPS                           # measured ~1e-15
  np.testing.assert_allclose(v.T @ v, np.eye(mse["dim"]), rtol=0, atol=tol)
  np.testing.assert_allclose(mse["h"] @ v - v @ t, 0.0, rtol=0, atol=tol * scale)
  assert float(betas[-1]) == 0.0                         # the space is exhausted


@functools.partial(jax.jit, static_argnums=1)
def _lanczos_dense(a, num_steps, v0):
  return hs.lanczos(lambda u: a @ u, v0, num_steps)


def _random_symmetric(seed: int, distinct: int | None, n: int = 12):
  """A random symmetric matrix whose n eigenvalues take at most ``distinct`` values
  (``None``: n distinct values)."""
  rng = np.random.default_rng(seed)
  if distinct is None:
    values = rng.normal(size=n)
  else:
    values = rng.normal(size=distinct)[rng.integers(0, distinct, n)]
  q, _ = np.linalg.qr(rng.normal(size=(n, n)))
  return (q * values) @ q.T, values, rng.normal(size=n)


@given(seed=st.integers(0, 2 ** 31 - 1))
def test_lanczos_relation_partial_order(seed):
  """A V − V T = β_m v_{m+1} e_mᵀ for m < n: zero but for the last column, which has
  norm β_m and is orthogonal to V; V orthonormal, v_1 = v0 / ‖v0‖."""
  a, values, v0 = _random_symmetric(seed, distinct=None)
  m = 8
  alphas, betas, basis = _lanczos_dense(jnp.asarray(a), m, jnp.asarray(v0))
  v, t = np.asarray(basis).T, np.asarray(hs.tridiagonal(alphas, betas))
  np.testing.assert_allclose(v[:, 0], v0 / np.linalg.norm(v0), atol=100 * EPS)
  tol = 1000 * EPS * max(np.abs(values).max(), 1.0)
  np.testing.assert_allclose(v.T @ v, np.eye(m), rtol=0, atol=1000 * EPS)
  r = a @ v - v @ t
  np.testing.assert_allclose(r[:, :-1], 0.0, rtol=0, atol=tol)
  np.testing.assert_allclose(np.linalg.norm(r[:, -1]), float(betas[-1]), rtol=0, atol=tol)
  np.testing.assert_allclose(v.T @ r[:, -1], 0.0, rtol=0, atol=tol)


@given(seed=st.integers(0, 2 ** 31 - 1), distinct=st.integers(1, 12))
def test_lanczos_full_order_with_repeated_eigenvalues(seed, distinct):
  """Lanczos to order n on a random symmetric matrix with repeated eigenvalues."""
  a, values, v0 = _random_symmetric(seed, distinct)
  n = values.size
  alphas, betas, basis = _lanczos_dense(jnp.asarray(a), n, jnp.asarray(v0))
  t = np.asarray(hs.tridiagonal(alphas, betas))
  off = np.diag(np.asarray(betas)[:-1], 1)
  np.testing.assert_array_equal(t, np.diag(np.asarray(alphas)) + off + off.T)
  scale = max(np.abs(values).max(), 1.0)
  np.testing.assert_allclose(np.linalg.eigvalsh(t), np.sort(values), rtol=0,
                             atol=1000 * EPS * scale)
  v = np.asarray(basis).T
  np.testing.assert_allclose(v.T @ v, np.eye(n), rtol=0, atol=1000 * EPS)


# -------------------------------------------------------------------- eigenvalues

@pytest.fixture(scope="module")
def eig_both(mse):
  with jax.enable_x64(True):
    return hs.eigenvalues(mse["loss_fn"], mse["params"], mse["data"], k=3, which="both",
                          key=jax.random.key(KEY), return_vectors=True)


def test_eigenvalues_match_eigh(mse, eig_both):
  largest, smallest = eig_both
  np.testing.assert_allclose(largest.values, mse["evals"][::-1][:3], rtol=1e-6)
  np.testing.assert_allclose(smallest.values, mse["evals"][:3], rtol=1e-6)
  assert smallest.values[0] < 0  # not at a minimum: the bottom of the spectrum is negative
  for e in eig_both:
    assert e.values.shape == e.residuals.shape == (3,)
    # default tol = 1e-6: the early stop certifies residuals ≤ 1e-6 |λ|
    assert np.all(np.asarray(e.residuals) <= 1e-6 * np.abs(np.asarray(e.values)))
    assert e.num_hvps == largest.num_hvps <= hs._default_num_steps(3, mse["dim"])


@pytest.mark.parametrize("end", [0, 1])
def test_ritz_vectors_are_eigenvectors(mse, eig_both, end):
  e = eig_both[end]
  vecs = _rows(e.vectors)                                         # (k, n)
  assert jax.tree.structure(e.vectors) == jax.tree.structure(mse["params"])
  np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=100 * EPS)
  values = np.asarray(e.values)
  resid = np.linalg.norm(vecs @ mse["h"] - values[:, None] * vecs, axis=1)
  np.testing.assert_allclose(resid, np.asarray(e.residuals), rtol=1e-3, atol=1e3 * EPS)
  assert np.all(resid <= 1e-6 * np.abs(values))
  ref = mse["evecs"][:, ::-1][:, :3] if end == 0 else mse["evecs"][:, :3]
  # |cos| error ~ (residual / gap)²; gaps ≥ 0.07, residuals ≤ 4e-6: ≤ 1e-8
  np.testing.assert_array_less(1 - 1e-6, np.abs(np.sum(vecs * ref.T, axis=1)))


def test_eigenvalues_batched_equals_unbatched(mse, eig_both):
  ragged = hs.eigenvalues(mse["loss_fn"], mse["params"], mse["data"], k=3,
                          key=jax.random.key(KEY), batch_size=RAGGED)
  # Same start vector; the HVPs differ by rounding only, and both runs converge to
  # residuals ≤ 1e-6 |λ| (eigenvalue errors ~ residual² / gap, measured ≤ 1e-12).
  np.testing.assert_allclose(ragged.values, eig_both[0].values, rtol=1e-9)


def test_eigenvalues_early_stop_counts_hvps(mse):
  # Same static arguments as the eig_both fixture (tol is traced): no new compile.
  args = (mse["loss_fn"], mse["params"], mse["data"])
  kwargs = dict(k=3, which="both", key=jax.random.key(KEY), return_vectors=True)
  loose = hs.eigenvalues(*args, tol=1e-2, **kwargs)
  full = hs.eigenvalues(*args, tol=0.0, **kwargs)  # tol = 0: no early stop
  assert loose[0].num_hvps < full[0].num_hvps == hs._default_num_steps(3, mse["dim"])
  for e in loose:
    assert np.all(np.asarray(e.residuals) <= 1e-2 * np.abs(np.asarray(e.values)))


def _quadratic():
  """0.5 θᵀ diag(a) θ over a two-leaf pytree: known spectrum, three negative eigenvalues."""
  a = np.array([-3.0, -2.0, -0.5, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0,
                8.0, 10.0])
  perm = np.random.default_rng(3).permutation(a.size)  # spread the extremes over both leaves
  diag = {"u": jnp.asarray(a[perm][:6]), "v": jnp.asarray(a[perm][6:].reshape(2, 5))}

  class Quadratic:  # an unhashable callable: the probes must not need to hash loss_fn
    __hash__ = None

    def __call__(self, p, batch):
      assert batch is None
      return 0.5 * sum(jnp.sum(d * x ** 2) for d, x in zip(jax.tree.leaves(diag),
                                                           jax.tree.leaves(p)))

  loss_fn = Quadratic()
  params = jax.tree.map(lambda d: jnp.linspace(-1.0, 1.0, d.size).reshape(d.shape), diag)
  return loss_fn, params, a, _flat(diag)


def test_quadratic_known_spectrum():
  loss_fn, params, a, diag = _quadratic()
  largest, smallest = hs.eigenvalues(loss_fn, params, None, k=3, which="both",
                                     key=jax.random.key(KEY), return_vectors=True)
  np.testing.assert_allclose(largest.values, np.sort(a)[::-1][:3], rtol=1e-10)
  np.testing.assert_allclose(smallest.values, np.sort(a)[:3], rtol=1e-10)
  for e in (largest, smallest):  # Ritz vectors are ± the coordinate vectors of those entries
    vecs = _rows(e.vectors)
    expected = np.isclose(np.asarray(e.values)[:, None], diag[None, :], rtol=1e-8)
    np.testing.assert_allclose(np.abs(vecs), expected.astype(float), atol=1e-6)


# -------------------------------------------------------------- curvature primitive

def test_extreme_eigenvalues_fn_vmaps_and_matches_eigh(mse):
  f = hs.extreme_eigenvalues_fn(mse["loss_fn"], mse["data"], num_steps=20)
  centre = _flat(mse["params"])
  flat_points = [centre + s * np.cos(centre) for s in (0.0, 0.05, -0.1)]
  points = [_unflat(x, mse["params"]) for x in flat_points]
  stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *points)
  keys = jax.random.split(jax.random.key(KEY), len(points))
  vmax, vmin = jax.jit(jax.vmap(f))(stacked, keys)
  single = jax.jit(f)
  for i, (point, key) in enumerate(zip(points, keys)):
    lmax, lmin = single(point, key)
    # vmap and a single call run the same arithmetic; allow reassociation only.
    np.testing.assert_allclose([vmax[i], vmin[i]], [lmax, lmin], rtol=1e-10)
    evals = np.linalg.eigvalsh(np.asarray(_dense_hessian(mse["loss_fn"], point, mse["data"])))
    # 20 Lanczos steps on 99 parameters: measured errors ≤ 3e-14 (max) and ≤ 4e-8 (min)
    # relative; the tolerance 1e-6 leaves margin for other keys. Ritz values are
    # interior: λ_min ≤ θ_min, θ_max ≤ λ_max.
    np.testing.assert_allclose([lmax, lmin], [evals[-1], evals[0]], rtol=1e-6)
    scale = np.abs(evals).max()
    assert evals[0] - 1e3 * EPS * scale <= lmin and lmax <= evals[-1] + 1e3 * EPS * scale


# -------------------------------------------------------------------------- trace

@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_within_four_standard_errors(mse, method):
  est, se = hs.trace(mse["loss_fn"], mse["params"], mse["data"], key=jax.random.key(KEY),
                     num_samples=60, method=method)
  exact = np.trace(mse["h"])
  assert 0 < float(se) < 0.2 * abs(exact)  # an informative estimate, not a huge error bar
  assert abs(float(est) - exact) <= 4 * float(se)


def test_trace_batched_equals_unbatched(mse):
  args = (mse["loss_fn"], mse["params"], mse["data"])
  full = hs.trace(*args, key=jax.random.key(KEY), num_samples=60)
  ragged = hs.trace(*args, key=jax.random.key(KEY), num_samples=60, batch_size=RAGGED)
  np.testing.assert_allclose(ragged, full, rtol=1e3 * EPS)  # same probes, rounding only


def _decaying_quadratic(n: int = 60):
  """0.5 θᵀ A θ with A = U diag(10·0.7^i) Uᵀ, U random orthogonal: a decaying spectrum."""
  rng = np.random.default_rng(4)
  u, _ = np.linalg.qr(rng.normal(size=(n, n)))
  lam = 10.0 * 0.7 ** np.arange(n)
  a = jnp.asarray((u * lam) @ u.T)
  return (lambda p, _: 0.5 * p @ a @ p), jnp.ones(n), float(lam.sum())


def test_hutchpp_beats_hutchinson_on_decaying_spectrum():
  loss_fn, params, exact = _decaying_quadratic()
  results = {m: hs.trace(loss_fn, params, key=jax.random.key(KEY), num_samples=30, method=m)
             for m in ("hutchinson", "hutch++")}
  for est, se in results.values():
    assert abs(float(est) - exact) <= 4 * float(se)
  # Deflating the 10 largest eigenvalues leaves a tail with ~100x less Frobenius mass;
  # measured stderr ratios 0.05–0.17 over three keys at 30 HVPs each.
  assert float(results["hutch++"][1]) < 0.25 * float(results["hutchinson"][1])


# ------------------------------------------------------------------------ density

def test_density_mse(mse):
  runs, steps = 8, 50
  d = hs.density(mse["loss_fn"], mse["params"], mse["data"], key=jax.random.key(KEY),
                 num_runs=runs, num_steps=steps)
  assert d.grid.shape == d.density.shape == (1000,)
  assert d.ritz_values.shape == d.weights.shape == (runs, steps)
  assert d.num_hvps == runs * steps
  np.testing.assert_allclose(np.trapezoid(np.asarray(d.density), np.asarray(d.grid)), 1.0,
                             atol=1e-6)
  assert np.all(np.asarray(d.density) >= 0)
  np.testing.assert_allclose(np.asarray(d.weights).sum(axis=1), 1.0, atol=1e3 * EPS)
  assert d.grid[0] <= mse["evals"][0] and mse["evals"][-1] <= d.grid[-1]
  # The extreme Ritz values converge in 50 steps, so the grid's span is tight.
  np.testing.assert_allclose([d.ritz_values.min(), d.ritz_values.max()],
                             [mse["evals"][0], mse["evals"][-1]], rtol=1e-8)
  # SLQ of a fraction f over R normalized Rademacher probes in dimension n has standard
  # deviation ≈ sqrt(2 f (1 − f) / (R n)) = 0.025 here; allow 4 of them (0.1). Measured
  # |error| ≤ 0.05 over six keys at (R, steps) = (8, 50).
  exact = float(np.mean(mse["evals"] < 0))
  sd = np.sqrt(2 * exact * (1 - exact) / (runs * mse["dim"]))
  assert abs(hs.negative_fraction(d) - exact) <= 4 * sd
  assert hs.negative_fraction(d, threshold=np.inf) == pytest.approx(1.0, abs=1e3 * EPS)


def test_density_exact_on_diagonal_quadratic():
  """With num_steps = dim, SLQ is exact quadrature: vᵀ 1[H<0] v, and for a diagonal H
  and a normalized Rademacher v that is exactly (number of negatives) / n."""
  loss_fn, params, a, _ = _quadratic()
  d = hs.density(loss_fn, params, key=jax.random.key(KEY), num_runs=2, num_steps=a.size,
                 grid_size=500)
  np.testing.assert_allclose(np.sort(np.asarray(d.ritz_values), axis=1),  # ‖A‖ = 10
                             np.tile(np.sort(a), (2, 1)), rtol=0, atol=1e3 * EPS * 10)
  np.testing.assert_allclose(np.asarray(d.weights), 1.0 / a.size, atol=1e3 * EPS)
  assert hs.negative_fraction(d) == pytest.approx(np.mean(a < 0), abs=1e3 * EPS)
  assert hs.negative_fraction(d, threshold=1.2) == pytest.approx(np.mean(a < 1.2), abs=1e3 * EPS)
  np.testing.assert_allclose(np.trapezoid(np.asarray(d.density), np.asarray(d.grid)), 1.0,
                             atol=1e-6)
  assert d.grid[0] < a.min() and a.max() < d.grid[-1]


# ------------------------------------------------------------------------- errors

def test_errors_name_the_bad_value(mse):
  args = (mse["loss_fn"], mse["params"], mse["data"])
  key = jax.random.key(KEY)
  with pytest.raises(ConfigError, match=r"k=100 exceeds the number of parameters \(99\)"):
    hs.eigenvalues(*args, k=100, key=key)
  with pytest.raises(ConfigError, match=r"k must be an integer >= 1, got 0"):
    hs.eigenvalues(*args, k=0, key=key)
  with pytest.raises(ConfigError, match=r"unknown which 'middle'.*both, largest, smallest"):
    hs.eigenvalues(*args, which="middle", key=key)
  with pytest.raises(ConfigError, match=r"num_steps=2 is smaller than k=3"):
    hs.eigenvalues(*args, k=3, num_steps=2, key=key)
  with pytest.raises(ConfigError, match=r"key must be a JAX PRNG key, got int 0"):
    hs.eigenvalues(*args, key=0)
  with pytest.raises(ConfigError, match=r"unknown trace method 'exact'"):
    hs.trace(*args, key=key, method="exact")
  with pytest.raises(ConfigError, match=r"num_samples must be an integer >= 4, got 3"):
    hs.trace(*args, key=key, num_samples=3, method="hutch++")
  with pytest.raises(ConfigError, match=r"sigma must be a finite number > 0 or None, got -1"):
    hs.density(*args, key=key, sigma=-1.0)
  with pytest.raises(DataError, match=r"leading sizes \[3, 50\]"):
    hs.eigenvalues(mse["loss_fn"], mse["params"], (mse["data"][0], mse["data"][1][:3]), key=key)
  with pytest.raises(ConfigError, match=r"batch_size must be an integer >= 1, got 0"):
    hs.trace(*args, key=key, batch_size=0)
  with pytest.raises(ConfigError, match=r"params leaf \['w1'\] has dtype int32"):
    hs.eigenvalues(mse["loss_fn"], {**mse["params"], "w1": jnp.zeros((4, 12), jnp.int32)},
                   mse["data"], key=key)


@pytest.mark.parametrize("probe", ["eigenvalues", "trace", "density"])
def test_non_finite_probe_point(mse, probe):
  bad = jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan), mse["params"])
  fn = getattr(hs, probe)
  with pytest.raises(ProbeError, match=r"^loss is nan at the probe point; ") as info:
    fn(mse["loss_fn"], bad, mse["data"], key=jax.random.key(KEY))
  assert isinstance(info.value, LandscapeError) and "\n" not in str(info.value)


def test_non_finite_gradient():
  loss_fn = lambda p, _: jnp.sum(jnp.sqrt(p))  # noqa: E731  finite at 0, gradient inf
  with pytest.raises(ProbeError, match=r"gradient norm is inf at the probe point"):
    hs.eigenvalues(loss_fn, jnp.zeros(3), key=jax.random.key(KEY))
