"""Tests of landscape.directions against independent references.

References: an explicit NumPy re-implementation of the original filter normalization in
PyTorch layout, a torch transcription of tomgoldstein/loss-landscape's
``normalize_directions_for_weights``, scipy.stats for Gaussianity, sklearn's PCA, and
float64 NumPy formulas for projections.
"""

from __future__ import annotations

import flax.linen as nn
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats
try:  # torch is an optional reference (the "bench" extra); the NumPy references always run
  import torch
except ImportError:
  torch = None
from hypothesis import given
from sklearn.decomposition import PCA

from landscape import directions as D
from landscape.errors import ConfigError

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)


class _TinyCNN(nn.Module):
  """Conv (3, 3, 2, 4) -> BatchNorm -> Dense (64, 3): Flax layout, output units last."""

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(4, (3, 3))(x)
    x = nn.relu(nn.BatchNorm(use_running_average=True)(x))
    return nn.Dense(3)(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def params():
  variables = _TinyCNN().init(jax.random.key(0), jnp.ones((1, 4, 4, 2)))
  p = variables["params"]
  # Unequal filter norms, so normalizing the wrong axis cannot pass by accident.
  return jax.tree.map(lambda w: w * jnp.linspace(0.5, 2.0, w.shape[-1]) + 0.1, p)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _filter_norms(x):
  """‖x[..., k]‖ for every last-axis slice, in float64."""
  x = np.asarray(x, np.float64)
  return np.sqrt(np.sum(x * x, axis=tuple(range(x.ndim - 1))))


def _np_tree(tree, dtype=np.float64):
  return jax.tree.map(lambda x: np.asarray(x, dtype), tree)


def test_fixture_has_flax_layout(params):
  assert params["Conv_0"]["kernel"].shape == (3, 3, 2, 4)
  assert params["Dense_0"]["kernel"].shape == (64, 3)
  assert params["BatchNorm_0"]["scale"].shape == (4,)


# ----------------------------------------------------------------------------- filter axis


@pytest.mark.parametrize("norm", ["filter", "dfilter"])
def test_filter_norms_match_weights(params, norm):
  d = D.random(jax.random.key(1), params, norm=norm)
  for w, v in zip(_leaves(params), _leaves(d)):
    assert v.dtype == w.dtype
    if w.ndim <= 1:
      np.testing.assert_array_equal(v, 0.0)
      continue
    want = _filter_norms(w) if norm == "filter" else np.ones(w.shape[-1])
    # a norm of a float32 slice: a few ulps of rounding
    np.testing.assert_allclose(_filter_norms(v), want, rtol=8 * EPS32)


def _torch_perm(ndim):
  """Flax (..., in, out) -> torch (out, in, ...): (kh, kw, in, out) -> (out, in, kh, kw)."""
  return (ndim - 1, ndim - 2, *range(ndim - 2))


def _np_filter_first_axis(d, w):
  """The original ``normalize_direction(norm='filter')``: slices along axis 0."""
  out = d.copy()
  for k in range(d.shape[0]):
    out[k] = d[k] * (np.linalg.norm(w[k]) / (np.linalg.norm(d[k]) + 1e-10))
  return out


def test_filter_matches_original_in_torch_layout(params):
  key = jax.random.key(2)
  raw = D.random(key, params, norm="none")  # the same Gaussian draw, unnormalized
  ours = D.random(key, params, norm="filter")
  for w, g, v in zip(_leaves(params), _leaves(raw), _leaves(ours)):
    if w.ndim <= 1:
      continue
    perm = _torch_perm(w.ndim)
    ref = _np_filter_first_axis(g.transpose(perm), w.transpose(perm)).transpose(np.argsort(perm))
    np.testing.assert_allclose(v, ref, rtol=8 * EPS32, atol=0)
    # A naive port normalizes first-axis slices of the Flax kernel: wrong, silently.
    naive = _np_filter_first_axis(g, w)
    assert not np.allclose(naive, v, rtol=1e-3)
    assert not np.allclose(_filter_norms(naive), _filter_norms(w), rtol=1e-3)


def _torch_original(direction, weights, norm, ignore):
  """tomgoldstein/loss-landscape net_plotter.normalize_directions_for_weights, in torch.

  Transcribed from the original (in place, torch layout); its 'dfilter' typo
  (``d.ngorm()``) is read as ``d.norm()``.
  """
  for d, w in zip(direction, weights):
    if d.dim() <= 1:
      if ignore == "biasbn":
        d.fill_(0)
      else:
        d.copy_(w)
    elif norm == "filter":
      for df, wf in zip(d, w):
        df.mul_(wf.norm() / (df.norm() + 1e-10))
    elif norm == "layer":
      d.mul_(w.norm() / d.norm())
    elif norm == "weight":
      d.mul_(w)
    elif norm == "dfilter":
      for df in d:
        df.div_(df.norm() + 1e-10)
    elif norm == "dlayer":
      d.div_(d.norm())


@pytest.mark.skipif(torch is None, reason="torch not installed (pip install -e '.[bench]')")
@pytest.mark.parametrize("ignore", ["biasbn", None])
@pytest.mark.parametrize("norm", ["filter", "layer", "weight", "dfilter", "dlayer"])
def test_matches_original_torch_code(params, norm, ignore):
  key = jax.random.key(3)
  raw, ours = D.random(key, params, norm="none"), D.random(key, params, norm=norm, ignore=ignore)
  perms = [_torch_perm(w.ndim) if w.ndim >= 2 else tuple(range(w.ndim)) for w in _leaves(params)]
  weights = [torch.from_numpy(w.transpose(p).copy()) for w, p in zip(_leaves(params), perms)]
  direction = [torch.from_numpy(g.transpose(p).copy()) for g, p in zip(_leaves(raw), perms)]
  _torch_original(direction, weights, norm, ignore)
  for v, t, p in zip(_leaves(ours), direction, perms):
    # float32 norms in another summation order: a few ulps (the original's unguarded
    # 'layer'/'dlayer' differ from ours by 1e-10/‖d‖, far below that)
    np.testing.assert_allclose(v, t.numpy().transpose(np.argsort(p)), rtol=8 * EPS32,
                               atol=8 * EPS32 * np.abs(v).max())


@pytest.mark.parametrize("ignore", ["biasbn", None, "none"])
def test_layer_weight_none_and_1d_leaves(params, ignore):
  key = jax.random.key(4)
  raw = _leaves(D.random(key, params, norm="none", ignore=ignore))
  layer = _leaves(D.random(key, params, norm="layer", ignore=ignore))
  weight = _leaves(D.random(key, params, norm="weight", ignore=ignore))
  g_all = jax.random.split(key, len(raw))
  for i, w in enumerate(_leaves(params)):
    g = np.asarray(jax.random.normal(g_all[i], w.shape, w.dtype))
    if w.ndim <= 1:  # biases and BatchNorm scales, whatever the norm
      want = np.zeros_like(w) if ignore == "biasbn" else w
      for v in (raw[i], layer[i], weight[i]):
        np.testing.assert_array_equal(v, want)
      continue
    np.testing.assert_array_equal(raw[i], g)
    np.testing.assert_allclose(np.linalg.norm(layer[i]), np.linalg.norm(w), rtol=8 * EPS32)
    np.testing.assert_allclose(layer[i] / g, np.linalg.norm(w) / np.linalg.norm(g),
                               rtol=8 * EPS32)
    np.testing.assert_allclose(weight[i], g * w, rtol=2 * EPS32)


@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(1e-3, 1e3))
def test_scale_norms_are_scale_invariant_and_idempotent(params, seed, scale):
  d = D.random(jax.random.key(seed), params, norm="none")
  for norm in ("filter", "layer"):
    once = D.normalize(d, params, norm=norm)
    scaled = D.normalize(jax.tree.map(lambda x: scale * x, d), params, norm=norm)
    twice = D.normalize(once, params, norm=norm)
    for a, b, c in zip(_leaves(once), _leaves(scaled), _leaves(twice)):
      np.testing.assert_allclose(b, a, rtol=16 * EPS32, atol=1e-30)  # several roundings
      np.testing.assert_allclose(c, a, rtol=16 * EPS32, atol=1e-30)


