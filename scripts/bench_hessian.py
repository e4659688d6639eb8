"""Benchmark: landscape's Hessian probes against PyHessian's power iteration (PyTorch).

On the MLP of the sweep benchmark (784-256-256-10, relu; random Gaussian inputs, random
labels, 10,000 samples; trained briefly with Adam so the point is near a minimum) the
script measures three things.

1. **Top-k eigenvalues.** ``landscape.hessian.eigenvalues(loss_fn, params, (x, y), k=5,
   which="largest", tol=1e-3, batch_size=1000)`` (Lanczos with full reorthogonalization and
   an early stop on the relative Ritz residuals) against a PyTorch re-implementation of
   PyHessian's ``hessian.eigenvalues(maxIter=100, tol=1e-3, top_n=5)`` (Yao et al. 2020):
   for each eigenvalue, power iteration on the full-dataset HVP, the iterate
   orthonormalized against the eigenvectors found so far (deflation), stopping when the
   Rayleigh quotient changes by less than ``tol`` relative to the last one (PyHessian's code
   line by line, with ``torch.autograd.grad(loss, params, create_graph=True)`` in place of
   its equivalent ``loss.backward(create_graph=True)``). PyHessian's
   ``dataloader_hv_product`` weights each batch's HVP by its size and divides by the number
   of samples: the Hessian of the dataset *mean*, our convention too, so the eigenvalues are
   comparable. Both see the same weights (Flax Dense kernel ``(in, out)`` -> torch Linear
   weight ``(out, in)``), data and batches; the script first checks that the two networks
   give the same loss and the same HVP. HVPs are counted exactly (ours: ``Eigen.num_hvps``;
   PyHessian: the power iterations over all ``k`` eigenvalues). Accuracy is measured
   against a high-accuracy reference, our Lanczos run (up to ``--ref-steps`` steps) from an
   independent start vector with ``tol=1e-8`` (its relative residuals are printed). The
   issue's target: our top-k reaches ``tol`` with at most 1/3 of the HVPs of power
   iteration.
2. **HVP cost.** One full-dataset (batched, jitted) forward-over-reverse HVP
   (``landscape.hessian.hvp_fn``) against one full-dataset gradient, steady state, median of
   ``--repeats`` runs (target: HVP <= 3x a gradient); then the three ways to compute an HVP
   (``scripts/_bench_models.py``, shared with ``bench_gpu.py``): forward-over-reverse
   (``jax.jvp`` of ``jax.grad``), reverse-over-forward (``jax.grad`` of ``jax.jvp``) and
   linearized (``jax.linearize(jax.grad(f), p)`` once: the first HVP and each further
   one), as multiples of a gradient, on three models: this MLP, the digits CNN
   (landscape's default ``cnn``, conv 16-32 + dense 64, on 512 digits samples) and
   ResNet-20 (256 random 32x32x3 inputs; ``--quick``: 128 digits, and ResNet-20 of width 4
   on 8 inputs), with the best method per model for one HVP and for many at one point;
   and, for context, torch's double-backward HVP and gradient.
3. **Curvature maps, before and after.** ``landscape.curvature.curvature_map`` on a
   ``--grid`` x ``--grid`` filter-normalized plane through the trained point, four ways: the
   map as it was (``--curv-steps`` Lanczos steps per point from a Gaussian start, every HVP
   forward-over-reverse from scratch), the same with the gradient linearized once per point
   (``jax.linearize``), and the converged map (each point to Ritz residuals <=
   ``--curv-tol``·|λmax|, at most ``--curv-cap`` steps) from a random and from the warm
   start (the centre's extreme eigenvectors): points/s (and the ratio to the first row),
   HVPs per point, the fraction of points converged, and the largest error of the extreme
   eigenvalues over the grid against a map converged to 1e-5.

4. **The centre probes of ``landscape run``**, before and after they shared work: the
   top/bottom-``k`` Lanczos run, a Hutch++ trace of 30 HVPs and SLQ with 4 runs of 30
   steps as three separate probes (230 HVPs) against ``landscape.hessian.probes`` (the
   eigenvalue run is an SLQ sample and the trace's sketch; SLQ starts are deflated trace
   probes), with the HVPs, seconds, largest Ritz residual, trace ± standard error and
   negative fraction of each. Target: <= 60% of the HVPs.

Seconds are wall-clock on whatever else the machine runs: noisy where it is shared. HVP
counts are not.

Usage::

  python scripts/bench_hessian.py                 # the full benchmark (~10 min on 2 cores, most
                                                  # of it the ~90 torch HVPs of power iteration)
  python scripts/bench_hessian.py --quick         # CI size: MLP 64-32-10 on 500 samples, ~60 s
  python scripts/bench_hessian.py --samples 2000 --k 10 --tol 1e-4 --threads 2

torch is the optional ``bench`` extra (``pip install -e '.[bench]'``); without it the
torch rows are skipped (and the HVP ratio with them) and the JAX measurements still run.

References:
  Yao, Gholami, Keutzer, Mahoney, "PyHessian: Neural networks through the lens of the
  Hessian", IEEE BigData 2020 (and its code, github.com/amirgholami/PyHessian).
  Lanczos, "An iteration method for the solution of the eigenvalue problem of linear
  differential and integral operators", J. Res. Nat. Bur. Standards 1950.
  Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 1994.
  Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets",
  NeurIPS 2018.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import landscape.models as lm
from landscape import curvature, directions, grid, hessian, losses, objective, train
from landscape.errors import ConfigError, LandscapeError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_models as bm  # noqa: E402  (scripts/_bench_models.py, shared with bench_gpu.py)

try:
  import torch
  import torch.nn.functional as F
  from torch import nn
except ImportError:  # torch is the optional "bench" extra
  torch = None

COLUMNS = ("method", "HVPs", "seconds", "eigenvalues max rel err", "ratio")
JAX_ROW = "landscape lanczos"
TORCH_ROW = "pyhessian power iteration (torch)"
TARGET_HVP_RATIO = 1.0 / 3.0     # ours / power iteration, at most
TARGET_HVP_PER_GRAD = 3.0        # one HVP costs at most this many gradients
CHECK_RTOL = 1e-4                # torch vs jax loss (float32 sums over the dataset)
HVP_CHECK_RTOL = 1e-3            # torch vs jax HVP, ‖Δ‖/‖Hv‖ (float32, two AD orders)


@dataclasses.dataclass(frozen=True)
class Spec:
  """The benchmarked network and data: MLP ``inputs-widths-10``, ``samples`` x ``inputs``."""
  inputs: int
  widths: tuple[int, ...]
  samples: int
  batch: int
  train_steps: int
  lr: float

  @property
  def label(self) -> str:
    return "MLP " + "-".join(str(n) for n in (self.inputs, *self.widths, 10))


FULL = Spec(784, (256, 256), 10_000, 1000, 300, 1e-3)
QUICK = Spec(64, (32,), 500, 250, 200, 3e-3)


@dataclasses.dataclass
class Row:
  """One top-k method: its HVPs, wall seconds and eigenvalues (descending)."""
  method: str
  hvps: int
  seconds: float
  values: np.ndarray
  err: float = float("nan")
  note: str = ""


@dataclasses.dataclass
class Problem:
  spec: Spec
  module: Any
  obj: objective.Objective
  x: np.ndarray
  y: np.ndarray
  num_params: int
  notes: list[str]

  @functools.cached_property
  def data(self) -> tuple[jax.Array, jax.Array]:
    """``(x, y)`` as device arrays (transferred once)."""
    return jnp.asarray(self.x), jnp.asarray(self.y)


# ----------------------------------------------------------------------------- problem


def _make_problem(spec: Spec, seed: int) -> Problem:
  """Random data and labels; the MLP trained ``spec.train_steps`` Adam steps from a random init."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((spec.samples, spec.inputs), dtype=np.float32)
  y = rng.integers(0, 10, size=spec.samples).astype(np.int32)
  module = lm.get("mlp", num_outputs=10, widths=spec.widths)
  variables = lm.init(module, jax.random.key(seed), x[:2])
  loss = losses.get("cross_entropy")
  t0 = time.perf_counter()
  params, first, last = _train(module, variables["params"], loss, x, y, spec, rng)
  train_s = time.perf_counter() - t0
  obj = objective.build(module, {"params": params}, loss, task="multiclass")
  full_loss = float(obj.loss_fn(obj.params, (jnp.asarray(x), jnp.asarray(y))))
  notes = [f"trained {spec.train_steps} Adam steps (lr {spec.lr:g}, batch {spec.batch}) in "
           f"{train_s:.1f} s: batch loss {first:.4f} -> {last:.4f}; full-data loss {full_loss:.4f}"
           if spec.train_steps else f"untrained (random init): full-data loss {full_loss:.4f}"]
  return Problem(spec, module, obj, x, y, lm.num_params(params), notes)


