"""The seam between latent space and the networks of :mod:`captum_cfx.generative`.

G, D and R take images in [0, 1]; G' is a :class:`~captum_cfx.generative.networks.Generator`
that takes latents mapped affinely into [0, 1] (:class:`LatentRange`), so the trainer, the
networks and the five loss groups are those of the pixel path, unchanged. phi reaches G'
through the decoder (:class:`LatentDetector`, phi(A_dec(z))), and the explainer's G is
A_dec(G'(A_enc(x), alpha, k)) (:class:`LatentGenerator`, docs/latent.rst).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from captum_cfx.detectors.adapter import AnomalyDetector
from captum_cfx.latent.autoencoder import LatentAutoencoder

#: The latent range is the normal latents' per-channel quantiles at these levels ...
RANGE_QUANTILES = (0.001, 0.999)
#: ... widened by this share of its span on each side, so an edit can leave the normal range.
RANGE_MARGIN = 0.25


class LatentRange(nn.Module):
    """The affine map of latents (N, c, h, w) into [0, 1] per channel, and back.

    Args:
        low (Tensor): (c,), the latent value mapped to 0.
        high (Tensor): (c,), the latent value mapped to 1.
    """

    low: Tensor
    high: Tensor

    def __init__(self, low: Tensor, high: Tensor) -> None:
        super().__init__()
        if low.shape != high.shape or low.dim() != 1 or not bool((high > low).all()):
            raise ValueError("LatentRange needs (c,) tensors low < high.")
        self.register_buffer("low", low.float().clone())
        self.register_buffer("high", high.float().clone())

    @classmethod
    def of(cls, latents: Tensor) -> LatentRange:
        """The range of normal latents (M, c, h, w): their per-channel ``RANGE_QUANTILES``,
        widened by ``RANGE_MARGIN`` of the span on each side."""
        flat = latents.detach().float().transpose(0, 1).flatten(1)  # (c, M h w)
        if flat.shape[1] > 2**24:  # torch.quantile's limit: a strided sample
            flat = flat[:, :: flat.shape[1] // 2**23 + 1]
        levels = torch.tensor(RANGE_QUANTILES, device=flat.device)
        low, high = flat.quantile(levels, dim=1)
        span = (high - low).clamp_min(1e-6)
        return cls(low - RANGE_MARGIN * span, high + RANGE_MARGIN * span)

    def _view(self, t: Tensor) -> Tensor:
        return t[None, :, None, None]

    def to_unit(self, z: Tensor) -> Tensor:
        """Latents (N, c, h, w) -> (N, c, h, w) in [0, 1] (clamped at the range's ends)."""
        low, high = self._view(self.low), self._view(self.high)
        return ((z - low) / (high - low)).clamp(0.0, 1.0)

    def from_unit(self, u: Tensor) -> Tensor:
        """(N, c, h, w) in [0, 1] -> latents (N, c, h, w)."""
        low, high = self._view(self.low), self._view(self.high)
        return low + u * (high - low)


class LatentDetector(nn.Module):
    """phi in latent space: phi's logit of A_dec(z) for latents mapped into [0, 1].

    Wrapped by ``as_detector(..., calibration="sigmoid")`` it is the detector G' trains
    against: its logits are phi's own, its gradient reaches the latent through the frozen
    decoder.

    Args:
        phi (AnomalyDetector): the detector on images.
        autoencoder (LatentAutoencoder): A; only its decoder is used.
        latent_range (LatentRange): the map of latents into [0, 1].
    """

    def __init__(
        self, phi: AnomalyDetector, autoencoder: LatentAutoencoder, latent_range: LatentRange
    ) -> None:
        super().__init__()
        self.phi = phi
        self.autoencoder = autoencoder
        self.latent_range = latent_range

    def forward(self, u: Tensor) -> Tensor:
        """u (N, c, h, w) in [0, 1] -> phi's logits (N,) on the decoded images."""
        return self.phi.logit(self.autoencoder.decode(self.latent_range.from_unit(u)))


class LatentGenerator(nn.Module):
    """The explainer's G on images: G(x, alpha, k) = A_dec(G'(A_enc(x), alpha, k)).

    Args:
        autoencoder (LatentAutoencoder): A, frozen.
        latent_range (LatentRange): the map of latents into [0, 1] that G' works in.
        generator (nn.Module): G', a ``Generator`` on latents mapped into [0, 1].
    """

    def __init__(
        self, autoencoder: LatentAutoencoder, latent_range: LatentRange, generator: nn.Module
    ) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.latent_range = latent_range
        self.generator = generator

    def edit(self, z: Tensor, alpha: Tensor, concept: Tensor) -> Tensor:
        """G' on latents: z (N, c, h, w), alpha (N,), concept (N,) long -> (N, c, h, w)."""
        u = self.generator(self.latent_range.to_unit(z), alpha, concept)
        return self.latent_range.from_unit(u)

    def forward(self, x: Tensor, alpha: Tensor, concept: Tensor) -> Tensor:
        """x (N, C, H, W) in [0, 1], alpha (N,), concept (N,) long -> (N, C, H, W) in [0, 1]."""
        return self.autoencoder.decode(self.edit(self.autoencoder.encode(x), alpha, concept))