# ----------------------------------------------------------------------------- random draws


@pytest.mark.parametrize("seed", [0, 1])
def test_random_is_standard_gaussian(seed):
  w = jnp.ones((1000, 100), jnp.float32)  # 1e5 entries, 2-D so "biasbn" keeps it
  x = np.asarray(D.random(jax.random.key(seed), {"w": w}, norm="none")["w"], np.float64).ravel()
  n = x.size
  assert abs(x.mean()) < 5 / np.sqrt(n)
  assert abs(x.var() - 1) < 5 * np.sqrt(2 / n)
  kurt = scipy.stats.kurtosis(x)  # excess kurtosis; a uniform draw would give -1.2
  assert abs(kurt) < 5 * np.sqrt(24 / n)
  assert scipy.stats.kstest(x, "norm").pvalue > 1e-3


def test_one_key_per_leaf():
  p = {"a": jnp.zeros((8, 8)), "b": jnp.zeros((8, 8))}
  key = jax.random.key(5)
  d = D.random(key, p, norm="none")
  assert not np.allclose(d["a"], d["b"])
  keys = optax.tree.split_key_like(key, p)
  for name in p:
    np.testing.assert_array_equal(d[name], jax.random.normal(keys[name], (8, 8)))
  again, other = D.random(key, p, norm="none"), D.random(jax.random.key(6), p, norm="none")
  np.testing.assert_array_equal(again["a"], d["a"])
  assert not np.allclose(other["a"], d["a"])


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_dtypes_preserved(dtype):
  p = {"k": jnp.ones((5, 3), dtype) * jnp.arange(1, 4, dtype=dtype), "b": jnp.ones(3, dtype)}
  for norm in D.NORMS:
    d = D.random(jax.random.key(0), p, norm=norm, ignore=None)
    assert all(x.dtype == dtype for x in jax.tree.leaves(d))
  d = D.random(jax.random.key(0), p)
  tol = 4 * float(jnp.finfo(dtype).eps)
  np.testing.assert_allclose(_filter_norms(d["k"]),
                             np.sqrt(5.0) * np.arange(1, 4), rtol=tol)