def _train(module, params, loss, x, y, spec: Spec, rng: np.random.Generator):
  """Adam on shuffled minibatches (``landscape.train.make_train_step``), one jitted scan."""
  if spec.train_steps == 0:
    return params, float("nan"), float("nan")
  tx = optax.adam(spec.lr)
  step = train.make_train_step(module, loss, tx)
  state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
  batch = min(spec.batch, spec.samples)
  per_epoch = spec.samples // batch
  epochs = math.ceil(spec.train_steps / per_epoch)
  order = np.concatenate([rng.permutation(spec.samples)[:per_epoch * batch].reshape(-1, batch)
                          for _ in range(epochs)])[:spec.train_steps]

  @jax.jit
  def run(state, xd, yd, idx):
    return jax.lax.scan(lambda s, i: step(s, (xd[i], yd[i])), state, idx)

  state, batch_losses = run(state, jnp.asarray(x), jnp.asarray(y), jnp.asarray(order))
  batch_losses = np.asarray(batch_losses)
  return state["params"], float(batch_losses[0]), float(batch_losses[-1])


# ----------------------------------------------------------------------------- timing


_block = bm.block
_median_seconds = bm.median_seconds
_random_like = bm.random_like


def _max_rel_err(values: np.ndarray, ref: np.ndarray) -> float:
  """``max_i |v_i − r_i| / |r_i|`` with both sorted descending."""
  v = np.sort(np.asarray(values, np.float64))[::-1]
  r = np.sort(np.asarray(ref, np.float64))[::-1][:len(v)]
  return float(np.max(np.abs(v - r) / np.abs(r)))


