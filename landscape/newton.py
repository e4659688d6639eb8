"""The compiled critical-point solvers of :mod:`landscape.critical`: Newton-MR and GNM.

Both minimize the squared gradient norm ``‖∇L‖²`` of the dataset-mean loss, so they
converge to saddles and maxima as well as minima:

- ``newton_mr``: Newton-MR, each step a MINRES-QLP least-squares solve of ``H p = −g``
  on Hessian-vector products followed by an Armijo line search on ‖g‖²;
- ``gnm``: gradient-norm minimization, an optax optimizer on ``½‖∇L‖²`` whose gradient
  ``H ∇L`` costs one HVP.

  METHODS           the method names
  method_options    the validated ``**method_options`` of :func:`landscape.critical.find`
  solve             the whole search as one compiled ``lax.while_loop``

The search, classification and results live in :mod:`landscape.critical`; this
module only runs the loop, and knows nothing of Morse indices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from landscape import _progress, _validate
from landscape.batching import batched_mean
from landscape.errors import ConfigError
from landscape.hessian import hvp_fn
from landscape.linalg import minres_qlp

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]

__all__ = ["METHODS", "method_options", "solve"]

METHODS = ("newton_mr", "gnm")

# Method options and their defaults (``critical.find(..., **method_options)``).
_NEWTON_MR_OPTIONS = {
    "inner_rtol": 1e-4,       # MINRES-QLP relative tolerance (inexact Newton)
    "inner_maxiter": None,    # MINRES-QLP iterations per step; None: min(num_params, 100)
    "ls_rho": 1e-4,           # Armijo constant of the line search on ‖g‖²
    "ls_beta": 0.5,           # step-length reduction factor
    "ls_max_steps": 40,       # backtracking steps before a step counts as failed
}
_GNM_OPTIONS = {
    "optimizer": None,        # optax transformation; None: backtracking gradient descent
    "max_learning_rate": 1.0,  # initial / largest step of the default optimizer
    "ls_max_steps": 40,       # backtracking steps of the default optimizer
}


class _SolveState(NamedTuple):
  params: PyTree
  loss: jax.Array
  grad: PyTree
  gnorm: jax.Array
  steps: jax.Array
  stalled: jax.Array
  opt_state: Any


def value_and_grad(loss_fn: LossFn, params: PyTree, data: PyTree,
                   batch_size: int | None) -> tuple[jax.Array, PyTree]:
  """Full-dataset mean loss and gradient, accumulated batch by batch."""
  return batched_mean(lambda batch: jax.value_and_grad(loss_fn)(params, batch), data, batch_size)


def _finite(*trees: PyTree) -> jax.Array:
  return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(leaf)) for t in trees
                              for leaf in jax.tree.leaves(t)]))


# --------------------------------------------------------------------- solvers

def _newton_mr_body(vg: Callable, matvec_at: Callable, opts: dict,
                    s: _SolveState) -> _SolveState:
  """One Newton-MR step: MINRES-QLP direction, then Armijo backtracking on ‖g‖²."""
  matvec = functools.partial(matvec_at, s.params)
  neg_grad = optax.tree.cast_like(optax.tree.scale(-1.0, s.grad), s.grad)
  p, _ = minres_qlp(matvec, neg_grad, rtol=opts["inner_rtol"], maxiter=opts["inner_maxiter"])
  slope = optax.tree.vdot(matvec(p), s.grad)      # <p, H g> = ½ d/dα ‖g(θ + αp)‖²

  def gradient_direction():                        # −H g: steepest descent on ½‖g‖²
    hg = matvec(s.grad)
    return optax.tree.scale(-1.0, hg), -optax.tree.vdot(hg, hg)

  newton_ok = (slope < 0) & jnp.isfinite(slope) & _finite(p)
  p, slope = jax.lax.cond(newton_ok, lambda: (p, slope), gradient_direction)
  p = optax.tree.cast_like(p, s.params)
  g2 = s.gnorm ** 2

  def ls_body(ls):
    alpha, i, _, _, _, _ = ls
    trial = optax.tree.cast_like(optax.tree.add_scale(s.params, alpha, p), s.params)
    loss, grad = vg(trial)
    ok = ((optax.tree.norm(grad, squared=True) <= g2 + 2 * opts["ls_rho"] * alpha * slope)
          & jnp.isfinite(loss) & _finite(grad))
    return jnp.where(ok, alpha, alpha * opts["ls_beta"]), i + 1, ok, trial, loss, grad

  init = (jnp.ones_like(s.gnorm), jnp.asarray(0), jnp.asarray(False), s.params, s.loss, s.grad)
  _, _, ok, params, loss, grad = jax.lax.while_loop(
      lambda ls: (~ls[2]) & (ls[1] < opts["ls_max_steps"]), ls_body, init)
  ok = ok & (slope < 0)
  keep = lambda new, old: optax.tree.where(ok, new, old)   # noqa: E731
  return _SolveState(keep(params, s.params), keep(loss, s.loss), keep(grad, s.grad),
                     keep(optax.tree.norm(grad), s.gnorm), s.steps + ok.astype(s.steps.dtype),
                     ~ok, None)


def _gnm_body(vg: Callable, matvec_at: Callable, optimizer: optax.GradientTransformationExtraArgs,
              s: _SolveState) -> _SolveState:
  """One gradient-norm-minimization step: the optimizer on ½‖∇L‖², gradient H ∇L."""
  hg = matvec_at(s.params, s.grad)
  half_g2 = lambda params: 0.5 * optax.tree.norm(vg(params)[1], squared=True)  # noqa: E731
  updates, opt_state = optimizer.update(hg, s.opt_state, s.params, value=0.5 * s.gnorm ** 2,
                                        grad=hg, value_fn=half_g2)
  params = optax.tree.cast_like(optax.apply_updates(s.params, updates), s.params)
  loss, grad = vg(params)
  ok = jnp.isfinite(loss) & _finite(grad, params)
  keep = lambda new, old: optax.tree.where(ok, new, old)   # noqa: E731
  return _SolveState(keep(params, s.params), keep(loss, s.loss), keep(grad, s.grad),
                     keep(optax.tree.norm(grad), s.gnorm), s.steps + ok.astype(s.steps.dtype),
                     ~ok, keep(opt_state, s.opt_state))


@functools.partial(jax.jit, static_argnames=("loss_fn", "method", "batch_size", "optimizer",
                                             "report"))
def solve(params0, data, max_steps, tol, opts, *, loss_fn, method, batch_size, optimizer,
          report=False):
  """The whole search as one ``lax.while_loop``: ``(θ, L, ‖g‖, steps, loss(θ₀))``.

  Stops at ``‖g‖ <= tol``, after ``max_steps`` accepted steps, or when a step is
  rejected (``stalled``). ``opts`` and ``optimizer`` come from :func:`method_options`;
  ``loss_fn`` must be hashable (:func:`landscape._validate.loss_callable`).

  With ``report`` every iteration ticks the step count and ‖g‖ to the open
  :class:`landscape._progress.Progress` (compiled in only then).
  """
  vg = functools.partial(value_and_grad, loss_fn, data=data, batch_size=batch_size)
  matvec_at = hvp_fn(loss_fn, data, batch_size=batch_size)
  loss0, grad0 = vg(params0)
  if method == "newton_mr":
    body = functools.partial(_newton_mr_body, vg, matvec_at, opts)
    opt_state = None
  else:
    body = functools.partial(_gnm_body, vg, matvec_at, optimizer)
    opt_state = optimizer.init(params0)
  gnorm0 = optax.tree.norm(grad0)
  init = _SolveState(params0, loss0, grad0, gnorm0, jnp.asarray(0), ~jnp.isfinite(gnorm0),
                     opt_state)
  if report:
    step = body

    def body(s):
      s = step(s)
      _progress.tick(s.steps, after=s.gnorm, grad_norm=s.gnorm)
      return s
  s = jax.lax.while_loop(
      lambda s: (s.steps < max_steps) & (s.gnorm > tol) & ~s.stalled, body, init)
  return s.params, s.loss, s.gnorm, s.steps, loss0


@functools.lru_cache(maxsize=32)
def _default_gnm_optimizer(max_learning_rate: float, ls_max_steps: int):
  """Backtracking gradient descent (cached: the same object keeps one compile)."""
  return optax.chain(
      optax.sgd(learning_rate=1.0),
      optax.scale_by_backtracking_linesearch(max_backtracking_steps=ls_max_steps,
                                             max_learning_rate=max_learning_rate))


@functools.lru_cache(maxsize=32)
def _with_extra_args(optimizer):
  return optax.with_extra_args_support(optimizer)


# --------------------------------------------------------------------- options

def method_options(method: str, options: dict, num_params: int) -> tuple[dict, Any]:
  """Validated options of ``method`` as (dynamic scalars, static optimizer)."""
  defaults = _NEWTON_MR_OPTIONS if method == "newton_mr" else _GNM_OPTIONS
  for name in options:
    if name not in defaults:
      raise ConfigError(f"unknown option {name!r} for method {method!r}; valid options: "
                        f"{', '.join(sorted(defaults))}")
  o = {**defaults, **options}
  steps = _validate.integer("ls_max_steps", o["ls_max_steps"], low=1,
                            fix="pass e.g. ls_max_steps=40")
  if method == "newton_mr":
    maxiter = (min(num_params, 100) if o["inner_maxiter"] is None else _validate.integer(
        "inner_maxiter", o["inner_maxiter"], low=1, fix="pass e.g. inner_maxiter=100 or None"))
    positive = _validate.positive
    opts = {"inner_rtol": positive("inner_rtol", o["inner_rtol"], upper=1.0,
                                   fix="pass e.g. inner_rtol=1e-4"),
            "inner_maxiter": maxiter,
            "ls_rho": positive("ls_rho", o["ls_rho"], upper=0.5, fix="pass e.g. ls_rho=1e-4"),
            "ls_beta": positive("ls_beta", o["ls_beta"], upper=1.0, fix="pass e.g. ls_beta=0.5"),
            "ls_max_steps": steps}
    return opts, None
  optimizer = o["optimizer"]
  if optimizer is None:
    lr = _validate.positive("max_learning_rate", o["max_learning_rate"],
                            fix="pass e.g. max_learning_rate=1.0")
    return {}, _default_gnm_optimizer(lr, steps)
  if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
    raise ConfigError(f"optimizer must be an optax GradientTransformation, got {optimizer!r}; "
                      "pass e.g. optimizer=optax.adam(1e-2)")
  if not isinstance(optimizer, optax.GradientTransformationExtraArgs):
    optimizer = _with_extra_args(optimizer)
  return {}, optimizer
