"""Host-driven Lanczos and the shared Hessian probes, against dense float64 references.

References: the compiled :func:`landscape.linalg.lanczos` / ``extreme_eigenpairs`` (an
independent loop), dense ``numpy.linalg.eigh`` of ``jax.hessian`` and explicit
projections ``(I − QQᵀ)`` formed as matrices. Tiny problems (a 40×40 matrix, the
99-parameter MLP of ``test_hessian``), float64.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from landscape import _cache
from landscape import hessian as hs
from landscape import linalg

from conftest import REAL_CACHE_ENABLE

EPS = float(np.finfo(np.float64).eps)
N = 40


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def _matrix(seed=0):
  rng = np.random.default_rng(seed)
  q = np.linalg.qr(rng.normal(size=(N, N)))[0]
  eigs = np.concatenate([[-3.0, -2.5], np.linspace(-1.0, 2.0, N - 4), [6.0, 9.0]])
  a = (q * eigs) @ q.T
  return jnp.asarray(0.5 * (a + a.T)), eigs


def _apply_matrix(a, v):
  """``apply(args, v)`` on a two-leaf pytree ``{"b": (6,), "w": (N-6,)}``."""
  flat = jnp.concatenate([v["b"], v["w"]])
  out = a @ flat
  return {"b": out[:6], "w": out[6:]}


def _tree(x):
  return {"b": jnp.asarray(x[:6]), "w": jnp.asarray(x[6:])}


def _vec(t):
  return np.concatenate([np.asarray(t["b"]), np.asarray(t["w"])])


def _start(seed=1):
  return np.random.default_rng(seed).normal(size=N)


# --------------------------------------------------------------- driven Lanczos

@pytest.mark.parametrize("steps", [1, 7, N])
def test_driven_lanczos_equals_the_compiled_recurrence(steps):
  a, _ = _matrix()
  v0 = _start()
  run = linalg.driven_lanczos(_apply_matrix, a, _tree(v0), N, steps=steps)
  alphas, betas, basis = jax.jit(linalg.lanczos, static_argnums=(0, 2))(
      lambda v: a @ v, jnp.asarray(v0), steps)
  assert run.num_steps == steps
  scale = float(np.linalg.norm(a, 2))
  np.testing.assert_allclose(run.alphas[:steps], alphas, atol=1e3 * EPS * scale)
  np.testing.assert_allclose(run.betas[:steps], betas, atol=1e3 * EPS * scale)
  np.testing.assert_allclose(run.basis[:steps], basis, atol=1e-10)
  assert np.all(np.asarray(run.basis[steps:]) == 0)


def test_driven_early_stop_matches_extreme_eigenpairs():
  a, eigs = _matrix()
  v0 = jnp.asarray(_start())
  n_ref, ref = jax.jit(functools.partial(linalg.extreme_eigenpairs, lambda v: a @ v, k=2,
                                         which="both", num_steps=N))(v0, 1e-8)
  run = linalg.driven_lanczos(_apply_matrix, a, _tree(np.asarray(v0)), N, tol=1e-8, k=2,
                              which="both")
  assert run.num_steps == int(n_ref) < N          # the early stop fired, at the same step
  pairs = linalg.krylov_pairs(run, k=2, which="both", return_vectors=True)
  for got, want, exact in zip(pairs, ref, (np.sort(eigs)[::-1][:2], np.sort(eigs)[:2])):
    np.testing.assert_allclose(got.values, want.values, rtol=1e-10)
    np.testing.assert_allclose(got.values, exact, rtol=1e-8)
    vecs = np.stack([_vec(jax.tree.map(lambda x, i=i: x[i], got.vectors)) for i in range(2)])
    resid = np.linalg.norm(vecs @ np.asarray(a) - np.asarray(got.values)[:, None] * vecs, axis=1)
    np.testing.assert_allclose(resid, got.residuals, rtol=1e-3, atol=1e3 * EPS)
  # without vectors: the same pairs from T_n on the host (no compiled kernel)
  for which in ("both", "largest", "smallest"):
    with_vectors = linalg.krylov_pairs(run, k=2, which=which, return_vectors=True)
    for got, want in zip(linalg.krylov_pairs(run, k=2, which=which), with_vectors):
      assert got.vectors is None and got.values.dtype == want.values.dtype
      np.testing.assert_allclose(got.values, want.values, rtol=1e-10)
      np.testing.assert_allclose(got.residuals, want.residuals, rtol=1e-6, atol=1e3 * EPS)


def test_driven_resume_continues_the_same_run():
  a, _ = _matrix()
  whole = linalg.driven_lanczos(_apply_matrix, a, _tree(_start()), N, steps=20)
  whole = (np.asarray(whole.alphas), np.asarray(whole.betas))
  part = linalg.driven_lanczos(_apply_matrix, a, _tree(_start()), N, steps=8)
  done = []
  part = linalg.driven_lanczos(_apply_matrix, a, None, N, steps=20, resume=part,
                               on_step=done.append)
  assert part.num_steps == 20 and done == list(range(9, 21))
  np.testing.assert_allclose(part.alphas, whole[0], atol=1e-12)
  np.testing.assert_allclose(part.betas, whole[1], atol=1e-12)


@pytest.mark.parametrize("run_steps", [1, 5])
def test_deflated_quadratic_equals_the_dense_projection(run_steps):
  a, _ = _matrix()
  sketch = linalg.driven_lanczos(_apply_matrix, a, _tree(_start(1)), N, steps=12)
  v = _start(2)
  run = linalg.driven_lanczos(_apply_matrix, a, _tree(v), N, steps=run_steps)
  q = np.asarray(sketch.basis[:12]).T                         # (N, 12)
  p = np.eye(N) - q @ q.T
  u = v / np.linalg.norm(v)
  want = u @ p @ np.asarray(a) @ p @ u
  got = float(linalg.deflated_quadratic(sketch, run))
  np.testing.assert_allclose(got, want, atol=1e4 * EPS * np.linalg.norm(a, 2))
  # not the undeflated value: the test can tell the difference
  assert abs(got - u @ np.asarray(a) @ u) > 1e-3
  z = linalg.deflate(sketch, _tree(v))
  np.testing.assert_allclose(_vec(z), p @ v, atol=1e-12)
  np.testing.assert_allclose(q.T @ _vec(z), 0.0, atol=1e-12)


# ---------------------------------------------------------------- HVP methods

def _mlp(seed=0, n=50):
  rng = np.random.default_rng(seed)
  params = {"w1": rng.normal(size=(4, 12)), "b1": 0.1 * rng.normal(size=12),
            "w2": rng.normal(size=(12, 3)) / np.sqrt(12), "b2": 0.1 * rng.normal(size=3)}
  x, y = rng.normal(size=(n, 4)), rng.normal(size=(n, 3))

  def loss_fn(p, batch):
    xb, yb = batch
    out = jnp.tanh(xb @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    return 0.5 * jnp.mean(jnp.sum((out - yb) ** 2, axis=-1))

  return loss_fn, jax.tree.map(jnp.asarray, params), (jnp.asarray(x), jnp.asarray(y))


@pytest.fixture(scope="module")
def mlp():
  with jax.enable_x64(True):
    loss_fn, params, data = _mlp()
    flat, unravel = ravel_pytree(params)
    h = np.asarray(jax.hessian(lambda f: loss_fn(unravel(f), data))(flat))
    return dict(loss_fn=loss_fn, params=params, data=data, h=h, evals=np.linalg.eigh(h)[0],
                unravel=unravel, dim=flat.size)


@pytest.mark.parametrize("batch_size", [None, 7])
def test_hvp_methods_match_the_dense_hessian(mlp, batch_size):
  loss_fn, params, data = mlp["loss_fn"], mlp["params"], mlp["data"]
  v_flat = np.random.default_rng(3).normal(size=mlp["dim"])
  v = mlp["unravel"](jnp.asarray(v_flat))
  want = mlp["h"] @ v_flat
  tol = 1e3 * EPS * np.linalg.norm(mlp["h"], 2) * np.linalg.norm(v_flat)
  for method in ("fwd-rev", "rev-fwd"):
    got = hs.hvp_fn(loss_fn, data, batch_size=batch_size, method=method)(params, v)
    np.testing.assert_allclose(ravel_pytree(got)[0], want, atol=tol)
  lin = hs.linearized_hvp(loss_fn, params, data, batch_size=batch_size)
  np.testing.assert_allclose(ravel_pytree(lin(v))[0], want, atol=tol)
  np.testing.assert_allclose(ravel_pytree(jax.jit(lambda f, u: f(u))(lin, v))[0], want,
                             atol=tol)   # a pytree argument of a compiled function
  size = hs.linearized_bytes(loss_fn, params, data, batch_size=batch_size)
  assert size == sum(x.nbytes for x in jax.tree.leaves(lin))


# ------------------------------------------------------------------- probes

def _probes(mlp, **kw):
  return hs.probes(mlp["loss_fn"], mlp["params"], mlp["data"], key=jax.random.key(0), **kw)


def test_probes_with_a_full_krylov_space_are_exact(mlp):
  dim = mlp["dim"]
  p = _probes(mlp, k=3, num_steps=dim, tol=0.0, density_runs=3, density_steps=20,
              trace_samples=30)
  largest, smallest = p.eigen
  np.testing.assert_allclose(largest.values, mlp["evals"][::-1][:3], rtol=1e-8)
  np.testing.assert_allclose(smallest.values, mlp["evals"][:3], rtol=1e-8)
  # Q spans everything: tr(QᵀHQ) is the trace and the deflated probes see nothing.
  est, err = p.trace
  np.testing.assert_allclose(est, np.trace(mlp["h"]), atol=1e-8 * np.abs(mlp["h"]).sum())
  assert err <= 1e-8 * np.linalg.norm(mlp["h"])
  # counts: the eigen run, 2 more SLQ runs, and 10 - 2 deflated probes of its own
  assert p.trace_hvps == 8 and p.num_hvps == dim + 2 * 20 + 8
  assert p.density.ritz_values.shape == (3, dim)
  np.testing.assert_allclose(np.asarray(p.density.weights).sum(axis=1), 1.0, atol=1e-10)
  # the first SLQ sample is the eigenvalue run: all dim Ritz values, the exact spectrum
  np.testing.assert_allclose(np.sort(np.asarray(p.density.ritz_values[0])), mlp["evals"],
                             atol=1e-8 * np.abs(mlp["evals"]).max())
  assert p.hvp == "linearize"


@pytest.mark.parametrize("method", ["hutch++", "hutchinson"])
def test_probes_trace_is_unbiased_within_its_standard_error(mlp, method):
  exact = np.trace(mlp["h"])
  errors = []
  for seed in range(4):
    p = hs.probes(mlp["loss_fn"], mlp["params"], mlp["data"], key=jax.random.key(seed), k=2,
                  num_steps=15, tol=0.0, trace_method=method, trace_samples=30,
                  density_runs=4, density_steps=10, hvp="fwd-rev")
    est, err = (float(x) for x in p.trace)
    assert abs(est - exact) <= 4 * err
    errors.append(err)
    assert p.hvp == "fwd-rev"
    assert p.trace_hvps == (10 if method == "hutch++" else 30) - 3
  if method == "hutch++":   # the 15-vector Krylov sketch leaves a smaller remainder
    plain = hs.trace(mlp["loss_fn"], mlp["params"], mlp["data"], key=jax.random.key(0),
                     num_samples=30, method="hutchinson")
    assert np.mean(errors) < float(plain[1])


def test_probes_density_matches_separate_runs(mlp):
  p = _probes(mlp, k=2, num_steps=12, tol=0.0, trace=False, density_runs=3, density_steps=20)
  # the eigen run (12 steps) was continued to 20 for its SLQ sample
  assert p.eigen[0].num_hvps == 12 and p.num_hvps == 20 + 2 * 20 and p.trace is None
  assert p.density.num_hvps == 60
  exact = float(np.mean(mlp["evals"] < 0))
  sd = np.sqrt(2 * exact * (1 - exact) / (3 * mlp["dim"]))
  assert abs(hs.negative_fraction(p.density) - exact) <= 4 * sd + 0.05


def test_probes_eigenvalues_equal_eigenvalues(mlp):
  p = _probes(mlp, k=3, tol=1e-6, trace=False, density=False, hvp="fwd-rev")
  ref = hs.eigenvalues(mlp["loss_fn"], mlp["params"], mlp["data"], k=3, which="both",
                       key=jax.random.key(0), hvp="linearize")
  for got, want in zip(p.eigen, ref):
    assert got.num_hvps == want.num_hvps
    np.testing.assert_allclose(got.values, want.values, rtol=1e-9)


# -------------------------------------------------------------------- cache

def test_cache_dir_settings(tmp_path, monkeypatch):
  monkeypatch.setattr(_cache, "enable", REAL_CACHE_ENABLE)
  monkeypatch.setenv("LANDSCAPE_CACHE_DIR", str(tmp_path / "c"))
  monkeypatch.delenv("LANDSCAPE_NO_CACHE", raising=False)
  assert _cache.cache_dir() == tmp_path / "c"
  monkeypatch.setenv("LANDSCAPE_NO_CACHE", "1")
  assert _cache.cache_dir() is None and _cache.enable() is None
  monkeypatch.setenv("LANDSCAPE_NO_CACHE", "0")
  monkeypatch.delenv("LANDSCAPE_CACHE_DIR")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert _cache.cache_dir() == tmp_path / "xdg" / "landscape" / "jax"


def test_unwritable_cache_dir_is_one_warning(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(_cache, "enable", REAL_CACHE_ENABLE)
  (tmp_path / "file").write_text("")
  monkeypatch.setenv("LANDSCAPE_CACHE_DIR", str(tmp_path / "file" / "sub"))
  monkeypatch.delenv("LANDSCAPE_NO_CACHE", raising=False)
  before = jax.config.jax_compilation_cache_dir
  assert _cache.enable() is None
  assert jax.config.jax_compilation_cache_dir == before     # left as it was
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1 and err[0].startswith("landscape: warning: compilation cache")
  assert "LANDSCAPE_CACHE_DIR" in err[0]


def _landscape(args, env):
  code = "import sys; from landscape.cli import main; sys.exit(main(sys.argv[1:]))"
  return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                        text=True, timeout=300)


@pytest.mark.slow
def test_cli_commands_fill_the_cache_and_reuse_it(tmp_path):
  """``landscape`` writes compiled executables to the cache directory, and a later command
  on the same run compiles nothing new (every executable of ``hessian`` came from it)."""
  cfg = tmp_path / "tiny.yaml"
  cfg.write_text("data: {name: digits, n_train: 200, n_test: 100}\n"
                 "model: {name: cnn, kwargs: {features: [4], dense: 8}}\n"
                 "train: {epochs: 1}\n"
                 "surface: {x: '-1:1:3', y: '-1:1:3'}\n"
                 "hessian: {k: 1, n_samples: 64, density_runs: 2, density_steps: 5, "
                 "trace_samples: 6}\n"
                 "plot: {enabled: false}\n")
  env = {k: v for k, v in os.environ.items() if not k.startswith("LANDSCAPE_")}
  cache = tmp_path / "cache"
  env["LANDSCAPE_CACHE_DIR"] = str(cache)
  run = _landscape(["run", "--config", str(cfg), "--out", str(tmp_path / "r")], env)
  assert run.returncode == 0, run.stderr
  first = set(os.listdir(cache))
  assert len(first) >= 5
  again = _landscape(["hessian", str(tmp_path / "r" / "landscape.h5")], env)
  assert again.returncode == 0, again.stderr
  assert set(os.listdir(cache)) == first          # all hits, nothing recompiled


def test_bad_hvp_method_is_refused_before_anything_runs(tmp_path):
  from cli_helpers import assert_user_error, cli
  out = tmp_path / "r"
  rc, _, err = cli("run", "--out", out, "--set", "hessian.hvp=forward")
  assert_user_error(rc, err, "'forward'", "linearize")
  assert not out.exists()


def test_batched_mean_unrolls_convolutions_on_cpu_and_keeps_the_mean():
  from landscape import batching
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(30, 6, 6, 2)))
  w = jnp.asarray(rng.normal(size=(3, 3, 2, 4)))

  def conv_loss(kernel, xb):
    out = jax.lax.conv_general_dilated(xb, kernel, (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.mean(jnp.tanh(out) ** 2)

  def grad_mean(kernel, batch_size):
    return batching.batched_mean(lambda b: jax.grad(conv_loss)(kernel, b), x, batch_size)

  whole = jax.jit(grad_mean, static_argnums=1)(w, None)
  np.testing.assert_allclose(jax.jit(grad_mean, static_argnums=1)(w, 8), whole,
                             rtol=1e-12)                    # 3 full batches and 6 more
  with_conv = jax.make_jaxpr(lambda b: jax.grad(conv_loss)(w, b))(x[:8])
  dense = jax.make_jaxpr(lambda b: jnp.mean(b.reshape(8, -1) @ jnp.ones((72, 3))))(x[:8])
  assert batching.has_convolution(with_conv) and not batching.has_convolution(dense)
  assert batching._unroll(3, with_conv) is True            # this suite runs on CPU
  assert batching._unroll(3, dense) == 1
  assert batching._unroll(batching.CPU_UNROLL + 1, with_conv) == 1
