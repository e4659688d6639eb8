"""Loss surfaces on a grid of points ``θ + x·d₁ (+ y·d₂)``: compiled, chunked, sharded.

The engine evaluates a *chunk* of grid points per compiled call, each point on the
whole dataset (the mean over all samples, batched inside the call, DESIGN §3),
and hands finished chunks to a callback so a caller can stream rows to disk.

Three ways to map over the points of a chunk, chosen per model (DESIGN §6):

* ``"vmap"``: the data batches are the outer loop (``lax.scan``) and the points the
  inner ``vmap``; best for dense networks (batched matmuls).
* ``"affine"``: ``"vmap"`` that keeps everything affine in the point's coordinates
  factorized (:func:`landscape._affine.affine_vmap`): the first layer's
  pre-activation ``z₀ + x·z₁ + y·z₂`` costs three matmuls per batch for the whole
  chunk instead of one per point, for any ``loss_fn``, with no model knowledge.
* ``"map"``: points one after the other (``lax.map``), each scanning the data;
  vmapping a convolution over points turns it into a slow *grouped* convolution,
  so models with convolutions use this mode.

``point_mode="auto"`` and ``chunk_size=None`` are chosen by measurement (:func:`sweep`):
the first chunks of the sweep itself time the rule's mode (``"map"`` if the traced loss
has a convolution, else ``"affine"``) against ``"vmap"`` (with a convolution only off
the CPU: a grouped convolution may be fine on an accelerator), a few chunk sizes and
smaller inner data batches, keep their results, and the rest of the sweep runs with
the fastest. Compilation is kept out of the
comparison but counted in the tuning cost, which is held under :data:`TUNE_BUDGET` of
the estimated sweep; a sweep too short to pay for a second compilation (on a loaded
2-core CPU, a 12x12 MLP grid: 1-2 s per compilation against ~10 s of sweep) keeps its
first candidate. Several processes use the rules (:func:`auto_chunk_size`).

Generic against model-aware (:meth:`landscape.objective.Objective.factorized`): the
``"affine"`` mode finds the first layer's factorization in any loss, and a sweep
prepares it once: :class:`landscape._affine.AffineSplit` evaluates the affine prefix of
every data batch (the products ``z₀, z₁, z₂`` of the first layer and whatever the rest
of the network reads of the batch, e.g. the labels) before the first chunk, and every
chunk runs only the per-point rest from those arrays (``Surface.hoisted``; the file
attribute ``sweep_hoisted``), as the model-aware path does with its stem. That costs
``(D + 1) × batch × first-layer width`` numbers per sample in memory (30 MB for the
MLP below); over half the memory budget the prefix is recomputed in every chunk as
before. Recomputing it was what kept the generic path behind: on the MLP 784-256-256-10
of ``scripts/bench_surface.py`` the three first-layer products are 3·784·256
multiply-adds per sample per chunk against 256·266 per sample per point for the rest
(+55 % arithmetic at a chunk of 16). Measured with ``scripts/bench_surface.py --models mlp
--grid 12`` (quiet 2-core AMD EPYC, jax 0.10.2, both paths auto-tuned, tuning overhead
included; ``lscpu``: avx2, fma, avx512f/dq/bw/vl/vnni/bf16, no AMX): generic 128 points/s
against model-aware 122 (1.05; 76 against 106 before the prefix was hoisted), and 4.7x
torch's prebatched loop; ``--models cnn --grid 8 --no-exhaustive``: 5.91 against 5.11
(1.16; the CNN runs in ``"map"`` mode, where the model-aware stem costs 2.4 s of
precompute and 2.3x the memory). With the prefix hoisted, small chunks win on a CPU
(chunks of 4-16 points within 10 % of each other, 32-64 25-45 % slower, MLP 12x12),
so tuning starts at :data:`TUNE_START` = 8.

All local devices are used: points are split over a one-axis device mesh (axis
:data:`POINT_AXIS`) with ``shard_map``. Several processes (``jax.distributed``) take
chunks in turn and gather each round's results so that process 0 alone writes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from landscape import _progress, batching
from landscape._affine import AffineSplit, affine_vmap, dedupe
from landscape.batching import batched_mean, check_batch_size, num_samples
from landscape.errors import ConfigError
from landscape.grid import Grid

PyTree = Any
PointFn = Callable[[jax.Array, PyTree], Mapping[str, jax.Array]]

POINT_MODES = ("auto", "vmap", "affine", "map")
# The device-mesh axis the grid points are split over (several local devices only).
POINT_AXIS = "points"


@dataclasses.dataclass
class Surface:
  """Values of a sweep on a grid; ``values[name][j, i]`` is at ``(xs[i], ys[j])``.

  A partly computed surface is valid: ``done`` marks computed points (a diverged
  point, NaN or inf, is computed); the other entries are NaN.

  It has the read interface of a result file (:class:`landscape.io.Result`): ``grid``,
  ``xs``, ``ys``, ``ndim``, ``shape``, ``fields`` (the same dict as ``values``),
  ``attrs``, ``groups``, ``path`` (``None``) and :meth:`done_for`, so every function of
  :mod:`landscape.plotting` draws it without a file:
  ``ls.plotting.plot_contour(ax, ls.surface.evaluate(...), field="loss")``.
  """
  xs: np.ndarray
  ys: np.ndarray | None
  values: dict[str, np.ndarray]
  done: np.ndarray
  compile_seconds: float = 0.0
  sweep_seconds: float = 0.0
  num_evaluated: int = 0
  point_mode: str = ""
  chunk_size: int = 0
  batch_size: int | None = None
  hoisted: bool = False
  tuning: dict[str, Any] | None = None
  attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
  groups: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
  path: None = None

  @property
  def grid(self) -> Grid:
    return Grid(self.xs, self.ys)

  @property
  def shape(self) -> tuple[int, ...]:
    return self.grid.shape

  @property
  def ndim(self) -> int:
    return self.grid.ndim

  @property
  def fields(self) -> dict[str, np.ndarray]:
    """The grid values by name (``values``; the name a result file's reader uses)."""
    return self.values

  def done_for(self, name: str) -> np.ndarray:
    """The mask of computed points of field ``name`` (one mask covers every field)."""
    return self.done

  @property
  def points_per_second(self) -> float:
    return self.num_evaluated / self.sweep_seconds if self.sweep_seconds > 0 else float("nan")


def grid_shape(xs, ys) -> tuple[int, ...]:
  """``(len(ys), len(xs))`` or ``(len(xs),)`` (:attr:`landscape.grid.Grid.shape`)."""
  return Grid(xs, ys).shape


def grid_coords(xs, ys=None) -> np.ndarray:
  """Row-major coordinates of the grid: ``(P, D)`` with point ``p = j·nx + i`` at ``(x_i, y_j)``."""
  return Grid(xs, ys).coords()


def shift(params: PyTree, directions: Sequence[PyTree], coeffs: jax.Array) -> PyTree:
  """``θ + Σ_k c_k d_k`` for the coefficient vector ``coeffs`` of shape ``(len(directions),)``."""
  out = params
  for k, d in enumerate(directions):
    out = jax.tree.map(lambda p, v, c=coeffs[k]: p + c.astype(p.dtype) * v, out, d)
  return out


def _check_grid(xs, ys, directions) -> Grid:
  grid = Grid.of(xs, ys)
  want = grid.ndim
  if directions is not None and len(directions) != want:
    raise ConfigError(f"a {want}-D grid needs {want} direction(s), "
                      f"got {len(directions)}; pass (dx,) with ys=None or (dx, dy) with ys")
  return grid


def point_loss_fn(loss_fn, params, directions, metrics=None) -> PointFn:
  """The generic point function: loss (and metrics) at ``θ + Σ c_k d_k`` on a batch."""
  metrics = dict(metrics or {})

  def point_fn(coeffs, batch):
    p = shift(params, directions, coeffs)
    out = {"loss": loss_fn(p, batch)}
    for name, fn in metrics.items():
      out[name] = fn(p, batch)
    return out

  return point_fn


def evaluate(loss_fn: Callable[[PyTree, PyTree], jax.Array], params: PyTree,
             directions: Sequence[PyTree], xs, ys=None, data: PyTree = None, *,
             batch_size: int | None = None,
             metrics: Mapping[str, Callable[[PyTree, PyTree], jax.Array]] | None = None,
             chunk_size: int | None = None, point_mode: str = "auto",
             done: np.ndarray | None = None,
             on_chunk: Callable[[np.ndarray, dict[str, np.ndarray]], None] | None = None,
             tune: bool = True) -> Surface:
  """Loss (and metrics) of ``loss_fn`` on the grid ``θ + x·dx (+ y·dy)``.

  ``values["loss"][j, i] = (1/N) Σ_n ℓ(θ + xs[i]·dx + ys[j]·dy; z_n)`` — the mean
  over all samples of ``data``, computed ``batch_size`` samples at a time inside the
  compiled function (a ragged last batch is exact).

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``, any pure JAX function; the mean
      over ``batch`` (``batch`` is ``None`` when ``data`` is ``None``).
    params: the centre θ (a pytree).
    directions: ``(dx,)`` for a 1-D sweep or ``(dx, dy)`` for 2-D; pytrees like θ.
    xs: ``(nx,)`` coordinates along ``dx``; ys: ``(ny,)`` along ``dy`` or ``None``.
    data: pytree of arrays with a leading sample axis, e.g. ``(x, y)``, or ``None``.
    batch_size: samples per batch inside the computation (``None``: all at once).
    metrics: extra per-point quantities, ``name -> fn(params, batch) -> scalar``
      (means over the batch, e.g. accuracy in percent).
    chunk_size: grid points per compiled call (``None``: timed on the first chunks,
      within the memory rule; see ``tune``).
    point_mode: ``"vmap"``, ``"affine"``, ``"map"`` or ``"auto"`` (see the module
      docstring).
    done: ``(ny, nx)`` / ``(nx,)`` bool mask of points to skip (resuming).
    on_chunk: called as ``on_chunk(flat_indices, values)`` after every chunk.
    tune: choose ``point_mode="auto"``, ``chunk_size=None`` and the inner batch by timing
      the first chunks of the sweep (:func:`sweep`); ``False``: by the rules.

  Returns:
    A :class:`Surface` with ``values["loss"]`` (and one array per metric) of shape
    ``(len(ys), len(xs))`` or ``(len(xs),)``, and compile/sweep seconds.

  Example:
    >>> dirs = landscape.directions.random_plane(key, params)
    >>> s = evaluate(loss_fn, params, dirs, np.linspace(-1, 1, 21), np.linspace(-1, 1, 21),
    ...              data=(x, y), batch_size=512)

  References:
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural
    Nets", NeurIPS 2018.
  """
  grid = _check_grid(xs, ys, directions)
  xs, ys = grid.xs, grid.ys
  _check_structure(params, directions)
  fn = point_loss_fn(loss_fn, params, directions, metrics)
  return sweep(fn, xs, ys, data, batch_size=batch_size, chunk_size=chunk_size,
               point_mode=point_mode, done=done, on_chunk=on_chunk,
               dtype=float_dtype(params), tune=tune)


def float_dtype(tree) -> jnp.dtype:
  """The dtype of the first floating leaf of ``tree`` (default float): the grid coordinates'."""
  for leaf in jax.tree.leaves(tree):
    if jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      return jnp.result_type(leaf)
  return jnp.result_type(float)


def _check_structure(params, directions) -> None:
  ref = jax.tree.structure(params)
  if not jax.tree.leaves(params):
    raise ConfigError("params has no arrays; pass the parameter pytree of the model")
  for name, tree in (("params", params), *((f"direction {k}", d) for k, d in enumerate(directions))):
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
        raise ConfigError(
            f"{name} leaf {jax.tree_util.keystr(path)} has dtype {jnp.result_type(leaf)}; a "
            "surface shifts every leaf by x·d, which an integer leaf would truncate: cast it "
            "to float, or close over it in loss_fn")
  for k, d in enumerate(directions):
    if jax.tree.structure(d) != ref:
      raise ConfigError(f"direction {k} does not have the structure of params "
                        f"({_structure_difference(d, params)}); build it with "
                        "landscape.directions from the same params")
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(d)):
      if jnp.shape(a) != jnp.shape(b):
        raise ConfigError(f"direction {k} leaf {jax.tree_util.keystr(path)} has shape "
                          f"{jnp.shape(b)}, params have {jnp.shape(a)}")


