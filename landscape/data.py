"""Built-in offline datasets and user files as NumPy arrays.

Every dataset is a :class:`Dataset` of NumPy arrays with a train and a test
split, made without the network and deterministically from ``seed``:

  ===================== ====================================================== ============
  name                  what                                                   task
  ===================== ====================================================== ============
  digits                scikit-learn's bundled 8x8 digits, (n, 8, 8, 1) in     multiclass
                        [0, 1], 1437 train / 360 test
  mnist1d               MNIST-1D signals (n, 40) generated procedurally,       multiclass
                        4000 train / 1000 test
  fashion_mnist         Fashion-MNIST from Debian's dataset-fashion-mnist      multiclass
                        (or ``path=DIR`` of IDX files), (n, 28, 28, 1)
  regression_outliers   y = 2x + 3 + noise, 10% one-sided gross outliers in    regression
                        the train split (MSE vs robust losses)
  imbalanced_binary     two overlapping Gaussians, 95% / 5% (BCE vs focal)     binary
  moons                 scikit-learn's two moons                               binary
  spirals               interleaved spirals, 2 or more arms                    binary/multi
  file                  ``.npz`` / ``.h5`` with x_train, y_train, x_test,      inferred
                        y_test
  ===================== ====================================================== ============

Conventions: inputs are float32, images channels-last ``(n, H, W, C)``;
class labels are int32 of shape ``(n,)`` in ``0..num_classes-1`` (binary:
``{0, 1}``); regression targets are float32 of shape ``(n,)``. Randomness comes
only from ``np.random.default_rng`` seeded by ``seed``; the global ``numpy`` and
``random`` states are left as they were (the MNIST-1D generator seeds them
globally, so :func:`load` saves and restores them).

  >>> import landscape as ls
  >>> ds = ls.data.load("digits", standardize=True)
  >>> ds.x_train.shape, ds.num_outputs
  ((1437, 8, 8, 1), 10)
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import importlib.util
import inspect
import math
import os
import random
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float, Shaped

from landscape import _imports
from landscape.errors import ConfigError, DataError, unknown_name

TASKS = ("regression", "binary", "multiclass")
FILE_KEYS = ("x_train", "y_train", "x_test", "y_test")
FILE_SUFFIXES = (".npz", ".h5", ".hdf5")
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",
                      "/usr/local/share/datasets/fashion-mnist")
_FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_MAX_SEED = 2**32 - 1          # np.random.seed's limit (MNIST-1D seeds globally)
_SUBSAMPLE_STREAM = 1          # default_rng((seed, 1)): n_train / n_test subsampling
_TRAIN_INDEX_KEYS = ("outlier_indices",)   # info entries that index x_train


# --------------------------------------------------------------------------- Dataset


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
  """A train/test split of NumPy arrays and what the task is.

  Attributes:
    name: the registry name it was loaded under (``"file"`` for user files).
    x_train: inputs, float32 ``(n_train, *input_shape)``; images ``(n, H, W, C)``.
    y_train: ``(n_train,)`` int32 labels in ``0..num_classes-1``, or float32
      targets for regression.
    x_test: ``(n_test, *input_shape)``.
    y_test: ``(n_test,)``.
    task: ``"regression"``, ``"binary"`` or ``"multiclass"``.
    num_classes: ``None`` for regression, 2 for binary, ``K >= 2`` for multiclass.
    info: JSON-friendly facts about the data (source, seed, true parameters of
      a synthetic set, standardization statistics, ...).

  Example:
    >>> ds = Dataset("toy", np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1], np.int32),
    ...              np.zeros((2, 2), np.float32), np.array([1, 0], np.int32), "binary", 2)
    >>> ds.input_shape, ds.num_outputs
    ((2,), 1)
  """

  name: str
  x_train: Float[np.ndarray, "n_train *features"]
  y_train: Shaped[np.ndarray, "n_train"]
  x_test: Float[np.ndarray, "n_test *features"]
  y_test: Shaped[np.ndarray, "n_test"]
  task: str
  num_classes: int | None = None
  info: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self) -> None:
    _check_arrays(self.name, self.x_train, self.y_train, self.x_test, self.y_test)
    _check_task(self.name, self.task, self.num_classes, self.y_train, self.y_test)

  @property
  def input_shape(self) -> tuple[int, ...]:
    """The shape of one input, ``x_train.shape[1:]``."""
    return tuple(self.x_train.shape[1:])

  @property
  def num_outputs(self) -> int:
    """Model outputs the task needs: 1 (regression, binary logit) or ``num_classes``."""
    return self.num_classes if self.task == "multiclass" else 1

  def __repr__(self) -> str:
    return (f"Dataset(name={self.name!r}, task={self.task!r}, num_classes={self.num_classes}, "
            f"x_train={self.x_train.shape} {self.x_train.dtype}, "
            f"x_test={self.x_test.shape} {self.x_test.dtype})")


def _check_arrays(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                  y_test: np.ndarray) -> None:
  """DataError unless x/y lengths agree, y is 1-D and both splits share a feature shape."""
  for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
    if np.ndim(x) < 2:
      raise DataError(f"{name}: x_{split} has shape {np.shape(x)}; it needs a leading sample "
                      "axis and at least one feature axis, e.g. (n, d)")
    if np.ndim(y) != 1:
      raise DataError(f"{name}: y_{split} has shape {np.shape(y)}; targets must be 1-D (n,)")
    if x.shape[0] != y.shape[0]:
      raise DataError(f"{name}: x_{split} has shape {x.shape} but y_{split} has shape {y.shape}; "
                      "both need the same number of samples")
    if x.shape[0] == 0:
      raise DataError(f"{name}: the {split} split is empty (x_{split} shape {x.shape}); "
                      "give it at least one sample")
  if x_train.shape[1:] != x_test.shape[1:]:
    raise DataError(f"{name}: x_train has shape {x_train.shape} but x_test has shape "
                    f"{x_test.shape}; both splits need the same per-sample shape")


def _check_task(name: str, task: str, num_classes: int | None, y_train: np.ndarray,
                y_test: np.ndarray) -> None:
  """ConfigError/DataError unless task, num_classes and the labels agree."""
  if task not in TASKS:
    raise unknown_name("task", task, TASKS)
  if task == "regression":
    if num_classes is not None:
      raise ConfigError(f"{name}: num_classes={num_classes!r} with task='regression'; "
                        "pass num_classes=None")
    return
  want = "2" if task == "binary" else "an integer >= 2"
  if (isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer))
      or num_classes < 2 or (task == "binary" and num_classes != 2)):
    raise ConfigError(f"{name}: num_classes={num_classes!r} with task={task!r}; "
                      f"pass num_classes={want}")
  for split, y in (("train", y_train), ("test", y_test)):
    if y.dtype.kind not in "iu":
      raise DataError(f"{name}: y_{split} has dtype {y.dtype} but task={task!r} needs "
                      "integer class labels")
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
      raise DataError(f"{name}: y_{split} labels span [{low}, {high}] but task={task!r} with "
                      f"num_classes={num_classes} needs labels in 0..{num_classes - 1}")


# --------------------------------------------------------------------------- public API


def names() -> tuple[str, ...]:
  """The names :func:`load` accepts, sorted.

  Returns:
    e.g. ``("digits", "fashion_mnist", "file", "imbalanced_binary", "mnist1d", "moons",
    "regression_outliers", "spirals")``.

  Example:
    >>> "digits" in names()
    True
  """
  return tuple(sorted({*_LOADERS, *_USER}))


def load(name: str | os.PathLike, *, seed: int = 0, standardize: bool = False,
         n_train: int | None = None, n_test: int | None = None,
         path: str | os.PathLike | None = None, **kwargs: Any) -> Dataset:
  """Load a built-in dataset or a user file as NumPy arrays.

  The result is a deterministic function of the arguments. With
  ``n_train``/``n_test`` a random subset (stratified by class for classifiers)
  of that size is kept, drawn from ``default_rng((seed, 1))``. With
  ``standardize=True`` the inputs become

    x' = (x - μ) / σ,   μ, σ = mean and std of x_train,

  per feature for flat inputs ``(n, d)``, per channel (over all axes but the
  last) for inputs of rank >= 3 such as images ``(n, H, W, C)``; the same
  train-split μ, σ transform the test split, σ = 0 (a constant feature) is
  replaced by 1, and μ, σ are kept in ``info["standardize"]``. Targets are
  never standardized.

  Args:
    name: one of :func:`names`, or a path ending in ``.npz``, ``.h5`` or ``.hdf5``
      (then it is ``load("file", path=name)``).
    seed: integer in ``[0, 2**32 - 1]``; generation, split and subsampling.
    standardize: standardize the inputs with train-split statistics.
    n_train: keep this many training samples (``None``: all).
    n_test: keep this many test samples (``None``: all).
    path: the file for ``"file"``; the directory of the four IDX files for
      ``"fashion_mnist"``; not accepted by the other datasets.
    **kwargs: the dataset's own options; an unknown one is a ConfigError that
      lists the accepted ones. ``digits(test_fraction=0.2)``;
      ``mnist1d(num_samples=5000, channels=False)``; ``regression_outliers(n=200,
      noise=1.0, outlier_fraction=0.1, outlier_scale=30.0, slope=2.0, intercept=3.0,
      test_fraction=0.2)``; ``imbalanced_binary(n=2000, minority_fraction=0.05,
      separation=2.0, dim=2, test_fraction=0.2)``; ``moons(n=1000, noise=0.1,
      test_fraction=0.2)``; ``spirals(n=1000, classes=2, noise=0.05, turns=1.5,
      test_fraction=0.2)``; ``file(task=None, num_classes=None)``.

  Returns:
    A :class:`Dataset`: ``x_train (n_train, *input_shape)``, ``y_train (n_train,)``,
    ``x_test (n_test, *input_shape)``, ``y_test (n_test,)``.

  Raises:
    ConfigError: unknown name or keyword, a bad option value.
    DataError: missing files or keys, mismatched shapes, ``n_train``/``n_test``
      larger than the split.

  Example:
    >>> ds = load("moons", seed=1, n=400, noise=0.2, standardize=True)
    >>> ds.x_train.shape, ds.task
    ((320, 2), 'binary')

  References:
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the loss landscape of neural
    nets", NeurIPS 2018 (the experiments these datasets feed).
  """
  if _imports.is_import_path(name) or (isinstance(name, str) and name in _USER):
    loader = (_imports.load(name, "data.name", _EXPECTED) if _imports.is_import_path(name)
              else _USER[name])
    if path is not None:
      kwargs["path"] = path
    seed = _check_seed(seed)
    with _global_rng_preserved():
      ds = _user_dataset(name, loader, seed, kwargs)
    ds = dataclasses.replace(ds, info={**ds.info, "seed": seed})
    if n_train is not None or n_test is not None:
      ds = _subsample(ds, seed, n_train, n_test)
    return _standardized(ds) if _bool("standardize", standardize) else ds
  name, path = _resolve_name(name, path)
  if name not in _LOADERS:
    raise unknown_name("dataset", name, _LOADERS)
  loader = _LOADERS[name]
  options = _options(loader)
  for key in kwargs:
    if key not in options:
      accepted = ", ".join(options) or "none"
      raise ConfigError(f"unknown keyword {key!r} for dataset {name!r}; accepted: {accepted} "
                        "(and seed, standardize, n_train, n_test"
                        f"{', path' if _takes_path(loader) else ''})")
  seed = _check_seed(seed)
  standardize = _bool("standardize", standardize)
  if _takes_path(loader):
    kwargs["path"] = path
  elif path is not None:
    raise ConfigError(f"path={os.fspath(path)!r} is not accepted by dataset {name!r}; only "
                      "'file' and 'fashion_mnist' read from a path")
  with _global_rng_preserved():
    ds = loader(seed, **kwargs)
  info = {**ds.info, "seed": seed}
  ds = dataclasses.replace(ds, info=info)
  if n_train is not None or n_test is not None:
    ds = _subsample(ds, seed, n_train, n_test)
  if standardize:
    ds = _standardized(ds)
  return ds


# --------------------------------------------------------------------------- user datasets

_EXPECTED = ("a dataset loader (**kwargs) -> a landscape.data.Dataset, or a mapping with "
             "x_train, y_train, x_test, y_test (and optionally task, num_classes)")
#: Loaders added by :func:`register` (name -> loader).
_USER: dict[str, Callable[..., Any]] = {}


def register(name: str, loader: Callable[..., Any]) -> None:
  """Add a dataset loader under a short ``name`` (for configs and :func:`load`).

  ``loader(**kwargs)`` (given ``seed=`` when it takes it, and the config's
  ``data.kwargs``) returns a :class:`Dataset`, or a mapping with ``x_train``, ``y_train``,
  ``x_test``, ``y_test`` and optionally ``task`` and ``num_classes`` (inferred as for
  user files when missing: integer labels in {0, 1} binary, other integers multiclass,
  floats regression). ``n_train``, ``n_test`` and ``standardize`` apply as for the
  built-in datasets.

  Example:
    >>> register("xor", lambda seed=0: {"x_train": ..., "y_train": ..., "x_test": ...,
    ...                                  "y_test": ..., "task": "binary"})
  """
  if not isinstance(name, str) or not name or _imports.is_import_path(name):
    raise ConfigError(f"dataset name {name!r} must be a plain non-empty string")
  if name in _LOADERS:
    raise ConfigError(f"dataset {name!r} is built in; register yours under another name")
  if not callable(loader):
    raise ConfigError(f"dataset {name!r}: loader must be callable, got {type(loader).__name__}")
  _USER[name] = loader


def _user_dataset(name: str, loader: Callable[..., Any], seed: int,
                  kwargs: dict[str, Any]) -> Dataset:
  if _imports.accepts(loader, "seed"):
    kwargs = {"seed": seed, **kwargs}
  out = _imports.call(loader, name, "data.name", _EXPECTED, **kwargs)
  if isinstance(out, Dataset):
    return out
  if not isinstance(out, Mapping) or not all(k in out for k in FILE_KEYS):
    got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
    raise ConfigError(f"data.name {name!r} returned {got}; expected {_EXPECTED}")
  x_train, x_test = (_user_x(name, k, np.asarray(out[k])) for k in ("x_train", "x_test"))
  y_train, y_test = (_user_y(name, k, np.asarray(out[k])) for k in ("y_train", "y_test"))
  _check_arrays(name, x_train, y_train, x_test, y_test)
  task = out.get("task") or _infer_task(y_train, y_test)
  if task not in TASKS:
    raise unknown_name("task", task, TASKS)
  num_classes = out.get("num_classes")
  if task == "regression":
    y_train, y_test = y_train.astype(np.float32), y_test.astype(np.float32)
  else:
    y_train, y_test = (_user_labels(name, k, y, task)
                       for k, y in (("y_train", y_train), ("y_test", y_test)))
    if num_classes is None:
      num_classes = 2 if task == "binary" else int(max(y_train.max(), y_test.max())) + 1
  return Dataset(name, x_train, y_train, x_test, y_test, task=task, num_classes=num_classes,
                 info={"loader": name})


# --------------------------------------------------------------------------- load helpers


def _resolve_name(name: str | os.PathLike, path: str | os.PathLike | None
                  ) -> tuple[str, str | os.PathLike | None]:
  """``(registry name, path)``; a file path given as the name means ``"file"``."""
  if isinstance(name, os.PathLike) or (
      isinstance(name, str) and name.lower().endswith(FILE_SUFFIXES)):
    if path is not None and os.fspath(path) != os.fspath(name):
      raise ConfigError(f"got the file {os.fspath(name)!r} as name and path={os.fspath(path)!r}; "
                        "pass the file once, as name or as path=")
    return "file", name
  if not isinstance(name, str):
    raise ConfigError(f"dataset name must be a string, got {name!r}; valid dataset names: "
                      f"{', '.join(names())}")
  return name, path


def _options(loader: Callable[..., Dataset]) -> tuple[str, ...]:
  """The loader's keyword-only options (``path`` excluded: load takes it itself)."""
  params = inspect.signature(loader).parameters.values()
  return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "path")


