"""critical.certify: certified Morse-index bounds and the one ``kind`` rule they decide."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

from landscape import critical


def _dense_reference(loss, params, data):
  """Ascending float64 spectrum of ``jax.hessian`` at ``params`` (independent of landscape)."""
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    d64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64)
                       if jnp.issubdtype(a.dtype, jnp.floating) else a, data)
    flat, unravel = ravel_pytree(p64)
    hess = jax.hessian(lambda v: loss(unravel(v), d64))(flat)
    return np.linalg.eigvalsh(np.asarray(hess, np.float64))


def _adam_fit(loss, params, data, steps, lr):
  opt = optax.adam(lr)

  def step(carry, _):
    p, s = carry
    u, s = opt.update(jax.grad(loss)(p, data), s)
    return (optax.apply_updates(p, u), s), None

  run = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), None, length=steps)[0][0])
  return run(params)


# ---------------------------------------------- the kind rule, branch by branch

def _cert(theta, res, largest, largest_res, eps, dim=10):
  theta, res = np.asarray(theta, float), np.asarray(res, float)
  lower, upper, near_zero = critical._counts(theta, res, eps, dim)
  return critical.Certificate(theta, res, largest, largest_res, eps, 0.0, 0.0, lower, upper,
                              near_zero, False, 0, dim, "lanczos")


@pytest.mark.parametrize("theta,res,largest,largest_res,kind,lower,upper", [
    ((0.5, 1.0), (0.0, 0.0), 3.0, 0.0, "minimum", 0, 0),
    ((0.0, 1.0), (0.0, 0.0), 3.0, 0.0, "minimum", 0, 0),          # flat, not negative
    ((-0.5, 1.0), (0.1, 0.0), 3.0, 0.0, "saddle", 1, 1),
    ((-0.5, 1.0), (0.6, 0.0), 3.0, 0.0, "undetermined", 0, 1),     # interval straddles −eps
    ((-0.5, -0.4), (0.0, 0.0), 3.0, 0.0, "saddle", 2, None),       # index may exceed k
    ((-0.5, -0.4), (0.0, 0.0), -0.1, 0.0, "maximum", 2, None),
    ((-0.5, -0.4), (0.0, 0.0), 0.05, 0.1, "undetermined", 2, None),  # top not resolved
    ((-1e-4, 1e-4), (0.0, 0.0), 5e-4, 0.0, "undetermined", 0, 0),  # flat in every direction
])
def test_kind_follows_the_bounds(theta, res, largest, largest_res, kind, lower, upper):
  c = _cert(theta, res, largest, largest_res, eps=1e-3)
  assert (c.index_lower, c.index_upper, c.kind) == (lower, upper, kind)
  assert c.kind in critical.KINDS


# ------------------------------ overparameterized MSE network at zero training loss

def mlp(params, x):
  return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def mse(params, batch):
  x, y = batch
  return 0.5 * jnp.mean((mlp(params, x) - y) ** 2)


def _mse_problem(seed, dtype, hidden=8, n=6, d=2):
  """33 parameters, 6 samples: zero training loss is reachable and there ``H = JᵀJ / N``."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(n, d)), dtype)
  y = jnp.asarray(rng.normal(size=(n, 1)), dtype)
  params = {"w1": jnp.asarray(rng.normal(size=(d, hidden)) / np.sqrt(d), dtype),
            "b1": jnp.zeros(hidden, dtype),
            "w2": jnp.asarray(rng.normal(size=(hidden, 1)) / np.sqrt(hidden), dtype),
            "b2": jnp.zeros(1, dtype)}
  return _adam_fit(mse, params, (x, y), 3000, 1e-2), (x, y)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
def test_a_zero_loss_mse_fit_is_never_a_saddle(x64, seed):
  tol = 1e-12 if x64 else 1e-6
  with jax.enable_x64(x64):
    dtype = jnp.float64 if x64 else jnp.float32
    fit, data = _mse_problem(seed, dtype)
    points = {m: critical.find(mse, fit, data, tol=tol, index_method=m, key=jax.random.key(1))
              for m in ("eigh", "slq")}
    points["scan"] = critical.scan(mse, [fit], data, tol=tol)[0]
    lanczos = [critical.certify(mse, points["eigh"].params, data, key=jax.random.key(s),
                                num_steps=n) for s in range(2) for n in (None, 12)]
    naive = critical.certify(mse, points["eigh"].params, data, eps=0.0)
  ref = _dense_reference(mse, points["eigh"].params, data)
  loss_scale = 1e-10 if x64 else 1e-6
  for name, cp in points.items():
    assert cp.converged and cp.loss <= loss_scale ** 2, name
    assert cp.kind != "saddle", (name, cp.certificate)
    assert cp.kind == "minimum" and cp.certificate.index_lower == 0, (name, cp.certificate)
  for c in lanczos:
    assert c.kind != "saddle" and c.index_lower == 0, c
  # PSD up to the loss: the float64 reference has no eigenvalue of the size of the
  # curvature (its most negative is O(√loss), from the residual-weighted term).
  assert ref[0] > -1e-6 * ref[-1]
  # Teeth: the smallest Ritz value of the same Lanczos run is rounding, inside the
  # measured noise margin, so its sign is an accident of the JAX/XLA version (negative
  # on jax 0.10.2, +9e-15 on 0.12 in float32) and a bare sign test would call this point
  # a saddle on one of them; the certificate does not depend on it.
  eigh = points["eigh"].certificate
  assert 0 < naive.largest and abs(naive.eigenvalues[0]) <= eigh.margin
  assert eigh.method == "eigh" and eigh.noise > 0
  assert eigh.eigenvalues[0] - eigh.margin < 0 < eigh.eigenvalues[0] + eigh.margin


