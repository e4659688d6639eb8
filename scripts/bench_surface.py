"""Benchmark: 2-D loss-surface sweeps, landscape (JAX) against the original PyTorch loop.

The same network, weights, data, directions and grid are evaluated four ways:

* ``jax generic``: ``landscape.surface.evaluate(obj.loss_fn, params, dirs, xs, ys,
  data=(x, y), batch_size=B, metrics=obj.metrics)`` on the plain loss and metric
  functions (``point_mode="auto"``: ``affine`` without convolutions, which finds the
  first-layer factorization in the jaxpr of the loss by itself and computes it once per
  sweep, "prefix hoisted"; ``map`` with them).
* ``jax model-aware``: ``obj.factorized(dirs, (x, y), batch_size=B)`` then
  ``landscape.surface.sweep`` (the first layer is computed once for the whole grid).
* ``torch original``: a faithful re-implementation of tomgoldstein/loss-landscape's
  per-point loop (``plot_surface.crunch`` -> ``net_plotter.set_weights`` ->
  ``evaluation.eval_loss``): weights ``w + x·dx + y·dy`` formed from NumPy directions and
  assigned to ``p.data``, then the full dataset under ``torch.no_grad()`` from a
  ``DataLoader`` over a ``TensorDataset`` (``shuffle=False``, ``num_workers=0``),
  summing ``loss.item()·batch`` and the correct counts.
* ``torch prebatched``: the same loop, optimized: weights updated in place from
  precomputed tensors, batches sliced ahead of time, ``torch.inference_mode()``,
  one host sync per point.

The torch networks are the same networks as the Flax models (kernels converted:
Dense ``(in, out)`` -> ``(out, in)``, Conv ``(kh, kw, in, out)`` -> ``(out, in, kh, kw)``,
channels-last -> NCHW, the flatten before a Dense permuted), and the script checks that
all four methods give the same loss grid (``--rtol``) before it prints any timing
claim; a mismatch exits with status 1.

Columns: points/s in the steady state (JAX: ``Surface.sweep_seconds``, compilation
excluded and reported in ``compile s``; torch: after one untimed warm-up point); the
ratios to the two torch rows; peak RSS as the growth of the process's resident set
during the method (Linux ``VmHWM`` after a ``clear_refs`` reset, JAX compilation
included; elsewhere the ``ru_maxrss`` delta, which only shows growth past the earlier
peak); and ``% peak``: (forward FLOPs of the full network per point) x points/s over the
measured matmul peak. The model-aware row skips the first layer per point, so its
``% peak`` is an *effective* rate and may exceed the arithmetic actually done.

Usage::

  python scripts/bench_surface.py                      # mlp, cnn, resnet20 on a 6x6 grid
  python scripts/bench_surface.py --quick              # CI size: tiny MLP, 3x3 grid
  python scripts/bench_surface.py --models mlp --grid 8 --point-mode vmap,affine,map --chunk-size 8,36

torch is the optional ``bench`` extra (``pip install -e '.[bench]'``); without it the
torch rows are skipped and the JAX rows still run.

References:
  Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets",
  NeurIPS 2018 (and its code, github.com/tomgoldstein/loss-landscape).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import os
import re
import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jax_core

import landscape.models as lm
from landscape import directions, losses, objective, surface
from landscape.errors import ConfigError, LandscapeError

try:
  import torch
  import torch.nn.functional as F
  from torch import nn
except ImportError:  # torch is the optional "bench" extra
  torch = None

COLUMNS = ("method", "points/s", "vs torch original", "vs torch prebatched", "compile s",
           "peak RSS MB", "% matmul peak")


@dataclasses.dataclass(frozen=True)
class Spec:
  """One benchmarked model: registry name and kwargs, input shape, data size, batch."""
  name: str
  registry: str
  kwargs: dict
  input_shape: tuple[int, ...]
  samples: int
  batch: int
  torch_points: int | None   # at most this many grid points in the torch loops (None: all)
  label: str


SPECS = {
    "mlp": Spec("mlp", "mlp", {"widths": (256, 256)}, (784,), 10_000, 1000, None,
                "MLP 784-256-256-10"),
    "cnn": Spec("cnn", "cnn", {"features": (16, 32, 64), "dense": 128}, (32, 32, 3), 2000, 500,
                None, "CNN conv 16-32-64, dense 128"),
    "resnet20": Spec("resnet20", "resnet20", {}, (32, 32, 3), 500, 250, 12,
                     "ResNet-20 (BatchNorm, eval mode)"),
}
QUICK = {"mlp": dataclasses.replace(SPECS["mlp"], samples=1000, batch=250),
         "cnn": dataclasses.replace(SPECS["cnn"], samples=200, batch=100),
         "resnet20": dataclasses.replace(SPECS["resnet20"], samples=50, batch=25, torch_points=4)}


@dataclasses.dataclass
class Row:
  """One method's measurement on one model."""
  method: str
  points: int = 0
  seconds: float = float("nan")
  compile_s: float = float("nan")
  setup_s: float = float("nan")
  rss_mb: float = float("nan")
  loss: np.ndarray | None = None     # (P,) over the flat grid; NaN where not evaluated
  acc: np.ndarray | None = None
  note: str = ""
  tuning: dict | None = None          # the sweep's Surface.tuning (auto settings only)
  choice: tuple = ()                  # (point_mode, chunk_size, batch_size) it ran with

  @property
  def rate(self) -> float:
    return self.points / self.seconds if self.seconds > 0 else float("nan")


