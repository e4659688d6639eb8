"""affine_vmap and AffineSplit: the factorized vmap over grid points against ``jax.vmap``.

The reference is ``jax.vmap(fn, in_axes=(0, None))`` — JAX's own batching of the same
function — in float64, where the reassociated sums of the factorization differ from
it only by rounding (tolerances from float64's eps); the structural tests check that
the factorization actually happened (a first-layer matmul without the point axis).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from landscape import batching, losses, models, objective, surface
from landscape._affine import AffineSplit, affine_vmap, dedupe

F64_EPS = np.finfo(np.float64).eps


def _gaussian_like(seed: int, tree, scale: float = 0.3):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(scale * rng.normal(size=a.shape), a.dtype), tree)


def _coords(num_points: int, dims: int = 2, seed: int = 0, dtype=jnp.float64):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, size=(num_points, dims)), dtype)


def _split(point_fn, coords, batch, jit=False):
  """AffineSplit: the prefix prepared from ``batch`` once, then the points from it alone."""
  split = AffineSplit(point_fn, coords.shape[1], coords.dtype, batch)
  shared, per_batch = split.prepare_shared(batch), split.prepare(batch)
  apply = jax.jit(split.apply) if jit else split.apply
  return apply(coords, shared, per_batch)


def _compare(point_fn, coords, *args, factor=1e3):
  """affine_vmap (eager and jitted) and, with one batch argument of arrays, the hoisted
  AffineSplit (eager and jitted) equal jax.vmap on every output leaf."""
  want = jax.vmap(point_fn, in_axes=(0,) + (None,) * len(args))(coords, *args)
  gots = [affine_vmap(point_fn)(coords, *args), jax.jit(affine_vmap(point_fn))(coords, *args)]
  if len(args) == 1 and jax.tree.leaves(args[0]):
    gots += [_split(point_fn, coords, args[0]), _split(point_fn, coords, args[0], jit=True)]
  for got in gots:
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for w, g in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
      assert g.shape == w.shape == (coords.shape[0],) + w.shape[1:] and g.dtype == w.dtype
      # sums reassociated (and reduced in another order under jit): a few hundred eps of
      # the output's dtype (float32 accuracies stay float32 under x64) times its scale
      atol = factor * np.finfo(w.dtype).eps * (np.max(np.abs(np.asarray(w))) + 1.0)
      np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=0, atol=atol)
  return gots[0]


def _count(jaxpr, name: str, pred=lambda eqn: True) -> int:
  n = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == name and pred(eqn):
      n += 1
    for sub in batching._sub_jaxprs(eqn.params):
      n += _count(sub, name, pred)
  return n


@pytest.mark.parametrize("name,kwargs", [
    ("mlp", dict(widths=(8, 8))),
    ("cnn", dict(features=(4,), dense=8)),
    ("resnet", dict(depth=8, width=4)),          # BatchNorm in eval mode, skip connections
])
def test_flax_models_match_vmap_float64(name, kwargs):
  with jax.enable_x64(True):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(6, 8, 8, 1)))
    y = jnp.asarray(rng.integers(0, 3, size=6), jnp.int32)
    module = models.get(name, num_outputs=3, **kwargs)
    variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                             models.init(module, jax.random.key(0), x))
    obj = objective.build(module, variables, losses.get("cross_entropy"), task="multiclass",
                          l2=1e-3)
    dirs = (_gaussian_like(1, obj.params), _gaussian_like(2, obj.params))
    got = _compare(obj.point_fn(dirs), _coords(7), (x, y))
    assert set(got) == {"loss", "acc"} and np.ptp(np.asarray(got["loss"])) > 0


def test_first_layer_is_computed_once_per_coefficient_not_per_point():
  """Least squares x·w + b: D + 1 matmuls without the point axis, none with it."""
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.normal(size=(48, 3)) / 7, jnp.float32),
            "b": jnp.zeros(3, jnp.float32)}
  dirs = (_gaussian_like(1, params), _gaussian_like(2, params))
  x = jnp.asarray(rng.normal(size=(11, 48)), jnp.float32)

  def loss_fn(p, batch):
    return jnp.mean(jnp.tanh(batch @ p["w"] + p["b"]) ** 2)

  fn = surface.point_loss_fn(loss_fn, params, dirs)
  coords = _coords(9, dtype=jnp.float32)
  jaxpr = jax.make_jaxpr(affine_vmap(fn))(coords, x).jaxpr
  shapes = lambda eqn: tuple(eqn.outvars[0].aval.shape)
  assert _count(jaxpr, "dot_general", lambda e: shapes(e) == (11, 3)) == 3
  assert _count(jaxpr, "dot_general", lambda e: len(shapes(e)) == 3) == 0
  plain = jax.make_jaxpr(jax.vmap(fn, in_axes=(0, None)))(coords, x).jaxpr
  assert _count(plain, "dot_general", lambda e: sorted(shapes(e)) == [3, 9, 11]) == 1
  # a contraction shorter than 16 per term (3 terms: 47 < 48) is left to plain vmap
  short = surface.point_loss_fn(loss_fn, jax.tree.map(lambda a: a[:47], params),
                                [jax.tree.map(lambda a: a[:47], d) for d in dirs])
  jaxpr = jax.make_jaxpr(affine_vmap(short))(coords, x[:, :47]).jaxpr
  assert _count(jaxpr, "dot_general", lambda e: shapes(e) == (11, 3)) == 0
  assert _count(jaxpr, "dot_general", lambda e: len(shapes(e)) == 3) == 1
  np.testing.assert_allclose(affine_vmap(fn)(coords, x)["loss"],
                             jax.vmap(fn, in_axes=(0, None))(coords, x)["loss"],
                             rtol=64 * np.finfo(np.float32).eps)


@jax.custom_vjp
def _clipped_square(x):
  return jnp.minimum(x * x, 4.0)


_clipped_square.defvjp(lambda x: (_clipped_square(x), x), lambda x, g: (2 * x * g,))


def _odd_loss(p, batch):
  """Every kind of primitive the interpreter treats differently, in one loss."""
  x, y = batch
  w = jnp.concatenate([p["w"], jnp.zeros((1, p["w"].shape[1]))], axis=0)   # concat with const
  w = jnp.pad(w, ((0, 0), (1, 0)), constant_values=0.5)[:, :-1]             # pad, slice
  xx = jnp.concatenate([x, jnp.ones((x.shape[0], 1))], axis=1)
  h = jax.jit(lambda a, b: a @ b)(xx, w) / 3.0 - p["b"]                     # nested jit, div, sub
  h = 1.0 - h.T.reshape(h.shape[::-1]).T                                    # const - affine
  h = jax.nn.relu(h) + _clipped_square(h)                                   # custom_jvp, custom_vjp
  c = jax.lax.cond(jnp.sum(h) > 0, lambda t: t * 2.0, lambda t: -t, h)      # cond on a point value
  s, _ = jax.lax.scan(lambda carry, row: (carry + jnp.sum(row * p["w"][0]), None), 0.0, c)
  logits = c @ p["v"]
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return ce + 1e-3 * s + 1e-2 * jnp.sum(p["w"] ** 2) + jnp.argmax(logits[0]).astype(ce.dtype)


def test_control_flow_custom_derivatives_and_edge_primitives_float64():
  with jax.enable_x64(True):
    rng = np.random.default_rng(5)
    # 63 features and a ones column: a contraction of 64 >= 16·3 stays factorized
    params = {"w": jnp.asarray(rng.normal(size=(63, 6)) / 8), "b": jnp.asarray(rng.normal(size=6)),
              "v": jnp.asarray(rng.normal(size=(6, 3)))}
    dirs = (_gaussian_like(1, params, 0.03), _gaussian_like(2, params, 0.03))
    batch = (jnp.asarray(rng.normal(size=(10, 63))), jnp.asarray(rng.integers(0, 3, 10), jnp.int32))
    fn = surface.point_loss_fn(_odd_loss, params, dirs)
    _compare(fn, _coords(8), batch)


def test_outputs_constant_or_affine_in_the_coordinates():
  """A value that does not depend on the point, and one exactly linear in it."""
  with jax.enable_x64(True):
    params = {"w": jnp.arange(6.0).reshape(2, 3)}
    dirs = (jax.tree.map(jnp.ones_like, params), jax.tree.map(lambda a: -2 * jnp.ones_like(a), params))

    def fn(coeffs, batch):
      p = surface.shift(params, dirs, coeffs)
      return {"const": jnp.sum(batch), "linear": jnp.sum(p["w"] @ batch),
              "vec": p["w"][0] * 2.0}

    batch = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4)))
    coords = _coords(5)
    got = _compare(fn, coords, batch)
    # closed form: Σ (W + a·1 - 2b·1)·B = Σ W·B + (a - 2b)·(2·Σ B)
    want = float(jnp.sum(params["w"] @ batch)) + (coords[:, 0] - 2 * coords[:, 1]) * 2 * float(jnp.sum(batch))
    np.testing.assert_allclose(got["linear"], want, rtol=1e3 * F64_EPS)
    np.testing.assert_allclose(got["const"], np.full(5, float(jnp.sum(batch))), rtol=0)


def test_one_dimensional_and_no_data():
  with jax.enable_x64(True):
    params = {"w": jnp.asarray([[1.0, -2.0], [0.5, 3.0]])}
    d = (_gaussian_like(4, params),)

    def loss_fn(p, batch):
      del batch
      return jnp.sum(jnp.sin(p["w"] @ p["w"]))

    _compare(surface.point_loss_fn(loss_fn, params, d), _coords(6, dims=1), None)


@pytest.mark.parametrize("point_mode", ["affine", "vmap"])
def test_affine_sweep_equals_map_sweep_on_an_mlp(point_mode):
  """Through surface.evaluate: batching, padding and chunks around the interpreter."""
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(37, 64)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 4, 37), jnp.int32)
  module = models.get("mlp", num_outputs=4, widths=(16,))
  variables = models.init(module, jax.random.key(1), x)
  obj = objective.build(module, variables, losses.get("cross_entropy"), task="multiclass")
  dirs = (_gaussian_like(1, obj.params), _gaussian_like(2, obj.params))
  xs, ys = np.linspace(-1, 1, 5), np.linspace(-0.5, 1, 4)
  ref = surface.evaluate(obj.loss_fn, obj.params, dirs, xs, ys, data=(x, y), batch_size=10,
                         metrics=obj.metrics, point_mode="map", chunk_size=4)
  got = surface.evaluate(obj.loss_fn, obj.params, dirs, xs, ys, data=(x, y), batch_size=10,
                         metrics=obj.metrics, point_mode=point_mode, chunk_size=7)
  assert got.point_mode == point_mode
  # float32, a fan-in-64 first layer reassociated: a few eps of the loss (measured ≤ 2)
  np.testing.assert_allclose(got.values["loss"], ref.values["loss"],
                             rtol=32 * np.finfo(np.float32).eps)
  assert np.mean(got.values["acc"] == ref.values["acc"]) >= 0.9


@functools.partial(jax.jit, static_argnums=0)
def _jitted(n, coords, x):
  return affine_vmap(lambda c, b: jnp.sum(jnp.tanh(b * c[0] + c[1])) * n)(coords, x)


def test_inside_jit_with_traced_arguments():
  coords = _coords(4, dtype=jnp.float32)
  x = jnp.linspace(-1, 1, 5, dtype=jnp.float32)
  want = jax.vmap(lambda c: jnp.sum(jnp.tanh(x * c[0] + c[1])) * 3)(coords)
  np.testing.assert_allclose(_jitted(3, coords, x), want, rtol=8 * np.finfo(np.float32).eps)


def test_dedupe_runs_a_shared_forward_pass_once():
  """Loss and accuracy as separate functions: one set of convolutions, same values."""
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(6, 8, 8, 1)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 3, size=6), jnp.int32)
  module = models.get("cnn", num_outputs=3, features=(4, 4), dense=8)
  variables = models.init(module, jax.random.key(0), x)
  obj = objective.build(module, variables, losses.get("cross_entropy"), task="multiclass")
  dirs = (_gaussian_like(1, obj.params), _gaussian_like(2, obj.params))
  fn = surface.point_loss_fn(obj.loss_fn, obj.params, dirs, obj.metrics)
  c = jnp.asarray([0.3, -0.2], jnp.float32)
  convs = lambda f: _count(jax.make_jaxpr(f)(c, (x, y)).jaxpr, "conv_general_dilated")
  assert convs(fn) == 4 and convs(dedupe(fn)) == 2
  want, got = fn(c, (x, y)), jax.jit(dedupe(fn))(c, (x, y))
  for k in ("loss", "acc"):
    np.testing.assert_allclose(got[k], want[k], rtol=4 * np.finfo(np.float32).eps)
  # inside vmap (the sweep's vmap mode) as well
  cs = _coords(3, dtype=jnp.float32)
  want = jax.vmap(fn, in_axes=(0, None))(cs, (x, y))
  got = jax.vmap(dedupe(fn), in_axes=(0, None))(cs, (x, y))
  np.testing.assert_allclose(got["loss"], want["loss"], rtol=4 * np.finfo(np.float32).eps)


def test_dedupe_keeps_different_computations_apart():
  """Same primitive, different operands or parameters: nothing merged wrongly."""
  def fn(a, b):
    return {"s": jnp.sum(a * b), "t": jnp.sum(b * a), "u": jnp.sum(a, axis=0) + jnp.sum(a, axis=1),
            "v": jnp.sin(a) + jnp.sin(b), "w": jnp.sin(a) - jnp.sin(a)}
  a = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3)), jnp.float32)
  b = jnp.asarray(np.random.default_rng(1).normal(size=(3, 3)), jnp.float32)
  want, got = fn(a, b), dedupe(fn)(a, b)
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7)
  assert _count(jax.make_jaxpr(dedupe(fn))(a, b).jaxpr, "sin") == 2


@pytest.mark.parametrize("point_mode", ["affine", "map"])
def test_sweep_falls_back_to_plain_evaluation_when_the_interpreter_fails(point_mode, monkeypatch):
  from landscape import _affine

  params = {"w": jnp.asarray([1.0, -2.0], jnp.float32)}
  dirs = ({"w": jnp.asarray([1.0, 0.0], jnp.float32)}, {"w": jnp.asarray([0.0, 1.0], jnp.float32)})
  xs, ys = np.linspace(-1, 1, 5), np.linspace(0, 1, 3)
  loss_fn = lambda p, batch: jnp.sum(p["w"] ** 2)
  want = (1.0 + xs[None, :]) ** 2 + (-2.0 + ys[:, None]) ** 2

  def broken(*args, **kwargs):
    raise RuntimeError("unsupported primitive")

  monkeypatch.setattr(_affine, "_prefix", broken)
  with pytest.warns(RuntimeWarning, match="optimizer failed .*unsupported primitive"):
    s = surface.evaluate(loss_fn, params, dirs, xs, ys, point_mode=point_mode, chunk_size=6)
  np.testing.assert_allclose(s.values["loss"], want, rtol=4 * np.finfo(np.float32).eps)


@pytest.mark.parametrize("helper", [jnp.atleast_1d, jnp.clip,
                                    jax.jit(lambda a: a),
                                    jax.checkpoint(lambda a: a)])
def test_a_call_that_returns_a_per_point_input_unchanged(helper):
  """Regression: jnp.atleast_1d is a jitted identity on a per-point value."""
  with jax.enable_x64(True):
    fn = lambda c, b: {"y": helper(jnp.sin(c[0] * b)) * 2.0}
    _compare(fn, _coords(5), jnp.linspace(-1.0, 1.0, 4))


def test_coordinates_that_are_not_real_floats_or_empty_use_plain_vmap():
  fn = lambda c, b: c // 2 + b
  ints = jnp.asarray([[3, -5], [7, 2]], jnp.int32)
  np.testing.assert_array_equal(affine_vmap(fn)(ints, 1), jax.vmap(fn, in_axes=(0, None))(ints, 1))
  cplx = jnp.asarray([[1 + 2j, 0.5 - 1j]], jnp.complex64)
  conj = lambda c: jnp.conj(c) * 2.0
  np.testing.assert_allclose(affine_vmap(conj)(cplx), jax.vmap(conj)(cplx))
  assert affine_vmap(lambda c: jnp.sum(c))(jnp.zeros((0, 2))).shape == (0,)


def test_python_scalars_stay_static():
  """A Python int used as a shape works as under jax.vmap (and in dedupe)."""
  fn = lambda c, n: jnp.sum(jnp.ones(n) * c[0])
  coords = _coords(3, dtype=jnp.float32)
  np.testing.assert_allclose(affine_vmap(fn)(coords, 4), 4 * coords[:, 0], rtol=1e-6)
  assert float(dedupe(lambda n, s: jnp.zeros(n).sum() + len(s))(3, "abc")) == 3.0


def test_a_narrowing_cast_is_evaluated_per_point():
  """(1000.3 - 1000·c) cast to float16 after the cancellation, not before."""
  fn = lambda c: (1000.3 - 1000.0 * c[0]).astype(jnp.float16).astype(jnp.float32)
  coords = jnp.asarray([[1.0], [0.5]], jnp.float32)
  np.testing.assert_array_equal(affine_vmap(fn)(coords), jax.vmap(fn)(coords))


def test_checkpoints_survive_dedupe():
  """A checkpointed forward's recomputation is not merged with the original (prevent_cse)."""
  net = jax.checkpoint(lambda w, x: jnp.sin(jnp.sin(x @ w)))
  f = lambda w, x: jax.grad(lambda w_: jnp.sum(net(w_, x)))(w)
  w, x = jnp.ones((4, 4)), jnp.ones((2, 4))
  assert (_count(jax.make_jaxpr(dedupe(f))(w, x).jaxpr, "sin")
          == _count(jax.make_jaxpr(f)(w, x).jaxpr, "sin"))
  np.testing.assert_allclose(dedupe(f)(w, x), f(w, x), rtol=1e-6)


