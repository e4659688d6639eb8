"""Benchmark for a GPU machine: matmul peak, surface sweeps, point modes, HVP costs.

One prepared command (``scripts/bench_gpu.sh``, which runs this script) that reports, on
the device JAX picks (``--device``):

(a) **matmul peak**: the best of ``--repeats``+ timings of a jitted float32 ``n x n``
    matmul (``2n³`` FLOPs; n = 8192, 1024 with ``--quick``), at JAX's default matmul
    precision (TF32 on recent NVIDIA GPUs, as the models' own matmuls and convolutions).
(b) **surface sweeps** through ``landscape.surface.evaluate`` on a ``--grid`` x ``--grid``
    filter-normalized plane (default 51x51) of the MLP 784-256-256-10, ResNet-20 and
    ResNet-56 (BatchNorm, eval mode; random CIFAR-shaped 32x32x3 inputs, random labels,
    random init), loss only: points/s and the fraction of the matmul peak it amounts to,
    ``FLOPs per point x points/s / peak``, with the forward FLOPs over the dataset from
    XLA's ``cost_analysis`` (analytic Dense/Conv count where XLA gives none). The sweep
    is stopped after ``--chunks`` chunks (of the size ``evaluate`` picks, or
    ``--chunk-size``): the first is a warm-up, the rate is that of the following ones.
(c) **point modes**: the convolutional models with ``point_mode="vmap"`` and ``"map"``
    (the MLP with ``auto``, which is the affine mode for it; ``--quick`` times ResNet-56
    in ``map`` mode only, whose vmap compile alone costs a minute on a CPU).
(d) **HVP / gradient cost** of forward-over-reverse, reverse-over-forward and linearized
    HVPs (``scripts/_bench_models.py``, shared with ``bench_hessian.py``) on the MLP,
    ResNet-20 and the digits CNN (landscape's default ``cnn``: conv 16-32, dense 64 on
    8x8x1 digits).
(e) **the 51x51 ResNet-56 surface**: its time extrapolated from the measured chunks
    (``2601 / points/s``, compilation apart), at the measured data size and, linearly,
    at CIFAR-10's 50,000 training images.

Usage::

  scripts/bench_gpu.sh                         # the GPU sizes (a few minutes on one H100)
  python scripts/bench_gpu.py --quick          # tiny sizes, runs on a CPU in < ~60 s (CI)
  python scripts/bench_gpu.py --device cpu --json out.json

The header names the device (GPU: its kind; CPU: ``lscpu``'s model name and its
avx512/amx flags) and the jax version. Seconds are wall-clock: noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import _bench_models as bm  # noqa: E402
from landscape import directions, surface  # noqa: E402
from landscape.errors import ConfigError, LandscapeError  # noqa: E402

SWEEP_COLUMNS = ("sweep", "point mode", "chunk", "samples", "GFLOP/point", "points/s",
                 "% matmul peak", "compile s", "grid s (extrapolated)")
CIFAR_TRAIN = 50_000


@dataclasses.dataclass(frozen=True)
class Sizes:
  """Everything ``--quick`` shrinks."""
  matmul: int
  sweep_models: tuple[tuple[bm.ModelSpec, tuple[str, ...]], ...]
  hvp_models: tuple[bm.ModelSpec, ...]
  chunk_size: int | None


GPU = Sizes(
    8192,
    ((dataclasses.replace(bm.MLP, samples=10_000, batch=10_000), ("auto",)),
     (dataclasses.replace(bm.RESNET20, samples=5000, batch=500), ("vmap", "map")),
     (dataclasses.replace(bm.RESNET56, samples=5000, batch=500), ("vmap", "map"))),
    (dataclasses.replace(bm.MLP, batch=5000), bm.DIGITS_CNN,
     dataclasses.replace(bm.RESNET20, samples=2048, batch=512)),
    None)
QUICK = Sizes(
    1024,
    ((bm.quick(bm.MLP, 500, 250), ("auto",)),
     (bm.quick(bm.RESNET20, 8, 8, width=4), ("vmap", "map")),
     (bm.quick(bm.RESNET56, 4, 4, width=4), ("map",))),
    (bm.quick(bm.MLP, 500, 250), *bm.HVP_MODELS_QUICK),
    2)


# ----------------------------------------------------------------------------- (a) matmul


def matmul_peak(n: int, repeats: int) -> float:
  """FLOP/s of a jitted ``n x n`` float32 matmul, best of ``repeats`` after a warm-up."""
  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.random.normal(ka, (n, n), jnp.float32)
  b = jax.random.normal(kb, (n, n), jnp.float32)
  dot = jax.jit(jnp.matmul)
  bm.block(dot(a, b))
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    bm.block(dot(a, b))
    best = min(best, time.perf_counter() - t0)
  return 2.0 * n**3 / best


# ----------------------------------------------------------------------------- (b, c) sweeps


class _Stop(Exception):
  """Raised from ``on_chunk`` once enough chunks are timed."""


@dataclasses.dataclass
class Sweep:
  key: str
  label: str
  mode: str
  chunk: int
  samples: int
  flops: float
  flops_source: str
  points_per_s: float
  compile_s: float
  grid_points: int
  measured_points: int

  def peak_fraction(self, peak: float) -> float:
    return self.flops * self.points_per_s / peak

  @property
  def grid_s(self) -> float:
    return self.grid_points / self.points_per_s


def _analytic_flops(b: bm.Bench) -> float:
  """Dense/Conv FLOPs of one forward pass (bench_surface's jaxpr count) x samples."""
  import bench_surface
  x = b.data[0][:1]
  return bench_surface._forward_flops(lambda z: b.module.apply(b.variables, z), x) * b.spec.samples


def sweep(b: bm.Bench, mode: str, grid: int, chunks: int, chunk_size: int | None,
          seed: int, flops: tuple[float, str]) -> Sweep:
  """Time ``chunks`` chunks of the ``grid x grid`` surface: the first warms up."""
  dirs = directions.random_plane(jax.random.key(seed + 7), b.obj.params, norm="filter",
                                 ignore="biasbn")
  xs = np.linspace(-1.0, 1.0, grid)
  stamps: list[tuple[float, int]] = []

  def on_chunk(idx, _values):
    stamps.append((time.perf_counter(), len(idx)))
    if len(stamps) >= chunks:
      raise _Stop

  t0 = time.perf_counter()
  surf = None
  try:
    surf = surface.evaluate(b.obj.loss_fn, b.obj.params, dirs, xs, xs, data=b.data,
                            batch_size=b.spec.batch, chunk_size=chunk_size, point_mode=mode,
                            on_chunk=on_chunk)
  except _Stop:
    pass
  if len(stamps) >= 2:
    # steady rate: the trailing chunks of one size after the first chunk (a self-tuning
    # sweep tries other sizes first)
    size = stamps[-1][1]
    k = len(stamps) - 1
    while k > 1 and stamps[k - 1][1] == size:
      k -= 1
    points = size * (len(stamps) - k)
    rate = points / (stamps[-1][0] - stamps[k - 1][0])
    compile_s = max(0.0, stamps[0][0] - t0 - stamps[0][1] / rate)
  else:                  # the whole grid fit in one chunk
    points, rate, compile_s = surf.num_evaluated, surf.num_evaluated / surf.sweep_seconds, \
        surf.compile_seconds
  return Sweep(b.spec.key, b.spec.label, mode, stamps[-1][1] if stamps else surf.chunk_size,
               b.spec.samples,
               flops[0], flops[1], rate, compile_s, grid * grid, points)


def sweep_table(rows: Sequence[Sweep], peak: float, grid: int) -> list[str]:
  cells = [list(SWEEP_COLUMNS[:-1]) + [f"{grid}x{grid} s (extrapolated)"]]
  for r in rows:
    cells.append([r.key, r.mode, str(r.chunk), str(r.samples), f"{r.flops / 1e9:.4g}",
                  f"{r.points_per_s:.4g}", f"{100 * r.peak_fraction(peak):.3g}",
                  f"{r.compile_s:.3g}", f"{r.grid_s:.4g}"])
  widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
  return [" | ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in
                     enumerate(zip(c, widths))) for c in cells]


