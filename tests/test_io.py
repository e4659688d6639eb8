"""Tests of landscape.io: the HDF5 result store (DESIGN §5)."""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import tempfile

import h5py
import hypothesis
import hypothesis.strategies as st
import ml_dtypes
import numpy as np
import pytest

from landscape import io
from landscape.errors import ConfigError, DataError, LandscapeError, ResultFileError

XS = np.linspace(-1.0, 1.0, 5)
YS = np.linspace(-0.5, 1.0, 3)  # non-square on purpose: (ny, nx) = (3, 5)
CONFIG = {"model": {"name": "mlp", "width": 8}, "train": {"epochs": 2}}
ATTRS = {"config": json.dumps(CONFIG), "seed": 3, "direction_kind": "random",
         "norm": "filter", "ignore": "biasbn", "bn_mode": "eval"}
FIELDS = ("train_loss", "train_acc")


def _surface(x, y=None):
  """A positive loss-like function with no symmetry in x, y or their swap (>= 0.9 here)."""
  return 2.0 + x ** 2 + 0.3 * x + (0.0 if y is None else y + 0.5 * x * y)


def _grid_values(xs, ys):
  """(ny, nx) or (nx,) reference values with value[j, i] at (xs[i], ys[j])."""
  if ys is None:
    return _surface(xs)
  return np.array([[_surface(x, y) for x in xs] for y in ys])


def _directions(scale=1.0, ndim=2):
  def one(k):
    rng = np.random.default_rng(k)
    return {"dense": {"kernel": scale * rng.normal(size=(3, 2)).astype(np.float32),
                      "bias": np.zeros(2, np.float32)},
            "out": {"kernel": scale * rng.normal(size=(2, 1)).astype(np.float32)}}
  return [one(k) for k in range(ndim)]


def _open(path, ys=YS, **kw):
  kw = {"fields": FIELDS, "attrs": ATTRS, **kw}
  return io.GridFile.open(path, xs=XS, ys=ys, **kw)


def _write_all(g, values, runs):
  flat = values.reshape(-1)
  for a, b in runs:
    g.write(a, {"train_loss": flat[a:b], "train_acc": 100.0 - flat[a:b]})


def _one_line(exc_info):
  msg = str(exc_info.value)
  assert "\n" not in msg and msg
  return msg


# ----------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("ys", [YS, None], ids=["2d", "1d"])
def test_round_trip_runs_spanning_rows(tmp_path, ys):
  path = tmp_path / "s.h5"
  expected = _grid_values(XS, ys).astype(np.float32)
  n = expected.size
  expected.reshape(-1)[1] = np.nan  # a diverged point is stored and marked done
  expected.reshape(-1)[n - 2] = np.inf
  # Runs out of order; in 2-D [2, 9) and [9, 15) span several rows.
  runs = [(9, n), (0, 2), (2, 9)] if ys is not None else [(3, n), (0, 1), (1, 3)]
  with _open(path, ys=ys) as g:
    assert g.shape == expected.shape and not g.done.any()
    _write_all(g, expected, runs[:2])
    partial = g.done.copy()
    _write_all(g, expected, runs[2:])
    assert g.done.all()
  a, b = runs[2]
  assert not partial.reshape(-1)[a:b].any() and partial.reshape(-1)[:a].all()
  r = io.load(path)
  assert r.ndim == (1 if ys is None else 2) and r.shape == expected.shape
  assert not r.is_original_layout
  np.testing.assert_array_equal(r.xs, XS)
  if ys is not None:
    np.testing.assert_array_equal(r.ys, ys)
  else:
    assert r.ys is None
  np.testing.assert_array_equal(r.fields["train_loss"], expected)  # NaN == NaN here
  np.testing.assert_array_equal(r.fields["train_acc"], np.float32(100.0) - expected)
  assert set(r.fields) == set(FIELDS) and set(r.done) == {"done"}
  assert r.done["done"].dtype == bool and r.done["done"].all()
  assert r.field_done == {"train_loss": "done", "train_acc": "done"}
  assert r.attrs["config"] == CONFIG and r.attrs["seed"] == 3 and r.attrs["norm"] == "filter"


