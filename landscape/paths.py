"""Paths between minima and the saddles on them: linear paths, nudged elastic bands.

Model-agnostic, like :mod:`landscape.critical`: every function takes
``loss_fn(params, batch) -> scalar`` (the mean over the batch), parameter pytrees, and
the full-dataset semantics of DESIGN §3 (every loss and gradient is the mean over all
samples of ``data``, batched by ``batch_size``).

  linear(loss_fn, start, end, data)   the loss along ``(1 − t)·start + t·end`` (sweep engine)
  neb(loss_fn, start, end, data)      a nudged elastic band with a climbing image
  saddle(loss_fn, path, data)         the band's peak refined to a critical point, with a
                                      certified Morse index from Lanczos Ritz residuals
  fire(...)                           the FIRE optimizer (an optax transformation), NEB's default

A :class:`Path` holds the loss at ``m`` points ``ts`` in ``[0, 1]``, its barrier above
the chord between the endpoints and the index of its highest point.

References:
  Frankle, Dziugaite, Roy & Carbin, "Linear mode connectivity and the lottery ticket
  hypothesis", ICML 2020.
  Henkelman & Jónsson, "Improved tangent estimate in the nudged elastic band method for
  finding minimum energy paths and saddle points", J. Chem. Phys. 113, 9978 (2000).
  Henkelman, Uberuaga & Jónsson, "A climbing image nudged elastic band method for finding
  saddle points and minimum energy paths", J. Chem. Phys. 113, 9901 (2000).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from landscape import _progress, _validate, critical, surface
from landscape import io as _io
from landscape.batching import batched_mean, check_batch_size, num_samples
from landscape.errors import ConfigError, ProbeError

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]

__all__ = ["CURVE_KINDS", "CertifiedSaddle", "Curve", "FireState", "Path", "Plane",
           "SADDLE_KINDS", "StateFile", "barrier", "check_endpoints", "curve_weights", "evaluate", "fire", "fit_curve",
           "linear", "neb", "plane", "saddle", "saddle_plane"]

SADDLE_KINDS = ("saddle", "minimum", "maximum", "undetermined")

# ------------------------------------------------------------------------ Path

@dataclasses.dataclass(frozen=True, eq=False)
class Path:
  """The loss along a path from ``start`` (``t = 0``) to ``end`` (``t = 1``).

  Attributes:
    method: ``"linear"``, ``"curve"`` or ``"neb"``.
    ts: ``(m,)`` positions in ``[0, 1]``: the interpolation weights of a linear path,
      the normalized cumulative Euclidean arc length of the images of a band.
    values: ``"loss"`` (and, for a linear path, one entry per metric), each ``(m,)``.
    barrier: ``max_i [L(t_i) − ((1 − t_i) L(0) + t_i L(1))]`` over the sampled points,
      the rise above the chord between the endpoint losses (``>= 0``: the endpoints
      contribute 0). Frankle et al. (2020) measure the rise above the endpoints'
      *mean*; the two agree when ``L(0) = L(1)``.
    peak: index of the highest loss (the climbing image of a band).
    start, end: the endpoint pytrees.
    images: a band's images, a pytree like ``start`` whose leaves have a leading ``(m,)``
      axis; ``None`` for a linear path, whose points :attr:`points` rebuilds from ``ts``.
    history: ``(steps + 1,)`` largest NEB force norm ``max_i ‖F_i‖`` before the first
      step and after each step (``None`` for a linear path).
    converged: whether the band's largest force fell below ``tol`` (``None``: linear).
    steps: optimizer steps taken (``None``: linear).
    curve: the :class:`Curve` of a ``"curve"`` path (its points are ``curve(t)``).
  """
  method: str
  ts: np.ndarray
  values: dict[str, np.ndarray]
  barrier: float
  peak: int
  start: PyTree
  end: PyTree
  images: PyTree | None = None
  history: np.ndarray | None = None
  converged: bool | None = None
  steps: int | None = None
  curve: Curve | None = None

  def point(self, i: int) -> PyTree:
    """The pytree at sample ``i`` (a band's image, ``curve(t_i)``, or
    ``start + t_i (end − start)``)."""
    if self.images is not None:
      return jax.tree.map(lambda a: a[i], self.images)
    if self.curve is not None:
      return self.curve(self.ts[i])
    t = self.ts[i]
    return jax.tree.map(lambda a, b: a + jnp.asarray(t, a.dtype) * (b - a), self.start, self.end)

  @property
  def points(self) -> PyTree:
    """All ``m`` points, leaves with a leading ``(m,)`` axis (built on access when linear)."""
    if self.images is not None:
      return self.images
    if self.curve is not None:
      return self.curve.at(self.ts)
    return jax.tree.map(
        lambda a, b: a[None] + jnp.asarray(self.ts, a.dtype).reshape((-1,) + (1,) * a.ndim)
        * (b - a)[None], self.start, self.end)


def barrier(ts: np.ndarray, loss: np.ndarray) -> tuple[float, int]:
  """``(max_i [L_i − ((1 − t_i) L_0 + t_i L_{m−1})], argmax_i L_i)``: the rise above the
  chord between the endpoint losses and the index of the highest point."""
  chord = (1.0 - ts) * loss[0] + ts * loss[-1]
  return float(np.nanmax(loss - chord)), int(np.nanargmax(loss))


# -------------------------------------------------------------------- checks

def _strong(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda leaf: jnp.asarray(leaf, dtype=jnp.result_type(leaf)), tree)


def check_endpoints(start: PyTree, end: PyTree) -> tuple[PyTree, PyTree]:
  """Two points of one model (structure, shapes, floating dtypes), strongly typed;
  :class:`ConfigError` naming the first difference."""
  start = _strong(_validate.param_tree(start, "start"))
  end = _strong(_validate.param_tree(end, "end"))
  if jax.tree.structure(start) != jax.tree.structure(end):
    raise ConfigError(f"end has tree structure {jax.tree.structure(end)}, start has "
                      f"{jax.tree.structure(start)}; pass two points of one model")
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(start), jax.tree.leaves(end)):
    name = jax.tree_util.keystr(path) or "<root>"
    if a.shape != b.shape:
      raise ConfigError(f"end leaf {name} has shape {b.shape}, start has {a.shape}; pass two "
                        "points of one model")
    if a.dtype != b.dtype:
      raise ConfigError(f"end leaf {name} has dtype {b.dtype}, start has {a.dtype}; cast both "
                        "endpoints to one dtype")
  return start, end


def _check_finite_ends(losses: np.ndarray) -> None:
  for name, value in zip(("start", "end"), (float(losses[0]), float(losses[-1]))):
    if not math.isfinite(value):
      raise ProbeError(f"the loss at {name} is {value} (not finite); pass endpoints where "
                       "loss_fn is finite (check for diverged weights and nan/inf data)")


def _check_data(data: PyTree, batch_size: int | None) -> None:
  check_batch_size(batch_size)
  if data is not None:
    num_samples(data)   # DataError for leaves without a common sample axis


# -------------------------------------------------------------------- linear

def linear(loss_fn: LossFn, start: PyTree, end: PyTree, data: PyTree = None, *, num: int = 33,
           batch_size: int | None = None,
           metrics: Mapping[str, LossFn] | None = None) -> Path:
  """Loss (and metrics) on the segment ``θ(t) = (1 − t)·start + t·end``, ``t ∈ [0, 1]``.

  The ``num`` points ``ts = linspace(0, 1, num)`` are one 1-D grid of the sweep engine,
  ``surface.evaluate(loss_fn, start, (end − start,), ts, None, data)``, so they are
  evaluated in compiled chunks (vmap/affine/map point modes, sharded over local
  devices), each on the whole dataset. The barrier is
  ``B = max_t [L(θ(t)) − ((1 − t) L(start) + t L(end))]`` over the samples.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``, the mean loss over ``batch``.
    start, end: endpoint pytrees of one structure, shapes and floating dtypes.
    data: pytree of arrays with a leading sample axis, or ``None``.
    num: number of points including both endpoints (>= 2).
    batch_size: data samples per batch (``None``: all at once).
    metrics: extra per-point means, ``name -> fn(params, batch) -> scalar``.

  Returns:
    A :class:`Path` (``method="linear"``, ``images=None``: :meth:`Path.point` rebuilds a
    point from ``ts``).

  Raises:
    ConfigError: endpoints of different structure, shape or dtype; ``num < 2``.
    ProbeError: a non-finite loss at an endpoint.

  Example:
    >>> path = linear(loss_fn, params_a, params_b, (x, y), num=33, batch_size=512)
    >>> path.barrier, path.ts[path.peak]

  References:
    Goodfellow, Vinyals & Saxe, "Qualitatively characterizing neural network optimization
    problems", ICLR 2015.
    Frankle, Dziugaite, Roy & Carbin, "Linear mode connectivity and the lottery ticket
    hypothesis", ICML 2020.
    Entezari, Sedghi, Saukh & Neyshabur, "The role of permutation invariance in linear
    mode connectivity of neural networks", ICLR 2022 (the barrier above the chord).
  """
  loss_fn = _validate.loss_callable(loss_fn)
  start, end = check_endpoints(start, end)
  num = _validate.integer("num", num, low=2, fix="pass e.g. num=33")
  _check_data(data, batch_size)
  dtype = surface.float_dtype(start)
  ts = np.linspace(0.0, 1.0, num).astype(dtype)
  direction = jax.tree.map(lambda a, b: b - a, start, end)
  surf = surface.evaluate(loss_fn, start, (direction,), ts, None, data, batch_size=batch_size,
                          metrics=metrics)
  values = {name: np.asarray(v) for name, v in surf.values.items()}
  _check_finite_ends(values["loss"])
  height, peak = barrier(ts.astype(np.float64), values["loss"].astype(np.float64))
  return Path("linear", ts, values, height, peak, start, end)


# ---------------------------------------------------------------------- FIRE

class FireState(NamedTuple):
  """State of :func:`fire`: velocity (like the parameters), time step, mixing, count."""
  velocity: PyTree
  dt: jax.Array
  alpha: jax.Array
  count: jax.Array


def fire(dt: float = 0.1, *, dt_max: float = 1.0, max_step: float = 0.2, n_min: int = 5,
         f_inc: float = 1.1, f_dec: float = 0.5, alpha_start: float = 0.1,
         f_alpha: float = 0.99) -> optax.GradientTransformation:
  """FIRE, the fast inertial relaxation engine, as an optax transformation.

  The updates it receives are gradients ``g``; it moves along the force ``F = −g``
  with unit-mass dynamics and a velocity mixed toward ``F``:

      P = ⟨F, v⟩;  P >= 0: v ← (1 − α) v + α ‖v‖ F/‖F‖, and after ``n_min`` such steps
      Δt ← min(f_inc Δt, Δt_max), α ← f_α α;  P < 0: v ← 0, Δt ← f_dec Δt, α ← α_start;
      v ← v + Δt F;  Δθ = Δt v, its norm clipped to ``max_step``.

  All parameters move as one vector (for a band, every image together). ``dt`` and
  ``max_step`` are in parameter units: lower them for a stiff loss.

  Returns:
    An ``optax.GradientTransformation`` (reuse one object to reuse the compiled NEB).

  References:
    Bitzek, Koskinen, Gähler, Moseler & Gumbsch, "Structural relaxation made simple",
    Phys. Rev. Lett. 97, 170201 (2006).
  """
  def init(params):
    dtype = jnp.result_type(jax.tree.leaves(params)[0])
    return FireState(optax.tree.zeros_like(params), jnp.asarray(dt, dtype),
                     jnp.asarray(alpha_start, dtype), jnp.asarray(0, jnp.int32))

  def update(updates, state, params=None):
    del params
    force = optax.tree.scale(-1.0, updates)
    power = optax.tree.vdot(force, state.velocity)
    vnorm, fnorm = optax.tree.norm(state.velocity), optax.tree.norm(force)
    mix = state.alpha * vnorm / jnp.where(fnorm > 0, fnorm, 1.0)
    uphill = power < 0
    grow = ~uphill & (state.count > n_min)
    velocity = jax.tree.map(lambda v, f: jnp.where(uphill, 0.0, (1 - state.alpha) * v + mix * f),
                            state.velocity, force)
    step = jnp.where(uphill, state.dt * f_dec,
                     jnp.where(grow, jnp.minimum(state.dt * f_inc, dt_max), state.dt))
    alpha = jnp.where(uphill, alpha_start, jnp.where(grow, state.alpha * f_alpha, state.alpha))
    count = jnp.where(uphill, 0, state.count + 1)
    velocity = jax.tree.map(lambda v, f: v + step * f, velocity, force)
    move = optax.tree.scale(step, velocity)
    norm = optax.tree.norm(move)
    move = optax.tree.scale(jnp.where(norm > max_step, max_step / norm, 1.0), move)
    return move, FireState(velocity, step.astype(state.dt.dtype),
                           alpha.astype(state.alpha.dtype), count)

  return optax.GradientTransformation(init, update)


@functools.cache
def _default_optimizer() -> optax.GradientTransformation:
  return fire()


# ----------------------------------------------------------------------- NEB

def _dots(a: PyTree, b: PyTree) -> jax.Array:
  """Per-image inner products ``⟨a_i, b_i⟩`` of pytrees with a leading image axis."""
  return sum(jnp.sum((x * y).reshape(x.shape[0], -1), axis=1)
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _times(c: jax.Array, a: PyTree) -> PyTree:
  """``c_i · a_i`` per image."""
  return jax.tree.map(lambda x: c.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype) * x, a)


def _images_loss_and_grad(loss_fn, data, batch_size):
  """``images -> (L_i, ∇L_i)`` for every image in one vmapped dataset mean."""
  def one(p):
    return batched_mean(lambda b: jax.value_and_grad(loss_fn)(p, b), data, batch_size)
  return jax.vmap(one)


@functools.partial(jax.jit, static_argnames=("loss_fn", "batch_size"))
def _end_losses(start, end, data, *, loss_fn, batch_size):
  both = jax.tree.map(lambda a, b: jnp.stack([a, b]), start, end)
  return _images_loss_and_grad(loss_fn, data, batch_size)(both)[0]


def _band_forces(interior, start, end, end_losses, data, spring, *, loss_fn, batch_size,
                 climbing):
  """NEB forces on the interior images, their losses and the largest force norm.

  Improved tangent (Henkelman & Jónsson 2000), spring force along it, climbing image
  (Henkelman, Uberuaga & Jónsson 2000) at the highest interior image.
  """
  losses, grads = _images_loss_and_grad(loss_fn, data, batch_size)(interior)
  band = jax.tree.map(lambda a, x, b: jnp.concatenate([a[None], x, b[None]]), start, interior,
                      end)
  v = jnp.concatenate([end_losses[:1], losses, end_losses[1:]])
  fwd = jax.tree.map(lambda x: x[2:] - x[1:-1], band)
  bwd = jax.tree.map(lambda x: x[1:-1] - x[:-2], band)
  v_prev, v_here, v_next = v[:-2], v[1:-1], v[2:]
  up = (v_next > v_here) & (v_here > v_prev)
  down = (v_next < v_here) & (v_here < v_prev)
  d_big = jnp.maximum(jnp.abs(v_next - v_here), jnp.abs(v_prev - v_here))
  d_small = jnp.minimum(jnp.abs(v_next - v_here), jnp.abs(v_prev - v_here))
  rising = v_next > v_prev
  w_fwd = jnp.where(up, 1.0, jnp.where(down, 0.0, jnp.where(rising, d_big, d_small)))
  w_bwd = jnp.where(up, 0.0, jnp.where(down, 1.0, jnp.where(rising, d_small, d_big)))
  level = (w_fwd + w_bwd) == 0          # a level stretch: the bisector R_{i+1} − R_{i−1}
  w_fwd, w_bwd = jnp.where(level, 1.0, w_fwd), jnp.where(level, 1.0, w_bwd)
  tau = optax.tree.add(_times(w_fwd, fwd), _times(w_bwd, bwd))
  tau_norm = jnp.sqrt(_dots(tau, tau))
  tau = _times(1.0 / jnp.where(tau_norm > 0, tau_norm, 1.0), tau)
  g_par = _dots(grads, tau)
  perp = optax.tree.sub(_times(g_par, tau), grads)                        # −∇L⊥
  stretch = jnp.sqrt(_dots(fwd, fwd)) - jnp.sqrt(_dots(bwd, bwd))
  normal = optax.tree.add(perp, _times(spring * stretch, tau))
  climber = (jnp.arange(losses.shape[0]) == jnp.argmax(losses)) & climbing
  climb = optax.tree.sub(_times(2.0 * g_par, tau), grads)                 # −∇L + 2∇L∥
  force = jax.tree.map(
      lambda c, n: jnp.where(climber.reshape((-1,) + (1,) * (n.ndim - 1)), c, n), climb, normal)
  # ‖F‖ of every image: ‖F‖² = ‖∇L⊥‖² + ‖spring‖² (orthogonal parts), and on the
  # climbing image ‖−g + 2(g·τ̂)τ̂‖ = ‖g‖
  size = jnp.sqrt(_dots(force, force))
  return force, losses, jnp.max(size)


@functools.partial(jax.jit, static_argnames=("loss_fn", "batch_size", "optimizer", "steps",
                                             "climbing", "report"))
def _neb_run(interior, opt_state, start, end, end_losses, data, spring, tol, limit, offset, *,
             loss_fn, batch_size, optimizer, steps, climbing, report=False):
  """Up to ``limit <= steps`` band steps from ``(interior, opt_state)`` (one compiled while
  loop; ``steps`` sizes the history, so segments of one size compile once)."""
  forces = functools.partial(_band_forces, start=start, end=end, end_losses=end_losses,
                             data=data, spring=spring, loss_fn=loss_fn, batch_size=batch_size,
                             climbing=climbing)
  force, losses, fmax = forces(interior)
  history = jnp.full((steps + 1,), jnp.nan, fmax.dtype).at[0].set(fmax)

  def cond(carry):
    i, _, _, _, _, fmax, _ = carry
    return (i < limit) & (fmax >= tol)       # a nan force stops the loop too

  def body(carry):
    i, x, state, force, _, _, history = carry
    updates, state = optimizer.update(optax.tree.scale(-1.0, force), state, x)
    x = optax.apply_updates(x, updates)
    force, losses, fmax = forces(x)
    if report:   # every step to the open progress bar (the step count across segments)
      _progress.tick(offset + i + 1, after=fmax, fmax=fmax)
    return i + 1, x, state, force, losses, fmax, history.at[i + 1].set(fmax)

  carry = (jnp.asarray(0), interior, opt_state, force, losses, fmax, history)
  i, x, state, _, losses, fmax, history = jax.lax.while_loop(cond, body, carry)
  return i, x, state, losses, fmax, history


def _check_init(init: PyTree, start: PyTree, num_images: int, what: str = "num_images") -> PyTree:
  init = _strong(init)
  if jax.tree.structure(init) != jax.tree.structure(start):
    raise ConfigError(f"init has tree structure {jax.tree.structure(init)}, start has "
                      f"{jax.tree.structure(start)}; pass the images stacked leaf by leaf")
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(start), jax.tree.leaves(init)):
    want = (num_images, *a.shape)
    if b.shape != want or b.dtype != a.dtype:
      raise ConfigError(f"init leaf {jax.tree_util.keystr(path) or '<root>'} has shape "
                        f"{b.shape} dtype {b.dtype}; pass shape {want} dtype {a.dtype} "
                        f"({what}={num_images} stacked points)")
  return init


def neb(loss_fn: LossFn, start: PyTree, end: PyTree, data: PyTree = None, *,
        num_images: int = 17, climbing: bool = True, spring: float = 1.0, steps: int = 500,
        optimizer: optax.GradientTransformation | None = None, tol: float = 1e-5,
        batch_size: int | None = None, init: PyTree | None = None,
        state_path: str | os.PathLike | None = None, save_every: int = 100,
        tag: str | None = None) -> Path:
  """A minimum-loss path between two points by the nudged elastic band (NEB).

  A band of images ``R_0 = start, R_1, …, R_{M−1} = end`` (``M = num_images``, the
  endpoints fixed) relaxes under the force, on each interior image ``i``,

      F_i = −∇L(R_i)⊥ + k (‖R_{i+1} − R_i‖ − ‖R_i − R_{i−1}‖) τ̂_i,
      ∇L⊥ = ∇L − (∇L·τ̂) τ̂,

  with the improved tangent τ_i = R_{i+1} − R_i if ``L_{i+1} > L_i > L_{i−1}``,
  ``R_i − R_{i−1}`` if ``L_{i+1} < L_i < L_{i−1}``, and at an extremum the mix
  ``ΔL_max (R_{i+1} − R_i) + ΔL_min (R_i − R_{i−1})`` (weights swapped when
  ``L_{i+1} < L_{i−1}``), with ``ΔL_max/min`` the larger/smaller of
  ``|L_{i±1} − L_i|`` (a level stretch uses ``R_{i+1} − R_{i−1}``). With ``climbing`` the
  highest interior image feels no spring and the parallel force inverted,
  ``F = −∇L + 2 (∇L·τ̂) τ̂``: it climbs along the band to the saddle point.

  Every step — all interior images' losses and gradients (dataset means by
  :func:`landscape.batching.batched_mean`, one ``vmap`` over the images), tangents,
  springs and the climbing force — is one compiled function, iterated inside one
  ``lax.while_loop`` until the largest force ``max_i ‖F_i‖`` is below ``tol`` or after
  ``steps`` steps. ``‖F_i‖ >= ‖∇L⊥_i‖`` (the spring part is orthogonal to ``∇L⊥``),
  so a converged band has every perpendicular gradient and every spring imbalance
  below ``tol``, and its climbing image ``‖∇L‖ < tol`` (``‖F‖ = ‖∇L‖`` there).

  The optimizer receives ``−F`` as the gradient of all interior images together.
  The default, :func:`fire` (FIRE, ``dt=0.1``, ``max_step=0.2`` in parameter units), is
  the usual NEB relaxer: robust on stiff bands where a fixed-rate optimizer oscillates.
  Any optax transformation works (e.g. ``optax.sgd(1e-2)``); reuse one object to
  reuse the compiled loop.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``, the mean loss over ``batch``.
    start, end: the fixed endpoints (one structure, shapes and dtypes), usually minima.
    data: pytree of arrays with a leading sample axis, or ``None``.
    num_images: images including both endpoints (>= 3).
    climbing: make the highest interior image climb to the saddle.
    spring: spring constant ``k`` (> 0).
    steps: largest number of optimizer steps (>= 0).
    optimizer: an optax transformation, or ``None`` for :func:`fire`.
    tol: force tolerance (> 0).
    batch_size: data samples per batch (``None``: all at once).
    init: the starting band, a pytree like ``start`` whose leaves have a leading
      ``(num_images,)`` axis; its first and last images are replaced by ``start`` and
      ``end``. ``None``: equally spaced on the segment.
    state_path: a file for the band's state (images, optimizer state, history), written
      atomically every ``save_every`` steps; an existing one made by the same endpoints and
      settings is resumed, giving the result of an uninterrupted run (:class:`StateFile`).
    save_every: steps between saves (with ``state_path``).
    tag: a name for a custom ``optimizer``'s settings, part of the saved state's identity
      (an optax transformation has no stable identity of its own): resuming with another
      tag is refused. ``None`` with a custom optimizer: resume only with the same one.

  Returns:
    A :class:`Path` (``method="neb"``) with the final ``images``, ``ts`` the normalized
    arc length, ``values["loss"]``, ``barrier``, ``peak`` (the climbing image when
    ``climbing``), ``history``, ``converged`` and ``steps``.

  Raises:
    ConfigError: a bad argument (endpoints that differ in structure, shape or dtype,
      ``num_images < 3``, a non-optax ``optimizer``, an ``init`` of the wrong shape).
    ProbeError: a non-finite loss at an endpoint, or on the band after relaxing
      (the optimizer diverged: lower its step).

  Example:
    >>> path = neb(loss_fn, params_a, params_b, (x, y), num_images=17, steps=1000)
    >>> path.converged, path.barrier, saddle(loss_fn, path, (x, y)).kind

  References:
    Jónsson, Mills & Jacobsen, "Nudged elastic band method for finding minimum energy
    paths of transitions", in Classical and Quantum Dynamics in Condensed Phase
    Simulations, World Scientific, 1998.
    Henkelman & Jónsson, "Improved tangent estimate in the nudged elastic band method
    for finding minimum energy paths and saddle points", J. Chem. Phys. 113, 9978 (2000).
    Henkelman, Uberuaga & Jónsson, "A climbing image nudged elastic band method for
    finding saddle points and minimum energy paths", J. Chem. Phys. 113, 9901 (2000).
    Draxler, Veschgini, Salmhofer & Hamprecht, "Essentially no barriers in neural network
    energy landscape", ICML 2018.
  """
  loss_fn = _validate.loss_callable(loss_fn)
  start, end = check_endpoints(start, end)
  num_images = _validate.integer("num_images", num_images, low=3, fix="pass e.g. num_images=17")
  steps = _validate.integer("steps", steps, low=0, fix="pass e.g. steps=500")
  spring = _validate.positive("spring", spring, fix="pass e.g. spring=1.0")
  tol = _validate.positive("tol", tol, fix="pass e.g. tol=1e-5")
  if not isinstance(climbing, (bool, np.bool_)):
    raise ConfigError(f"climbing must be True or False, got {climbing!r}; pass climbing=True")
  if _check_optimizer(optimizer, "paths.fire() or optax.sgd(1e-2)") is None:
    optimizer = _default_optimizer()
  _check_data(data, batch_size)
  if init is None:
    ts = jnp.linspace(0.0, 1.0, num_images)
    init = jax.tree.map(
        lambda a, b: a[None] + ts.astype(a.dtype).reshape((-1,) + (1,) * a.ndim) * (b - a)[None],
        start, end)
  else:
    init = _check_init(init, start, num_images)
  interior = jax.tree.map(lambda x: x[1:-1], init)
  end_losses = _end_losses(start, end, data, loss_fn=loss_fn, batch_size=batch_size)
  _check_finite_ends(np.asarray(end_losses))
  dtype = end_losses.dtype
  save_every = _validate.integer("save_every", save_every, low=1, fix="pass e.g. save_every=100")
  opt_state = optimizer.init(interior)
  state = {"x": interior, "opt": opt_state, "taken": 0, "history": np.zeros((0,), dtype)}
  settings = {"method": "neb", "num_images": num_images, "climbing": bool(climbing),
              "spring": float(spring), "tol": float(tol), "batch_size": batch_size,
              "optimizer": "fire" if optimizer is _default_optimizer() else tag}
  saver = StateFile(state_path, start, end, settings)
  state = saver.load(state)
  taken = int(state["taken"])
  history = [np.asarray(state["history"])]
  interior, opt_state, fmax = state["x"], state["opt"], math.inf
  segment = max(steps, 1) if state_path is None else save_every
  with _progress.progress(steps, "steps", "nudged elastic band", cap=True, ticks=True) as bar:
    bar.set(taken)
    while True:
      todo = max(0, min(segment, steps - taken))
      n, interior, opt_state, losses, fmax, hist = jax.block_until_ready(_neb_run(
          interior, opt_state, start, end, end_losses, data, jnp.asarray(spring, dtype),
          jnp.asarray(tol, dtype), jnp.asarray(todo), jnp.asarray(taken), loss_fn=loss_fn,
          batch_size=batch_size, optimizer=optimizer, steps=segment, climbing=bool(climbing),
          report=bar.enabled))
      n, hist = int(n), np.asarray(hist)
      history.append(hist[1:n + 1] if any(len(h) for h in history) else hist[:n + 1])
      taken += n
      fmax = float(fmax)
      bar.set(taken, fmax=f"{fmax:.3g}")
      stop = taken >= steps or not fmax >= tol
      saver.save({"x": interior, "opt": opt_state, "taken": taken,
                  "history": np.concatenate(history)})
      if stop:
        break
  losses = np.concatenate([np.asarray(end_losses[:1]), np.asarray(losses),
                           np.asarray(end_losses[1:])])
  if not np.all(np.isfinite(losses)):
    raise ProbeError(f"the band's loss is not finite after {taken} steps (image "
                     f"{int(np.argmin(np.isfinite(losses)))}); the optimizer diverged: lower its "
                     "step (e.g. optimizer=paths.fire(dt=0.01, max_step=0.05)) or raise spring")
  images = jax.tree.map(lambda a, x, b: jnp.concatenate([a[None], x, b[None]]), start, interior,
                        end)
  seg = np.sqrt(np.asarray(_dots(jax.tree.map(lambda x: x[1:] - x[:-1], images),
                                 jax.tree.map(lambda x: x[1:] - x[:-1], images)), np.float64))
  arc = np.concatenate([[0.0], np.cumsum(seg)])
  ts = arc / arc[-1] if arc[-1] > 0 else np.linspace(0.0, 1.0, num_images)
  height, peak = barrier(ts, losses.astype(np.float64))
  return Path("neb", ts, {"loss": losses}, height, peak, start, end, images,
              np.concatenate(history), bool(fmax < tol), taken)



# -------------------------------------------------------------- resumable state

def _fingerprint(start: PyTree, end: PyTree, settings: Mapping[str, Any]) -> str:
  """sha256 of the endpoints' bytes (leaf paths, shapes, dtypes) and the settings."""
  h = hashlib.sha256()
  for name, tree in (("start", start), ("end", end)):
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      arr = np.asarray(leaf)
      h.update(f"{name}{jax.tree_util.keystr(path)}{arr.shape}{arr.dtype}".encode())
      h.update(np.ascontiguousarray(arr).tobytes())
  h.update(json.dumps(dict(settings), sort_keys=True, default=str).encode())
  return h.hexdigest()


