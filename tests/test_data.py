"""Tests of landscape.data: built-in datasets and user files as NumPy arrays."""

from __future__ import annotations

import gzip
import math
import os
import random
import re
import socket
import struct
import urllib.request
from pathlib import Path

import h5py
import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
from scipy.optimize import linprog
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from landscape import data
from landscape.errors import ConfigError, DataError, LandscapeError

EPS32 = float(np.finfo(np.float32).eps)

# name, kwargs, input_shape, task, num_classes, (n_train, n_test); small sizes keep it fast.
SPECS = {
    "digits": ("digits", {}, (8, 8, 1), "multiclass", 10, (1437, 360)),
    "mnist1d": ("mnist1d", {"num_samples": 500}, (40,), "multiclass", 10, (400, 100)),
    "mnist1d_channels": ("mnist1d", {"num_samples": 500, "channels": True}, (40, 1),
                         "multiclass", 10, (400, 100)),
    "regression_outliers": ("regression_outliers", {}, (1,), "regression", None, (160, 40)),
    "imbalanced_binary": ("imbalanced_binary", {}, (2,), "binary", 2, (1600, 400)),
    "moons": ("moons", {"n": 300}, (2,), "binary", 2, (240, 60)),
    "spirals": ("spirals", {"n": 300}, (2,), "binary", 2, (240, 60)),
    "spirals3": ("spirals", {"n": 300, "classes": 3}, (2,), "multiclass", 3, (240, 60)),
}
SYNTHETIC = ["digits", "mnist1d", "regression_outliers", "imbalanced_binary", "moons", "spirals",
             "spirals3"]


def _load(spec: str, **kw) -> data.Dataset:
  name, kwargs, *_ = SPECS[spec]
  return data.load(name, **kwargs, **kw)


def _arrays(ds: data.Dataset) -> tuple[np.ndarray, ...]:
  return ds.x_train, ds.y_train, ds.x_test, ds.y_test


def _lad_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
  """Least-absolute-deviations line as a linear program: min Σ t_i, |y_i - a - b x_i| <= t_i."""
  n = len(x)
  ones, eye = np.ones((n, 1)), np.eye(n)
  a_ub = np.block([[-ones, -x[:, None], -eye], [ones, x[:, None], -eye]])
  res = linprog(np.r_[0.0, 0.0, np.ones(n)], A_ub=a_ub, b_ub=np.r_[-y, y],
                bounds=[(None, None)] * 2 + [(0, None)] * n, method="highs")
  assert res.success
  return float(res.x[1]), float(res.x[0])   # slope, intercept


def _lstsq_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
  coef = np.linalg.lstsq(np.c_[x, np.ones_like(x)], y, rcond=None)[0]
  return float(coef[0]), float(coef[1])


def _recall(y: np.ndarray, pred: np.ndarray) -> float:
  return float(np.mean(pred[y == 1] == 1))


# --------------------------------------------------------------------------- shapes and types


def test_names():
  assert data.names() == ("digits", "fashion_mnist", "file", "imbalanced_binary", "mnist1d",
                          "moons", "regression_outliers", "spirals")


@pytest.mark.parametrize("spec", list(SPECS))
def test_shapes_dtypes_labels(spec):
  _, _, input_shape, task, num_classes, (n_train, n_test) = SPECS[spec]
  ds = _load(spec)
  assert ds.task == task and ds.num_classes == num_classes
  assert ds.input_shape == input_shape
  assert ds.num_outputs == (num_classes if task == "multiclass" else 1)
  assert ds.x_train.shape == (n_train, *input_shape) and ds.x_test.shape == (n_test, *input_shape)
  assert ds.y_train.shape == (n_train,) and ds.y_test.shape == (n_test,)
  for x in (ds.x_train, ds.x_test):
    assert x.dtype == np.float32 and np.all(np.isfinite(x))
  for y in (ds.y_train, ds.y_test):
    if task == "regression":
      assert y.dtype == np.float32 and np.all(np.isfinite(y))
    else:
      assert y.dtype == np.int32 and y.min() >= 0 and y.max() < num_classes
  if task != "regression":
    assert set(np.unique(ds.y_train)) == set(range(num_classes))
  assert "\n" not in repr(ds) and str(ds.x_train.shape) in repr(ds)


