"""The seeds' lab: how the choice of loss shapes the fit and the landscape.

(a) Regression with outliers (configs/regression_{mse,mae,huber}.yaml: y = 2x + 3 + noise,
    ~10% one-sided gross outliers, a linear model y = w x + b trained full batch):
    the data with the three fitted lines; each loss's (w, b) landscape, evaluated with
    landscape.surface.evaluate on the model's loss_fn along the unit w and b axes
    (norm "none", origin w = b = 0); 1-D slices through each fit along w and along b.
    MSE is pulled by the outliers, MAE and Huber stay near w = 2, b = 3.
(b) Imbalanced binary classification (configs/imbalanced_{bce,focal}.yaml: 5% positives):
    minority-class recall and precision on the test split, and both decision boundaries.
    The focal loss (alpha weighting the minority class) recalls more of it than BCE.
(c) The loss functions and their derivatives d loss / d output (jax.grad of
    landscape.losses.get(name)) against the error (regression) and the logit (binary).

  loss_functions.{pdf,png}   (c)
  regression.{pdf,png}       (a)
  imbalanced.{pdf,png}       (b)

Sizes:
  default   the configs (200 full-batch epochs, 10 epochs), 41x41 (w, b) grids
  --tiny    smoke test: 3 epochs for the binary runs, 9x9 grids, 9-point slices
  --paper   the same runs with 101x101 grids and 101-point slices (a toy problem: no GPU)

Results (under --out, default results/figures/fig_loss_choice/): the run directories
reg_*/ and imb_*/, the landscapes reg_*/wb.h5 (2-D), reg_*/slice_w.h5 and reg_*/slice_b.h5
(1-D; `landscape plot` draws them), and summary.json (fits, recall, precision).

References: Huber, "Robust Estimation of a Location Parameter", Ann. Math. Statist. 1964.
Lin, Goyal, Girshick, He, Dollar, "Focal Loss for Dense Object Detection", ICCV 2017.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_fscore_support

import _figures
from landscape import config, losses, pipeline, plotting

# Labels; the hyperparameters (Huber's delta, focal's alpha and gamma) are the configs'.
REGRESSION = {"mse": "squared error (MSE)", "mae": "absolute error (MAE)",
              "huber": "Huber (δ = 1)"}
BINARY = {"bce": "binary cross-entropy", "focal": "focal (α = 0.75, γ = 2)"}
SIZES = {  # (regression overrides, binary overrides, (w, b) grid points, slice points)
    "tiny": ([], ["train.epochs=3"], 9, 9),
    "default": ([], [], 41, 41),
    "paper": ([], [], 101, 101),
}
W_RANGE, B_RANGE = (-1.0, 5.0), (-2.0, 10.0)   # around the true (2, 3) and the fits
SLICE_W, SLICE_B = 2.0, 4.0                    # half-widths of the 1-D slices


def axis_direction(params, leaf: str):
  """The unit direction along one leaf of the linear model: ``kernel`` (w) or ``bias`` (b)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, v: np.ones_like(v) if path[-1].key == leaf else np.zeros_like(v), params)


def regression_run(name: str, size: str, args) -> dict:
  """Train one regression loss; its (w, b) landscape and 1-D slices as result files."""
  run_dir = args.out / f"reg_{name}"
  reg, _, n_grid, n_slice = SIZES[size]
  _figures.train_run(_figures.CONFIGS / f"regression_{name}.yaml", reg + args.overrides,
                     run_dir, overwrite=args.overwrite)
  run = pipeline.open_run(run_dir)
  exp, variables = run.experiment, run.variables
  obj = run.objective("eval")
  data = (exp.dataset.x_train, exp.dataset.y_train)
  dw, db = axis_direction(obj.params, "kernel"), axis_direction(obj.params, "bias")
  attrs = {"config": config.to_json(exp.cfg), "direction_kind": "axes", "norm": "none",
           "ignore": "none", "seed": 0, "run_dir": str(run_dir)}

  def sweep(file, centre, dirs, xs, ys=None):
    return _figures.sweep_to_file(run_dir / file, obj.loss_fn, centre, dirs, xs, ys, data,
                                  attrs=attrs, overwrite=args.overwrite)

  origin = jax.tree.map(np.zeros_like, obj.params)
  return {"exp": exp, "variables": variables,
          "wb": sweep("wb.h5", origin, (dw, db), np.linspace(*W_RANGE, n_grid),
                      np.linspace(*B_RANGE, n_grid)),
          "slice_w": sweep("slice_w.h5", obj.params, (dw,),
                           np.linspace(-SLICE_W, SLICE_W, n_slice)),
          "slice_b": sweep("slice_b.h5", obj.params, (db,),
                           np.linspace(-SLICE_B, SLICE_B, n_slice)),
          "w": float(obj.params["stem_dense"]["kernel"].item()),
          "b": float(obj.params["stem_dense"]["bias"].item())}


