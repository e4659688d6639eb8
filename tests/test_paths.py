"""landscape.paths: linear paths, nudged elastic bands and certified saddles (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import optimize

from landscape import ConfigError, DataError, ProbeError, paths


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


# ------------------------------------------------------------ Müller–Brown potential

# Müller & Brown, Theor. Chim. Acta 53, 75 (1979); divided by 100 so that forces are O(1).
_A = (-200.0, -100.0, -170.0, 15.0)
_a = (-1.0, -1.0, -6.5, 0.7)
_b = (0.0, 0.0, 11.0, 0.6)
_c = (-10.0, -10.0, -6.5, 0.7)
_X0 = (1.0, 0.0, -0.5, -1.0)
_Y0 = (0.0, 0.5, 1.5, 1.0)


def muller_brown(p, batch=None):
  del batch
  dx, dy = p[0] - jnp.array(_X0), p[1] - jnp.array(_Y0)
  return jnp.sum(jnp.array(_A) * jnp.exp(jnp.array(_a) * dx ** 2 + jnp.array(_b) * dx * dy
                                         + jnp.array(_c) * dy ** 2)) / 100.0


def _critical_point(fn, guess):
  """The exact critical point of ``fn`` near ``guess`` (SciPy, independent of landscape)."""
  grad, hess = jax.jit(jax.grad(fn)), jax.jit(jax.hessian(fn))
  sol = optimize.root(lambda x: np.asarray(grad(jnp.asarray(x))), np.asarray(guess, float),
                      jac=lambda x: np.asarray(hess(jnp.asarray(x))), tol=1e-14)
  assert np.linalg.norm(np.asarray(grad(jnp.asarray(sol.x)))) < 1e-12   # hybr's xtol flag aside
  return sol.x


@pytest.fixture(scope="module")
def mb_points():
  with jax.enable_x64(True):
    return {name: _critical_point(muller_brown, guess) for name, guess in {
        "A": (-0.558, 1.442), "B": (0.623, 0.028), "C": (-0.050, 0.467),
        "S1": (-0.822, 0.624), "S2": (0.212, 0.293)}.items()}


def test_the_reference_saddle_is_the_highest_on_the_minimum_path(mb_points):
  loss = {k: float(muller_brown(jnp.asarray(v))) for k, v in mb_points.items()}
  assert loss["S1"] > loss["S2"] > loss["C"]     # S1 is the barrier between A and B


def test_neb_climbs_to_the_highest_muller_brown_saddle_and_saddle_certifies_it(mb_points):
  band = paths.neb(muller_brown, jnp.asarray(mb_points["A"]), jnp.asarray(mb_points["B"]),
                   num_images=17, steps=2000, tol=1e-5)
  assert band.method == "neb" and band.converged and band.steps < 2000
  assert band.history[-1] < 1e-5 <= band.history[0]
  climber = np.asarray(band.point(band.peak))
  # the climbing image has ‖∇L‖ < tol; the smallest |curvature| there is ~4.9, so it is
  # within ~tol/4.9 of the saddle
  np.testing.assert_allclose(climber, mb_points["S1"], atol=1e-5)
  np.testing.assert_allclose(band.ts[[0, -1]], [0.0, 1.0])
  assert np.all(np.diff(band.ts) > 0)
  s = paths.saddle(muller_brown, band, tol=1e-12)
  np.testing.assert_allclose(np.asarray(s.params), mb_points["S1"], atol=1e-8)
  assert abs(s.loss - float(muller_brown(jnp.asarray(mb_points["S1"])))) < 1e-10
  assert (s.kind, s.index_lower, s.index_upper, s.exhaustive) == ("saddle", 1, 1, True)
  assert s.near_zero == 0 and s.converged and s.start == band.peak
  chord = (1 - band.ts) * band.values["loss"][0] + band.ts * band.values["loss"][-1]
  assert band.barrier == pytest.approx(np.max(band.values["loss"] - chord))


def test_an_embedded_muller_brown_saddle_keeps_a_certified_index_of_one(mb_points):
  dim = 10
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(dim, dim)))
  q = jnp.asarray(q)
  stiff = jnp.linspace(0.5, 3.0, dim - 2)       # positive curvature off the MB plane

  def loss(p, batch=None):
    z = q.T @ p
    return muller_brown(z[:2]) + 0.5 * jnp.sum(stiff * z[2:] ** 2)

  lift = lambda xy: q[:, :2] @ jnp.asarray(xy)  # noqa: E731
  band = paths.neb(loss, lift(mb_points["A"]), lift(mb_points["B"]), steps=3000)
  assert band.converged
  s = paths.saddle(loss, band, k=6, tol=1e-12)
  np.testing.assert_allclose(np.asarray(s.params), np.asarray(lift(mb_points["S1"])), atol=1e-8)
  assert (s.kind, s.index_lower, s.index_upper, s.exhaustive) == ("saddle", 1, 1, True)
  assert s.eigenvalues.shape == (6,) and np.all(np.diff(s.eigenvalues) >= 0)
  # the Ritz values are the eigenvalues of the dense Hessian
  dense = np.linalg.eigvalsh(np.asarray(jax.hessian(loss)(s.params)))
  np.testing.assert_allclose(s.eigenvalues, dense[:6], atol=1e-10)


def test_a_minimum_is_classified_minimum():
  scales = jnp.array([1.0, 2.0, 3.0, 0.5])
  bowl = lambda p, batch=None: 0.5 * jnp.sum(scales * (p["w"] - 0.3) ** 2)  # noqa: E731
  path = paths.linear(bowl, {"w": jnp.ones(4)}, {"w": jnp.zeros(4)}, num=5)
  assert path.peak == 0                          # the highest point is the start
  s = paths.saddle(bowl, path, k=3, tol=1e-10)
  np.testing.assert_allclose(np.asarray(s.params["w"]), 0.3, atol=1e-10)
  assert (s.kind, s.index_lower, s.index_upper, s.near_zero) == ("minimum", 0, 0, 0)
  np.testing.assert_allclose(s.eigenvalues, [0.5, 1.0, 2.0], atol=1e-12)
  assert s.largest == pytest.approx(3.0)


def test_saddle_reports_an_open_upper_bound_when_k_is_too_small():
  # index 3 of 4 and only k=2 eigenvalues asked, without an exhaustive run
  f = lambda p, batch=None: 0.5 * jnp.sum(jnp.array([-1.0, -2.0, -3.0, 1.0]) * p ** 2)  # noqa: E731
  path = paths.linear(f, jnp.full(4, 0.1), jnp.full(4, 0.2), num=3)
  s = paths.saddle(f, path, k=2, num_steps=3, tol=1e-10)
  assert (s.kind, s.index_lower, s.index_upper, s.exhaustive) == ("saddle", 2, None, False)


@pytest.mark.parametrize("seed,num_steps", [(0, 6), (1, 4)])
def test_the_index_bounds_hold_on_a_truncated_lanczos_run(seed, num_steps):
  # index 2 of 40; a few Lanczos steps leave large residuals on the inner Ritz values
  d = jnp.concatenate([jnp.array([-1.0, -0.3]), jnp.linspace(0.01, 1.0, 38)])
  f = lambda p, batch=None: 0.5 * jnp.sum(d * p ** 2)  # noqa: E731
  path = paths.linear(f, jnp.full(40, 0.1), jnp.full(40, 0.2), num=3)
  s = paths.saddle(f, path, k=3, num_steps=num_steps, key=jax.random.key(seed), tol=1e-10)
  assert not s.exhaustive and s.index_lower <= 2        # interlacing: never too many
  assert np.any(s.residuals > 1e-3)                      # the bound was put to the test
  if s.index_upper is not None:
    assert s.index_lower <= s.index_upper


# -------------------------------------------------------------------------- linear

def _tilted_well(p, batch=None):
  """(w² − 1)² + c·w + b²: along w ∈ [−1, 1] the rise above the chord is (w² − 1)²."""
  del batch
  return (p["w"][0] ** 2 - 1) ** 2 + 0.5 * p["w"][0] + p["b"] ** 2


def test_linear_barrier_peak_and_values_match_the_closed_form():
  start, end = {"w": jnp.array([-1.0]), "b": jnp.array(0.0)}, {"w": jnp.array([1.0]),
                                                               "b": jnp.array(0.0)}
  path = paths.linear(_tilted_well, start, end, num=33)
  ts = np.linspace(0, 1, 33)
  w = -1 + 2 * ts
  np.testing.assert_allclose(path.ts, ts)
  np.testing.assert_allclose(path.values["loss"], (w ** 2 - 1) ** 2 + 0.5 * w, atol=1e-14)
  assert path.barrier == pytest.approx(1.0, abs=1e-14)   # (w² − 1)² at w = 0
  assert path.peak == int(np.argmax((w ** 2 - 1) ** 2 + 0.5 * w)) == 18
  assert path.method == "linear" and path.images is None and path.history is None
  np.testing.assert_allclose(np.asarray(path.points["w"])[:, 0], w, atol=1e-15)
  np.testing.assert_allclose(np.asarray(path.point(18)["w"]), [w[18]], atol=1e-15)


def test_linear_values_are_the_full_dataset_means_at_the_points():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(10, 3)))
  y = jnp.sin(x[:, 0])
  loss = lambda p, batch: jnp.mean((jnp.tanh(batch[0] @ p["w"]) - batch[1]) ** 2)  # noqa: E731
  metric = lambda p, batch: jnp.mean(jnp.abs(batch[0] @ p["w"]))  # noqa: E731
  start, end = {"w": jnp.array([1.0, -2.0, 0.5])}, {"w": jnp.array([-1.0, 1.0, 2.0])}
  path = paths.linear(loss, start, end, (x, y), num=7, batch_size=3, metrics={"act": metric})
  for i in range(7):
    p = path.point(i)
    assert path.values["loss"][i] == pytest.approx(float(loss(p, (x, y))), rel=1e-12)
    assert path.values["act"][i] == pytest.approx(float(metric(p, (x, y))), rel=1e-12)
  assert path.peak == int(np.argmax(path.values["loss"]))


@pytest.mark.parametrize("end,kwargs,error,words", [
    ({"w": np.zeros(1)}, {}, ConfigError, "tree structure"),
    ({"w": np.zeros(2), "b": np.array(0.0)}, {}, ConfigError, "shape"),
    ({"w": np.zeros(1, np.float32), "b": np.array(0.0)}, {}, ConfigError, "dtype"),
    ({"w": np.zeros(1), "b": np.array(0.0)}, {"num": 1}, ConfigError, "num"),
    ({"w": np.zeros(1), "b": np.array(np.inf)}, {}, ProbeError, "end"),
    ({"w": np.zeros(1), "b": np.array(0.0)}, {"data": (np.zeros(3), np.zeros(4))},
     DataError, "leading"),
])
def test_linear_refuses_bad_inputs_in_one_line(end, kwargs, error, words):
  start = {"w": np.array([-1.0]), "b": np.array(0.0)}
  with pytest.raises(error, match=words) as info:
    paths.linear(_tilted_well, start, end, **kwargs)
  assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- NEB

def test_the_neb_step_is_one_vmapped_compiled_function():
  def counted():
    calls = []

    def loss(p, batch=None):
      calls.append(1)          # runs once per trace, never per image or per step
      return muller_brown(p)
    return loss, calls

  start, end = jnp.array([-0.558, 1.442]), jnp.array([0.623, 0.028])
  loss5, calls5 = counted()
  loss9, calls9 = counted()
  paths.neb(loss5, start, end, num_images=5, steps=20)
  paths.neb(loss9, start, end, num_images=9, steps=20)
  # endpoints, the first forces and the loop body: 3 traces, whatever the band size
  assert len(calls5) == len(calls9) == 3
  again = paths.neb(loss5, start, end, num_images=5, steps=20)
  assert len(calls5) == 3                      # compiled once, reused
  assert again.steps == 20 and again.history.shape == (21,)


def test_springs_space_the_images_evenly_along_a_flat_valley():
  valley = lambda p, batch=None: 5.0 * p[1] ** 2  # noqa: E731   flat along x
  ts = np.linspace(0, 1, 9)
  init = jnp.asarray(np.stack([-1 + 2 * ts ** 2, 0.3 * np.sin(np.pi * ts)], axis=1))
  band = paths.neb(valley, jnp.array([-1.0, 0.0]), jnp.array([1.0, 0.0]), num_images=9,
                   climbing=False, init=init, steps=3000, tol=1e-8)
  assert band.converged
  images = np.asarray(band.images)
  np.testing.assert_allclose(images[:, 1], 0.0, atol=1e-8)
  # a spring imbalance below tol = 1e-8 per image adds up along the chain to ~1e-7
  np.testing.assert_allclose(images[:, 0], np.linspace(-1, 1, 9), atol=1e-6)
  np.testing.assert_allclose(band.ts, ts, atol=1e-6)


def test_neb_takes_any_optax_optimizer():
  valley = lambda p, batch=None: 5.0 * p[1] ** 2 + 0.1 * p[0] ** 2  # noqa: E731
  band = paths.neb(valley, jnp.array([-1.0, 0.0]), jnp.array([1.0, 0.0]), num_images=5,
                   climbing=False, optimizer=optax.sgd(0.05), steps=2000, tol=1e-8,
                   init=jnp.array([[-1.0, 0.0], [-0.9, 0.2], [0.0, -0.2], [0.2, 0.1],
                                   [1.0, 0.0]]))
  assert band.converged
  np.testing.assert_allclose(np.asarray(band.images)[:, 1], 0.0, atol=1e-7)
  assert band.peak in (0, 4) and band.barrier == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("kwargs,error,words", [
    ({"num_images": 2}, ConfigError, "num_images"),
    ({"spring": 0.0}, ConfigError, "spring"),
    ({"optimizer": "adam"}, ConfigError, "optimizer"),
    ({"init": np.zeros((4, 2))}, ConfigError, "init"),
    ({"start": np.array([np.nan, 0.0])}, ProbeError, "start"),
    ({"end": np.zeros(3)}, ConfigError, "shape"),
])
def test_neb_refuses_bad_arguments_in_one_line(kwargs, error, words):
  args = {"start": np.array([-0.558, 1.442]), "end": np.array([0.623, 0.028]),
          "num_images": 5, "steps": 3, **kwargs}
  with pytest.raises(error, match=words) as info:
    paths.neb(muller_brown, **args)
  assert "\n" not in str(info.value)


# ------------------------------------------------------------------- curves

def _two_layer_problem():
  """A two-layer linear network y = W2 W1 x fitted exactly: its minima {W2 W1 = A} form a
  connected set, yet the segment between two factorizations leaves it (a high barrier)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 4))
  a = rng.normal(size=(3, 4))
  y = x @ a.T

  def loss(p, batch):
    xb, yb = batch
    return jnp.mean(jnp.sum((xb @ p["w1"].T @ p["w2"].T - yb) ** 2, axis=1))

  def factor(seed):
    m = np.random.default_rng(seed).normal(size=(3, 3))
    return {"w1": jnp.asarray(m @ a), "w2": jnp.asarray(np.linalg.inv(m))}

  return loss, factor(1), factor(2), (jnp.asarray(x), jnp.asarray(y))


