"""User-facing errors.

Every failure a user can cause (a bad name, shape, range or file) is a
:class:`LandscapeError` with a one-line message that names the bad value and the
fix. The CLI prints the message without a traceback and exits with status 2.
"""

from __future__ import annotations

from collections.abc import Iterable


class LandscapeError(Exception):
  """Base class of every user-facing error of landscape."""


class ConfigError(LandscapeError, ValueError):
  """A bad configuration value, name or hyperparameter."""


class DataError(LandscapeError, ValueError):
  """A missing dataset file, a missing key or mismatched shapes."""


class ResultFileError(LandscapeError):
  """A corrupt, foreign or mismatched result file, or one that would be overwritten."""


class ProbeError(LandscapeError, ValueError):
  """A probe that cannot run at the requested point (non-finite loss, k too large, ...)."""


def unknown_name(kind: str, name: object, valid: Iterable[str]) -> ConfigError:
  """The error for an unknown registry name, listing the valid ones."""
  return ConfigError(
      f"unknown {kind} {name!r}; valid {kind} names: {', '.join(sorted(valid))}")