class StateFile:
  """The saved state of a curve fit or an elastic band, for resuming after a kill.

  A flax-msgpack file holding the state pytree and a fingerprint of what made it (the
  endpoints' bytes and the settings that change the result). :meth:`load` restores a file
  with the same fingerprint and refuses another (one line naming the fix); :meth:`save`
  writes atomically (temporary sibling, rename), so a kill leaves the previous state. A run
  resumed from its last save repeats exactly the steps an uninterrupted run would take
  (the random draws of a step depend only on the key and the step number).
  """

  def __init__(self, path: str | os.PathLike | None, start: PyTree, end: PyTree,
               settings: Mapping[str, Any]):
    self.path = None if path is None else os.fspath(path)
    self.fingerprint = _fingerprint(start, end, settings) if self.path else ""
    if self.path is not None:
      if os.path.isdir(self.path):
        raise ConfigError(f"state_path {self.path} is a directory; pass a file path")
      _io.check_output_dir(os.path.dirname(self.path) or ".", "directory of state_path")

  def load(self, template: dict) -> dict:
    """The saved state (like ``template``), or ``template`` when there is none."""
    if self.path is None or not os.path.exists(self.path):
      return template
    try:
      with open(self.path, "rb") as f:
        raw = serialization.msgpack_restore(f.read())
    except Exception as e:  # noqa: BLE001 - a foreign or truncated file
      raise ConfigError(f"cannot read the path state {self.path} ({type(e).__name__}); it is "
                        "not a landscape path state: remove it or pass another state_path"
                        ) from None
    if not isinstance(raw, dict) or raw.get("fingerprint") != self.fingerprint:
      raise ConfigError(f"the path state {self.path} was made from other endpoints or "
                        "settings; remove it to start afresh or pass another state_path "
                        "(nothing was changed)")
    history = np.asarray(raw["state"].get("history", np.zeros(0)))
    restored = serialization.from_state_dict(
        dict(template, history=history), raw["state"])
    return restored

  def save(self, state: dict) -> None:
    """Write ``state`` atomically (no-op without a path)."""
    if self.path is None:
      return
    state = jax.tree.map(np.asarray, state)
    blob = serialization.msgpack_serialize(
        {"fingerprint": self.fingerprint, "state": serialization.to_state_dict(state)})
    _io.atomic_write(self.path, blob)