def test_masked_write_leaves_unmasked_points(tmp_path):
  path = tmp_path / "s.h5"
  values = np.arange(15, dtype=np.float32)
  mask = np.zeros(8, bool)
  mask[[0, 3, 7]] = True  # the run [4, 12) spans rows 0, 1 and 2
  with _open(path) as g:
    g.write(4, {"train_loss": values[4:12], "train_acc": values[4:12]}, done=mask)
    done = g.done.reshape(-1)
  want = np.zeros(15, bool)
  want[[4, 7, 11]] = True
  np.testing.assert_array_equal(done, want)
  loss = io.load(path).fields["train_loss"].reshape(-1)
  np.testing.assert_array_equal(loss[want], values[want])
  assert np.isnan(loss[~want]).all()


@hypothesis.given(
    nx=st.integers(1, 6), ny=st.one_of(st.none(), st.integers(1, 4)),
    data=st.data())
def test_property_any_runs_fill_the_grid(nx, ny, data):
  xs = np.linspace(-1, 1, nx)
  ys = None if ny is None else np.linspace(0, 2, ny)
  n = nx * (1 if ny is None else ny)
  cuts = sorted(data.draw(st.sets(st.integers(1, max(n - 1, 1)), max_size=n)) - {n})
  bounds = list(zip([0, *cuts], [*cuts, n]))
  order = data.draw(st.permutations(bounds))
  masks = [np.array(data.draw(st.lists(st.booleans(), min_size=b - a, max_size=b - a)))
           for a, b in order]
  flat = np.random.default_rng(n).normal(size=n).astype(np.float64)
  want = np.zeros(n, bool)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "p.h5")
    with io.GridFile.open(path, xs=xs, ys=ys, fields=("loss",), dtype=np.float64) as g:
      for (a, b), mask in zip(order, masks):
        g.write(a, {"loss": flat[a:b]}, done=mask)
        want[a:b] |= mask
    r = io.load(path)
  np.testing.assert_array_equal(r.done["done"].reshape(-1), want)
  np.testing.assert_array_equal(r.fields["loss"].reshape(-1)[want], flat[want])
  assert np.isnan(r.fields["loss"].reshape(-1)[~want]).all()


# ----------------------------------------------------------------------------- schema


@pytest.mark.parametrize("ys", [YS, None], ids=["2d", "1d"])
def test_schema(tmp_path, ys):
  path = tmp_path / "s.h5"
  extra = {"labels": ["a", "b"], "grid": {"x": "-1:1:5"}}
  dirs = _directions(ndim=1 if ys is None else 2)
  with _open(path, ys=ys, attrs={**ATTRS, **extra}, directions=dirs):
    pass
  with h5py.File(path, "r") as f:
    for key in ("format", "format_version", "landscape_version", "jax_version",
                "h5py_version", "created", *ATTRS):
      assert key in f.attrs, key
    assert f.attrs["format"] == io.FORMAT == "landscape-hdf5"
    assert f.attrs["format_version"] == io.FORMAT_VERSION == 1
    created = datetime.datetime.fromisoformat(f.attrs["created"])
    assert created.utcoffset() == datetime.timedelta(0)
    assert json.loads(f.attrs["labels"]) == ["a", "b"]  # lists/dicts are JSON-encoded
    assert json.loads(f.attrs["grid"]) == {"x": "-1:1:5"}
    assert f["xcoordinates"].is_scale and f["xcoordinates"].shape == (5,)
    shape = (5,) if ys is None else (3, 5)
    for name in (*FIELDS, "done"):
      ds = f[name]
      assert ds.shape == shape
      assert ds.chunks == ((5,) if ys is None else (1, 5))  # one row per chunk
      assert ds.compression is None   # allocated at creation: a killed write moves no chunk
      assert ds.dims[ds.ndim - 1][0].name == "/xcoordinates"
      if ys is not None:
        assert ds.dims[0][0].name == "/ycoordinates"
    assert f["done"].dtype == np.bool_ and not f["done"][()].any()
    assert f["train_loss"].dtype == np.float32 and np.isnan(f["train_loss"][()]).all()
    assert f["train_loss"].attrs["done"] == "done"
    if ys is None:
      assert "ycoordinates" not in f and "y" not in f["directions"]
    else:
      assert f["ycoordinates"].is_scale
      leaves = f["directions/y"]
      assert sorted(leaves) == ["0000", "0001", "0002"]
      # tree-flatten order of the dict: dense/bias, dense/kernel, out/kernel
      assert [leaves[k].attrs["path"] for k in sorted(leaves)] == [
          "['dense']['bias']", "['dense']['kernel']", "['out']['kernel']"]