def test_digits_is_sklearns_bundled_copy():
  ds = data.load("digits")
  ref = load_digits()
  assert len(ds.y_train) + len(ds.y_test) == 1797
  x = np.concatenate([ds.x_train, ds.x_test])[..., 0] * 16
  y = np.concatenate([ds.y_train, ds.y_test])
  assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1
  np.testing.assert_array_equal(x, np.round(x))          # pixel / 16 is exact in float32
  key = lambda imgs, labels: sorted(zip(labels.tolist(), imgs.reshape(len(imgs), -1).tolist()))
  assert key(x, y) == key(ref.images, ref.target)        # a permutation of the 1797 samples
  for k in range(10):                                    # stratified: within 1 of 20% per class
    assert abs(np.sum(ds.y_test == k) - 360 * np.sum(ref.target == k) / 1797) < 1


@pytest.fixture(scope="module")
def mnist1d_default():
  return data.load("mnist1d")


def test_mnist1d_default_split(mnist1d_default):
  ds = mnist1d_default
  assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
  assert set(np.unique(ds.y_train)) == set(range(10))


def test_mnist1d_matches_package_generator():
  """seed=42 with the package's own args reproduces mnist1d.data.make_dataset exactly."""
  from mnist1d.data import get_dataset_args, make_dataset
  np_state, py_state = np.random.get_state(), random.getstate()
  args = get_dataset_args()
  args.num_samples = 300
  ref = make_dataset(args)                  # seeds the global generators: restore them
  np.random.set_state(np_state)
  random.setstate(py_state)
  ds = data.load("mnist1d", seed=42, num_samples=300)
  np.testing.assert_array_equal(ds.x_train, ref["x"].astype(np.float32))
  np.testing.assert_array_equal(ds.x_test, ref["x_test"].astype(np.float32))
  np.testing.assert_array_equal(ds.y_train, ref["y"])
  np.testing.assert_array_equal(ds.y_test, ref["y_test"])


def test_mnist1d_never_touches_the_network(monkeypatch, tmp_path):
  import requests

  def offline(*args, **kwargs):
    raise AssertionError("network access attempted")

  monkeypatch.setattr(requests, "get", offline)
  monkeypatch.setattr(requests.Session, "request", offline)
  monkeypatch.setattr(urllib.request, "urlopen", offline)
  monkeypatch.setattr(socket.socket, "connect", offline)
  monkeypatch.chdir(tmp_path)
  ds = data.load("mnist1d", num_samples=200, seed=3)
  assert ds.x_train.shape == (160, 40)
  assert list(tmp_path.iterdir()) == []      # no cached pickle written either


# --------------------------------------------------------------------------- determinism, RNG state


@pytest.mark.parametrize("spec", SYNTHETIC)
def test_deterministic_given_seed(spec):
  a, b, c = _load(spec, seed=7), _load(spec, seed=7), _load(spec, seed=8)
  for u, v in zip(_arrays(a), _arrays(b)):
    np.testing.assert_array_equal(u, v)
  assert not np.array_equal(a.x_train, c.x_train)


@pytest.mark.parametrize("spec", SYNTHETIC)
def test_global_random_state_untouched(spec):
  np.random.seed(1234)
  random.seed(1234)
  np_state, py_state = np.random.get_state(), random.getstate()
  _load(spec, seed=5, n_train=20, standardize=True)
  after = np.random.get_state()
  assert after[0] == np_state[0] and after[2:] == np_state[2:]
  np.testing.assert_array_equal(after[1], np_state[1])
  assert random.getstate() == py_state


# --------------------------------------------------------------------------- standardization


@pytest.mark.parametrize("spec, axes", [("digits", (0, 1, 2)), ("mnist1d", (0,)),
                                        ("mnist1d_channels", (0, 1)), ("moons", (0,))])
