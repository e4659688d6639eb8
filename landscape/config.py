"""One experiment as frozen dataclasses; YAML in and out; ``--set`` overrides.

The defaults of :class:`Config` ARE the embedded default experiment that
``landscape run`` uses with no ``--config``: the digits dataset, a small CNN and
cross-entropy (``configs/default.yaml`` is the same config written out). Only
``landscape.pipeline`` reads a config; everything below it takes explicit
keyword arguments.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from landscape.errors import ConfigError


def _frozen(**kw):
  return dataclasses.dataclass(frozen=True, **kw)


@_frozen()
class DataConfig:
  name: str = "digits"
  seed: int = 0
  standardize: bool = False
  n_train: int | None = None
  n_test: int | None = None
  path: str | None = None
  kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@_frozen()
class ModelConfig:
  name: str = "cnn"
  kwargs: Mapping[str, Any] = dataclasses.field(
      default_factory=lambda: {"features": [16, 32], "dense": 64})


@_frozen()
class LossConfig:
  """The objective J(θ) = mean loss + l2·½‖θ‖² + l1·‖θ‖₁ (the swept landscape)."""
  name: str = "cross_entropy"
  kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  l2: float = 0.0
  l1: float = 0.0


@_frozen()
class CurvatureTrackConfig:
  """Hessian eigenvalues tracked during training (``train.curvature``; ``every = 0``: off).

  Every ``every`` epochs or optimizer steps (``unit``) the ``k`` extreme eigenvalues
  (``which``) of the training objective's Hessian on the first ``n_samples`` training
  samples (the same subset every time) are computed by Lanczos, warm-started from the
  previous probe's Ritz vectors; see :func:`landscape.train.train`.
  """
  every: int = 0                   # probe interval; 0: no tracking
  unit: str = "epochs"             # epochs | steps
  k: int = 1
  which: str = "both"              # largest | smallest | both
  num_steps: int = 40              # Lanczos steps per probe at most
  tol: float = 0.001               # stop at Ritz residuals <= tol·max|θ|
  n_samples: int | None = 512      # first n training samples probed (None: all)
  batch_size: int | None = 512     # HVP batch
  warm_start: bool = True
  seed: int = 0


@_frozen()
class TrainConfig:
  optimizer: str = "adam"          # sgd | adam | adamw
  lr: float = 3e-3
  momentum: float = 0.9            # sgd only
  nesterov: bool = False           # sgd only
  b1: float = 0.9                  # adam/adamw
  b2: float = 0.999
  schedule: str = "cosine"         # constant | step | cosine
  step_epochs: int = 10            # step schedule: decay every step_epochs
  step_gamma: float = 0.1          # step schedule: multiply by this
  warmup_epochs: int = 0
  weight_decay: float = 0.0        # adamw: decoupled; sgd/adam: added to the gradient
  batch_size: int = 64
  epochs: int = 15
  seed: int = 0
  save_every: int = 1              # checkpoint + trajectory every N epochs (and the last)
  curvature: CurvatureTrackConfig = dataclasses.field(default_factory=CurvatureTrackConfig)


@_frozen()
class SurfaceConfig:
  x: str = "-1:1:31"
  y: str | None = "-1:1:31"        # None for a 1-D sweep
  direction: str = "random"        # random | pca | target | eigen
  norm: str = "filter"
  ignore: str | None = "biasbn"
  orthogonalize: bool = False
  bn_mode: str = "eval"            # eval | states | recompute
  splits: Sequence[str] = ("train", "test")
  batch_size: int | None = 512
  chunk_size: int | None = None    # grid points per compiled call; None: automatic
  point_mode: str = "auto"         # auto | vmap | affine | map
  factorize: bool = True           # first-layer linearity when the model allows it
  seed: int = 0
  targets: Sequence[str] = ()      # checkpoint epochs or paths for direction=target
  eigen: str = "top2"              # top2 | top_bottom (direction=eigen)
  bn_samples: int = 2048           # training samples for bn_mode=recompute


@_frozen()
class HessianConfig:
  enabled: bool = True
  k: int = 5
  which: str = "both"              # largest | smallest | both
  num_steps: int | None = None
  trace: bool = True
  trace_samples: int = 30
  trace_method: str = "hutch++"
  density: bool = True
  density_runs: int = 4
  density_steps: int = 30
  map: bool = False                # per-grid-point curvature map (max_eig, min_eig)
  map_steps: int = 64              # Lanczos steps per map point (the cap with map_tol)
  map_tol: float | None = 0.01     # stop a point at residuals <= map_tol·|λ_max| (null: never)
  map_warm_start: bool = True      # start every point from the centre's extreme eigenvectors
  batch_size: int | None = 512
  n_samples: int | None = 512      # training samples used for probes (None: all)
  hvp: str = "auto"                # auto | linearize | fwd-rev | rev-fwd
  operators: Sequence[str] = ("hessian",)   # hessian | ggn | fisher | residual (H - G)
  blocks: str | Mapping[str, Any] | None = None   # null | layer | {name: path pattern(s)}
  seed: int = 0


@_frozen()
class CriticalConfig:
  enabled: bool = False
  method: str = "newton_mr"
  starts: int = 4
  max_steps: int = 50
  tol: float = 1e-5
  scale: float = 0.1
  n_samples: int | None = 256
  seed: int = 0


@_frozen()
class PathsConfig:
  methods: Sequence[str] = ("linear", "curve", "neb")   # `landscape path --method`
  num: int = 33                    # points along the linear path and the curve
  curve_kind: str = "bezier"       # bezier | polychain
  bends: int = 1
  curve_steps: int = 1000          # Adam steps on the bends, one t and one minibatch each
  curve_lr: float = 0.001
  curve_batch_size: int = 128
  neb_images: int = 17
  neb_steps: int = 300
  neb_tol: float = 0.0001
  spring: float = 1.0
  neb_init: str = "curve"          # curve (the fitted curve, when computed) | linear
  n_samples: int | None = 512      # training samples of the band and the saddle (None: all)
  batch_size: int | None = 512     # data batch inside the band, the saddle and evaluations
  saddle_tol: float = 0.0001
  saddle_steps: int = 50
  saddle_k: int = 6
  plane_num: int = 21              # plane grid points per axis (--plane)
  plane_margin: float = 0.25       # plane margin beyond the three points, x their distance
  save_every: int = 50             # curve/band steps between saved states
  seed: int = 0


@_frozen()
class PlotConfig:
  enabled: bool = True
  kinds: Sequence[str] | None = None   # None: every kind the result supports
  formats: Sequence[str] = ("pdf", "png")


@_frozen()
class Config:
  name: str = "default"
  # directories searched (besides sys.path) for `package.module:attribute` model, loss and
  # data names; `landscape --config FILE` adds FILE's directory
  search_path: Sequence[str] = ()
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  loss: LossConfig = dataclasses.field(default_factory=LossConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
  surface: SurfaceConfig = dataclasses.field(default_factory=SurfaceConfig)
  hessian: HessianConfig = dataclasses.field(default_factory=HessianConfig)
  critical: CriticalConfig = dataclasses.field(default_factory=CriticalConfig)
  paths: PathsConfig = dataclasses.field(default_factory=PathsConfig)
  plot: PlotConfig = dataclasses.field(default_factory=PlotConfig)


class _Loader(yaml.SafeLoader):
  """``yaml.SafeLoader`` with YAML 1.2 numbers.

  PyYAML implements YAML 1.1, where ``-1:1:51`` is a base-60 integer (-3711) and ``1e-3``
  is a string; a grid range or a learning rate written plainly in a config file or in
  ``--set`` would be silently mangled or refused. Here integers are decimal, ``0x``/``0o``/
  ``0b`` only, and floats accept an exponent without a dot (``1e-3``).
  """


class _Dumper(yaml.SafeDumper):
  """``yaml.SafeDumper`` that also quotes the strings :class:`_Loader` reads as numbers, so a
  written config reads back the same with :class:`_Loader` and with ``yaml.safe_load``."""


_INT = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)$")
_FLOAT = re.compile(r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                        |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
                        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                        |[-+]?\.(?:inf|Inf|INF)
                        |\.(?:nan|NaN|NAN))$""", re.X)
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _NUMBER_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Dumper.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in yaml.SafeDumper.yaml_implicit_resolvers.items()}
for _cls in (_Loader, _Dumper):
  _cls.add_implicit_resolver(_NUMBER_TAGS[0], _INT, list("-+0123456789"))
  _cls.add_implicit_resolver(_NUMBER_TAGS[1], _FLOAT, list("-+0123456789."))


