"""The direction kinds of ``landscape surface --direction KIND``: one registry entry each.

A *direction builder* takes a :class:`Request` (the surface settings, the opened run, its
objective, the data and the number of grid axes) and returns :class:`Directions`: the
centre of the grid, one direction per axis (pytrees like the objective's ``params``) and
the groups the result file records about them. Adding a kind is one call::

  def my_kind(req: Request) -> Directions:
    ...
  register("my_kind", my_kind)

after which ``--direction my_kind`` sweeps it (the name is checked against :func:`names`).

Built in:

* ``random``: filter-normalized Gaussian directions (Li et al., NeurIPS 2018),
  orthogonalized on a plane if ``surface.orthogonalize``.
* ``pca``: the principal components of the training trajectory (``trajectory.h5``) and
  the trajectory's projection, stored as the ``trajectory/`` group (Li et al., §7).
* ``target``: interpolation towards the final model from one earlier model (1-D,
  Goodfellow et al., ICLR 2015) or the plane through three models (2-D, Garipov et al.,
  NeurIPS 2018).
* ``plane``: the orthonormal plane through the run's model and two targets (epochs or run
  directories), coordinates in parameter-space distance; the three models' coordinates are
  stored as the ``plane/`` group, which the ``plane`` figure kind draws (Garipov et al. 2018).
* ``eigen``: the top-2 (``surface.eigen=top2``) or top and bottom (``top_bottom``) Hessian
  eigenvectors at the centre, normalized like random directions; their eigenvalues are
  stored as ``eigen_directions/``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from landscape.errors import ConfigError, unknown_name

__all__ = ["BUILDERS", "Directions", "Request", "build", "names", "register"]

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Request:
  """What a direction builder gets.

  Attributes:
    settings: the run's ``surface`` config section (``seed``, ``norm``, ``ignore``, ...).
    run: the opened :class:`landscape.experiment.Run`.
    objective: its :class:`landscape.objective.Objective` in the sweep's BatchNorm mode.
    data: the training data ``(x, y)`` (for directions that need the loss).
    ndim: 1 for a line, 2 for a plane.
    log: where to report what was built.
  """
  settings: Any
  run: Any
  objective: Any
  data: Any
  ndim: int
  log: Callable[[str], None] = print

  @property
  def key(self) -> jax.Array:
    """The PRNG key of ``surface.seed``."""
    return jax.random.key(self.settings.seed)


@dataclasses.dataclass(frozen=True)
class Directions:
  """A builder's answer: the grid's centre, one direction per axis, groups to store."""
  centre: PyTree
  directions: list
  groups: dict = dataclasses.field(default_factory=dict)


Builder = Callable[[Request], Directions]
BUILDERS: dict[str, Builder] = {}


def register(name: str, builder: Builder, *, replace: bool = False) -> None:
  """Make ``builder`` the direction kind ``name`` (``replace`` to redefine an existing one)."""
  if not isinstance(name, str) or not name.isidentifier():
    raise ConfigError(f"direction kind name {name!r} must be an identifier, e.g. 'my_kind'")
  if not callable(builder):
    raise ConfigError(f"the builder of direction kind {name!r} must be callable as "
                      f"builder(request) -> Directions, got {builder!r}")
  if name in BUILDERS and not replace:
    raise ConfigError(f"direction kind {name!r} is already registered; pass replace=True to "
                      "redefine it")
  BUILDERS[name] = builder


def names() -> tuple[str, ...]:
  """The registered direction kinds."""
  return tuple(BUILDERS)


def check(name: str) -> None:
  """Refuse an unknown direction kind, listing the registered ones."""
  if name not in BUILDERS:
    raise unknown_name("direction", name, BUILDERS)


def build(name: str, request: Request) -> Directions:
  """The directions of kind ``name`` for ``request``."""
  check(name)
  out = BUILDERS[name](request)
  if not isinstance(out, Directions) or len(out.directions) != request.ndim:
    raise ConfigError(f"direction kind {name!r} returned {out!r}; a builder must return "
                      f"Directions with {request.ndim} direction(s) for a {request.ndim}-D grid")
  return out


# --------------------------------------------------------------------------- built in


def _random(req: Request) -> Directions:
  from landscape import directions as _dirs
  s, centre = req.settings, req.objective.params
  if req.ndim == 2:
    dirs = list(_dirs.random_plane(req.key, centre, norm=s.norm, ignore=s.ignore,
                                   orthogonalize=s.orthogonalize))
  else:
    dirs = [_dirs.random(req.key, centre, norm=s.norm, ignore=s.ignore)]
  return Directions(centre, dirs)


def _pca(req: Request) -> Directions:
  from landscape import directions as _dirs
  from landscape import io as _io
  obj = req.objective
  final = obj.model_part(obj.params)
  epochs, traj = _io.read_trajectory(req.run.dir / "trajectory.h5", final)
  comps, evr = _dirs.pca(traj, final, n=req.ndim, ignore=req.settings.ignore)
  proj = _dirs.project(traj, final, comps)
  group = {"proj_xcoord": np.asarray(proj[0]), "explained_variance_ratio": np.asarray(evr),
           "epochs": np.asarray(epochs)}
  if req.ndim == 2:
    group["proj_ycoord"] = np.asarray(proj[1])
  req.log(f"PCA of {len(traj)} trajectory points: explained variance "
          f"{', '.join(f'{100 * v:.2f}%' for v in evr)}")
  return Directions(obj.params, [obj.lift(c) for c in comps], {"trajectory": group})


def _target(req: Request) -> Directions:
  from landscape import directions as _dirs
  obj, targets = req.objective, req.settings.targets
  if not targets:
    raise ConfigError("direction 'target' needs surface.targets: one epoch/run to interpolate "
                      "to the final model from, or two (2-D: the plane through three models)")
  starts = [obj.perturbed_of(req.run.variables_of(t)) for t in targets]
  models = [obj.model_part(p) for p in starts]
  final = obj.model_part(obj.params)
  if req.ndim == 1:
    if len(models) > 1:
      raise ConfigError("a 1-D target sweep takes one target (interpolation from it to the "
                        "final model); give two targets with --y for a plane")
    return Directions(starts[0], [obj.lift(_dirs.target(models[0], final))])
  if len(models) != 2:
    raise ConfigError(f"a 2-D target plane needs two targets besides the final model, got "
                      f"{len(models)}")
  _, dx, dy = _dirs.plane_through(models[0], models[1], final)
  return Directions(starts[0], [obj.lift(dx), obj.lift(dy)])


def _plane(req: Request) -> Directions:
  from landscape import directions as _dirs
  obj, targets = req.objective, req.settings.targets
  if req.ndim != 2 or len(targets) != 2:
    raise ConfigError(f"direction 'plane' is the orthonormal plane through the run's model and "
                      f"two others: pass --target B --target C (got {len(targets)} target(s)) "
                      "and a --y grid")
  final = obj.model_part(obj.params)
  others = [obj.model_part(obj.perturbed_of(req.run.variables_of(t))) for t in targets]
  _, u, v, coords = _dirs.orthonormal_plane(final, *others)
  req.log(f"orthonormal plane through the run and {', '.join(map(str, targets))}: the three "
          f"models at {', '.join(f'({x:.4g}, {y:.4g})' for x, y in coords)} (parameter "
          "distances; choose --x/--y to cover them)")
  group = {"points_x": coords[:, 0], "points_y": coords[:, 1],
           "labels": ["run", *(str(t) for t in targets)]}
  return Directions(obj.params, [obj.lift(u), obj.lift(v)], {"plane": group})


EIGEN_CHOICES = ("top2", "top_bottom")


def _eigen(req: Request) -> Directions:
  from landscape import directions as _dirs
  from landscape import hessian as _hessian
  s, obj = req.settings, req.objective
  centre = obj.params
  if s.eigen not in EIGEN_CHOICES:
    raise unknown_name("eigen direction choice", s.eigen, EIGEN_CHOICES)
  if s.eigen == "top2":
    e = _hessian.eigenvalues(obj.loss_fn, centre, req.data, k=2, which="largest", key=req.key,
                             batch_size=s.batch_size, return_vectors=True)
    vecs = [jax.tree.map(lambda v, i=i: v[i], e.vectors) for i in range(2)]
    values = np.asarray(e.values)
  else:
    hi, lo = _hessian.eigenvalues(obj.loss_fn, centre, req.data, k=1, which="both",
                                  key=req.key, batch_size=s.batch_size, return_vectors=True)
    vecs = [jax.tree.map(lambda v: v[0], hi.vectors), jax.tree.map(lambda v: v[0], lo.vectors)]
    values = np.array([float(hi.values[0]), float(lo.values[0])])
  req.log(f"Hessian eigenvector directions, eigenvalues {values}")
  dirs = [_dirs.normalize(v, centre, norm=s.norm, ignore=s.ignore) for v in vecs[:req.ndim]]
  return Directions(centre, dirs, {"eigen_directions": {"eigenvalues": values}})


register("random", _random)
register("pca", _pca)
register("target", _target)
register("eigen", _eigen)
register("plane", _plane)