def test_float64_under_x64():
  with jax.enable_x64(True):
    p = {"k": jnp.ones((4, 3), jnp.float64)}
    d = D.random(jax.random.key(0), p)
    g = D.random(jax.random.key(0), p, norm="none")
    assert d["k"].dtype == jnp.float64
    # float64 resolves the original's 1e-10 guard: ‖d_k‖ = ‖θ_k‖ ‖g_k‖ / (‖g_k‖ + 1e-10)
    gn = _filter_norms(g["k"])
    np.testing.assert_allclose(_filter_norms(d["k"]), 2.0 * gn / (gn + 1e-10), rtol=8 * EPS64)
    assert np.all(np.abs(_filter_norms(d["k"]) - 2.0) > 1e-12)


def test_works_on_lists_tuples_and_bare_arrays():
  key = jax.random.key(7)
  for p in ([jnp.ones((3, 2)), jnp.ones(2)], (jnp.ones((3, 2)),), jnp.ones((3, 2))):
    d = D.random(key, p)
    assert jax.tree.structure(d) == jax.tree.structure(p)
    np.testing.assert_allclose(np.linalg.norm(jax.tree.leaves(d)[0], axis=0), np.sqrt(3),
                               rtol=8 * EPS32)


def test_random_under_jit(params):
  f = jax.jit(lambda k: D.random(k, params))
  for a, b in zip(_leaves(f(jax.random.key(8))), _leaves(D.random(jax.random.key(8), params))):
    np.testing.assert_allclose(a, b, rtol=8 * EPS32)