# ----------------------------------------------------------------------------- jax top-k


def _jax_lanczos(p: Problem, args) -> tuple[Row, float]:
  """Our top-k as a user calls it: one (compiling) call, then the median of ``--repeats`` calls."""
  def run():
    return _block(hessian.eigenvalues(p.obj.loss_fn, p.obj.params, p.data, k=args.k,
                                      which="largest", key=jax.random.key(args.seed + 1),
                                      tol=args.tol, batch_size=p.spec.batch))
  t0 = time.perf_counter()
  eig = run()
  first_s = time.perf_counter() - t0
  seconds = _median_seconds(run, args.repeats, warmup=False)
  note = (f"first call {first_s:.2f} s (compilation included); max residual/abs(λ) "
          f"{float(np.max(np.asarray(eig.residuals) / np.abs(np.asarray(eig.values)))):.2g}; "
          "seconds include the finite-loss check (one gradient)")
  return Row(JAX_ROW, eig.num_hvps, seconds, np.asarray(eig.values, np.float64), note=note), first_s


def _reference(p: Problem, args) -> tuple[np.ndarray, str]:
  """Top-k from up to ``--ref-steps`` Lanczos steps, an independent start, ``tol=1e-8``.

  With ``--ref-steps`` unset the cap is ``eigenvalues``' default (80 for k=5), so the
  reference reuses the compiled function of the measured run.
  """
  t0 = time.perf_counter()
  eig = hessian.eigenvalues(p.obj.loss_fn, p.obj.params, p.data, k=args.k, which="largest",
                            key=jax.random.key(args.seed + 2), num_steps=args.ref_steps,
                            tol=1e-8, batch_size=p.spec.batch)
  values = np.asarray(eig.values, np.float64)
  rel = np.asarray(eig.residuals, np.float64) / np.abs(values)
  cap = args.ref_steps or "default"
  line = (f"reference: landscape lanczos, {eig.num_hvps} HVPs (num_steps={cap}, "
          f"tol=1e-8, independent start), {time.perf_counter() - t0:.1f} s; max residual/abs(λ) "
          f"{rel.max():.2g}; top-{args.k}: {np.array2string(values, precision=6)}")
  return values, line


# ----------------------------------------------------------------------------- torch baseline


def _torch_net(p: Problem):
  """The torch twin of the trained Flax MLP (Dense kernel ``(in, out)`` -> weight ``(out, in)``)."""
  params = p.obj.params
  names = ["stem_dense"] + [f"dense_{i}" for i in range(len(p.spec.widths))]
  layers = nn.ModuleList()
  for name in names:
    kernel = np.asarray(params[name]["kernel"], np.float32)
    layer = nn.Linear(*kernel.shape)
    with torch.no_grad():
      layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
      layer.bias.copy_(torch.from_numpy(np.array(params[name]["bias"], np.float32)))
    layers.append(layer)

  class MLP(nn.Module):
    def __init__(self):
      super().__init__()
      self.layers = layers

    def forward(self, x):
      z = self.layers[0](x)
      for layer in self.layers[1:]:
        z = layer(F.relu(z))
      return z

  return MLP().eval()


def _torch_batches(p: Problem) -> list[tuple[Any, Any]]:
  """The data as a list of ``(x, y)`` batches, as PyHessian's ``dataloader`` (no shuffling)."""
  x, y = torch.from_numpy(p.x), torch.from_numpy(p.y.astype(np.int64))
  return list(zip(x.split(p.spec.batch), y.split(p.spec.batch)))


def _group_product(xs, ys):
  return sum(torch.sum(a * b) for a, b in zip(xs, ys))


def _normalization(v):
  """PyHessian ``utils.normalization``: ``v / (‖v‖ + 1e-6)``."""
  s = float(_group_product(v, v)) ** 0.5
  return [vi / (s + 1e-6) for vi in v]


def _orthnormal(w, v_list):
  """PyHessian ``utils.orthnormal``: modified Gram–Schmidt against ``v_list``, then normalize."""
  w = [wi.clone() for wi in w]
  for v in v_list:
    c = _group_product(w, v)
    w = [wi - c * vi for wi, vi in zip(w, v)]
  return _normalization(w)