@pytest.mark.parametrize("kind", paths.CURVE_KINDS)
@pytest.mark.parametrize("n", [2, 3, 5])
def test_curve_weights_partition_unity_and_interpolate_the_ends(kind, n):
  ts = jnp.linspace(0.0, 1.0, 41)
  w = jax.vmap(lambda t: paths.curve_weights(kind, n, t))(ts)
  np.testing.assert_allclose(np.asarray(w.sum(axis=1)), 1.0, rtol=0, atol=1e-14)
  assert np.all(np.asarray(w) >= -1e-15)
  np.testing.assert_allclose(np.asarray(w[0]), np.eye(n)[0], atol=1e-15)
  np.testing.assert_allclose(np.asarray(w[-1]), np.eye(n)[-1], atol=1e-15)
  t = 0.3
  got = np.asarray(paths.curve_weights(kind, n, jnp.asarray(t)))
  if kind == "bezier":   # Bernstein polynomials, from scipy's binomial
    from scipy.special import comb
    want = [comb(n - 1, i) * t ** i * (1 - t) ** (n - 1 - i) for i in range(n)]
  else:                  # linear interpolation between the two knots around t
    want = [np.interp(t, np.linspace(0, 1, n), np.eye(n)[i]) for i in range(n)]
  np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


def test_fitted_curve_connects_two_layer_minima_far_below_the_segment():
  loss, a, b, data = _two_layer_problem()
  assert float(loss(a, data)) < 1e-20 and float(loss(b, data)) < 1e-20
  line = paths.linear(loss, a, b, data, num=33)
  curve = paths.fit_curve(loss, a, b, data, steps=1500, optimizer=optax.adam(1e-2))
  along = paths.evaluate(loss, curve, data, ts=33)
  assert along.method == "curve" and along.ts.shape == (33,)
  assert line.barrier > 10.0, line.barrier
  assert along.barrier < 0.01 * line.barrier, (along.barrier, line.barrier)
  # the values are the loss at the curve's points, computed independently
  for i in (0, 7, 16, 32):
    np.testing.assert_allclose(along.values["loss"][i], float(loss(along.point(i), data)),
                               rtol=1e-12, atol=1e-20)
  np.testing.assert_allclose(np.asarray(along.points["w1"][7]),
                             np.asarray(curve(along.ts[7])["w1"]), rtol=1e-13)
  # the quadratic Bezier through start, bend, end in closed form
  t = 0.25
  want = (1 - t) ** 2 * a["w2"] + 2 * t * (1 - t) * curve.bends["w2"][0] + t ** 2 * b["w2"]
  np.testing.assert_allclose(np.asarray(curve(t)["w2"]), np.asarray(want), rtol=1e-13)


