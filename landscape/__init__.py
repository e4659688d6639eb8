"""landscape: loss-landscape and Hessian analysis for JAX.

Public modules (imported on first use, so ``import landscape`` stays light and
never imports matplotlib):

  losses, models, data, config, objective, train,        -- the experiment
  linalg, directions, surface, hessian, critical,        -- the model-agnostic core
  io, plotting, interactive, vtk, pipeline               -- results, figures, runs

  >>> import landscape as ls
  >>> dirs = ls.directions.random_plane(key, params, norm="filter", ignore="biasbn")
  >>> surf = ls.surface.evaluate(loss_fn, params, dirs, xs, ys, data=(x, y), batch_size=512)
"""

from __future__ import annotations

import importlib

from landscape.errors import (ConfigError, DataError, LandscapeError, ProbeError,
                              ResultFileError)

__version__ = "0.1.0"

_SUBMODULES = (
    "losses", "models", "data", "config", "objective", "train", "directions", "surface",
    "grid", "batching", "linalg", "hessian", "curvature", "critical", "newton", "paths", "io",
    "plotting", "interactive", "vtk", "experiment", "direction_kinds", "pipeline", "cli",
)

__all__ = [
    "LandscapeError", "ConfigError", "DataError", "ProbeError", "ResultFileError",
    "__version__", *_SUBMODULES,
]


def __getattr__(name: str):
  if name in _SUBMODULES:
    return importlib.import_module(f"landscape.{name}")
  raise AttributeError(f"module 'landscape' has no attribute {name!r}")