class _TorchHessian:
  """PyHessian's ``hessian`` class on a list of batches (``full_dataset=True``), CPU."""

  def __init__(self, net, batches):
    self.net, self.batches = net, batches
    self.params = [q for q in net.parameters() if q.requires_grad]
    self.num_hvps = 0

  def grad(self):
    """Full-dataset mean gradient (for the HVP/gradient cost comparison)."""
    total = [torch.zeros_like(q) for q in self.params]
    n = 0
    for xb, yb in self.batches:
      g = torch.autograd.grad(F.cross_entropy(self.net(xb), yb), self.params)
      total = [t + gi * xb.shape[0] for t, gi in zip(total, g)]
      n += xb.shape[0]
    return [t / n for t in total]

  def dataloader_hv_product(self, v):
    """``(vᵀ H v, H v)``: per-batch double-backward HVPs weighted by batch size, over ``N``."""
    self.num_hvps += 1
    thv = [torch.zeros_like(q) for q in self.params]
    num_data = 0
    for xb, yb in self.batches:
      loss = F.cross_entropy(self.net(xb), yb)
      grads = torch.autograd.grad(loss, self.params, create_graph=True)
      hv = torch.autograd.grad(grads, self.params, grad_outputs=v, only_inputs=True,
                               retain_graph=False)
      thv = [t + h * float(xb.shape[0]) for t, h in zip(thv, hv)]
      num_data += xb.shape[0]
    thv = [t / float(num_data) for t in thv]
    return float(_group_product(thv, v)), thv

  def eigenvalues(self, max_iter: int = 100, tol: float = 1e-3, top_n: int = 1):
    """PyHessian ``hessian.eigenvalues``: power iteration with deflation, ``top_n`` values."""
    eigenvalues, eigenvectors = [], []
    while len(eigenvalues) < top_n:
      eigenvalue = None
      v = _normalization([torch.randn(q.size()) for q in self.params])
      for _ in range(max_iter):
        v = _orthnormal(v, eigenvectors)
        tmp, hv = self.dataloader_hv_product(v)
        v = _normalization(hv)
        if eigenvalue is None:
          eigenvalue = tmp
        elif abs(eigenvalue - tmp) / (abs(eigenvalue) + 1e-6) < tol:
          break
        else:
          eigenvalue = tmp
      eigenvalues.append(eigenvalue)
      eigenvectors.append(v)
    return eigenvalues, eigenvectors


def _torch_check(p: Problem, th: _TorchHessian, seed: int) -> tuple[bool, list[str]]:
  """The torch twin computes the same loss and the same HVP as the JAX objective."""
  data = p.data
  jax_loss = float(p.obj.loss_fn(p.obj.params, data))
  with torch.no_grad():
    torch_loss = sum(float(F.cross_entropy(th.net(xb), yb, reduction="sum"))
                     for xb, yb in th.batches) / p.spec.samples
  loss_rel = abs(torch_loss - jax_loss) / abs(jax_loss)
  v = _random_like(p.obj.params, np.random.default_rng(seed))
  hv = hessian.hvp(p.obj.loss_fn, p.obj.params, v, data, batch_size=p.spec.batch)
  names = ["stem_dense"] + [f"dense_{i}" for i in range(len(p.spec.widths))]
  tv = []
  for name in names:   # nn.Linear order: weight (out, in), bias
    tv += [torch.from_numpy(np.ascontiguousarray(np.asarray(v[name]["kernel"]).T)),
           torch.from_numpy(np.asarray(v[name]["bias"]).copy())]
  _, thv = th.dataloader_hv_product(tv)
  th.num_hvps = 0
  jhv = np.concatenate([np.asarray(hv[n][leaf]).T.ravel() if leaf == "kernel"
                        else np.asarray(hv[n][leaf]).ravel()
                        for n in names for leaf in ("kernel", "bias")])
  thv = np.concatenate([t.numpy().ravel() for t in thv])
  hv_rel = float(np.linalg.norm(thv - jhv) / np.linalg.norm(jhv))
  ok_loss, ok_hv = loss_rel <= CHECK_RTOL, hv_rel <= HVP_CHECK_RTOL
  return ok_loss and ok_hv, [
      f"  loss: jax {jax_loss:.6f}, torch {torch_loss:.6f}, rel diff {loss_rel:.2g} "
      f"(rtol {CHECK_RTOL:g}) {'OK' if ok_loss else 'MISMATCH'}",
      f"  HVP of a random vector: ‖Δ‖/‖Hv‖ {hv_rel:.2g} (rtol {HVP_CHECK_RTOL:g}) "
      f"{'OK' if ok_hv else 'MISMATCH'}"]


