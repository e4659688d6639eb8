"""A loss surface from the Python API, drawn without writing a file (as in a notebook).

Trains a small MLP on the digits for a few hundred steps with optax, sweeps the loss on a
filter-normalized random plane with ``landscape.surface.evaluate``, and draws a contour,
a heatmap and a 1-D slice straight from the returned ``Surface``::

  python examples/surface_in_a_notebook.py            # writes surface_in_a_notebook.png
  python examples/surface_in_a_notebook.py --out my.png --grid 21
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.figure import Figure

import landscape as ls


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--out", default="surface_in_a_notebook.png")
  ap.add_argument("--grid", type=int, default=11, help="points per axis")
  ap.add_argument("--steps", type=int, default=300, help="Adam steps of full-batch training")
  args = ap.parse_args(argv)

  ds = ls.data.load("digits", seed=0)
  module = ls.models.get("mlp", num_outputs=ds.num_outputs, widths=(32,))
  params = ls.models.init(module, jax.random.key(0), ds.x_train[:2])["params"]
  ce = ls.losses.get("cross_entropy")
  data = (jnp.asarray(ds.x_train), jnp.asarray(ds.y_train))

  def loss_fn(p, batch):        # any pure JAX loss: the mean over the batch
    x, y = batch
    return jnp.mean(ce(module.apply({"params": p}, x), y))

  tx = optax.adam(1e-2)
  state = tx.init(params)

  @jax.jit
  def step(p, s):
    g = jax.grad(loss_fn)(p, data)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  for _ in range(args.steps):
    params, state = step(params, state)

  dx, dy = ls.directions.random_plane(jax.random.key(1), params)
  axis = np.linspace(-1, 1, args.grid)
  plane = ls.surface.evaluate(loss_fn, params, (dx, dy), axis, axis, data, batch_size=512)
  line = ls.surface.evaluate(loss_fn, params, (dx,), np.linspace(-1, 1, 4 * args.grid), None,
                             data, batch_size=512)

  with ls.plotting.use_style():
    fig = Figure(figsize=ls.plotting.figure_size(2, aspect=0.3), layout="constrained")
    ax_c, ax_h, ax_1 = fig.subplots(1, 3)
    ls.plotting.plot_contour(ax_c, plane)
    ls.plotting.plot_heatmap(ax_h, plane)
    ls.plotting.plot_1d(ax_1, line)
    fig.savefig(args.out)
  centre = float(plane.values["loss"][args.grid // 2, args.grid // 2])
  print(f"loss at the trained point {centre:.4f}, max on the plane "
        f"{float(np.nanmax(plane.values['loss'])):.4f} -> {args.out}")
  return {"plane": plane, "line": line}


if __name__ == "__main__":
  main()