# ----------------------------------------------------------------------------- geometry


@given(seed=st.integers(0, 2**31 - 1), shift=st.floats(-10, 10))
def test_orthogonalize_against_numpy(seed, shift):
  rng = np.random.default_rng(seed)
  dx = {"a": rng.normal(size=(6, 3)).astype(np.float32), "b": rng.normal(size=4).astype(np.float32)}
  dy = jax.tree.map(lambda x: (rng.normal(size=x.shape) + shift * x).astype(np.float32), dx)
  out = D.orthogonalize(dy, dx)
  fx = np.concatenate([v.ravel() for v in _leaves(_np_tree(dx))])
  fy = np.concatenate([v.ravel() for v in _leaves(_np_tree(dy))])
  want = fy - fx @ fy / (fx @ fx) * fx
  got = np.concatenate([v.ravel() for v in _leaves(out)])
  # float32 inner products and subtraction; the |shift| term cancels, so scale by ‖dy‖
  np.testing.assert_allclose(got, want, atol=32 * EPS32 * np.linalg.norm(fy))
  assert abs(float(D.cosine(out, dx))) < 32 * EPS32 * np.linalg.norm(fy) / np.linalg.norm(got)


def test_cosine_against_numpy():
  a = {"x": jnp.array([[1.0, 2.0], [3.0, 4.0]]), "y": jnp.array([1.0, -1.0])}
  b = {"x": jnp.array([[0.5, -2.0], [1.0, 0.0]]), "y": jnp.array([2.0, 3.0])}
  fa, fb = np.array([1, 2, 3, 4, 1, -1.0]), np.array([0.5, -2, 1, 0, 2, 3.0])
  want = fa @ fb / np.linalg.norm(fa) / np.linalg.norm(fb)
  np.testing.assert_allclose(float(D.cosine(a, b)), want, rtol=4 * EPS32)
  assert float(D.cosine(a, jax.tree.map(jnp.zeros_like, b))) == 0.0
  np.testing.assert_allclose(float(D.cosine(a, a)), 1.0, rtol=4 * EPS32)


def test_random_plane_uses_split_keys(params):
  key = jax.random.key(9)
  dx, dy = D.random_plane(key, params)
  kx, ky = jax.random.split(key)
  for a, b in zip(_leaves(dx), _leaves(D.random(kx, params))):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(_leaves(dy), _leaves(D.random(ky, params))):
    np.testing.assert_array_equal(a, b)
  assert not np.allclose(params["Conv_0"]["kernel"], 0)
  assert not np.allclose(dx["Conv_0"]["kernel"], dy["Conv_0"]["kernel"])


def _groups(tree, norm):
  """The normalization groups of the ndim >= 2 leaves: filters, or whole leaves."""
  out = []
  for x in _leaves(_np_tree(tree)):
    if x.ndim >= 2:
      out += ([x[..., k].ravel() for k in range(x.shape[-1])] if "filter" in norm
              else [x.ravel()])
  return out


@pytest.mark.parametrize("norm", ["filter", "layer", "dfilter", "dlayer"])
def test_random_plane_orthogonalize_scale_norms(params, norm):
  key = jax.random.key(10)
  dx, dy0 = D.random_plane(key, params, norm=norm)
  dx1, dy = D.random_plane(key, params, norm=norm, orthogonalize=True)
  for a, b in zip(_leaves(dx), _leaves(dx1)):
    np.testing.assert_array_equal(a, b)
  # The norm constraint holds exactly after re-normalization ...
  for w, v in zip(_groups(params, norm), _groups(dy, norm)):
    want = 1.0 if norm.startswith("d") else np.linalg.norm(w)
    np.testing.assert_allclose(np.linalg.norm(v), want, rtol=8 * EPS32)
  # ... and cos(dx, dy) is the documented second-order residual, from float64 NumPy.
  gx, gy = _groups(dx, norm), _groups(dy0, norm)
  n2 = np.array([a @ a for a in gx])
  c = np.array([a @ b for a, b in zip(gx, gy)]) / n2  # ‖dx_k‖ = ‖dy_k‖ = n_k
  w = n2 / n2.sum()
  eps = w @ c
  s = (1 - 2 * eps * c + eps**2) ** -0.5
  predicted = w @ (s * (c - eps))
  got = float(D.cosine(dx, dy))
  # float32 vectors: the cosine carries a rounding error of a few eps
  np.testing.assert_allclose(got, predicted, atol=64 * EPS32)
  assert abs(got) < 0.2 * abs(eps)
  assert abs(predicted) > 64 * EPS32  # the claim is not vacuous on this model