# ----------------------------------------------------------------------------- machine


class _PeakRSS:
  """Growth of the resident set during a ``with`` block, in MB."""

  def __enter__(self):
    self.linux = _reset_hwm()
    self.start = _status_kb("VmRSS") if self.linux else _maxrss_kb()
    return self

  def __exit__(self, *exc):
    end = _status_kb("VmHWM") if self.linux else _maxrss_kb()
    self.mb = max(0.0, (end - self.start) / 1024.0)


def _reset_hwm() -> bool:
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return _status_kb("VmHWM") > 0
  except OSError:
    return False


def _status_kb(field: str) -> int:
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1])
  except OSError:
    pass
  return 0


def _maxrss_kb() -> int:
  kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return kb // 1024 if sys.platform == "darwin" else kb


def _best_time(fn: Callable[[], Any], repeats: int) -> float:
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t0)
  return best


def _matmul_peak(n: int, repeats: int) -> dict[str, float]:
  """FLOP/s of an ``n x n`` float32 matmul (``2n³`` FLOPs), best of ``repeats``, per library."""
  rng = np.random.default_rng(0)
  a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
  flops = 2.0 * n**3
  np.dot(a, b)
  out = {"numpy": flops / _best_time(lambda: np.dot(a, b), repeats)}
  ja, jb = jnp.asarray(a), jnp.asarray(b)
  dot = jax.jit(jnp.dot)
  jax.block_until_ready(dot(ja, jb))
  out["jax"] = flops / _best_time(lambda: jax.block_until_ready(dot(ja, jb)), repeats)
  if torch is not None:
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    torch.mm(ta, tb)
    out["torch"] = flops / _best_time(lambda: torch.mm(ta, tb), repeats)
  return out


def _sub_jaxprs(params: dict):
  for v in params.values():
    for x in v if isinstance(v, (list, tuple)) else (v,):
      if isinstance(x, jax_core.ClosedJaxpr):
        yield x.jaxpr
      elif isinstance(x, jax_core.Jaxpr):
        yield x


def _layer_flops(eqn) -> float:
  """``2·out·in`` per Dense output, ``2·kh·kw·cin·cout·H·W`` per convolution."""
  out = float(np.prod(eqn.outvars[0].aval.shape))
  if eqn.primitive.name == "dot_general":
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    return 2.0 * out * float(np.prod([lhs[i] for i in lhs_contract]))
  if eqn.primitive.name == "conv_general_dilated":
    rhs = eqn.invars[1].aval.shape
    out_feature_axis = eqn.params["dimension_numbers"].rhs_spec[0]
    return 2.0 * out * float(np.prod(rhs)) / rhs[out_feature_axis]
  return 0.0


def _forward_flops(apply: Callable[[jax.Array], jax.Array], sample: jax.Array) -> float:
  """FLOPs of the Dense and Conv layers of one forward pass on ``sample`` (jaxpr shapes)."""
  def walk(jp) -> float:
    return sum(_layer_flops(e) + sum(walk(s) for s in _sub_jaxprs(e.params)) for e in jp.eqns)
  return walk(jax.make_jaxpr(apply)(sample).jaxpr)


# ----------------------------------------------------------------------------- problem


@dataclasses.dataclass
class Problem:
  """Everything the four methods share: model, variables, objective, data, plane, grid, FLOPs."""
  spec: Spec
  module: Any
  variables: dict
  obj: objective.Objective
  x: np.ndarray
  y: np.ndarray
  dirs: tuple
  xs: np.ndarray
  ys: np.ndarray
  flops_per_point: float
  head_flops_per_point: float