def _torch_power(th: _TorchHessian, args) -> Row:
  """PyHessian's top-k (power iteration with deflation), timed once after one warm-up HVP."""
  th.dataloader_hv_product(_normalization([torch.randn(q.size()) for q in th.params]))
  th.num_hvps = 0
  torch.manual_seed(args.seed)
  t0 = time.perf_counter()
  values, _ = th.eigenvalues(max_iter=args.max_iter, tol=args.tol, top_n=args.k)
  seconds = time.perf_counter() - t0
  note = f"maxIter={args.max_iter}, tol={args.tol:g}, top_n={args.k}; one run (no compilation)"
  return Row(TORCH_ROW, th.num_hvps, seconds, np.sort(np.asarray(values, np.float64))[::-1],
             note=note)


# ----------------------------------------------------------------------------- HVP cost


def _hvp_cost(p: Problem, args, th: _TorchHessian | None) -> tuple[dict, list[str]]:
  """Full-dataset gradient, landscape's HVP and the three HVP methods of
  ``_bench_models.hvp_cost`` (forward-over-reverse, reverse-over-forward, linearized):
  median seconds on the trained MLP, then the same methods on the digits CNN and ResNet-20."""
  bs = p.spec.batch
  params, data = p.obj.params, p.data
  v = _random_like(params, np.random.default_rng(args.seed + 3))
  mlp = bm.hvp_cost(p.obj.loss_fn, params, data, bs, args.repeats, seed=args.seed + 3,
                    label=p.spec.label, num_params=p.num_params)
  hvp_j = jax.jit(lambda q, u, d: hessian.hvp_fn(p.obj.loss_fn, d, batch_size=bs)(q, u))
  hvp_s = _median_seconds(lambda: _block(hvp_j(params, v, data)), args.repeats)
  g = mlp.grad_s
  ratio = hvp_s / g
  fr, rf, l1, ln = (mlp.seconds[m] for m in bm.METHODS)
  lines = [
      f"gradient (full dataset, batch {bs}, jit)      {g * 1e3:9.2f} ms",
      f"HVP forward-over-reverse (hessian.hvp_fn)     {hvp_s * 1e3:9.2f} ms  "
      f"= {ratio:.2f}x a gradient (target <= {TARGET_HVP_PER_GRAD:g}x): "
      f"{'PASS' if ratio <= TARGET_HVP_PER_GRAD else 'FAIL'}",
      f"HVP forward-over-reverse (jax.jvp of grad)    {fr * 1e3:9.2f} ms  = {fr / g:.2f}x a gradient",
      f"HVP reverse-over-forward (grad of jax.jvp)    {rf * 1e3:9.2f} ms  = {rf / g:.2f}x a gradient",
      f"HVP jax.linearize, first (linearize + apply)  {l1 * 1e3:9.2f} ms  = {l1 / g:.2f}x a gradient",
      f"HVP jax.linearize, each further (apply)       {ln * 1e3:9.2f} ms  = {ln / g:.2f}x a gradient"
      " (residuals of the whole dataset kept in memory)"]
  out = {"grad_s": g, "hvp_s": hvp_s, "hvp_per_grad": ratio, "linearize_first_s": l1,
         "linearize_next_s": ln, "forward_over_reverse_s": fr, "reverse_over_forward_s": rf}
  if th is not None:
    tv = _normalization([torch.randn(q.size()) for q in th.params])
    tg = _median_seconds(th.grad, args.repeats)
    thv = _median_seconds(lambda: th.dataloader_hv_product(tv), args.repeats)
    th.num_hvps = 0
    lines += [f"torch gradient                                {tg * 1e3:9.2f} ms",
              f"torch HVP (double backward, as PyHessian)     {thv * 1e3:9.2f} ms  "
              f"= {thv / tg:.2f}x a torch gradient, {thv / hvp_s:.2f}x the jax HVP"]
    out.update(torch_grad_s=tg, torch_hvp_s=thv)
  costs = [mlp] + [bm.hvp_cost_of(bm.build(spec, args.seed), args.repeats, seed=args.seed + 3)
                   for spec in (bm.HVP_MODELS_QUICK if args.quick else bm.HVP_MODELS)]
  lines += ["", "HVP / gradient cost by model and method (one full-dataset gradient = 1; "
            "linearized 1st = jax.linearize + one apply):", *bm.hvp_table(costs)]
  lines += [f"  best for {c.label}: one HVP {c.best_one}; many HVPs at one point {c.best_many}"
            for c in costs]
  out["by_model"] = [c.as_dict() for c in costs]
  return out, lines


# ----------------------------------------------------------------------------- curvature map