def _takes_path(loader: Callable[..., Dataset]) -> bool:
  return "path" in inspect.signature(loader).parameters


def _check_seed(seed: Any) -> int:
  if (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
      or not 0 <= seed <= _MAX_SEED):
    raise ConfigError(f"seed must be an integer in [0, {_MAX_SEED}], got {seed!r}")
  return int(seed)


@contextlib.contextmanager
def _global_rng_preserved() -> Iterator[None]:
  """Restore the global ``numpy.random`` and ``random`` states on exit."""
  np_state, py_state = np.random.get_state(), random.getstate()
  try:
    yield
  finally:
    np.random.set_state(np_state)
    random.setstate(py_state)


def _labels(ds: Dataset, split: str) -> np.ndarray | None:
  """The class labels of a split for stratification, ``None`` for regression."""
  return None if ds.task == "regression" else getattr(ds, f"y_{split}")


def _subsample(ds: Dataset, seed: int, n_train: int | None, n_test: int | None) -> Dataset:
  """Keep random (class-stratified) subsets of ``n_train`` / ``n_test`` samples."""
  rng = np.random.default_rng((seed, _SUBSAMPLE_STREAM))
  arrays, info = {}, dict(ds.info)
  for split, n in (("train", n_train), ("test", n_test)):
    x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
    if n is None:
      arrays.update({f"x_{split}": x, f"y_{split}": y})
      continue
    n = _int_in(f"n_{split}", n, 1)
    if n > len(y):
      raise DataError(f"n_{split}={n} exceeds the {len(y)} {split} samples of {ds.name!r}; "
                      f"pass n_{split} <= {len(y)}")
    keep = _stratified_choice(rng, _labels(ds, split), len(y), n)
    arrays.update({f"x_{split}": x[keep], f"y_{split}": y[keep]})
    if split == "train":
      info.update(_remap_train_indices(info, keep))
  return dataclasses.replace(ds, **arrays, info=info)


