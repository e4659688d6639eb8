"""VGG-9 for CIFAR-10, as defined in Li et al.'s tomgoldstein/loss-landscape.

``cifar10/models/vgg.py`` of loss-landscape builds VGG-9 from the configuration
``[64, 64, M, 128, 128, M, 256, 256, 256, M]``: seven 3x3 convolutions (padding 1, with
bias), each followed by BatchNorm and ReLU, 2x2 max pooling at ``M`` (``ceil_mode=True``),
then ``flatten -> Linear(256·4·4, 256) -> BatchNorm1d -> ReLU -> Linear(256, classes)``.
This module is the same network, channels-last (the flattened features are ordered
``(h, w, c)`` instead of PyTorch's ``(c, h, w)``: a permutation of the first Dense
layer's rows, the same function class and parameter count). ``batchnorm=False`` drops all
BatchNorm layers. Trainable parameters for 10 classes on 32x32x3 (computed by this module,
asserted in tests/test_models.py): 2,789,706 with BatchNorm (as the PyTorch model),
2,786,890 without.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
from jaxtyping import Array, Float

from landscape.models import _common

VGG9_LAYERS: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")


class VGG(nn.Module):
  """``[conv3x3 -> BN -> relu]`` stacks with max pooling, then ``Dense -> BN -> relu -> Dense``.

  For layer ``l``, ``h_l = relu(BN(conv(h_{l-1}; K_l) + b_l))``, pooled where ``layers``
  has ``"M"``; then ``f(x) = relu(BN(flatten(h) W_1 + b_1)) W_2 + b_2`` with ``W_1`` as
  wide as the last convolution. ``stem`` is the first convolution ``conv(x; K_1) + b_1``
  (linear in ``(K_1, b_1)``); ``head`` is everything after it.

  Attributes:
    num_outputs: number of classes ``k``.
    batchnorm: BatchNorm after every convolution and after the hidden Dense layer.
    layers: filter counts and ``"M"`` (2x2 max pooling); the default is VGG-9.

  Example:
    >>> m = VGG(num_outputs=10)
    >>> variables = m.init(key, jnp.zeros((2, 32, 32, 3)))    # 'params', 'batch_stats'

  References:
    Simonyan, Zisserman, "Very deep convolutional networks for large-scale image
    recognition", ICLR 2015.
    Li, Xu, Taylor, Studer, Goldstein, "Visualizing the loss landscape of neural nets",
    NeurIPS 2018.
  """
  num_outputs: int
  batchnorm: bool = True
  layers: Sequence[int | str] = VGG9_LAYERS

  STEM_KEYS: ClassVar[tuple[str, ...]] = ("stem_conv",)

  def setup(self):
    widths = [f for f in self.layers if f != "M"]
    self.stem_conv = nn.Conv(widths[0], (3, 3), padding=1)
    self.conv = [nn.Conv(f, (3, 3), padding=1) for f in widths[1:]]
    self.fc = nn.Dense(widths[-1])
    if self.batchnorm:
      self.bn = [nn.BatchNorm(momentum=0.9) for _ in widths]
      self.fc_bn = nn.BatchNorm(momentum=0.9)
    self.classifier = nn.Dense(self.num_outputs)

  def stem(self, x: Float[Array, "n h w c"]) -> Float[Array, "n h w c1"]:
    """The first convolution ``conv(x; K_1) + b_1`` (pre-BatchNorm)."""
    _common.check_ndim("vgg", x, (4,), "(n, H, W, C)")
    return self.stem_conv(x)

  def head(self, z: Float[Array, "n h w c1"], train: bool = False) -> Float[Array, "n k"]:
    """Everything after the first convolution."""
    convs = iter([None, *self.conv])
    i = 0
    for f in self.layers:
      if f == "M":
        z = _common.max_pool2(z, padding="SAME")
        continue
      conv = next(convs)
      if conv is not None:
        z = conv(z)
      if self.batchnorm:
        z = self.bn[i](z, use_running_average=not train)
      z = nn.relu(z)
      i += 1
    z = self.fc(_common.flatten(z))
    if self.batchnorm:
      z = self.fc_bn(z, use_running_average=not train)
    return self.classifier(nn.relu(z))

  def __call__(self, x: Float[Array, "n h w c"], train: bool = False) -> Float[Array, "n k"]:
    return self.head(self.stem(x), train)


def vgg9(*, num_outputs: int, batchnorm: bool = True) -> VGG:
  """Build VGG-9 (:class:`VGG`) after checking its arguments (ConfigError on a bad one)."""
  return VGG(num_outputs=_common.positive_int("vgg9", "num_outputs", num_outputs),
             batchnorm=_common.boolean("vgg9", "batchnorm", batchnorm))