def ce(params, batch):
  x, y = batch
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(mlp(params, x), y))


def test_a_saturated_float32_cross_entropy_fit_is_not_called_a_saddle():
  """The issue's case: at a near-zero float32 cross-entropy loss every curvature is tiny
  and the computed spectrum is rounding; a cut relative to max|λ| alone counts many
  'negative' eigenvalues, the measured noise floor does not."""
  rng = np.random.default_rng(0)
  n, d, c, hidden = 12, 2, 3, 8
  x = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
  y = jnp.asarray(rng.integers(0, c, size=n))
  params = {"w1": jnp.asarray(rng.normal(size=(d, hidden)) / np.sqrt(d), jnp.float32),
            "b1": jnp.zeros(hidden, jnp.float32),
            "w2": jnp.asarray(rng.normal(size=(hidden, c)) / np.sqrt(hidden), jnp.float32),
            "b2": jnp.zeros(c, jnp.float32)}
  fit = _adam_fit(ce, params, (x, y), 20000, 3e-2)
  cp = critical.find(ce, fit, (x, y), tol=1e-6, max_steps=0)
  lanczos = critical.certify(ce, fit, (x, y), key=jax.random.key(1), num_steps=20)
  ref = _dense_reference(ce, fit, (x, y))
  assert cp.converged and cp.loss < 1e-6
  eigs = cp.certificate.eigenvalues
  relative_cut = np.sqrt(np.finfo(np.float32).eps) * np.abs(eigs).max()
  assert np.sum(eigs < -relative_cut) >= 3               # the old rule: a "saddle"
  # ... and those values are rounding: the float64 spectrum at the same point differs by
  # more than they measure, and the noise floor is of that size.
  assert np.max(np.abs(eigs - ref)) > np.max(np.abs(eigs[eigs < 0]))
  for cert in (cp.certificate, lanczos):
    assert cert.kind != "saddle" and cert.index_lower == 0, cert
    assert cert.margin >= np.max(np.abs(eigs - ref)), cert
  assert cp.kind != "saddle"


# ----------------------------------------------------------------- known saddles

def _rotated(signs, seed):
  """f(x) = Σ_i s_i z_i²/2 + z_i⁴/4, z = Qx: a critical point at 0 with Hessian
  Qᵀ diag(s) Q (index #{s_i < 0}), and no other critical point near it."""
  q = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(signs),) * 2))[0]
  s = np.asarray(signs, float)

  def f(theta, batch):
    z = batch[0] @ theta
    return jnp.sum(batch[1] * z ** 2 / 2 + z ** 4 / 4)
  return f, q, s


@pytest.mark.parametrize("signs", [(-1.0, 2.0, 3.0, 0.5, 1.5),
                                   (-2.0, -0.5, 1.0, 4.0, 0.3, 2.0, -1.0),
                                   (-1.0, 1.0)])
@pytest.mark.parametrize("index_method", ["eigh", "slq"])
def test_a_known_saddle_is_certified_with_its_exact_index(signs, index_method):
  f, q, s = _rotated(signs, len(signs))
  with jax.enable_x64(True):
    data = (jnp.asarray(q), jnp.asarray(s))
    start = jnp.asarray(1e-3 * np.random.default_rng(0).normal(size=len(signs)))
    cp = critical.find(f, start, data, tol=1e-12, index_method=index_method,
                       key=jax.random.key(0))
    direct = critical.certify(f, cp.params, data, k=len(signs), key=jax.random.key(3))
  ref = _dense_reference(f, cp.params, data)
  true_index = int(np.sum(ref < -1e-6 * np.abs(ref).max()))
  assert true_index == int(np.sum(np.asarray(signs) < 0))
  for c in (cp.certificate, direct):
    assert c.index_lower == c.index_upper == true_index, c
    assert c.kind == "saddle"
  assert cp.kind == "saddle" and cp.converged