def test_an_error_in_the_loss_itself_is_raised_without_an_optimizer_warning():
  import warnings

  params = {"w": jnp.ones((3,), jnp.float32)}
  dirs = (params, params)

  def bad_loss(p, batch):
    return jnp.sum(p["w"] @ jnp.ones((4, 2)))     # (3,) @ (4, 2): the user's shape error

  with warnings.catch_warnings():
    warnings.simplefilter("error", RuntimeWarning)
    with pytest.raises(TypeError, match="dot_general"):
      surface.evaluate(bad_loss, params, dirs, [0.0, 1.0], [0.0, 1.0], point_mode="affine")


def test_split_prepares_the_first_layer_once_and_the_points_read_only_it():
  """Least squares x·w + b through AffineSplit: the D + 1 first-layer matmuls are in the
  prefix (per batch), none in the per-point rest; the later layer's weights are shared."""
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.normal(size=(48, 5)) / 7, jnp.float32),
            "b": jnp.zeros(5, jnp.float32),
            "v": jnp.asarray(rng.normal(size=(5, 2)), jnp.float32)}
  dirs = (_gaussian_like(1, params), _gaussian_like(2, params))
  x = jnp.asarray(rng.normal(size=(11, 48)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(11, 2)), jnp.float32)

  def loss_fn(p, batch):
    xb, yb = batch
    return jnp.mean((jnp.tanh(xb @ p["w"] + p["b"]) @ p["v"] - yb) ** 2)

  fn = surface.point_loss_fn(loss_fn, params, dirs)
  coords = _coords(9, dtype=jnp.float32)
  split = AffineSplit(fn, 2, jnp.float32, (x, y))
  shared, per_batch = split.prepare_shared((x, y)), split.prepare((x, y))
  shapes = sorted(tuple(a.shape) for a in per_batch)
  # z0, z1, z2 (11, 5) and the targets (11, 2); v and its directions (5, 2) are shared
  assert shapes == [(11, 2), (11, 5), (11, 5), (11, 5)]
  assert sorted(tuple(a.shape) for a in shared).count((5, 2)) == 3
  assert split.batch_bytes == sum(a.size * 4 for a in per_batch)
  rest = jax.make_jaxpr(split.apply)(coords, shared, per_batch).jaxpr
  assert _count(rest, "dot_general", lambda e: 48 in e.invars[0].aval.shape
                + e.invars[1].aval.shape) == 0
  np.testing.assert_allclose(split.apply(coords, shared, per_batch)["loss"],
                             jax.vmap(fn, in_axes=(0, None))(coords, (x, y))["loss"],
                             rtol=64 * np.finfo(np.float32).eps)
  # a different batch of the same shapes through the same split
  x2 = jnp.asarray(rng.normal(size=(11, 48)), jnp.float32)
  np.testing.assert_allclose(split.apply(coords, shared, split.prepare((x2, y)))["loss"],
                             jax.vmap(fn, in_axes=(0, None))(coords, (x2, y))["loss"],
                             rtol=64 * np.finfo(np.float32).eps)


