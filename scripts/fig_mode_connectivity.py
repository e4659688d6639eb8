"""Garipov et al. (2018), Draxler et al. (2018): mode connectivity of minima from different seeds.

Trains one network from two (or three, --seeds 0,1,2) random seeds (train.seed) with
landscape.pipeline, then for every pair of the minima (A, B) runs
landscape.pipeline.run_path (what `landscape path --method linear,curve,neb --saddle
--plane` runs): the straight segment from A to B, a Bezier curve with one bend fitted to
low training loss (Garipov et al.), and a nudged elastic band started from that curve and
relaxed with a climbing image (Draxler et al.); the band's highest image is refined by
Newton-MR to a critical point whose Morse index is certified by Lanczos residuals; and the
loss is swept on the plane through A, B and the curve's bend. The barrier of a path is its
largest rise of the train loss above the chord between the two endpoint losses,
max_t [L(t) - ((1 - t) L(A) + t L(B))] (test loss likewise). Draws

  path.{pdf,png}             train (solid) and test (dashed) loss along the three paths,
                             one panel per pair, barriers in the legend, the saddle marked
  plane.{pdf,png}            the train-loss contours on each pair's plane, the three paths
                             projected on it (Garipov et al., Fig. 1)
  saddle_spectrum.{pdf,png}  the smallest Hessian eigenvalues at each pair's refined
                             saddle with their residual bounds and the certified index

and writes summary.json. The claim it measures, never assumes: "the curve's barrier is
lower than the linear barrier" -- summary.json has both numbers per pair and
curve_below_linear (per pair) and claim_held (every pair), booleans that can be false.

Sizes:
  default   CPU: digits (8x8), MLP 64-64 (ReLU), cross-entropy + L2 0.001 (a minimum
            exists), Adam lr 0.01, 1500 full-batch epochs (~10 s a run), seeds 0,1; 33
            points along the segment and the curve, curve fit 1000 Adam steps, NEB 17
            images and at most 1000 steps on all 1437 training samples, saddle at most 200
            Newton-MR steps, 21x21 plane; about 2 min on 2 cores (scripts/README.md)
  --tiny    smoke test: MLP 64-16-10 on 200 samples, 200 full-batch epochs, 7 points, 60
            curve steps, 40 NEB steps, 20 Newton-MR steps, 5x5 plane (about 30 s on 2 cores)
  --paper   configs/resnet20_skip.yaml (ResNet-20) and the same config with VGG-9
            (model.name=vgg9), 200 epochs each, seeds 0,1,2, 61 points, 20000 curve steps,
            NEB 33 images and 2000 steps on 5000 samples, 51x51 planes (GPU-sized); the
            paper used CIFAR-10: --set data.name=file --set data.path=cifar10.npz
  --seeds S comma-separated training seeds, two or three distinct ones (default 0,1;
            --paper 0,1,2); every pair (A, B) with A before B gets its paths

--set KEY=VALUE overrides go to the training runs, except paths.* ones, which go to the
paths (e.g. --set paths.neb_steps=100).

Results (under --out, default results/figures/fig_mode_connectivity/): NET/seed{S}/ are run
directories; NET/path_{A}_{B}.h5 is the 1-D result file along the segment with paths/linear,
paths/curve, paths/neb and saddle/, and NET/path_{A}_{B}_plane.h5 the plane, so
`landscape plot OUT/NET/path_0_1.h5 --kind path,saddle_spectrum` and
`landscape plot OUT/NET/path_0_1_plane.h5 --kind plane` redraw them; summary.json the
barriers, the saddles, the claim, the timings and the CPU. Every step resumes.

References: Garipov, Izmailov, Podoprikhin, Vetrov, Wilson, "Loss Surfaces, Mode
Connectivity, and Fast Ensembling of DNNs", NeurIPS 2018. Draxler, Veschgini, Salmhofer,
Hamprecht, "Essentially No Barriers in Neural Network Energy Landscape", ICML 2018.
Henkelman, Uberuaga, Jonsson, "A climbing image nudged elastic band method for finding
saddle points and minimum energy paths", J. Chem. Phys. 2000.
"""

