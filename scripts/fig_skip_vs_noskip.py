"""Li et al. (2018), Figs. 5 and 7: a ResNet with and without skip connections.

Trains both networks (configs/resnet20_skip.yaml, configs/resnet20_noskip.yaml, with the
size's depth and width) with landscape.pipeline and, for several random direction seeds
(surface.seed), sweeps a filter-normalized random plane around each trained model
(BatchNorm in eval mode, biases and BN parameters not perturbed) and probes the Hessian at
every grid point (the curvature map, Lanczos per point, converged to
hessian.map_tol). Per seed, landscape.grid.nonconvexity measures the central half of the
plane: the fraction of converged map points with |lambda_min/lambda_max| > 0.1
(ratio_fraction), the fraction of grid nodes where the 2-D surface is a saddle
(indefinite_fraction), and the surface's grid minima and saddles. Draws, for the first seed,

  contours.{pdf,png}    the two train-loss contour plots side by side (Fig. 5)
  eig_ratio.{pdf,png}   the two convexity maps |lambda_min / lambda_max| side by side (Fig. 7)

and prints a table of the metrics, mean +- std (and min..max) across the seeds.

Sizes:
  default   CPU: digits (8x8), ResNet-56 of width 8 with BatchNorm, 10 epochs, 3 direction
            seeds on a 9x9 grid, curvature map (at most 12 Lanczos steps per point on 32
            samples) on the first seed; about 18 min on 2 cores (scripts/README.md has the
            measured table). At ResNet-20 both nets look alike; at 56 layers they part.
  --tiny    smoke test: 1 epoch, 100 training samples, ResNet-8 of width 4 without
            BatchNorm, 5x5 grid, Hessian probes on 10 samples, 1 seed
  --paper   ResNet-56, 300 epochs, 51x51 grid and map on 512 training samples, top-5 and
            bottom-5 eigenvalues, trace and spectral density at the centre (GPU-sized);
            the paper used CIFAR-10: --set data.name=file --set data.path=cifar10.npz
  --seeds N direction seeds (default 3; --tiny 1)
  --map-seeds N  of those, the first N also get the Hessian probes and curvature map
            (default 1; --paper 3); rerun with a larger N to add maps to a finished run

Results (under --out, default results/figures/fig_skip_vs_noskip/): skip/ and noskip/ are
run directories; their landscape_seed{S}.h5 hold the surface of seed S (and, for the mapped
seeds, hessian/ and max_eig/min_eig), so `landscape plot OUT/skip/landscape_seed0.h5`
redraws every panel; summary.json the key numbers and the per-seed metrics. Every step resumes.

Reference: Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural
Nets", NeurIPS 2018.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

import _figures
from landscape import grid, io, pipeline, plotting

VARIANTS = {"skip": ("resnet20_skip.yaml", "ResNet-{depth}"),
            "noskip": ("resnet20_noskip.yaml", "ResNet-{depth}-noshort")}

SIZES = {
    # ResNet-8 of width 4 without BatchNorm: a smaller graph compiles in a third of the time.
    "tiny": ["train.epochs=1", "data.n_train=100", "data.n_test=50", "train.batch_size=50",
             "model.kwargs.depth=8", "model.kwargs.width=4", "model.kwargs.batchnorm=false",
             'surface.x="-1:1:5"', 'surface.y="-1:1:5"', "surface.batch_size=100",
             "hessian.num_steps=10", "hessian.map_steps=3", "hessian.n_samples=10",
             "hessian.batch_size=10"],
    # Chosen by measurement (scripts/README.md): at depth 20 both nets look alike; at 56 the
    # noshort net is sharp and less convex. The map is the cost (two ~1 min compiles per
    # file, ~0.12 s per HVP on 32 samples), hence a small subset and one mapped seed.
    "default": ["model.kwargs.depth=56", "model.kwargs.width=8", "train.epochs=10",
                'surface.x="-1:1:9"', 'surface.y="-1:1:9"', "hessian.n_samples=32",
                "hessian.batch_size=32", "hessian.num_steps=20", "hessian.map_steps=12"],
    "paper": ["model.kwargs.depth=56", "train.epochs=300", 'surface.x="-1:1:51"',
              'surface.y="-1:1:51"'],
}
SEEDS = {"tiny": 1, "default": 3, "paper": 3}   # --tiny: one, as every seed recompiles
# Direction seeds that also get the curvature map (the first ones). On a CPU one map of a
# ResNet-56 costs minutes (two ~1 min compiles per file, then ~10 Lanczos steps per point).
MAP_SEEDS = {"tiny": 1, "default": 1, "paper": 3}
MAP_METRICS = ("ratio_fraction", "num_converged", "num_map_points")
# Hessian probes at the centre: k per end, and whether to add the trace and the density.
PROBES = {"tiny": dict(k=1, trace=False, density=False),
          "default": dict(k=1, trace=False, density=False),
          "paper": dict(k=5, trace=True, density=True)}
# The metrics of landscape.grid.nonconvexity summarized across seeds, in table order.
METRICS = ("ratio_fraction", "indefinite_fraction", "minima", "saddles", "num_converged",
           "num_map_points", "loss_at_centre")


def run_variant(name: str, size: str, seeds: int, map_seeds: int,
                args) -> tuple[str, list[io.Result]]:
  """Train one network, then sweep it per direction seed and probe the Hessian (at the
  centre and the curvature map) on the first ``map_seeds`` of them; (title, results)."""
  config, title = VARIANTS[name]
  run_dir = args.out / name
  _figures.train_run(_figures.CONFIGS / config, SIZES[size] + args.overrides, run_dir,
                     overwrite=args.overwrite)
  results = []
  for seed in range(seeds):
    seed_set = [f"surface.seed={seed}"]
    path = pipeline.run_surface(run_dir, out=run_dir / f"landscape_seed{seed}.h5",
                                overrides=seed_set, overwrite=args.overwrite)
    res = io.load(path)
    # A file whose probes and map are complete is not probed again (a rerun with more
    # --map-seeds, or a resumed run, would otherwise recompile the centre's Lanczos).
    probed = "hessian" in res.groups and bool(res.done.get("eig_done", np.zeros(1)).all())
    if seed < map_seeds and not probed:
      pipeline.run_hessian(path, run_dir=run_dir, which="both", curvature=True,
                           overrides=seed_set, **PROBES[size])
      res = io.load(path)
    results.append(res)
  depth = results[0].attrs["config"]["model"]["kwargs"].get("depth", 20)
  return title.format(depth=depth), results


def seed_metrics(res: io.Result) -> dict:
  """``grid.nonconvexity`` of one seed's surface and map, plus the loss at the centre."""
  out = grid.nonconvexity(res).as_dict()
  out["loss_at_centre"] = _figures.at_origin(res)
  return out


