"""The small CNNs behind the paper's detectors (after the authors' FCDD/EOE code).

``feature_net`` maps images to a feature vector; ``fcdd_net`` is fully convolutional and maps
images to a one-channel map whose receptive field :func:`receptive_field` reports.
Sizes: below 32 pixels the MNIST net (conv 16 -> 32, 5x5, linear 32); from 32 pixels the
CIFAR net (conv 32 -> 64 -> 128, linear 256). Both take 1 or 3 channels.
"""

from __future__ import annotations

from typing import List, Tuple

from torch import nn


def _widths(image_size: int) -> Tuple[List[int], int]:
    """Convolution widths and feature size for the input size."""
    if image_size < 32:
        return [16, 32], 32
    return [32, 64, 128], 256


def feature_dim(image_size: int) -> int:
    """The length D of :func:`feature_net`'s output for inputs of side ``image_size``."""
    return _widths(image_size)[1]


def _conv_blocks(in_channels: int, widths: List[int], bias: bool) -> List[nn.Module]:
    layers: List[nn.Module] = []
    for width in widths:
        layers += [
            nn.Conv2d(in_channels, width, 5, padding=2, bias=bias),
            nn.BatchNorm2d(width, eps=1e-4, affine=bias),
            nn.LeakyReLU(0.1),
            nn.MaxPool2d(2),
        ]
        in_channels = width
    return layers


def feature_net(in_channels: int, image_size: int, bias: bool = True) -> nn.Sequential:
    """A CNN: (N, C, S, S) -> (N, D), D = 32 below 32 pixels, else 256.

    ``bias=False`` removes every bias and BatchNorm affine term, as Deep SVDD requires (a
    bias would let the network map everything onto the centre).
    """
    widths, out_dim = _widths(image_size)
    side = image_size // 2 ** len(widths)
    return nn.Sequential(
        *_conv_blocks(in_channels, widths, bias),
        nn.Flatten(),
        nn.Linear(widths[-1] * side * side, out_dim, bias=bias),
    )


def fcdd_net(in_channels: int, image_size: int) -> nn.Sequential:
    """A fully convolutional net: (N, C, S, S) -> (N, 1, S / 2^b, S / 2^b)."""
    widths, _ = _widths(image_size)
    return nn.Sequential(*_conv_blocks(in_channels, widths, True), nn.Conv2d(widths[-1], 1, 1))


def receptive_field(net: nn.Sequential) -> Tuple[int, int]:
    """The receptive field size and the stride (jump) of the net's last layer, in pixels."""
    field, jump = 1, 1
    for layer in net:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
            s = layer.stride if isinstance(layer.stride, int) else layer.stride[0]
            field += (k - 1) * jump
            jump *= s
    return field, jump
