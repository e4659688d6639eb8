"""Flax Linen model zoo with a name registry, and the first-layer factorization protocol.

Every model is a :class:`flax.linen.Module` with ``__call__(x, train=False) -> (n, k)`` on
channels-last inputs (images ``(n, H, W, C)``, signals ``(n, L)`` / ``(n, L, C)``, features
``(n, d)``), and two more methods with

  __call__(x, train) == head(stem(x), train),

where ``stem`` is only the first linear layer (Dense or convolution, before any
activation or BatchNorm). Its output is linear in that layer's parameters ``θ_s`` (kernel
and bias jointly), so at ``θ + a·d₁ + b·d₂``

  stem(x; θ_s + a·d₁ + b·d₂) = stem(x; θ_s) + a·stem(x; d₁) + b·stem(x; d₂),

and a loss-surface sweep computes the three stem outputs once and only runs ``head`` per
grid point. Call them with ``module.apply(variables, x, method="stem")`` and
``module.apply(variables, z, train, method="head")`` (``mutable=["batch_stats"]`` when
``train`` for BatchNorm models). :func:`stem_param_keys` names the top-level entries of
``variables["params"]`` that ``stem`` reads.

  >>> import landscape.models as lm
  >>> model = lm.get("resnet20_noshort", num_outputs=10)
  >>> variables = lm.init(model, jax.random.key(0), x_train)   # {'params', 'batch_stats'}
  >>> logits = model.apply(variables, x)
  >>> lm.num_params(variables)                                 # 269722
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from landscape import _imports
from landscape.errors import ConfigError, DataError, unknown_name
from landscape.models._common import ACTIVATIONS
from landscape.models.cnn import CNN, cnn
from landscape.models.linear import Linear, linear
from landscape.models.mlp import MLP, ResMLP, mlp, resmlp
from landscape.models.resnet import ResNet, resnet
from landscape.models.vgg import VGG, vgg9

__all__ = [
    "names", "get", "init", "num_params", "register", "stem_param_keys", "ACTIVATIONS",
    "Linear", "MLP", "ResMLP", "CNN", "ResNet", "VGG",
    "linear", "mlp", "resmlp", "cnn", "resnet", "vgg9",
]


def _resnet_alias(depth: int, skip: bool) -> Callable[..., ResNet]:
  def build(*, num_outputs: int, batchnorm: bool = True, width: int = 16) -> ResNet:
    return resnet(num_outputs=num_outputs, depth=depth, skip=skip, batchnorm=batchnorm,
                  width=width)
  return build


_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "linear": linear, "mlp": mlp, "resmlp": resmlp, "cnn": cnn, "resnet": resnet, "vgg9": vgg9,
    **{f"resnet{d}{'' if skip else '_noshort'}": _resnet_alias(d, skip)
       for d in (20, 56, 110) for skip in (True, False)},
}


def names() -> tuple[str, ...]:
  """The registered model names, sorted.

  Returns:
    e.g. ``('cnn', 'linear', 'mlp', 'resnet', 'resnet110', ..., 'vgg9')``.

  Example:
    >>> "resnet56_noshort" in landscape.models.names()
    True
  """
  return tuple(sorted({*_REGISTRY, *_USER}))


def _accepted(name: str) -> tuple[str, ...]:
  params = inspect.signature(_REGISTRY[name]).parameters
  return tuple(p for p in params if p != "num_outputs")


def get(name: str, *, num_outputs: int, **kwargs: Any) -> nn.Module:
  """The registered model ``name`` with ``num_outputs`` outputs and keyword arguments ``kwargs``.

  Builds ``f: x -> R^{num_outputs}`` (logits or regression outputs); see each model's
  docstring for its architecture and defaults.

  Args:
    name: a name from :func:`names` (case-insensitive).
    num_outputs: output dimension ``k`` (classes, or 1 for scalar regression).
    **kwargs: the model's hyperparameters, e.g. ``widths=(64, 64)`` for ``mlp``.

  Returns:
    An unbound :class:`flax.linen.Module` whose ``apply`` maps ``(n, ...)`` inputs to
    ``(n, num_outputs)``.

  Raises:
    ConfigError: an unknown name, an unknown keyword argument or a bad value.

  Example:
    >>> model = get("cnn", num_outputs=10, features=(8, 16), batchnorm=True)

  References:
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the loss landscape of neural nets",
    NeurIPS 2018 (the ResNet/VGG variants).
  """
  if _imports.is_import_path(name):
    return _from_factory(name, _imports.load(name, "model.name", _EXPECTED), num_outputs, kwargs)
  key = name.lower() if isinstance(name, str) else None
  if key in _USER:
    return _from_factory(key, _USER[key], num_outputs, kwargs)
  if key not in _REGISTRY:
    raise unknown_name("model", name, {**_REGISTRY, **_USER})
  accepted = ("num_outputs", *_accepted(key))
  bad = sorted(set(kwargs) - set(accepted))
  if bad:
    raise ConfigError(f"model {key!r} got unknown argument(s) {', '.join(bad)}; "
                      f"accepted: {', '.join(accepted)}")
  return _REGISTRY[key](num_outputs=num_outputs, **kwargs)


_EXPECTED = ("a model factory (**kwargs) -> flax.linen.Module or flax.nnx.Module (given "
             "num_outputs= when it takes it, and rngs= for an NNX model)")
#: The built-in model names.
BUILTIN = frozenset(_REGISTRY)
#: Models added by :func:`register` (name -> factory).
_USER: dict[str, Callable[..., Any]] = {}


def register(name: str, factory: Callable[..., Any]) -> None:
  """Add a model factory under a short ``name`` (for configs and :func:`get`).

  ``factory(**kwargs)`` returns a ``flax.linen.Module`` called as
  ``module.apply(variables, x, train)``, or a ``flax.nnx.Module`` called as ``model(x)``
  (used through :class:`landscape.models.nnx.NNXModule`); it is given ``num_outputs``
  when it takes that argument, and an NNX factory ``rngs`` when it takes that.

  Example:
    >>> register("tiny_nnx", lambda num_outputs, rngs: MyNNX(4, num_outputs, rngs=rngs))
  """
  if not isinstance(name, str) or not name or _imports.is_import_path(name):
    raise ConfigError(f"model name {name!r} must be a plain non-empty string")
  if name.lower() in _REGISTRY:
    raise ConfigError(f"model {name!r} is built in; register yours under another name")
  if not callable(factory):
    raise ConfigError(f"model {name!r}: factory must be callable, got {type(factory).__name__}")
  _USER[name.lower()] = factory


def _from_factory(name: str, factory: Callable[..., Any], num_outputs: int,
                  kwargs: Mapping[str, Any]) -> Any:
  """A user's model: a Linen module as it is, an NNX model (or factory) adapted."""
  from landscape.models import nnx as _nnx
  kwargs = dict(kwargs)
  if _imports.accepts(factory, "num_outputs"):
    kwargs.setdefault("num_outputs", num_outputs)
  nnx_factory = _imports.accepts(factory, "rngs", var_keyword=False)
  _imports.check_call(factory, name, "model", _EXPECTED,
                      **kwargs, **({"rngs": None} if nnx_factory else {}))
  if nnx_factory:   # an NNX factory: built in init() from the run's seed
    return _nnx.NNXModule(factory, kwargs, name=name)
  model = factory(**kwargs)
  if isinstance(model, nn.Module):
    return model if _takes_train(model) else _WithTrain(model)
  if _nnx.is_nnx(model):
    return _nnx.NNXModule(model, name=name)
  raise ConfigError(f"model {name!r} returned a {type(model).__name__}; expected "
                    f"{_EXPECTED}")


