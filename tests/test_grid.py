"""The one grid type, the one way chunks reach a file, the run object, the direction registry."""

import itertools

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

from landscape import cli, direction_kinds, io, pipeline, surface
from landscape.errors import ConfigError, DataError
from landscape.grid import Grid

from test_curvature import TINY


# ------------------------------------------------------------------------------ Grid

@given(nx=st.integers(1, 7), ny=st.one_of(st.none(), st.integers(1, 6)))
def test_grid_layout_matches_numpy_row_major(nx, ny):
  xs = np.linspace(-1, 1, nx)
  ys = None if ny is None else np.linspace(-2, 0, ny)
  g = Grid.of(xs, ys)
  want_shape = (nx,) if ny is None else (ny, nx)
  assert g.shape == want_shape and g.size == int(np.prod(want_shape))
  assert g.ndim == (1 if ny is None else 2)
  coords = g.coords()
  assert coords.shape == (g.size, g.ndim)
  for p in range(g.size):
    idx = g.unravel(p)
    assert idx == np.unravel_index(p, want_shape)
    assert coords[p, 0] == xs[idx[-1]]
    if ny is not None:
      assert coords[p, 1] == ys[idx[0]]


@given(nx=st.integers(1, 6), ny=st.integers(1, 5), data=st.data())
def test_rows_cover_a_run_exactly_once(nx, ny, data):
  g = Grid.of(np.arange(nx), np.arange(ny))
  start = data.draw(st.integers(0, g.size - 1))
  count = data.draw(st.integers(1, g.size - start))
  seen = np.zeros(g.shape, int)
  flat = np.arange(g.size).reshape(g.shape)
  parts = []
  for index, part in g.rows(start, count):
    seen[index] += 1
    np.testing.assert_array_equal(flat[index], np.arange(start, start + count)[part])
    parts.append(part)
  assert seen.reshape(-1)[start:start + count].tolist() == [1] * count
  assert seen.sum() == count
  assert sum(p.stop - p.start for p in parts) == count


def test_runs_split_at_gaps():
  assert Grid.runs(np.array([0, 1, 2, 5, 6, 9])) == [(0, 3), (3, 5), (5, 6)]
  assert Grid.runs(np.array([4])) == [(0, 1)]
  assert Grid.runs(np.array([], int)) == []


def test_grid_refuses_bad_coordinates_and_values():
  with pytest.raises(ConfigError, match="ys must be"):
    Grid.of([0.0, 1.0], [np.nan])
  with pytest.raises(ConfigError, match="xs must be"):
    Grid.of([])
  with pytest.raises(DataError, match=r"\(3, 2\)"):
    Grid.of([0, 1], [0, 1, 2]).check("z", np.zeros((2, 3)))


# ------------------------------------------------------------------- write_points

def test_write_points_in_any_order_equals_a_sweep(tmp_path):
  xs, ys = np.linspace(-1, 1, 5), np.linspace(-1, 1, 3)
  rng = np.random.default_rng(0)
  want = rng.normal(size=(3, 5))
  with io.GridFile.open(tmp_path / "a.h5", xs=xs, ys=ys, fields=("train_loss",)) as g:
    order = rng.permutation(15)
    g.write_points(order[:7], {"train_loss": want.reshape(-1)[order[:7]]})
    done = g.done
    assert done.sum() == 7 and done.reshape(-1)[order[:7]].all()
    g.write_points(order[7:], {"train_loss": want.reshape(-1)[order[7:]]})
  r = io.load(tmp_path / "a.h5")
  np.testing.assert_array_equal(r.fields["train_loss"], want.astype(np.float32))
  assert r.done_for("train_loss").all()


def test_write_points_refuses_bad_requests(tmp_path):
  with io.GridFile.open(tmp_path / "b.h5", xs=np.arange(4.0), fields=("f",)) as g:
    with pytest.raises(ConfigError, match="twice"):
      g.write_points([1, 1], {"f": [0.0, 1.0]})
    with pytest.raises(ConfigError, match="one value per point"):
      g.write_points([1, 2], {"f": [0.0]})
    with pytest.raises(ConfigError, match="outside the grid"):
      g.write_points([3, 4], {"f": [0.0, 1.0]})
    assert not g.done.any()


def test_sweep_streams_into_a_file_through_write_points(tmp_path):
  """A sweep resumed from a file computes only the missing points, same values."""
  params = {"w": jnp.array([0.5, -1.0]), "b": jnp.array(0.3)}
  dirs = ({"w": jnp.array([1.0, 0.0]), "b": jnp.array(0.0)},
          {"w": jnp.array([0.0, 1.0]), "b": jnp.array(1.0)})

  def loss(p, _):
    return jnp.sum(p["w"] ** 2) + p["b"] ** 4

  xs, ys = np.linspace(-1, 1, 4), np.linspace(-1, 1, 3)
  full = surface.evaluate(loss, params, dirs, xs, ys, chunk_size=5)
  path = tmp_path / "s.h5"
  with io.GridFile.open(path, xs=xs, ys=ys, fields=("loss",)) as g:
    part = np.zeros((3, 4), bool)
    part[1, 2:] = part[0, :1] = True
    g.write_points(np.flatnonzero(part), {"loss": full.values["loss"][part]})
    rest = surface.evaluate(loss, params, dirs, xs, ys, done=g.done, chunk_size=2,
                            on_chunk=g.write_points)
  assert rest.num_evaluated == 12 - part.sum()
  r = io.load(path)
  np.testing.assert_allclose(r.fields["loss"], full.values["loss"], rtol=1e-6)
  assert r.done_for("loss").all()