def _make_problem(spec: Spec, grid: int, seed: int) -> Problem:
  """Random data, labels, weights and BatchNorm statistics; a filter-normalized plane."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((spec.samples, *spec.input_shape), dtype=np.float32)
  y = rng.integers(0, 10, size=spec.samples).astype(np.int32)
  module = lm.get(spec.registry, num_outputs=10, **spec.kwargs)
  kinit, kstats, kdir = jax.random.split(jax.random.key(seed), 3)
  variables = lm.init(module, kinit, x[:2])
  if "batch_stats" in variables:   # non-trivial running statistics, so the BN conversion is checked
    variables["batch_stats"] = _random_stats(kstats, variables["batch_stats"])
  obj = objective.build(module, variables, losses.get("cross_entropy"), task="multiclass")
  dirs = directions.random_plane(kdir, obj.params, norm="filter", ignore="biasbn")
  coords = np.linspace(-1.0, 1.0, grid)
  apply = functools.partial(module.apply, variables)
  stem = functools.partial(module.apply, variables, method="stem")
  full = _forward_flops(apply, jnp.asarray(x[:1])) * spec.samples
  head = full - _forward_flops(stem, jnp.asarray(x[:1])) * spec.samples
  return Problem(spec, module, variables, obj, x, y, dirs, coords, coords.copy(), full, head)


def _random_stats(key: jax.Array, stats: dict) -> dict:
  leaves, treedef = jax.tree_util.tree_flatten_with_path(stats)
  keys = jax.random.split(key, len(leaves))
  out = []
  for k, (path, leaf) in zip(keys, leaves):
    u = jax.random.uniform(k, leaf.shape, leaf.dtype)
    is_var = jax.tree_util.keystr(path).endswith("['var']")
    out.append(0.5 + u if is_var else 0.2 * (u - 0.5))
  return jax.tree.unflatten(treedef, out)


# ----------------------------------------------------------------------------- jax rows


def _flat(surf: surface.Surface, name: str) -> np.ndarray:
  return np.asarray(surf.values[name], np.float64).reshape(-1)


def _jax_row(method: str, run: Callable[[], surface.Surface], repeats: int,
             setup_s: float = 0.0) -> Row:
  with _PeakRSS() as rss:
    surfs = [run() for _ in range(repeats)]
  best = min(surfs, key=lambda s: s.sweep_seconds)
  note = (f"point_mode={best.point_mode}{' (prefix hoisted)' if best.hoisted else ''}, "
          f"chunk={best.chunk_size}, batch={best.batch_size or 'all'}")
  if best.tuning is not None:
    note += (f" (tuned over {len(best.tuning['candidates'])} candidate(s), overhead "
             f"{best.tuning['overhead_s']:.2f} s, in the points/s)")
  return Row(method, best.num_evaluated, best.sweep_seconds, surfs[0].compile_seconds, setup_s,
             rss.mb, _flat(best, "loss"), _flat(best, "acc"), note, best.tuning,
             (best.point_mode, best.chunk_size, best.batch_size))


def _jax_generic(p: Problem, point_mode: str, chunk: int | None, repeats: int) -> Row:
  """Row (a): ``surface.evaluate`` on the plain loss and metric functions (no model knowledge)."""
  data = (p.x, p.y)

  def run():
    return surface.evaluate(p.obj.loss_fn, p.obj.params, p.dirs, p.xs, p.ys, data=data,
                            batch_size=p.spec.batch, metrics=p.obj.metrics, chunk_size=chunk,
                            point_mode=point_mode)
  return _jax_row("jax generic", run, repeats)


def _jax_model_aware(p: Problem, point_mode: str, chunk: int | None, repeats: int) -> Row:
  """Row (b): the first-layer factorization, ``obj.factorized`` then ``surface.sweep``."""
  t0 = time.perf_counter()
  point_fn, fdata = p.obj.factorized(p.dirs, (p.x, p.y), batch_size=p.spec.batch)
  setup_s = time.perf_counter() - t0

  def run():
    return surface.sweep(point_fn, p.xs, p.ys, data=fdata, batch_size=p.spec.batch,
                         chunk_size=chunk, point_mode=point_mode)
  return _jax_row("jax model-aware", run, repeats, setup_s)


def _fixed_candidates(p: Problem) -> list[tuple[str, int, int | None]]:
  """Every (point mode, chunk, inner batch) the generic sweep's tuner may choose from."""
  conv = surface.has_convolution(p.obj.loss_fn, p.obj.params, (p.x[:1], p.y[:1]))
  npts = len(p.xs) * len(p.ys)
  out = []
  for mode, chunk, batch in surface.tuning_candidates(
      p.spec.batch, len(p.x), convolution=conv, point_bytes=lm.num_params(p.variables) * 4,
      num_devices=jax.local_device_count()):
    cand = (mode, min(chunk, npts), batch)   # a sweep caps its chunk at the grid
    if cand not in out:
      out.append(cand)
  return out