# ----------------------------------------------------------------------------- main


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--quick", action="store_true",
                  help="tiny sizes (1024^2 matmul, 4-500 samples, width-4 ResNets, chunks of 2 "
                  "points, ResNet-56 in map mode only) so that it runs on a CPU in ~60 s")
  ap.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"),
                  help="the JAX platform (auto: JAX's default, a GPU where there is one)")
  ap.add_argument("--grid", type=int, default=51, help="N: the N x N surface (default 51)")
  ap.add_argument("--chunks", type=int, default=None,
                  help="chunks timed per sweep, the first a warm-up (default 4; 3 quick)")
  ap.add_argument("--chunk-size", type=int, default=None,
                  help="points per chunk (default: evaluate's automatic choice; 2 with --quick)")
  ap.add_argument("--repeats", type=int, default=None,
                  help="timed runs per matmul / HVP measurement (default 10 / 5; 3 quick)")
  ap.add_argument("--skip-hvp", action="store_true", help="leave out the HVP table (d)")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--json", default=None, help="also write the results to this JSON file")
  args = ap.parse_args(argv)
  args.sizes = QUICK if args.quick else GPU
  if args.chunks is None:
    args.chunks = 3 if args.quick else 4
  if args.chunk_size is None:
    args.chunk_size = args.sizes.chunk_size
  for flag, low in (("grid", 2), ("chunks", 2), ("chunk_size", 1), ("repeats", 1)):
    value = getattr(args, flag)
    if value is not None and value < low:
      raise ConfigError(f"--{flag.replace('_', '-')} must be >= {low}, got {value}")
  return args


