"""Tests of landscape._validate and of one error class per kind of mistake.

Each validator refuses its bad values with a :class:`ConfigError` whose one-line
message names the argument; then the same mistake (a count below its minimum, a
``key`` that is not a PRNG key, an empty or integer params tree, a negative
tolerance, an unknown name, a loss that is not callable) must raise the same class
from every public probe it applies to, and a non-finite start point a
:class:`ProbeError` from all of them.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from landscape import _validate, critical, curvature, directions, hessian, linalg
from landscape.errors import ConfigError, LandscapeError, ProbeError


def _refuses(call, name: str, error: type = ConfigError) -> str:
  """Run ``call``; assert it raises exactly ``error`` with a one-line message naming ``name``."""
  with pytest.raises(LandscapeError) as info:
    call()
  message = str(info.value)
  assert type(info.value) is error, f"{type(info.value).__name__}: {message}"
  assert name in message, message
  assert "\n" not in message, message
  return message


# ---------------------------------------------------------------------- integer

@given(low=st.integers(-5, 5), below=st.integers(1, 10**6))
def test_integer_refuses_values_below_low(low, below):
  message = _refuses(lambda: _validate.integer("num_steps", low - below, low=low,
                                               fix="pass e.g. num_steps=40"), "num_steps")
  assert f">= {low}, got {low - below}" in message and "num_steps=40" in message


@pytest.mark.parametrize("value", [True, False, 2.0, 1.5, "3", None, np.float32(2), [2]])
def test_integer_refuses_non_integers(value):
  _refuses(lambda: _validate.integer("k", value, low=0, fix="pass k=1"), "k")


@given(value=st.integers(0, 10**9))
def test_integer_accepts_and_returns_int(value):
  for v in (value, np.int64(value), np.int32(min(value, 2**31 - 1))):
    out = _validate.integer("k", v, low=0, fix="")
    assert type(out) is int and out == int(v)


# --------------------------------------------------------------------- positive

_NOT_NUMBERS = st.one_of(st.none(), st.booleans(), st.text(max_size=3),
                         st.sampled_from([math.nan, math.inf, -math.inf, [1.0], 1j]))


@given(value=st.one_of(st.floats(max_value=0.0, allow_nan=False), st.integers(max_value=0),
                       _NOT_NUMBERS))
def test_positive_refuses_non_positive_and_non_numbers(value):
  if value is None:
    value = -1.0                                   # None is refused only without optional
  message = _refuses(lambda: _validate.positive("tol", value, fix="pass e.g. tol=1e-6"), "tol")
  assert "finite number > 0" in message and "tol=1e-6" in message


@given(value=st.floats(min_value=1.0, allow_infinity=True, allow_nan=False))
def test_positive_refuses_values_at_or_above_upper(value):
  message = _refuses(lambda: _validate.positive("ls_beta", value, upper=1.0, fix="pass 0.5"),
                     "ls_beta")
  assert "< 1.0" in message


def test_positive_zero_and_optional():
  assert _validate.positive("margin", 0, zero=True, fix="") == 0.0
  assert _validate.positive("sigma", None, optional=True, fix="") is None
  assert _validate.positive("x", np.float32(0.5), fix="") == 0.5
  _refuses(lambda: _validate.positive("margin", -1e-9, zero=True, fix=""), "margin")
  _refuses(lambda: _validate.positive("sigma", 0.0, optional=True, fix=""), "sigma")
  _refuses(lambda: _validate.positive("sigma", None, fix=""), "sigma")


# ----------------------------------------------------------------------- choice

@given(value=st.one_of(st.text(max_size=8), st.integers(), st.none()))
def test_choice_refuses_unknown_names_and_lists_the_valid_ones(value):
  options = ("largest", "smallest", "both")
  if value in options:
    assert _validate.choice("which", value, options) == value
    return
  message = _refuses(lambda: _validate.choice("which", value, options), "which")
  assert "both, largest, smallest" in message


# --------------------------------------------------------------------- prng_key

@pytest.mark.parametrize("value", [
    0, 1.5, None, "key", np.array([0, 0], np.uint32), jnp.zeros(2, jnp.int32),
    jnp.zeros(3, jnp.uint32), jnp.zeros((2, 2), jnp.uint32),
    jax.random.split(jax.random.key(0), 2)],
    ids=["int", "float", "None", "str", "numpy", "int32", "uint32x3", "uint32x2x2", "key_batch"])
def test_prng_key_refuses_non_keys(value):
  message = _refuses(lambda: _validate.prng_key(value), "key")
  assert "jax.random.key(0)" in message


def test_prng_key_accepts_typed_and_raw_keys():
  for key in (jax.random.key(0), jax.random.PRNGKey(0)):
    assert _validate.prng_key(key) is key
  _refuses(lambda: _validate.prng_key(7, "seed_key"), "seed_key")


# ------------------------------------------------------------------- param_tree

@pytest.mark.parametrize("params", [{}, [], (), None, {"a": {}, "b": []}],
                         ids=["dict", "list", "tuple", "None", "nested"])
def test_param_tree_refuses_empty_trees(params):
  message = _refuses(lambda: _validate.param_tree(params, "params0"), "params0")
  assert "no arrays" in message


@given(dtype=st.sampled_from([jnp.int32, jnp.uint8, jnp.bool_, np.int64]))
def test_param_tree_refuses_non_floating_leaves_naming_the_path(dtype):
  params = {"w": jnp.ones((2, 2)), "b": np.zeros(3, dtype)}
  message = _refuses(lambda: _validate.param_tree(params), "params")
  assert "['b']" in message and str(jnp.result_type(params["b"])) in message


def test_param_tree_accepts_floating_trees_unchanged():
  params = {"w": jnp.ones((2, 2), jnp.bfloat16), "b": np.zeros(3), "c": 0.5}
  assert _validate.param_tree(params) is params


# ---------------------------------------------------------------- loss_callable

@dataclasses.dataclass
class _Loss:                     # a dataclass with eq: callable but unhashable
  scale: float

  def __call__(self, params, batch):
    return self.scale * jnp.sum(params ** 2)


@pytest.mark.parametrize("value", [None, 3, "mse", {"fn": len}])
def test_loss_callable_refuses_non_callables(value):
  _refuses(lambda: _validate.loss_callable(value), "loss_fn")


def test_loss_callable_makes_unhashable_callables_hashable():
  fn = lambda p, b: p  # noqa: E731
  assert _validate.loss_callable(fn) is fn
  loss = _Loss(2.0)
  wrapped = _validate.loss_callable(loss)
  assert hash(wrapped) == hash(_validate.loss_callable(loss)) and wrapped(jnp.ones(2), None) == 4
  assert wrapped == _validate.loss_callable(loss) and wrapped != _validate.loss_callable(_Loss(2.0))


# ---------------------------------------- one mistake, one class, every probe

def _loss(params, batch):
  return jnp.sum(params["w"] ** 2) + jnp.sum(params["b"] ** 4)


def _params():
  return {"w": jnp.array([0.3, -0.2]), "b": jnp.array([0.1])}


KEY = jax.random.key(0)

# mistake -> {probe: (call, name the message must contain)}
MISTAKES = {
    "count_below_minimum": {
        "eigenvalues": (lambda: hessian.eigenvalues(_loss, _params(), k=0, key=KEY), "k"),
        "trace": (lambda: hessian.trace(_loss, _params(), key=KEY, num_samples=1), "num_samples"),
        "density": (lambda: hessian.density(_loss, _params(), key=KEY, num_runs=0), "num_runs"),
        "curvature_map": (lambda: curvature.curvature_map(
            _loss, _params(), [_params()], np.linspace(-1, 1, 3), key=KEY, num_steps=0),
            "num_steps"),
        "find": (lambda: critical.find(_loss, _params(), max_steps=-1), "max_steps"),
        "find_slq": (lambda: critical.find(_loss, _params(), slq_steps=0), "slq_steps"),
        "perturbations": (lambda: critical.perturbations(KEY, _params(), -1, 0.1), "num"),
        "lanczos": (lambda: linalg.lanczos(lambda v: v, jnp.ones(3), 0), "num_steps"),
        "pca": (lambda: directions.pca([_params()] * 3, _params(), n=0), "n"),
    },
    "not_a_key": {
        "eigenvalues": (lambda: hessian.eigenvalues(_loss, _params(), key=0), "key"),
        "trace": (lambda: hessian.trace(_loss, _params(), key=np.uint32(0)), "key"),
        "density": (lambda: hessian.density(_loss, _params(), key="0"), "key"),
        "curvature_map": (lambda: curvature.curvature_map(
            _loss, _params(), [_params()], np.linspace(-1, 1, 3), key=0), "key"),
        "find": (lambda: critical.find(_loss, _params(), key=0), "key"),
        "perturbations": (lambda: critical.perturbations(0, _params(), 2, 0.1), "key"),
        "random": (lambda: directions.random(0, _params()), "key"),
        "random_plane": (lambda: directions.random_plane(1.0, _params()), "key"),
    },
    "empty_params": {
        "eigenvalues": (lambda: hessian.eigenvalues(_loss, {}, key=KEY), "params"),
        "trace": (lambda: hessian.trace(_loss, {}, key=KEY), "params"),
        "curvature_map": (lambda: curvature.curvature_map(
            _loss, {}, [{}], np.linspace(-1, 1, 3), key=KEY), "params"),
        "find": (lambda: critical.find(_loss, {}), "params0"),
        "scan": (lambda: critical.scan(_loss, [_params(), {}]), "starts[1]"),
        "perturbations": (lambda: critical.perturbations(KEY, {}, 2, 0.1), "params"),
        "random": (lambda: directions.random(KEY, {}), "params"),
    },
    "integer_params": {
        "eigenvalues": (lambda: hessian.eigenvalues(
            _loss, {**_params(), "b": jnp.ones(1, jnp.int32)}, key=KEY), "['b']"),
        "find": (lambda: critical.find(_loss, {**_params(), "b": jnp.ones(1, jnp.int32)}),
                 "['b']"),
        "random": (lambda: directions.random(KEY, {**_params(), "b": jnp.ones(1, jnp.int32)}),
                   "['b']"),
    },
    "negative_tolerance": {
        "eigenvalues": (lambda: hessian.eigenvalues(_loss, _params(), key=KEY, tol=-1e-3),
                        "tol"),
        "density": (lambda: hessian.density(_loss, _params(), key=KEY, sigma=-1.0), "sigma"),
        "find": (lambda: critical.find(_loss, _params(), tol=-1e-3), "tol"),
        "find_eig_tol": (lambda: critical.find(_loss, _params(), eig_tol=-1.0), "eig_tol"),
        "perturbations": (lambda: critical.perturbations(KEY, _params(), 2, -0.1), "scale"),
    },
    "too_many": {
        "eigenvalues": (lambda: hessian.eigenvalues(_loss, _params(), k=4, key=KEY), "k=4"),
        "eigenvalues_steps": (lambda: hessian.eigenvalues(
            _loss, _params(), k=2, num_steps=1, key=KEY), "num_steps=1"),
    },
    "unknown_name": {
        "eigenvalues": (lambda: hessian.eigenvalues(_loss, _params(), key=KEY, which="mid"),
                        "'mid'"),
        "trace": (lambda: hessian.trace(_loss, _params(), key=KEY, method="exact"), "'exact'"),
        "find": (lambda: critical.find(_loss, _params(), method="newton"), "'newton'"),
        "find_index": (lambda: critical.find(_loss, _params(), index_method="qr"), "'qr'"),
        "find_option": (lambda: critical.find(_loss, _params(), learning_rate=1.0),
                        "'learning_rate'"),
        "random": (lambda: directions.random(KEY, _params(), norm="filters"), "'filters'"),
        "extreme_eigenpairs": (lambda: linalg.extreme_eigenpairs(
            lambda v: v, jnp.ones(3), 0.0, k=1, which="mid", num_steps=2), "'mid'"),
    },
    "not_callable": {
        "eigenvalues": (lambda: hessian.eigenvalues(None, _params(), key=KEY), "loss_fn"),
        "trace": (lambda: hessian.trace("mse", _params(), key=KEY), "loss_fn"),
        "curvature_map": (lambda: curvature.curvature_map(
            None, _params(), [_params()], np.linspace(-1, 1, 3), key=KEY), "loss_fn"),
        "find": (lambda: critical.find(None, _params()), "loss_fn"),
    },
}


@pytest.mark.parametrize("mistake,probe", [(m, p) for m, probes in MISTAKES.items()
                                           for p in probes])
def test_the_same_mistake_raises_config_error_everywhere(mistake, probe):
  call, name = MISTAKES[mistake][probe]
  _refuses(call, name, ConfigError)


def _nan_params():
  return {"w": jnp.array([jnp.nan, 0.0]), "b": jnp.array([0.1])}


@pytest.mark.parametrize("probe", ["eigenvalues", "trace", "density", "find"])
def test_a_non_finite_point_is_a_probe_error_everywhere(probe):
  call = {
      "eigenvalues": lambda: hessian.eigenvalues(_loss, _nan_params(), key=KEY),
      "trace": lambda: hessian.trace(_loss, _nan_params(), key=KEY),
      "density": lambda: hessian.density(_loss, _nan_params(), key=KEY, num_steps=3),
      "find": lambda: critical.find(_loss, _nan_params()),
  }[probe]
  _refuses(call, "nan", ProbeError)


def test_hessian_still_exports_curvature_map():
  from landscape.hessian import curvature_map
  assert curvature_map is curvature.curvature_map is hessian.curvature_map
  with pytest.raises(AttributeError, match="no_such_name"):
    hessian.no_such_name  # noqa: B018