def _exhaustive(p: Problem, repeats: int) -> list[tuple[tuple, float]]:
  """Steady-state points/s of a generic sweep at every fixed candidate (compile excluded)."""
  out = []
  for mode, chunk, batch in _fixed_candidates(p):
    best = 0.0
    for _ in range(repeats):
      s = surface.evaluate(p.obj.loss_fn, p.obj.params, p.dirs, p.xs, p.ys, data=(p.x, p.y),
                           batch_size=batch, metrics=p.obj.metrics, chunk_size=chunk,
                           point_mode=mode)
      best = max(best, s.points_per_second)
    out.append(((mode, chunk, batch), best))
  return out


def _choice(c: tuple) -> str:
  mode, chunk, batch = c
  return f"{mode}/chunk {chunk}/batch {batch or 'all'}"


def _tuning_lines(rows: Sequence[Row], exhaustive: list[tuple[tuple, float]] | None) -> list[str]:
  """The auto-tuned choice against the best fixed one, and generic/model-aware."""
  lines = []
  by = {r.method: r for r in rows}
  gen, aware = by.get("jax generic"), by.get("jax model-aware")
  if gen is not None:
    tuned = gen.tuning
    how = ("by the rules (too few points to tune)" if tuned is None else
           f"tuned over {len(tuned['candidates'])} candidate(s), overhead "
           f"{tuned['overhead_s']:.2f} s of a {tuned['budget_s']:.2f} s budget")
    lines.append(f"auto choice (jax generic): {_choice(gen.choice)} at {gen.rate:.3g} points/s "
                 f"including tuning overhead; {how}")
    if tuned is not None:
      lines.append("  timed on the sweep's first chunks: " + ", ".join(
          f"{_choice((c['point_mode'], c['chunk_size'], c['batch_size']))} "
          f"{c['points_per_s']:.3g}" for c in tuned["candidates"]))
  if gen is not None and exhaustive:
    (best_c, best_rate) = max(exhaustive, key=lambda e: e[1])
    lines.append(f"best fixed choice of {len(exhaustive)} (exhaustive, steady state): "
                 f"{_choice(best_c)} at {best_rate:.3g} points/s; auto/best "
                 f"{gen.rate / best_rate:.2f}")
    lines.append("  " + ", ".join(f"{_choice(c)} {r:.3g}" for c, r in exhaustive))
  if gen is not None and aware is not None:
    lines.append(f"generic/model-aware: {gen.rate / aware.rate:.2f} ({gen.rate:.3g} vs "
                 f"{aware.rate:.3g} points/s, auto settings, tuning overhead included)")
  return lines


# ----------------------------------------------------------------------------- torch networks


def _torch_modules():
  """The torch twins of landscape's MLP, CNN and ResNet (same layer names as the Flax modules)."""

  class MLP(nn.Module):
    def __init__(self, sizes: Sequence[int]):
      super().__init__()
      self.stem_dense = nn.Linear(sizes[0], sizes[1])
      self.dense = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[1:-1], sizes[2:]))

    def forward(self, x):
      z = self.stem_dense(x.flatten(1))
      for layer in self.dense:
        z = layer(F.relu(z))
      return z

  class CNN(nn.Module):
    def __init__(self, cin: int, features: Sequence[int], flat: int, dense: int, k: int):
      super().__init__()
      self.stem_conv = nn.Conv2d(cin, features[0], 3, padding=1)
      self.conv = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1)
                                for a, b in zip(features[:-1], features[1:]))
      self.hidden = nn.Linear(flat, dense)
      self.out = nn.Linear(dense, k)

    def forward(self, x):
      z = F.max_pool2d(F.relu(self.stem_conv(x)), 2)
      for conv in self.conv:
        z = F.max_pool2d(F.relu(conv(z)), 2)
      return self.out(F.relu(self.hidden(z.flatten(1))))

  class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      self.project = stride != 1 or cin != cout
      if self.project:
        self.shortcut_conv = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(cout)

    def forward(self, x):
      z = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
      return F.relu(z + (self.shortcut_bn(self.shortcut_conv(x)) if self.project else x))

  class ResNet(nn.Module):
    def __init__(self, depth: int, width: int, k: int):
      super().__init__()
      n = (depth - 2) // 6
      self.stem_conv = nn.Conv2d(3, width, 3, 1, 1, bias=False)
      self.stem_bn = nn.BatchNorm2d(width)
      chans = [width * 2**s for s in range(3) for _ in range(n)]
      strides = [2 if s > 0 and i == 0 else 1 for s in range(3) for i in range(n)]
      self.blocks = nn.ModuleList(Block(a, b, st) for a, b, st in
                                  zip([width] + chans[:-1], chans, strides))
      self.out = nn.Linear(4 * width, k)

    def forward(self, x):
      z = F.relu(self.stem_bn(self.stem_conv(x)))
      for block in self.blocks:
        z = block(z)
      return self.out(z.mean(dim=(2, 3)))

  return MLP, CNN, ResNet