class _WithTrain(nn.Module):
  """A user's Linen module called as ``module(x)``: the ``train`` flag every stage passes is
  dropped (its parameters sit under ``inner/``)."""
  inner: nn.Module

  def __call__(self, x, train: bool = False):
    del train
    return self.inner(x)


def _takes_train(module: nn.Module) -> bool:
  try:
    params = list(inspect.signature(type(module).__call__).parameters.values())[1:]
  except (TypeError, ValueError):
    return True
  return len(params) >= 2 or any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def init(module: nn.Module, key: jax.Array,
         sample_input: Float[Array, "n ..."]) -> dict[str, Any]:
  """Initialize ``module``'s variables from ``key`` for inputs shaped like ``sample_input``.

  Runs ``module.init(key, sample_input[:2], train=False)`` (jitted), so only the shape of
  the samples matters: BatchNorm running statistics start at mean 0, variance 1.

  Args:
    module: a model from :func:`get` (or any module with ``__call__(x, train)``).
    key: a JAX PRNG key.
    sample_input: ``(n, ...)`` array of inputs (only ``[:2]`` is used).

  Returns:
    ``{"params": ...}``, plus ``"batch_stats"`` for BatchNorm models.

  Raises:
    DataError: ``sample_input`` has no leading sample axis or the wrong rank for the model.

  Example:
    >>> variables = init(get("mlp", num_outputs=10), jax.random.key(0), x_train)

  References:
    He, Zhang, Ren, Sun, "Delving deep into rectifiers", ICCV 2015 (the He-normal
    initialization of the ResNets).
  """
  x = jnp.asarray(sample_input)
  if x.ndim < 2 or x.shape[0] < 1:
    raise DataError(f"sample_input must be (n, ...) with n >= 1 samples, got shape {x.shape}; "
                    "pass a batch of inputs, e.g. x_train[:2]")
  from landscape.models import nnx as _nnx
  if isinstance(module, _nnx.NNXModule):   # built eagerly from the key (no tracing)
    return module.init(key, x[:2])
  variables = jax.jit(lambda k, xs: module.init(k, xs, train=False))(key, x[:2])
  return dict(variables)