# --------------------------------------------------------------------- curves

CURVE_KINDS = ("bezier", "polychain")


def curve_weights(kind: str, num_control: int, t: jax.Array) -> jax.Array:
  """Weights ``w_i(t)`` of the control points, ``φ(t) = Σ_i w_i(t) θ_i`` (``Σ w_i = 1``).

  ``bezier``: the Bernstein polynomials of degree ``n = num_control − 1``,
  ``w_i = C(n, i) tⁱ (1 − t)ⁿ⁻ⁱ``. ``polychain``: the piecewise-linear hat functions on
  the knots ``i / n``, ``w_i = max(0, 1 − |n t − i|)`` (the polygonal chain through the
  control points). Both give ``φ(0) = θ_0`` and ``φ(1) = θ_n``.
  """
  n = num_control - 1
  i = jnp.arange(num_control, dtype=jnp.result_type(t))
  if kind == "bezier":
    binom = jnp.asarray([math.comb(n, int(k)) for k in range(num_control)], i.dtype)
    return binom * t ** i * (1 - t) ** (n - i)
  return jnp.maximum(0.0, 1.0 - jnp.abs(n * t - i))


def _combine(control: PyTree, w: jax.Array) -> PyTree:
  return jax.tree.map(lambda c: jnp.tensordot(w.astype(c.dtype), c, axes=1), control)


