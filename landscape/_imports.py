"""``package.module:attribute`` import paths: a user's model, loss or dataset named in a config.

A config's ``model.name``, ``loss.name`` and ``data.name`` take such a path beside the
built-in names. The module is imported from ``sys.path`` and from the directories of
:data:`SEARCH_DIRS` (the config file's directory, recorded in the config as
``search_path`` by :func:`landscape.experiment.resolve`). Every failure is one
:class:`~landscape.errors.ConfigError` line naming the path and what was expected.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from landscape.errors import ConfigError, LandscapeError

_PATTERN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def is_import_path(name: Any) -> bool:
  """Whether ``name`` is a ``package.module:attribute`` string."""
  return isinstance(name, str) and bool(_PATTERN.match(name.strip()))


def add_to_path(dirs: Sequence[str | os.PathLike] = ()) -> None:
  """Append ``dirs`` to ``sys.path`` (for good: an imported user module may import its
  siblings later)."""
  sys.path.extend(d for d in map(os.fspath, dirs) if d not in sys.path)


def load(spec: str, what: str, expected: str, dirs: Sequence[str | os.PathLike] = ()) -> Any:
  """The attribute ``spec = "package.module:attr"`` names.

  Args:
    spec: the import path.
    what: what it is for, e.g. ``"model.name"``.
    expected: what the attribute must be, e.g. ``"a model factory (**kwargs) -> module"``.
    dirs: directories searched besides ``sys.path`` (e.g. the config file's).

  Raises:
    ConfigError: the module cannot be imported, or has no such attribute (one line).
  """
  module_name, _, attr = spec.strip().partition(":")
  add_to_path(dirs)
  try:
    obj: Any = importlib.import_module(module_name)
  except ModuleNotFoundError as exc:
    where = ", ".join(os.fspath(d) for d in dirs) or "no config directory"
    raise ConfigError(f"{what} {spec!r}: cannot import {module_name!r} ({exc}); put "
                      f"{module_name.split('.')[0]}.py on sys.path or beside the config "
                      f"file (searched besides sys.path: {where})") from None
  except Exception as exc:   # noqa: BLE001 - the user's module failed while importing
    first = (str(exc).splitlines() or [""])[0]
    raise ConfigError(f"{what} {spec!r}: importing {module_name!r} raised "
                      f"{type(exc).__name__}: {first}; fix the module") from None
  for part in attr.split("."):
    if not hasattr(obj, part):
      raise ConfigError(f"{what} {spec!r}: module {module_name!r} has no attribute "
                        f"{attr!r}; expected {expected}")
    obj = getattr(obj, part)
  if not callable(obj):
    raise ConfigError(f"{what} {spec!r} is a {type(obj).__name__}, not callable; expected "
                      f"{expected}")
  return obj


def accepts(fn: Any, name: str, *, var_keyword: bool = True) -> bool:
  """Whether ``fn`` takes a keyword ``name`` (or, with ``var_keyword``, any ``**kwargs``)."""
  try:
    params = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return False
  return name in params or (var_keyword and any(p.kind is p.VAR_KEYWORD
                                                for p in params.values()))


def check_call(fn: Any, spec: str, what: str, expected: str, /, **kwargs: Any) -> None:
  """Refuse, in one line, a call ``fn(**kwargs)`` its signature does not allow."""
  try:
    inspect.signature(fn).bind(**kwargs)
  except TypeError as exc:
    raise ConfigError(f"{what} {spec!r} cannot be called with "
                      f"({', '.join(f'{k}=...' for k in kwargs) or 'no arguments'}): {exc}; "
                      f"expected {expected}") from None
  except ValueError:
    pass   # no signature to check (a builtin): the call will tell


def call(fn: Any, spec: str, what: str, expected: str, /, **kwargs: Any) -> Any:
  """``fn(**kwargs)`` after :func:`check_call`."""
  check_call(fn, spec, what, expected, **kwargs)
  return fn(**kwargs)


def guarded(prefix: str, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
  """``fn(*args, **kwargs)``; an exception from a user's code in it (not one of landscape's
  own errors, which are one line already) becomes one ConfigError line ``"{prefix}:
  {type}: {first line}"``."""
  try:
    return fn(*args, **kwargs)
  except LandscapeError:
    raise
  except Exception as exc:   # noqa: BLE001 - whatever the user's function raised
    first = (str(exc).splitlines() or [""])[0]
    raise ConfigError(f"{prefix}: {type(exc).__name__}: {first}") from None