def _curvature(p: Problem, args, ref_top: float, hvp_s: float) -> tuple[dict, list[str]]:
  """Curvature maps on a ``grid x grid`` filter-normalized plane, before and after.

  Rows: the map as it was (``--curv-steps`` Lanczos steps per point from a Gaussian start,
  each HVP forward-over-reverse from scratch), the same with the gradient linearized once
  per point, and the converged map (each point to residuals <= ``--curv-tol``·|λmax|, at
  most ``--curv-cap`` steps, from a random or the warm start). Accuracy: the largest error
  of max_eig and min_eig over the grid, relative to |λmax|, against a reference map run to
  residuals <= 1e-5·|λmax| (at most ``--curv-ref-steps`` steps).
  """
  key = jax.random.key(args.seed + 4)
  dirs = directions.random_plane(key, p.obj.params, norm="filter", ignore="biasbn")
  xs = np.linspace(-1.0, 1.0, args.grid) if args.grid > 1 else np.zeros(1)
  mkey = jax.random.fold_in(key, 1)

  def run(**kw):
    return curvature.curvature_map(p.obj.loss_fn, p.obj.params, dirs, xs, xs, p.data, key=mkey,
                                   batch_size=p.spec.batch, point_mode=args.point_mode, **kw)

  ref = run(num_steps=args.curv_ref_steps, tol=1e-5, warm_start=True)
  scale = np.abs(ref.values["max_eig"])
  rows = [("fixed steps (before)", dict(num_steps=args.curv_steps, linearize=False)),
          ("fixed steps, linearized", dict(num_steps=args.curv_steps)),
          ("converged, random start", dict(num_steps=args.curv_cap, tol=args.curv_tol)),
          ("converged, warm start", dict(num_steps=args.curv_cap, tol=args.curv_tol,
                                         warm_start=True))]
  lines = [f"curvature maps: {args.grid}x{args.grid} grid, full dataset, converged = residuals "
           f"<= {args.curv_tol:g}·|λmax| (cap {args.curv_cap} steps); error = max over the grid "
           f"of |Δλ|/|λmax| against a map converged to 1e-5 (reference: "
           f"{np.mean(ref.values['eig_steps']):.1f} steps/point)",
           f"{'map':<26}| points/s | vs before | HVPs/point | converged | max error | compile s"]
  out = {"rows": []}
  base = None
  for name, kw in rows:
    m = run(**kw)
    err = max(np.nanmax(np.abs(m.values[e] - ref.values[e]) / scale)
              for e in ("max_eig", "min_eig"))
    conv = float(np.mean(grid.eig_converged(m.values, args.curv_tol)))
    steps = float(np.mean(m.values["eig_steps"]))
    base = m.points_per_second if base is None else base
    lines.append(f"{name:<26}| {m.points_per_second:8.3g} | {m.points_per_second / base:9.2f} | "
                 f"{steps:10.1f} | {100 * conv:8.0f}% | {err:9.2g} | {m.compile_seconds:9.2f}")
    out["rows"].append({"map": name, "points_per_s": m.points_per_second, "hvps_per_point": steps,
                        "converged_fraction": conv, "max_rel_error": float(err),
                        "compile_s": m.compile_seconds, "sweep_s": m.sweep_seconds})
  c = args.grid // 2
  if args.grid % 2 == 1 and abs(xs[c]) < 1e-12:   # the grid's centre is the trained point
    lmax = float(ref.values["max_eig"][c, c])
    lines.append(f"  centre: reference max_eig {lmax:.6g} vs the probe's λ_max {ref_top:.6g} "
                 f"(rel diff {abs(lmax - ref_top) / abs(ref_top):.2g})")
  lines.append(f"  one standalone HVP: {hvp_s * 1e3:.2f} ms")
  return out, lines


# ----------------------------------------------------------------------------- report


