"""Flax NNX models through landscape: the same MLP written in Linen and in NNX, with the same
weights, gives the same surfaces, eigenvalues and training histories; BatchNorm modes."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from landscape import directions, hessian, losses, objective, surface, train
from landscape.models.nnx import NNXModule

D, W, C, N = 6, 8, 3, 48


class LinenNet(nn.Module):
  batchnorm: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.Dense(W, name="hidden")(x)
    if self.batchnorm:
      h = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="norm")(h)
    return nn.Dense(C, name="out")(jnp.tanh(h))


class NNXNet(nnx.Module):
  def __init__(self, batchnorm: bool, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(D, W, rngs=rngs)
    self.norm = nnx.BatchNorm(W, momentum=0.9, rngs=rngs) if batchnorm else None
    self.out = nnx.Linear(W, C, rngs=rngs)

  def __call__(self, x):
    h = self.hidden(x)
    if self.norm is not None:
      h = self.norm(h)
    return self.out(jnp.tanh(h))


@pytest.fixture(scope="module")
def data():
  k1, k2 = jax.random.split(jax.random.key(0))
  x = jax.random.normal(k1, (N, D))
  y = jax.random.randint(k2, (N,), 0, C)
  return x, y


def _pair(batchnorm: bool, x):
  """(linen module, nnx adapter, shared variables): the NNX model carries the Linen weights."""
  linen = LinenNet(batchnorm)
  variables = dict(linen.init(jax.random.key(1), x[:2], False))
  adapter = NNXModule(NNXNet(batchnorm, rngs=nnx.Rngs(7)))
  nnx_vars = adapter.init(jax.random.key(0), x[:2])
  # same names, same shapes: the Linen variables are valid NNX variables
  assert jax.tree.structure(nnx_vars) == jax.tree.structure(variables)
  assert jax.tree.map(jnp.shape, nnx_vars) == jax.tree.map(jnp.shape, variables)
  return linen, adapter, variables


@pytest.mark.parametrize("batchnorm", [False, True])
def test_outputs_and_train_mode_updates_agree(data, batchnorm):
  x, _ = data
  linen, adapter, variables = _pair(batchnorm, x)
  np.testing.assert_allclose(adapter.apply(variables, x, False), linen.apply(variables, x, False),
                             rtol=1e-6, atol=1e-6)
  if batchnorm:
    out_l, upd_l = linen.apply(variables, x, True, mutable=["batch_stats"])
    out_n, upd_n = adapter.apply(variables, x, True, mutable=["batch_stats"])
    np.testing.assert_allclose(out_n, out_l, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 upd_n, upd_l)
    assert adapter.bn_momentum == 0.9


@pytest.mark.parametrize("bn_mode", ["eval", "states", "recompute"])
def test_surfaces_and_eigenvalues_agree_in_every_bn_mode(data, bn_mode):
  x, y = data
  linen, adapter, variables = _pair(True, x)
  ce = losses.get("cross_entropy")
  kw = dict(task="multiclass", bn_mode=bn_mode, l2=1e-3, bn_data=x, bn_samples=N)
  obj_l = objective.build(linen, variables, ce, **kw)
  obj_n = objective.build(adapter, variables, ce, **kw)
  dirs = directions.random_plane(jax.random.key(3), obj_l.params, norm="filter",
                                 ignore="biasbn")
  xs = np.linspace(-1, 1, 5)
  s_l = surface.evaluate(obj_l.loss_fn, obj_l.params, dirs, xs, xs, data=(x, y),
                         metrics=obj_l.metrics)
  s_n = surface.evaluate(obj_n.loss_fn, obj_n.params, dirs, xs, xs, data=(x, y),
                         metrics=obj_n.metrics)
  for field in ("loss", "acc"):
    np.testing.assert_allclose(s_n.values[field], s_l.values[field], rtol=2e-5, atol=1e-5)
  if bn_mode == "recompute":   # the statistics are re-estimated, not the stored ones
    assert not np.allclose(s_l.values["loss"],
                           surface.evaluate(objective.build(linen, variables, ce, task="multiclass",
                                                            l2=1e-3).loss_fn,
                                            obj_l.params, dirs, xs, xs, data=(x, y)
                                            ).values["loss"])
  e_l = hessian.eigenvalues(obj_l.loss_fn, obj_l.params, (x, y), k=2, which="both",
                            key=jax.random.key(4))
  e_n = hessian.eigenvalues(obj_n.loss_fn, obj_n.params, (x, y), k=2, which="both",
                            key=jax.random.key(4))
  for a, b in zip(e_n, e_l):
    np.testing.assert_allclose(a.values, b.values, rtol=1e-4, atol=1e-5)


def test_training_histories_agree(data):
  x, y = data
  linen, adapter, variables = _pair(True, x)
  kw = dict(task="multiclass", x_train=np.asarray(x[:40]), y_train=np.asarray(y[:40]),
            x_test=np.asarray(x[40:]), y_test=np.asarray(y[40:]), tx=optax.sgd(0.1, 0.9),
            epochs=3, batch_size=8, seed=2, log=lambda _: None)
  r_l = train.train(linen, variables, losses.get("cross_entropy"), **kw)
  r_n = train.train(adapter, variables, losses.get("cross_entropy"), **kw)
  assert len(r_l.history) == len(r_n.history) == 4
  for a, b in zip(r_n.history, r_l.history):
    for key in ("train_loss", "test_loss", "train_acc", "test_acc"):
      np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               r_n.variables, r_l.variables)


def test_from_nnx_wraps_a_model_without_changing_it(data):
  x, y = data
  model = NNXNet(False, rngs=nnx.Rngs(0))
  before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  obj = objective.from_nnx(model, losses.get("cross_entropy"), task="multiclass")
  np.testing.assert_allclose(obj.loss_fn(obj.params, (x, y)),
                             jnp.mean(losses.get("cross_entropy")(model(x), y)), rtol=1e-6)
  moved = jax.tree.map(lambda a: a + 1.0, obj.params)
  assert float(obj.loss_fn(moved, (x, y))) != float(obj.loss_fn(obj.params, (x, y)))
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(model, nnx.Param)), before)
  top = hessian.eigenvalues(obj.loss_fn, obj.params, (x, y), k=1, key=jax.random.key(0),
                            operator="ggn")
  assert float(top.values[0]) > 0