def test_original_plot_2d_reads_our_file(tmp_path):
  """The reading code of tomgoldstein/loss-landscape plot_2D.plot_2d_contour, verbatim."""
  path = str(tmp_path / "s.h5")
  values = _grid_values(XS, YS)
  with _open(path) as g:
    _write_all(g, values, [(0, values.size)])
  f = h5py.File(path, "r")
  x = np.array(f["xcoordinates"][:])
  y = np.array(f["ycoordinates"][:])
  X, Y = np.meshgrid(x, y)
  Z = np.array(f["train_loss"][:])
  f.close()
  assert Z.shape == X.shape == Y.shape
  np.testing.assert_allclose(Z, _surface(X, Y), rtol=np.finfo(np.float32).eps)
  # h52vtp.py pairs meshgrid(x, y).ravel() with vals.ravel() the same way.
  np.testing.assert_allclose(Z.ravel(), _surface(X.ravel(), Y.ravel()),
                             rtol=np.finfo(np.float32).eps)


@pytest.mark.parametrize("ys", [YS, None], ids=["2d", "1d"])
def test_xarray_opens_with_coordinates(tmp_path, ys):
  xr = pytest.importorskip("xarray")
  pytest.importorskip("h5netcdf")
  path = tmp_path / "s.h5"
  values = _grid_values(XS, ys).astype(np.float32)
  with _open(path, ys=ys, directions=_directions(ndim=1 if ys is None else 2)) as g:
    g.write_group("hessian", {"eigenvalues_largest": np.arange(3.0)})
    _write_all(g, values, [(0, values.size - 1)])  # the last point stays undone
  with xr.open_dataset(path, engine="h5netcdf") as ds:
    loss = ds["train_loss"]
    np.testing.assert_array_equal(ds["xcoordinates"].values, XS)
    if ys is None:
      assert loss.dims == ("xcoordinates",)
    else:
      assert loss.dims == ("ycoordinates", "xcoordinates")
      np.testing.assert_array_equal(ds["ycoordinates"].values, ys)
      assert loss.sel(xcoordinates=XS[4], ycoordinates=ys[1]).item() == values[1, 4]
    np.testing.assert_array_equal(loss.values.reshape(-1)[:-1], values.reshape(-1)[:-1])
    assert np.isnan(loss.values.reshape(-1)[-1])
    assert ds["done"].dtype == bool and ds["done"].values.sum() == values.size - 1
    assert ds.attrs["format"] == io.FORMAT


# ----------------------------------------------------------------------------- resume


def test_resume_preserves_values_and_done(tmp_path):
  path = tmp_path / "s.h5"
  values = _grid_values(XS, YS).astype(np.float32)
  with _open(path, directions=_directions()) as g:
    _write_all(g, values, [(0, 7)])
  with _open(path, directions=_directions()) as g:  # the same request resumes
    done = g.done.reshape(-1)
    np.testing.assert_array_equal(done, np.arange(15) < 7)
    todo = np.flatnonzero(~done)
    _write_all(g, values, [(todo[0], todo[-1] + 1)])
  with _open(path) as g:  # no directions given: nothing to compare, still resumes
    assert g.done.all()
  np.testing.assert_array_equal(io.load(path).fields["train_loss"], values)


@pytest.mark.parametrize("change, key", [
    ({"xs": np.linspace(-1.0, 1.0, 7)}, "xcoordinates"),
    ({"ys": np.linspace(-0.5, 1.5, 3)}, "ycoordinates"),
    ({"ys": None}, "ycoordinates"),
    ({"directions": _directions(scale=2.0)}, "['dense']['kernel']"),
    ({"attrs": {**ATTRS, "config": json.dumps({**CONFIG, "train": {"epochs": 3}})}}, "config"),
    ({"attrs": {**ATTRS, "seed": 4}}, "seed"),
    ({"attrs": {**ATTRS, "norm": "layer"}}, "norm"),
])
def test_resume_refuses_mismatch_and_leaves_file_unchanged(tmp_path, change, key):
  path = tmp_path / "s.h5"
  values = _grid_values(XS, YS)
  with _open(path, directions=_directions()) as g:
    _write_all(g, values, [(0, 6)])
  before = path.read_bytes()
  request = {"xs": XS, "ys": YS, "fields": FIELDS, "attrs": ATTRS,
             "directions": _directions(), **change}
  if request["ys"] is None:
    request["directions"] = request["directions"][:1]
  with pytest.raises(ResultFileError) as exc:
    io.GridFile.open(path, **request)
  msg = _one_line(exc)
  assert key in msg and str(path) in msg and "--overwrite" in msg
  assert path.read_bytes() == before
  if key in ("xcoordinates", "ycoordinates"):
    assert "-1:1:5" in msg  # both grids are reported in a:b:n form


