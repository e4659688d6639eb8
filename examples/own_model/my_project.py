"""A user's own model, loss and dataset, named in a landscape config by import path.

``config.yaml`` beside this file says ``model.name: my_project:make_model``,
``loss.name: my_project:smooth_ce`` and ``data.name: my_project:blobs``; landscape finds
this module because it sits in the config's directory.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class TwoLayerNet(nnx.Module):
  """An MLP written with Flax NNX, with BatchNorm between its layers."""

  def __init__(self, din: int, width: int, dout: int, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(din, width, rngs=rngs)
    self.norm = nnx.BatchNorm(width, momentum=0.9, rngs=rngs)
    self.out = nnx.Linear(width, dout, rngs=rngs)

  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    return self.out(jax.nn.gelu(self.norm(self.hidden(x))))


def make_model(num_outputs: int, width: int = 32, *, rngs: nnx.Rngs) -> TwoLayerNet:
  """The model factory: landscape passes num_outputs (from the data) and rngs (train.seed)."""
  return TwoLayerNet(2, width, num_outputs, rngs=rngs)


class LinenTwoLayerNet(nn.Module):
  """The same network in Flax Linen: called as module.apply(variables, x, train)."""
  width: int
  num_outputs: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape(x.shape[0], -1)
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="norm")(
        nn.Dense(self.width, name="hidden")(x))
    return nn.Dense(self.num_outputs, name="out")(jax.nn.gelu(h))


def make_linen_model(num_outputs: int, width: int = 32) -> LinenTwoLayerNet:
  """A Linen model factory (landscape initializes it from train.seed)."""
  return LinenTwoLayerNet(width, num_outputs)


def smooth_ce(logits, labels, smoothing: float = 0.05):
  """Per-example cross-entropy with label smoothing, shape (n,)."""
  logp = jax.nn.log_softmax(logits)
  k = logits.shape[-1]
  target = jax.nn.one_hot(labels, k) * (1 - smoothing) + smoothing / k
  return -jnp.sum(target * logp, axis=-1)


smooth_ce.task = "multiclass"   # what accuracy means and which datasets it fits


def blobs(seed: int = 0, n: int = 600, classes: int = 3, spread: float = 0.6):
  """Gaussian blobs around the vertices of a regular polygon: the user's own dataset."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, classes, n)
  angle = 2 * np.pi * y / classes
  x = np.stack([np.cos(angle), np.sin(angle)], 1) + spread * rng.normal(size=(n, 2))
  cut = int(0.8 * n)
  return {"x_train": x[:cut].astype(np.float32), "y_train": y[:cut],
          "x_test": x[cut:].astype(np.float32), "y_test": y[cut:], "task": "multiclass"}
