"""CIFAR ResNets (He et al. 2016) with and without shortcuts, as in Li et al. 2018.

The network of He et al. (2016, §4.2) for 32x32 inputs: a 3x3 convolution with ``w``
filters, three stages of ``n`` basic blocks with ``w, 2w, 4w`` filters (stride 2 in the
first block of stages 2 and 3), global average pooling and a Dense classifier; depth
``6n + 2`` (20, 56, 110, ...). A basic block is

  y = relu(BN(conv3x3(relu(BN(conv3x3(x))))) + shortcut(x)),

with the identity shortcut, or — where the shape changes — a 1x1 strided convolution plus
BatchNorm (the "option B" projection of He et al.). This is exactly the ``ResNet_cifar`` /
``BasicBlock`` of Li et al.'s tomgoldstein/loss-landscape (``cifar10/models/resnet.py``):
3x3 convolutions without bias before BatchNorm, padding 1, projection = 1x1 conv (no bias)
+ BN. ``skip=False`` drops every shortcut, identity and projection alike (their
``BasicBlock_noshortcut``, the ``resnet*_noshort`` models of the paper's skip-connection
figure). ``batchnorm=False`` drops BatchNorm; convolutions (projections included) then get a
bias. BatchNorm: momentum 0.9 (PyTorch's 0.1), epsilon 1e-5, running statistics in the
``batch_stats`` collection. Convolutions use He-normal initialization.

Trainable parameters (excluding BN running statistics) for 10 classes on 32x32x3, as
computed by this module (``landscape.models.num_params``; asserted in tests/test_models.py):

  ==========  ===========  ===========  ===================
  model       skip=True    skip=False   difference (1x1 projections + their BN)
  ==========  ===========  ===========  ===================
  ResNet-20     272,474      269,722      2,752
  ResNet-56     855,770      853,018      2,752
  ResNet-110  1,730,714    1,727,962      2,752
  ==========  ===========  ===========  ===================

These equal the PyTorch counts of the loss-landscape models (checked by building them in
torch and summing ``p.numel()``: same layers and shapes, a Flax kernel ``(3, 3, in, out)``
has as many entries as a PyTorch ``(out, in, 3, 3)`` one, BN has a scale and a bias per
channel). He et al. (2016, Table 6) quote 0.27M, 0.85M and
1.7M parameters for ResNet-20/56/110 with their parameter-free "option A" shortcuts
(zero-padded identity); option A counts equal the ``skip=False`` column, since the only
parameters that differ are those of the two projection shortcuts. With
``batchnorm=False`` the BN affine parameters disappear and biases appear: ResNet-20
271,690 / 269,034, ResNet-56 853,642 / 850,986, ResNet-110 1,726,570 / 1,723,914 (skip /
no skip).
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from landscape.errors import ConfigError
from landscape.models import _common


class _BasicBlock(nn.Module):
  """``relu(BN(conv(relu(BN(conv(x))))) + shortcut(x))``; see the module docstring."""
  features: int
  strides: int
  skip: bool
  batchnorm: bool

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    def conv(y, kernel, strides, padding, name):
      return nn.Conv(self.features, (kernel, kernel), strides=(strides, strides),
                     padding=padding, use_bias=not self.batchnorm,
                     kernel_init=_common.HE_NORMAL, name=name)(y)

    def bn(y, name):
      if not self.batchnorm:
        return y
      return nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)(y)

    y = nn.relu(bn(conv(x, 3, self.strides, 1, "conv1"), "bn1"))
    y = bn(conv(y, 3, 1, 1, "conv2"), "bn2")
    if self.skip:
      if self.strides != 1 or x.shape[-1] != self.features:
        x = bn(conv(x, 1, self.strides, 0, "shortcut_conv"), "shortcut_bn")
      y = y + x
    return nn.relu(y)


class ResNet(nn.Module):
  """CIFAR ResNet of depth ``6n + 2``; ``skip=False`` is Li et al.'s "noshort" variant.

  ``stem`` is the first 3x3 convolution (linear in its kernel, and bias when
  ``batchnorm=False``); ``head`` is ``BN -> relu -> 3n blocks -> average pool -> Dense``.

  Attributes:
    num_outputs: number of classes ``k``.
    depth: ``6n + 2`` with ``n >= 1`` (20, 56, 110 in the papers).
    skip: keep the identity / projection shortcuts.
    batchnorm: use BatchNorm (convolutions then have no bias).
    width: filters of the first stage ``w`` (stages have ``w, 2w, 4w``).

  Example:
    >>> m = ResNet(num_outputs=10, depth=20, skip=False)
    >>> variables = m.init(key, jnp.zeros((2, 32, 32, 3)))    # 'params', 'batch_stats'
    >>> logits, upd = m.apply(variables, x, train=True, mutable=["batch_stats"])

  References:
    He, Zhang, Ren, Sun, "Deep residual learning for image recognition", CVPR 2016.
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the loss landscape of neural nets",
    NeurIPS 2018.
  """
  num_outputs: int
  depth: int = 20
  skip: bool = True
  batchnorm: bool = True
  width: int = 16

  STEM_KEYS: ClassVar[tuple[str, ...]] = ("stem_conv",)

  def setup(self):
    n = _blocks_per_stage(self.depth)
    self.stem_conv = nn.Conv(self.width, (3, 3), padding=1, use_bias=not self.batchnorm,
                             kernel_init=_common.HE_NORMAL)
    if self.batchnorm:
      self.stem_bn = nn.BatchNorm(momentum=0.9)
    self.blocks = [
        _BasicBlock(self.width * 2**stage, 2 if stage > 0 and i == 0 else 1, self.skip,
                    self.batchnorm)
        for stage in range(3) for i in range(n)]
    self.out = nn.Dense(self.num_outputs)

  def stem(self, x: Float[Array, "n h w c"]) -> Float[Array, "n h w width"]:
    """The first 3x3 convolution (pre-BatchNorm)."""
    _common.check_ndim("resnet", x, (4,), "(n, H, W, C)")
    return self.stem_conv(x)

  def head(self, z: Float[Array, "n h w width"], train: bool = False) -> Float[Array, "n k"]:
    """Everything after the first convolution."""
    if self.batchnorm:
      z = self.stem_bn(z, use_running_average=not train)
    z = nn.relu(z)
    for block in self.blocks:
      z = block(z, train)
    return self.out(jnp.mean(z, axis=(1, 2)))

  def __call__(self, x: Float[Array, "n h w c"], train: bool = False) -> Float[Array, "n k"]:
    return self.head(self.stem(x), train)


def _blocks_per_stage(depth: int) -> int:
  if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
    raise ConfigError(f"resnet: depth must be 6n+2 with n >= 1 (e.g. 20, 56, 110), got {depth!r}")
  return (depth - 2) // 6


def resnet(*, num_outputs: int, depth: int = 20, skip: bool = True, batchnorm: bool = True,
           width: int = 16) -> ResNet:
  """Build :class:`ResNet` after checking its arguments (ConfigError on a bad one)."""
  _blocks_per_stage(depth)
  return ResNet(num_outputs=_common.positive_int("resnet", "num_outputs", num_outputs),
                depth=depth, skip=_common.boolean("resnet", "skip", skip),
                batchnorm=_common.boolean("resnet", "batchnorm", batchnorm),
                width=_common.positive_int("resnet", "width", width))