def test_overwrite_replaces(tmp_path):
  path = tmp_path / "s.h5"
  with _open(path) as g:
    _write_all(g, _grid_values(XS, YS), [(0, 15)])
  new_xs = np.linspace(-2.0, 2.0, 4)
  with io.GridFile.open(path, xs=new_xs, fields=("test_loss",), overwrite=True) as g:
    assert g.shape == (4,) and not g.done.any()
  r = io.load(path)
  assert set(r.fields) == {"test_loss"} and r.ys is None
  np.testing.assert_array_equal(r.xs, new_xs)
  assert not [p for p in os.listdir(tmp_path) if p != "s.h5"]  # no temporary left behind


def test_adding_curvature_fields_keeps_loss_data(tmp_path):
  path = tmp_path / "s.h5"
  values = _grid_values(XS, YS).astype(np.float32)
  with _open(path) as g:
    _write_all(g, values, [(0, 15)])
  with _open(path, fields=("max_eig", "min_eig"), done="eig_done") as g:
    assert not g.done.any()
    g.write(0, {"max_eig": np.full(4, 2.0), "min_eig": np.full(4, -1.0)})
  r = io.load(path)
  np.testing.assert_array_equal(r.fields["train_loss"], values)
  assert r.done["done"].all()
  np.testing.assert_array_equal(r.done["eig_done"].reshape(-1), np.arange(15) < 4)
  assert r.field_done["max_eig"] == "eig_done" and r.field_done["train_loss"] == "done"
  np.testing.assert_array_equal(r.fields["max_eig"].reshape(-1)[:4], 2.0)
  # A field new to a mask that already marks points resets the mask: it lacks those points.
  with _open(path, fields=(*FIELDS, "test_loss")) as g:
    assert not g.done.any()
  np.testing.assert_array_equal(io.load(path).fields["train_loss"], values)
  # A field cannot move to another mask.
  with pytest.raises(ResultFileError, match="eig_done"):
    _open(path, fields=("max_eig",), done="done")


# ----------------------------------------------------------------------------- bad files


def _garbage(path):
  path.write_bytes(b"this is not an HDF5 file\n" * 40)


def _truncated(path):
  with _open(path) as g:
    _write_all(g, _grid_values(XS, YS), [(0, 15)])
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("damage", [_garbage, _truncated], ids=["garbage", "truncated"])
@pytest.mark.parametrize("action", [
    io.load,
    lambda p: _open(p),
    lambda p: io.write_group(p, "hessian", {"trace": 1.0}),
    lambda p: io.read_directions(p, _directions()[0]),
], ids=["load", "open", "write_group", "read_directions"])
def test_corrupt_file_is_one_line_error(tmp_path, damage, action):
  path = tmp_path / "s.h5"
  damage(path)
  before = path.read_bytes()
  with pytest.raises(ResultFileError) as exc:
    action(path)
  msg = _one_line(exc)
  assert str(path) in msg and "corrupt" in msg
  assert path.read_bytes() == before


def test_foreign_hdf5_is_refused(tmp_path):
  path = tmp_path / "other.h5"
  with h5py.File(path, "w") as f:
    f["weights"] = np.ones(3)
    f["bias"] = np.zeros(2)
  before = path.read_bytes()
  with pytest.raises(ResultFileError) as exc:
    io.load(path)
  msg = _one_line(exc)
  assert "not a loss-surface file" in msg and "weights" in msg and "bias" in msg
  for action in (lambda: _open(path), lambda: io.write_group(path, "h", {"a": 1.0})):
    with pytest.raises(ResultFileError) as exc:
      action()
    assert "not a landscape result file" in _one_line(exc) and "--overwrite" in str(exc.value)
  assert path.read_bytes() == before


def test_missing_file_is_one_line_error(tmp_path):
  for action in (io.load, lambda p: io.write_group(p, "h", {"a": 1.0}),
                 lambda p: io.read_trajectory(p, {"w": np.ones(2)})):
    with pytest.raises(ResultFileError) as exc:
      action(tmp_path / "nope.h5")
    assert "does not exist" in _one_line(exc)