def test_surface_and_result_share_the_read_interface(tmp_path):
  params = jnp.array([0.2, -0.4])
  dirs = (jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]))
  s = surface.evaluate(lambda p, _: jnp.sum(p ** 2), params, dirs, np.linspace(-1, 1, 3),
                       np.linspace(-1, 1, 2))
  with io.GridFile.open(tmp_path / "r.h5", xs=s.xs, ys=s.ys, fields=("loss",)) as g:
    g.write_points(np.arange(6), {"loss": s.values["loss"].reshape(-1)})
  r = io.load(tmp_path / "r.h5")
  for obj in (s, r):
    assert obj.grid.shape == obj.shape == (2, 3) and obj.ndim == 2
    assert set(obj.fields) == {"loss"} and obj.done_for("loss").all()
    assert isinstance(obj.attrs, dict) and isinstance(obj.groups, dict)
  np.testing.assert_allclose(r.fields["loss"], s.fields["loss"], rtol=1e-6)


# --------------------------------------------------------- the run and direction kinds

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("grid") / "run"
  assert cli.main(["train", "--out", str(out), *TINY]) == 0
  return out


def test_run_object_gives_the_objective_of_the_checkpoint(run_dir):
  run = pipeline.open_run(run_dir)
  assert run.checkpoints() and run.dir == run_dir
  obj = run.objective("eval")
  x, y = run.data("train")
  assert x.shape[0] == 200 and run.data("test", n=7)[0].shape[0] == 7
  # the objective's loss at the trained point is the mean per-example loss of the model
  logits = run.experiment.module.apply(run.variables, x)
  want = float(jnp.mean(run.experiment.loss(logits, y)))
  np.testing.assert_allclose(float(obj.loss_fn(obj.params, (x, y))), want, rtol=1e-5)
  first = run.variables_of(run.checkpoints()[0])
  assert jax.tree.structure(first) == jax.tree.structure(run.variables)
  with pytest.raises(ConfigError, match="neither an epoch"):
    run.variables_of("not-a-run")
  exp, variables = pipeline.load_run(run_dir)     # the older spelling still works
  assert jax.tree.structure(variables) == jax.tree.structure(run.variables)


def test_bn_states_lift_and_lower_are_the_objectives():
  from landscape import models, objective
  module = models.get("resnet", depth=8, width=4, num_outputs=3)
  variables = models.init(module, jax.random.key(0), np.zeros((2, 8, 8, 3), np.float32))
  obj = objective.build(module, variables, lambda o, t: jnp.zeros(o.shape[0]),
                        task="multiclass", bn_mode="states")
  d = jax.tree.map(jnp.ones_like, variables["params"])
  lifted = obj.lift(d)
  assert set(lifted) == {"params", "batch_stats"}
  assert all(float(jnp.abs(v).max()) == 0 for v in jax.tree.leaves(lifted["batch_stats"]))
  assert obj.model_part(lifted) is d
  assert obj.perturbed_of(variables)["batch_stats"] is variables["batch_stats"]
  eval_obj = objective.build(module, variables, lambda o, t: jnp.zeros(o.shape[0]),
                             task="multiclass")
  assert eval_obj.lift(d) is d and eval_obj.model_part(d) is d


def test_a_new_direction_kind_is_one_registry_entry(run_dir, tmp_path):
  """Register an 'axes' kind (unit vectors along two parameters): the CLI sweeps it, the
  file records it, and its values are the loss along those coordinates."""
  def axes(req):
    obj = req.objective
    leaves, tree = jax.tree.flatten(obj.params)
    def unit(k):
      flat = [jnp.zeros_like(a) for a in leaves]
      flat[-1] = flat[-1].reshape(-1).at[k].set(1.0).reshape(leaves[-1].shape)
      return jax.tree.unflatten(tree, flat)
    return direction_kinds.Directions(obj.params, [unit(k) for k in range(req.ndim)],
                                      {"axes": {"leaf": np.array([len(leaves) - 1])}})

  direction_kinds.register("axes", axes)
  try:
    with pytest.raises(ConfigError, match="already registered"):
      direction_kinds.register("axes", axes)
    out = tmp_path / "axes.h5"
    assert cli.main(["surface", "--run", str(run_dir), "--direction", "axes", "--x=-1:1:3",
                     "--y=-1:1:2", "--split", "train", "--out", str(out)]) == 0
    r = io.load(out)
    assert r.attrs["direction_kind"] == "axes" and "axes" in r.groups
    run = pipeline.open_run(run_dir)
    obj = run.objective("eval")
    dx, dy = io.read_directions(out, obj.params)
    data = run.data("train")
    for (j, y), (i, x) in itertools.product(enumerate(r.ys), enumerate(r.xs)):
      p = surface.shift(obj.params, (dx, dy), jnp.array([x, y]))
      np.testing.assert_allclose(r.fields["train_loss"][j, i], float(obj.loss_fn(p, data)),
                                 rtol=2e-5)
  finally:
    direction_kinds.BUILDERS.pop("axes", None)
  with pytest.raises(ConfigError, match="unknown direction 'axes'"):
    direction_kinds.check("axes")
