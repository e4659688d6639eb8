"""Shared pieces of the model zoo: argument checks, activations, an N-d convolution, pooling.

Private to :mod:`landscape.models`; the public names live in the model modules and are
re-exported from the package ``__init__``.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from landscape.errors import ConfigError, DataError, unknown_name

Initializer = Callable[..., jax.Array]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "gelu": nn.gelu,
    "sigmoid": nn.sigmoid,
    "elu": nn.elu,
    "softplus": nn.softplus,
    "leaky_relu": nn.leaky_relu,
}

# He et al. 2015 ("Delving deep into rectifiers"): Var[w] = 2 / fan_in, for ReLU stacks.
HE_NORMAL = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """The activation function called ``name``; ConfigError for an unknown one."""
  if not isinstance(name, str) or name not in ACTIVATIONS:
    raise unknown_name("activation", name, ACTIVATIONS)
  return ACTIVATIONS[name]


def positive_int(model: str, arg: str, value: Any) -> int:
  """``value`` as an int >= 1, or a one-line ConfigError naming ``model`` and ``arg``."""
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigError(f"{model}: {arg} must be a positive integer, got {value!r}")
  return int(value)


def positive_ints(model: str, arg: str, value: Any, *, allow_empty: bool) -> tuple[int, ...]:
  """``value`` as a tuple of ints >= 1, or a one-line ConfigError."""
  if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
    raise ConfigError(f"{model}: {arg} must be a list of positive integers, got {value!r}")
  if not value and not allow_empty:
    raise ConfigError(
        f"{model}: {arg} must be a non-empty list of positive integers, got {value!r}")
  for v in value:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
      raise ConfigError(f"{model}: {arg} must be a list of positive integers, got {value!r}")
  return tuple(int(v) for v in value)


def boolean(model: str, arg: str, value: Any) -> bool:
  """``value`` if it is a bool, else a one-line ConfigError."""
  if not isinstance(value, bool):
    raise ConfigError(f"{model}: {arg} must be true or false, got {value!r}")
  return value


def check_ndim(model: str, x: jax.Array, allowed: Container[int], what: str) -> None:
  """DataError unless ``x.ndim`` is one of ``allowed`` (``what`` describes the layout)."""
  if jnp.ndim(x) not in allowed:
    raise DataError(f"{model} expects inputs of shape {what}, got shape {tuple(jnp.shape(x))}; "
                    "reshape the data (channels last, leading sample axis)")


def flatten(x: jax.Array) -> jax.Array:
  """``(n, ...) -> (n, prod(...))``."""
  return jnp.reshape(x, (x.shape[0], -1))


def max_pool2(x: jax.Array, padding: str = "VALID") -> jax.Array:
  """2x max pooling, stride 2, over every spatial axis of length >= 2 (others untouched).

  ``x`` is ``(n, *spatial, c)``; each pooled axis of length ``s`` becomes ``s // 2``
  (``padding="VALID"``, PyTorch's default) or ``ceil(s / 2)`` (``"SAME"``: padded with
  -inf, PyTorch's ``ceil_mode=True``). An input whose spatial axes are all of length 1 is
  returned unchanged, so a fixed stack of pooling stages works on 8x8 and 32x32 images and
  on 1-D signals. Written as a reshape and a max, which equals ``flax.linen.max_pool`` and
  compiles its gradient several times faster than ``select_and_scatter``.
  """
  spatial = x.shape[1:-1]
  if all(s < 2 for s in spatial):
    return x
  if padding == "SAME":
    pad = [(0, 0)] + [(0, s % 2 if s >= 2 else 0) for s in spatial] + [(0, 0)]
    x = jnp.pad(x, pad, constant_values=-jnp.inf)
  else:
    x = x[(slice(None), *(slice(0, s - s % 2 if s >= 2 else s) for s in spatial))]
  shape, axes = [x.shape[0]], []
  for s in x.shape[1:-1]:
    if s >= 2:
      shape += [s // 2, 2]
      axes.append(len(shape) - 1)
    else:
      shape.append(s)
  return jnp.max(jnp.reshape(x, (*shape, x.shape[-1])), axis=tuple(axes))


_SPATIAL = {1: "W", 2: "HW", 3: "DHW"}


class ConvND(nn.Module):
  """A 'SAME' convolution whose number of spatial axes is read from the input.

  Same parameters as :class:`flax.linen.Conv` (``kernel`` of shape
  ``(k,)*d + (in, out)`` and ``bias`` of shape ``(out,)``), but ``kernel_size`` is one
  int and ``d = x.ndim - 2``, so one module definition (built in ``setup``, before any
  input is seen) serves 1-D signals ``(n, L, c)`` and images ``(n, H, W, c)``.
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  use_bias: bool = True
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d = x.ndim - 2
    if d not in _SPATIAL:
      raise DataError(f"convolution input must be (n, *spatial, channels) with 1-3 spatial axes, "
                      f"got shape {tuple(x.shape)}")
    kernel = self.param("kernel", self.kernel_init,
                        (self.kernel_size,) * d + (x.shape[-1], self.features))
    bias = self.param("bias", self.bias_init, (self.features,)) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias)
    sp = _SPATIAL[d]
    dn = jax.lax.conv_dimension_numbers(x.shape, kernel.shape, (f"N{sp}C", f"{sp}IO", f"N{sp}C"))
    y = jax.lax.conv_general_dilated(x, kernel, (self.strides,) * d, "SAME",
                                     dimension_numbers=dn)
    return y if bias is None else y + bias
