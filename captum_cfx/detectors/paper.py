"""The paper's detectors: BCE and HSC with outlier exposure, Deep SVDD, and FCDD.

Each is an ``nn.Module`` whose ``forward`` already is phi: (N, C, H, W) in [0, 1] -> (N,) in
[0, 1]; ``phi_logit`` gives its logit (which :func:`~captum_cfx.as_detector` uses so that a
strong anomaly keeps its gradient) and ``loss`` its training objective (docs/method.rst).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captum_cfx.detectors.adapter import EXP_NORMAL_QUANTILE, exp_score_logit, phi_from_logit
from captum_cfx.detectors.networks import fcdd_net, feature_dim, feature_net, receptive_field


class PaperDetector(nn.Module, ABC):
    """Base of the paper's detectors: ``forward`` is phi, derived from ``phi_logit``.

    Args:
        in_channels: 1 or 3.
        image_size: the side S of the square inputs (28 and 32 are the sizes the nets are
            designed for; others work).
    """

    #: Tells :func:`~captum_cfx.as_detector` that ``forward`` is phi already.
    outputs_phi = True
    #: Whether training needs outlier-exposure data.
    needs_outliers = True
    name = "paper"

    def __init__(self, in_channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}.")
        if image_size < 8:
            raise ValueError(f"image_size must be at least 8 pixels, got {image_size}.")
        self.in_channels = in_channels
        self.image_size = image_size

    @abstractmethod
    def phi_logit(self, x: Tensor) -> Tensor:
        """The logit of phi (N,) for images ``x`` (N, C, H, W)."""

    def forward(self, x: Tensor) -> Tensor:
        """phi(x) (N,) in [0, 1]."""
        return phi_from_logit(self.phi_logit(x))

    @abstractmethod
    def loss(self, normal: Tensor, outliers: Optional[Tensor]) -> Tensor:
        """The training objective (scalar) on normal images and outliers (or None)."""


class BCEDetector(PaperDetector):
    """Binary classifier with outlier exposure: phi = sigmoid(logit); normal 0, outlier 1."""

    name = "bce"

    def __init__(self, in_channels: int = 1, image_size: int = 28) -> None:
        super().__init__(in_channels, image_size)
        self.features = feature_net(in_channels, image_size)
        self.head = nn.Linear(feature_dim(image_size), 1)

    def phi_logit(self, x: Tensor) -> Tensor:
        return self.head(F.leaky_relu(self.features(x), 0.1))[:, 0]

    def loss(self, normal: Tensor, outliers: Optional[Tensor]) -> Tensor:
        assert outliers is not None
        logits = self.phi_logit(torch.cat([normal, outliers]))
        labels = torch.cat([torch.zeros(len(normal)), torch.ones(len(outliers))]).to(logits)
        return F.binary_cross_entropy_with_logits(logits, labels)


class HSCDetector(PaperDetector):
    """Hypersphere classifier with outlier exposure.

    ``d = sqrt(|f(x)|^2 + 1) - 1``, ``phi = 1 - exp(-d)``; loss d on normal images and
    -log(1 - exp(-d) + 1e-9) on outliers.
    """

    name = "hsc"

    def __init__(self, in_channels: int = 1, image_size: int = 28) -> None:
        super().__init__(in_channels, image_size)
        self.features = feature_net(in_channels, image_size)

    def distance(self, x: Tensor) -> Tensor:
        """The pseudo-Huber distance d (N,) of the features to the origin."""
        return torch.sqrt(self.features(x).pow(2).sum(1) + 1) - 1

    def phi_logit(self, x: Tensor) -> Tensor:
        return exp_score_logit(self.distance(x))

    def loss(self, normal: Tensor, outliers: Optional[Tensor]) -> Tensor:
        assert outliers is not None
        d_normal, d_out = self.distance(torch.cat([normal, outliers])).split(
            [len(normal), len(outliers)]
        )
        return torch.cat([d_normal, -torch.log(-torch.expm1(-d_out) + 1e-9)]).mean()


class DSVDDDetector(PaperDetector):
    """Deep SVDD: ``d = |f(x) - c|^2`` with a bias-free net, ``phi = 1 - exp(-d / tau)``.

    ``c`` is the mean feature of the untrained net on normal data (entries with ``|c_i| < 0.1``
    pushed to +-0.1) and is set by :meth:`init_center`; ``tau`` puts the 95% quantile of the
    normal training distances at phi = 0.5 and is set by :meth:`calibrate` (the paper leaves
    this mapping open; the median would score half of all normal images above 0.6).
    """

    name = "dsvdd"
    needs_outliers = False
    center: Tensor
    tau: Tensor

    def __init__(self, in_channels: int = 1, image_size: int = 28) -> None:
        super().__init__(in_channels, image_size)
        self.features = feature_net(in_channels, image_size, bias=False)
        self.register_buffer("center", torch.zeros(feature_dim(image_size)))
        self.register_buffer("tau", torch.tensor(1.0))

    def distance(self, x: Tensor) -> Tensor:
        """The squared distance d (N,) of the features to the centre."""
        return (self.features(x) - self.center).pow(2).sum(1)

    def phi_logit(self, x: Tensor) -> Tensor:
        return exp_score_logit(self.distance(x) / self.tau)

    @torch.no_grad()
    def init_center(self, normal: Tensor, eps: float = 0.1) -> None:
        """Set c from normal images (M, C, H, W) with the untrained net."""
        c = self.features(normal).mean(0)
        c[(c.abs() < eps) & (c < 0)] = -eps
        c[(c.abs() < eps) & (c >= 0)] = eps
        self.center.copy_(c)

    @torch.no_grad()
    def calibrate(self, normal_distances: Tensor) -> None:
        """Set tau from distances (M,) of normal training images."""
        q = torch.quantile(normal_distances.float(), EXP_NORMAL_QUANTILE)
        self.tau.fill_(max(float(q), 1e-12) / math.log(2.0))

    def loss(self, normal: Tensor, outliers: Optional[Tensor]) -> Tensor:
        return self.distance(normal).mean()


class FCDDDetector(PaperDetector):
    """Fully convolutional data description with outlier exposure; gives heatmaps.

    A = sqrt(F(x)^2 + 1) - 1 per output pixel, score = mean(A), phi = 1 - exp(-score).
    ``heatmap(x)`` upsamples A to the input with a transposed convolution whose kernel is a
    Gaussian the size of the receptive field (sigma = field / 4).
    """

    name = "fcdd"
    gauss_kernel: Tensor

    def __init__(self, in_channels: int = 1, image_size: int = 28) -> None:
        super().__init__(in_channels, image_size)
        self.net = fcdd_net(in_channels, image_size)
        self.field, self.jump = receptive_field(self.net)
        grid = torch.arange(self.field, dtype=torch.float32) - (self.field - 1) / 2
        g = torch.exp(-(grid**2) / (2 * (self.field / 4) ** 2))
        kernel = torch.outer(g, g)
        self.register_buffer("gauss_kernel", (kernel / kernel.sum())[None, None], persistent=False)

    def anomaly_map(self, x: Tensor) -> Tensor:
        """A (N, 1, h, w): the pseudo-Huber map at the net's resolution."""
        return torch.sqrt(self.net(x).pow(2) + 1) - 1

    def score(self, x: Tensor) -> Tensor:
        """mean(A) (N,)."""
        return self.anomaly_map(x).mean((1, 2, 3))

    def phi_logit(self, x: Tensor) -> Tensor:
        return exp_score_logit(self.score(x))

    def heatmap(self, x: Tensor) -> Tensor:
        """The FCDD heatmap (N, 1, H, W) of ``x`` (N, C, H, W), upsampled with the receptive
        field's Gaussian and cropped to the centre of the input's size."""
        full = F.conv_transpose2d(self.anomaly_map(x), self.gauss_kernel, stride=self.jump)
        top = (full.shape[-2] - x.shape[-2]) // 2
        left = (full.shape[-1] - x.shape[-1]) // 2
        return full[..., top : top + x.shape[-2], left : left + x.shape[-1]]

    def loss(self, normal: Tensor, outliers: Optional[Tensor]) -> Tensor:
        assert outliers is not None
        s_normal, s_out = self.score(torch.cat([normal, outliers])).split(
            [len(normal), len(outliers)]
        )
        return torch.cat([s_normal, -torch.log(-torch.expm1(-s_out) + 1e-9)]).mean()


DETECTORS = {cls.name: cls for cls in (BCEDetector, HSCDetector, DSVDDDetector, FCDDDetector)}