def num_params(variables_or_params: Mapping[str, Any]) -> int:
  """The number of trainable parameters, ``Σ_leaves prod(leaf.shape)``.

  Counts ``variables["params"]`` when given a variables dict (so BatchNorm running
  statistics are excluded), else every leaf of the given params pytree. Works on arrays
  and on ``jax.ShapeDtypeStruct`` leaves (``jax.eval_shape`` of :func:`init`).

  Args:
    variables_or_params: ``{"params": ..., ...}`` or a params pytree.

  Returns:
    The parameter count.

  Example:
    >>> num_params(init(get("resnet20", num_outputs=10), key, jnp.zeros((1, 32, 32, 3))))
    272474

  References:
    He, Zhang, Ren, Sun, "Deep residual learning for image recognition", CVPR 2016
    (Table 6: 0.27M parameters for ResNet-20).
  """
  tree = variables_or_params
  if isinstance(tree, Mapping) and "params" in tree:
    tree = tree["params"]
  return sum(math.prod(jnp.shape(leaf)) for leaf in jax.tree.leaves(tree))


def stem_param_keys(module: nn.Module) -> tuple[str, ...]:
  """The top-level keys of ``variables["params"]`` that ``module.stem`` reads.

  A direction ``d`` restricted to these keys is all the sweep needs to move the stem
  output: ``stem(x; θ + a·d) = stem(x; θ) + a·stem(x; d)``.

  Args:
    module: a model of this package.

  Returns:
    e.g. ``("stem_conv",)``.

  Raises:
    ConfigError: ``module`` does not implement the stem/head protocol.

  Example:
    >>> stem_param_keys(get("mlp", num_outputs=3))
    ('stem_dense',)

  References:
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the loss landscape of neural nets",
    NeurIPS 2018 (the directions the sweep moves along).
  """
  keys = getattr(type(module), "STEM_KEYS", None)
  if keys is None:
    raise ConfigError(f"{type(module).__name__} has no stem/head factorization; use a model "
                      f"from landscape.models.get ({', '.join(names())})")
  return tuple(keys)
