"""Tests of landscape.objective: the regularizer, loss_fn and accuracy against NumPy, and the
three BatchNorm modes (eval, states, recompute) against direct references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from landscape import data, directions, losses, models, objective, surface, train
from landscape.errors import ConfigError

EPS = float(np.finfo(np.float32).eps)
# Points away from the origin with a + b not in {0, -1}: in `states` mode with ignore=None
# both directions of a statistics leaf s are s itself, so the statistics become s·(1 + a + b).
POINTS = np.array([[0.0, 0.0], [0.4, 0.0], [0.0, -0.3], [0.3, 0.2], [-0.2, 0.5]], np.float32)


def _np_bn_input(x, stem):
  """relu(conv(x; K) + b) of the first convolution, float64 NumPy ('SAME', channels last)."""
  k, b = (np.asarray(stem[n], np.float64) for n in ("kernel", "bias"))
  x = np.asarray(x, np.float64)
  _, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  z = sum(np.einsum("nhwi,io->nhwo", xp[:, i:i + h, j:j + w], k[i, j])
          for i in range(3) for j in range(3)) + b
  return np.maximum(z, 0.0)


def _np_batch_stats(x, params):
  z = _np_bn_input(x, params["stem_conv"])
  return {"bn_0": {"mean": z.mean(axis=(0, 1, 2)), "var": z.var(axis=(0, 1, 2))}}


def _np_cross_entropy(logits, y):
  logits = np.asarray(logits, np.float64)
  top = logits.max(axis=1, keepdims=True)
  lse = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
  return lse - logits[np.arange(len(y)), y]


def _np_regularizer(params, l2, l1):
  leaves = [np.asarray(p, np.float64) for p in jax.tree.leaves(params)]
  return l2 * 0.5 * sum((p ** 2).sum() for p in leaves) + l1 * sum(np.abs(p).sum() for p in leaves)


@pytest.fixture(scope="session")
def bn_cnn():
  """A 3-class BatchNorm CNN on digits 0-2, trained 6 steps so its running statistics are
  far from their (0, 1) start; 96 training and 48 held-out samples."""
  ds = data.load("digits")
  keep = ds.y_train < 3
  x, y = ds.x_train[keep][:144], ds.y_train[keep][:144]
  module = models.get("cnn", num_outputs=3, features=(4,), dense=8, batchnorm=True)
  variables = models.init(module, jax.random.key(1), x)
  tx = optax.adam(0.05)
  step = train.make_train_step(module, losses.get("cross_entropy"), tx, has_bn=True)
  state = {"params": variables["params"], "opt_state": tx.init(variables["params"]),
           "step": jnp.zeros((), jnp.int32), "batch_stats": variables["batch_stats"]}
  # Compiled at XLA's default level: under tests/conftest.py's level 0 the jitted gradient
  # of this BatchNorm CNN comes out NaN on CPU (finite eagerly and at level 2).
  step = jax.jit(step).lower(state, (x[:96], y[:96])).compile(
      {"xla_backend_optimization_level": 2})
  losses_seen = []
  for _ in range(6):
    state, value = step(state, (x[:96], y[:96]))
    losses_seen.append(float(value))
  assert np.all(np.isfinite(losses_seen)) and losses_seen[-1] < losses_seen[0]
  trained = {"params": state["params"], "batch_stats": state["batch_stats"]}
  stats = trained["batch_stats"]["bn_0"]
  # Non-trivial statistics, far from the (0, 1) they start at.
  assert np.all(np.abs(np.asarray(stats["mean"])) > 0.01)
  assert np.all(np.abs(np.asarray(stats["var"]) - 1) > 0.1)
  return module, trained, (x[:96], y[:96]), (x[96:], y[96:])


def _build(module, variables, mode, **kw):
  return objective.build(module, variables, losses.get("cross_entropy"), task="multiclass",
                         bn_mode=mode, **kw)


def _surface_fn(obj):
  """``(directions, points, batch) -> (loss, acc)`` of the objective's own point function
  at every point; compiled once per objective and directions structure."""

  @jax.jit
  def f(dirs, points, batch):
    out = jax.vmap(lambda c: obj.point_fn(dirs)(c, batch))(points)
    return jnp.stack([out["loss"], out["acc"]], axis=1)

  return f


@pytest.fixture(scope="session")
def bn_objectives(bn_cnn):
  """eval / states / recompute objectives of the trained BatchNorm CNN and their surfaces."""
  module, variables, (x_bn, _), _ = bn_cnn
  objs = {m: _build(module, variables, m, bn_data=x_bn, bn_samples=64)
          for m in objective.BN_MODES}
  return objs, {m: _surface_fn(o) for m, o in objs.items()}


@pytest.fixture(scope="session")
def reference(bn_cnn):
  """The direct reference: cross-entropy of ``module.apply`` in eval mode at
  ``θ + a·d₁ + b·d₂`` with the running statistics given per point (a leading point axis)."""
  module = bn_cnn[0]
  ce = losses.get("cross_entropy")

  @jax.jit
  def f(params, dirs, points, stats, batch):
    x, y = batch

    def one(c, st):
      p = jax.tree.map(lambda w, u, v: w + c[0] * u + c[1] * v, params, *dirs)
      return jnp.mean(ce(module.apply({"params": p, "batch_stats": st}, x, False), y))

    return jax.vmap(one)(points, stats)

  return f


def _tile(tree, scale=np.ones(len(POINTS), np.float32)):
  return jax.tree.map(lambda s: scale.reshape(-1, *([1] * np.ndim(s))) * np.asarray(s)[None],
                      tree)


# ----------------------------------------------------------------------- regularizer

@pytest.mark.parametrize("l2, l1", [(0.0, 0.0), (1e-2, 0.0), (0.0, 1e-3), (0.3, 0.07)])
def test_regularizer_equals_numpy(l2, l1):
  rng = np.random.default_rng(0)
  params = {"a": {"kernel": rng.standard_normal((5, 4)).astype(np.float32),
                  "bias": rng.standard_normal(4).astype(np.float32)},
            "b": [rng.standard_normal((3, 3, 2)).astype(np.float32)]}
  got = objective.regularizer(params, l2, l1)
  assert got.dtype == jnp.float32
  # ~100 float32 terms: relative rounding error well under 16 ulp.
  np.testing.assert_allclose(float(got), _np_regularizer(params, l2, l1), rtol=16 * EPS)


@given(l2=st.floats(0, 10), l1=st.floats(0, 10), seed=st.integers(0, 2**16))
def test_regularizer_equals_numpy_in_float64(l2, l1, seed):
  rng = np.random.default_rng(seed)
  with jax.enable_x64(True):
    params = {"w": jnp.asarray(rng.standard_normal((4, 3))),
              "b": jnp.asarray(rng.standard_normal(3))}
    got = objective.regularizer(params, l2, l1)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(float(got), _np_regularizer(params, l2, l1),
                               rtol=64 * np.finfo(np.float64).eps, atol=1e-300)


# ----------------------------------------------------------------------- loss_fn, accuracy

def test_loss_fn_at_the_trained_point_equals_the_mean_loss_by_hand(bn_cnn):
  module, variables, (x, y), _ = bn_cnn
  l2, l1 = 1e-3, 1e-4
  obj = objective.build(module, variables, losses.get("cross_entropy"), task="multiclass",
                        l2=l2, l1=l1)
  logits = module.apply(variables, x, False)                # eval mode: running statistics
  want = _np_cross_entropy(logits, y).mean() + _np_regularizer(variables["params"], l2, l1)
  got = float(jax.jit(obj.loss_fn)(obj.params, (x, y)))
  np.testing.assert_allclose(got, want, rtol=16 * EPS)
  acc = 100.0 * np.mean(np.argmax(np.asarray(logits), axis=1) == y)
  got = float(jax.jit(obj.metrics["acc"])(obj.params, (x, y)))
  np.testing.assert_allclose(got, acc, rtol=4 * EPS)
  assert 0 < acc < 100


@pytest.mark.parametrize("task, loss_name, hyper", [
    ("binary", "bce", {}), ("binary", "focal", {"alpha": 0.75, "gamma": 2.0}),
    ("regression", "huber", {"delta": 1.0}), ("regression", "mse", {}),
])
def test_loss_fn_of_an_mlp_equals_the_mean_loss_by_hand(task, loss_name, hyper):
  rng = np.random.default_rng(3)
  x = rng.standard_normal((40, 5)).astype(np.float32)
  y = ((rng.random(40) < 0.3).astype(np.int32) if task == "binary"
       else rng.standard_normal(40).astype(np.float32) * 3)
  module = models.get("mlp", num_outputs=1, widths=(6,))
  variables = models.init(module, jax.random.key(0), x)
  obj = objective.build(module, variables, losses.get(loss_name, **hyper), task=task,
                        l2=0.02, l1=0.01)
  o = np.asarray(jax.jit(module.apply)(variables, x), np.float64)[:, 0]
  if loss_name == "bce":
    per = np.where(y == 1, np.logaddexp(0, -o), np.logaddexp(0, o))
  elif loss_name == "focal":
    p_t = np.where(y == 1, 1 / (1 + np.exp(-o)), 1 / (1 + np.exp(o)))
    a_t = np.where(y == 1, hyper["alpha"], 1 - hyper["alpha"])
    per = -a_t * (1 - p_t) ** hyper["gamma"] * np.log(p_t)
  elif loss_name == "huber":
    e = np.abs(o - y)
    per = np.where(e <= 1.0, 0.5 * e ** 2, e - 0.5)
  else:
    per = (o - y) ** 2
  want = per.mean() + _np_regularizer(variables["params"], 0.02, 0.01)
  np.testing.assert_allclose(float(jax.jit(obj.loss_fn)(obj.params, (x, y))), want,
                             rtol=32 * EPS)
  if task == "binary":
    acc = 100.0 * np.mean((o > 0) == (y == 1))
    np.testing.assert_allclose(float(jax.jit(obj.metrics["acc"])(obj.params, (x, y))), acc,
                               rtol=4 * EPS)
  else:
    assert obj.metrics == {}


_ACCURACY = jax.jit(objective.accuracy, static_argnames="task")


@given(seed=st.integers(0, 2**16), pm=st.booleans())
def test_accuracy_in_percent_equals_a_numpy_count(seed, pm):
  rng = np.random.default_rng(seed)
  n = 30
  logits = rng.standard_normal((n, 4)).astype(np.float32)
  labels = rng.integers(0, 4, n)
  want = 100.0 * np.count_nonzero(np.argmax(logits, 1) == labels) / n
  np.testing.assert_allclose(float(_ACCURACY(logits, labels, task="multiclass")), want,
                             rtol=4 * EPS)
  # Binary: positive when the logit is > 0; labels {0, 1} or {-1, +1}.
  t = rng.integers(0, 2, n)
  want = 100.0 * np.count_nonzero((logits[:, 0] > 0) == (t == 1)) / n
  t = 2 * t - 1 if pm else t
  np.testing.assert_allclose(float(_ACCURACY(logits[:, :1], t, task="binary")), want,
                             rtol=4 * EPS)


# ----------------------------------------------------------------------- BatchNorm modes

def test_states_with_biasbn_directions_is_the_eval_surface(bn_cnn, bn_objectives, reference):
  _, variables, _, batch = bn_cnn
  objs, surf = bn_objectives
  assert set(objs["states"].params) == {"params", "batch_stats"}
  d_s = directions.random_plane(jax.random.key(0), objs["states"].params, ignore="biasbn")
  for d in d_s:                                    # the statistics' directions are zero
    assert all(not np.any(np.asarray(v)) for v in jax.tree.leaves(d["batch_stats"]))
  d_e = [d["params"] for d in d_s]
  surf_e = np.asarray(surf["eval"](d_e, POINTS, batch))
  # the same values; XLA may fuse the two graphs differently (jax 0.12: 1 ulp apart)
  np.testing.assert_allclose(np.asarray(surf["states"](d_s, POINTS, batch)), surf_e,
                             rtol=4 * EPS)
  # And eval is the direct reference: parameters moved, running statistics fixed.
  want = reference(variables["params"], d_e, POINTS, _tile(variables["batch_stats"]), batch)
  np.testing.assert_allclose(surf_e[:, 0], want, rtol=64 * EPS)
  assert np.ptp(surf_e[:, 0]) > 0.01                 # the points really move the loss


def test_states_without_ignore_moves_the_statistics(bn_cnn, bn_objectives, reference):
  _, variables, _, batch = bn_cnn
  objs, surf = bn_objectives
  d_s = directions.random_plane(jax.random.key(0), objs["states"].params, ignore=None)
  d_e = [d["params"] for d in d_s]
  surf_e = np.asarray(surf["eval"](d_e, POINTS, batch))
  surf_s = np.asarray(surf["states"](d_s, POINTS, batch))
  np.testing.assert_allclose(surf_s[0], surf_e[0], rtol=4 * EPS)     # the origin (an ulp)
  assert np.all(np.abs(surf_s[1:, 0] - surf_e[1:, 0]) > 1e-3 * np.abs(surf_e[1:, 0]))
  # Reference: eval mode with the statistics scaled by (1 + a + b), as ignore=None
  # makes every 1-D leaf's direction the leaf itself (the original tool's rule).
  scaled = _tile(variables["batch_stats"], 1 + POINTS[:, 0] + POINTS[:, 1])
  want = reference(variables["params"], d_e, POINTS, scaled, batch)
  # float32: (s + a·s) + b·s vs s·(1 + a + b) differ by an ulp or two of the statistics.
  np.testing.assert_allclose(surf_s[:, 0], want, rtol=1e-5)


def test_recompute_uses_the_batch_statistics_of_the_bn_data(bn_cnn, bn_objectives, reference):
  _, variables, (x_bn, _), batch = bn_cnn
  objs, surf = bn_objectives
  obj = objs["recompute"]
  d = list(directions.random_plane(jax.random.key(0), obj.params))
  shifted = jax.jit(jax.vmap(lambda c: surface.shift(obj.params, d, c)))(POINTS)
  stats = jax.jit(jax.vmap(lambda p: obj.variables_at(p)["batch_stats"]))(shifted)
  # The statistics at each point: biased batch mean/var of the first (only) BatchNorm's
  # input over the first 64 bn_data samples, float64 NumPy. float32 E[z²] − E[z]² over
  # 4096 values: a few ulp.
  want = [_np_batch_stats(x_bn[:64], jax.tree.map(lambda a, i=i: a[i], shifted))
          for i in range(len(POINTS))]
  want = jax.tree.map(lambda *a: np.stack(a).astype(np.float32), *want)
  for k in ("mean", "var"):
    np.testing.assert_allclose(stats["bn_0"][k], want["bn_0"][k], rtol=64 * EPS, atol=64 * EPS)
  surf_r = np.asarray(surf["recompute"](d, POINTS, batch))
  np.testing.assert_allclose(surf_r[:, 0], reference(variables["params"], d, POINTS, want, batch),
                             rtol=1e-5)
  # Away from the origin the re-estimated statistics change the surface.
  surf_e = np.asarray(surf["eval"](d, POINTS, batch))
  assert np.all(np.abs(surf_r[1:, 0] - surf_e[1:, 0]) > 1e-3 * np.abs(surf_e[1:, 0]))


def test_all_bn_modes_agree_exactly_without_batchnorm(bn_cnn):
  _, _, (x_bn, _), batch = bn_cnn
  module = models.get("cnn", num_outputs=3, features=(4,), dense=8)
  variables = models.init(module, jax.random.key(2), x_bn)
  assert "batch_stats" not in variables
  d = list(directions.random_plane(jax.random.key(0), variables["params"]))
  surfaces = {}
  for mode in objective.BN_MODES:
    obj = _build(module, variables, mode, bn_data=x_bn)
    dirs = [{"params": v, "batch_stats": {}} for v in d] if mode == "states" else d
    surfaces[mode] = np.asarray(_surface_fn(obj)(dirs, POINTS, batch))
  np.testing.assert_array_equal(surfaces["states"], surfaces["eval"])
  np.testing.assert_array_equal(surfaces["recompute"], surfaces["eval"])
  assert np.ptp(surfaces["eval"][:, 0]) > 0.01


@pytest.mark.parametrize("mode", ["eval", "states"])
def test_factorized_surface_equals_the_generic_one(bn_cnn, bn_objectives, mode):
  _, _, _, batch = bn_cnn
  objs, surf = bn_objectives
  obj = objs[mode]
  assert obj.factorizable and not objs["recompute"].factorizable
  d = directions.random_plane(jax.random.key(4), obj.params)
  point_fn, fdata = obj.factorized(d, batch, batch_size=20)
  fn = jax.jit(jax.vmap(point_fn, in_axes=(0, None)))
  out = fn(jnp.asarray(POINTS), jax.tree.map(jnp.asarray, fdata))
  got = np.stack([out["loss"], out["acc"]], axis=1)
  # z₀ + a·z₁ + b·z₂ vs the convolution of shifted weights: float32 re-association.
  np.testing.assert_allclose(got, surf[mode](list(d), POINTS, batch), rtol=1e-5, atol=1e-5)


def test_bad_bn_modes_raise_config_errors(bn_cnn):
  module, variables, _, _ = bn_cnn
  with pytest.raises(ConfigError, match="'train'.*eval, recompute, states"):
    _build(module, variables, "train")
  with pytest.raises(ConfigError, match="bn_data"):
    _build(module, variables, "recompute")
  obj = _build(module, variables, "recompute", bn_data=np.zeros((4, 8, 8, 1), np.float32))
  with pytest.raises(ConfigError, match="recompute"):
    obj.factorized([variables["params"]], (np.zeros((2, 8, 8, 1)), np.zeros(2, int)))