def _yaml_load(text: str) -> Any:
  return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def _field_types(cls) -> dict[str, Any]:
  return typing.get_type_hints(cls)


def _is_section(tp) -> bool:
  return dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
  """Check (and gently coerce) a YAML value against a field's type annotation."""
  origin = typing.get_origin(tp)
  args = typing.get_args(tp)
  if origin in (typing.Union, types.UnionType):
    if value is None and type(None) in args:
      return None
    errors = []
    for arg in args:
      if arg is type(None):
        continue
      try:
        return _coerce(value, arg, where)
      except ConfigError as e:
        errors.append(str(e))
    raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
  if tp is Any:
    return value
  if origin in (Sequence, list, tuple) or tp in (list, tuple):
    if isinstance(value, str):
      value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
      raise ConfigError(f"{where} must be a list, got {value!r}")
    inner = args[0] if args else Any
    return tuple(_coerce(v, inner, where) for v in value)
  if origin in (Mapping, dict) or tp is dict:
    if not isinstance(value, Mapping):
      raise ConfigError(f"{where} must be a mapping of keyword arguments, got {value!r}")
    return dict(value)
  if tp is bool:
    if isinstance(value, bool):
      return value
    raise ConfigError(f"{where} must be true or false, got {value!r}")
  if tp is int:
    if isinstance(value, bool) or not isinstance(value, int):
      if isinstance(value, float) and value.is_integer():
        return int(value)
      raise ConfigError(f"{where} must be an integer, got {value!r}")
    return value
  if tp is float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ConfigError(f"{where} must be a number, got {value!r}")
    return float(value)
  if tp is str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
      raise ConfigError(f"{where} must be a string, got {value!r}")
    return str(value)
  return value