def _torch_net(spec: Spec):
  """An eval-mode torch network with the architecture of ``spec``'s Flax model."""
  MLP, CNN, ResNet = _torch_modules()
  if spec.registry == "mlp":
    net = MLP([int(np.prod(spec.input_shape)), *spec.kwargs["widths"], 10])
  elif spec.registry == "cnn":
    feats = spec.kwargs["features"]
    side = spec.input_shape[0] // 2**len(feats)
    net = CNN(spec.input_shape[-1], feats, feats[-1] * side * side, spec.kwargs["dense"], 10)
  else:
    net = ResNet(int(spec.registry.removeprefix("resnet")), 16, 10)
  return net.eval()


def _torch_name(path: tuple) -> str:
  """Flax path ``('blocks_3', 'conv1', 'kernel')`` -> torch name ``'blocks.3.conv1.weight'``."""
  keys = [re.sub(r"^(dense|conv|blocks)_(\d+)$", r"\1.\2", k.key) for k in path]
  leaf = {"kernel": "weight", "scale": "weight", "mean": "running_mean",
          "var": "running_var"}.get(keys[-1], keys[-1])
  return ".".join(keys[:-1] + [leaf])


def _torch_array(name: str, a: np.ndarray, flatten_shapes: dict[str, tuple]) -> np.ndarray:
  """A Flax leaf in torch layout (Dense transposed; Conv to OIHW; NHWC flatten -> NCHW)."""
  a = np.array(a, np.float32)   # a writable copy (torch.from_numpy needs one)
  module = name.rsplit(".", 1)[0]
  if a.ndim == 2 and module in flatten_shapes:
    h, w, c = flatten_shapes[module]
    a = a.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
  if a.ndim == 2:
    return np.ascontiguousarray(a.T)
  if a.ndim == 4:
    return np.ascontiguousarray(a.transpose(3, 2, 0, 1))
  return a


