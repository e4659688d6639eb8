"""Li et al. (2018), Figs. 5 and 7: ResNet-20 with and without skip connections.

Trains both networks (configs/resnet20_skip.yaml, configs/resnet20_noskip.yaml) with
landscape.pipeline, sweeps a filter-normalized random plane around each trained model
(BatchNorm in eval mode, biases and BN parameters not perturbed), probes the Hessian at the
centre and at every grid point (the curvature map, Lanczos per point) and draws

  contours.{pdf,png}    the two train-loss contour plots side by side (Fig. 5)
  eig_ratio.{pdf,png}   the two convexity maps |lambda_min / lambda_max| side by side (Fig. 7)

Sizes:
  default   CPU: digits (8x8), the configs' 10 epochs, 11x11 grid, curvature map on it
            (a coarse one: 8 Lanczos steps per point on 64 training samples)
  --tiny    smoke test: 1 epoch, 100 training samples, ResNet-8 of width 4 without
            BatchNorm, 5x5 grid, Hessian probes on 10 samples
  --paper   ResNet-56, 300 epochs, 51x51 grid and map on all training samples, top-5 and
            bottom-5 eigenvalues, trace and spectral density at the centre (GPU-sized);
            the paper used CIFAR-10: --set data.name=file --set data.path=cifar10.npz

Results (under --out, default results/figures/fig_skip_vs_noskip/): skip/ and noskip/ are
run directories; their landscape.h5 holds the surface, hessian/ and max_eig/min_eig, so
`landscape plot OUT/skip/landscape.h5` redraws every panel; summary.json the key numbers.

Reference: Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural
Nets", NeurIPS 2018.
"""

from __future__ import annotations

from matplotlib.figure import Figure

import _figures
from landscape import io, pipeline, plotting

VARIANTS = {"skip": ("resnet20_skip.yaml", "ResNet-{depth}"),
            "noskip": ("resnet20_noskip.yaml", "ResNet-{depth}-noshort")}

SIZES = {
    # ResNet-8 of width 4 without BatchNorm: a smaller graph compiles in a third of the time.
    "tiny": ["train.epochs=1", "data.n_train=100", "data.n_test=50", "train.batch_size=50",
             "model.kwargs.depth=8", "model.kwargs.width=4", "model.kwargs.batchnorm=false",
             'surface.x="-1:1:5"', 'surface.y="-1:1:5"', "surface.batch_size=100",
             "hessian.num_steps=10", "hessian.map_steps=3", "hessian.n_samples=10",
             "hessian.batch_size=10"],
    # The curvature map costs map_steps HVPs per grid point; convolution gradients are slow
    # on a CPU (~2 s per ResNet-20 HVP on 256 samples), so the default map is a coarse one.
    "default": ['surface.x="-1:1:11"', 'surface.y="-1:1:11"', "hessian.n_samples=64",
                "hessian.batch_size=64", "hessian.map_steps=8"],
    "paper": ["model.kwargs.depth=56", "train.epochs=300", 'surface.x="-1:1:51"',
              'surface.y="-1:1:51"'],
}
# Hessian probes at the centre: k per end, and whether to add the trace and the density.
PROBES = {"tiny": dict(k=1, trace=False, density=False),
          "default": dict(k=1, trace=False, density=False),
          "paper": dict(k=5, trace=True, density=True)}


def run_variant(name: str, size: str, args) -> tuple[str, io.Result]:
  """Train, sweep and probe one network; (its panel title, its result file)."""
  config, title = VARIANTS[name]
  run_dir = args.out / name
  path = _figures.train_and_sweep(_figures.CONFIGS / config, SIZES[size] + args.overrides,
                                  run_dir, overwrite=args.overwrite)
  pipeline.run_hessian(path, run_dir=run_dir, which="both", curvature=True, **PROBES[size])
  result = io.load(path)
  depth = result.attrs["config"]["model"]["kwargs"].get("depth", 20)
  return title.format(depth=depth), result


def draw(results: dict[str, tuple[str, io.Result]], args) -> None:
  fmts = _figures.formats(args)
  with plotting.use_style():
    fig = Figure(figsize=plotting.figure_size(2, aspect=0.45), layout="constrained")
    for ax, (title, res) in zip(fig.subplots(1, 2), results.values()):
      plotting.plot_contour(ax, res)
      ax.set_title(title)
    _figures.save(fig, args.out, "contours", fmts)
    fig = Figure(figsize=plotting.figure_size(2, aspect=0.45), layout="constrained")
    for ax, (title, res) in zip(fig.subplots(1, 2), results.values()):
      plotting.plot_eig_ratio(ax, res)
      ax.set_title(title)
    _figures.save(fig, args.out, "eig_ratio", fmts)


def main() -> None:
  args = _figures.parser("fig_skip_vs_noskip", __doc__).parse_args()
  size = _figures.size_of(args)
  results = {name: run_variant(name, size, args) for name in VARIANTS}
  draw(results, args)
  summary = {}
  for name, (title, res) in results.items():
    hess = res.groups["hessian"]
    summary[name] = {
        "title": title, "trained_train_loss": _figures.final_train_loss(args.out / name),
        "surface_at_origin": _figures.at_origin(res),
        "lambda_max": float(hess["eigenvalues_largest"][0]),
        "lambda_min": float(hess["eigenvalues_smallest"][0]),
        "max_eig_at_origin": _figures.at_origin(res, "max_eig"),
        "min_eig_at_origin": _figures.at_origin(res, "min_eig")}
  _figures.write_summary(args.out, summary)


if __name__ == "__main__":
  _figures.run(main)