from __future__ import annotations

import itertools
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import _figures
from landscape import io, paths, pipeline, plotting
from landscape.errors import ConfigError

METHODS = ("linear", "curve", "neb")
CLAIM = "the curve's barrier is lower than the linear barrier"
# The networks per size: name -> (config file or None for the embedded default, overrides).
# CPU sizes: an MLP on digits with an L2 term in the objective (cross-entropy alone has no
# minimum on separable data), trained full batch to near a real minimum, so that the band's
# endpoints are minima of what it relaxes (paths.n_samples=null: all training samples).
# The embedded default CNN trains in 10 s but its band costs ~4 s a step on 2 cores.
MLP = ["model.name=mlp", "loss.l2=0.001", "train.lr=0.01"]
NETS = {
    "tiny": {"mlp": (None, MLP + ["model.kwargs={widths: [16]}", "data.n_train=200",
                                  "data.n_test=100", "train.batch_size=200", "train.epochs=200",
                                  "train.save_every=100"])},
    "default": {"mlp": (None, MLP + ["model.kwargs={widths: [64, 64]}", "train.batch_size=1437",
                                     "train.epochs=1500", "train.save_every=500"])},
    "paper": {"resnet20": (_figures.CONFIGS / "resnet20_skip.yaml", ["train.epochs=200"]),
              "vgg9": (_figures.CONFIGS / "resnet20_skip.yaml",
                       ["model.name=vgg9", "model.kwargs={batchnorm: true}",
                        "train.epochs=200"])},
}
# paths.* settings per size (overrides of run_path; the config's defaults otherwise).
PATHS = {
    "tiny": ["paths.num=7", "paths.curve_steps=60", "paths.neb_steps=40",
             "paths.n_samples=null", "paths.plane_num=5", "paths.save_every=20",
             "paths.saddle_steps=20"],
    "default": ["paths.n_samples=null", "paths.neb_steps=1000", "paths.saddle_steps=200",
                "paths.save_every=100"],
    "paper": ["paths.num=61", "paths.curve_steps=20000", "paths.curve_lr=0.01",
              "paths.neb_images=33", "paths.neb_steps=2000", "paths.n_samples=5000",
              "paths.plane_num=51", "paths.saddle_steps=100", "paths.saddle_k=10",
              "paths.save_every=500"],
}
SEEDS = {"tiny": "0,1", "default": "0,1", "paper": "0,1,2"}


def parse_seeds(text: str) -> list[int]:
  """``"0,1[,2]"``: two or three distinct non-negative integers; ConfigError otherwise."""
  try:
    seeds = [int(s) for s in text.split(",")]
  except ValueError:
    raise ConfigError(f"--seeds {text!r}: expected two or three comma-separated integers, "
                      "e.g. 0,1 or 0,1,2") from None
  if not 2 <= len(seeds) <= 3 or len(set(seeds)) != len(seeds) or min(seeds) < 0:
    raise ConfigError(f"--seeds {text!r}: needs two or three distinct non-negative training "
                      "seeds, e.g. 0,1 or 0,1,2")
  return seeds


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
  """(training overrides, paths.* overrides)."""
  path_set = [o for o in overrides if o.strip().startswith("paths.")]
  return [o for o in overrides if o not in path_set], path_set


def plan(args) -> dict:
  """The networks, their resolved configs, seeds and path overrides (nothing is written).

  Every config and override is resolved here, before anything trains, so a bad --set or
  --seeds is refused at once.
  """
  size = _figures.size_of(args)
  seeds = parse_seeds(args.seeds or SEEDS[size])
  train_set, path_set = split_overrides(args.overrides)
  path_set = PATHS[size] + path_set
  nets = {}
  for name, (config, overrides) in NETS[size].items():
    over = overrides + train_set
    cfg = pipeline.resolve(str(config) if config is not None else None, over + path_set)
    nets[name] = {"config": config, "overrides": over, "cfg": cfg}
  return {"size": size, "seeds": seeds, "pairs": list(itertools.combinations(seeds, 2)),
          "nets": nets, "path_overrides": path_set}


