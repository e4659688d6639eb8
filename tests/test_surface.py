"""Tests of the grid sweep engine against closed forms and independent references.

The references are explicit NumPy formulas in float64: a quadratic
``f(θ) = ½ θᵀAθ + bᵀθ`` with an indefinite ``A`` (no data) and a least-squares loss
``f(θ) = (1/N) Σ_n ½ (x_nᵀθ − y_n)²``, both on a small pytree ``{'a': (3,), 'w': (2, 2)}``
raveled as ``θ = [a, vec(w)]``; for Flax models, logits from ``module.apply`` and a
hand-written NumPy cross-entropy and accuracy.
"""

from __future__ import annotations

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landscape import losses, models, objective, surface
from landscape.errors import ConfigError

DIM = 7                                   # 3 + 2·2 parameters
XS = np.linspace(-1.0, 0.0, 7)            # "-1:0:7": non-square grid, (0, 0) in the corner
YS = np.linspace(-2.0, 0.0, 4)            # "-2:0:4"
N_SAMPLES = 50


# ----------------------------------------------------------------------------- problems

def _problem(seed: int = 0) -> dict:
  """Float64 NumPy ingredients: indefinite A, b, centre θ₀, directions u, v, data (X, y)."""
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
  eig = np.array([-2.0, -0.5, 0.3, 1.0, 1.5, 2.5, 4.0])     # indefinite on purpose
  a = (q * eig) @ q.T
  return {"A": 0.5 * (a + a.T), "b": rng.normal(size=DIM), "theta": rng.normal(size=DIM),
          "u": rng.normal(size=DIM), "v": rng.normal(size=DIM),
          "X": rng.normal(size=(N_SAMPLES, DIM)), "y": rng.normal(size=N_SAMPLES)}


def _tree(vec, dtype) -> dict:
  vec = np.asarray(vec)
  return {"a": jnp.asarray(vec[:3], dtype), "w": jnp.asarray(vec[3:].reshape(2, 2), dtype)}


def _ravel(p) -> jax.Array:
  return jnp.concatenate([p["a"], p["w"].reshape(-1)])


def _quadratic_loss(prob, dtype):
  a, b = jnp.asarray(prob["A"], dtype), jnp.asarray(prob["b"], dtype)

  def loss_fn(p, batch):
    assert batch is None
    t = _ravel(p)
    return 0.5 * t @ (a @ t) + b @ t
  return loss_fn


def _lstsq_loss(p, batch):
  x, y = batch
  r = x @ _ravel(p) - y
  return 0.5 * jnp.mean(r * r)


def _mae_metric(p, batch):
  x, y = batch
  return jnp.mean(jnp.abs(x @ _ravel(p) - y))


def _points(prob, xs, ys, flip=(1.0, 1.0)) -> np.ndarray:
  """θ₀ + x_i u + y_j v at ``[j, i]`` (``[i]`` for ys=None), float64, explicit loops."""
  u, v = flip[0] * prob["u"], flip[1] * prob["v"]
  if ys is None:
    return np.stack([prob["theta"] + x * u for x in xs])
  return np.stack([np.stack([prob["theta"] + x * u + y * v for x in xs]) for y in ys])


def _closed_form(kind: str, prob, t: np.ndarray, n: int | None = None):
  """(value, Σ|terms|) of the loss at points ``t (..., DIM)``: the scale bounds rounding."""
  if kind == "quadratic":
    value = 0.5 * np.einsum("...d,de,...e->...", t, prob["A"], t) + t @ prob["b"]
    scale = (0.5 * np.einsum("...d,de,...e->...", abs(t), abs(prob["A"]), abs(t))
             + abs(t) @ abs(prob["b"]))
    return value, scale
  x, y = prob["X"][:n], prob["y"][:n]
  r = np.einsum("nd,...d->...n", x, t) - y
  value = 0.5 * np.mean(r * r, axis=-1)
  scale = 0.5 * np.mean((np.einsum("nd,...d->...n", abs(x), abs(t)) + abs(y)) ** 2, axis=-1)
  return value, scale