@pytest.mark.skipif(os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() == "FALSE",
                    reason="HDF5 file locking disabled")
def test_locked_file_is_reported(tmp_path):
  path = tmp_path / "s.h5"
  _open(path).close()
  fd = os.open(path, os.O_RDWR)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a live writer holds
    for action in (lambda: _open(path), lambda: io.load(path),
                   lambda: _open(path, overwrite=True)):
      with pytest.raises(ResultFileError) as exc:
        action()
      assert "locked" in _one_line(exc)
  finally:
    os.close(fd)
  assert io.load(path).fields  # the file survived the refused overwrite


# ----------------------------------------------------------------------------- original layout


@pytest.mark.parametrize("ny", [3, None], ids=["2d", "1d"])
def test_original_layout_loads(tmp_path, ny):
  """A file as tomgoldstein/loss-landscape plot_surface.py + scheduler.py write it."""
  path = tmp_path / "orig.h5"
  xcoordinates = XS
  ycoordinates = None if ny is None else YS
  shape = xcoordinates.shape if ycoordinates is None else (len(xcoordinates), len(ycoordinates))
  losses, accuracies = -np.ones(shape=shape), -np.ones(shape=shape)
  if ycoordinates is not None:
    xm, ym = np.meshgrid(xcoordinates, ycoordinates)
    coords = np.c_[xm.ravel(), ym.ravel()]
  else:
    coords = xcoordinates.ravel()
  computed = np.arange(losses.size)[:-2]  # the last two points were never computed
  for ind in computed:
    c = coords[ind]
    loss = _surface(*c) if ycoordinates is not None else _surface(c)
    losses.ravel()[ind] = loss
    accuracies.ravel()[ind] = 50.0
  with h5py.File(path, "w") as f:
    f["dir_file"] = "model.t7_weights.h5"
    f["xcoordinates"] = xcoordinates
    if ycoordinates is not None:
      f["ycoordinates"] = ycoordinates
    f["train_loss"] = losses
    f["train_acc"] = accuracies
  r = io.load(path)
  assert r.is_original_layout and r.ndim == (1 if ny is None else 2)
  expected = _grid_values(XS, ycoordinates)
  done = np.ones(expected.size, bool)
  done[-2:] = False
  done = done.reshape(expected.shape)
  assert r.fields["train_loss"].shape == expected.shape
  np.testing.assert_array_equal(r.done["done"], done)
  np.testing.assert_allclose(r.fields["train_loss"][done], expected[done],
                             rtol=np.finfo(np.float64).eps)
  assert np.isnan(r.fields["train_loss"][~done]).all()
  assert np.isnan(r.fields["train_acc"][~done]).all()
  np.testing.assert_array_equal(r.fields["train_acc"][done], 50.0)
  assert r.attrs["dir_file"] == "model.t7_weights.h5"


def test_original_eig_fill_values(tmp_path):
  path = tmp_path / "orig.h5"
  max_eig, min_eig = -np.ones((5, 5)), np.ones((5, 5))  # plot_hessian_eigen.py's fill
  max_eig.ravel()[:3], min_eig.ravel()[:3] = 4.0, -0.5
  with h5py.File(path, "w") as f:
    f["xcoordinates"] = XS
    f["ycoordinates"] = XS
    f["max_eig"], f["min_eig"] = max_eig, min_eig
  r = io.load(path)
  np.testing.assert_array_equal(r.done["eig_done"].reshape(-1), np.arange(25) < 3)
  assert np.isnan(r.fields["min_eig"].reshape(-1)[3:]).all()
  np.testing.assert_array_equal(r.fields["min_eig"].reshape(-1)[:3], -0.5)


# ----------------------------------------------------------------------------- groups