def _build(cls, raw: Mapping[str, Any] | None, where: str):
  raw = {} if raw is None else raw
  if not isinstance(raw, Mapping):
    raise ConfigError(f"{where or 'config'} must be a mapping, got {raw!r}")
  hints = _field_types(cls)
  unknown = set(raw) - set(hints)
  if unknown:
    key = sorted(unknown)[0]
    raise ConfigError(f"unknown config key {(where + '.' if where else '') + key!r}; "
                      f"valid keys{' of ' + where if where else ''}: {', '.join(hints)}")
  kwargs = {}
  for name, tp in hints.items():
    if name not in raw:
      continue
    sub = f"{where}.{name}" if where else name
    kwargs[name] = (_build(tp, raw[name], sub) if _is_section(tp)
                    else _coerce(raw[name], tp, sub))
  return cls(**kwargs)


def from_dict(raw: Mapping[str, Any] | None) -> Config:
  """A :class:`Config` from nested mappings (as read from YAML); unknown keys are errors."""
  return _build(Config, raw, "")


def to_dict(cfg: Config) -> dict[str, Any]:
  """Plain nested dict (lists, not tuples) — YAML/JSON safe."""
  def plain(v):
    if dataclasses.is_dataclass(v):
      return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, Mapping):
      return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
      return [plain(x) for x in v]
    return v
  return plain(cfg)


def to_json(cfg: Config) -> str:
  return json.dumps(to_dict(cfg), sort_keys=True)


def load(path: str | Path) -> Config:
  """Read a YAML config file (missing sections take the defaults)."""
  path = Path(path)
  if not path.is_file():
    raise ConfigError(f"config file {str(path)!r} not found; pass an existing YAML file "
                      "(see configs/)")
  try:
    raw = _yaml_load(path.read_text())
  except yaml.YAMLError as e:
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise ConfigError(f"config file {str(path)!r} is not valid YAML: {first}") from None
  return from_dict(raw)