def _setup(kind: str, prob, dtype):
  """(loss_fn, params, directions, data) in ``dtype``."""
  params = _tree(prob["theta"], dtype)
  dirs = (_tree(prob["u"], dtype), _tree(prob["v"], dtype))
  if kind == "quadratic":
    return _quadratic_loss(prob, dtype), params, dirs, None
  data = (jnp.asarray(prob["X"], dtype), jnp.asarray(prob["y"], dtype))
  return _lstsq_loss, params, dirs, data


# Forward-error bound c·eps·Σ|terms| for float32: the inputs, the shift θ + x·u + y·v
# (3 roundings), a length-7 dot product and, for least squares, the squared residual
# and a 50-term mean (≈ 2·(7 + 3) + log₂-ish summation growth); c = 64 covers it
# (measured: ≤ 1 here; a wrong point or weight is off by orders of magnitude more).
F32_FACTOR = 64


# ----------------------------------------------------------------------------- closed forms

@pytest.mark.parametrize("kind", ["quadratic", "lstsq"])
@pytest.mark.parametrize("point_mode", ["vmap", "affine", "map"])
@pytest.mark.parametrize("chunk_size", [4, 5, 64, None])   # 4 | 28, 5 ∤ 28, 64 > 28, auto
def test_surface_equals_closed_form_on_non_square_grid(kind, point_mode, chunk_size):
  prob = _problem()
  loss_fn, params, dirs, data = _setup(kind, prob, jnp.float32)
  surf = surface.evaluate(loss_fn, params, dirs, XS, YS, data=data, batch_size=7,
                          chunk_size=chunk_size, point_mode=point_mode)
  want, scale = _closed_form(kind, prob, _points(prob, XS, YS))
  assert surf.values["loss"].shape == (len(YS), len(XS)) == surf.shape == want.shape
  assert surf.values["loss"].dtype == np.float64 and surf.ndim == 2
  assert surf.point_mode == point_mode and surf.done.all()
  assert surf.num_evaluated == XS.size * YS.size
  if chunk_size is not None:   # at most the points to do, rounded up to the local devices
    ndev = jax.local_device_count()
    assert surf.chunk_size == -(-min(chunk_size, XS.size * YS.size) // ndev) * ndev
  err = np.abs(surf.values["loss"] - want)
  tol = F32_FACTOR * np.finfo(np.float32).eps * scale
  assert np.all(err <= tol), f"max err/tol {np.max(err / tol):.3g}"
  # value[j, i] is at (xs[i], ys[j]): an explicit spot check of the orientation
  j, i = 1, 5
  t = prob["theta"] + XS[i] * prob["u"] + YS[j] * prob["v"]
  np.testing.assert_allclose(surf.values["loss"][j, i], _closed_form(kind, prob, t)[0],
                             rtol=0, atol=tol[j, i])


@pytest.mark.parametrize("kind", ["quadratic", "lstsq"])
@pytest.mark.parametrize("point_mode", ["vmap", "affine", "map"])
def test_one_dimensional_sweep(kind, point_mode):
  prob = _problem(1)
  loss_fn, params, dirs, data = _setup(kind, prob, jnp.float32)
  surf = surface.evaluate(loss_fn, params, dirs[:1], XS, None, data=data, batch_size=7,
                          chunk_size=3, point_mode=point_mode)
  want, scale = _closed_form(kind, prob, _points(prob, XS, None))
  assert surf.values["loss"].shape == (len(XS),) == surf.shape and surf.ndim == 1
  assert surf.ys is None and surf.done.shape == (len(XS),) and surf.done.all()
  np.testing.assert_array_less(np.abs(surf.values["loss"] - want),
                               F32_FACTOR * np.finfo(np.float32).eps * scale)


@pytest.mark.parametrize("kind", ["quadratic", "lstsq"])
def test_centre_equals_loss_fn(kind):
  prob = _problem(2)
  loss_fn, params, dirs, data = _setup(kind, prob, jnp.float32)
  surf = surface.evaluate(loss_fn, params, dirs, XS, YS, data=data, chunk_size=6)
  assert XS[-1] == 0.0 and YS[-1] == 0.0
  direct = float(loss_fn(params, data))
  scale = _closed_form(kind, prob, prob["theta"])[1]
  # θ + 0·u + 0·v is θ exactly: only the evaluation order may differ
  np.testing.assert_allclose(surf.values["loss"][-1, -1], direct, rtol=0,
                             atol=8 * np.finfo(np.float32).eps * scale)


# ----------------------------------------------------------------------------- batching

@pytest.mark.parametrize("point_mode", ["vmap", "affine", "map"])
@pytest.mark.parametrize("x64", [True, False], ids=["float64", "float32"])
def test_batched_equals_unbatched_with_ragged_last_batch(x64, point_mode):
  prob = _problem(3)
  assert N_SAMPLES % 7 == 1                        # batch_size=7 leaves a ragged batch of 1
  metrics = {"mae": _mae_metric}
  with jax.enable_x64(x64):
    dtype = jnp.float64 if x64 else jnp.float32
    loss_fn, params, dirs, data = _setup("lstsq", prob, dtype)
    kw = dict(metrics=metrics, point_mode=point_mode, chunk_size=5)
    batched = surface.evaluate(loss_fn, params, dirs, XS, YS, data=data, batch_size=7, **kw)
    whole = surface.evaluate(loss_fn, params, dirs, XS, YS, data=data, batch_size=None, **kw)
  eps = np.finfo(np.float64 if x64 else np.float32).eps
  t = _points(prob, XS, YS)
  want, scale = _closed_form("lstsq", prob, t)
  r = np.einsum("nd,jid->jin", prob["X"], t) - prob["y"]
  want_mae = np.mean(np.abs(r), axis=-1)
  mae_scale = np.mean(np.einsum("nd,jid->jin", abs(prob["X"]), abs(t)) + abs(prob["y"]), axis=-1)
  for got in (batched, whole):
    np.testing.assert_array_less(np.abs(got.values["loss"] - want), F32_FACTOR * eps * scale)
    np.testing.assert_array_less(np.abs(got.values["mae"] - want_mae), F32_FACTOR * eps * mae_scale)
  if x64:
    np.testing.assert_allclose(batched.values["loss"], whole.values["loss"], rtol=1e-12)
    np.testing.assert_allclose(batched.values["mae"], whole.values["mae"], rtol=1e-12)
  else:
    # a different summation order over the 50 samples: within the float32 bound
    np.testing.assert_array_less(np.abs(batched.values["loss"] - whole.values["loss"]),
                                 F32_FACTOR * eps * scale)


@hypothesis.settings(max_examples=6)     # every batch size compiles a new function
@hypothesis.given(batch_size=st.integers(1, N_SAMPLES + 5))
def test_any_batch_size_gives_the_full_dataset_mean_float64(batch_size):
  prob = _problem(4)
  with jax.enable_x64(True):
    loss_fn, params, dirs, data = _setup("lstsq", prob, jnp.float64)
    surf = surface.evaluate(loss_fn, params, dirs[:1], XS, data=data, batch_size=batch_size,
                            point_mode="vmap", chunk_size=7)
  want, _ = _closed_form("lstsq", prob, _points(prob, XS, None))
  np.testing.assert_allclose(surf.values["loss"], want, rtol=1e-12)


# ----------------------------------------------------------------------------- symmetry

def _tanh_net_loss(p, batch):
  x, y = batch
  return jnp.mean((jnp.tanh(x @ p["W1"] + p["b1"]) @ p["w2"] - y) ** 2)


@pytest.mark.parametrize("point_mode", ["vmap", "affine", "map"])
def test_flipping_a_direction_mirrors_the_grid(point_mode):
  rng = np.random.default_rng(5)
  params = {"W1": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
            "b1": jnp.asarray(rng.normal(size=4), jnp.float32),
            "w2": jnp.asarray(rng.normal(size=4), jnp.float32)}
  dx, dy = ({k: jnp.asarray(rng.normal(size=v.shape), jnp.float32) for k, v in params.items()}
            for _ in range(2))
  data = (jnp.asarray(rng.normal(size=(20, 3)), jnp.float32),
          jnp.asarray(rng.normal(size=20), jnp.float32))
  xs, ys = np.linspace(-1, 1, 5), np.linspace(-1, 1, 3)          # symmetric about 0
  neg = lambda d: jax.tree.map(jnp.negative, d)                  # noqa: E731
  kw = dict(data=data, batch_size=8, chunk_size=4, point_mode=point_mode)
  base = surface.evaluate(_tanh_net_loss, params, (dx, dy), xs, ys, **kw).values["loss"]
  flip_x = surface.evaluate(_tanh_net_loss, params, (neg(dx), dy), xs, ys, **kw).values["loss"]
  flip_y = surface.evaluate(_tanh_net_loss, params, (dx, neg(dy)), xs, ys, **kw).values["loss"]
  assert not np.allclose(base, base[:, ::-1])      # the surface itself is not symmetric
  # (−c)·d == c·(−d) exactly; only the position of a point in its chunk changes
  tol = 16 * np.finfo(np.float32).eps * np.abs(base).max()
  np.testing.assert_allclose(flip_x, base[:, ::-1], rtol=0, atol=tol)
  np.testing.assert_allclose(flip_y, base[::-1, :], rtol=0, atol=tol)


# ----------------------------------------------------------------------------- done / on_chunk

@pytest.mark.parametrize("pattern", ["first_half", "checkerboard", "none", "all"])
@pytest.mark.parametrize("point_mode", ["vmap", "affine", "map"])
def test_done_points_are_skipped_and_on_chunk_sees_the_rest_once(pattern, point_mode):
  prob = _problem(6)
  loss_fn, params, dirs, data = _setup("lstsq", prob, jnp.float32)
  shape = (len(YS), len(XS))
  jj, ii = np.indices(shape)
  done = {"first_half": np.arange(XS.size * YS.size).reshape(shape) < XS.size * YS.size // 2,
          "checkerboard": (ii + jj) % 2 == 0, "none": np.zeros(shape, bool),
          "all": np.ones(shape, bool)}[pattern]
  calls = []
  surf = surface.evaluate(loss_fn, params, dirs, XS, YS, data=data, batch_size=16, chunk_size=5,
                          point_mode=point_mode, done=done.copy(),
                          on_chunk=lambda idx, vals: calls.append((np.array(idx), dict(vals))))
  todo = np.flatnonzero(~done.ravel())
  seen = np.concatenate([idx for idx, _ in calls]) if calls else np.zeros(0, int)
  np.testing.assert_array_equal(seen, todo)         # each not-done point once, row-major order
  assert all(0 < len(idx) <= 5 for idx, _ in calls)
  assert surf.num_evaluated == len(todo) and surf.done.all()
  flat = surf.values["loss"].reshape(-1)
  assert np.all(np.isnan(flat[done.ravel()]))       # skipped: left unfilled
  want, scale = _closed_form("lstsq", prob, _points(prob, XS, YS))
  tol = F32_FACTOR * np.finfo(np.float32).eps * scale.reshape(-1)
  np.testing.assert_array_less(np.abs(flat[todo] - want.reshape(-1)[todo]), tol[todo])
  for idx, vals in calls:
    assert set(vals) == {"loss"} and vals["loss"].shape == idx.shape
    np.testing.assert_array_equal(vals["loss"], flat[idx])


# ----------------------------------------------------------------------------- splits

@pytest.mark.parametrize("point_mode", ["vmap", "affine", "map"])
def test_splits_equal_separate_sweeps(point_mode):
  prob = _problem(7)
  _, params, dirs, data = _setup("lstsq", prob, jnp.float32)
  train = jax.tree.map(lambda a: a[:37], data)
  test = jax.tree.map(lambda a: a[37:], data)                     # 13 samples: different sizes
  point_fn = surface.point_loss_fn(_lstsq_loss, params, dirs, {"mae": _mae_metric})
  kw = dict(batch_size=6, chunk_size=5, point_mode=point_mode)
  both = surface.sweep(point_fn, XS, YS, splits={"train": train, "test": test}, **kw)
  assert set(both.values) == {"train_loss", "train_mae", "test_loss", "test_mae"}
  eps = np.finfo(np.float32).eps
  t = _points(prob, XS, YS)
  for name, part in (("train", train), ("test", test)):
    alone = surface.sweep(point_fn, XS, YS, part, **kw)
    for metric in ("loss", "mae"):
      np.testing.assert_allclose(both.values[f"{name}_{metric}"], alone.values[metric],
                                 rtol=4 * eps)
  # and against the closed form on each part (independent of the engine)
  want_test, scale = _closed_form("lstsq", {**prob, "X": prob["X"][37:], "y": prob["y"][37:]}, t)
  np.testing.assert_array_less(np.abs(both.values["test_loss"] - want_test),
                               F32_FACTOR * eps * scale)
  want_train, scale = _closed_form("lstsq", prob, t, n=37)
  np.testing.assert_array_less(np.abs(both.values["train_loss"] - want_train),
                               F32_FACTOR * eps * scale)


# ----------------------------------------------------------------------------- Flax models

def _np_cross_entropy_and_acc(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
  z = logits.astype(np.float64)
  z = z - z.max(axis=1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
  return float(-np.mean(logp[np.arange(len(y)), y])), float(100 * np.mean(z.argmax(1) == y))


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(8)
  return (jnp.asarray(rng.normal(size=(40, 8, 8, 1)), jnp.float32),
          jnp.asarray(rng.integers(0, 3, size=40), jnp.int32))


MODELS = {"mlp": dict(widths=(8,)), "cnn": dict(features=(4,), dense=8)}


def _gaussian_like(seed: int, tree):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(0.3 * rng.normal(size=a.shape), a.dtype), tree)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_flax_factorized_surface_equals_generic(name, images):
  x, y = images
  module = models.get(name, num_outputs=3, **MODELS[name])
  variables = models.init(module, jax.random.key(0), x)
  obj = objective.build(module, variables, losses.get("cross_entropy"), task="multiclass")
  # the stem linearity holds for any direction: plain Gaussian ones keep this test
  # independent of landscape.directions
  dirs = (_gaussian_like(1, obj.params), _gaussian_like(2, obj.params))
  assert surface.has_convolution(obj.loss_fn, obj.params, (x[:2], y[:2])) is (name == "cnn")
  xs, ys = np.linspace(-1, 0, 4), np.linspace(-0.5, 0, 3)
  generic = surface.sweep(obj.point_fn(dirs), xs, ys, (x, y), batch_size=16, chunk_size=5)
  # "auto" maps over points for a convolution model, vmaps (factorized) for an MLP
  assert generic.point_mode == ("map" if name == "cnn" else "affine")
  point_fn, fdata = obj.factorized(dirs, (x, y), batch_size=16)
  fact = surface.sweep(point_fn, xs, ys, fdata, batch_size=16, chunk_size=5)

  # the centre: obj.loss_fn and an independent NumPy cross-entropy of module.apply's logits
  logits = np.asarray(jax.jit(module.apply)(variables, x))
  ce, acc = _np_cross_entropy_and_acc(logits, np.asarray(y))
  direct = float(jax.jit(obj.loss_fn)(obj.params, (x, y)))
  eps = np.finfo(np.float32).eps
  for surf in (generic, fact):
    np.testing.assert_allclose(surf.values["loss"][-1, -1], direct, rtol=16 * eps)
    np.testing.assert_allclose(surf.values["loss"][-1, -1], ce, rtol=64 * eps)
    np.testing.assert_allclose(surf.values["acc"][-1, -1], acc, rtol=0, atol=1e-4)
  # z₀ + a·z₁ + b·z₂ vs stem(θ + a·d₁ + b·d₂): different rounding of the stem (fan-in
  # 64 or 9) propagated through the head; measured ≤ 2·eps, 32·eps leaves room for
  # other CPUs and XLA versions.
  np.testing.assert_allclose(fact.values["loss"], generic.values["loss"], rtol=32 * eps)
  # accuracy: identical unless a near-tie of logits flips one sample (100/40 % each)
  assert np.abs(fact.values["acc"] - generic.values["acc"]).max() <= 100 / 40 + 1e-4
  assert np.mean(fact.values["acc"] == generic.values["acc"]) >= 0.9
  assert np.all(np.isfinite(generic.values["loss"])) and np.ptp(generic.values["loss"]) > 0


# ----------------------------------------------------------------------------- has_convolution

def _conv_fn(w, x):
  return jnp.sum(jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                              dimension_numbers=("NHWC", "HWIO", "NHWC")))


def _nested_conv_fn(w, x):
  def body(c, xi):
    return c + jax.jit(_conv_fn)(w, xi[None]), None
  return jax.lax.scan(body, 0.0, x)[0]


def _dense_fn(w, x):
  return jnp.sum(jnp.tanh(x.reshape(x.shape[0], -1)[:, :9] @ w.reshape(9, 2)))


@pytest.mark.parametrize("fn, expected", [(_conv_fn, True), (_nested_conv_fn, True),
                                          (_dense_fn, False)])
def test_has_convolution_on_functions(fn, expected):
  w, x = jnp.ones((3, 3, 1, 2)), jnp.ones((2, 8, 8, 1))
  assert surface.has_convolution(fn, w, x) is expected


# ----------------------------------------------------------------------------- errors

BAD_CHUNK_SIZES = {"chunk_size=0": 0, "chunk_size=-3": -3, "chunk_size=2.5": 2.5,
                   "chunk_size=True": True, "chunk_size='4'": "4"}


def _bad_call(case: str):
  prob = _problem()
  loss_fn, params, (dx, dy), data = _setup("lstsq", prob, jnp.float32)
  kw = dict(data=data)
  if case == "one_direction_for_2d":
    return (lambda: surface.evaluate(loss_fn, params, (dx,), XS, YS, **kw)), "got 1"
  if case == "two_directions_for_1d":
    return (lambda: surface.evaluate(loss_fn, params, (dx, dy), XS, None, **kw)), "got 2"
  if case == "missing_leaf":
    bad = {"a": dx["a"]}
    return (lambda: surface.evaluate(loss_fn, params, (dx, bad), XS, YS, **kw)), "['w']"
  if case == "leaf_shape":
    bad = {"a": dx["a"], "w": jnp.zeros((3, 2))}
    return (lambda: surface.evaluate(loss_fn, params, (bad, dy), XS, YS, **kw)), "(3, 2)"
  if case.startswith("chunk_size="):
    value = BAD_CHUNK_SIZES[case]
    return (lambda: surface.evaluate(loss_fn, params, (dx, dy), XS, YS, chunk_size=value, **kw),
            repr(value))
  if case == "point_mode":
    return (lambda: surface.evaluate(loss_fn, params, (dx, dy), XS, YS, point_mode="pmap", **kw),
            "'pmap'")
  if case == "done_transposed":
    done = np.zeros((len(XS), len(YS)), bool)
    return (lambda: surface.evaluate(loss_fn, params, (dx, dy), XS, YS, done=done, **kw),
            "(7, 4)")
  if case == "done_1d":
    done = np.zeros((len(XS) + 1,), bool)
    return (lambda: surface.evaluate(loss_fn, params, (dx,), XS, None, done=done, **kw), "(8,)")
  if case == "data_and_splits":
    fn = surface.point_loss_fn(loss_fn, params, (dx, dy))
    return (lambda: surface.sweep(fn, XS, YS, data, splits={"train": data}), "splits")
  if case == "xs_2d":
    return (lambda: surface.evaluate(loss_fn, params, (dx,), np.zeros((2, 2)), **kw), "(2, 2)")
  raise AssertionError(case)


@pytest.mark.parametrize("case", [
    "one_direction_for_2d", "two_directions_for_1d", "missing_leaf", "leaf_shape",
    *BAD_CHUNK_SIZES, "point_mode", "done_transposed", "done_1d", "data_and_splits", "xs_2d"])
def test_bad_arguments_raise_one_line_config_error(case):
  call, needle = _bad_call(case)
  with pytest.raises(ConfigError) as info:
    call()
  message = str(info.value)
  assert needle in message and "\n" not in message, message


def test_grid_coords_are_row_major():
  coords = surface.grid_coords(XS, YS)
  want = np.array([(x, y) for y in YS for x in XS])
  np.testing.assert_array_equal(coords, want)
  np.testing.assert_array_equal(surface.grid_coords(XS), XS[:, None])
