"""Cohen et al. (2021), Fig. 1 style: full-batch gradient descent at the edge of stability.

Trains the same tanh MLP by full-batch gradient descent (SGD without momentum, a constant
learning rate, ``batch_size`` = the training set) at several learning rates η, on a
regression (the digit's value, standardized, from its 8x8 image; MSE loss), and tracks the
largest eigenvalue λ_max of the training loss's Hessian during training
(``train.curvature``: Lanczos every few steps, warm-started from the previous eigenvector).
λ_max first rises (progressive sharpening) until it reaches the stability threshold 2/η of
gradient descent on a quadratic, then hovers there while the loss keeps decreasing,
non-monotonically:

  edge_of_stability.{pdf,png}   λ_max against step per η, with 2/η dashed (left);
                                the training loss against step (right)

Printed (and in summary.json) per η: the mean of λ_max·η/2 over the last quarter of the
probes (about 1 at the edge of stability) and the ratio of the largest λ_max to the
initial one (progressive sharpening); HVPs per probe.

Sizes:
  default   CPU: 500 training samples, MLP 64-64, η = 0.01, 0.02, 0.04, 3000 steps, a probe
            every 5 steps (about a minute on 2 cores)
  --tiny    smoke test: 200 samples, MLP 32, η = 0.02, 0.04, 300 steps, a probe every 5
  --paper   the flags only: 5000 samples, MLP 200-200, η = 0.005, 0.01, 0.02, 0.04, 10000
            steps, every 10 (Cohen et al. use a CIFAR-10 subset of 5000: --set
            data.path=cifar5k.npz with the same regression layout)

Results (under --out, default results/figures/fig_edge_of_stability/): one run directory per
η, ``lr{η}/``, with history.csv (lambda_max per epoch = per step) and trajectory.h5
(``curvature/``: step, lambda_max, lr, probe_hvps; `landscape plot OUT/lr0.02 --kind
sharpness` draws one run), ``digits_regression.npz`` (the data), summary.json.

References: Cohen, Kaur, Li, Kolter, Talwalkar, "Gradient descent on neural networks
typically occurs at the edge of stability", ICLR 2021.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import _figures
from landscape import data, io, plotting

SIZES = {
    "tiny": {"n": 200, "widths": [32], "lrs": [0.02, 0.04], "steps": 300, "every": 5},
    "default": {"n": 500, "widths": [64, 64], "lrs": [0.01, 0.02, 0.04], "steps": 3000,
                "every": 5},
    "paper": {"n": 5000, "widths": [200, 200], "lrs": [0.005, 0.01, 0.02, 0.04],
              "steps": 10000, "every": 10},
}
N_TEST = 100


def write_data(out: Path, n: int) -> Path:
  """The digits as a regression: inputs, and the digit's value standardized (``.npz``)."""
  path = out / "digits_regression.npz"
  if not path.is_file():
    ds = data.load("digits", n_train=n, n_test=N_TEST)

    def target(y):
      return ((np.asarray(y, np.float64) - 4.5) / 2.87).astype(np.float32)

    out.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=ds.x_train, y_train=target(ds.y_train), x_test=ds.x_test,
             y_test=target(ds.y_test))
  return path


def run_lr(lr: float, size: dict, data_path: Path, args) -> Path:
  """Full-batch gradient descent at ``lr`` with λ_max tracked; the run directory."""
  n, steps = size["n"], size["steps"]
  overrides = [
      "name=edge_of_stability", "data.name=file", f"data.path={data_path}",
      "model.name=mlp", f"model.kwargs={{widths: {size['widths']}, activation: tanh}}",
      "loss.name=mse", "train.optimizer=sgd", "train.momentum=0.0", "train.schedule=constant",
      f"train.lr={lr}", f"train.batch_size={n}", f"train.epochs={steps}",
      f"train.save_every={steps}", f"train.curvature.every={size['every']}",
      "train.curvature.unit=steps", "train.curvature.which=largest",
      "train.curvature.n_samples=null", "train.curvature.batch_size=null",
      *args.overrides]
  run_dir = args.out / f"lr{lr:g}"
  _figures.train_run(None, overrides, run_dir, overwrite=args.overwrite,
                     log=lambda _: None)
  return run_dir


def history(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
  """(step, train loss) of a full-batch run (one step per epoch)."""
  table = np.genfromtxt(run_dir / "history.csv", delimiter=",", names=True)
  return np.asarray(table["epoch"]), np.asarray(table["train_loss"])


def draw(runs: dict[float, Path], args) -> None:
  with plotting.use_style():
    fig = Figure(figsize=plotting.figure_size(2, 0.4))
    ax_lam, ax_loss = fig.subplots(1, 2)
    for i, (lr, run_dir) in enumerate(runs.items()):
      c = io.load_trajectory(run_dir / "trajectory.h5").groups["curvature"]
      color = f"C{i}"
      ax_lam.plot(c["step"], c["lambda_max"], color=color, lw=1.0, label=f"η = {lr:g}")
      ax_lam.axhline(2.0 / lr, color=color, ls="--", lw=0.8)
      step, loss = history(run_dir)
      ax_loss.plot(step, loss, color=color, lw=1.0, label=f"η = {lr:g}")
    ax_lam.set_xlabel("step")
    ax_lam.set_ylabel(r"sharpness $\lambda_{\max}$ (dashed: $2/\eta$)")
    ax_lam.legend(fontsize="x-small")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss (MSE)")
    ax_loss.set_yscale("log")
    ax_loss.legend(fontsize="x-small")
    fig.tight_layout()
    _figures.save(fig, args.out, "edge_of_stability", _figures.formats(args))


def measures(run_dir: Path, lr: float) -> dict[str, float]:
  """λ_max·η/2 over the last quarter of the probes, max/initial λ_max, HVPs per probe."""
  c = io.load_trajectory(run_dir / "trajectory.h5").groups["curvature"]
  lam, hvps = np.asarray(c["lambda_max"]), np.asarray(c["probe_hvps"])
  window = lam[-max(1, lam.size // 4):]
  return {"final_lambda_eta_over_2": float(np.mean(window) * lr / 2),
          "max_over_initial": float(np.max(lam) / lam[0]),
          "initial_lambda_max": float(lam[0]), "threshold_2_over_eta": 2.0 / lr,
          "probes": int(lam.size), "hvps_per_probe": float(np.mean(hvps[1:])),
          "hvps_first_probe": int(hvps[0])}


def main() -> None:
  args = _figures.parser("fig_edge_of_stability", __doc__).parse_args()
  size = SIZES[_figures.size_of(args)]
  data_path = write_data(args.out, size["n"])
  runs = {lr: run_lr(lr, size, data_path, args) for lr in size["lrs"]}
  draw(runs, args)
  summary = {f"lr{lr:g}": measures(run_dir, lr) for lr, run_dir in runs.items()}
  _figures.write_summary(args.out, summary)
  for lr, m in zip(runs, summary.values()):
    print(f"eta {lr:g}: mean lambda_max*eta/2 over the last quarter {m['final_lambda_eta_over_2']:.3f}"
          f" (1 = the edge of stability), max/initial lambda_max {m['max_over_initial']:.2f}, "
          f"{m['hvps_per_probe']:.1f} HVPs per warm probe ({m['hvps_first_probe']} cold)")


if __name__ == "__main__":
  _figures.run(main)