def dump(cfg: Config, path: str | Path) -> None:
  """Write the config as YAML, atomically (a temporary file renamed onto ``path``)."""
  from landscape import io as _io
  _io.atomic_write(path, yaml.dump(to_dict(cfg), Dumper=_Dumper, sort_keys=False))


def parse_override(item: str) -> tuple[list[str], Any]:
  """``"train.epochs=5"`` -> (["train", "epochs"], 5); the value is parsed as YAML."""
  if "=" not in item:
    raise ConfigError(f"malformed override {item!r}; use --set section.key=value, "
                      "e.g. --set train.epochs=5")
  key, _, text = item.partition("=")
  parts = [p for p in key.strip().split(".")]
  if not key.strip() or any(not p for p in parts):
    raise ConfigError(f"malformed override {item!r}; use --set section.key=value")
  try:
    value = _yaml_load(text) if text.strip() else None
  except yaml.YAMLError:
    value = text
  return parts, value


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
  """Apply ``--set a.b=value`` overrides and re-validate the whole config."""
  raw = to_dict(cfg)
  for item in overrides:
    parts, value = parse_override(item)
    node = raw
    for i, p in enumerate(parts[:-1]):
      if not isinstance(node, dict) or p not in node:
        raise ConfigError(f"unknown config key {'.'.join(parts[:i + 1])!r} in override "
                          f"{item!r}; valid: {', '.join(node) if isinstance(node, dict) else '-'}")
      if node[p] is None:
        node[p] = {}
      node = node[p]
    if not isinstance(node, dict):
      raise ConfigError(f"override {item!r} sets a key inside a non-mapping value")
    last = parts[-1]
    is_kwargs = len(parts) >= 2 and parts[-2] == "kwargs"
    if last not in node and not is_kwargs:
      raise ConfigError(f"unknown config key {'.'.join(parts)!r} in override {item!r}; "
                        f"valid keys there: {', '.join(node)}")
    node[last] = value
  return from_dict(raw)


def parse_range(text: str, what: str = "range") -> tuple[float, float, int]:
  """The original tool's ``min:max:num`` grid syntax -> (min, max, num)."""
  parts = str(text).split(":")
  try:
    if len(parts) != 3:
      raise ValueError
    lo, hi, num = float(parts[0]), float(parts[1]), int(parts[2])
  except ValueError:
    raise ConfigError(f"bad {what} {text!r}; use min:max:num, e.g. -1:1:51") from None
  bad = [v for v in (lo, hi) if not _finite(v)]
  if bad:
    raise ConfigError(f"bad {what} {text!r}: {bad[0]} is not a finite number; use finite "
                      "bounds, e.g. -1:1:51")
  big = [v for v in (lo, hi) if abs(v) > MAX_COORDINATE]
  if big:
    raise ConfigError(f"bad {what} {text!r}: {big[0]:g} is beyond {MAX_COORDINATE:g}, where "
                      "a float32 model's shifted weights overflow; use bounds like -1:1:51")
  if num < 1 or (num > 1 and not hi > lo):
    raise ConfigError(f"bad {what} {text!r}: need max > min and num >= 1 "
                      "(num = 1 gives the single point min)")
  return lo, hi, num


#: The largest grid coordinate accepted: x·d of a unit-scale direction stays finite in
#: float32 (whose largest value is 3.4e38) with room for the loss computation.
MAX_COORDINATE = 1e30


def _finite(v: float) -> bool:
  return v == v and abs(v) != float("inf")


def grid(text: str, what: str = "range"):
  """Grid coordinates for ``min:max:num`` (float64, like ``np.linspace``)."""
  import numpy as np
  lo, hi, num = parse_range(text, what)
  return np.linspace(lo, hi, num)


def first_difference(a: Any, b: Any, path: str = "") -> str:
  """The first entry where two nested config dicts differ, as ``"dotted.key: a != b"``."""
  if isinstance(a, dict) and isinstance(b, dict):
    for k in sorted(set(a) | set(b)):
      if a.get(k) != b.get(k):
        return first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k)
  return f"{path}: {a!r} != {b!r}"
