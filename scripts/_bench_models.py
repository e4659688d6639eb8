"""Shared pieces of ``bench_hessian.py`` and ``bench_gpu.py``: the machine, the benchmark
models, and the HVP-versus-gradient cost measurement.

Models (:class:`ModelSpec`, built by :func:`build`): the MLP 784-256-256-10 of the sweep
benchmark on random Gaussian inputs, the digits CNN (landscape's default ``cnn`` model,
conv 16-32 + dense 64, on scikit-learn's 8x8 digits, standardized) and ResNet-20/56
(BatchNorm in eval mode) on random CIFAR-shaped 32x32x3 inputs; random labels except on
digits; cross-entropy through ``landscape.objective.build``.

HVP methods (:func:`hvp_cost`), each over the whole dataset in ``batch``-sized batches
(``landscape.batching.batched_mean``), jitted, steady state:

* forward-over-reverse: ``jax.jvp(jax.grad(f), (p,), (v,))[1]`` per batch (Pearlmutter);
* reverse-over-forward: ``jax.grad(lambda p: jax.jvp(f, (p,), (v,))[1])(p)`` per batch;
* linearized: ``jax.linearize(jax.grad(F), p)`` once (``F`` the dataset mean; the first
  HVP pays for the linearization: forward and backward pass, residuals of the whole
  dataset kept in memory), then each further HVP applies the linear map.

All are reported as multiples of one full-dataset gradient.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import landscape.models as lm
from landscape import losses, objective
from landscape.batching import batched_mean

METHODS = ("forward-over-reverse", "reverse-over-forward", "linearized, first",
           "linearized, each further")


# ----------------------------------------------------------------------------- machine


def cpu_description() -> str:
  """``lscpu``'s model name and its vector/matrix flags (avx2, fma, avx512*, amx*)."""
  name, flags = platform.processor() or platform.machine(), []
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
          name = value.strip()
        elif key.strip() == "flags":
          flags = value.split()
          break
  except OSError:
    pass
  keep = [f for f in flags if f in ("avx2", "fma") or f.startswith(("avx512", "amx"))]
  return f"{name}; flags: {' '.join(keep) or '-'}"


def usable_cores() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def block(tree: Any) -> Any:
  return jax.block_until_ready(tree)


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: bool = True) -> float:
  """Median wall time of ``fn()`` over ``repeats`` runs, after one untimed warm-up run."""
  if warmup:
    fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def random_like(params: Any, rng: np.random.Generator) -> Any:
  return jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape), a.dtype), params)