def test_write_group_round_trip(tmp_path):
  path = tmp_path / "s.h5"
  lam = np.array([3.0, 2.0, 1.0])
  with _open(path) as g:
    g.write_group("hessian", {"eigenvalues_largest": lam, "num_hvps": 13, "trace": 6.0},
                  attrs={"k": 3, "order": {"lanczos": 20}})
    g.write_group("critical", {"coords": np.zeros((2, 2)), "kind": ["min", "saddle-1"]})
  io.write_group(path, "trajectory", {"proj_xcoord": np.arange(4.0),
                                      "explained_variance_ratio": np.array([0.6, 0.3])})
  io.write_group(path, "hessian", {"trace_stderr": 0.1}, replace=False)
  r = io.load(path)
  assert set(r.groups) == {"hessian", "critical", "trajectory"}  # directions not loaded
  np.testing.assert_array_equal(r.groups["hessian"]["eigenvalues_largest"], lam)
  assert r.groups["hessian"]["num_hvps"] == 13 and r.groups["hessian"]["trace"] == 6.0
  assert r.groups["hessian"]["trace_stderr"] == 0.1
  assert r.group_attrs["hessian"] == {"k": 3, "order": {"lanczos": 20}}
  assert r.groups["critical"]["kind"].tolist() == ["min", "saddle-1"]
  np.testing.assert_array_equal(r.groups["trajectory"]["proj_xcoord"], np.arange(4.0))
  io.write_group(path, "hessian", {"trace": 7.0})  # replace=True drops the old datasets
  assert io.load(path).groups["hessian"] == {"trace": 7.0}


# ----------------------------------------------------------------------------- directions


def test_read_directions_round_trip(tmp_path):
  path = tmp_path / "s.h5"
  dirs = _directions()
  dirs[1]["norm"] = {"scale": np.arange(4, dtype=ml_dtypes.bfloat16)}  # stored as float32
  dirs[0]["norm"] = {"scale": np.ones(4, dtype=ml_dtypes.bfloat16)}
  with _open(path, directions=dirs):
    pass
  with _open(path, directions=dirs):  # bfloat16 leaves compare exactly on resume
    pass
  back = io.read_directions(path, dirs[0])
  assert len(back) == 2
  for got, want in zip(back, dirs):
    for name in ("dense", "out", "norm"):
      for leaf in want[name]:
        assert got[name][leaf].dtype == want[name][leaf].dtype
        np.testing.assert_array_equal(got[name][leaf], want[name][leaf])


@pytest.mark.parametrize("like, needle", [
    ({"dense": {"kernel": np.ones((3, 2))}, "out": {"kernel": np.ones((2, 1))}},
     "['dense']['bias']"),
    ({"dense": {"kernel": np.ones((3, 2)), "bias": np.ones(2), "extra": np.ones(1)},
      "out": {"kernel": np.ones((2, 1))}}, "['dense']['extra']"),
    ({"dense": {"kernel": np.ones((2, 3)), "bias": np.ones(2)},
      "out": {"kernel": np.ones((2, 1))}}, "['dense']['kernel']"),
], ids=["extra-stored", "missing-stored", "shape"])
def test_read_directions_mismatch(tmp_path, like, needle):
  path = tmp_path / "s.h5"
  with _open(path, directions=_directions()):
    pass
  with pytest.raises(ResultFileError) as exc:
    io.read_directions(path, like)
  assert needle in _one_line(exc)


def test_read_directions_absent(tmp_path):
  path = tmp_path / "s.h5"
  _open(path).close()
  with pytest.raises(ResultFileError, match="no directions"):
    io.read_directions(path, _directions()[0])


# ----------------------------------------------------------------------------- trajectories


def _params(t):
  return {"layer": {"w": np.full((2, 3), t, np.float32), "b": np.full(3, -t, np.float32)},
          "scale": np.float32(t)}


def test_trajectory_append_resume_truncate(tmp_path):
  path = tmp_path / "trajectory.h5"
  like = _params(0)
  with io.TrajectoryWriter(path, like, resume=False) as w:
    for epoch in range(4):
      w.append(epoch, _params(epoch))
    np.testing.assert_array_equal(w.epochs, [0, 1, 2, 3])
  # A run resumed from the epoch-1 checkpoint re-saves epoch 2: 2 and 3 are dropped first.
  with io.TrajectoryWriter(path, like, resume=True) as w:
    w.append(2, _params(20))
  epochs, snaps = io.read_trajectory(path, like)
  np.testing.assert_array_equal(epochs, [0, 1, 2])
  for snap, t in zip(snaps, [0, 1, 20]):
    np.testing.assert_array_equal(snap["layer"]["w"], _params(t)["layer"]["w"])
    np.testing.assert_array_equal(snap["layer"]["b"], _params(t)["layer"]["b"])
    assert snap["scale"] == t and snap["layer"]["w"].dtype == np.float32
  with io.TrajectoryWriter(path, like, resume=False):  # a fresh run starts over
    pass
  assert io.read_trajectory(path, like)[0].size == 0