def _centre_probes(p: Problem, args) -> tuple[dict, list[str]]:
  """``landscape run``'s centre probes (top/bottom-5, Hutch++ trace of 30 HVPs, SLQ 4x30)
  as separate probes (before) and as :func:`landscape.hessian.probes` (sharing work)."""
  loss_fn, params, data = p.obj.loss_fn, p.obj.params, p.data
  key, batch = jax.random.key(args.seed), p.spec.batch
  runs, steps, samples = (2, 10, 12) if args.quick else (4, 30, 30)
  out = {}
  t0 = time.perf_counter()
  eig = hessian.eigenvalues(loss_fn, params, data, k=args.k, which="both", key=key,
                            batch_size=batch, hvp="fwd-rev")
  tr = hessian.trace(loss_fn, params, data, key=jax.random.fold_in(key, 1), method="hutch++",
                     num_samples=samples, batch_size=batch)
  dens = hessian.density(loss_fn, params, data, key=jax.random.fold_in(key, 2), num_runs=runs,
                         num_steps=steps, batch_size=batch, hvp="fwd-rev")
  sep_s = time.perf_counter() - t0
  out["separate"] = dict(hvps=eig[0].num_hvps + samples + dens.num_hvps, seconds=sep_s,
                         residual=max(float(np.max(e.residuals)) for e in eig),
                         trace=float(tr[0]), stderr=float(tr[1]),
                         negative_fraction=hessian.negative_fraction(dens))
  t0 = time.perf_counter()
  res = hessian.probes(loss_fn, params, data, key=key, k=args.k, trace_samples=samples,
                       density_runs=runs, density_steps=steps, batch_size=batch)
  out["shared"] = dict(hvps=res.num_hvps, seconds=time.perf_counter() - t0,
                       residual=max(float(np.max(e.residuals)) for e in res.eigen),
                       trace=float(res.trace[0]), stderr=float(res.trace[1]),
                       negative_fraction=hessian.negative_fraction(res.density), hvp=res.hvp)
  top = [np.asarray(e.values) for e in eig], [np.asarray(e.values) for e in res.eigen]
  out["eig_max_rel_diff"] = float(max(np.max(np.abs(a - b) / np.abs(a)) for a, b in zip(*top)))
  ratio = out["shared"]["hvps"] / out["separate"]["hvps"]
  out["hvp_ratio"] = ratio
  lines = [f"centre probes of `landscape run` (top/bottom-{args.k} Lanczos, Hutch++ trace of "
           f"{samples} HVPs, SLQ {runs}x{steps}):",
           f"  {'':9}{'HVPs':>6}{'seconds':>9}{'max Ritz residual':>19}{'trace ± stderr':>22}"
           f"{'neg. fraction':>15}"]
  for name in ("separate", "shared"):
    r = out[name]
    lines.append(f"  {name:9}{r['hvps']:>6}{r['seconds']:>9.2f}{r['residual']:>19.2g}"
                 f"{r['trace']:>13.5g} ± {r['stderr']:<7.2g}{r['negative_fraction']:>14.4f}")
  lines.append(f"  shared/separate HVPs = {ratio:.2f} (target <= 0.60: "
               f"{'PASS' if ratio <= 0.6 else 'FAIL'}); eigenvalues agree to "
               f"{out['eig_max_rel_diff']:.1e} relative; shared HVPs by {res.hvp}")
  return out, lines


def _fmt(v: float, spec: str) -> str:
  return "-" if not np.isfinite(v) else format(v, spec)


def _table(rows: Sequence[Row], base_hvps: float) -> list[str]:
  """``method | HVPs | seconds | eigenvalues max rel err | ratio`` (ratio: HVPs / baseline's)."""
  cells = [list(COLUMNS)]
  for r in rows:
    cells.append([r.method, str(r.hvps), _fmt(r.seconds, ".3g"), _fmt(r.err, ".2g"),
                  _fmt(r.hvps / base_hvps, ".2f")])
  widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
  return [" | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                     enumerate(zip(row, widths))) for row in cells]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--quick", action="store_true",
                  help=f"CI size: {QUICK.label} on {QUICK.samples} samples (batch {QUICK.batch})")
  ap.add_argument("--samples", type=int, default=None,
                  help=f"number of samples (default {FULL.samples}; {QUICK.samples} with --quick)")
  ap.add_argument("--batch-size", type=int, default=None,
                  help="samples per batch in every HVP and gradient (default 1000; 250 quick)")
  ap.add_argument("--k", type=int, default=5, help="number of top eigenvalues")
  ap.add_argument("--tol", type=float, default=1e-3,
                  help="relative tolerance of both top-k methods")
  ap.add_argument("--max-iter", type=int, default=100, help="PyHessian's maxIter per eigenvalue")
  ap.add_argument("--ref-steps", type=int, default=None,
                  help="Lanczos steps (cap) of the high-accuracy reference (default: the cap of "
                  "eigenvalues, min(dim, max(2k + 60, 80)), which shares the compilation)")
  ap.add_argument("--train-steps", type=int, default=None, help="Adam steps before measuring")
  ap.add_argument("--threads", type=int, default=None,
                  help="torch threads (default: the usable cores; 1 with --quick, where the "
                  "tiny layers gain nothing from threads and lose much on a loaded machine)")
  ap.add_argument("--repeats", type=int, default=None,
                  help="timed runs per JAX measurement, median kept (default 5; 3 quick)")
  ap.add_argument("--grid", type=int, default=3, help="curvature map on a grid x grid plane")
  ap.add_argument("--curv-steps", type=int, default=16,
                  help="Lanczos steps per point of the fixed-step (old) curvature map")
  ap.add_argument("--curv-tol", type=float, default=1e-2,
                  help="residual tolerance (relative to |λmax|) of the converged map")
  ap.add_argument("--curv-cap", type=int, default=64, help="step cap of the converged map")
  ap.add_argument("--curv-ref-steps", type=int, default=150,
                  help="step cap of the reference map (converged to 1e-5)")
  ap.add_argument("--point-mode", default="auto", choices=("auto", "vmap", "map"),
                  help="how curvature_map evaluates a chunk of points (vmap or lax.map)")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--json", default=None, help="also write the results to this JSON file")
  args = ap.parse_args(argv)
  base = QUICK if args.quick else FULL
  args.spec = dataclasses.replace(
      base, samples=args.samples or base.samples, batch=args.batch_size or base.batch,
      train_steps=base.train_steps if args.train_steps is None else args.train_steps)
  if args.repeats is None:
    args.repeats = 3 if args.quick else 5
  for flag, low in (("samples", 1), ("batch_size", 1), ("k", 1), ("max_iter", 1),
                    ("ref_steps", 1), ("train_steps", 0), ("threads", 1), ("repeats", 1),
                    ("grid", 1), ("curv_steps", 1), ("curv_cap", 1),
                    ("curv_ref_steps", 1)):
    value = getattr(args, flag)
    if value is not None and value < low:
      raise ConfigError(f"--{flag.replace('_', '-')} must be >= {low}, got {value}")
  if not (0 < args.tol < 1):
    raise ConfigError(f"--tol must be in (0, 1), got {args.tol}; pass e.g. --tol 1e-3")
  if not (0 < args.curv_tol < 1):
    raise ConfigError(f"--curv-tol must be in (0, 1), got {args.curv_tol}; pass e.g. 1e-2")
  if args.ref_steps is not None and args.ref_steps < args.k:
    raise ConfigError(f"--ref-steps ({args.ref_steps}) must be >= --k ({args.k})")
  return args


