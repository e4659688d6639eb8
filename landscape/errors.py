"""User-facing errors.

Every failure a user can cause (a bad name, shape, range or file) is a
:class:`LandscapeError` with a one-line message that names the bad value and the
fix. The CLI prints the message without a traceback and exits with status 2.

Each kind of mistake has one class across the package: a bad argument (value,
name, type or range) is a :class:`ConfigError` (the shared checks are in
``landscape._validate``), wrong data shapes or contents a :class:`DataError`, and
a point the probes cannot examine (non-finite loss or gradient) a :class:`ProbeError`.
"""

from __future__ import annotations

from collections.abc import Iterable


class LandscapeError(Exception):
  """Base class of every user-facing error of landscape."""


class ConfigError(LandscapeError, ValueError):
  """A bad argument or configuration value: a wrong type, range or name.

  E.g. ``k`` larger than the parameter count, ``tol < 0``, an unknown method name,
  a ``key`` that is not a PRNG key, an empty or integer params tree.
  """


class DataError(LandscapeError, ValueError):
  """A missing dataset file, a missing key or mismatched shapes."""


class ResultFileError(LandscapeError):
  """A corrupt, foreign or mismatched result file, or one that would be overwritten."""


class ProbeError(LandscapeError, ValueError):
  """A point that cannot be probed: the loss or its gradient is not finite there.

  Raised at a probe point or search start whose loss or gradient is nan/inf
  (diverged weights, nan/inf data, a loss not differentiable there).

  Bad probe *arguments* (``k`` out of range, a non-key ``key``, ...) are
  :class:`ConfigError`.
  """


def unknown_name(kind: str, name: object, valid: Iterable[str]) -> ConfigError:
  """The error for an unknown registry name, listing the valid ones."""
  return ConfigError(
      f"unknown {kind} {name!r}; valid {kind} names: {', '.join(sorted(valid))}")