def _structure_difference(tree, ref, limit: int = 5) -> str:
  """A short description of how the leaf paths of ``tree`` differ from those of ``ref``."""
  def paths(t):
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(t)]
  got, want = paths(tree), paths(ref)
  got_set, want_set = set(got), set(want)
  missing = [p for p in want if p not in got_set]
  extra = [p for p in got if p not in want_set]
  parts = [f"{what} leaves {', '.join(ps[:limit])}{', ...' if len(ps) > limit else ''}"
           for what, ps in (("missing", missing), ("unexpected", extra)) if ps]
  if parts:
    return "; ".join(parts)
  text = f"got {jax.tree.structure(tree)}, want {jax.tree.structure(ref)}"
  return text if len(text) <= 200 else text[:197] + "..."


def has_convolution(fn: Callable, *args) -> bool:
  """Whether the traced ``fn(*args)`` contains a convolution (then points are mapped, not vmapped)."""
  return batching.has_convolution(jax.make_jaxpr(fn)(*args))


def _memory_budget_bytes() -> int:
  """A quarter of free host memory on CPU, half the device limit on accelerators."""
  dev = jax.local_devices()[0]
  if dev.platform != "cpu":
    try:
      stats = dev.memory_stats() or {}
      if "bytes_limit" in stats:
        return int(stats["bytes_limit"] * 0.5)
    except Exception:  # memory_stats is optional on some backends
      pass
  try:
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 0.25)
  except (ValueError, OSError, AttributeError):
    return 2 << 30