@pytest.mark.parametrize("ignore", ["biasbn", None])
@pytest.mark.parametrize("norm", ["weight", "none"])
def test_random_plane_orthogonalize_exact(params, norm, ignore):
  dx, dy = D.random_plane(jax.random.key(11), params, norm=norm, ignore=ignore,
                          orthogonalize=True)
  fx = np.concatenate([v.ravel() for v in _leaves(_np_tree(dx)) if v.ndim >= 2])
  fy = np.concatenate([v.ravel() for v in _leaves(_np_tree(dy)) if v.ndim >= 2])
  # float32 Gram–Schmidt: rounding of a float32 inner product
  assert abs(fx @ fy) / np.linalg.norm(fx) / np.linalg.norm(fy) < 32 * EPS32
  for w, v in zip(_leaves(params), _leaves(dy)):
    if w.ndim <= 1:  # 1-D leaves keep 0 or θ
      np.testing.assert_array_equal(v, 0 if ignore == "biasbn" else w)


def test_target_interpolates(params):
  other = jax.tree.map(lambda w: -2.0 * w + 0.3, params)
  d = D.target(params, other)
  for a, b, v in zip(_leaves(params), _leaves(other), _leaves(d)):
    assert v.dtype == a.dtype
    # a + (b - a) rounds twice in float32
    np.testing.assert_allclose(a + 1.0 * v, b, atol=2 * EPS32 * max(np.abs(a).max(), np.abs(b).max()))
    np.testing.assert_allclose(v, b.astype(np.float64) - a, rtol=EPS32, atol=EPS32)


def _rand_tree(rng):
  return {"k": rng.normal(size=(5, 4)), "b": rng.normal(size=4)}


def test_plane_through_and_coordinates_round_trip():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    p0, p1, p2 = (_np_tree(_rand_tree(rng)) for _ in range(3))
    origin, dx, dy = D.plane_through(p0, p1, p2)
    tol = 1e3 * EPS64  # float64 least squares on 24 numbers
    np.testing.assert_allclose(D.coordinates(origin, dx, dy, p0), (0, 0), atol=tol)
    np.testing.assert_allclose(D.coordinates(origin, dx, dy, p1), (1, 0), atol=tol)
    f = lambda t: np.concatenate([np.ravel(v) for v in jax.tree.leaves(t)])
    r2, fdx = f(p2) - f(p0), f(dx)
    np.testing.assert_allclose(D.coordinates(origin, dx, dy, p2), (r2 @ fdx / (fdx @ fdx), 1),
                               atol=tol)
    assert abs(float(D.cosine(dx, dy))) < tol
    # any point of the plane, and the orthogonal projection of one off it
    a, b = 0.7, -1.3
    q = jax.tree.map(lambda o, x, y: o + a * x + b * y, origin, dx, dy)
    np.testing.assert_allclose(D.coordinates(origin, dx, dy, q), (a, b), atol=tol)
    off = jax.tree.map(lambda x, n: x + 0.5 * n, q, _rand_tree(rng))
    ca, cb = D.coordinates(origin, dx, dy, off)
    resid = f(off) - f(origin) - ca * fdx - cb * f(dy)
    np.testing.assert_allclose([resid @ fdx, resid @ f(dy)], 0, atol=tol * np.linalg.norm(resid))


# ----------------------------------------------------------------------------- trajectories


T = 12


