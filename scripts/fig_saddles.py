"""Critical points of a small network: loss against index, and spectra at a minimum and a saddle.

A tanh MLP (2 -> 16 -> 16 -> 1, 337 parameters) is trained full batch on noisy two moons
with binary cross-entropy plus a small L2 penalty (0.01 * |theta|^2 / 2: the objective is then
coercive, so its critical points lie at finite parameters). Newton-MR
(landscape.critical.scan) then searches for points of zero gradient in float64 from every
saved point of the training trajectory and from random perturbations of the trained model,
and classifies each by the exact Hessian spectrum (dense eigh; index = fraction of negative
eigenvalues). The figure (Dauphin et al. 2014, Fig. 1 style):

  saddles.{pdf,png}   loss vs index of the points found; the exact Hessian spectrum at the
                      lowest-loss minimum and at the saddle of highest index

Sizes:
  default   1500 epochs, 17 starts (11 trajectory checkpoints, 6 perturbations), 21x21 surface
  --tiny    smoke test: 2 -> 8 -> 8 -> 1 (105 parameters), 300 epochs, 8 starts, 5x5 surface
  --paper   2 -> 32 -> 32 -> 1 (1185 parameters, exact index still), 3000 epochs, 63 starts

Results (under --out, default results/figures/fig_saddles/): run/ is the run directory; its
landscape.h5 holds a filter-normalized surface around the trained model and the critical/
group (coords projected on that plane, loss, grad_norm, index, kind, num_negative,
eigenvalues), so `landscape plot OUT/run/landscape.h5 --kind loss_vs_index,critical`
redraws it; summary.json the points found.

References: Dauphin, Pascanu, Gulcehre, Cho, Ganguli, Bengio, "Identifying and attacking the
saddle point problem in high-dimensional non-convex optimization", NeurIPS 2014.
Roosta, Liu, Xu, Mahoney, "Newton-MR: Inexact Newton method with minimum residual
sub-problem solver", EURO J. Comput. Optim. 2022. Frye, Simon, Wadia, Ligeralde, DeWeese,
Bouchard, "Critical point-finding methods reveal gradient-flat regions of deep network
losses", Neural Computation 2021.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

import _figures
from landscape import critical, directions, io, models, pipeline, plotting

COMMON = ["name=saddles", "data.name=moons", "data.kwargs={noise: 0.3}", "data.n_train=64",
          "data.n_test=64", "model.name=mlp", "loss.name=bce", "loss.l2=0.01",
          "train.optimizer=adam", "train.lr=0.03", "train.batch_size=64"]
SIZES = {  # (overrides, perturbed starts per scale, Newton-MR steps)
    "tiny": (["model.kwargs={widths: [8, 8], activation: tanh}", "train.epochs=300",
              "train.save_every=100", 'surface.x="-1:1:5"', 'surface.y="-1:1:5"'], 2, 60),
    "default": (["model.kwargs={widths: [16, 16], activation: tanh}", "train.epochs=1500",
                 "train.save_every=150", 'surface.x="-1:1:21"', 'surface.y="-1:1:21"'], 3, 100),
    "paper": (["model.kwargs={widths: [32, 32], activation: tanh}", "train.epochs=3000",
               "train.save_every=100", 'surface.x="-1:1:51"', 'surface.y="-1:1:51"'], 16, 200),
}
SCALES = (0.5, 1.0)   # perturbation sizes, relative to each leaf's norm
TOL = 1e-8            # gradient-norm tolerance of the float64 search
SYMLOG_LINTHRESH = 1e-4   # eigenvalue axis: linear within +-1e-4 (the flat directions)


def as_float64(tree):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def find_points(run_dir, size: str) -> tuple[list[critical.CriticalPoint], object]:
  """Newton-MR from the trajectory and perturbed starts, in float64; (points, the centre)."""
  _, per_scale, steps = SIZES[size]
  run = pipeline.open_run(run_dir)
  obj = run.objective("eval", dtype=jnp.float64)
  data = run.data("train", dtype=jnp.float64)
  starts = [as_float64(run.variables_of(epoch)["params"]) for epoch in run.checkpoints()]
  for i, scale in enumerate(SCALES):
    starts += critical.perturbations(jax.random.key(i), obj.params, num=per_scale, scale=scale)
  print(f"Newton-MR from {len(starts)} starts ({steps} steps at most, |grad| <= {TOL:g})")
  points = critical.scan(obj.loss_fn, starts, data, max_steps=steps, tol=TOL)
  for p in points:
    print(f"  {p.kind:<12} loss {p.loss:.6f}  |grad| {p.grad_norm:.1e}  index {p.index:.4f} "
          f"({p.num_negative} negative of {p.eigenvalues.size})")
  return points, obj.params


def store(path, points, centre) -> None:
  """The points as the critical/ group of the surface file, coords projected on its plane."""
  dx, dy = io.read_directions(path, centre)
  coords = [directions.coordinates(centre, as_float64(dx), as_float64(dy), p.params)
            for p in points]
  io.write_group(path, "critical", {
      "coords": np.array(coords, dtype=np.float64).reshape(-1, 2),
      "loss": np.array([p.loss for p in points]),
      "grad_norm": np.array([p.grad_norm for p in points]),
      "index": np.array([p.index for p in points]),
      "num_negative": np.array([p.num_negative for p in points]),
      "kind": [p.kind for p in points],
      "index_method": [p.index_method for p in points],
      "eigenvalues": np.array([p.eigenvalues for p in points]).reshape(
          len(points), models.num_params(centre))},
      attrs={"method": "newton_mr", "tol": TOL, "dtype": "float64"})


def spectrum_panel(ax, crit: dict, i: int | None, what: str) -> None:
  """The exact spectrum of point ``i``, ascending, on a symlog axis; negative ones in red."""
  if i is None:
    ax.text(0.5, 0.5, f"no {what} found", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return
  eigs, negative = crit["eigenvalues"][i], int(crit["num_negative"][i])
  rank = np.arange(1, eigs.size + 1)
  ax.plot(rank, eigs, ".", markersize=3, color="C2" if what == "minimum" else "C1")
  ax.plot(rank[:negative], eigs[:negative], ".", markersize=4, color="C3",
          label=f"{negative} negative")
  ax.axhline(0.0, color="0.4", linewidth=0.6)
  ax.set_yscale("symlog", linthresh=SYMLOG_LINTHRESH)
  ax.set_xlabel("rank")
  ax.set_ylabel("Hessian eigenvalue")
  ax.set_title(f"{what}: loss {crit['loss'][i]:.4f}, index {crit['index'][i]:.3f}",
               fontsize="small")
  ax.legend(fontsize="x-small", loc="upper left")


def draw(result: io.Result, args) -> None:
  crit = result.groups["critical"]
  kinds = [k.decode() if isinstance(k, bytes) else str(k) for k in crit["kind"]]
  minima = [i for i, k in enumerate(kinds) if k == "minimum"]
  saddles = [i for i, k in enumerate(kinds) if k == "saddle"]
  lowest_min = min(minima, key=lambda i: crit["loss"][i]) if minima else None
  top_saddle = max(saddles, key=lambda i: crit["index"][i]) if saddles else None
  with plotting.use_style():
    fig = Figure(figsize=plotting.figure_size(2, aspect=0.36), layout="constrained")
    ax_idx, ax_min, ax_sad = fig.subplots(1, 3)
    plotting.plot_loss_vs_index(ax_idx, crit["loss"], crit["index"], kinds)
    spectrum_panel(ax_min, crit, lowest_min, "minimum")
    spectrum_panel(ax_sad, crit, top_saddle, "saddle")
    _figures.save(fig, args.out, "saddles", _figures.formats(args))


def main() -> None:
  args = _figures.parser("fig_saddles", __doc__).parse_args()
  size = _figures.size_of(args)
  run_dir = args.out / "run"
  path = _figures.train_and_sweep(None, COMMON + SIZES[size][0] + args.overrides, run_dir,
                                  overwrite=args.overwrite)
  with jax.enable_x64(True):
    points, centre = find_points(run_dir, size)
    store(path, points, centre)
  result = io.load(path)
  draw(result, args)
  crit = result.groups["critical"]
  _figures.write_summary(args.out, {
      "trained_train_loss": _figures.final_train_loss(run_dir),
      "surface_at_origin": _figures.at_origin(result),
      "num_params": int(crit["eigenvalues"].shape[1]),
      "points": [{"kind": p.kind, "loss": p.loss, "grad_norm": p.grad_norm, "index": p.index,
                  "num_negative": p.num_negative} for p in points]})


if __name__ == "__main__":
  _figures.run(main)