def _chunk_cap(point_bytes: int, mode: str) -> int:
  """The most grid points per device per call the memory rule allows in ``mode``."""
  if mode in ("vmap", "affine"):
    return max(1, min(64, _memory_budget_bytes() // max(1, 4 * point_bytes)))
  return 64


def auto_chunk_size(point_bytes: int, mode: str, num_points: int, num_devices: int) -> int:
  """Grid points per compiled call: from the per-point memory in ``vmap`` mode.

  ``vmap`` materializes every point's parameters and activations at once, so the
  chunk is bounded by the memory budget (and 64 points per device, past which
  throughput no longer grows on the models we measured); ``map`` evaluates points
  one by one and only amortizes dispatch, so a modest chunk suffices. The chunk is
  then evened out over the number of calls needed, so that the padded last chunk
  wastes as little as possible (36 points at most 16 a call: 3 calls of 12, not 16).
  """
  per_dev = _chunk_cap(point_bytes, mode) if mode in ("vmap", "affine") else 16
  points_per_dev = max(1, math.ceil(num_points / num_devices))
  calls = math.ceil(points_per_dev / per_dev)
  return math.ceil(points_per_dev / calls) * num_devices


def _or_plain(fast: Callable, plain: Callable) -> Callable:
  """``fast`` (a jaxpr interpreter of :mod:`landscape._affine`), or ``plain`` if it fails.

  The interpreter re-binds the primitives of a traced point function; should it meet
  one it cannot (a new JAX primitive with unusual parameters, say), the sweep warns
  and evaluates the same function without it rather than fail. An error in the
  function itself is raised again by ``plain``.
  """
  def f(*args):
    try:
      return fast(*args)
    except Exception as e:  # noqa: BLE001 - any failure of the optimization falls back
      out = plain(*args)   # an error of the function itself is raised here, unwarned
      _warn_fallback("the point-function optimizer", e)
      return out
  return f


def _chunk_fn(point_fn: PointFn, batch_size, mode: str, split_names: Sequence[str] | None,
              reduce: bool = True):
  """``(coords (C, D), data) -> dict of (C,)`` evaluating every point on all of ``data``.

  With ``split_names``, ``data`` is a tuple of datasets and the names of the
  results are prefixed ``"{split}_"``. With ``reduce=False`` the point function
  receives the whole dataset and does its own batching (e.g. a Lanczos run on the
  dataset-mean Hessian, which is not a mean of per-batch values).
  """
  def mean(f, data_):
    return batched_mean(f, data_, batch_size) if reduce else f(data_)

  plain_fn = point_fn
  # a loss and its metrics share their forward pass (XLA does not merge the copies)
  if mode != "affine":     # affine_vmap merges them itself
    point_fn = _or_plain(dedupe(point_fn), point_fn)

  if mode in ("vmap", "affine"):
    def one(coords, data_):
      vfn = jax.vmap(point_fn, in_axes=(0, None))
      if mode == "affine":
        vfn = _or_plain(affine_vmap(plain_fn), vfn)
      return mean(lambda b: vfn(coords, b), data_)
  else:
    def one(coords, data_):
      return jax.lax.map(lambda c: mean(lambda b: point_fn(c, b), data_), coords)
  if split_names is None:
    return one

  def chunk(coords, datas):
    out = {}
    for name, data_ in zip(split_names, datas):
      out.update({f"{name}_{k}": v for k, v in one(coords, data_).items()})
    return out
  return chunk


def sweep(point_fn: PointFn, xs, ys=None, data: PyTree = None, *,
          splits: Mapping[str, PyTree] | None = None, batch_size: int | None = None, chunk_size: int | None = None,
          point_mode: str = "auto", done: np.ndarray | None = None,
          on_chunk: Callable[[np.ndarray, dict[str, np.ndarray]], None] | None = None,
          dtype=None, point_bytes: int | None = None, reduce: bool = True,
          progress: bool | None = None, desc: str = "sweep", tune: bool = True) -> Surface:
  """Evaluate ``point_fn(coeffs, batch) -> {name: mean over batch}`` on every grid point.

  The generic engine under :func:`evaluate` (and the curvature maps): each value is
  the sample-weighted mean over the batches of ``data``. Points are processed in
  row-major order, ``chunk_size`` at a time (the last chunk padded so that one
  function is compiled), split over the local devices, and each finished chunk is
  passed to ``on_chunk(flat_indices, values)``. Points with ``done`` set are skipped.

  ``splits={"train": data_a, "test": data_b}`` (instead of ``data``) evaluates every
  point on each dataset in the same compiled call; the values are then named
  ``"train_loss"``, ``"test_loss"``, ... (one ``done`` mask covers them all).

  ``progress`` reports rows and points done, points/s and the ETA after every chunk
  under the name ``desc`` (:class:`landscape._progress.Progress`: a tqdm bar on a
  terminal, log lines otherwise); ``None``: only inside
  :func:`landscape._progress.reporting` (the pipeline), so library calls stay quiet.

  Self-tuning (``tune``, single process only): ``point_mode="auto"`` and
  ``chunk_size=None`` are chosen by timing candidates on the first chunks of this very
  sweep (their values are kept, nothing is recomputed): the rule's mode and ``"vmap"``,
  chunk sizes from :data:`TUNE_CHUNKS` within the memory rule, and, where ``reduce``
  (the mean over all samples does not depend on the batch size), smaller inner data
  batches than ``batch_size`` (which is then only an upper bound). Tuning is skipped,
  and the rules used, when both settings are given, with several processes, with fewer
  than :data:`TUNE_MIN_CHUNKS` chunks of :data:`TUNE_START` points to do, or with
  ``tune=False``; it stops when its cost would pass :data:`TUNE_BUDGET` of the
  estimated sweep. The choice is recorded in the returned :class:`Surface`
  (``point_mode``, ``chunk_size``, ``batch_size``, ``tuning``). The values are those of
  an untuned sweep up to float rounding.
  """
  check_batch_size(batch_size)
  grid = _check_grid(xs, ys, None)
  xs, ys = grid.xs, grid.ys
  if point_mode not in POINT_MODES:
    raise ConfigError(f"unknown point_mode {point_mode!r}; valid: {', '.join(POINT_MODES)}")
  if chunk_size is not None and (isinstance(chunk_size, bool)
                                 or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
    raise ConfigError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
  split_names = None
  if splits is not None:
    if data is not None:
      raise ConfigError("pass either data or splits to sweep, not both")
    split_names = list(splits)
    data = tuple(splits[n] for n in split_names)
    for d in data:
      if d is not None:
        num_samples(d)
  elif data is not None:
    num_samples(data)
  shape = grid.shape
  coords_all = grid.coords()
  dtype = dtype or jnp.result_type(float)
  if done is None:
    done = np.zeros(shape, bool)
  done = np.asarray(done, bool)
  if done.shape != shape:
    raise ConfigError(f"done mask has shape {done.shape}, the grid's shape is {shape}; pass a "
                      "bool array of that shape, or None")
  todo = np.flatnonzero(~done.ravel())

  probe_coords = jnp.zeros((coords_all.shape[1],), dtype)
  first_data = data[0] if split_names is not None else data
  probe_batch = None if first_data is None else jax.tree.map(lambda a: a[:1], first_data)
  out_struct = jax.eval_shape(point_fn, probe_coords, probe_batch)
  names = (list(out_struct) if split_names is None
           else [f"{sp}_{n}" for sp in split_names for n in out_struct])
  values = {n: np.full(shape, np.nan, dtype=np.float64) for n in names}

  rule_mode = point_mode
  if rule_mode == "auto":
    rule_mode = "map" if has_convolution(point_fn, probe_coords, probe_batch) else "affine"
  devices = jax.local_devices()
  ndev = len(devices)
  if point_bytes is None:
    point_bytes = 1 << 20
  nproc = jax.process_count()
  surf = Surface(xs, ys, values, done.copy(), point_mode=rule_mode, batch_size=batch_size)
  datas = () if data is None else data if split_names is not None else (data,)
  n = max((num_samples(d) for d in datas if d is not None), default=0)
  plan = _tuning_plan(point_mode, rule_mode, chunk_size, batch_size, n, reduce, point_bytes,
                      len(todo), ndev, nproc, devices[0].platform) if tune else None
  if plan is None:
    if chunk_size is None:
      chunk_size = auto_chunk_size(point_bytes, rule_mode, max(1, math.ceil(len(todo) / nproc)),
                                   ndev)
    # a chunk larger than the points left would only compute padding
    chunk_size = min(int(chunk_size), max(1, math.ceil(len(todo) / nproc)))
    chunk_size = int(math.ceil(chunk_size / ndev) * ndev)
    surf.chunk_size = chunk_size
  if not len(todo):
    return surf
  build = _Builder(point_fn, split_names, reduce, devices, coords_all.shape[1], dtype, data)
  pid = jax.process_index()
  nx = len(xs)
  if plan is None:
    cand = build(rule_mode, chunk_size, batch_size)
    surf.compile_seconds = cand.compile_s
    surf.hoisted = cand.hoisted

  def label(n, total):
    if ys is None:
      return f"{n}/{total} points"
    return f"rows {n // nx}/{len(ys)} ({n}/{total} points)"

  with _progress.progress(done.size, "points", desc, initial=int(done.sum()), label=label,
                          enabled=(progress if progress is not None
                                   else _progress.active() is not None) and pid == 0) as bar:
    if plan is not None:
      _tuned_sweep(plan, build, todo, coords_all, names, surf, on_chunk, bar)
      return surf
    chunks = [todo[s:s + chunk_size] for s in range(0, len(todo), chunk_size)]
    rounds = math.ceil(len(chunks) / nproc)
    t0 = time.perf_counter()
    _sweep_rounds(cand.executable, chunks, rounds, nproc, pid, coords_all,
                  functools.partial(_padded, size=chunk_size), dtype, cand.data, names, surf,
                  on_chunk, bar)
    surf.sweep_seconds = time.perf_counter() - t0
  return surf


def _padded(idx, size: int) -> np.ndarray:
  """``idx`` padded to ``size`` entries by repeating its last (one compiled shape)."""
  idx = np.asarray(idx, dtype=np.int64)
  pad = size - len(idx)
  filler = idx[-1] if len(idx) else 0
  return np.concatenate([idx, np.full(pad, filler, np.int64)]) if pad else idx


# ----------------------------------------------------------------------------- tuning
#
# ``point_mode="auto"`` and ``chunk_size=None`` are chosen by measurement on the first
# chunks of the sweep itself (single process; several processes use the rules): every
# candidate is compiled ahead of time (``lower().compile()``, so compilation stays out
# of the comparison) and run on two real chunks, whose results are kept; its rate is the
# faster of the two calls (the second, once the first has warmed caches; one call if it
# runs at less than TUNE_GIVE_UP of the best rate so far). The search is
# greedy: the point modes at chunk TUNE_START, then larger chunks while points/s grows
# (smaller ones if the first larger one is slower), then smaller inner data batches.
# A candidate is tried only while the cost so far (compilations after the first, and
# the time its slower calls lost against the best rate) plus one more compilation stays
# within TUNE_BUDGET of the estimated sweep time, and two full chunks are left for it.

TUNE_BUDGET = 0.12          # tuning may cost this fraction of the estimated sweep
TUNE_START = 8              # first chunk per device tried (hoisted affine MLP: 4-8 best on CPU)
TUNE_MIN_CHUNKS = 4         # tune only with at least this many chunks of TUNE_START
TUNE_CHUNKS = (4, 8, 16, 32, 64)   # chunk sizes per device tried
TUNE_BATCH_DIVISORS = (2, 4)       # inner batches tried: batch_size / these
TUNE_GIVE_UP = 0.5          # a candidate whose first call is this much slower gets no second


@dataclasses.dataclass
class _Candidate:
  """One compiled setting of a sweep and its measured calls."""
  mode: str
  chunk: int
  batch: int | None
  executable: Any
  compile_s: float
  data: Any = None           # what the executable takes besides the coordinates
  hoisted: bool = False      # affine mode with the prefix computed once (AffineSplit)
  times: list[float] = dataclasses.field(default_factory=list)   # seconds per full call
  points: int = 0

  @property
  def key(self) -> tuple:
    return (self.mode, self.chunk, self.batch)

  @property
  def rate(self) -> float:
    """Points/s of a full chunk: the best call after the first (the first if alone)."""
    ts = self.times[1:] or self.times
    return self.chunk / min(ts) if ts and min(ts) > 0 else 0.0

  def record(self) -> dict[str, Any]:
    return {"point_mode": self.mode, "chunk_size": self.chunk, "batch_size": self.batch,
            "points_per_s": round(self.rate, 3), "compile_s": round(self.compile_s, 4),
            "points": self.points, "hoisted": self.hoisted}


class _Builder:
  """Compiles (and caches) the chunk function of a sweep for ``(mode, chunk, batch)``."""

  def __init__(self, point_fn, split_names, reduce, devices, dim, dtype, data):
    self.point_fn, self.split_names, self.reduce = point_fn, split_names, reduce
    self.devices, self.dim, self.dtype, self.data = devices, dim, dtype, data
    self.cache: dict[tuple, _Candidate] = {}
    self.hoist_cache: dict[int | None, Any] = {}

  def __call__(self, mode: str, chunk: int, batch: int | None) -> _Candidate:
    key = (mode, chunk, batch)
    if key not in self.cache:
      t0 = time.perf_counter()
      hoisted = self._hoisted(batch) if mode == "affine" else None
      if hoisted is not None:
        fn, data = hoisted
        try:
          exe = self._compile(fn, chunk, data)
        except Exception as e:  # noqa: BLE001 - the optimization falls back, loudly
          _warn_fallback("hoisting the affine prefix", e)
          self.hoist_cache[batch] = None
          hoisted = None
      if hoisted is None:
        fn, data = _chunk_fn(self.point_fn, batch, mode, self.split_names, self.reduce), self.data
        exe = self._compile(fn, chunk, data)
      self.cache[key] = _Candidate(mode, chunk, batch, exe, time.perf_counter() - t0, data,
                                   hoisted is not None)
    return self.cache[key]

  def _compile(self, fn, chunk: int, data):
    if len(self.devices) > 1:
      mesh = Mesh(np.array(self.devices), (POINT_AXIS,))
      fn = jax.shard_map(fn, mesh=mesh, in_specs=(PartitionSpec(POINT_AXIS), PartitionSpec()),
                         out_specs=PartitionSpec(POINT_AXIS), check_vma=False)
    return jax.jit(fn).lower(jnp.zeros((chunk, self.dim), self.dtype), data).compile()

  def _hoisted(self, batch: int | None):
    """``(chunk_fn, prepared data)`` of ``"affine"`` mode with the affine prefix of every
    data batch computed once here instead of in every chunk, or ``None`` (no data, no
    mean over batches, more memory than the budget, or the split failed: warned)."""
    if batch not in self.hoist_cache:
      datas = (self.data if self.split_names is not None else (self.data,))
      result = None
      if self.reduce and self.data is not None and all(d is not None for d in datas):
        budget = _memory_budget_bytes() // 2
        parts = []
        try:
          for d in datas:
            part = _hoist(self.point_fn, d, batch, self.dim, self.dtype, budget)
            parts.append(part)
            if part is None:
              break
            budget -= part[2]
        except Exception as e:  # noqa: BLE001 - the optimization falls back, loudly
          _warn_fallback("hoisting the affine prefix", e)
          parts = [None]
        if all(p is not None for p in parts):
          prepared = tuple(p[1] for p in parts)
          result = (_hoisted_chunk_fn([p[0] for p in parts], self.split_names),
                    prepared if self.split_names is not None else prepared[0])
      self.hoist_cache[batch] = result
    return self.hoist_cache[batch]


def _warn_fallback(what: str, e: Exception) -> None:
  warnings.warn(f"landscape.surface: {what} failed ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}); evaluating without it "
                "(same values, slower)", RuntimeWarning, stacklevel=3)


def _hoist(point_fn, data, batch_size, dim, dtype, budget: int):
  """``(one(coords, prepared), prepared, bytes)``: the affine prefix of every batch of
  ``data`` computed now (:class:`landscape._affine.AffineSplit`), or ``None`` when it
  would take more than ``budget`` bytes or the rest of the network reads nothing of the
  batch (nothing to hoist)."""
  n = num_samples(data)
  size = n if batch_size is None or batch_size >= n else int(batch_size)
  full, tail = batching.split_batches(data, size)
  first = jax.tree.map(lambda a: a[0], full)
  split = AffineSplit(point_fn, dim, dtype, first)
  tail_split = AffineSplit(point_fn, dim, dtype, tail) if tail is not None else None
  if not split.batch_bytes:
    return None
  num_full = n // size
  need = (split.shared_bytes + num_full * split.batch_bytes
          + (tail_split.shared_bytes + tail_split.batch_bytes if tail_split else 0))
  if need > budget:
    return None

  @jax.jit
  def prepare(full, tail):
    one = jax.tree.map(lambda a: a[0], full)
    out = (split.prepare_shared(one), jax.lax.map(split.prepare, full))
    if tail_split is None:
      return out + ((), ())
    return out + (tail_split.prepare_shared(tail), tail_split.prepare(tail))

  prepared = prepare(full, tail)

  def one(coords, prep):
    shared, stacked, tail_shared, tail_leaves = prep
    fn = lambda leaves: split.apply(coords, shared, leaves)
    if num_full == 1 and tail_split is None:
      return fn([a[0] for a in stacked])
    return batching.mean_of_batches(
        fn, stacked, size, num_samples_=n, tail=tail_leaves,
        tail_fn=None if tail_split is None else (
            lambda leaves: tail_split.apply(coords, tail_shared, leaves)))

  return one, prepared, need


def _hoisted_chunk_fn(ones, split_names):
  """The chunk function over prepared datasets (one per split, or one)."""
  if split_names is None:
    return ones[0]

  def chunk(coords, preps):
    out = {}
    for name, one, prep in zip(split_names, ones, preps):
      out.update({f"{name}_{k}": v for k, v in one(coords, prep).items()})
    return out
  return chunk


@dataclasses.dataclass
class _Plan:
  """What :func:`_tuned_sweep` may vary: modes, chunk sizes, inner batches (first: start)."""
  modes: list[str]
  chunks: list[int]
  start_chunk: int
  batches: list[int | None]
  ndev: int


def tuning_candidates(batch_size: int | None, num_samples: int, *, convolution: bool,
                      point_bytes: int = 1 << 20, num_devices: int = 1,
                      reduce: bool = True, platform: str | None = None,
                      ) -> list[tuple[str, int, int | None]]:
  """Every ``(point_mode, chunk_size, batch_size)`` an automatic sweep may time.

  Args:
    batch_size: the sweep's ``batch_size`` (an upper bound of the inner batch).
    num_samples: samples of the (largest) dataset; 0 without data.
    convolution: whether the point function has a convolution (the rule's mode is then
      ``"map"``, else ``"affine"``).
    point_bytes: memory of one point (bounds the chunk, :func:`auto_chunk_size`).
    num_devices: local devices (chunks are per-device sizes times this).
    reduce: whether the sweep averages over batches (else the inner batch is not tuned).
    platform: ``"cpu"``, ``"gpu"``, ...; ``None``: the first local device's (on a CPU a
      model with convolutions is not timed in ``"vmap"`` mode).

  Returns:
    The candidates, the rule's mode first; chunks are not capped by the grid.
  """
  plan = _tuning_plan("auto", "map" if convolution else "affine", None, batch_size, num_samples,
                      reduce, point_bytes, 1 << 62, num_devices, 1,
                      platform or jax.local_devices()[0].platform)
  return [(m, c, b) for m in plan.modes for c in plan.chunks for b in plan.batches]


def _tuning_plan(point_mode, rule_mode, chunk_size, batch_size, n, reduce, point_bytes,
                 num_todo, ndev, nproc, platform="cpu") -> _Plan | None:
  """The candidates to measure, or ``None``: use the rules (explicit settings, several
  processes, or too few points for tuning to pay); ``n``: samples of the largest dataset."""
  if nproc > 1 or (point_mode != "auto" and chunk_size is not None):
    return None
  modes = [rule_mode]
  if point_mode == "auto" and (rule_mode != "map" or platform != "cpu"):
    # a vmapped convolution is a grouped one: maybe fine on an accelerator, but 5-7x slower
    # than "map" on a CPU (CNN of scripts/bench_surface.py), too costly even to time
    modes.append("vmap")
  if chunk_size is None:
    cap = _chunk_cap(point_bytes, "vmap" if len(modes) > 1 else rule_mode)
    start = min(TUNE_START, cap) * ndev
    chunks = sorted({start, *(c * ndev for c in TUNE_CHUNKS if c <= cap)})
  else:
    start = int(math.ceil(chunk_size / ndev) * ndev)
    chunks = [start]
  if num_todo < TUNE_MIN_CHUNKS * start:
    return None
  batches: list[int | None] = [batch_size]
  if reduce and n:
    full = batch_size if batch_size is not None and batch_size < n else n
    calls = math.ceil(n / full)
    for k in TUNE_BATCH_DIVISORS:   # k times as many batches, as even (full) as possible
      b = math.ceil(n / (calls * k))
      if 8 <= b < full and b not in batches:
        batches.append(b)
  if len(modes) == 1 and len(chunks) == 1 and len(batches) == 1:
    return None
  return _Plan(modes, chunks, start, batches, ndev)


def _tuned_sweep(plan: _Plan, build: _Builder, todo, coords_all, names, surf, on_chunk,
                 bar) -> None:
  """Sweep ``todo`` (single process), measuring candidates on its first chunks."""
  pos = 0
  tried: list[_Candidate] = []
  tuning_calls: list[tuple[_Candidate, float, int]] = []   # tuning calls: (candidate, s, points)

  def run(cand: _Candidate, tuning: bool) -> None:
    nonlocal pos
    idx = todo[pos:pos + cand.chunk]
    pos += len(idx)
    t0 = time.perf_counter()
    out = cand.executable(jnp.asarray(coords_all[_padded(idx, cand.chunk)], build.dtype),
                          cand.data)
    out = {n: np.asarray(v, dtype=np.float64) for n, v in out.items()}
    dt = time.perf_counter() - t0
    if len(idx) == cand.chunk:
      cand.times.append(dt)
    cand.points += len(idx)
    if tuning:
      tuning_calls.append((cand, dt, len(idx)))
    _finish_chunk(surf, idx, out, names, on_chunk, bar)

  def left() -> int:
    return len(todo) - pos

  first = build(plan.modes[0], plan.start_chunk, plan.batches[0])
  surf.compile_seconds = first.compile_s
  t_start = time.perf_counter()

  def trial(mode, chunk, batch) -> _Candidate | None:
    """Measure one candidate on two chunks, if the budget and the points left allow it."""
    key = (mode, chunk, batch)
    if key in build.cache and build.cache[key].times:
      return build.cache[key]
    best_rate = 0.0
    if tried:
      best_rate = best().rate
      est = max(c.compile_s for c in tried)
      budget = TUNE_BUDGET * (first.compile_s + len(todo) / best_rate)
      if overhead(best_rate) + est > budget or left() < 2 * chunk:
        return None
    cand = build(mode, chunk, batch)
    tried.append(cand)
    run(cand, tuning=True)
    # a first call far slower than the best settles it: no second one to waste time on
    if left() and not (cand.times and cand.rate < TUNE_GIVE_UP * best_rate):
      run(cand, tuning=True)
    return cand

  def overhead(best_rate: float) -> float:
    """Seconds tuning cost so far: extra compilations, and time lost to slower calls."""
    lost = sum(dt - n / best_rate for c, dt, n in tuning_calls if c.rate < best_rate)
    return sum(c.compile_s for c in tried[1:]) + max(0.0, lost)

  def best() -> _Candidate:
    return max((c for c in tried if c.times), key=lambda c: c.rate)

  trial(plan.modes[0], plan.start_chunk, plan.batches[0])
  for mode in plan.modes[1:]:
    trial(mode, plan.start_chunk, plan.batches[0])
  b = best()
  i0 = plan.chunks.index(plan.start_chunk)
  for direction in (1, -1):
    moved = False
    i = i0 + direction
    while 0 <= i < len(plan.chunks):
      cand = trial(b.mode, plan.chunks[i], b.batch)
      if cand is None or cand.rate <= b.rate:
        break
      b, moved = cand, True
      i += direction
    if moved:
      break
  for batch in plan.batches[1:]:
    cand = trial(b.mode, b.chunk, batch)
    if cand is None or cand.rate <= b.rate:
      break
    b = cand
  b = best()
  while left():
    rem = left()
    if rem < b.chunk:   # the tail: the compiled candidate that finishes it soonest
      ready = [c for c in build.cache.values() if c.rate > 0]
      cand = min(ready, key=lambda c: math.ceil(rem / c.chunk) * c.chunk / c.rate)
    else:
      cand = b
    run(cand, tuning=False)
  surf.sweep_seconds = time.perf_counter() - t_start
  surf.point_mode, surf.chunk_size, surf.batch_size = b.mode, b.chunk, b.batch
  surf.hoisted = b.hoisted
  surf.tuning = {"candidates": [c.record() for c in tried], "chosen": b.record(),
                 "overhead_s": round(overhead(b.rate), 4),
                 "budget_s": round(TUNE_BUDGET * (first.compile_s + len(todo) / b.rate), 4)}


def _finish_chunk(surf, idx, vals, names, on_chunk, bar) -> None:
  """Store a finished chunk's values (``vals`` may be padded) and report it."""
  vals = {n: v[:len(idx)] for n, v in vals.items()}
  for n in names:
    surf.values[n].reshape(-1)[idx] = vals[n]
  surf.done.reshape(-1)[idx] = True
  surf.num_evaluated += len(idx)
  if on_chunk is not None:
    on_chunk(idx, vals)
  bar.update(len(idx))


def _sweep_rounds(executable, chunks, rounds, nproc, pid, coords_all, padded, dtype, data,
                  names, surf, on_chunk, bar) -> None:
  """The chunks of :func:`sweep`, in rounds of one chunk per process; ``bar`` counts points."""
  for r in range(rounds):
    c = r * nproc + pid
    mine = chunks[c] if c < len(chunks) else np.zeros((0,), np.int64)
    out = executable(jnp.asarray(coords_all[padded(mine)], dtype), data)
    out = {n: np.asarray(v, dtype=np.float64) for n, v in out.items()}
    if nproc > 1:
      from jax.experimental import multihost_utils
      gathered = multihost_utils.process_allgather(out)
      results = [(r * nproc + q, {n: np.asarray(gathered[n][q]) for n in names})
                 for q in range(nproc) if r * nproc + q < len(chunks)]
    else:
      results = [(c, out)]
    for ci, vals in results:
      _finish_chunk(surf, chunks[ci], vals, names, on_chunk, bar)
