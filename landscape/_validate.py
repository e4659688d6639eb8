"""Argument validation shared by the probes (one message style, one error class).

Every check here refuses a bad *argument* — a wrong type, range or name — with a
:class:`~landscape.errors.ConfigError` whose one-line message names the argument,
the bad value and the fix. Mistakes in the data are :class:`~landscape.errors.DataError`
(raised by :mod:`landscape.batching` and the data loaders), and a point that cannot be
probed (non-finite loss or gradient) is :class:`~landscape.errors.ProbeError` (raised by
the probes themselves); neither is checked here.

  integer(name, value, *, low, fix)                  an ``int >= low`` (not a bool)
  positive(name, value, *, fix, upper=None, ...)     a finite number ``> 0`` (``>= 0``, ``< upper``)
  choice(kind, value, options)                       one of ``options`` (lists them otherwise)
  prng_key(value, name="key")                        a single JAX PRNG key
  param_tree(params, name="params")                  a non-empty pytree of floating arrays
  loss_callable(fn, name="loss_fn")                  a callable, hashable for ``jax.jit``
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from landscape.errors import ConfigError, unknown_name

PyTree = Any


def integer(name: str, value: Any, *, low: int = 0, fix: str) -> int:
  """``value`` as an ``int`` after checking it is an integer ``>= low``.

  Args:
    name: the argument's name, as the caller spells it.
    value: the value passed (bools and floats such as ``2.0`` are refused).
    low: the smallest allowed value.
    fix: how to fix it, e.g. ``"pass e.g. num_steps=40"``.

  Returns:
    ``int(value)``.

  Raises:
    ConfigError: ``"{name} must be an integer >= {low}, got {value!r}; {fix}"``.
  """
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
    raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}; {fix}")
  return int(value)


def positive(name: str, value: Any, *, fix: str, upper: float | None = None,
             zero: bool = False, optional: bool = False) -> float | None:
  """``value`` as a ``float`` after checking it is a finite number ``> 0``.

  Args:
    name: the argument's name.
    value: the value passed (bools, strings, NaN and ±inf are refused).
    fix: how to fix it, e.g. ``"pass e.g. tol=1e-6"``.
    upper: if given, ``value`` must also be ``< upper``.
    zero: allow ``0`` (a non-negative number).
    optional: allow ``None`` (returned as is).

  Returns:
    ``float(value)``, or ``None`` when ``optional`` and ``value is None``.

  Raises:
    ConfigError: ``"{name} must be a finite number > 0 [and < upper] [or None], got …; {fix}"``.
  """
  if value is None and optional:
    return None
  ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
  ok = ok and math.isfinite(value) and (value >= 0 if zero else value > 0)
  ok = ok and (upper is None or value < upper)
  if not ok:
    bound = f"{'>= 0' if zero else '> 0'}{f' and < {upper}' if upper is not None else ''}"
    none = " or None" if optional else ""
    raise ConfigError(f"{name} must be a finite number {bound}{none}, got {value!r}; {fix}")
  return float(value)


def choice(kind: str, value: Any, options: Iterable[str]) -> str:
  """``value`` after checking it is one of ``options``.

  Args:
    kind: what is chosen, as the message names it (``"which"``, ``"trace method"``).
    value: the name passed.
    options: the valid names.

  Returns:
    ``value``.

  Raises:
    ConfigError: ``"unknown {kind} {value!r}; valid {kind} names: …"`` (via
      :func:`landscape.errors.unknown_name`).
  """
  options = tuple(options)
  if not isinstance(value, str) or value not in options:
    raise unknown_name(kind, value, options)
  return value


def prng_key(value: Any, name: str = "key") -> jax.Array:
  """``value`` after checking it is one JAX PRNG key.

  Accepts a typed key (``jax.random.key(0)``, shape ``()``) or a raw ``uint32`` key
  (``jax.random.PRNGKey(0)``, shape ``(2,)``, or ``(4,)`` for the rbg generators).

  Raises:
    ConfigError: ``"{name} must be a JAX PRNG key, got …; pass {name}=jax.random.key(0)"``.
  """
  ok = isinstance(value, jax.Array) and (
      (jnp.issubdtype(value.dtype, jax.dtypes.prng_key) and value.shape == ())
      or (value.dtype == jnp.uint32 and value.shape in ((2,), (4,))))
  if not ok:
    raise ConfigError(f"{name} must be a JAX PRNG key, got {_short(value)}; "
                      f"pass {name}=jax.random.key(0)")
  return value


def param_tree(params: PyTree, name: str = "params") -> PyTree:
  """``params`` after checking it is a pytree that can be differentiated.

  A parameter pytree must have at least one leaf and only floating-point leaves
  (arrays of any kind, or Python floats).

  Args:
    params: the pytree passed.
    name: the argument's name (``"params"``, ``"params0"``, ``"starts[2]"``).

  Returns:
    ``params``, unchanged.

  Raises:
    ConfigError: an empty tree (``"{name} has no arrays; …"``) or a leaf of an
      integer/bool dtype (``"{name} leaf {path} has dtype {dtype}; …"``).
  """
  flat = jax.tree_util.tree_leaves_with_path(params)
  if not flat:
    raise ConfigError(f"{name} has no arrays; pass a pytree of floating-point parameter arrays")
  for path, leaf in flat:
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise ConfigError(
          f"{name} leaf {jax.tree_util.keystr(path) or '<root>'} has dtype {dtype}; pass "
          "floating-point parameters (cast it, e.g. jnp.asarray(w, jnp.float32), or close over "
          "it in loss_fn)")
  return params


class _ById:
  """An unhashable callable made usable as a jit static argument (hashed by identity)."""
  __slots__ = ("fn",)

  def __init__(self, fn: Callable):
    self.fn = fn

  def __call__(self, *args):
    return self.fn(*args)

  def __hash__(self) -> int:
    return id(self.fn)

  def __eq__(self, other: object) -> bool:
    return isinstance(other, _ById) and other.fn is self.fn


def loss_callable(fn: Any, name: str = "loss_fn") -> Callable:
  """``fn`` after checking it is callable, made hashable for a jit static argument.

  A hashable ``fn`` is returned as is; an unhashable one (e.g. a callable
  dataclass instance) is wrapped so that it hashes by identity.

  Raises:
    ConfigError: ``"{name} must be callable as {name}(params, batch) -> scalar, got …"``.
  """
  if not callable(fn):
    raise ConfigError(f"{name} must be callable as {name}(params, batch) -> scalar, got "
                      f"{_short(fn)}; pass the mean loss over a batch")
  try:
    hash(fn)
  except TypeError:
    return _ById(fn)
  return fn


def _short(value: Any) -> str:
  """``type value!r`` on one line, cut to 60 characters."""
  text = " ".join(repr(value).split())
  return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"
