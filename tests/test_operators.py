"""The Gauss-Newton, Fisher and residual operators and block restrictions, against dense
float64 references built from jax.jacobian / jax.hessian of a tiny model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from landscape import hessian, losses, operators
from landscape.errors import ConfigError

N, D, W, C = 9, 3, 4, 3


def _apply(p, x):
  h = jnp.tanh(x @ p["l0"]["w"] + p["l0"]["b"])
  return h @ p["l1"]["w"] + p["l1"]["b"]


def _mse(out, y):
  return 0.5 * jnp.sum((out - y) ** 2, axis=-1)


def _ce(out, y):
  return -jnp.take_along_axis(jax.nn.log_softmax(out), y[:, None], axis=-1)[:, 0]


def _setup(kind: str, l2: float = 0.0):
  k = jax.random.split(jax.random.key(3), 6)
  params = {"l0": {"w": jax.random.normal(k[0], (D, W)), "b": 0.3 * jax.random.normal(k[1], (W,))},
            "l1": {"w": jax.random.normal(k[2], (W, C)), "b": 0.3 * jax.random.normal(k[3], (C,))}}
  x = jax.random.normal(k[4], (N, D))
  y = (jax.random.normal(k[5], (N, C)) if kind == "mse"
       else jax.random.randint(k[5], (N,), 0, C))
  penalty = (lambda p: 0.5 * l2 * sum(jnp.sum(q ** 2) for q in jax.tree.leaves(p))) if l2 else None
  split = operators.SplitLoss(_apply, _mse if kind == "mse" else _ce, penalty)
  return split, params, (x, y)


def _dense(split, params, data):
  """Dense H, G, F of the mean loss in float64 from per-example Jacobians."""
  flat, unravel = ravel_pytree(params)
  x, y = data
  H = jax.hessian(lambda f: split(unravel(f), data))(flat)
  Jf = jax.jacobian(lambda f: split.apply(unravel(f), x))(flat)          # (n, C, P)
  G = jnp.zeros_like(H)
  for i in range(N):
    Hi = jax.hessian(lambda o: split.output_loss(o[None], y[i:i + 1])[0])(split.apply(params, x)[i])
    G = G + Jf[i].T @ Hi @ Jf[i] / N
  if split.penalty is not None:
    G = G + jax.hessian(lambda f: split.penalty(unravel(f)))(flat)
  g = jax.jacobian(lambda f: split.output_loss(split.apply(unravel(f), x), y))(flat)  # (n, P)
  F = g.T @ g / N
  return H, G, F, flat, unravel


def _as_matrix(matvec, params, unravel, dim):
  cols = [ravel_pytree(matvec(params, unravel(jnp.eye(dim)[i])))[0] for i in range(dim)]
  return jnp.stack(cols, axis=1)


@pytest.fixture(scope="module", params=["mse", "ce"])
def case(request):
  # float64 arrays built under x64; the context ends here (never held across tests)
  with jax.enable_x64(True):
    split, params, data = _setup(request.param, l2=0.01)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    x, y = data
    data = (x.astype(jnp.float64), y.astype(jnp.float64) if request.param == "mse" else y)
    H, G, F, flat, unravel = (np.asarray(a) if isinstance(a, jax.Array) else a
                              for a in _dense(split, params, data))
  return request.param, split, params, data, H, G, F, unravel


EPS64 = float(jnp.finfo(jnp.float64).eps)


@pytest.mark.parametrize("operator", ["hessian", "ggn", "fisher", "residual"])
def test_matvec_equals_the_dense_matrix(case, operator):
  _, split, params, data, H, G, F, unravel = case
  with jax.enable_x64(True):
    ref = {"hessian": H, "ggn": G, "fisher": F, "residual": H - G}[operator]
    # batches of 4 (two full and a remainder of 1): the batched mean must equal the dense one
    mv = jax.jit(operators.matvec_fn(split, data, operator=operator, batch_size=4))
    A = _as_matrix(mv, params, unravel, H.shape[0])
    scale = float(jnp.max(jnp.abs(ref))) + 1.0
    np.testing.assert_allclose(A, ref, atol=200 * EPS64 * scale, rtol=0)
    lin = operators.linearized_matvec(split, params, data, operator=operator)
    A2 = _as_matrix(lambda p, v: lin(v), params, unravel, H.shape[0])
    np.testing.assert_allclose(A2, ref, atol=200 * EPS64 * scale, rtol=0)


def test_gauss_newton_and_fisher_are_psd_and_the_residual_carries_the_negative_mass(case):
  name, _, _, _, H, G, F, _ = case
  with jax.enable_x64(True):
    eh, eg, ef, er = (np.linalg.eigvalsh(np.asarray(m)) for m in (H, G, F, H - G))
  tol = 100 * EPS64 * np.max(np.abs(eh))
  assert eg.min() >= -tol and ef.min() >= -tol, (name, eg.min(), ef.min())
  assert eh.min() < -1e-6, "the fixture must have negative curvature for the test to bite"
  neg = lambda e: float(-e[e < 0].sum())  # noqa: E731
  # H = G + R with G ⪰ 0: the negative mass of H is at most that of R (Ky Fan).
  assert neg(eh) <= neg(er) + tol
  assert neg(er) > 0


@pytest.mark.parametrize("operator", ["ggn", "fisher", "residual"])
def test_probes_of_an_operator_match_its_dense_spectrum(case, operator):
  _, split, params, data, H, G, F, _ = case
  ref = np.linalg.eigvalsh(np.asarray({"ggn": G, "fisher": F, "residual": H - G}[operator]))
  dim = ref.size
  with jax.enable_x64(True):
    top, bottom = hessian.eigenvalues(split, params, data, k=2, which="both", num_steps=dim,
                                      tol=0.0, key=jax.random.key(1), operator=operator,
                                      hvp="fwd-rev")
    p = hessian.probes(split, params, data, k=2, num_steps=dim, tol=0.0, density_steps=dim,
                       key=jax.random.key(2), operator=operator)
  scale = np.max(np.abs(ref))
  np.testing.assert_allclose(np.asarray(top.values), ref[::-1][:2], atol=1e-8 * scale)
  np.testing.assert_allclose(np.asarray(bottom.values), ref[:2], atol=1e-8 * scale)
  np.testing.assert_allclose(np.asarray(p.eigen[0].values), ref[::-1][:2], atol=1e-8 * scale)
  # with a full Krylov space the Krylov-aware trace is exact
  np.testing.assert_allclose(float(p.trace[0]), ref.sum(), atol=1e-8 * scale * dim)


def test_trace_and_curvature_map_function_take_the_operator(case):
  _, split, params, data, H, G, F, _ = case
  with jax.enable_x64(True):
    est, se = hessian.trace(split, params, data, key=jax.random.key(0), num_samples=400,
                            operator="ggn")
    f = jax.jit(hessian.extreme_eigenvalues_fn(split, data, num_steps=H.shape[0],
                                               operator="fisher"))
    lmax, lmin = f(params, jax.random.key(4))
  assert abs(float(est) - float(jnp.trace(G))) < 5 * float(se) + 1e-9
  ef = np.linalg.eigvalsh(np.asarray(F))
  np.testing.assert_allclose([float(lmax), float(lmin)], [ef[-1], ef[0]],
                             atol=1e-8 * np.max(np.abs(ef)))


@pytest.mark.parametrize("operator", ["hessian", "ggn"])
def test_block_eigenvalues_equal_the_dense_block(case, operator):
  _, split, params, data, H, G, _, _ = case
  ref_full = np.asarray(H if operator == "hessian" else G)
  blocks = operators.resolve_blocks(params, "layer")
  assert list(blocks) == ["l0", "l1"]
  # leaf order: l0/b, l0/w, l1/b, l1/w; flat offsets follow it
  sizes = [leaf.size for leaf in jax.tree.leaves(params)]
  offsets = np.cumsum([0] + sizes)
  with jax.enable_x64(True):
    for name, index in blocks.items():
      idx = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in index])
      ref = np.linalg.eigvalsh(ref_full[np.ix_(idx, idx)])
      loss_b, params_b = operators.restrict(split, params, index)
      assert isinstance(loss_b, operators.SplitLoss)
      top, bottom = hessian.eigenvalues(loss_b, params_b, data, k=1, which="both",
                                        num_steps=idx.size, tol=0.0, key=jax.random.key(5),
                                        operator=operator)
      scale = np.max(np.abs(ref))
      np.testing.assert_allclose([float(top.values[0]), float(bottom.values[0])],
                                 [ref[-1], ref[0]], atol=1e-8 * scale)
      tr, _ = hessian.trace(loss_b, params_b, data, key=jax.random.key(0), num_samples=6,
                            method="hutch++", operator=operator)
      # Hutch++ on a block of at most 15 parameters with 2 sketch vectors is not exact;
      # the plain-loss restriction must give the same Hessian block
      plain_b, _ = operators.restrict(lambda p, b: split(p, b), params, index)
      mv = operators.matvec_fn(plain_b, data)
      e = jnp.eye(idx.size)
      cols = [ravel_pytree(mv(params_b, ravel_pytree(params_b)[1](e[i])))[0]
              for i in range(idx.size)]
      np.testing.assert_allclose(np.stack(cols, 1), H[np.ix_(idx, idx)],
                                 atol=200 * EPS64 * (np.max(np.abs(H)) + 1))
      assert np.isfinite(float(tr))


def test_block_patterns_and_their_errors():
  _, params, _ = _setup("mse")
  assert operators.param_paths(params) == ["l0/b", "l0/w", "l1/b", "l1/w"]
  assert operators.resolve_blocks(params, {"weights": "*/w", "first": ["l0/*"]}) == {
      "weights": [1, 3], "first": [0, 1]}
  with pytest.raises(ConfigError, match=r"pattern 'conv\*' matches no parameter; the "
                     r"parameter paths are l0/b, l0/w, l1/b, l1/w"):
    operators.resolve_blocks(params, {"c": "conv*"})
  with pytest.raises(ConfigError, match="blocks='rows'"):
    operators.resolve_blocks(params, "rows")


def test_an_operator_that_needs_the_outputs_refuses_a_plain_loss():
  split, params, data = _setup("mse")
  plain = lambda p, b: split(p, b)  # noqa: E731
  for op in ("ggn", "fisher", "residual"):
    with pytest.raises(ConfigError, match=f"operator='{op}' needs a loss that exposes"):
      hessian.eigenvalues(plain, params, data, key=jax.random.key(0), operator=op)
  with pytest.raises(ConfigError, match="operator"):
    operators.matvec_fn(split, data, operator="gauss")


def test_objective_build_gives_a_split_loss_whose_ggn_is_psd():
  from landscape import models, objective
  module = models.get("mlp", num_outputs=3, widths=(5,))
  x = jax.random.normal(jax.random.key(0), (16, 4))
  y = jax.random.randint(jax.random.key(1), (16,), 0, 3)
  variables = module.init(jax.random.key(2), x, False)
  obj = objective.build(module, variables, losses.get("cross_entropy"), task="multiclass",
                        l2=1e-3)
  assert isinstance(obj.loss_fn, operators.SplitLoss)
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda a: a.astype(jnp.float64), obj.params)
    flat, unravel = ravel_pytree(p64)
    G = _as_matrix(jax.jit(operators.matvec_fn(obj.loss_fn, (x.astype(jnp.float64), y),
                                               operator="ggn")), p64, unravel, flat.size)
    # the dense Hessian column by column (jvp of grad, no vmap: jax.hessian's vmap over
    # optax's jitted cross-entropy crashed XLA's compiler under x64 late in a full session)
    column = jax.jit(lambda e: jax.jvp(jax.grad(
        lambda f: obj.loss_fn(unravel(f), (x.astype(jnp.float64), y))), (flat,), (e,))[1])
    H = jnp.stack([column(e) for e in jnp.eye(flat.size)], axis=1)
  eg = np.linalg.eigvalsh(np.asarray(G))
  assert eg.min() >= 1e-3 - 1e-9   # G ⪰ l2·I
  np.testing.assert_allclose(np.asarray(G), np.asarray(G).T, atol=1e-12)
  assert np.linalg.eigvalsh(np.asarray(H - G)).min() < 0


def test_curvature_map_and_certify_take_the_operator(case):
  from landscape import critical, curvature
  _, split, params, data, H, G, _, unravel = case
  dim = H.shape[0]
  d = jax.tree.map(lambda a: 0.1 * jnp.ones_like(a), params)
  xs = np.array([-1.0, 0.0, 1.0])
  with jax.enable_x64(True):
    cmap = curvature.curvature_map(split, params, (d,), xs, data=data, key=jax.random.key(0),
                                   num_steps=dim, operator="ggn")
    for i, a in enumerate(xs):
      p = jax.tree.map(lambda q, v: q + a * v, params, d)
      ref = np.linalg.eigvalsh(np.asarray(_dense(split, p, data)[1]))
      np.testing.assert_allclose(
          [float(cmap.values["max_eig"][i]), float(cmap.values["min_eig"][i])],
          [ref[-1], ref[0]], atol=1e-7 * np.max(np.abs(ref)))
    cert_r = critical.certify(split, params, data, k=3, operator="residual")
    cert_g = critical.certify(split, params, data, k=3, operator="ggn")
  er = np.linalg.eigvalsh(np.asarray(H - G))
  np.testing.assert_allclose(cert_r.eigenvalues, er[:3], atol=1e-8 * np.max(np.abs(er)))
  assert cert_g.index_upper == 0 and cert_r.index_lower >= 1