def _select_device(name: str) -> str:
  """Point JAX at ``name`` before its first use; the header line describing the device."""
  if name == "cpu":
    jax.config.update("jax_platforms", "cpu")
  backend = jax.default_backend()
  if name == "gpu" and backend not in ("gpu", "cuda", "rocm"):
    raise ConfigError(f"--device gpu: JAX found no GPU (backend {backend!r}); install the "
                      "CUDA build with pip install -e '.[cuda]'")
  dev = jax.devices()[0]
  where = (f"{dev.device_kind} ({backend}, {jax.device_count()} device(s))" if backend != "cpu"
           else f"CPU: {bm.cpu_description()}; {bm.usable_cores()} usable cores")
  return f"jax {jax.__version__} (jaxlib {jax.lib.__version__}) on {where}"


def main(argv: Sequence[str] | None = None) -> int:
  try:
    args = _parse_args(argv)
    header = _select_device(args.device)
  except LandscapeError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  sizes = args.sizes
  print(header)
  started = time.perf_counter()
  out: dict[str, Any] = {"header": header, "quick": args.quick, "grid": args.grid}

  # (a)
  mm_reps = args.repeats or (3 if args.quick else 10)
  peak = matmul_peak(sizes.matmul, mm_reps)
  print(f"\n(a) matmul peak: {sizes.matmul}x{sizes.matmul} float32, best of {mm_reps}: "
        f"{peak / 1e9:.1f} GFLOP/s")
  out["matmul"] = {"n": sizes.matmul, "flops_per_s": peak}
  phase = time.perf_counter()

  # (b), (c)
  rows = []
  for spec, modes in sizes.sweep_models:
    b = bm.build(spec, args.seed)
    print(f"  {spec.key}: {spec.label}, {b.num_params:,} params, {spec.samples} samples, "
          f"batch {spec.batch}")
    flops = bm.forward_flops(b.obj.loss_fn, b.obj.params, b.data, spec.batch,
                             fallback=lambda: _analytic_flops(b))
    for mode in modes:
      rows.append(sweep(b, mode, args.grid, args.chunks, args.chunk_size, args.seed, flops))
  print(f"\n(b, c) surface sweeps (landscape.surface.evaluate, loss only): {args.grid}x"
        f"{args.grid} grid, {args.chunks} chunks timed per sweep, the first a warm-up; "
        f"% of the matmul peak = forward FLOPs per point x points/s / peak "
        f"(FLOPs: {rows[0].flops_source})")
  print("\n".join(sweep_table(rows, peak, args.grid)))
  print(f"  (the sweeps took {time.perf_counter() - phase:.1f} s with model set-up and compiles)")
  for key in dict.fromkeys(r.key for r in rows):
    mine = {r.mode: r for r in rows if r.key == key}
    if "vmap" in mine and "map" in mine:
      v, m = mine["vmap"], mine["map"]
      print(f"  {key}: vmap / map = {v.points_per_s / m.points_per_s:.2f}x "
            f"({'vmap' if v.points_per_s >= m.points_per_s else 'map'} is faster)")
  out["sweeps"] = [{**dataclasses.asdict(r), "peak_fraction": r.peak_fraction(peak),
                    "grid_s": r.grid_s} for r in rows]

  # (e)
  r56 = [r for r in rows if r.key == "resnet56"]
  if r56:
    best = max(r56, key=lambda r: r.points_per_s)
    scale = CIFAR_TRAIN / best.samples
    print(f"\n(e) ResNet-56 {args.grid}x{args.grid} surface ({best.grid_points} points), "
          f"{best.label}, point mode {best.mode}: extrapolated {best.grid_s:.4g} s "
          f"({best.grid_s / 60:.3g} min) on {best.samples} samples from {best.measured_points} "
          f"timed points in chunks of {best.chunk} (+ compile {best.compile_s:.3g} s); on "
          f"{CIFAR_TRAIN:,} samples ~{best.grid_s * scale / 60:.3g} min (linear in samples)")
    out["resnet56_grid"] = {"mode": best.mode, "samples": best.samples, "grid_s": best.grid_s,
                            "grid_s_at_50000": best.grid_s * scale}

  # (d)
  if not args.skip_hvp:
    reps = args.repeats or (3 if args.quick else 5)
    phase = time.perf_counter()
    costs = [bm.hvp_cost_of(bm.build(spec, args.seed), reps, seed=args.seed)
             for spec in sizes.hvp_models]
    print(f"\n(d) HVP / gradient cost (full dataset, jitted, median of {reps} after a warm-up; "
          "one gradient = 1):")
    print("\n".join(bm.hvp_table(costs)))
    print(f"  (the HVP table took {time.perf_counter() - phase:.1f} s with compiles)")
    out["hvp"] = [c.as_dict() for c in costs]

  total = time.perf_counter() - started
  print(f"\ntotal {total:.1f} s")
  out["total_s"] = total
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