def _control(start: PyTree, bends: PyTree, end: PyTree) -> PyTree:
  return jax.tree.map(lambda a, b, c: jnp.concatenate([a[None], b, c[None]]), start, bends, end)


@dataclasses.dataclass(frozen=True, eq=False)
class Curve:
  """A parametric curve ``φ_θ(t)``, ``t ∈ [0, 1]``, from ``start`` to ``end``.

  Attributes:
    kind: ``"bezier"`` or ``"polychain"`` (:func:`curve_weights`).
    start, end: the fixed endpoints.
    bends: the trained control points between them, leaves with a leading ``(bends,)`` axis.
    history: ``(steps,)`` the minibatch loss at the sampled ``t`` of every training step.
    steps: training steps taken.
  """
  kind: str
  start: PyTree
  end: PyTree
  bends: PyTree
  history: np.ndarray
  steps: int

  @property
  def num_bends(self) -> int:
    return int(jax.tree.leaves(self.bends)[0].shape[0])

  @property
  def control_points(self) -> PyTree:
    """``start``, the bends and ``end`` stacked on a leading ``(bends + 2,)`` axis."""
    return _control(self.start, self.bends, self.end)

  def __call__(self, t: float) -> PyTree:
    """The parameters ``φ(t)``."""
    dtype = surface.float_dtype(self.start)
    w = curve_weights(self.kind, self.num_bends + 2, jnp.asarray(t, dtype))
    return _combine(self.control_points, w)

  def at(self, ts: Any) -> PyTree:
    """``φ(t)`` at every ``t`` of ``ts``, leaves with a leading ``(len(ts),)`` axis."""
    dtype = surface.float_dtype(self.start)
    n = self.num_bends + 2
    w = jax.vmap(lambda t: curve_weights(self.kind, n, t))(jnp.asarray(ts, dtype))
    return jax.tree.map(lambda c: jnp.tensordot(w.astype(c.dtype), c, axes=1),
                        self.control_points)


