"""Tests of landscape.config: YAML round trips, the embedded default, the shipped configs,
``--set`` overrides, ``min:max:num`` ranges, and task/loss agreement in pipeline.prepare."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from landscape import config, data, losses, models, pipeline
from landscape.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
DEFAULT = config.Config()


def _round_trip(cfg: config.Config, tmp_path: Path) -> config.Config:
  path = tmp_path / "cfg.yaml"
  config.dump(cfg, path)
  return config.load(path)


def _one_line_error(fn, *args) -> str:
  with pytest.raises(ConfigError) as err:
    fn(*args)
  msg = str(err.value)
  assert msg and "\n" not in msg
  return msg


# ----------------------------------------------------------------------- YAML in and out

def test_default_yaml_is_the_embedded_default():
  path = next(p for p in CONFIGS if p.name == "default.yaml")
  assert config.load(path) == DEFAULT
  assert config.to_dict(config.load(path)) == config.to_dict(DEFAULT)
  assert yaml.safe_load(path.read_text()) == config.to_dict(DEFAULT)
  assert pipeline.resolve(None) == DEFAULT and pipeline.resolve(str(path)) == DEFAULT


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_loads_and_names_valid_parts(path, tmp_path):
  cfg = config.load(path)
  assert cfg.name == path.stem
  assert _round_trip(cfg, tmp_path) == cfg
  ds = data.load(cfg.data.name, seed=cfg.data.seed, **dict(cfg.data.kwargs))
  assert losses.task(cfg.loss.name) == ds.task
  losses.get(cfg.loss.name, **dict(cfg.loss.kwargs))
  models.get(cfg.model.name, num_outputs=ds.num_outputs, **dict(cfg.model.kwargs))
  for grid in (cfg.surface.x, cfg.surface.y):
    if grid:
      assert config.grid(grid).size >= 3
  assert cfg.train.batch_size <= len(ds.x_train)


_SAFE = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
_TRICKY = st.sampled_from(["1e3", "-1:1:51", "1:30", "01", "0x10", "yes", "no", "null", "~",
                           "true", ".inf", "3", "-2.5", "", " x ", "a: b", "#c", "[1]"])
_STRINGS = _TRICKY | _SAFE
_FLOATS = st.floats(allow_nan=False, allow_infinity=False)


@given(name=_STRINGS, data_name=_STRINGS, epochs=st.integers(0, 10**6), lr=_FLOATS,
       n_train=st.none() | st.integers(1, 10**6), y=st.none() | _STRINGS,
       splits=st.lists(_STRINGS, max_size=3), kwargs=st.dictionaries(
           st.sampled_from(["features", "dense", "act", "1e3"]),
           st.integers() | _FLOATS | _STRINGS | st.lists(st.integers(1, 64), max_size=3),
           max_size=3))
def test_yaml_round_trip(name, data_name, epochs, lr, n_train, y, splits, kwargs):
  """dump then load gives the same config, also read back by a plain ``yaml.safe_load``
  (every string a YAML 1.1 or 1.2 reader would take for a number or a null is quoted)."""
  cfg = dataclasses.replace(
      DEFAULT, name=name,
      data=dataclasses.replace(DEFAULT.data, name=data_name, n_train=n_train),
      model=dataclasses.replace(DEFAULT.model, kwargs=kwargs),
      train=dataclasses.replace(DEFAULT.train, epochs=epochs, lr=lr),
      surface=dataclasses.replace(DEFAULT.surface, y=y, splits=tuple(splits)))
  text = yaml.dump(config.to_dict(cfg), Dumper=config._Dumper, sort_keys=False)
  assert config._yaml_load(text) == config.to_dict(cfg)
  assert config.from_dict(config._yaml_load(text)) == cfg
  assert config.from_dict(yaml.safe_load(text)) == cfg


def test_dump_load_round_trip_of_files(tmp_path):
  cfg = config.apply_overrides(DEFAULT, ["train.lr=1e-4", "surface.x=-2:2:41",
                                         "surface.y=null", "model.kwargs.features=[8, 8]"])
  assert _round_trip(cfg, tmp_path) == cfg
  assert _round_trip(DEFAULT, tmp_path) == DEFAULT


@pytest.mark.parametrize("text, problem", [
    ("train: {epoch: 5}\n", "'train.epoch'"),
    ("trian: {epochs: 5}\n", "'trian'"),
    ("train: {epochs: ten}\n", "train.epochs must be an integer, got 'ten'"),
    ("train: {lr: fast}\n", "train.lr must be a number, got 'fast'"),
    ("train: {nesterov: 2}\n", "train.nesterov must be true or false, got 2"),
    ("surface: {splits: 3}\n", "surface.splits must be a list, got 3"),
    ("model: {kwargs: [1, 2]}\n", "model.kwargs must be a mapping"),
    ("train: 5\n", "train must be a mapping, got 5"),
    ("- a\n- b\n", "config must be a mapping"),
    ("train: {epochs: [}\n", "not valid YAML"),
])
def test_bad_config_files_raise_one_line_errors(tmp_path, text, problem):
  path = tmp_path / "bad.yaml"
  path.write_text(text)
  assert problem in _one_line_error(config.load, path)


def test_unknown_keys_list_the_valid_ones(tmp_path):
  path = tmp_path / "bad.yaml"
  path.write_text("train: {epoch: 5}\n")
  msg = _one_line_error(config.load, path)
  assert all(f.name in msg for f in dataclasses.fields(config.TrainConfig))
  path.write_text("trian: {}\n")
  msg = _one_line_error(config.load, path)
  assert all(f.name in msg for f in dataclasses.fields(config.Config))
  msg = _one_line_error(config.load, tmp_path / "missing.yaml")
  assert "missing.yaml" in msg


def test_an_empty_file_is_the_default(tmp_path):
  path = tmp_path / "empty.yaml"
  path.write_text("# nothing\n")
  assert config.load(path) == DEFAULT


# ----------------------------------------------------------------------- overrides

@pytest.mark.parametrize("overrides, get, want", [
    (["train.epochs=5"], lambda c: c.train.epochs, 5),
    (["train.epochs=5", "train.epochs=7"], lambda c: c.train.epochs, 7),
    (["model.kwargs.features=[8,8]"], lambda c: dict(c.model.kwargs),
     {"features": [8, 8], "dense": 64}),
    (["loss.kwargs.label_smoothing=0.1"], lambda c: dict(c.loss.kwargs),
     {"label_smoothing": 0.1}),
    (["data.n_train=100", "data.n_train=null"], lambda c: c.data.n_train, None),
    (["data.n_train="], lambda c: c.data.n_train, None),
    (["surface.y=null"], lambda c: c.surface.y, None),
    (["surface.ignore=null"], lambda c: c.surface.ignore, None),
    (["train.lr=1e-3"], lambda c: c.train.lr, 1e-3),
    (["train.lr=2"], lambda c: c.train.lr, 2.0),
    (["surface.x=-1:1:51"], lambda c: c.surface.x, "-1:1:51"),
    (["surface.x=1:2:3"], lambda c: c.surface.x, "1:2:3"),
    (["surface.splits=[train]"], lambda c: c.surface.splits, ("train",)),
    (["surface.splits=train,test"], lambda c: c.surface.splits, ("train", "test")),
    (["train.nesterov=true"], lambda c: c.train.nesterov, True),
    (["name=my run"], lambda c: c.name, "my run"),
    (["data.path=/a=b.npz"], lambda c: c.data.path, "/a=b.npz"),
])
def test_overrides(overrides, get, want):
  cfg = config.apply_overrides(DEFAULT, overrides)
  got = get(cfg)
  assert got == want and type(got) is type(want)
  assert pipeline.resolve(None, overrides) == cfg
  assert DEFAULT == config.Config()                  # the default is not modified


@given(epochs=st.integers(0, 10**9), lr=_FLOATS)
@example(epochs=3, lr=1e-05)
@example(epochs=0, lr=-2.5e+300)
def test_numeric_overrides_parse_exactly(epochs, lr):
  cfg = config.apply_overrides(DEFAULT, [f"train.epochs={epochs}", f"train.lr={lr!r}"])
  assert cfg.train.epochs == epochs and cfg.train.lr == lr


@pytest.mark.parametrize("override, named", [
    ("train.epochs", "'train.epochs'"),
    ("=5", "'=5'"),
    ("train..epochs=5", "'train..epochs=5'"),
    (".epochs=5", "'.epochs=5'"),
    ("train.epoch=5", "'train.epoch'"),
    ("trian.epochs=5", "'trian'"),
    ("train.epochs=abc", "'abc'"),
    ("train.epochs=1.5", "1.5"),
    ("train.epochs=null", "None"),
    ("train.lr=fast", "'fast'"),
    ("train.lr=[1]", "[1]"),
    ("train.nesterov=maybe", "'maybe'"),
    ("surface.splits=5", "5"),
    ("model.kwargs=5", "5"),
    ("train.epochs.x=5", "'train.epochs.x=5'"),
    ("data.n_train=1.5", "1.5"),
])
def test_bad_overrides_raise_one_line_errors(override, named):
  msg = _one_line_error(config.apply_overrides, DEFAULT, [override])
  assert named in msg


def test_unknown_override_keys_list_the_valid_ones():
  msg = _one_line_error(config.apply_overrides, DEFAULT, ["train.epoch=5"])
  assert all(f.name in msg for f in dataclasses.fields(config.TrainConfig))
  msg = _one_line_error(config.apply_overrides, DEFAULT, ["trian.epochs=5"])
  assert all(f.name in msg for f in dataclasses.fields(config.Config))
  msg = _one_line_error(config.apply_overrides, DEFAULT, ["train.epochs"])
  assert "--set section.key=value" in msg


# ----------------------------------------------------------------------- ranges

@pytest.mark.parametrize("text, lo, hi, num", [
    ("-1:1:51", -1.0, 1.0, 51), ("-1:0:11", -1.0, 0.0, 11), ("0:1:2", 0.0, 1.0, 2),
    ("0.5:2:1", 0.5, 2.0, 1), ("-1:1:1", -1.0, 1.0, 1), ("-2.5:1e-1:7", -2.5, 0.1, 7),
    (" -1 : 1 : 5 ", -1.0, 1.0, 5),
])
def test_parse_range_and_grid(text, lo, hi, num):
  assert config.parse_range(text) == (lo, hi, num)
  g = config.grid(text)
  assert g.dtype == np.float64 and g.shape == (num,) and g[0] == lo
  if num > 1:
    assert g[-1] == hi and np.all(np.diff(g) > 0)
    np.testing.assert_allclose(np.diff(g), (hi - lo) / (num - 1), rtol=1e-12)


def test_a_range_ending_at_zero_hits_zero_exactly():
  g = config.grid("-1:0:11")
  assert g[-1] == 0.0 and g[0] == -1.0
  np.testing.assert_allclose(g, -1.0 + 0.1 * np.arange(11), atol=4 * np.finfo(float).eps)
  assert config.grid("-1:1:51")[25] == 0.0


@given(lo=st.floats(-1e3, 1e3), width=st.floats(1e-3, 1e3), num=st.integers(2, 200))
def test_grid_spans_min_to_max(lo, width, num):
  hi = lo + width
  g = config.grid(f"{lo!r}:{hi!r}:{num}")
  assert g.shape == (num,) and g[0] == lo and g[-1] == hi and np.all(np.diff(g) > 0)


@pytest.mark.parametrize("text", ["1:-1:5", "a:b:c", "-1:1", "0:1:0", "1:1:3", "-1:1:2.5",
                                  "nan:1:3", "-inf:1:3", "", "-1:1:51:2", "-1:1:-3"])
def test_bad_ranges_raise_one_line_errors(text):
  msg = _one_line_error(config.parse_range, text, "--x")
  assert repr(text) in msg and "--x" in msg
  _one_line_error(config.grid, text)


# ----------------------------------------------------------------------- task / loss

@pytest.mark.parametrize("base, overrides, loss, dataset, task", [
    (None, ["loss.name=mse"], "mse", "digits", "multiclass"),
    (None, ["loss.name=bce"], "bce", "digits", "multiclass"),
    ("regression_mse.yaml", ["loss.name=cross_entropy"], "cross_entropy",
     "regression_outliers", "regression"),
    ("imbalanced_bce.yaml", ["loss.name=huber"], "huber", "imbalanced_binary", "binary"),
])
def test_a_loss_for_another_task_is_refused(base, overrides, loss, dataset, task):
  path = None if base is None else str(next(p for p in CONFIGS if p.name == base))
  cfg = pipeline.resolve(path, overrides)
  msg = _one_line_error(pipeline.prepare, cfg)
  valid = [n for n in losses.names() if losses.task(n) == task]
  assert len(valid) >= 3
  assert repr(loss) in msg and repr(dataset) in msg and task in msg
  assert all(n in msg for n in valid)