# ----------------------------------------------------------------------------- models


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A benchmark model: registry name and kwargs, its data, the batch of every pass."""
  key: str
  label: str
  registry: str
  kwargs: dict
  data: str                      # "random" (Gaussian inputs, random labels) or "digits"
  input_shape: tuple[int, ...]
  samples: int
  batch: int


MLP = ModelSpec("mlp", "MLP 784-256-256-10", "mlp", {"widths": (256, 256)}, "random", (784,),
                10_000, 1000)
DIGITS_CNN = ModelSpec("cnn", "digits CNN conv 16-32, dense 64", "cnn",
                       {"features": (16, 32), "dense": 64}, "digits", (8, 8, 1), 512, 256)
RESNET20 = ModelSpec("resnet20", "ResNet-20", "resnet20", {}, "random", (32, 32, 3), 256, 128)
RESNET56 = ModelSpec("resnet56", "ResNet-56", "resnet56", {}, "random", (32, 32, 3), 256, 128)


def quick(spec: ModelSpec, samples: int, batch: int, **kwargs) -> ModelSpec:
  """``spec`` at a smaller size (``kwargs`` replace model kwargs; the label says so)."""
  label = spec.label
  if kwargs:
    label += " (" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"
  return dataclasses.replace(spec, label=label, kwargs={**spec.kwargs, **kwargs},
                             samples=samples, batch=batch)


# the HVP table's models besides the MLP: full size, and --quick size (CPU, seconds)
HVP_MODELS = (DIGITS_CNN, RESNET20)
HVP_MODELS_QUICK = (quick(DIGITS_CNN, 128, 128), quick(RESNET20, 8, 8, width=4))


@dataclasses.dataclass
class Bench:
  """A built model: module, variables, objective and the data as device arrays."""
  spec: ModelSpec
  module: Any
  variables: dict
  obj: objective.Objective
  data: tuple[jax.Array, jax.Array]
  num_params: int


def _inputs(spec: ModelSpec, seed: int) -> tuple[np.ndarray, np.ndarray]:
  if spec.data == "digits":
    from landscape import data as ldata
    ds = ldata.load("digits", seed=seed, standardize=True)
    x = np.asarray(ds.x_train, np.float32)
    y = np.asarray(ds.y_train, np.int32)
    reps = -(-spec.samples // len(x))
    return np.concatenate([x] * reps)[:spec.samples], np.concatenate([y] * reps)[:spec.samples]
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((spec.samples, *spec.input_shape), dtype=np.float32)
  return x, rng.integers(0, 10, size=spec.samples).astype(np.int32)


def build(spec: ModelSpec, seed: int = 0) -> Bench:
  """The model at a random init (BatchNorm in eval mode), cross-entropy, its data."""
  x, y = _inputs(spec, seed)
  module = lm.get(spec.registry, num_outputs=10, **spec.kwargs)
  variables = lm.init(module, jax.random.key(seed), x[:2])
  obj = objective.build(module, variables, losses.get("cross_entropy"), task="multiclass")
  return Bench(spec, module, variables, obj, (jnp.asarray(x), jnp.asarray(y)),
               lm.num_params(variables["params"]))


def forward_flops(loss_fn: Callable, params: Any, data: tuple, batch: int,
                  fallback: Callable[[], float] | None = None) -> tuple[float, str]:
  """FLOPs of ``loss_fn`` over all of ``data``: XLA's ``cost_analysis`` of one batch
  times the number of batches; ``fallback()`` (analytic) where XLA gives none."""
  n = int(data[0].shape[0])
  b = min(batch, n)
  one = jax.tree.map(lambda a: a[:b], data)
  try:
    cost = jax.jit(loss_fn).lower(params, one).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
      cost = cost[0] if cost else {}
    flops = float((cost or {}).get("flops", 0.0))
  except Exception:   # noqa: BLE001 -- cost analysis is optional per backend
    flops = 0.0
  if flops > 0:
    return flops * n / b, "XLA cost_analysis"
  if fallback is not None:
    return float(fallback()), "analytic (Dense/Conv layers)"
  return float("nan"), "unavailable"


# ----------------------------------------------------------------------------- HVP cost


@dataclasses.dataclass
class HvpCost:
  """Median seconds of one full-dataset gradient and of each HVP method."""
  label: str
  num_params: int
  samples: int
  grad_s: float
  seconds: dict[str, float]      # METHODS -> seconds

  def ratio(self, method: str) -> float:
    return self.seconds[method] / self.grad_s

  @property
  def best_one(self) -> str:
    """The cheapest single HVP (the linearized method pays its first)."""
    return min(METHODS[:3], key=self.seconds.__getitem__)

  @property
  def best_many(self) -> str:
    """The cheapest HVP in a long run of HVPs at one point."""
    return min((METHODS[0], METHODS[1], METHODS[3]), key=self.seconds.__getitem__)

  def as_dict(self) -> dict:
    return {"model": self.label, "num_params": self.num_params, "samples": self.samples,
            "grad_s": self.grad_s, "seconds": dict(self.seconds),
            "hvp_per_grad": {m: self.ratio(m) for m in METHODS},
            "best_one": self.best_one, "best_many": self.best_many}


def hvp_cost(loss_fn: Callable, params: Any, data: Any, batch: int, repeats: int, *,
             seed: int = 0, label: str = "", num_params: int = 0) -> HvpCost:
  """Time a full-dataset gradient and the three HVP methods (median of ``repeats``)."""
  rng = np.random.default_rng(seed)
  v = random_like(params, rng)
  u = random_like(params, rng)
  grad = jax.grad(loss_fn)

  def full_grad(q, d):
    return batched_mean(lambda b: grad(q, b), d, batch)

  def fwd_rev(q, w, d):
    return batched_mean(lambda b: jax.jvp(lambda r: grad(r, b), (q,), (w,))[1], d, batch)

  def rev_fwd(q, w, d):
    return batched_mean(
        lambda b: jax.grad(lambda r: jax.jvp(lambda s: loss_fn(s, b), (r,), (w,))[1])(q), d, batch)

  grad_j, fwd_j, rev_j = jax.jit(full_grad), jax.jit(fwd_rev), jax.jit(rev_fwd)
  grad_d = jax.jit(lambda q: full_grad(q, data))   # data closed over: linearize w.r.t. q only

  def linearize_first():
    _, lin = jax.linearize(grad_d, params)
    return block(lin(v)), lin

  t = {"grad": median_seconds(lambda: block(grad_j(params, data)), repeats),
       METHODS[0]: median_seconds(lambda: block(fwd_j(params, v, data)), repeats),
       METHODS[1]: median_seconds(lambda: block(rev_j(params, v, data)), repeats),
       METHODS[2]: median_seconds(linearize_first, repeats)}
  _, lin = linearize_first()
  t[METHODS[3]] = median_seconds(lambda: block(lin(u)), repeats)
  return HvpCost(label, num_params, int(jax.tree.leaves(data)[0].shape[0]), t.pop("grad"), t)


def hvp_cost_of(b: Bench, repeats: int, seed: int = 0) -> HvpCost:
  return hvp_cost(b.obj.loss_fn, b.obj.params, b.data, b.spec.batch, repeats, seed=seed,
                  label=b.spec.label, num_params=b.num_params)


def hvp_table(costs: list[HvpCost]) -> list[str]:
  """``model | params | samples | gradient ms | <method> xgrad ... | best one | best many``."""
  short = {METHODS[0]: "fwd-over-rev", METHODS[1]: "rev-over-fwd", METHODS[2]: "linearized 1st",
           METHODS[3]: "linearized next"}
  cells = [["model", "params", "samples", "gradient ms",
            *(f"{short[m]} x grad" for m in METHODS), "best one HVP", "best many HVPs"]]
  for c in costs:
    cells.append([c.label, f"{c.num_params:,}", str(c.samples), f"{c.grad_s * 1e3:.3g}",
                  *(f"{c.ratio(m):.2f}" for m in METHODS), short[c.best_one],
                  short[c.best_many]])
  widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
  return [" | ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in
                     enumerate(zip(r, widths))) for r in cells]