def main(argv: Sequence[str] | None = None) -> int:
  try:
    args = _parse_args(argv)
  except LandscapeError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  spec = args.spec
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}); "
        f"{cores} usable CPU cores")
  if torch is None:
    print("torch is not importable: the PyHessian baseline is skipped "
          "(install the bench extra: pip install -e '.[bench]')")
  else:
    torch.set_num_threads(args.threads or (1 if args.quick else cores))
    print(f"torch {torch.__version__}: {torch.get_num_threads()} threads")
  p = _make_problem(spec, args.seed)
  print(f"\n== {spec.label}, relu, {spec.samples} random samples, random labels, "
        f"{p.num_params:,} params, batch {spec.batch}")
  print("\n".join(p.notes))

  # -- 1. top-k
  try:
    jrow, first_s = _jax_lanczos(p, args)
    ref, ref_line = _reference(p, args)
  except LandscapeError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(ref_line)
  jrow.err = _max_rel_err(jrow.values, ref)
  rows, ok, th = [jrow], True, None
  if torch is not None:
    torch.manual_seed(args.seed)
    th = _TorchHessian(_torch_net(p), _torch_batches(p))
    good, check = _torch_check(p, th, args.seed + 5)
    print("check: torch twin against the JAX objective:")
    print("\n".join(check))
    if not good:
      print("CHECK FAILED: the torch baseline computes a different function; no comparison")
      return 1
    trow = _torch_power(th, args)
    trow.err = _max_rel_err(trow.values, ref)
    rows.append(trow)
  base = rows[-1].hvps if th is not None else float("nan")
  print(f"\ntop-{args.k} eigenvalues at relative tolerance {args.tol:g} (baseline: PyHessian "
        "power iteration with deflation, Yao et al. 2020; errors vs the reference)")
  print("\n".join(_table(rows, base)))
  for r in rows:
    print(f"  {r.method}: {np.array2string(r.values, precision=6)}; {r.note}")
  reached = jrow.err <= args.tol
  ok &= reached
  print(f"{JAX_ROW} top-{args.k} max rel err {jrow.err:.2g} vs tolerance {args.tol:g}: "
        f"{'REACHED' if reached else 'NOT REACHED'}")
  if th is not None:
    ratio = jrow.hvps / base
    print(f"HVP ratio {JAX_ROW} / pyhessian = {jrow.hvps}/{base} = {ratio:.3f} "
          f"(target <= 1/3): {'PASS' if ratio <= TARGET_HVP_RATIO else 'FAIL'}")
    if rows[-1].err > args.tol:
      print(f"  note: power iteration stopped on its own rule with max rel err "
            f"{rows[-1].err:.2g} > {args.tol:g}")
  else:
    print("HVP ratio: - (no torch baseline)")

  # -- 2. HVP cost
  print("\nHVP vs gradient cost (full dataset, steady state, median of "
        f"{args.repeats} runs after a warm-up):")
  cost, lines = _hvp_cost(p, args, th)
  print("\n".join(lines))

  # -- 3. curvature map
  print()
  curv, lines = _curvature(p, args, float(ref[0]), cost["hvp_s"])
  print("\n".join(lines))

  # -- 4. the centre probes, separate and shared
  print()
  centre, lines = _centre_probes(p, args)
  print("\n".join(lines))

  if args.json:
    with open(args.json, "w") as f:
      json.dump({"model": spec.label, "samples": spec.samples, "batch": spec.batch,
                 "num_params": p.num_params, "k": args.k, "tol": args.tol,
                 "reference": ref.tolist(),
                 "topk": [{"method": r.method, "hvps": r.hvps, "seconds": r.seconds,
                           "values": r.values.tolist(), "max_rel_err": r.err} for r in rows],
                 "jax_first_call_s": first_s, "hvp_cost": cost, "curvature_map": curv,
                 "centre_probes": centre}, f,
                indent=1)
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