def binary_run(name: str, size: str, args) -> dict:
  """Train one binary loss; minority recall and precision on the test split."""
  run_dir = args.out / f"imb_{name}"
  _figures.train_run(_figures.CONFIGS / f"imbalanced_{name}.yaml",
                     SIZES[size][1] + args.overrides, run_dir, overwrite=args.overwrite)
  exp, variables = pipeline.load_run(run_dir)
  ds = exp.dataset
  predicted = np.asarray(exp.module.apply(variables, ds.x_test)).ravel() > 0
  precision, recall, _, _ = precision_recall_fscore_support(ds.y_test, predicted, labels=[1],
                                                            zero_division=0)
  return {"exp": exp, "variables": variables, "recall": float(recall[0]),
          "precision": float(precision[0])}


def loss_curves(names: dict, outputs: np.ndarray, target: float, hyper: dict) -> dict:
  """``name -> (loss, d loss / d output)`` at ``outputs`` for a constant ``target``."""
  curves = {}
  for name, label in names.items():
    fn = losses.get(name, **hyper.get(name, {}))
    targets = jnp.full(outputs.shape, target, jnp.float32)
    value = fn(jnp.asarray(outputs, jnp.float32), targets)
    grad = jax.grad(lambda o, fn=fn: fn(o, targets).sum())(jnp.asarray(outputs, jnp.float32))
    curves[label] = (np.asarray(value), np.asarray(grad))
  return curves


def draw_loss_functions(args) -> None:
  errors, logits = np.linspace(-3, 3, 241), np.linspace(-4, 4, 241)
  hyper = {name: dict(pipeline.resolve(str(_figures.CONFIGS / config)).loss.kwargs)
           for name, config in (("huber", "regression_huber.yaml"),
                                ("focal", "imbalanced_focal.yaml"))}
  with plotting.use_style():
    fig = Figure(figsize=plotting.figure_size(2, aspect=0.7), layout="constrained")
    (a, b), (c, d) = fig.subplots(2, 2)
    plotting.plot_loss_functions(a, b, errors, loss_curves(
        {**REGRESSION, "log_cosh": "log cosh"}, errors, 0.0, hyper))
    plotting.plot_loss_functions(c, d, logits, loss_curves(
        {**BINARY, "hinge": "hinge"}, logits, 1.0, hyper))
    for ax in (c, d):
      ax.set_xlabel("logit o of a positive example (target 1)")
    _figures.save(fig, args.out, "loss_functions", _figures.formats(args))