def test_standardize_uses_train_statistics(spec, axes):
  raw, std = _load(spec), _load(spec, standardize=True)
  mu = raw.x_train.astype(np.float64).mean(axis=axes, keepdims=True)
  sigma = raw.x_train.astype(np.float64).std(axis=axes, keepdims=True)
  # Each standardized value is rounded to float32 (|x'| <~ 10): 50 eps bounds the mean's error.
  np.testing.assert_allclose(std.x_train.mean(axis=axes, dtype=np.float64), 0, atol=50 * EPS32)
  np.testing.assert_allclose(std.x_train.std(axis=axes, dtype=np.float64), 1, rtol=50 * EPS32)
  np.testing.assert_allclose(std.x_test, (raw.x_test - mu) / sigma, rtol=10 * EPS32,
                             atol=10 * EPS32)
  assert std.x_train.dtype == std.x_test.dtype == np.float32
  np.testing.assert_allclose(std.info["standardize"]["mean"], mu.ravel())
  for u, v in ((raw.y_train, std.y_train), (raw.y_test, std.y_test)):
    np.testing.assert_array_equal(u, v)      # targets are left alone


def test_standardize_guards_constant_feature(tmp_path):
  rng = np.random.default_rng(0)
  x_train = np.c_[rng.normal(3, 2, 50), np.full(50, 7.0)]
  x_test = np.c_[rng.normal(3, 2, 10), np.full(10, 9.0)]
  path = tmp_path / "c.npz"
  np.savez(path, x_train=x_train, y_train=rng.normal(size=50), x_test=x_test,
           y_test=rng.normal(size=10))
  ds = data.load(path, standardize=True)
  np.testing.assert_array_equal(ds.x_train[:, 1], 0.0)
  np.testing.assert_allclose(ds.x_test[:, 1], 2.0)   # (9 - 7) / 1: σ = 0 replaced by 1


# --------------------------------------------------------------------------- the lessons


@pytest.mark.parametrize("seed", range(4))
def test_regression_outliers_bias_least_squares_not_lad(seed):
  ds = data.load("regression_outliers", seed=seed)
  x, y = ds.x_train[:, 0].astype(np.float64), ds.y_train.astype(np.float64)
  ols_slope, _ = _lstsq_fit(x, y)
  lad_slope, lad_intercept = _lad_fit(x, y)
  assert ols_slope - 2.0 >= 0.3
  assert abs(lad_slope - 2.0) <= 0.15 and abs(lad_intercept - 3.0) <= 0.5
  # Clean test split: slope s.e. = σ / sqrt(40 var x) ≈ 0.055; 0.25 is ~4.5 s.e.
  assert abs(_lstsq_fit(ds.x_test[:, 0], ds.y_test)[0] - 2.0) < 0.25
  info = ds.info
  assert info["true_slope"] == 2.0 and info["true_intercept"] == 3.0
  assert info["num_outliers"] == len(info["outlier_indices"]) == 16
  resid = y - (2.0 * x + 3.0)
  out = np.zeros(len(y), bool)
  out[info["outlier_indices"]] = True
  assert np.all(resid[out] > 20 - 6) and np.all(np.abs(resid[~out]) < 6)   # 6σ of N(0, 1)


def test_regression_outliers_subsample_remaps_outliers():
  ds = data.load("regression_outliers", n=1000, n_train=300)
  resid = ds.y_train - (2.0 * ds.x_train[:, 0] + 3.0)
  idx = ds.info["outlier_indices"]
  assert ds.info["num_outliers"] == len(idx) > 0
  assert np.all(resid[idx] > 14) and np.sum(resid > 14) == len(idx)