def _check_kind(kind: str) -> str:
  return _validate.choice("curve kind", kind, CURVE_KINDS)


def _curve_loss(bends, start, end, batch, t, *, loss_fn, kind):
  control = _control(start, bends, end)
  w = curve_weights(kind, jax.tree.leaves(control)[0].shape[0], t)
  return loss_fn(_combine(control, w), batch)


@functools.partial(jax.jit, static_argnames=("loss_fn", "kind", "optimizer"))
def _curve_step(bends, opt_state, start, end, batch, t, *, loss_fn, kind, optimizer):
  loss, grads = jax.value_and_grad(_curve_loss)(bends, start, end, batch, t, loss_fn=loss_fn,
                                                kind=kind)
  updates, opt_state = optimizer.update(grads, opt_state, bends)
  return optax.apply_updates(bends, updates), opt_state, loss


def _minibatch(data: PyTree, key: jax.Array, step: int, batch_size: int | None,
               n: int) -> PyTree:
  """The minibatch of ``step``: epoch-wise permutations of ``key`` (a ragged tail dropped)."""
  if data is None or batch_size is None or batch_size >= n:
    return data
  per_epoch = n // batch_size
  epoch, k = divmod(step, per_epoch)
  perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))
  idx = perm[k * batch_size:(k + 1) * batch_size]
  return jax.tree.map(lambda a: a[idx], data)