def _interrupt_after(monkeypatch, saves: int):
  """Make StateFile.save raise (like a kill) right after its ``saves``-th write."""
  real, count = paths.StateFile.save, []

  def save(self, state):
    real(self, state)
    count.append(1)
    if len(count) == saves:
      raise KeyboardInterrupt("killed")

  monkeypatch.setattr(paths.StateFile, "save", save)
  return lambda: monkeypatch.setattr(paths.StateFile, "save", real)


def _assert_trees_equal(got, want):
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def test_curve_fit_killed_and_resumed_equals_an_uninterrupted_fit(tmp_path, monkeypatch):
  loss, a, b, data = _two_layer_problem()
  kw = dict(steps=120, optimizer=optax.adam(1e-2), batch_size=16, save_every=25,
            key=jax.random.key(3))
  whole = paths.fit_curve(loss, a, b, data, state_path=tmp_path / "whole.state", **kw)
  restore = _interrupt_after(monkeypatch, 2)
  with pytest.raises(KeyboardInterrupt):
    paths.fit_curve(loss, a, b, data, state_path=tmp_path / "cut.state", **kw)
  restore()
  resumed = paths.fit_curve(loss, a, b, data, state_path=tmp_path / "cut.state", **kw)
  assert resumed.steps == whole.steps == 120
  _assert_trees_equal(resumed.bends, whole.bends)
  np.testing.assert_array_equal(resumed.history, whole.history)
  # a finished state resumes to itself without training; other endpoints are refused
  again = paths.fit_curve(loss, a, b, data, state_path=tmp_path / "cut.state", **kw)
  _assert_trees_equal(again.bends, whole.bends)
  before = (tmp_path / "cut.state").read_bytes()
  with pytest.raises(ConfigError, match="other endpoints or settings"):
    paths.fit_curve(loss, b, a, data, state_path=tmp_path / "cut.state", **kw)
  with pytest.raises(ConfigError, match="other endpoints or settings"):
    paths.fit_curve(loss, a, b, data, state_path=tmp_path / "cut.state",
                    **dict(kw, batch_size=32))
  assert (tmp_path / "cut.state").read_bytes() == before