def cpu_model() -> str:
  """The CPU's model name from lscpu (platform.processor() when lscpu is missing)."""
  try:
    text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
  except (OSError, subprocess.SubprocessError):
    text = ""
  for line in text.splitlines():
    if line.startswith("Model name:"):
      return line.split(":", 1)[1].strip()
  return platform.processor() or "unknown"


def pair_summary(path: Path) -> dict:
  """The barriers (train and test loss), the band's convergence and the saddle of a file."""
  res = io.load(path)
  out: dict = {"file": str(path), "plane_file": str(path.with_name(path.stem + "_plane.h5"))}
  for m in METHODS:
    group = {k.removeprefix(f"{m}/"): v for k, v in res.groups["paths"].items()
             if k.startswith(f"{m}/")}
    attrs = res.group_attrs[f"paths/{m}"]
    t = np.asarray(group["t"], np.float64)
    out[f"{m}_barrier"] = float(attrs["barrier"])
    out[f"{m}_barrier_test"] = paths.barrier(t, np.asarray(group["test_loss"], np.float64))[0]
    out[f"{m}_peak_t"] = float(t[int(attrs["peak"])])
    out[f"{m}_max_train_loss"] = float(np.max(group["train_loss"]))
  neb = res.group_attrs["paths/neb"]
  out.update(neb_converged=bool(neb["converged"]), neb_steps=int(neb["steps"]),
             neb_band_barrier=float(neb["band_barrier"]),
             neb_band_samples=int(neb["num_samples"]))
  out["endpoint_train_loss"] = [float(res.fields["train_loss"][0]),
                                float(res.fields["train_loss"][-1])]
  s = res.group_attrs["saddle"]
  out["saddle"] = {"kind": str(s["kind"]), "index_lower": int(s["index_lower"]),
                   "index_upper": int(s["index_upper"]), "loss": float(s["loss"]),
                   "grad_norm": float(s["grad_norm"]), "converged": bool(s["converged"]),
                   "near_zero": int(s["near_zero"]), "eps": float(s["eps"]),
                   "t": float(s["t"]), "from": str(s["method"]),
                   "eigenvalues": np.asarray(res.groups["saddle"]["eigenvalues"]).tolist()}
  out["curve_below_linear"] = bool(out["curve_barrier"] < out["linear_barrier"])
  return out


def panels(n: int) -> tuple[int, int]:
  cols = min(n, 3)
  return (n + cols - 1) // cols, cols


def draw(files: dict[str, Path], args) -> None:
  """path, plane and saddle_spectrum: one panel per (network, pair)."""
  fmts = _figures.formats(args)
  loaded = {label: io.load(f) for label, f in files.items()}
  planes = {label: io.load(f.with_name(f.stem + "_plane.h5")) for label, f in files.items()}
  rows, cols = panels(len(files))
  kinds = (("path", loaded, lambda ax, r: plotting.plot_paths(ax, r), 0.42),
           ("plane", planes, lambda ax, r: plotting.plot_path_plane(ax, r), 0.5),
           ("saddle_spectrum", loaded, lambda ax, r: plotting.plot_saddle_spectrum(ax, r),
            0.42))
  with plotting.use_style():
    for stem, results, plot, aspect in kinds:
      fig = Figure(figsize=plotting.figure_size(2, aspect=aspect * rows * min(1.0, 2 / cols)),
                   layout="constrained")
      axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
      for ax, (label, res) in zip(axes, results.items()):
        plot(ax, res)
        if stem == "saddle_spectrum":   # the title is the saddle's kind and index
          ax.set_title(f"{label}: {ax.get_title()}", fontsize="small")
        else:                           # the legend sits above the axes: label inside
          ax.text(0.01, 0.98, label, transform=ax.transAxes, ha="left", va="top",
                  fontsize="small", bbox={"fc": "white", "ec": "none", "alpha": 0.8},
                  zorder=10)
      for ax in axes[len(results):]:
        ax.set_axis_off()
      _figures.save(fig, args.out, stem, fmts)