def _to_torch(tree: dict, spec: Spec) -> dict[str, np.ndarray]:
  """Flax params or batch_stats (or a direction of them) as ``{torch name: array}``."""
  flatten_shapes = {}
  if spec.registry == "cnn":
    side = spec.input_shape[0] // 2**len(spec.kwargs["features"])
    flatten_shapes["hidden"] = (side, side, spec.kwargs["features"][-1])
  return {_torch_name(path): _torch_array(_torch_name(path), np.asarray(leaf), flatten_shapes)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _load_torch_net(p: Problem):
  """The torch twin with the centre weights and running statistics; the directions as lists."""
  net = _torch_net(p.spec)
  state = _to_torch(p.variables["params"], p.spec)
  state.update(_to_torch(p.variables.get("batch_stats", {}), p.spec))
  own = net.state_dict()
  wanted = {k for k in own if not k.endswith("num_batches_tracked")}
  if wanted != set(state):
    raise ConfigError(f"torch twin of {p.spec.name} does not match the Flax model: "
                      f"{sorted(wanted ^ set(state))[:6]}")
  net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
  names = [n for n, _ in net.named_parameters()]
  dirs = [[_to_torch(d, p.spec)[n] for n in names] for d in p.dirs]   # the original's numpy lists
  return net, dirs


# ----------------------------------------------------------------------------- torch loops


def _set_weights(net, weights, directions, step):
  """The original's ``net_plotter.set_weights``: ``p.data = w + Σ step_k d_k`` (NumPy dirs)."""
  if len(directions) == 2:
    changes = [d0 * step[0] + d1 * step[1] for d0, d1 in zip(*directions)]
  else:
    changes = [d * step for d in directions[0]]
  for p, w, d in zip(net.parameters(), weights, changes):
    p.data = w + torch.Tensor(d).type(type(w))


def _eval_loss(net, criterion, loader):
  """``evaluation.eval_loss`` of the original (the CrossEntropyLoss branch)."""
  correct, total_loss, total = 0, 0.0, 0
  net.eval()
  with torch.no_grad():
    for inputs, targets in loader:
      batch_size = inputs.size(0)
      total += batch_size
      outputs = net(inputs)
      loss = criterion(outputs, targets)
      total_loss += loss.item() * batch_size
      _, predicted = outputs.max(1)
      correct += predicted.eq(targets.data).sum()
  return total_loss / total, float(100.0 * correct / total)


def _torch_inputs(p: Problem):
  x = p.x.transpose(0, 3, 1, 2) if p.x.ndim == 4 else p.x
  return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(p.y.astype(np.int64))


def _run_points(method: str, evaluate_at: Callable[[np.ndarray], tuple[float, float]],
                coords: np.ndarray, limit: int | None, repeats: int) -> Row:
  todo = np.arange(len(coords)) if limit is None else np.arange(min(limit, len(coords)))
  loss = np.full(len(coords), np.nan)
  acc = np.full(len(coords), np.nan)
  with _PeakRSS() as rss:
    evaluate_at(coords[todo[0]])                       # warm-up, untimed
    best = float("inf")
    for _ in range(repeats):
      t0 = time.perf_counter()
      for i in todo:
        loss[i], acc[i] = evaluate_at(coords[i])
      best = min(best, time.perf_counter() - t0)
  note = "" if len(todo) == len(coords) else f"{len(todo)} of {len(coords)} points"
  return Row(method, len(todo), best, rss_mb=rss.mb, loss=loss, acc=acc, note=note)


def _torch_original(p: Problem, net, dirs, repeats: int) -> Row:
  """Row (c): the original per-point loop with a DataLoader over a TensorDataset."""
  x, y = _torch_inputs(p)
  loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                       batch_size=p.spec.batch, shuffle=False, num_workers=0)
  weights = [q.data for q in net.parameters()]
  criterion = nn.CrossEntropyLoss()

  def evaluate_at(coord):
    _set_weights(net, weights, dirs, coord)
    return _eval_loss(net, criterion, loader)
  try:
    return _run_points("torch original", evaluate_at, surface.grid_coords(p.xs, p.ys),
                       p.spec.torch_points, repeats)
  finally:
    for q, w in zip(net.parameters(), weights):   # back to the centre
      q.data = w


def _torch_prebatched(p: Problem, net, dirs, repeats: int) -> Row:
  """Row (d): in-place weight updates, pre-sliced batches, inference mode, one sync per point."""
  x, y = _torch_inputs(p)
  batches = list(zip(x.split(p.spec.batch), y.split(p.spec.batch)))
  params = [q.requires_grad_(False) for q in net.parameters()]
  centre = [q.detach().clone() for q in params]
  dtensors = [[torch.from_numpy(d) for d in ds] for ds in dirs]

  def evaluate_at(coord):
    with torch.inference_mode():
      for k, q in enumerate(params):
        q.copy_(centre[k])
        for c, ds in zip(coord, dtensors):
          q.add_(ds[k], alpha=float(c))
      loss = torch.zeros((), dtype=torch.float64)
      correct = torch.zeros((), dtype=torch.int64)
      for xb, yb in batches:
        out = net(xb)
        loss += F.cross_entropy(out, yb, reduction="sum").double()
        correct += (out.argmax(1) == yb).sum()
      return loss.item() / len(y), 100.0 * correct.item() / len(y)
  try:
    return _run_points("torch prebatched", evaluate_at, surface.grid_coords(p.xs, p.ys),
                       p.spec.torch_points, repeats)
  finally:
    with torch.no_grad():
      for q, c in zip(params, centre):
        q.copy_(c)


# ----------------------------------------------------------------------------- report