def _remap_train_indices(info: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
  """Info entries indexing x_train, re-expressed after keeping rows ``keep``."""
  out = {}
  for key in _TRAIN_INDEX_KEYS:
    if key in info:
      out[key] = np.flatnonzero(np.isin(keep, info[key])).tolist()
  if "outlier_indices" in out:
    out["num_outliers"] = len(out["outlier_indices"])
  return out


def _standardized(ds: Dataset) -> Dataset:
  """``(x - μ) / σ`` with the train split's per-feature (per-channel) μ, σ."""
  x = ds.x_train
  axes = (0,) if x.ndim == 2 else tuple(range(x.ndim - 1))
  mean = x.mean(axis=axes, dtype=np.float64, keepdims=True)
  std = x.std(axis=axes, dtype=np.float64, keepdims=True)
  constant = std <= np.finfo(np.float32).eps * (1.0 + np.abs(mean))
  std = np.where(constant, 1.0, std)

  def apply(a: np.ndarray) -> np.ndarray:
    return ((a - mean) / std).astype(np.float32)

  info = {**ds.info, "standardize": {"axes": list(axes), "mean": mean.ravel().tolist(),
                                     "std": std.ravel().tolist()}}
  return dataclasses.replace(ds, x_train=apply(ds.x_train), x_test=apply(ds.x_test), info=info)


def _stratified_choice(rng: np.random.Generator, labels: np.ndarray | None, size: int,
                       n: int) -> np.ndarray:
  """``n`` distinct indices of ``range(size)`` in random order, per class in proportion.

  Class ``c`` with ``n_c`` members gets ``floor(n n_c / size)`` picks, and the
  ``n - Σ floor`` picks left go to the largest fractional parts (Hamilton's
  method), so the class fractions are kept to within one sample.
  """
  if labels is None:
    return rng.permutation(size)[:n]
  _, inverse = np.unique(labels, return_inverse=True)
  counts = np.bincount(inverse)
  quota = counts * n / size
  take = np.floor(quota).astype(np.int64)
  order = np.argsort(-(quota - take), kind="stable")
  take[order[:n - int(take.sum())]] += 1
  picks = [rng.permutation(np.flatnonzero(inverse == c))[:t] for c, t in enumerate(take)]
  return rng.permutation(np.concatenate(picks))


def _split(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, test_fraction: float,
           stratify: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """``(x_train, y_train, x_test, y_test)`` with ``ceil(test_fraction n)`` test samples."""
  n = len(y)
  n_test = _num_test(n, test_fraction)
  test = _stratified_choice(rng, y if stratify else None, n, n_test)
  train = rng.permutation(np.setdiff1d(np.arange(n), test))
  return x[train], y[train], x[test], y[test]


def _num_test(n: int, test_fraction: float) -> int:
  """``ceil(test_fraction n)`` (as scikit-learn's train_test_split), checked to leave both
  splits non-empty."""
  n_test = math.ceil(test_fraction * n - 1e-9)
  if not 1 <= n_test <= n - 1:
    raise ConfigError(f"test_fraction={test_fraction} of n={n} samples leaves an empty split; "
                      "raise n or pick test_fraction so both splits get a sample")
  return n_test


# --------------------------------------------------------------------------- option checks


def _int_in(name: str, value: Any, low: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
    raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
  return int(value)


def _real_in(name: str, value: Any, low: float, high: float, *, low_open: bool = False,
             high_open: bool = False) -> float:
  ok = (not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.number))
        and math.isfinite(value) and (value > low if low_open else value >= low)
        and (value < high if high_open else value <= high))
  if not ok:
    interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    raise ConfigError(f"{name} must be a number in {interval}, got {value!r}")
  return float(value)


def _fraction(name: str, value: Any) -> float:
  return _real_in(name, value, 0.0, 1.0, low_open=True, high_open=True)


def _bool(name: str, value: Any) -> bool:
  if not isinstance(value, (bool, np.bool_)):
    raise ConfigError(f"{name} must be True or False, got {value!r}")
  return bool(value)


# --------------------------------------------------------------------------- built-in sets


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
  """The digits ``(images (1797, 8, 8), target (1797,))`` from the CSV scikit-learn ships.

  Read directly (what ``sklearn.datasets.load_digits`` reads), because importing
  scikit-learn takes ~1.5 s, a large part of a short ``landscape`` command; the package
  is found without importing it. Falls back to ``load_digits`` if the file is not where
  this scikit-learn keeps it.
  """
  spec = importlib.util.find_spec("sklearn")
  roots = list(spec.submodule_search_locations or []) if spec else []
  for root in roots:
    path = Path(root) / "datasets" / "data" / "digits.csv.gz"
    if path.is_file():
      table = np.loadtxt(path, delimiter=",", dtype=np.float64)
      return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
  from sklearn.datasets import load_digits
  bunch = load_digits()
  return bunch.images, bunch.target


def _digits(seed: int, *, test_fraction: float = 0.2) -> Dataset:
  """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), no network.

  x = pixel / 16 in [0, 1] as ``(n, 8, 8, 1)`` float32; a class-stratified
  split with ``ceil(0.2 n) = 360`` test images, drawn from ``default_rng(seed)``.

  References:
    Alpaydin, Kaynak, "Optical Recognition of Handwritten Digits", UCI ML
    Repository, 1998.
  """
  test_fraction = _fraction("test_fraction", test_fraction)
  images, target = _digits_arrays()
  x = (images / 16.0).astype(np.float32)[..., None]
  y = target.astype(np.int32)
  splits = _split(np.random.default_rng(seed), x, y, test_fraction, stratify=True)
  return Dataset("digits", *splits, task="multiclass", num_classes=10,
                 info={"source": "sklearn.datasets.load_digits"})


def _mnist1d(seed: int, *, num_samples: int = 5000, channels: bool = False) -> Dataset:
  """MNIST-1D generated with the ``mnist1d`` package, never its download path.

  Calls ``mnist1d.data.make_dataset(args)`` with ``args.seed = seed`` and
  ``args.num_samples = num_samples`` (``10 * (num_samples // 10)`` signals, its
  own 80/20 split: 4000 / 1000 by default). x is ``(n, 40)`` float32, or
  ``(n, 40, 1)`` with ``channels=True`` (for 1-D convolutions); 10 classes.
  ``seed=42`` reproduces the package's default ``make_dataset()``. The package
  seeds the global generators: :func:`load` restores them afterwards. (Importing
  ``mnist1d`` also imports matplotlib, so it is imported only here.)

  References:
    Greydanus, Kobak, "Scaling down deep learning with MNIST-1D", ICML 2024
    (arXiv 2011.14439, 2020).
  """
  num_samples = _int_in("num_samples", num_samples, 10)
  channels = _bool("channels", channels)
  from mnist1d.data import get_dataset_args, make_dataset

  args = get_dataset_args()
  args.seed, args.num_samples = seed, num_samples
  raw = make_dataset(args)
  shape = (-1, raw["x"].shape[1], 1) if channels else (-1, raw["x"].shape[1])
  x_train, x_test = (raw[k].astype(np.float32).reshape(shape) for k in ("x", "x_test"))
  y_train, y_test = (raw[k].astype(np.int32) for k in ("y", "y_test"))
  return Dataset("mnist1d", x_train, y_train, x_test, y_test, task="multiclass", num_classes=10,
                 info={"source": "mnist1d.data.make_dataset", "num_samples": num_samples})


def _fashion_mnist(seed: int, *, path: str | os.PathLike | None = None) -> Dataset:
  """Fashion-MNIST from gzip'd or plain IDX files (60000 train / 10000 test).

  Looks in ``path`` if given, else in Debian's ``dataset-fashion-mnist`` layout
  (``/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz``, ...).
  x = pixel / 255 as ``(n, 28, 28, 1)`` float32; 10 classes; the files' split.

  References:
    Xiao, Rasul, Vollgraf, "Fashion-MNIST: a novel image dataset for
    benchmarking machine learning algorithms", arXiv 1708.07747, 2017.
  """
  del seed  # the files fix the split
  dirs = (os.fspath(path),) if path is not None else FASHION_MNIST_DIRS
  files = None
  for d in dirs:
    found = {k: _find_idx(Path(d), stem) for k, stem in _FASHION_FILES.items()}
    if all(found.values()):
      files = found
      break
  if files is None:
    raise DataError(f"fashion_mnist files not found in {', '.join(dirs)}; install Debian's "
                    "dataset-fashion-mnist or pass path=DIR with the four IDX files "
                    f"({', '.join(s + '[.gz]' for s in _FASHION_FILES.values())})")
  arrays = {k: read_idx(f) for k, f in files.items()}
  for split in ("train", "test"):
    x = arrays[f"x_{split}"]
    if x.ndim != 3 or arrays[f"y_{split}"].ndim != 1:
      raise DataError(f"{files[f'x_{split}']} holds an array of shape {x.shape} and its labels "
                      f"{arrays[f'y_{split}'].shape}; Fashion-MNIST needs (n, 28, 28) and (n,)")
    arrays[f"x_{split}"] = (x.astype(np.float32) / 255.0)[..., None]
    arrays[f"y_{split}"] = arrays[f"y_{split}"].astype(np.int32)
  return Dataset("fashion_mnist", **arrays, task="multiclass", num_classes=10,
                 info={"source": os.path.dirname(files["x_train"])})


def _find_idx(directory: Path, stem: str) -> str | None:
  for candidate in (directory / stem, directory / f"{stem}.gz"):
    if candidate.is_file():
      return str(candidate)
  return None


_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Read one IDX file (the MNIST format), plain or gzip'd, into a NumPy array.

  Layout: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16,
  0x0C int32, 0x0D float32, 0x0E float64), the rank r, then r big-endian uint32
  dimensions and the row-major big-endian data.

  Args:
    path: the file; a name ending in ``.gz`` is decompressed.

  Returns:
    An array of shape ``(d_1, ..., d_r)`` in native byte order.

  Example:
    >>> read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").shape
    (10000,)

  References:
    LeCun, Cortes, Burges, "The MNIST database of handwritten digits", 1998
    (the IDX format).
  """
  path = os.fspath(path)
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise DataError(f"cannot read IDX file {path!r} ({e}); replace it with an intact copy") from e
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
    raise DataError(f"{path!r} is not an IDX file (bad magic {raw[:4]!r}); pass the MNIST-format "
                    "files, e.g. train-images-idx3-ubyte.gz")
  rank = raw[3]
  header = 4 + 4 * rank
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=rank, offset=4)) if rank else ()
  dtype = np.dtype(_IDX_DTYPES[raw[2]])
  expected = header + dtype.itemsize * math.prod(shape)
  if len(raw) != expected:
    raise DataError(f"IDX file {path!r} has {len(raw)} bytes but its header {shape} needs "
                    f"{expected}; replace it with an intact copy")
  data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
  return data.astype(dtype.newbyteorder("="))


# --------------------------------------------------------------------------- synthetic sets


def _regression_outliers(seed: int, *, n: int = 200, noise: float = 1.0,
                         outlier_fraction: float = 0.1, outlier_scale: float = 30.0,
                         slope: float = 2.0, intercept: float = 3.0,
                         test_fraction: float = 0.2) -> Dataset:
  """1-D linear regression whose train split has one-sided gross outliers.

  x ~ U(-5, 5), y = slope x + intercept + ε, ε ~ N(0, noise²), ``n`` samples
  split ``ceil(test_fraction n)`` test / rest train. Then ``k =
  round(outlier_fraction n_train)`` train targets at x > 0 get y += s,
  s ~ U(2/3, 4/3) · outlier_scale (20..40 by default). The outliers sit on one
  side and at one end, so least squares tilts: its slope moves by about
  ``cov(x, s) / var(x)`` ≈ 0.9 with the defaults, while least absolute
  deviations (and Huber) stay within a few hundredths of ``slope``. The test
  split is clean. ``info`` holds ``true_slope``, ``true_intercept``,
  ``outlier_indices`` (rows of x_train) and ``num_outliers``.

  References:
    Huber, "Robust estimation of a location parameter", Ann. Math. Statist. 1964.
  """
  n = _int_in("n", n, 2)
  noise = _real_in("noise", noise, 0.0, math.inf, high_open=True)
  outlier_fraction = _real_in("outlier_fraction", outlier_fraction, 0.0, 1.0, high_open=True)
  outlier_scale = _real_in("outlier_scale", outlier_scale, -math.inf, math.inf, low_open=True,
                           high_open=True)
  slope = _real_in("slope", slope, -math.inf, math.inf, low_open=True, high_open=True)
  intercept = _real_in("intercept", intercept, -math.inf, math.inf, low_open=True,
                       high_open=True)
  n_test = _num_test(n, _fraction("test_fraction", test_fraction))
  rng = np.random.default_rng(seed)
  x = rng.uniform(-5.0, 5.0, n)
  y = slope * x + intercept + noise * rng.standard_normal(n)
  n_train = n - n_test
  k = round(outlier_fraction * n_train)
  right = np.flatnonzero(x[:n_train] > 0)
  idx = (rng.choice(right, k, replace=False) if k <= len(right)
         else np.argsort(-x[:n_train], kind="stable")[:k])
  y[idx] += outlier_scale * rng.uniform(2 / 3, 4 / 3, k)
  x, y = x.astype(np.float32)[:, None], y.astype(np.float32)
  return Dataset(
      "regression_outliers", x[:n_train], y[:n_train], x[n_train:], y[n_train:],
      task="regression", num_classes=None,
      info={"true_slope": slope, "true_intercept": intercept, "noise": noise,
            "outlier_fraction": outlier_fraction, "outlier_scale": outlier_scale,
            "num_outliers": int(k), "outlier_indices": sorted(int(i) for i in idx)})


def _imbalanced_binary(seed: int, *, n: int = 2000, minority_fraction: float = 0.05,
                       separation: float = 2.0, dim: int = 2,
                       test_fraction: float = 0.2) -> Dataset:
  """Two overlapping Gaussian classes with a rare positive class.

  Label 0 (majority): x ~ N(0, I_dim); label 1 (minority): x ~ N(μ, I_dim) with
  ``μ = separation · 1 / √dim`` (so ``|μ| = separation``). Each split holds
  ``round(minority_fraction · n_split)`` positives (at least one), so train and
  test share the imbalance. With the defaults the Bayes rule for the skewed
  prior flags x·μ/|μ| > |μ|/2 + log(19)/|μ| ≈ 2.47, recalling only about 32% of
  the positives, so a plain BCE fit has poor minority recall, while a balanced
  (weighted or focal) loss moves the threshold towards 1 and recalls ~80%.

  References:
    Lin, Goyal, Girshick, He, Dollár, "Focal loss for dense object detection",
    ICCV 2017.
  """
  n = _int_in("n", n, 4)
  minority_fraction = _real_in("minority_fraction", minority_fraction, 0.0, 0.5,
                               low_open=True)
  separation = _real_in("separation", separation, 0.0, math.inf, high_open=True)
  dim = _int_in("dim", dim, 1)
  n_test = _num_test(n, _fraction("test_fraction", test_fraction))
  rng = np.random.default_rng(seed)
  mu = np.full(dim, separation / math.sqrt(dim))

  def split(size: int) -> tuple[np.ndarray, np.ndarray]:
    n_pos = min(max(1, round(minority_fraction * size)), size - 1)
    x = rng.standard_normal((size, dim))
    x[:n_pos] += mu
    y = (np.arange(size) < n_pos).astype(np.int32)
    order = rng.permutation(size)
    return x[order].astype(np.float32), y[order]

  x_train, y_train = split(n - n_test)
  x_test, y_test = split(n_test)
  return Dataset("imbalanced_binary", x_train, y_train, x_test, y_test, task="binary",
                 num_classes=2,
                 info={"minority_fraction": minority_fraction, "minority_label": 1,
                       "separation": separation, "dim": dim})


def _moons(seed: int, *, n: int = 1000, noise: float = 0.1, test_fraction: float = 0.2) -> Dataset:
  """scikit-learn's two interleaving half circles, ``make_moons(n, noise=noise)``.

  ``random_state`` is drawn from ``default_rng(seed)``; class-stratified split.

  References:
    Pedregosa et al., "Scikit-learn: machine learning in Python", JMLR 2011.
  """
  from sklearn.datasets import make_moons

  n = _int_in("n", n, 2)
  noise = _real_in("noise", noise, 0.0, math.inf, high_open=True)
  test_fraction = _fraction("test_fraction", test_fraction)
  _num_test(n, test_fraction)
  rng = np.random.default_rng(seed)
  x, y = make_moons(n_samples=n, noise=noise, random_state=int(rng.integers(2**31 - 1)))
  splits = _split(rng, x.astype(np.float32), y.astype(np.int32), test_fraction, stratify=True)
  return Dataset("moons", *splits, task="binary", num_classes=2, info={"noise": noise})


def _spirals(seed: int, *, n: int = 1000, classes: int = 2, noise: float = 0.05,
             turns: float = 1.5, test_fraction: float = 0.2) -> Dataset:
  """Interleaved spirals, one arm per class.

  For class k of K and r ~ U(0.1, 1): angle = 2π (turns · r + k / K),
  x = r (cos angle, sin angle) + noise · N(0, I_2). ``n`` points, as equal per
  class as possible; class-stratified split. K = 2 is a binary task, K > 2
  multiclass.

  References:
    Lang, Witbrock, "Learning to tell two spirals apart", Connectionist Models
    Summer School 1988.
  """
  n = _int_in("n", n, 2)
  classes = _int_in("classes", classes, 2)
  noise = _real_in("noise", noise, 0.0, math.inf, high_open=True)
  turns = _real_in("turns", turns, 0.0, math.inf, low_open=True, high_open=True)
  test_fraction = _fraction("test_fraction", test_fraction)
  _num_test(n, test_fraction)
  rng = np.random.default_rng(seed)
  y = (np.arange(n) % classes).astype(np.int32)
  r = rng.uniform(0.1, 1.0, n)
  angle = 2 * np.pi * (turns * r + y / classes)
  x = r[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
  x = (x + noise * rng.standard_normal((n, 2))).astype(np.float32)
  splits = _split(rng, x, y, test_fraction, stratify=True)
  task = "binary" if classes == 2 else "multiclass"
  return Dataset("spirals", *splits, task=task, num_classes=classes,
                 info={"noise": noise, "turns": turns})


# --------------------------------------------------------------------------- user files


def _file(seed: int, *, path: str | os.PathLike | None = None, task: str | None = None,
          num_classes: int | None = None) -> Dataset:
  """A user's ``.npz`` or HDF5 file with ``x_train, y_train, x_test, y_test``.

  Inputs become float32 (a 1-D x is read as ``(n, 1)``); ``y`` of shape
  ``(n, 1)`` is flattened. Without ``task``: integer or bool labels all in
  {0, 1} are ``binary``, other integer labels ``multiclass`` with
  ``num_classes = max label + 1`` (unless given), float targets ``regression``.
  A given ``task="binary"``/``"multiclass"`` accepts integral float labels.
  HDF5 files are read by :func:`landscape.io.read_arrays` (io owns h5py).
  """
  del seed  # the file fixes the split
  if path is None:
    raise ConfigError("dataset 'file' needs path=FILE (a .npz, .h5 or .hdf5 file with "
                      f"{', '.join(FILE_KEYS)})")
  if task is not None and task not in TASKS:
    raise unknown_name("task", task, TASKS)
  path = os.fspath(path)
  arrays = _read_user_file(path)
  x_train, x_test = (_user_x(path, k, arrays[k]) for k in ("x_train", "x_test"))
  y_train, y_test = (_user_y(path, k, arrays[k]) for k in ("y_train", "y_test"))
  _check_arrays(path, x_train, y_train, x_test, y_test)
  task = task or _infer_task(y_train, y_test)
  if task == "regression":
    y_train, y_test = y_train.astype(np.float32), y_test.astype(np.float32)
  else:
    y_train, y_test = (_user_labels(path, k, y, task)
                       for k, y in (("y_train", y_train), ("y_test", y_test)))
    if task == "binary" and num_classes is None:
      num_classes = 2
    elif num_classes is None:
      num_classes = int(max(y_train.max(), y_test.max())) + 1
  return Dataset("file", x_train, y_train, x_test, y_test, task=task, num_classes=num_classes,
                 info={"path": path})


def _read_user_file(path: str) -> dict[str, np.ndarray]:
  """The four arrays of a ``.npz`` (numpy) or ``.h5``/``.hdf5`` (landscape.io) file."""
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in FILE_SUFFIXES:
    raise DataError(f"cannot read {path!r}: unknown file type {suffix or '(none)'!r}; "
                    f"pass a {', '.join(FILE_SUFFIXES)} file")
  if not os.path.isfile(path):
    raise DataError(f"data file {path!r} not found; pass the path of an existing "
                    f"{', '.join(FILE_SUFFIXES)} file")
  if suffix != ".npz":
    from landscape.io import read_arrays
    try:
      return read_arrays(path, FILE_KEYS)
    except DataError as e:
      raise DataError(f"{e} (a data file needs {', '.join(FILE_KEYS)})") from None
  try:
    with np.load(path, allow_pickle=False) as npz:
      missing = [k for k in FILE_KEYS if k not in npz.files]
      if missing:
        raise DataError(f"{path!r} lacks key(s) {', '.join(missing)}; a data file needs "
                        f"{', '.join(FILE_KEYS)} (it has {', '.join(npz.files) or 'none'})")
      return {k: npz[k] for k in FILE_KEYS}
  except DataError:
    raise
  except (OSError, ValueError, EOFError) as e:
    raise DataError(f"cannot read {path!r} as .npz ({type(e).__name__}: {e}); "
                    "write it with numpy.savez") from e


def _user_x(path: str, key: str, x: np.ndarray) -> np.ndarray:
  x = np.asarray(x)
  if x.dtype.kind not in "biuf":
    raise DataError(f"{path!r}: {key} has dtype {x.dtype}; inputs must be numeric")
  x = x.astype(np.float32)
  if x.ndim == 1:
    x = x[:, None]
  if not np.all(np.isfinite(x)):
    raise DataError(f"{path!r}: {key} holds {int(np.sum(~np.isfinite(x)))} NaN/inf values; "
                    "clean or drop those samples")
  return x


def _user_y(path: str, key: str, y: np.ndarray) -> np.ndarray:
  y = np.asarray(y)
  if y.ndim == 2 and y.shape[1] == 1:
    y = y[:, 0]
  if y.dtype.kind not in "biuf":
    raise DataError(f"{path!r}: {key} has dtype {y.dtype}; targets must be numeric")
  if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
    raise DataError(f"{path!r}: {key} holds {int(np.sum(~np.isfinite(y)))} NaN/inf values; "
                    "clean or drop those samples")
  return y


def _infer_task(y_train: np.ndarray, y_test: np.ndarray) -> str:
  """binary for integer labels in {0, 1}, multiclass for other integers, else regression."""
  if y_train.dtype.kind not in "biu" or y_test.dtype.kind not in "biu":
    return "regression"
  labels = np.union1d(y_train, y_test)
  return "binary" if np.all(np.isin(labels, (0, 1))) else "multiclass"


def _user_labels(path: str, key: str, y: np.ndarray, task: str) -> np.ndarray:
  """int32 class labels; DataError for non-integral or out-of-range values."""
  if y.dtype.kind == "f" and not np.all(y == np.round(y)):
    raise DataError(f"{path!r}: {key} has non-integer values (e.g. {y[y != np.round(y)][0]}) "
                    f"but task={task!r} needs class labels; pass task='regression'")
  if y.min() < 0:
    raise DataError(f"{path!r}: {key} has negative label {y.min()}; class labels must be "
                    "0..num_classes-1")
  if task == "binary" and y.max() > 1:
    raise DataError(f"{path!r}: {key} has label {y.max()} but task='binary' needs labels in "
                    "{0, 1}; pass task='multiclass'")
  return y.astype(np.int32)


# --------------------------------------------------------------------------- registry

_LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": _digits,
    "mnist1d": _mnist1d,
    "fashion_mnist": _fashion_mnist,
    "regression_outliers": _regression_outliers,
    "imbalanced_binary": _imbalanced_binary,
    "moons": _moons,
    "spirals": _spirals,
    "file": _file,
}

__all__ = ["Dataset", "FASHION_MNIST_DIRS", "FILE_KEYS", "TASKS", "load", "names", "read_idx"]