def test_neb_killed_and_resumed_equals_an_uninterrupted_band(tmp_path, monkeypatch, mb_points):
  a, b = jnp.asarray(mb_points["A"]), jnp.asarray(mb_points["B"])
  kw = dict(num_images=9, steps=300, tol=1e-9, save_every=40)
  whole = paths.neb(muller_brown, a, b, state_path=tmp_path / "whole.state", **kw)
  plain = paths.neb(muller_brown, a, b, **kw)
  restore = _interrupt_after(monkeypatch, 3)
  with pytest.raises(KeyboardInterrupt):
    paths.neb(muller_brown, a, b, state_path=tmp_path / "cut.state", **kw)
  restore()
  resumed = paths.neb(muller_brown, a, b, state_path=tmp_path / "cut.state", **kw)
  assert resumed.steps == whole.steps == plain.steps
  _assert_trees_equal(resumed.images, whole.images)
  np.testing.assert_array_equal(resumed.history, whole.history)
  # saving in segments takes the same steps as one compiled loop
  np.testing.assert_allclose(np.asarray(whole.images), np.asarray(plain.images), rtol=0,
                             atol=1e-12)
  assert whole.history.shape == (whole.steps + 1,)
  with pytest.raises(ConfigError, match="other endpoints or settings"):
    paths.neb(muller_brown, a, b, state_path=tmp_path / "cut.state", **dict(kw, spring=2.0))