def _check_rows(rows: Sequence[Row], rtol: float) -> tuple[bool, list[str]]:
  """Every row's loss grid against the first row's, where both are evaluated."""
  ref = rows[0]
  atol = 10 * float(np.finfo(np.float32).eps)
  ok, lines = True, []
  for row in rows[1:]:
    both = np.isfinite(row.loss) & np.isfinite(ref.loss)
    if not both.any():
      ok = False
      lines.append(f"  {row.method}: no point in common with {ref.method}")
      continue
    diff = np.abs(row.loss[both] - ref.loss[both])
    good = bool(np.all(diff <= rtol * np.abs(ref.loss[both]) + atol))
    ok &= good
    acc = np.nanmax(np.abs(row.acc[both] - ref.acc[both]))
    lines.append(f"  {row.method:<28} max |Δloss| {diff.max():.3g} (max rel "
                 f"{np.max(diff / np.abs(ref.loss[both])):.3g}) on {both.sum()} points, "
                 f"max |Δacc| {acc:.3g} pp  {'OK' if good else 'MISMATCH'}")
  return ok, lines


def _fmt(v: float, spec: str) -> str:
  return "-" if not np.isfinite(v) else format(v, spec)


def _table(rows: Sequence[Row], p: Problem, peak: float) -> list[str]:
  """The per-model table, one line per row (``|``-separated)."""
  base = {r.method: r.rate for r in rows}
  cells = [list(COLUMNS)]
  for r in rows:
    cells.append([r.method, _fmt(r.rate, ".3g"),
                  _fmt(r.rate / base.get("torch original", np.nan), ".2f"),
                  _fmt(r.rate / base.get("torch prebatched", np.nan), ".2f"),
                  _fmt(r.compile_s, ".2f"), _fmt(r.rss_mb, ".0f"),
                  _fmt(100.0 * p.flops_per_point * r.rate / peak, ".1f")])
  widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
  return [" | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                     enumerate(zip(row, widths))) for row in cells]


def _settings(text: str, parse: Callable[[str], Any]) -> list[Any]:
  return [parse(t.strip()) for t in text.split(",") if t.strip()]


def _chunk(t: str) -> int | None:
  if t == "auto":
    return None
  if not t.isdigit() or int(t) < 1:
    raise ConfigError(f"--chunk-size entries must be positive integers or 'auto', got {t!r}")
  return int(t)


def _point_mode(t: str) -> str:
  if t not in surface.POINT_MODES:
    raise ConfigError(f"--point-mode entries must be one of {', '.join(surface.POINT_MODES)}, "
                      f"got {t!r}")
  return t


def _bench_model(spec: Spec, args: argparse.Namespace, peak: float,
                 settings: list[tuple[str, int | None]]) -> tuple[bool, dict]:
  """Build the problem, run every method, check the loss grids, print the table."""
  p = _make_problem(spec, args.grid, args.seed)
  npts = len(p.xs) * len(p.ys)
  print(f"\n== {spec.name}: {spec.label}, {spec.samples} samples x {spec.input_shape}, batch "
        f"{spec.batch}, grid {args.grid}x{args.grid} ({npts} points), "
        f"{lm.num_params(p.variables):,} params, {p.flops_per_point / 1e9:.3g} GFLOP/point "
        f"(forward over the dataset; {p.head_flops_per_point / 1e9:.3g} without the first layer)")
  rows = []
  for mode, chunk in settings:
    tag = "" if len(settings) == 1 else f" [{mode}, chunk {chunk or 'auto'}]"
    for fn in (_jax_generic, _jax_model_aware):
      row = fn(p, mode, chunk, args.repeats)
      row.method += tag
      rows.append(row)
  if torch is not None:
    net, dirs = _load_torch_net(p)
    rows.append(_torch_original(p, net, dirs, args.torch_repeats))
    rows.append(_torch_prebatched(p, net, dirs, args.torch_repeats))
  ok, check = _check_rows(rows, args.rtol)
  print(f"check: loss grids against {rows[0].method} (rtol {args.rtol:g}, float32):")
  print("\n".join(check))
  if not ok:
    print(f"CHECK FAILED for {spec.name}: the methods disagree; no timing is reported")
    return False, {}
  print("\n".join(_table(rows, p, peak)))
  for r in rows:
    extra = [r.note] if r.note else []
    if np.isfinite(r.setup_s) and r.setup_s > 0:
      extra.append(f"first-layer precompute {r.setup_s:.2f} s")
    if "model-aware" in r.method:
      extra.append(f"arithmetic done {100.0 * p.head_flops_per_point * r.rate / peak:.1f}% "
                   "of peak")
    if extra:
      print(f"  {r.method}: {'; '.join(extra)}")
  exhaustive = None
  if args.exhaustive and settings == [("auto", None)]:
    exhaustive = _exhaustive(p, args.repeats)
  tuning_lines = _tuning_lines(rows, exhaustive) if settings == [("auto", None)] else []
  print("\n".join(tuning_lines))
  return True, {"model": spec.name, "points": npts, "flops_per_point": p.flops_per_point,
                "rows": [{"method": r.method, "points_per_s": r.rate, "points": r.points,
                          "seconds": r.seconds, "compile_s": r.compile_s,
                          "setup_s": r.setup_s, "peak_rss_mb": r.rss_mb, "note": r.note,
                          "tuning": r.tuning}
                         for r in rows],
                "exhaustive": [{"choice": list(c), "points_per_s": rate}
                               for c, rate in exhaustive or []],
                "tuning_summary": tuning_lines}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--quick", action="store_true",
                  help="CI size: 3x3 grid, small data (MLP: 1000 samples, batch 250), small matmul "
                  "probe; only the MLP unless --models says otherwise")
  ap.add_argument("--models", default=None,
                  help="comma list of mlp, cnn, resnet20 (default: all; mlp with --quick)")
  ap.add_argument("--grid", type=int, default=None,
                  help="N: an N x N grid on [-1, 1]^2 (default 6; 3 with --quick)")
  ap.add_argument("--threads", type=int, default=None,
                  help="torch threads (default: the usable cores)")
  ap.add_argument("--point-mode", default="auto",
                  help="comma list of auto, vmap, map: one pair of jax rows per setting")
  ap.add_argument("--chunk-size", default="auto", help="comma list of ints or 'auto'")
  ap.add_argument("--batch-size", type=int, default=None,
                  help="samples per batch for every method (default: per model)")
  ap.add_argument("--repeats", type=int, default=1, help="jax sweeps per row (best is kept)")
  ap.add_argument("--torch-repeats", type=int, default=1, help="torch loops per row (best is kept)")
  ap.add_argument("--torch-points", type=int, default=None,
                  help="at most this many grid points in the torch loops (default: per model)")
  ap.add_argument("--exhaustive", action=argparse.BooleanOptionalAction, default=True,
                  help="with the auto settings, also time the generic sweep at every fixed "
                  "(mode, chunk, batch) the tuner chooses from, and print the best against the "
                  "auto choice (--no-exhaustive skips it)")
  ap.add_argument("--rtol", type=float, default=1e-4, help="tolerance of the loss-grid check")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--json", default=None, help="also write the results to this JSON file")
  args = ap.parse_args(argv)
  if args.grid is None:
    args.grid = 3 if args.quick else 6
  if args.models is None:
    args.models = "mlp" if args.quick else ",".join(SPECS)
  for flag in ("grid", "repeats", "torch_repeats", "batch_size", "torch_points", "threads"):
    value = getattr(args, flag)
    if value is not None and value < 1:
      raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
  return args