def spread(values: list) -> dict:
  """Mean, standard deviation (population, ddof=0), min and max; NaN/None ignored."""
  v = np.array([np.nan if x is None else float(x) for x in values])
  v = v[np.isfinite(v)]
  if not v.size:
    return {"mean": None, "std": None, "min": None, "max": None}
  return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
          "max": float(v.max())}


def table(summary: dict) -> str:
  """The metrics per network as text: mean ± std [min..max] across the seeds."""
  def cell(s: dict, digits: int) -> str:
    if s["mean"] is None:
      return "n/a"
    return (f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} "
            f"[{s['min']:.{digits}f}..{s['max']:.{digits}f}]")
  rows = [("network", "seeds (mapped)", "ratio_fraction", "indefinite_fraction", "minima",
           "saddles", "converged/map points", "loss at centre")]
  for s in summary.values():
    m = s["metrics"]
    conv = f"{m['num_converged']['mean']:.1f}/{m['num_map_points']['mean']:.1f}"
    rows.append((s["title"], f"{len(s['seeds'])} ({len(s['map_seeds'])})",
                 cell(m["ratio_fraction"], 2),
                 cell(m["indefinite_fraction"], 2), cell(m["minima"], 1),
                 cell(m["saddles"], 1), conv, cell(m["loss_at_centre"], 3)))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines) + ("\n(mean ± std over direction seeds [min..max]; central half of "
                             "the plane; ratio_fraction: |λmin/λmax| > 0.1 at converged map "
                             "points)")


def draw(results: dict[str, tuple[str, list[io.Result]]], args) -> None:
  fmts = _figures.formats(args)
  with plotting.use_style():
    fig = Figure(figsize=plotting.figure_size(2, aspect=0.45), layout="constrained")
    for ax, (title, res) in zip(fig.subplots(1, 2), results.values()):
      plotting.plot_contour(ax, res[0])
      ax.set_title(title)
    _figures.save(fig, args.out, "contours", fmts)
    fig = Figure(figsize=plotting.figure_size(2, aspect=0.45), layout="constrained")
    for ax, (title, res) in zip(fig.subplots(1, 2), results.values()):
      plotting.plot_eig_ratio(ax, res[0])
      ax.set_title(title)
    _figures.save(fig, args.out, "eig_ratio", fmts)


def main() -> None:
  ap = _figures.parser("fig_skip_vs_noskip", __doc__)
  ap.add_argument("--seeds", type=int, default=None,
                  help="direction seeds per network (default 3; --tiny 1)")
  ap.add_argument("--map-seeds", type=int, default=None,
                  help="of those, how many also get the curvature map (default: 1 on a CPU, "
                       "3 with --paper)")
  args = ap.parse_args()
  size = _figures.size_of(args)
  seeds = SEEDS[size] if args.seeds is None else args.seeds
  if seeds < 1:
    ap.error(f"--seeds {seeds}: needs at least one direction seed")
  map_seeds = min(seeds, MAP_SEEDS[size] if args.map_seeds is None else args.map_seeds)
  if map_seeds < 1:
    ap.error(f"--map-seeds {map_seeds}: needs at least one curvature map")
  results = {name: run_variant(name, size, seeds, map_seeds, args) for name in VARIANTS}
  draw(results, args)
  summary = {}
  for name, (title, res) in results.items():
    hess = res[0].groups["hessian"]
    per_seed = [seed_metrics(r) for r in res]
    summary[name] = {
        "title": title, "trained_train_loss": _figures.final_train_loss(args.out / name),
        "surface_at_origin": _figures.at_origin(res[0]),
        "lambda_max": float(hess["eigenvalues_largest"][0]),
        "lambda_min": float(hess["eigenvalues_smallest"][0]),
        "max_eig_at_origin": _figures.at_origin(res[0], "max_eig"),
        "min_eig_at_origin": _figures.at_origin(res[0], "min_eig"),
        "seeds": list(range(seeds)), "map_seeds": list(range(map_seeds)),
        "per_seed": per_seed,
        "metrics": {k: spread([m[k] for m in (per_seed[:map_seeds] if k in MAP_METRICS
                                               else per_seed)]) for k in METRICS}}
  _figures.write_summary(args.out, summary)
  print(table(summary))


if __name__ == "__main__":
  _figures.run(main)