@pytest.fixture(scope="module")
def trajectory():
  """θ_t = θ_final + t·u + 0.05 sin(3t)·v + noise (t = T-1 .. 1), then θ_final; float64."""
  rng = np.random.default_rng(1)
  final, u, v = (_rand_tree(rng) for _ in range(3))
  steps = [jax.tree.map(lambda f, a, b, e, t=t: f + t * a + 0.05 * np.sin(3 * t) * b + 0.01 * e,
                        final, u, v, _rand_tree(rng))
           for t in range(T - 1, 0, -1)]
  return steps + [final], final, u


def _flat_rows(traj, final, ignore):
  rows = []
  for p in traj:
    leaves = [np.ravel(a - b) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(final))
              if not (ignore == "biasbn" and np.ndim(b) <= 1)]
    rows.append(np.concatenate(leaves))
  return np.array(rows)


def _flat_dir(d, final, ignore):
  return np.concatenate([np.ravel(x) for x, b in zip(_leaves(d), jax.tree.leaves(final))
                         if not (ignore == "biasbn" and np.ndim(b) <= 1)])


def test_pca_recovers_dominant_direction(trajectory):
  traj, final, u = trajectory
  (d0, d1), ratio = D.pca(traj, final, n=2)
  u_kept = {"k": u["k"], "b": np.zeros_like(u["b"])}
  assert abs(float(D.cosine(d0, u_kept))) > 0.99
  assert ratio[0] > 0.9 and ratio.shape == (2,) and ratio.dtype == np.float64
  for d in (d0, d1):
    np.testing.assert_array_equal(d["b"], 0)  # biasbn
    np.testing.assert_allclose(float(optax.tree.norm(d)), 1.0, rtol=8 * EPS32)
  assert abs(float(D.cosine(d0, d1))) < 8 * EPS32


@pytest.mark.parametrize("ignore", ["biasbn", None])
def test_pca_matches_sklearn(trajectory, ignore):
  traj, final, _ = trajectory
  dirs, ratio = D.pca(traj, final, n=3, ignore=ignore)
  ref = PCA(n_components=3, svd_solver="full").fit(_flat_rows(traj, final, ignore))
  np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, rtol=1e-9)
  for d, comp in zip(dirs, ref.components_):
    assert jax.tree.structure(d) == jax.tree.structure(final)
    # the same sign convention as sklearn; our components are float32 (the param dtype)
    np.testing.assert_allclose(_flat_dir(d, final, ignore), comp, atol=4 * EPS32)


def test_pca_stacked_and_list_agree(trajectory):
  traj, final, _ = trajectory
  stacked = jax.tree.map(lambda *xs: np.stack(xs), *traj)
  (a0, a1), ra = D.pca(traj, final)
  (b0, b1), rb = D.pca(stacked, final)
  np.testing.assert_array_equal(ra, rb)
  for x, y in zip(_leaves([a0, a1]), _leaves([b0, b1])):
    np.testing.assert_array_equal(x, y)
  np.testing.assert_array_equal(D.project(traj, final, (a0, a1)),
                                D.project(stacked, final, (a0, a1)))


def test_project_reconstructs_in_plane_trajectory():
  rng = np.random.default_rng(2)
  final, dx, dy = (_rand_tree(rng) for _ in range(3))
  dy = jax.tree.map(lambda a, b: a + 0.5 * b, dy, dx)  # not orthogonal: least squares needed
  xs, ys = rng.normal(size=7), rng.normal(size=7)
  traj = [jax.tree.map(lambda f, a, b: f + x * a + y * b, final, dx, dy) for x, y in zip(xs, ys)]
  px, py = D.project(traj, final, (dx, dy))
  assert px.shape == (7,) and py.shape == (7,)
  np.testing.assert_allclose(px, xs, atol=1e3 * EPS64)  # float64 normal equations
  np.testing.assert_allclose(py, ys, atol=1e3 * EPS64)