def muller_brown(p, batch=None):
  """Müller & Brown, Theor. Chim. Acta 53, 75 (1979), divided by 100."""
  del batch
  a, aa = jnp.array([-200.0, -100.0, -170.0, 15.0]), jnp.array([-1.0, -1.0, -6.5, 0.7])
  b, c = jnp.array([0.0, 0.0, 11.0, 0.6]), jnp.array([-10.0, -10.0, -6.5, 0.7])
  x0, y0 = jnp.array([1.0, 0.0, -0.5, -1.0]), jnp.array([0.0, 0.5, 1.5, 1.0])
  dx, dy = p[0] - x0, p[1] - y0
  return jnp.sum(a * jnp.exp(aa * dx ** 2 + b * dx * dy + c * dy ** 2)) / 100.0


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("guess,kind,index", [((-0.822, 0.624), "saddle", 1),
                                              ((0.212, 0.293), "saddle", 1),
                                              ((-0.558, 1.442), "minimum", 0),
                                              ((0.623, 0.028), "minimum", 0)])
def test_muller_brown_saddles_and_minima(x64, guess, kind, index):
  with jax.enable_x64(x64):
    dtype = jnp.float64 if x64 else jnp.float32
    cp = critical.find(muller_brown, jnp.asarray(guess, dtype), tol=1e-10 if x64 else 1e-4)
    direct = critical.certify(muller_brown, cp.params, key=jax.random.key(0))
  ref = _dense_reference(muller_brown, cp.params, None)
  assert int(np.sum(ref < 0)) == index and np.min(np.abs(ref)) > 1e-2   # non-degenerate
  for c in (cp.certificate, direct):
    assert c.kind == kind and c.index_lower == c.index_upper == index, c
    assert c.largest == pytest.approx(ref[-1], rel=1e-3 if not x64 else 1e-9)
  assert cp.kind == kind


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
def test_a_strict_minimum_is_a_minimum(x64):
  f, q, _ = _rotated((1.0, 2.0, 0.5, 3.0), 0)
  with jax.enable_x64(x64):
    dtype = jnp.float64 if x64 else jnp.float32
    data = (jnp.asarray(q, dtype), jnp.asarray([1.0, 2.0, 0.5, 3.0], dtype))
    cp = critical.find(f, jnp.asarray([0.1, -0.2, 0.05, 0.3], dtype), data,
                       tol=1e-10 if x64 else 1e-5)
    slq = critical.find(f, cp.params, data, index_method="slq", key=jax.random.key(0),
                        max_steps=0)
  for c in (cp.certificate, slq.certificate):
    assert c.kind == "minimum" and c.index_lower == c.index_upper == 0 and c.near_zero == 0
    np.testing.assert_allclose(np.sort(c.eigenvalues)[:1], [0.5], rtol=1e-4)
  assert cp.kind == slq.kind == "minimum"


# ---------------------------------------- the bounds contain the count (property)

def quadratic(theta, a):
  return 0.5 * theta @ a @ theta


@settings(max_examples=20, deadline=None)
@given(dim=st.integers(3, 24), num_negative=st.integers(0, 6), num_flat=st.integers(0, 4),
       seed=st.integers(0, 2 ** 16), truncated=st.booleans())
def test_the_bounds_contain_the_true_index(dim, num_negative, num_flat, seed, truncated):
  num_negative = min(num_negative, dim - 1)
  num_flat = min(num_flat, dim - num_negative - 1)
  rng = np.random.default_rng(seed)
  spec = np.concatenate([-rng.uniform(0.1, 5.0, num_negative),
                         rng.choice([-1.0, 1.0], num_flat) * 1e-10 * rng.uniform(size=num_flat),
                         rng.uniform(0.1, 5.0, dim - num_negative - num_flat)])
  q = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
  a = (q * spec) @ q.T
  a = 0.5 * (a + a.T)
  num_steps = max(6, dim // 2) if truncated else None
  with jax.enable_x64(True):
    c = critical.certify(quadratic, jnp.zeros(dim), jnp.asarray(a), k=6,
                         key=jax.random.key(seed), num_steps=min(num_steps or dim, dim))
  true_index = num_negative                  # the ±1e-10 eigenvalues are flat (eps ≫ 1e-10)
  assert c.eps < 0.1 and c.eps > 1e-10
  assert c.index_lower <= true_index          # interlacing: always
  if c.exhaustive:                            # the Ritz values are the eigenvalues
    assert c.index_upper is None or c.index_upper >= true_index
    if true_index < 6:
      assert c.index_lower == c.index_upper == true_index
  if c.kind == "saddle":
    assert true_index >= 1
  if c.kind == "minimum":
    assert true_index == 0