def test_trajectory_mismatch(tmp_path):
  path = tmp_path / "trajectory.h5"
  with io.TrajectoryWriter(path, _params(0), resume=False) as w:
    w.append(0, _params(0))
    with pytest.raises(ConfigError):
      w.append(1, {"layer": {"w": np.ones((2, 3))}, "scale": 1.0})
  other = {"layer": {"w": np.ones((2, 3)), "b": np.ones(4)}, "scale": 1.0}
  for action in (lambda: io.TrajectoryWriter(path, other, resume=True),
                 lambda: io.read_trajectory(path, other)):
    with pytest.raises(ResultFileError) as exc:
      action()
    assert "['layer']['b']" in _one_line(exc)
  with _open(tmp_path / "s.h5"):
    pass
  with pytest.raises(ResultFileError, match="not a landscape trajectory"):
    io.read_trajectory(tmp_path / "s.h5", _params(0))


# ----------------------------------------------------------------------------- user arrays


def test_read_arrays(tmp_path):
  path = tmp_path / "data.h5"
  with h5py.File(path, "w") as f:
    f["x_train"] = np.arange(6.0).reshape(3, 2)
    f["y_train"] = np.array([0, 1, 1])
  arrays = io.read_arrays(path, ["x_train", "y_train"])
  np.testing.assert_array_equal(arrays["x_train"], np.arange(6.0).reshape(3, 2))
  with pytest.raises(DataError) as exc:
    io.read_arrays(path, ["x_train", "x_test", "y_test"])
  msg = _one_line(exc)
  assert "x_test" in msg and "y_test" in msg and "y_train" in msg
  with pytest.raises(DataError) as exc:
    io.read_arrays(tmp_path / "missing.h5", ["x_train"])
  assert "missing.h5" in _one_line(exc)


# ----------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize("kwargs", [
    {"xs": []}, {"xs": [[0.0, 1.0]]}, {"ys": [0.0, np.nan]}, {"fields": ()},
    {"fields": "train_loss"}, {"fields": ("a", "a")}, {"fields": ("done",)},
    {"fields": ("a/b",)}, {"dtype": np.int32}, {"directions": _directions(ndim=1)},
    {"attrs": {"format": "mine"}}, {"attrs": {"when": object()}},
])
def test_bad_request_is_config_error(tmp_path, kwargs):
  request = {"xs": XS, "ys": YS, "fields": FIELDS, **kwargs}
  with pytest.raises(ConfigError) as exc:
    io.GridFile.open(tmp_path / "s.h5", **request)
  _one_line(exc)
  assert not (tmp_path / "s.h5").exists()


@pytest.mark.parametrize("start, values", [
    (14, {"train_loss": np.ones(2), "train_acc": np.ones(2)}),
    (-1, {"train_loss": np.ones(1), "train_acc": np.ones(1)}),
    (0, {"train_loss": np.ones(2)}),
    (0, {"train_loss": np.ones(2), "train_acc": np.ones(3)}),
    (0, {"train_loss": np.ones(1), "train_acc": np.ones(1), "test_loss": np.ones(1)}),
])
def test_bad_write_is_config_error(tmp_path, start, values):
  with _open(tmp_path / "s.h5") as g:
    with pytest.raises(ConfigError) as exc:
      g.write(start, values)
    _one_line(exc)
    assert not g.done.any()


def test_errors_are_landscape_errors():
  assert issubclass(ResultFileError, LandscapeError) and issubclass(DataError, LandscapeError)


def test_jax_array_inputs(tmp_path):
  jnp = pytest.importorskip("jax.numpy")
  path = tmp_path / "s.h5"
  dirs = [{"w": jnp.arange(3.0), "b": jnp.ones(2, jnp.bfloat16)},
          {"w": -jnp.arange(3.0), "b": jnp.zeros(2, jnp.bfloat16)}]
  with _open(path, directions=dirs) as g:
    g.write(3, {"train_loss": jnp.full(4, 0.5), "train_acc": jnp.arange(4.0)})
  with _open(path, directions=dirs) as g:  # jax leaves compare exactly on resume
    np.testing.assert_array_equal(g.done.reshape(-1), (np.arange(15) >= 3) & (np.arange(15) < 7))
  dx, dy = io.read_directions(path, dirs[0])
  assert dx["b"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(dy["w"], -np.arange(3.0, dtype=np.float32))