@pytest.mark.parametrize("batch_size,n_test", [(10, 37), (37, 5), (None, 12), (8, 16)])
def test_hoisted_sweep_equals_map_sweep_with_splits_and_ragged_batches(batch_size, n_test):
  """surface.sweep in affine mode prepares every batch once (``Surface.hoisted``), over
  two splits, full and ragged batches, and equals the map sweep float64."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(37, 64)))
    y = jnp.asarray(rng.integers(0, 4, 37), jnp.int32)
    module = models.get("mlp", num_outputs=4, widths=(16,))
    variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                             models.init(module, jax.random.key(1), x))
    obj = objective.build(module, variables, losses.get("cross_entropy"), task="multiclass",
                          l2=1e-3)
    dirs = (_gaussian_like(1, obj.params), _gaussian_like(2, obj.params))
    fn = surface.point_loss_fn(obj.loss_fn, obj.params, dirs, obj.metrics)
    xs, ys = np.linspace(-1, 1, 5), np.linspace(-0.5, 1, 3)
    splits = {"train": (x, y), "test": (x[:n_test], y[:n_test])}
    ref = surface.sweep(fn, xs, ys, splits=splits, batch_size=batch_size, point_mode="map",
                        chunk_size=4)
    got = surface.sweep(fn, xs, ys, splits=splits, batch_size=batch_size, point_mode="affine",
                        chunk_size=4)
    assert got.hoisted and not ref.hoisted
    for k in ref.values:
      np.testing.assert_allclose(got.values[k], ref.values[k], rtol=1e3 * F64_EPS, atol=1e-12)


def _broken(*args, **kwargs):
  raise RuntimeError("cannot split")


@pytest.mark.parametrize("failure", ["over the memory budget", "split fails"])
def test_without_hoisting_the_prefix_is_recomputed_per_chunk(failure, monkeypatch):
  """Prepared batches that would not fit, or a split that fails (warned): the prefix is
  recomputed in every chunk, with the same values."""
  from landscape import _affine

  if failure == "over the memory budget":
    monkeypatch.setattr(surface, "_memory_budget_bytes", lambda: 1024)
  else:
    monkeypatch.setattr(_affine, "_reads", _broken)
  rng = np.random.default_rng(8)
  x = jnp.asarray(rng.normal(size=(40, 64)), jnp.float32)
  params = {"w": jnp.asarray(rng.normal(size=(64, 8)) / 8, jnp.float32)}
  dirs = (_gaussian_like(1, params), _gaussian_like(2, params))
  loss_fn = lambda p, b: jnp.mean(jnp.tanh(b @ p["w"]) ** 2)
  xs, ys = np.linspace(-1, 1, 4), np.linspace(-1, 1, 3)
  sweep = functools.partial(surface.evaluate, loss_fn, params, dirs, xs, ys, data=x,
                            batch_size=10, chunk_size=6)
  if failure == "split fails":
    with pytest.warns(RuntimeWarning, match="hoisting the affine prefix failed .*cannot split"):
      got = sweep(point_mode="affine")
  else:
    got = sweep(point_mode="affine")
  ref = sweep(point_mode="map")
  assert not got.hoisted
  np.testing.assert_allclose(got.values["loss"], ref.values["loss"], rtol=64 * np.finfo(np.float32).eps)
