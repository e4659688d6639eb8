"""Li et al. (2018), Fig. 3 style: small-batch versus large-batch minima in 1-D.

Trains the same network on digits (an MLP 64-64, SGD with momentum 0.9, the same number of
epochs) with batch 16 (lr 0.05) and with batch 512 (lr 0.2: with 32x fewer steps it needs a
larger one to train at all), sweeps the train loss and accuracy along
one filter-normalized random direction around each trained model
(`landscape surface --1d`), computes the top Hessian eigenvalue of each (Lanczos,
`landscape hessian`) and overlays the two curves, annotated with lambda_max:

  batch_size.{pdf,png}   train loss (left) and train accuracy (right) along the direction

The small batch takes 32x more, noisier steps and ends in the flatter minimum: its
lambda_max is about a hundred times smaller at the default size (Keskar et al. 2017; Li et
al. 2018 show that filter normalization keeps this comparison meaningful).

Sizes:
  default   CPU: 100 epochs, 21 points on [-1, 1]
  --tiny    smoke test: 1 epoch, 512 training samples, 5 points
  --paper   the paper's protocol: 300 epochs, 51 points (on CIFAR-10 with a VGG-9 in the
            paper: --set data.name=file --set data.path=cifar10.npz --set model.name=vgg9)

Results (under --out, default results/figures/fig_batch_size/): batch16/ and batch512/ are
run directories whose landscape.h5 holds the 1-D sweep and hessian/eigenvalues_largest
(`landscape plot OUT/batch16/landscape.h5` draws it); summary.json the key numbers.

References: Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural
Nets", NeurIPS 2018. Keskar, Mudigere, Nocedal, Smelyanskiy, Tang, "On Large-Batch Training
for Deep Learning: Generalization Gap and Sharp Minima", ICLR 2017.
"""

from __future__ import annotations

from matplotlib.figure import Figure

import _figures
from landscape import io, pipeline, plotting

LEARNING_RATES = {16: 0.05, 512: 0.2}   # batch size -> SGD learning rate
COMMON = ["name=batch_size", "model.name=mlp", "model.kwargs={widths: [64, 64]}",
          "train.optimizer=sgd", "train.momentum=0.9", "surface.y=null",
          "hessian.batch_size=512"]
SIZES = {
    "tiny": ["train.epochs=1", "data.n_train=512", "data.n_test=100", 'surface.x="-1:1:5"'],
    "default": ["train.epochs=100", "train.save_every=10", 'surface.x="-1:1:21"'],
    "paper": ["train.epochs=300", "train.save_every=10", 'surface.x="-1:1:51"'],
}


def run_batch(batch_size: int, size: str, args) -> io.Result:
  """Train with ``batch_size``, sweep the 1-D surface, add the top eigenvalue; the result."""
  run_dir = args.out / f"batch{batch_size}"
  overrides = [*COMMON, *SIZES[size], f"train.batch_size={batch_size}",
               f"train.lr={LEARNING_RATES[batch_size]}", *args.overrides]
  path = _figures.train_and_sweep(None, overrides, run_dir, overwrite=args.overwrite)
  pipeline.run_hessian(path, run_dir=run_dir, k=1, which="largest", trace=False,
                       density=False, curvature=False)
  return io.load(path)


def draw(results: dict[int, io.Result], args) -> None:
  labels = {bs: f"batch {bs}: $\\lambda_{{\\max}}$ = "
                f"{float(r.groups['hessian']['eigenvalues_largest'][0]):.3g}"
            for bs, r in results.items()}
  with plotting.use_style():
    fig = Figure(figsize=plotting.figure_size(2, aspect=0.4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    plotting.plot_1d_overlay(ax_loss, {labels[bs]: (r.xs, r.fields["train_loss"])
                                       for bs, r in results.items()}, ylabel="train loss")
    plotting.plot_1d_overlay(ax_acc, {labels[bs]: (r.xs, r.fields["train_acc"])
                                      for bs, r in results.items()},
                             ylabel="train accuracy (%)")
    _figures.save(fig, args.out, "batch_size", _figures.formats(args))


def main() -> None:
  args = _figures.parser("fig_batch_size", __doc__).parse_args()
  size = _figures.size_of(args)
  results = {bs: run_batch(bs, size, args) for bs in LEARNING_RATES}
  draw(results, args)
  summary = {}
  for bs, res in results.items():
    summary[f"batch{bs}"] = {
        "trained_train_loss": _figures.final_train_loss(args.out / f"batch{bs}"),
        "surface_at_origin": _figures.at_origin(res),
        "lambda_max": float(res.groups["hessian"]["eigenvalues_largest"][0])}
    print(f"batch {bs:>4}: top Hessian eigenvalue {summary[f'batch{bs}']['lambda_max']:.6g}")
  _figures.write_summary(args.out, summary)


if __name__ == "__main__":
  _figures.run(main)