def draw_regression(runs: dict, args) -> None:
  ds = next(iter(runs.values()))["exp"].dataset
  outliers = np.asarray(ds.info.get("outlier_indices", []), dtype=int)
  x_line = np.linspace(ds.x_train.min(), ds.x_train.max(), 50, dtype=np.float32)[:, None]
  with plotting.use_style():
    fig = Figure(figsize=plotting.figure_size(2, aspect=0.62), layout="constrained")
    top, bottom = fig.subplots(2, 3)
    ax = top[0]
    ax.scatter(ds.x_train[:, 0], ds.y_train, s=4, color="0.5", label="train")
    ax.scatter(ds.x_train[outliers, 0], ds.y_train[outliers], s=6, color="C3", label="outliers")
    for k, (name, run) in enumerate(runs.items()):
      y_line = np.asarray(run["exp"].module.apply(run["variables"], x_line)).ravel()
      ax.plot(x_line[:, 0], y_line, color=f"C{k}",
              label=f"{name}: w={run['w']:.2f}, b={run['b']:.2f}")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize="xx-small")
    for ax, key, xlabel in ((top[1], "slice_w", "w − w*"), (top[2], "slice_b", "b − b*")):
      plotting.plot_1d_overlay(ax, {name: (run[key].xs, run[key].fields["train_loss"])
                                    for name, run in runs.items()},
                               log=True, xlabel=xlabel, ylabel="train loss")
    for ax, (name, run) in zip(bottom, runs.items()):
      wb = run["wb"]
      plotting.plot_linear_landscape(ax, wb.xs, wb.ys, wb.fields["train_loss"],
                                     title=REGRESSION[name])
    _figures.save(fig, args.out, "regression", _figures.formats(args))


def draw_imbalanced(runs: dict, args) -> None:
  ds = next(iter(runs.values()))["exp"].dataset
  lo, hi = ds.x_test.min(axis=0) - 0.5, ds.x_test.max(axis=0) + 0.5
  gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 120), np.linspace(lo[1], hi[1], 120))
  points = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
  with plotting.use_style():
    fig = Figure(figsize=plotting.figure_size(2, aspect=0.42), layout="constrained")
    ax_bar, ax_db = fig.subplots(1, 2)
    at = np.arange(len(runs))
    for k, metric in enumerate(("recall", "precision")):
      bars = ax_bar.bar(at + (k - 0.5) * 0.38, [r[metric] for r in runs.values()], 0.38,
                        label=f"minority {metric}", color=f"C{k + 4}")
      ax_bar.bar_label(bars, fmt="%.2f", fontsize="x-small")
    ax_bar.set_xticks(at, [BINARY[n] for n in runs], fontsize="x-small")
    ax_bar.set_ylim(0, 1.1)
    ax_bar.legend(fontsize="x-small")
    minority = ds.y_test == 1
    ax_db.scatter(*ds.x_test[~minority].T, s=3, color="0.7", label="majority (test)")
    ax_db.scatter(*ds.x_test[minority].T, s=6, color="C3", label="minority (test)")
    for k, (name, run) in enumerate(runs.items()):
      logit = np.asarray(run["exp"].module.apply(run["variables"], points)).reshape(gx.shape)
      ax_db.contour(gx, gy, logit, levels=[0.0], colors=[f"C{k}"])
      ax_db.plot([], [], color=f"C{k}", label=f"{name} boundary")
    ax_db.set_xlabel("$x_1$")
    ax_db.set_ylabel("$x_2$")
    ax_db.legend(fontsize="x-small", loc="lower left")
    _figures.save(fig, args.out, "imbalanced", _figures.formats(args))


def main() -> None:
  args = _figures.parser("fig_loss_choice", __doc__).parse_args()
  size = _figures.size_of(args)
  draw_loss_functions(args)
  reg = {name: regression_run(name, size, args) for name in REGRESSION}
  draw_regression(reg, args)
  imb = {name: binary_run(name, size, args) for name in BINARY}
  draw_imbalanced(imb, args)
  summary = {f"reg_{n}": {"w": r["w"], "b": r["b"],
                          "trained_train_loss": _figures.final_train_loss(args.out / f"reg_{n}"),
                          "slice_w_at_origin": _figures.at_origin(r["slice_w"]),
                          "wb_grid_min": float(np.nanmin(r["wb"].fields["train_loss"]))}
             for n, r in reg.items()}
  summary.update({f"imb_{n}": {"recall": r["recall"], "precision": r["precision"]}
                  for n, r in imb.items()})
  print("minority class (test): " + ", ".join(
      f"{n} recall {r['recall']:.3f} precision {r['precision']:.3f}" for n, r in imb.items()))
  _figures.write_summary(args.out, summary)


if __name__ == "__main__":
  _figures.run(main)
