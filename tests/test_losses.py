"""Tests of landscape.losses against NumPy formulas, torch and optax, in float64."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
try:  # torch is an optional reference (the "bench" extra); NumPy references always run
  import torch
  import torch.nn.functional as F
except ImportError:
  torch = F = None
from hypothesis import given
from hypothesis import strategies as st

from landscape import losses
from landscape.errors import ConfigError, DataError

EPS = np.finfo(np.float64).eps
# Each loss is a handful of exp/log/logaddexp roundings plus a sum over at most C terms,
# and the references round differently (e.g. log1p(exp) vs log-sigmoid): a few ulps each,
# so 32 ulps of the result, and the same absolute slack for results near zero.
RTOL = ATOL = 32 * EPS

TASKS = {
    "mse": "regression", "mae": "regression", "huber": "regression",
    "log_cosh": "regression", "quantile": "regression", "asymmetric_mse": "regression",
    "asymmetric_huber": "regression", "bce": "binary", "hinge": "binary",
    "squared_hinge": "binary", "focal": "binary", "cross_entropy": "multiclass",
    "multiclass_hinge": "multiclass", "multiclass_focal": "multiclass",
}
DEFAULTS = {
    "huber": {"delta": 1.0}, "quantile": {"tau": 0.5},
    "asymmetric_mse": {"under_weight": 3.0, "over_weight": 1.0},
    "asymmetric_huber": {"under_weight": 3.0, "over_weight": 1.0, "delta": 1.0},
    "focal": {"alpha": 0.25, "gamma": 2.0}, "cross_entropy": {"label_smoothing": 0.0},
    "multiclass_hinge": {"margin": 1.0}, "multiclass_focal": {"gamma": 2.0, "alpha": 1.0},
}
CLASSIFICATION = [n for n, t in TASKS.items() if t != "regression"]


# ------------------------------------------------------------------ NumPy references

def _sig(x):
  return 1.0 / (1.0 + np.exp(-x))


def _np_huber(e, delta):
  return np.where(np.abs(e) <= delta, 0.5 * e**2, delta * np.abs(e) - 0.5 * delta**2)


def _np_regression(name, o, t, h):
  e = o - t
  w = np.where(o < t, h.get("under_weight", 0.0), h.get("over_weight", 0.0))
  return {
      "mse": lambda: e**2,
      "mae": lambda: np.abs(e),
      "huber": lambda: _np_huber(e, h["delta"]),
      "log_cosh": lambda: np.log(np.cosh(e)),
      "quantile": lambda: h["tau"] * np.maximum(t - o, 0) + (1 - h["tau"]) * np.maximum(o - t, 0),
      "asymmetric_mse": lambda: w * e**2,
      "asymmetric_huber": lambda: w * _np_huber(e, h["delta"]),
  }[name]()


def _np_binary(name, o, t, h):
  """t in {0, 1}."""
  s = 2 * t - 1
  if name == "bce":
    return t * np.log1p(np.exp(-o)) + (1 - t) * np.log1p(np.exp(o))
  if name == "hinge":
    return np.maximum(0, 1 - s * o)
  if name == "squared_hinge":
    return np.maximum(0, 1 - s * o) ** 2
  # focal: 1 − p_t written as σ of the other sign, so no cancellation in 1 − p.
  p_t, one_minus_p_t = _sig(s * o), _sig(-s * o)
  alpha_t = np.where(t == 1, h["alpha"], 1 - h["alpha"])
  return -alpha_t * one_minus_p_t ** h["gamma"] * np.log(p_t)


def _np_multiclass(name, o, y, h):
  n, c = o.shape
  z = o - o.max(axis=1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
  rows = np.arange(n)
  if name == "cross_entropy":
    a = h["label_smoothing"]
    target = (1 - a) * np.eye(c)[y] + a / c
    return -(target * log_p).sum(axis=1)
  if name == "multiclass_hinge":
    return np.array([sum(max(0.0, o[i, j] - o[i, y[i]] + h["margin"])
                         for j in range(c) if j != y[i]) for i in range(n)])
  p = np.exp(log_p)
  one_minus_p_y = np.where(np.eye(c)[y] == 1, 0.0, p).sum(axis=1)
  return -h["alpha"] * one_minus_p_y ** h["gamma"] * log_p[rows, y]


def _data(task, seed):
  """Random float64 inputs: n = 1 for seed 0, (n, C) = (6, 3) otherwise.

  Few distinct shapes: each new shape compiles every primitive again.
  """
  rng = np.random.default_rng(seed)
  n, c = (1, 6, 6)[seed], (5, 3, 3)[seed]
  if task == "regression":
    return 2 * rng.standard_normal(n), 2 * rng.standard_normal(n)
  if task == "binary":
    return 3 * rng.standard_normal(n), rng.integers(0, 2, n).astype(np.float64)
  return 3 * rng.standard_normal((n, c)), rng.integers(0, c, n)


def _reference(name, o, t, h):
  fn = {"regression": _np_regression, "binary": _np_binary,
        "multiclass": _np_multiclass}[TASKS[name]]
  return fn(name, o, t, {**DEFAULTS.get(name, {}), **h})


CASES = [
    ("mse", {}), ("mae", {}), ("huber", {}), ("huber", {"delta": 0.3}), ("log_cosh", {}),
    ("quantile", {}), ("quantile", {"tau": 0.9}), ("asymmetric_mse", {}),
    ("asymmetric_mse", {"under_weight": 0.5, "over_weight": 2.0}), ("asymmetric_huber", {}),
    ("asymmetric_huber", {"under_weight": 0.0, "over_weight": 1.5, "delta": 0.4}),
    ("bce", {}), ("hinge", {}), ("squared_hinge", {}), ("focal", {}),
    ("focal", {"alpha": 0.8, "gamma": 0.5}), ("cross_entropy", {}),
    ("cross_entropy", {"label_smoothing": 0.2}), ("multiclass_hinge", {}),
    ("multiclass_hinge", {"margin": 0.3}), ("multiclass_focal", {}),
    ("multiclass_focal", {"gamma": 0.7, "alpha": 0.4}),
]


def _close(actual, expected):
  np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------------ registry

def test_registry_names_tasks_and_defaults():
  assert losses.names() == tuple(sorted(TASKS))
  assert {name for name, _ in CASES} == set(TASKS)
  for name, kind in TASKS.items():
    assert losses.task(name) == kind
    assert losses.hyperparameters(name) == DEFAULTS.get(name, {})
  losses.hyperparameters("huber")["delta"] = 5.0  # a copy: the registry is unchanged
  assert losses.hyperparameters("huber") == {"delta": 1.0}


# -------------------------------------------------------------- against references

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name,hyper", CASES)
def test_matches_numpy_formula(name, hyper, seed):
  with jax.enable_x64(True):
    o, t = _data(TASKS[name], seed)
    got = losses.get(name, **hyper)(jnp.asarray(o), jnp.asarray(t))
    assert got.shape == (o.shape[0],) and got.dtype == jnp.float64
    _close(got, _reference(name, o, t, hyper))


def _torch(name, o, t, h):
  o, t = torch.from_numpy(o), torch.from_numpy(t)
  if name == "mse":
    return F.mse_loss(o, t, reduction="none")
  if name == "mae":
    return F.l1_loss(o, t, reduction="none")
  if name == "huber":
    return F.huber_loss(o, t, reduction="none", delta=h["delta"])
  if name == "bce":
    return F.binary_cross_entropy_with_logits(o, t, reduction="none")
  if name == "cross_entropy":
    return F.cross_entropy(o, t, reduction="none", label_smoothing=h["label_smoothing"])
  # torch's multi_margin_loss is the Weston–Watkins sum divided by C.
  return o.shape[1] * F.multi_margin_loss(o, t, p=1, margin=h["margin"], reduction="none")


TORCH_CASES = [
    ("mse", {}), ("mae", {}), ("huber", {"delta": 1.0}), ("huber", {"delta": 0.3}),
    ("bce", {}), ("cross_entropy", {"label_smoothing": 0.0}),
    ("cross_entropy", {"label_smoothing": 0.2}), ("multiclass_hinge", {"margin": 1.0}),
    ("multiclass_hinge", {"margin": 0.3}),
]


@pytest.mark.skipif(torch is None, reason="torch not installed (pip install -e '.[bench]')")
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name,hyper", TORCH_CASES)
def test_matches_torch(name, hyper, seed):
  with jax.enable_x64(True):
    o, t = _data(TASKS[name], seed)
    got = losses.get(name, **hyper)(jnp.asarray(o), jnp.asarray(t))
    _close(got, _torch(name, o, t, hyper).numpy())


def _optax(name, o, t, h):
  ol = optax.losses
  if name == "mse":
    return ol.squared_error(o, t)
  if name == "huber":
    return ol.huber_loss(o, t, delta=h["delta"])
  if name == "log_cosh":
    return ol.log_cosh(o, t)
  if name == "bce":
    return ol.sigmoid_binary_cross_entropy(o, t)
  if name == "hinge":
    return ol.hinge_loss(o, 2 * t - 1)
  if name == "focal":
    return ol.sigmoid_focal_loss(o, t, alpha=h["alpha"], gamma=h["gamma"])
  onehot = jax.nn.one_hot(t, o.shape[1], dtype=o.dtype)
  return ol.softmax_cross_entropy(o, ol.smooth_labels(onehot, h["label_smoothing"]))


OPTAX_CASES = [
    ("mse", {}), ("huber", {"delta": 0.3}), ("log_cosh", {}), ("bce", {}), ("hinge", {}),
    ("focal", {"alpha": 0.8, "gamma": 0.5}), ("cross_entropy", {"label_smoothing": 0.2}),
]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name,hyper", OPTAX_CASES)
def test_matches_optax(name, hyper, seed):
  with jax.enable_x64(True):
    o, t = (jnp.asarray(a) for a in _data(TASKS[name], seed))
    _close(losses.get(name, **hyper)(o, t), _optax(name, o, t, hyper))


# ------------------------------------------------------------------- numerical safety

EXTREME_CASES = [(n, {}) for n in CLASSIFICATION + ["log_cosh"]] + [
    ("focal", {"gamma": 0.5}), ("multiclass_focal", {"gamma": 0.5})]  # (1 − p)^γ, γ < 1


@pytest.mark.parametrize("x64", [True, False])  # float32 too: the default dtype of users
@pytest.mark.parametrize("name,hyper", EXTREME_CASES)
def test_extreme_inputs_give_finite_values_and_gradients(name, hyper, x64):
  with jax.enable_x64(x64):
    if TASKS[name] == "multiclass":
      o = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e4, -1e4, -1e4]])
      t = jnp.array([0, 0, 1])
    else:
      o = jnp.array([1e4, -1e4, 1e4, -1e4, 0.0])
      t = jnp.array([1.0, 0.0, 0.0, 1.0, 1.0]) if TASKS[name] == "binary" else -o / 2
    fn = losses.get(name, **hyper)
    # jit: one compile of the whole gradient is ~3x cheaper than op-by-op autodiff.
    value, grad = jax.jit(jax.value_and_grad(lambda x: fn(x, t).sum()))(o)
    assert np.isfinite(np.asarray(value)).all() and np.isfinite(np.asarray(grad)).all()


def test_extreme_logits_asymptotes():
  """Values and gradients at ±1e4 equal their exact limits (not just finite)."""
  with jax.enable_x64(True):
    o, t = jnp.array([1e4, -1e4, 1e4]), jnp.array([0.0, 1.0, 1.0])
    bce = losses.get("bce")
    _close(bce(o, t), [1e4, 1e4, 0.0])
    _close(jax.jit(jax.grad(lambda x: bce(x, t).sum()))(o), [1.0, -1.0, 0.0])  # σ(o) − t
    logits, y = jnp.array([[1e4, -1e4, 0.0]]), jnp.array([1])
    _close(losses.get("cross_entropy")(logits, y), [2e4])
    _close(losses.get("multiclass_focal", gamma=2.0)(logits, y), [2e4])  # (1 − p_y)^γ = 1
    _close(losses.get("log_cosh")(jnp.array([1e4]), jnp.array([0.0])), [1e4 - np.log(2)])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name,hyper", [(n, {}) for n in ["bce", "hinge", "squared_hinge", "focal"]]
                         + [("focal", {"alpha": 0.6, "gamma": 0.5})])
def test_binary_target_conventions_agree(name, hyper, seed):
  with jax.enable_x64(True):
    o, t01 = (jnp.asarray(a) for a in _data("binary", seed))
    fn = losses.get(name, **hyper)
    fn = jax.jit(fn) if seed == 1 else fn  # the {−1,+1} detection must be traceable
    pm1 = 2 * t01 - 1
    np.testing.assert_array_equal(np.asarray(fn(o, t01)), np.asarray(fn(o, pm1)))
    np.testing.assert_array_equal(np.asarray(fn(o, pm1.astype(jnp.int32))), np.asarray(fn(o, pm1)))
    _close(fn(o, t01), _reference(name, np.asarray(o), np.asarray(t01), hyper))


@pytest.mark.parametrize("name", ["cross_entropy", "multiclass_hinge", "multiclass_focal"])
def test_out_of_range_labels_give_nan_rows(name):
  with jax.enable_x64(True):
    o, y = _data("multiclass", 1)  # n = 6, C = 3
    bad = y.copy()
    bad[[1, 4]] = [3, -1]
    got = np.asarray(jax.jit(losses.get(name))(jnp.asarray(o), jnp.asarray(bad)))
    assert np.isnan(got[[1, 4]]).all()
    keep = [0, 2, 3, 5]
    _close(got[keep], _reference(name, o, y, {})[keep])


# ------------------------------------------------------------------ hypothesis properties

N, C = 6, 3  # the shape of _data(..., seed=1): primitives compiled once, shared
_reals = hnp.arrays(np.float64, (N,), elements=st.floats(-50, 50))
_logits = hnp.arrays(np.float64, (N, C), elements=st.floats(-30, 30))
_labels = hnp.arrays(np.int32, (N,), elements=st.integers(0, C - 1))
_bits = hnp.arrays(np.float64, (N,), elements=st.sampled_from([0.0, 1.0]))
_positive = st.floats(0.01, 10.0)


def _loss(name, o, t, **hyper):
  return np.asarray(losses.get(name, **hyper)(jnp.asarray(o), jnp.asarray(t)))


@given(_reals, _reals)
def test_huber_with_huge_delta_is_half_mse(o, t):
  with jax.enable_x64(True):
    _close(_loss("huber", o, t, delta=1e6), 0.5 * _loss("mse", o, t))  # |e| <= 100 < δ


@given(_reals, _reals)
def test_median_quantile_is_half_mae(o, t):
  with jax.enable_x64(True):
    _close(_loss("quantile", o, t, tau=0.5), 0.5 * _loss("mae", o, t))


@given(_reals, _reals, _positive)
def test_symmetric_asymmetric_losses_reduce(o, t, delta):
  with jax.enable_x64(True):
    _close(_loss("asymmetric_mse", o, t, under_weight=1.0, over_weight=1.0), _loss("mse", o, t))
    _close(_loss("asymmetric_huber", o, t, under_weight=1.0, over_weight=1.0, delta=delta),
           _loss("huber", o, t, delta=delta))


@given(_reals, _reals, _positive, _positive)
def test_asymmetric_weights_split_by_sign_of_error(o, t, under, over):
  with jax.enable_x64(True):
    below = o < t
    want = np.where(below, under, over) * _loss("mse", o, t)
    _close(_loss("asymmetric_mse", o, t, under_weight=under, over_weight=over), want)


@given(_reals, _bits)
def test_focal_without_focusing_is_half_bce(o, t):
  with jax.enable_x64(True):
    _close(_loss("focal", o, t, gamma=0.0, alpha=0.5), 0.5 * _loss("bce", o, t))


@given(_logits, _labels)
def test_multiclass_focal_without_focusing_is_cross_entropy(o, y):
  with jax.enable_x64(True):
    _close(_loss("multiclass_focal", o, y, gamma=0.0, alpha=1.0), _loss("cross_entropy", o, y))


@given(_logits, _labels, st.floats(0.0, 0.99))
def test_cross_entropy_smoothing(o, y, alpha):
  with jax.enable_x64(True):
    exact = optax.losses.softmax_cross_entropy_with_integer_labels(jnp.asarray(o), jnp.asarray(y))
    _close(_loss("cross_entropy", o, y, label_smoothing=0.0), exact)
    # y' = (1 − α)·onehot + α/C mixes CE with the mean of −log p_j over the classes.
    mean_nll = -np.asarray(jax.nn.log_softmax(jnp.asarray(o))).mean(axis=1)
    _close(_loss("cross_entropy", o, y, label_smoothing=alpha),
           (1 - alpha) * np.asarray(exact) + alpha * mean_nll)


# ------------------------------------------------------------------ shapes and errors

@pytest.mark.parametrize("name", sorted(TASKS))
def test_output_shape_and_trailing_axis(name):
  with jax.enable_x64(True):
    o, t = (jnp.asarray(a) for a in _data(TASKS[name], 1))
    fn = losses.get(name)
    want = fn(o, t)
    assert want.shape == (6,)
    if TASKS[name] == "multiclass":
      variants = [(o, t[:, None])]
    else:
      variants = [(o[:, None], t), (o[:, None], t[:, None]), (o, t[:, None])]
    for i, (oo, tt) in enumerate(variants):
      got = (jax.jit(fn) if i == 0 else fn)(oo, tt)  # traceable too; once per loss (compiles)
      assert got.shape == (6,)
      _close(got, want)


BAD_HYPER = [
    ("huber", {"delta": 0.0}, "0.0"), ("huber", {"delta": -1.0}, "-1.0"),
    ("huber", {"delta": float("inf")}, "inf"), ("huber", {"delta": "big"}, "'big'"),
    ("huber", {"delta": True}, "True"), ("huber", {"delta": None}, "None"),
    ("huber", {"detla": 1.0}, "'detla'"), ("mse", {"delta": 1.0}, "'delta'"),
    ("quantile", {"tau": 0.0}, "0.0"), ("quantile", {"tau": 1.0}, "1.0"),
    ("quantile", {"tau": float("nan")}, "nan"),
    ("asymmetric_mse", {"under_weight": -0.5}, "-0.5"),
    ("asymmetric_mse", {"over_weight": -2.0}, "-2.0"),
    ("asymmetric_huber", {"delta": -0.1}, "-0.1"),
    ("asymmetric_huber", {"under_weight": -3.0}, "-3.0"),
    ("focal", {"alpha": 1.5}, "1.5"), ("focal", {"alpha": -0.1}, "-0.1"),
    ("focal", {"gamma": -1.0}, "-1.0"), ("multiclass_focal", {"gamma": -2.0}, "-2.0"),
    ("multiclass_focal", {"alpha": 2.0}, "2.0"),
    ("cross_entropy", {"label_smoothing": 1.0}, "1.0"),
    ("cross_entropy", {"label_smoothing": -0.1}, "-0.1"),
    ("multiclass_hinge", {"margin": -1.0}, "-1.0"),
    ("multiclass_hinge", {"margin": [1.0]}, "[1.0]"),
]


@pytest.mark.parametrize("name,hyper,shown", BAD_HYPER)
def test_bad_hyperparameter_raises_config_error(name, hyper, shown):
  with pytest.raises(ConfigError) as info:
    losses.get(name, **hyper)
  message = str(info.value)
  assert shown in message and name in message and "\n" not in message


@pytest.mark.parametrize("call", [losses.get, losses.task, losses.hyperparameters])
@pytest.mark.parametrize("bad", ["crossentropy", "MSE", 3])
def test_unknown_name_raises_config_error_listing_valid_names(call, bad):
  with pytest.raises(ConfigError, match="cross_entropy") as info:
    call(bad)
  assert repr(bad) in str(info.value)


def test_valid_boundary_hyperparameters_accepted():
  for name, hyper in [("focal", {"alpha": 0.0, "gamma": 0.0}), ("focal", {"alpha": 1.0}),
                      ("multiclass_hinge", {"margin": 0}), ("asymmetric_mse",
                      {"under_weight": 0, "over_weight": np.float32(2)})]:
    assert callable(losses.get(name, **hyper))


BAD_SHAPES = [
    ("mse", (5,), (4,), np.float32), ("mse", (5, 2), (5,), np.float32),
    ("huber", (5,), (5, 2), np.float32), ("mae", (), (), np.float32),
    ("bce", (5, 2), (5,), np.float32), ("hinge", (5,), (6,), np.float32),
    ("cross_entropy", (5,), (5,), np.int32), ("cross_entropy", (5, 3), (6,), np.int32),
    ("multiclass_hinge", (5, 1), (5,), np.int32), ("multiclass_focal", (5, 3), (5, 3), np.int32),
]


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("name,o_shape,t_shape,t_dtype", BAD_SHAPES)
def test_shape_mismatch_raises_data_error_naming_both(name, o_shape, t_shape, t_dtype, jit):
  fn = losses.get(name)
  fn = jax.jit(fn) if jit else fn
  with pytest.raises(DataError) as info:
    fn(jnp.zeros(o_shape), jnp.zeros(t_shape, t_dtype))
  assert str(o_shape) in str(info.value) and str(t_shape) in str(info.value)


def test_dtype_errors():
  with pytest.raises(DataError, match="integer"):
    losses.get("cross_entropy")(jnp.zeros((3, 2)), jnp.zeros(3))
  with pytest.raises(DataError, match="floating"):
    losses.get("mse")(jnp.zeros(3, jnp.int32), jnp.zeros(3))