@pytest.mark.parametrize("seed", range(3))
def test_imbalanced_binary(seed):
  ds = data.load("imbalanced_binary", seed=seed)
  assert ds.y_train.mean() == pytest.approx(0.05) and ds.y_test.mean() == pytest.approx(0.05)
  plain = LogisticRegression().fit(ds.x_train, ds.y_train)
  weighted = LogisticRegression(class_weight="balanced").fit(ds.x_train, ds.y_train)
  assert _recall(ds.y_train, plain.predict(ds.x_train)) < 0.5
  assert _recall(ds.y_train, weighted.predict(ds.x_train)) > 0.7


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_spirals_geometry(classes):
  """With noise=0 each point lies on its arm: angle = 2π (turns r + k / K) (mod 2π)."""
  ds = data.load("spirals", n=200, classes=classes, noise=0.0, turns=1.25)
  x = np.concatenate([ds.x_train, ds.x_test]).astype(np.float64)
  k = np.concatenate([ds.y_train, ds.y_test])
  r = np.hypot(x[:, 0], x[:, 1])
  want = 2 * np.pi * (1.25 * r + k / classes)
  diff = np.angle(np.exp(1j * (np.arctan2(x[:, 1], x[:, 0]) - want)))
  np.testing.assert_allclose(diff, 0, atol=1e3 * EPS32)   # float32 storage of x, |angle| <~ 15
  assert np.all((r > 0.1 - 1e-6) & (r < 1 + 1e-6))
  assert np.ptp(np.bincount(k)) <= 1


def test_moons_matches_sklearn_shape():
  ds = data.load("moons", n=500, noise=0.0)
  x = np.concatenate([ds.x_train, ds.x_test]).astype(np.float64)
  y = np.concatenate([ds.y_train, ds.y_test])
  # noise-free moons: class 0 on the unit circle at 0, class 1 on the unit circle at (1, 0.5)
  np.testing.assert_allclose(np.hypot(*x[y == 0].T), 1, atol=1e3 * EPS32)
  np.testing.assert_allclose(np.hypot(x[y == 1, 0] - 1, x[y == 1, 1] - 0.5), 1, atol=1e3 * EPS32)
  assert np.bincount(y).tolist() == [250, 250]


@hypothesis.given(n=st.integers(4, 300), classes=st.integers(2, 6),
                  test_fraction=st.floats(0.05, 0.9))
def test_split_is_stratified(n, classes, test_fraction):
  n_test = math.ceil(test_fraction * n - 1e-9)
  hypothesis.assume(1 <= n_test <= n - 1)
  ds = data.load("spirals", n=n, classes=classes, test_fraction=test_fraction)
  assert len(ds.y_test) == n_test and len(ds.y_train) == n - n_test
  y = np.concatenate([ds.y_train, ds.y_test])
  for k in range(classes):
    assert abs(np.sum(ds.y_test == k) - n_test * np.sum(y == k) / n) < 1


# --------------------------------------------------------------------------- subsampling


@hypothesis.given(n_train=st.integers(1, 240), n_test=st.integers(1, 60))
def test_subsample_is_a_stratified_subset(n_train, n_test):
  full = data.load("moons", n=300)
  sub = data.load("moons", n=300, n_train=n_train, n_test=n_test)
  for split, n in (("train", n_train), ("test", n_test)):
    x, y = getattr(sub, f"x_{split}"), getattr(sub, f"y_{split}")
    fx, fy = getattr(full, f"x_{split}"), getattr(full, f"y_{split}")
    assert x.shape == (n, 2) and y.shape == (n,)
    rows = {tuple(r) + (int(c),) for r, c in zip(fx.tolist(), fy)}
    picked = [tuple(r) + (int(c),) for r, c in zip(x.tolist(), y)]
    assert set(picked) <= rows and len(set(picked)) == n
    assert abs(np.sum(y == 1) - n * np.mean(fy == 1)) < 1


def test_subsample_deterministic_and_keeps_imbalance():
  a = data.load("imbalanced_binary", n_train=200, n_test=100, seed=2)
  b = data.load("imbalanced_binary", n_train=200, n_test=100, seed=2)
  for u, v in zip(_arrays(a), _arrays(b)):
    np.testing.assert_array_equal(u, v)
  assert a.y_train.sum() == 10 and a.y_test.sum() == 5


# --------------------------------------------------------------------------- user files