def test_fit_curve_refuses_bad_inputs_in_one_line(tmp_path):
  loss, a, b, data = _two_layer_problem()
  cases = [
      (dict(kind="spline"), "unknown curve kind 'spline'"),
      (dict(bends=0), "bends"),
      (dict(steps=-1), "steps"),
      (dict(batch_size=1000), "exceeds the 64 samples"),
      (dict(optimizer="adam"), "optax GradientTransformation"),
  ]
  for kwargs, fragment in cases:
    with pytest.raises(ConfigError, match=fragment) as info:
      paths.fit_curve(loss, a, b, data, steps=kwargs.pop("steps", 5), **kwargs)
    assert "\n" not in str(info.value)
  (tmp_path / "junk.state").write_bytes(b"not msgpack at all")
  with pytest.raises(ConfigError, match="not a landscape path state"):
    paths.fit_curve(loss, a, b, data, steps=5, state_path=tmp_path / "junk.state")
  with pytest.raises(ConfigError, match="ascending values from 0 to 1"):
    paths.evaluate(loss, paths.fit_curve(loss, a, b, data, steps=1), data, ts=[0.0, 0.5])


# ------------------------------------------------------------------- planes

def test_plane_puts_three_points_at_their_coordinates_and_the_surface_agrees():
  """The loss on the plane's grid at the recorded coordinates equals the loss at the
  three points (surface.evaluate on origin + x u + y v)."""
  from landscape import surface
  loss, a, b, data = _two_layer_problem()
  bend = jax.tree.map(lambda x, y: 0.5 * (x + y) + 0.3, a, b)
  pl = paths.plane(a, b, bend)
  dist = float(optax.tree.norm(optax.tree.sub(b, a)))
  np.testing.assert_allclose(pl.points[0], [0.0, 0.0], atol=1e-12)
  np.testing.assert_allclose(pl.points[1], [dist, 0.0], rtol=1e-12, atol=1e-12)
  assert pl.points[2, 1] > 0
  for d in (pl.u, pl.v):
    np.testing.assert_allclose(float(optax.tree.norm(d)), 1.0, rtol=1e-12)
  np.testing.assert_allclose(float(optax.tree.vdot(pl.u, pl.v)), 0.0, atol=1e-12)
  xs, ys = np.unique(pl.points[:, 0]), np.unique(pl.points[:, 1])
  surf = surface.evaluate(loss, pl.origin, (pl.u, pl.v), xs, ys, data)
  for point, (px, py) in zip((a, b, bend), pl.points):
    got = surf.values["loss"][np.flatnonzero(ys == py)[0], np.flatnonzero(xs == px)[0]]
    np.testing.assert_allclose(got, float(loss(point, data)), rtol=1e-9, atol=1e-9)
  with pytest.raises(ConfigError, match="on a line"):
    paths.plane(a, b, jax.tree.map(lambda x, y: 0.5 * (x + y), a, b))