def fit_curve(loss_fn: LossFn, start: PyTree, end: PyTree, data: PyTree = None, *,
              kind: str = "bezier", bends: int = 1, steps: int = 1000,
              optimizer: optax.GradientTransformation | None = None,
              batch_size: int | None = None, key: jax.Array | None = None,
              init: PyTree | None = None, state_path: str | os.PathLike | None = None,
              save_every: int = 100, tag: str | None = None) -> Curve:
  """A low-loss curve between two minima (Garipov et al., NeurIPS 2018).

  The bends ``θ`` of a Bézier curve or polygonal chain ``φ_θ(t)`` (:func:`curve_weights`)
  with fixed endpoints are trained to minimize ``E_{t∼U(0,1)} L(φ_θ(t))``: every step
  draws one ``t`` and one minibatch and takes an ``optimizer`` step on the bends along
  ``∇_θ L(φ_θ(t); batch)``, an unbiased estimate of the gradient of the expectation.
  The bends start on the segment (``t = i/(bends+1)``), so the first curve is the linear
  path. With BatchNorm, evaluate the fitted curve with statistics recomputed per point
  (``bn_mode="recompute"`` of :mod:`landscape.objective`), as Garipov et al. do.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``, the mean loss over ``batch``.
    start, end: the fixed endpoints (one structure, shapes and floating dtypes).
    data: pytree of arrays with a leading sample axis, or ``None``.
    kind: ``"bezier"`` or ``"polychain"``.
    bends: number of trained control points (>= 1; 1 is Garipov et al.'s quadratic
      Bézier / three-segment chain... two-segment chain).
    steps: training steps (>= 0).
    optimizer: an optax transformation of the bends (``None``: ``optax.adam(1e-3)``).
    batch_size: samples per step (``None``: full batch); epochs are key-seeded
      permutations and a ragged tail is dropped.
    key: PRNG key for ``t`` and the minibatches (``None``: ``jax.random.key(0)``).
    init: the starting bends (leaves with a leading ``(bends,)`` axis), e.g. from a
      shorter fit; ``None``: on the segment.
    state_path: a file for the training state, written atomically every ``save_every``
      steps and resumed when it exists (:class:`StateFile`): a killed fit resumes to the
      result of an uninterrupted one.
    save_every: steps between saves (with ``state_path``).
    tag: a name for a custom ``optimizer``'s settings, part of the saved state's identity
      (see :func:`neb`).

  Returns:
    A :class:`Curve`; :func:`evaluate` gives the loss along it.

  Raises:
    ConfigError: bad arguments (unknown kind, endpoints that differ, ``bends < 1``, ...),
      or a ``state_path`` made from other endpoints or settings.
    ProbeError: a non-finite loss at an endpoint or during training.

  Example:
    >>> curve = fit_curve(loss_fn, params_a, params_b, (x, y), steps=2000, batch_size=128)
    >>> evaluate(loss_fn, curve, (x, y)).barrier, linear(loss_fn, params_a, params_b, (x, y)).barrier

  References:
    Garipov, Izmailov, Podoprikhin, Vetrov & Wilson, "Loss surfaces, mode connectivity,
    and fast ensembling of DNNs", NeurIPS 2018.
    Draxler, Veschgini, Salmhofer & Hamprecht, "Essentially no barriers in neural network
    energy landscape", ICML 2018.
  """
  loss_fn = _validate.loss_callable(loss_fn)
  kind = _check_kind(kind)
  start, end = check_endpoints(start, end)
  nb = _validate.integer("bends", bends, low=1, fix="pass e.g. bends=1")
  steps = _validate.integer("steps", steps, low=0, fix="pass e.g. steps=1000")
  save_every = _validate.integer("save_every", save_every, low=1, fix="pass e.g. save_every=100")
  key = jax.random.key(0) if key is None else _validate.prng_key(key)
  if _check_optimizer(optimizer, "optax.adam(1e-3)") is None:
    optimizer = _default_curve_optimizer()
  _check_data(data, batch_size)
  n = None if data is None else num_samples(data)
  if n is not None and batch_size is not None and batch_size > n:
    raise ConfigError(f"batch_size {batch_size} exceeds the {n} samples; pass batch_size <= {n}")
  end_losses = _end_losses(start, end, data, loss_fn=loss_fn, batch_size=batch_size)
  _check_finite_ends(np.asarray(end_losses))
  dtype = end_losses.dtype
  if init is None:
    frac = jnp.arange(1, nb + 1, dtype=dtype) / (nb + 1)
    init = jax.tree.map(
        lambda a, b: a[None] + frac.reshape((-1,) + (1,) * a.ndim).astype(a.dtype) * (b - a)[None],
        start, end)
  else:
    init = _check_init(init, start, nb, "bends")
  settings = {"method": "curve", "kind": kind, "bends": nb, "batch_size": batch_size,
              "key": np.asarray(jax.random.key_data(key)).tolist(),
              "optimizer": "adam(1e-3)" if optimizer is _default_curve_optimizer() else tag}
  saver = StateFile(state_path, start, end, settings)
  state = saver.load({"bends": init, "opt": optimizer.init(init), "step": 0,
                      "history": np.zeros((0,), dtype)})
  params, opt_state, step = state["bends"], state["opt"], int(state["step"])
  history = list(np.asarray(state["history"]))
  k_t, k_data = jax.random.split(key)
  with _progress.progress(steps, "steps", "curve fit", cap=True) as bar:
    bar.set(min(step, steps))
    while step < steps:
      t = jax.random.uniform(jax.random.fold_in(k_t, step), (), dtype)
      batch = _minibatch(data, k_data, step, batch_size, n)
      params, opt_state, loss = _curve_step(params, opt_state, start, end, batch, t,
                                            loss_fn=loss_fn, kind=kind, optimizer=optimizer)
      loss = float(loss)
      if not math.isfinite(loss):
        raise ProbeError(f"the curve's loss became {loss} at step {step} (t = {float(t):.3f}); "
                         "the optimizer diverged: lower its learning rate")
      history.append(loss)
      step += 1
      bar.set(step, loss=f"{loss:.4g}")
      if step % save_every == 0 or step == steps:
        saver.save({"bends": params, "opt": opt_state, "step": step,
                    "history": np.asarray(history, dtype)})
  return Curve(kind, start, end, params, np.asarray(history, dtype), step)


@functools.cache
def _default_curve_optimizer() -> optax.GradientTransformation:
  return optax.adam(1e-3)


def _check_optimizer(optimizer, example: str):
  if optimizer is not None and not (callable(getattr(optimizer, "init", None))
                                    and callable(getattr(optimizer, "update", None))):
    raise ConfigError(f"optimizer must be an optax GradientTransformation, got "
                      f"{type(optimizer).__name__}; pass e.g. optimizer={example}")
  return optimizer


def evaluate(loss_fn: LossFn, curve: Curve | Path, data: PyTree = None, *, ts: Any = 33,
             batch_size: int | None = None, metrics: Mapping[str, LossFn] | None = None,
             splits: Mapping[str, PyTree] | None = None) -> Path:
  """The loss (and metrics) along a fitted :class:`Curve` or at the points of a
  :class:`Path`, by the compiled sweep engine.

  The points are one 1-D grid of :func:`landscape.surface.sweep` (compiled chunks of
  points, each on the whole dataset, sharded over local devices): ``φ(t_i)`` of a curve,
  the images of a band (its ``ts`` kept), ``start + t_i (end − start)`` of a linear path.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    curve: a :class:`Curve` from :func:`fit_curve`, or a :class:`Path` to re-evaluate
      (e.g. a band on the full training and test sets after relaxing on a subset).
    data: the dataset, or ``None``; or pass ``splits={"train": ..., "test": ...}`` to
      evaluate several in one sweep (values named ``"train_loss"``, ... ; the barrier and
      peak are then those of the first split's loss).
    ts: for a curve: the number of equally spaced points (>= 2), or the ``t`` values
      (ascending, first 0 and last 1, so that the barrier is measured to the endpoints).
    batch_size: samples per batch.
    metrics: extra per-point means, ``name -> fn(params, batch) -> scalar``.

  Returns:
    A :class:`Path` (``method="curve"`` with ``curve`` set for a curve; otherwise the
    path's method, images, history and convergence with the new ``values``).
  """
  if not isinstance(curve, (Curve, Path)):
    raise ConfigError(f"curve must be a landscape.paths.Curve or Path, got "
                      f"{type(curve).__name__}; pass the result of paths.fit_curve or neb")
  loss_fn = _validate.loss_callable(loss_fn)
  if splits is None:
    _check_data(data, batch_size)
  metrics = dict(metrics or {})
  if isinstance(curve, Curve):
    ts = _check_ts(ts)
    control, kind, num_control = curve.control_points, curve.kind, curve.num_bends + 2
    where = lambda c: _combine(control, curve_weights(kind, num_control, c))  # noqa: E731
    coords, base = ts, Path("curve", ts, {}, 0.0, 0, curve.start, curve.end, curve=curve)
  elif curve.images is not None:
    images = curve.images
    where = lambda c: jax.tree.map(  # noqa: E731
        lambda a: a[jnp.round(c).astype(jnp.int32)], images)
    coords, base = np.arange(len(curve.ts), dtype=np.float64), curve
  else:
    a, b = curve.start, curve.end
    where = lambda c: jax.tree.map(lambda x, y: x + c.astype(x.dtype) * (y - x), a, b)  # noqa: E731
    coords, base = np.asarray(curve.ts, np.float64), curve

  def point_fn(coeffs, batch):
    p = where(coeffs[0])
    return {"loss": loss_fn(p, batch), **{k: fn(p, batch) for k, fn in metrics.items()}}

  dtype = surface.float_dtype(base.start)
  surf = surface.sweep(point_fn, coords.astype(dtype), None, None if splits else data,
                       splits=splits, batch_size=batch_size, point_mode="vmap", dtype=dtype,
                       desc=f"{base.method} path")
  values = {name: np.asarray(v) for name, v in surf.values.items()}
  main = "loss" if "loss" in values else f"{next(iter(splits))}_loss"
  _check_finite_ends(values[main])
  height, peak = barrier(np.asarray(base.ts, np.float64), values[main].astype(np.float64))
  return dataclasses.replace(base, values=values, barrier=height, peak=peak)