def _file_case(kind: str, rng: np.random.Generator):
  n, m = 30, 10
  if kind == "regression":
    return rng.normal(size=(n, 3)), rng.normal(size=n), rng.normal(size=(m, 3)), \
        rng.normal(size=m), "regression", None
  if kind == "binary":
    return rng.normal(size=(n, 4)), np.arange(n) % 2, rng.normal(size=(m, 4)), \
        np.arange(m) % 2, "binary", 2
  if kind == "bool":
    return rng.normal(size=(n, 4)), np.arange(n) % 2 == 1, rng.normal(size=(m, 4)), \
        np.arange(m) % 2 == 0, "binary", 2
  if kind == "multiclass":
    return rng.random((n, 5, 5, 2)), np.arange(n) % 4, rng.random((m, 5, 5, 2)), \
        np.arange(m) % 3, "multiclass", 4
  raise AssertionError(kind)


def _write(path: Path, arrays: dict[str, np.ndarray]) -> None:
  if path.suffix == ".npz":
    np.savez(path, **arrays)
  else:
    with h5py.File(path, "w") as f:
      for k, v in arrays.items():
        f[k] = v


def _has_io_reader() -> bool:
  try:
    from landscape.io import read_arrays  # noqa: F401
  except ImportError:
    return False
  return True


needs_io = pytest.mark.skipif(not _has_io_reader(),
                              reason="landscape.io.read_arrays not available yet")
SUFFIXES = [".npz", pytest.param(".h5", marks=needs_io), pytest.param(".hdf5", marks=needs_io)]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("kind", ["regression", "binary", "bool", "multiclass"])
def test_user_file_round_trip(tmp_path, suffix, kind):
  xtr, ytr, xte, yte, task, num_classes = _file_case(kind, np.random.default_rng(1))
  path = tmp_path / f"d{suffix}"
  _write(path, {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte})
  for ds in (data.load("file", path=str(path)), data.load(str(path)), data.load(path)):
    assert ds.name == "file" and ds.task == task and ds.num_classes == num_classes
    assert ds.info["path"] == str(path)
    np.testing.assert_array_equal(ds.x_train, xtr.astype(np.float32))
    np.testing.assert_array_equal(ds.x_test, xte.astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, ytr.astype(ds.y_train.dtype))
    np.testing.assert_array_equal(ds.y_test, yte.astype(ds.y_test.dtype))
    assert ds.y_train.dtype == (np.float32 if task == "regression" else np.int32)


def test_user_file_conversions_and_task_override(tmp_path):
  path = tmp_path / "d.npz"
  np.savez(path, x_train=np.arange(6.0), y_train=np.array([[0.0], [1.0], [1.0], [0.0], [2.0],
                                                             [1.0]]),
           x_test=np.arange(2.0), y_test=np.array([[2.0], [0.0]]))
  ds = data.load(path)
  assert ds.task == "regression" and ds.x_train.shape == (6, 1) and ds.y_train.shape == (6,)
  ds = data.load(path, task="multiclass")
  assert ds.task == "multiclass" and ds.num_classes == 3 and ds.y_train.dtype == np.int32
  ds = data.load(path, task="multiclass", num_classes=7)
  assert ds.num_outputs == 7


# --------------------------------------------------------------------------- Fashion-MNIST / IDX


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
  header = struct.pack(">BBBB", 0, 0, code, array.ndim)
  header += struct.pack(f">{array.ndim}I", *array.shape)
  return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("dtype, code", [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B),
                                         (np.int32, 0x0C), (np.float32, 0x0D),
                                         (np.float64, 0x0E)])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx(tmp_path, dtype, code, gz):
  a = (np.arange(2 * 3 * 4) - 7).reshape(2, 3, 4).astype(dtype)
  raw = _idx_bytes(a, code)
  path = tmp_path / ("a.idx.gz" if gz else "a.idx")
  path.write_bytes(gzip.compress(raw) if gz else raw)
  out = data.read_idx(path)
  assert out.dtype == np.dtype(dtype) and out.dtype.isnative
  np.testing.assert_array_equal(out, a)