def test_pca_then_project_reconstructs_planar_trajectory():
  rng = np.random.default_rng(3)
  final, u, v = (_rand_tree(rng) for _ in range(3))
  coef = np.vstack([rng.normal(size=(8, 2)), [[0.0, 0.0]]])  # ends at θ_final
  traj = [jax.tree.map(lambda f, a, b: f + x * a + y * b, final, u, v) for x, y in coef]
  dirs, ratio = D.pca(traj, final, n=2, ignore=None)
  np.testing.assert_allclose(ratio.sum(), 1.0, rtol=1e-12)
  xs, ys = D.project(traj, final, dirs)
  rows = _flat_rows(traj, final, None)
  fx, fy = (_flat_dir(d, final, None).astype(np.float64) for d in dirs)
  # float32 directions: reconstruction to float32 accuracy of the row scale
  np.testing.assert_allclose(np.outer(xs, fx) + np.outer(ys, fy), rows,
                             atol=32 * EPS32 * np.abs(rows).max())


# ----------------------------------------------------------------------------- errors


def test_errors_name_the_bad_value(params):
  key = jax.random.key(0)
  with pytest.raises(ConfigError, match="'filters'"):
    D.random(key, params, norm="filters")
  with pytest.raises(ConfigError, match="'bias'"):
    D.normalize(params, params, ignore="bias")
  missing = {k: v for k, v in params.items() if k != "Conv_0"}
  with pytest.raises(ConfigError, match=r"\['Conv_0'\]"):
    D.normalize(missing, params)
  bad = jax.tree.map(lambda x: x, params)
  bad["Dense_0"] = dict(bad["Dense_0"], kernel=jnp.ones((3, 64)))
  with pytest.raises(ConfigError, match=r"\['Dense_0'\]\['kernel'\] has shape \(3, 64\).*\(64, 3\)"):
    D.normalize(bad, params)
  with pytest.raises(ConfigError, match=r"\['Dense_0'\]\['kernel'\]"):
    D.target(params, bad)
  with pytest.raises(ConfigError, match="PRNG key"):
    D.random(0, params)
  with pytest.raises(ConfigError, match="int32"):
    D.random(key, {"w": jnp.ones((2, 2), jnp.int32)})
  with pytest.raises(ConfigError, match="dx.*lacks"):
    D.orthogonalize({"a": jnp.ones(2), "b": jnp.ones(2)}, {"a": jnp.ones(2)})


def test_trajectory_errors(trajectory):
  traj, final, _ = trajectory
  with pytest.raises(ConfigError, match="at least 3 trajectory points, got 2"):
    D.pca(traj[:2], final, n=2)
  with pytest.raises(ConfigError, match="n must be an integer >= 1, got 0"):
    D.pca(traj, final, n=0)
  with pytest.raises(ConfigError, match=r"trajectory\[1\]\['k'\] has shape \(4, 5\)"):
    D.pca([traj[0], {"k": np.ones((4, 5)), "b": traj[0]["b"]}, traj[2]], final, n=1)
  stacked = {"k": np.ones((3, 5, 4)), "b": np.ones((2, 4))}
  with pytest.raises(ConfigError, match=r"leading \(T\) lengths \[2, 3\]"):
    D.pca(stacked, final, n=1)
  line = [jax.tree.map(lambda f, t=t: f * (1 + t), final) for t in range(4)]
  with pytest.raises(ConfigError, match="only 1 direction"):
    D.pca(line, final, n=2)
  with pytest.raises(ConfigError, match="directions must be a non-empty list"):
    D.project(traj, final, [])
  with pytest.raises(ConfigError, match="trajectory must be a list"):
    D.project(3.0, final, [final])


def test_plane_through_degenerate():
  p0 = {"k": np.ones((3, 2), np.float32)}
  p1 = {"k": 2 * np.ones((3, 2), np.float32)}
  with pytest.raises(ConfigError, match="p1 equals p0"):
    D.plane_through(p0, p0, p1)
  with pytest.raises(ConfigError, match="on the line"):
    D.plane_through(p0, p1, {"k": 3 * np.ones((3, 2), np.float32)})