def _check_ts(ts: Any) -> np.ndarray:
  if isinstance(ts, (int, np.integer)) and not isinstance(ts, bool):
    num = _validate.integer("ts", ts, low=2, fix="pass e.g. ts=33")
    return np.linspace(0.0, 1.0, num)
  arr = np.asarray(ts, np.float64).reshape(-1)
  if (arr.size < 2 or not np.all(np.isfinite(arr)) or arr[0] != 0.0 or arr[-1] != 1.0
      or np.any(np.diff(arr) <= 0)):
    raise ConfigError(f"ts must be ascending values from 0 to 1 (both included), got "
                      f"{np.array2string(arr[:6])}{'...' if arr.size > 6 else ''}; pass e.g. "
                      "ts=np.linspace(0, 1, 33) or ts=33")
  return arr


# ---------------------------------------------------------------------- planes

@dataclasses.dataclass(frozen=True, eq=False)
class Plane:
  """An orthonormal 2-D plane ``origin + x·u + y·v`` in parameter space.

  ``u`` and ``v`` have unit Euclidean norm (all leaves), so plane coordinates are
  parameter-space distances and the geometry of a figure drawn with equal aspect is true.

  Attributes:
    origin, u, v: pytrees like the parameters.
    points: ``(p, 2)`` plane coordinates of the points that define the plane.
    labels: their names.
    kind: ``"three_point"`` or ``"saddle"``.
  """
  origin: PyTree
  u: PyTree
  v: PyTree
  points: np.ndarray
  labels: tuple[str, ...]
  kind: str

  def project(self, points: PyTree) -> np.ndarray:
    """``(m, 2)`` coordinates ``(⟨p − origin, u⟩, ⟨p − origin, v⟩)`` of stacked points."""
    rel = jax.tree.map(lambda p, o: p - o[None], points, self.origin)
    u = jax.tree.map(lambda a: jnp.broadcast_to(a[None], (_leading(rel),) + a.shape), self.u)
    v = jax.tree.map(lambda a: jnp.broadcast_to(a[None], (_leading(rel),) + a.shape), self.v)
    return np.stack([np.asarray(_dots(rel, u), np.float64),
                     np.asarray(_dots(rel, v), np.float64)], axis=1)


def _leading(tree: PyTree) -> int:
  return int(jax.tree.leaves(tree)[0].shape[0])


def _unit(tree: PyTree) -> PyTree:
  norm = optax.tree.norm(tree)
  return jax.tree.map(lambda a: a / norm.astype(a.dtype), tree)  # saddle_plane's basis


def plane(start: PyTree, end: PyTree, third: PyTree, *,
          labels: tuple[str, str, str] = ("start", "end", "bend")) -> Plane:
  """The plane through three points (Garipov et al. 2018, Fig. 1), orthonormal basis.

  ``origin = start``, ``u = (end − start)/‖end − start‖``, ``v`` the unit component of
  ``third − start`` orthogonal to ``u`` (:func:`landscape.directions.orthonormal_plane`).
  ``start`` lies at ``(0, 0)``, ``end`` at ``(‖end − start‖, 0)`` and ``third`` at
  ``(⟨third − start, u⟩, ‖(third − start)⊥‖)``.

  Raises:
    ConfigError: ``end = start`` or ``third`` on the line through them.
  """
  from landscape import directions as _dirs
  start, end = check_endpoints(start, end)
  third = check_endpoints(start, third)[1]
  origin, u, v, coords = _dirs.orthonormal_plane(start, end, third)
  return Plane(origin, u, v, coords, tuple(labels), "three_point")


def saddle_plane(point: PyTree, negative: PyTree, second: PyTree) -> Plane:
  """The plane at a saddle through its most negative eigenvector and a second direction.

  ``origin = point`` (at ``(0, 0)``), ``u`` = the unit eigenvector (the loss falls along
  ``±u``), ``v`` = the unit component of ``second`` orthogonal to ``u``. At the saddle of
  a minimum-energy path the path's tangent *is* the negative eigenvector, so a useful
  second direction is another one: the chord ``end − start`` (what ``landscape path
  --plane`` uses) or the next eigenvector.

  Raises:
    ConfigError: ``second`` parallel to ``negative``.
  """
  from landscape import directions as _dirs
  u = _unit(negative)
  v = _dirs.orthogonalize(second, u)
  if float(optax.tree.norm(v)) <= 1e-6 * float(optax.tree.norm(second)):
    raise ConfigError("the second direction is parallel to the negative eigenvector at the "
                      "saddle; pass another (e.g. the chord end - start)")
  return Plane(point, u, _unit(v), np.zeros((1, 2)), ("saddle",), "saddle")


# -------------------------------------------------------------------- saddle

@dataclasses.dataclass(frozen=True, eq=False)
class CertifiedSaddle:
  """A critical point found from a path's peak, with bounds on its Morse index.

  Attributes:
    params: the critical point θ* (a pytree).
    loss: ``L(θ*)``.
    grad_norm: ``‖∇L(θ*)‖``.
    converged: ``grad_norm <= tol`` of the search.
    eigenvalues: ``(k,)`` the smallest Ritz values θ_1 ≤ … ≤ θ_k of the Hessian.
    residuals: ``(k,)`` their residuals ``r_i = ‖H y_i − θ_i y_i‖``.
    largest: the largest Ritz value (the spectral scale of the default ``eps``).
    eps: the cut: eigenvalues in ``[−eps, eps]`` count as flat, not negative.
    index_lower: ``#{i: θ_i + r_i < −eps}``, a proven lower bound on the number of
      Hessian eigenvalues below ``−eps``.
    index_upper: ``#{i: θ_i − r_i < −eps}``: a proven upper bound when ``exhaustive``,
      else the count assuming Lanczos missed no eigenvalue below ``−eps``; ``None``
      when all ``k`` Ritz values may be below ``−eps`` and ``k < num_params`` (raise ``k``).
    near_zero: ``#{i: |θ_i| <= eps + r_i}``, eigenvalues that may be flat.
    exhaustive: the Krylov space was the whole parameter space (``num_hvps ==
      num_params``), so the Ritz values are the Hessian's eigenvalues.
    kind: the certificate's kind (:attr:`landscape.critical.Certificate.kind`) when the
      search converged: ``"saddle"`` (an eigenvalue certified below ``−eps``, one above
      ``+eps``), ``"minimum"``, ``"maximum"``; ``"undetermined"`` when the bounds do not
      decide or the search did not converge.
    steps: accepted Newton-MR steps of the search.
    num_hvps: Hessian-vector products of the certificate.
    start: the index of the path point the search started from (the highest interior
      point: the climbing image of a band).
    noise, margin: the measured HVP noise floor and the margin it adds to every interval
      (:func:`landscape.critical.certify`); the bounds above include the margin.
    certificate: the :class:`landscape.critical.Certificate` behind them.
  """
  params: PyTree
  loss: float
  grad_norm: float
  converged: bool
  eigenvalues: np.ndarray
  residuals: np.ndarray
  largest: float
  eps: float
  index_lower: int
  index_upper: int | None
  near_zero: int
  exhaustive: bool
  kind: str
  steps: int
  num_hvps: int
  start: int
  noise: float = 0.0
  margin: float = 0.0
  certificate: Any = None