def _write_fashion(directory: Path, gz: bool, n_train: int = 12, n_test: int = 5) -> dict:
  rng = np.random.default_rng(0)
  arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            "y_train": (np.arange(n_train) % 10).astype(np.uint8),
            "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            "y_test": (np.arange(n_test) % 10).astype(np.uint8)}
  stems = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
           "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
  for key, stem in stems.items():
    raw = _idx_bytes(arrays[key], 0x08)
    (directory / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
  return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_from_path(tmp_path, gz):
  arrays = _write_fashion(tmp_path, gz)
  ds = data.load("fashion_mnist", path=tmp_path)
  assert ds.x_train.shape == (12, 28, 28, 1) and ds.x_test.shape == (5, 28, 28, 1)
  np.testing.assert_allclose(ds.x_train[..., 0], arrays["x_train"] / 255.0, rtol=EPS32)
  np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
  assert ds.y_train.dtype == np.int32 and ds.num_classes == 10


@pytest.mark.skipif(not os.path.isdir(data.FASHION_MNIST_DIRS[0]),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_debian_package():
  ds = data.load("fashion_mnist")
  assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
  assert np.bincount(ds.y_train).tolist() == [6000] * 10
  assert np.bincount(ds.y_test).tolist() == [1000] * 10
  assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1


def test_fashion_mnist_missing_and_corrupt(tmp_path):
  with pytest.raises(DataError, match="dataset-fashion-mnist") as e:
    data.load("fashion_mnist", path=tmp_path)
  assert str(tmp_path) in str(e.value)
  _write_fashion(tmp_path, gz=False)
  bad = tmp_path / "t10k-labels-idx1-ubyte"
  bad.write_bytes(bad.read_bytes()[:-2])               # truncated
  with pytest.raises(DataError, match="t10k-labels"):
    data.load("fashion_mnist", path=tmp_path)
  bad.write_bytes(b"PK\x03\x04junk")                     # not IDX at all
  with pytest.raises(DataError, match="not an IDX file"):
    data.load("fashion_mnist", path=tmp_path)


# --------------------------------------------------------------------------- errors


def _npz(tmp_path: Path, **arrays) -> Path:
  full = {"x_train": np.zeros((4, 3)), "y_train": np.zeros(4), "x_test": np.zeros((2, 3)),
          "y_test": np.zeros(2)}
  full.update(arrays)
  full = {k: v for k, v in full.items() if v is not None}
  path = tmp_path / "e.npz"
  np.savez(path, **full)
  return path


ERRORS = {
    "unknown name": (lambda p: data.load("cifar99"), ConfigError, ["cifar99", "digits"]),
    "unknown kwarg": (lambda p: data.load("moons", bogus=1), ConfigError, ["bogus", "noise"]),
    "path not accepted": (lambda p: data.load("digits", path="x"), ConfigError, ["'x'"]),
    "file without path": (lambda p: data.load("file"), ConfigError, ["path="]),
    "missing file": (lambda p: data.load(p / "nope.npz"), DataError, ["nope.npz"]),
    "unknown suffix": (lambda p: data.load("file", path=p / "d.csv"), DataError, ["'.csv'"]),
    "missing key": (lambda p: data.load(_npz(p, y_test=None)), DataError,
                    ["y_test", "x_train, y_train, x_test, y_test"]),
    "length mismatch": (lambda p: data.load(_npz(p, y_train=np.zeros(5))), DataError,
                        ["(4, 3)", "(5,)"]),
    "feature mismatch": (lambda p: data.load(_npz(p, x_test=np.zeros((2, 4)))), DataError,
                         ["(4, 3)", "(2, 4)"]),
    "non-finite x": (lambda p: data.load(_npz(p, x_train=np.full((4, 3), np.nan))), DataError,
                     ["NaN"]),
    "bad binary labels": (lambda p: data.load(_npz(p, y_train=np.array([0, 1, 2, 1])),
                                              task="binary"), DataError, ["label 2"]),
    "non-integer labels": (lambda p: data.load(_npz(p, y_train=np.array([0, 1.5, 1, 0])),
                                               task="multiclass"), DataError, ["1.5"]),
    "negative labels": (lambda p: data.load(_npz(p, y_train=np.array([0, -1, 1, 0]),
                                                 y_test=np.array([0, 1]))), DataError, ["-1"]),
    "too few classes": (lambda p: data.load(_npz(p, y_train=np.array([0, 1, 5, 0]),
                                                 y_test=np.array([0, 1])), num_classes=3),
                        DataError, ["[0, 5]"]),
    "unknown task": (lambda p: data.load(_npz(p), task="ranking"), ConfigError, ["ranking"]),
    "n_train too big": (lambda p: data.load("digits", n_train=5000), DataError,
                        ["n_train=5000", "1437"]),
    "n_test too big": (lambda p: data.load("moons", n=100, n_test=21), DataError,
                       ["n_test=21", "20"]),
    "n_train zero": (lambda p: data.load("moons", n_train=0), ConfigError, ["n_train", "0"]),
    "bad seed": (lambda p: data.load("moons", seed=-3), ConfigError, ["-3"]),
    "bad noise": (lambda p: data.load("moons", noise=-0.5), ConfigError, ["noise", "-0.5"]),
    "bad classes": (lambda p: data.load("spirals", classes=1), ConfigError, ["classes", "1"]),
    "bad fraction": (lambda p: data.load("regression_outliers", test_fraction=1.5), ConfigError,
                     ["test_fraction", "1.5"]),
    "empty split": (lambda p: data.load("moons", n=2, test_fraction=0.9), ConfigError,
                    ["test_fraction=0.9"]),
    "bad minority": (lambda p: data.load("imbalanced_binary", minority_fraction=0.0),
                     ConfigError, ["minority_fraction", "0.0"]),
    "bad num_samples": (lambda p: data.load("mnist1d", num_samples=5), ConfigError,
                        ["num_samples", "5"]),
    "bad channels": (lambda p: data.load("mnist1d", channels="yes"), ConfigError, ["'yes'"]),
    "bad standardize": (lambda p: data.load("moons", standardize="yes"), ConfigError,
                        ["'yes'"]),
    "two paths": (lambda p: data.load("a.npz", path="b.npz"), ConfigError, ["a.npz", "b.npz"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors(tmp_path, case):
  call, exc, fragments = ERRORS[case]
  with pytest.raises(exc) as e:
    call(tmp_path)
  assert isinstance(e.value, LandscapeError)
  message = str(e.value)
  assert "\n" not in message
  for fragment in fragments:
    assert fragment in message, (fragment, message)


@needs_io
def test_h5_missing_key(tmp_path):
  path = tmp_path / "m.h5"
  _write(path, {"x_train": np.zeros((3, 2)), "y_train": np.zeros(3), "x_test": np.zeros((1, 2))})
  with pytest.raises(DataError) as e:
    data.load(path)
  assert "y_test" in str(e.value) and "x_train, y_train, x_test, y_test" in str(e.value)


@pytest.mark.parametrize("kwargs, exc, fragment", [
    ({"task": "classification"}, ConfigError, "classification"),
    ({"task": "binary", "num_classes": 3}, ConfigError, "num_classes=3"),
    ({"task": "regression", "num_classes": 2}, ConfigError, "num_classes=2"),
    ({"task": "multiclass", "num_classes": 2, "y_test": np.array([0, 2])}, DataError, "[0, 2]"),
    ({"task": "binary", "num_classes": 2, "y_train": np.array([0.0, 1, 0, 1])}, DataError,
     "float64"),
])
def test_dataset_validates(kwargs, exc, fragment):
  fields = {"name": "toy", "x_train": np.zeros((4, 2), np.float32),
            "y_train": np.array([0, 1, 0, 1], np.int32), "x_test": np.zeros((2, 2), np.float32),
            "y_test": np.array([1, 0], np.int32)}
  fields.update(kwargs)
  with pytest.raises(exc, match=re.escape(fragment)):
    data.Dataset(**fields)


def test_digits_read_from_the_shipped_csv_equal_load_digits():
  from sklearn.datasets import load_digits
  images, target = data._digits_arrays()
  bunch = load_digits()
  np.testing.assert_array_equal(images, bunch.images)
  np.testing.assert_array_equal(target, bunch.target)
