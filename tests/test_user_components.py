"""A user's own model, loss and data: import paths in configs, register(), the example in
examples/own_model run end to end (NNX and Linen), and every contract violation as one line."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

from landscape import data, losses, models

from cli_helpers import assert_user_error, cli, ok

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own_model"
SMALL = ["--set", "train.epochs=2", "--set", "surface.x=-1:1:5", "--set", "surface.y=-1:1:5",
         "--set", "hessian.operators=[hessian,ggn]", "--set", "hessian.density_steps=10",
         "--set", "hessian.trace_samples=9", "--set", "data.kwargs.n=300"]


@pytest.mark.parametrize("config", ["config.yaml", "config_linen.yaml"])
def test_the_example_runs_end_to_end(tmp_path, config):
  out = tmp_path / "run"
  text = ok("run", "--config", EXAMPLE / config, "--out", out, *SMALL)
  assert "my_project:blobs" in text and "figure files" in text
  with open(out / "history.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 3   # epochs 0, 1, 2: training lowers the user's loss on the user's data
  assert float(rows[-1]["train_loss"]) < 0.9 * float(rows[0]["train_loss"])
  with h5py.File(out / "landscape.h5", "r") as f:
    assert f["train_loss"].shape == (5, 5) and np.isfinite(f["train_loss"][()]).all()
    assert "ggn" in f["hessian"] and f["hessian/eigenvalues_largest"].shape == (3,)
    stored = json.loads(f.attrs["config"])
  assert stored["model"]["name"].startswith("my_project:")
  assert sorted(p.name for p in (out / "figures").glob("*.pdf"))
  # a later command in another process finds the module through the run's config
  assert str(EXAMPLE) in (out / "config.yaml").read_text()
  ok("hessian", "--run", out, "--operator", "fisher", "--no-density", "--no-trace", "--k", "1")
  if config == "config.yaml":   # the NNX model through the other stages too
    ok("surface", "--run", out, "--direction", "pca", "--x=-1:1:3", "--y=-1:1:3", "--out",
       out / "pca.h5")
    text = ok("critical", "--run", out, "--starts", "1", "--set", "critical.max_steps=3")
    assert "distinct points" in text
    with h5py.File(out / "pca.h5", "r") as f:
      assert np.isfinite(f["train_loss"][()]).all() and f.attrs["direction_kind"] == "pca"


def _module(tmp_path: Path, body: str) -> Path:
  (tmp_path / "userlib.py").write_text(textwrap.dedent(body))
  return tmp_path


BODY = """
    import numpy as np
    import flax.linen as nn

    def loader(seed=0):
      rng = np.random.default_rng(seed)
      x = rng.normal(size=(40, 3)).astype(np.float32)
      y = (x[:, 0] > 0).astype(np.int32)
      return {"x_train": x[:30], "y_train": y[:30], "x_test": x[30:], "y_test": y[30:]}

    def bad_loader(seed=0):
      return [1, 2, 3]

    def model(num_outputs):
      return nn.Dense(num_outputs)

    def not_a_model(num_outputs):
      return 42

    def strict_model(width):
      return nn.Dense(width)

    def loss(outputs, targets):
      import jax.numpy as jnp
      return jnp.logaddexp(0.0, -(2 * targets - 1) * outputs[:, 0])
    loss.task = "binary"

    def scalar_loss(outputs, targets):
      return (outputs ** 2).mean()
    scalar_loss.task = "binary"

    def untasked(outputs, targets):
      return outputs[:, 0]

    VALUE = 3
"""


def _config(tmp_path: Path, **names) -> Path:
  cfg = {"data": {"name": "userlib:loader"}, "model": {"name": "userlib:model", "kwargs": {}},
         "loss": {"name": "userlib:loss"}, "train": {"epochs": 1, "batch_size": 10},
         "surface": {"x": "-1:1:3", "y": None}, "hessian": {"enabled": False}}
  for section, name in names.items():
    cfg[section]["name"] = name
  path = tmp_path / "cfg.yaml"
  path.write_text(json.dumps(cfg))
  return path


def test_a_user_module_beside_the_config_trains(tmp_path):
  _module(tmp_path, BODY)
  out = ok("train", "--config", _config(tmp_path), "--out", tmp_path / "run")
  assert "userlib:model" in out


@pytest.mark.parametrize("names,mentions", [
    ({"model": "nowhere:model"}, ["model.name 'nowhere:model'", "cannot import 'nowhere'",
                                  "beside the config"]),
    ({"model": "userlib:missing"}, ["model.name 'userlib:missing'", "no attribute 'missing'",
                                    "model factory"]),
    ({"model": "userlib:VALUE"}, ["'userlib:VALUE' is a int, not callable"]),
    ({"model": "userlib:not_a_model"}, ["returned a int", "flax.linen.Module"]),
    ({"model": "userlib:strict_model"}, ["cannot be called with", "num_outputs"]),
    ({"loss": "userlib:untasked"}, ["declares no task", "untasked.task = "]),
    ({"loss": "userlib:scalar_loss"}, ["'userlib:scalar_loss' returned shape ()",
                                       "must return shape"]),
    ({"data": "userlib:bad_loader"}, ["returned list", "x_train, y_train, x_test, y_test"]),
])
def test_contract_violations_are_one_line(tmp_path, names, mentions):
  _module(tmp_path, BODY)
  rc, _, err = cli("train", "--config", _config(tmp_path, **names), "--out", tmp_path / "r")
  assert_user_error(rc, err, *mentions)
  assert not (tmp_path / "r").exists()


def test_register_gives_short_names(monkeypatch):
  # the registries are process-wide: this test's names go away with it
  monkeypatch.setattr(losses, "_REGISTRY", dict(losses._REGISTRY))
  monkeypatch.setattr(models, "_USER", dict(models._USER))
  monkeypatch.setattr(data, "_USER", dict(data._USER))
  losses.register("test_sq", lambda o, t, scale=1.0: scale * jnp.sum((o - t[:, None]) ** 2, -1),
                  task="regression", defaults={"scale": 1.0})
  fn = losses.get("test_sq", scale=2.0)
  assert float(fn(jnp.ones((2, 1)), jnp.zeros(2))[0]) == 2.0
  assert losses.task("test_sq") == "regression" and "test_sq" in losses.names()
  with pytest.raises(Exception, match="no hyperparameter 'nope'"):
    losses.get("test_sq", nope=1.0)
  with pytest.raises(Exception, match="built in"):
    losses.register("mse", lambda o, t: o, task="regression")
  models.register("test_dense", lambda num_outputs: __import__("flax.linen").linen.Dense(
      num_outputs))
  assert "test_dense" in models.names()
  assert models.get("test_dense", num_outputs=3).inner.features == 3   # called as dense(x)
  data.register("test_xor", lambda seed=0: {
      "x_train": np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 3, np.float32),
      "y_train": np.array([0, 1, 1, 0] * 3), "x_test": np.zeros((2, 2), np.float32),
      "y_test": np.array([0, 1])})
  ds = data.load("test_xor", n_train=8)
  assert ds.task == "binary" and ds.x_train.shape == (8, 2) and "test_xor" in data.names()