def main(argv: Sequence[str] | None = None) -> int:
  try:
    args = _parse_args(argv)
    specs = QUICK if args.quick else SPECS
    names = _settings(args.models, str)
    bad = [n for n in names if n not in specs]
    if bad or not names:
      raise ConfigError(f"unknown --models entry {bad or args.models!r}; valid: {', '.join(specs)}")
    settings = list(itertools.product(_settings(args.point_mode, _point_mode),
                                      _settings(args.chunk_size, _chunk)))
  except LandscapeError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  threads = args.threads or cores
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}, "
        f"{jax.device_count()} device(s)); {cores} usable CPU cores")
  if torch is None:
    print("torch is not importable: the torch baselines are skipped "
          "(install the bench extra: pip install -e '.[bench]')")
  else:
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__}: {torch.get_num_threads()} threads")
  size, reps = (512, 3) if args.quick else (2048, 10)
  peaks = _matmul_peak(size, reps)
  peak = max(peaks.values())
  print(f"matmul peak ({size}x{size} float32, best of {reps}): "
        + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in peaks.items())
        + f" GFLOP/s; '% matmul peak' uses the best, {peak / 1e9:.1f}")
  print("peak RSS MB: growth of the resident set during the method (VmHWM after a "
        "clear_refs reset; jax includes compilation); points/s: steady state")
  ok, results = True, []
  for name in names:
    spec = specs[name]
    if args.torch_points is not None:
      spec = dataclasses.replace(spec, torch_points=args.torch_points)
    if args.batch_size is not None:
      spec = dataclasses.replace(spec, batch=args.batch_size)
    good, res = _bench_model(spec, args, peak, settings)
    ok &= good
    results.append(res)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"peak_flops": peaks, "torch_threads": threads if torch else None,
                 "models": results}, f, indent=1)
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