def table(summary: dict) -> str:
  rows = [("network", "pair", "linear", "curve", "neb (conv.)", "curve<linear", "saddle",
           "index", "saddle loss", "|grad|")]
  for net, s in summary["networks"].items():
    for pair, p in s["pairs"].items():
      sd = p["saddle"]
      upper = "?" if sd["index_upper"] < 0 else str(sd["index_upper"])
      rows.append((net, pair, f"{p['linear_barrier']:.4g}", f"{p['curve_barrier']:.4g}",
                   f"{p['neb_barrier']:.4g} ({'yes' if p['neb_converged'] else 'no'})",
                   str(p["curve_below_linear"]), sd["kind"], f"[{sd['index_lower']}, {upper}]",
                   f"{sd['loss']:.4g}", f"{sd['grad_norm']:.2e}"))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines) + (f"\n(train-loss barriers above the endpoint chord; claim: {CLAIM}"
                             f": {'held' if summary['claim_held'] else 'DID NOT hold'} on "
                             "every pair)")


def parse_args(argv: list[str] | None = None):
  ap = _figures.parser("fig_mode_connectivity", __doc__)
  ap.add_argument("--seeds", default=None,
                  help="comma-separated training seeds, two or three (default 0,1; --paper "
                       "0,1,2); every pair gets its paths")
  return ap.parse_args(argv)


def main() -> None:
  args = parse_args()
  started = time.perf_counter()
  p = plan(args)
  timings: dict = {"train_s": {}, "path_s": {}}
  files: dict[str, Path] = {}
  summary: dict = {"size": p["size"], "claim": CLAIM, "seeds": p["seeds"],
                   "path_overrides": p["path_overrides"], "networks": {}}
  for net, spec in p["nets"].items():
    run_dirs = {}
    for seed in p["seeds"]:
      run_dir = args.out / net / f"seed{seed}"
      print(f"[{net}] training seed {seed} -> {run_dir}")
      t0 = time.perf_counter()
      _figures.train_run(spec["config"], spec["overrides"] + [f"train.seed={seed}"], run_dir,
                         overwrite=args.overwrite)
      timings["train_s"][f"{net}/seed{seed}"] = time.perf_counter() - t0
      run_dirs[seed] = run_dir
    pairs = {}
    for a, b in p["pairs"]:
      out = args.out / net / f"path_{a}_{b}.h5"
      print(f"[{net}] paths seed {a} -> seed {b}: {', '.join(METHODS)} + saddle + plane")
      t0 = time.perf_counter()
      pipeline.run_path(run_dirs[a], run_dirs[b], out=out, methods=list(METHODS), plane=True,
                        saddle=True, overrides=p["path_overrides"], overwrite=args.overwrite)
      timings["path_s"][f"{net}/{a}-{b}"] = time.perf_counter() - t0
      pairs[f"{a}-{b}"] = pair_summary(out)
      files[f"{net} seeds {a}-{b}" if len(p["nets"]) > 1 else f"seeds {a}-{b}"] = out
    summary["networks"][net] = {
        "config": str(spec["config"]) if spec["config"] else "embedded default",
        "overrides": spec["overrides"], "model": spec["cfg"].model.name,
        "runs": {str(s): {"train_loss": _figures.final_train_loss(d)} for s, d in
                 run_dirs.items()},
        "pairs": pairs}
  t0 = time.perf_counter()
  draw(files, args)
  timings["draw_s"] = time.perf_counter() - t0
  timings["total_s"] = time.perf_counter() - started
  summary["claim_held"] = all(pr["curve_below_linear"] for s in summary["networks"].values()
                              for pr in s["pairs"].values())
  summary["timings"] = timings
  summary["cpu"] = cpu_model()
  _figures.write_summary(args.out, summary)
  print(table(summary))


if __name__ == "__main__":
  _figures.run(main)