def saddle(loss_fn: LossFn, path: Path, data: PyTree = None, *, eps: float | None = None,
           k: int = 6, key: jax.Array | None = None, num_steps: int | None = None,
           exhaustive_threshold: int = 256, **find_kwargs: Any) -> CertifiedSaddle:
  """Refine a path's highest point to a critical point and certify its Morse index.

  :func:`landscape.critical.find` (Newton-MR, which converges to saddles as readily as
  to minima) starts at the path's highest interior point; the certificate of the point it
  reaches (:func:`landscape.critical.certify`: the dense spectrum for small models, else
  one Lanczos run, ``which="both"``) gives the ``k`` smallest Ritz values
  θ_1 ≤ … ≤ θ_k of the Hessian ``H``, their residuals ``r_i``, the largest Ritz value
  θ_max and a margin from the measured noise of the Hessian-vector product, which widens
  every interval below (so the bounds hold for the computed, not the ideal, products).

  What is proven, for symmetric ``H`` with eigenvalues λ_1 ≤ … ≤ λ_n:

  - *Lower bound.* Ritz values are the eigenvalues of ``QᵀHQ`` for an orthonormal
    ``Q`` (the Krylov basis), so Cauchy interlacing gives ``λ_i ≤ θ_i`` for every ``i``.
    If ``θ_j < −eps`` then ``λ_1 ≤ … ≤ λ_j < −eps``: the number of Ritz values below
    ``−eps`` is a lower bound on the index. ``index_lower`` counts ``θ_i + r_i < −eps``,
    a count no larger, which keeps a margin for rounding (``Q`` is orthonormal only to
    working precision).
  - *Upper bound.* Interlacing bounds eigenvalues from above only; a Krylov space can
    miss an eigenvector (a start with no component along it; a repeated eigenvalue,
    of which single-vector Lanczos sees one copy). When the Krylov space is the whole
    space (``exhaustive``: ``num_hvps == num_params``, the default for up to
    ``exhaustive_threshold`` parameters), the Ritz values *are* the eigenvalues (to
    rounding, ``O(ε‖H‖)`` by Weyl) and the residual intervals ``[θ_i ± r_i]`` contain
    them, so ``index_upper = #{θ_i − r_i < −eps}`` bounds the index from above (it is
    exact when all ``k`` are counted and ``k = n``). Otherwise ``index_upper`` is the
    same count, valid only if Lanczos missed nothing (probability one for simple
    eigenvalues and a Gaussian start in exact arithmetic, not a proof), and ``None``
    when all ``k`` smallest may be negative (the index may exceed ``k``).

  ``near_zero`` counts ``|θ_i| <= eps + r_i``: possible flat directions (symmetries),
  which make a "minimum" degenerate. The default cut is
  ``eps = √ε_dtype · max(|θ_max|, |θ_1|)``.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``, the mean loss over ``batch``.
    path: a :class:`Path` (usually from :func:`neb`, whose peak is the climbing image).
    data: pytree of arrays with a leading sample axis, or ``None``.
    eps: the flat-eigenvalue cut (>= 0), or ``None`` for the default above.
    k: the number of smallest eigenvalues (clipped to the parameter count).
    key: PRNG key of the Lanczos start vector (``None``: ``jax.random.key(0)``).
    num_steps: Lanczos steps; ``None``: the parameter count when it is at most
      ``exhaustive_threshold`` (an exhaustive run), else the default of
      :func:`landscape.hessian.eigenvalues` with its early stop.
    exhaustive_threshold: the largest parameter count run exhaustively by default.
    **find_kwargs: passed to :func:`landscape.critical.find` (``tol``, ``max_steps``,
      ``batch_size``, Newton-MR options, ...); ``batch_size`` also batches the HVPs.

  Returns:
    A :class:`CertifiedSaddle`.

  Example:
    >>> band = neb(loss_fn, params_a, params_b, (x, y), steps=1000)
    >>> s = saddle(loss_fn, band, (x, y), tol=1e-8)
    >>> s.kind, s.index_lower, s.index_upper, s.loss - band.values["loss"][0]

  References:
    Parlett, "The Symmetric Eigenvalue Problem", SIAM, 1998, ch. 10–11 (interlacing,
    residual bounds).
    Roosta, Liu, Xu & Mahoney, "Newton-MR: Inexact Newton method with minimum residual
    sub-problem solver", EURO J. Comput. Optim. 2022.
    Henkelman, Uberuaga & Jónsson, "A climbing image nudged elastic band method for
    finding saddle points and minimum energy paths", J. Chem. Phys. 113, 9901 (2000).
  """
  if not isinstance(path, Path):
    raise ConfigError(f"path must be a landscape.paths.Path, got {type(path).__name__}; pass "
                      "the result of paths.neb or paths.linear")
  eps = _validate.positive("eps", eps, zero=True, optional=True,
                           fix="pass e.g. eps=1e-8 or None for the relative default")
  k = _validate.integer("k", k, low=1, fix="pass e.g. k=6")
  exhaustive_threshold = _validate.integer("exhaustive_threshold", exhaustive_threshold, low=0,
                                           fix="pass e.g. exhaustive_threshold=256")
  key = jax.random.key(0) if key is None else _validate.prng_key(key)
  if "method" in find_kwargs:
    raise ConfigError("saddle searches with method='newton_mr'; drop the method argument")
  find_kwargs.setdefault("key", key)
  loss = np.asarray(path.values["loss"] if "loss" in path.values else
                    next(v for k, v in path.values.items() if k.endswith("loss")), np.float64)
  origin = path.peak
  if len(loss) > 2 and origin in (0, len(loss) - 1):
    origin = 1 + int(np.nanargmax(loss[1:-1]))   # the highest interior point, not an end
  point = critical.find(loss_fn, path.point(origin), data, method="newton_mr", **find_kwargs)
  cert = point.certificate
  if cert is None or eps is not None or num_steps is not None or k > len(cert.eigenvalues):
    cert = critical.certify(loss_fn, point.params, data, k=k, eps=eps, key=key,
                            num_steps=num_steps, exhaustive_threshold=exhaustive_threshold,
                            batch_size=find_kwargs.get("batch_size"))
  converged = point.grad_norm <= find_kwargs.get("tol", 1e-6)
  k = min(k, len(cert.eigenvalues))
  return CertifiedSaddle(point.params, point.loss, point.grad_norm, converged,
                         np.asarray(cert.eigenvalues[:k], np.float64),
                         np.asarray(cert.residuals[:k], np.float64), float(cert.largest),
                         float(cert.eps), cert.index_lower, cert.index_upper, cert.near_zero,
                         cert.exhaustive, cert.kind if converged else "undetermined",
                         point.steps, int(cert.num_hvps), origin, float(cert.noise),
                         float(cert.margin), cert)
