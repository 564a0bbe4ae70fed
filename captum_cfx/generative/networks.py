"""The three networks of the method: the generator G, the discriminator D, the concept
classifier R. All adapt to 1 or 3 channels and to inputs of 8 to 256 pixels a side, square or
not: above 64 pixels, G and D grow one level deeper per doubling (:func:`extra_levels`), so
that their receptive fields keep their share of the image (G at its bottom, D at its top).
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

#: The routes a concept can be restricted to; see :class:`Generator`.
ROUTES = ("mixed", "global", "local", "shape")
#: The image sides (pixels) the networks are built for.
MIN_SIDE, MAX_SIDE = 8, 256
#: The side up to which G and D have their base depth.
BASE_SIDE = 64


def extra_levels(size: Tuple[int, int]) -> int:
    """The levels G and D add to their base depth for images of ``size`` (H, W): one per
    doubling of the shorter side above ``BASE_SIDE`` (0 up to 64 pixels, 1 up to 128, 2 up to
    256). Raises for sides outside ``MIN_SIDE``..``MAX_SIDE``."""
    if not (MIN_SIDE <= min(size) and max(size) <= MAX_SIDE):
        raise ValueError(
            f"images of {size[0]}x{size[1]} pixels are outside the sizes the networks support: "
            f"{MIN_SIDE} to {MAX_SIDE} pixels a side. Resize them (torchvision.transforms."
            "Resize) or crop tiles."
        )
    return max(0, math.ceil(math.log2(min(size) / BASE_SIDE)))


def _groups(width: int) -> int:
    return min(8, width)


class FiLMBlock(nn.Module):
    """conv 3x3 -> GroupNorm -> FiLM(gamma, beta from the condition) -> SiLU."""

    def __init__(self, in_width: int, out_width: int, cond_dim: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_width, out_width, 3, stride=stride, padding=1)
        self.norm = nn.GroupNorm(_groups(out_width), out_width, affine=False)
        self.film = nn.Linear(cond_dim, 2 * out_width)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        gamma, beta = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        return F.silu(self.norm(self.conv(h)) * (1 + gamma) + beta)


def leaky_clamp(x: Tensor, slope: float = 0.01) -> Tensor:
    """Clamp to [0, 1] with a small slope outside, so out-of-range pixels keep a gradient."""
    inside = x.clamp(0.0, 1.0)
    return inside + slope * (x - inside)


class Generator(nn.Module):
    """G(x, alpha, k): an image made to score ``alpha`` under phi, changed along concept ``k``.

    A small U-Net conditioned on (alpha, one-hot k) through FiLM in every block. Its output
    mixes two routes with a per-pixel mask m predicted by the decoder:

        G(x, alpha, k) = (1 - m) * T(x) + m * L

    where T is a global per-image colour transform (an affine map of the channels, C x C
    plus a bias, predicted by a small MLP from the bottleneck, the condition and the input's
    per-channel mean and maximum; it starts as the identity) and L a local image from the
    decoder. The global route makes image-wide changes (a recolouring) as cheap as local
    ones (a stroke), so the concepts are not pushed towards local patches; the mask starts
    near 0, so an untrained G returns its input.

    Each concept may be restricted to one route (``routes``): a ``"global"`` concept keeps
    m = 0 (it can only transform colours image-wide), a ``"local"`` concept keeps T the
    identity (it can only edit locally), a ``"mixed"`` concept uses both. A ``"shape"``
    concept edits locally in the input's own palette: its L is one intensity map s painted
    between the input's darkest and brightest value of each channel,
    L = low(x) + s * (high(x) - low(x)), so on a one-colour image it can redraw the strokes
    but not change their colour. Typed routes are a prior a user can state ("one reason is
    appearance, the other structure"); they stop the concepts from collapsing onto whichever
    edit is cheapest.

    Args:
        channels: image channels, 1 or 3.
        n_concepts: K.
        widths: channel widths of the three U-Net levels.
        cond_dim: size of the condition embedding.
        global_gain: multiplies the predicted colour transform; with Adam (whose steps have
            a fixed size per parameter) this makes the global route learn ``global_gain``
            times faster, so it competes with local edits instead of losing to them.
        routes: one of ``"mixed"``, ``"global"``, ``"local"``, ``"shape"`` per concept;
            empty means all ``"mixed"``.
        extra: levels below the third, each halving the resolution again
            (:func:`extra_levels` of the image size).
    """

    uses_local: Tensor
    uses_global: Tensor
    shape_route: Tensor

    def __init__(
        self,
        channels: int,
        n_concepts: int,
        widths: Tuple[int, int, int] = (16, 32, 64),
        cond_dim: int = 64,
        global_gain: float = 20.0,
        routes: Tuple[str, ...] = (),
        extra: int = 0,
    ) -> None:
        super().__init__()
        routes = tuple(routes) or ("mixed",) * n_concepts
        if len(routes) != n_concepts or not set(routes) <= set(ROUTES):
            raise ValueError(
                f"concept_routes {routes} do not fit n_concepts={n_concepts}: give one per "
                f"concept (each one of {ROUTES}) or none."
            )
        w1, w2, w3 = widths
        self.global_gain = global_gain
        self.channels = channels
        self.n_concepts = n_concepts
        self.embed = nn.Sequential(
            nn.Linear(1 + n_concepts, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim)
        )
        self.enc1 = FiLMBlock(channels, w1, cond_dim)
        self.enc2 = FiLMBlock(w1, w2, cond_dim, stride=2)
        self.enc3 = FiLMBlock(w2, w3, cond_dim, stride=2)
        # Above 64 pixels: stride-2 levels at the bottom, each with a decoder block that
        # takes its skip connection.
        self.deeper = nn.ModuleList([FiLMBlock(w3, w3, cond_dim, stride=2) for _ in range(extra)])
        self.mid = FiLMBlock(w3, w3, cond_dim)
        self.shallower = nn.ModuleList([FiLMBlock(2 * w3, w3, cond_dim) for _ in range(extra)])
        self.dec2 = FiLMBlock(w3 + w2, w2, cond_dim)
        self.dec1 = FiLMBlock(w2 + w1, w1, cond_dim)
        self.to_local = nn.Conv2d(w1, channels, 3, padding=1)
        self.to_mask = nn.Conv2d(w1, 1, 3, padding=1)
        nn.init.constant_(self.to_mask.bias, -4.0)  # type: ignore[arg-type]  # m ~ 0.02 at the start: G returns x
        color_out = nn.Linear(cond_dim, channels * channels + channels)
        nn.init.zeros_(color_out.weight)
        nn.init.zeros_(color_out.bias)
        self.to_color = nn.Sequential(
            nn.Linear(w3 + cond_dim + 2 * channels, cond_dim), nn.SiLU(), color_out
        )
        self.register_buffer(
            "uses_local", torch.tensor([r != "global" for r in routes], dtype=torch.float32)
        )
        self.register_buffer(
            "uses_global",
            torch.tensor([r in ("mixed", "global") for r in routes], dtype=torch.float32),
        )
        # Derived from the routes, which the config saves: not part of the state dict.
        self.register_buffer(
            "shape_route", torch.tensor([r == "shape" for r in routes]), persistent=False
        )

    def condition(self, alpha: Tensor, concept: Tensor) -> Tensor:
        """The embedding (N, cond_dim) of target scores (N,) and concept indices (N,)."""
        onehot = F.one_hot(concept, self.n_concepts).to(alpha.dtype)
        return self.embed(torch.cat([alpha[:, None], onehot], 1))

    def forward(self, x: Tensor, alpha: Tensor, concept: Tensor) -> Tensor:
        """x (N, C, H, W) in [0, 1], alpha (N,) in [0, 1], concept (N,) long
        -> (N, C, H, W) in [0, 1]."""
        cond = self.condition(alpha, concept)
        u = 2 * x - 1
        h1 = self.enc1(u, cond)
        h2 = self.enc2(h1, cond)
        h3 = self.enc3(h2, cond)
        skips = []
        for down in self.deeper:
            skips.append(h3)
            h3 = down(h3, cond)
        h3 = self.mid(h3, cond)
        for up, skip in zip(self.shallower, reversed(skips)):
            h3 = up(torch.cat([F.interpolate(h3, size=skip.shape[-2:]), skip], 1), cond)
        d2 = self.dec2(torch.cat([F.interpolate(h3, size=h2.shape[-2:]), h2], 1), cond)
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=h1.shape[-2:]), h1], 1), cond)
        local = (torch.tanh(self.to_local(d1)) + 1) / 2
        low, high = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
        painted = low + local.mean(1, keepdim=True) * (high - low)
        local = torch.where(self.shape_route[concept, None, None, None], painted, local)
        mask = torch.sigmoid(self.to_mask(d1)) * self.uses_local[concept, None, None, None]
        stats = torch.cat([h3.mean((2, 3)), cond, x.mean((2, 3)), x.amax((2, 3))], 1)
        color = self.global_gain * self.to_color(stats) * self.uses_global[concept, None]
        c = self.channels
        matrix = torch.eye(c, device=x.device, dtype=x.dtype) + color[:, : c * c].view(-1, c, c)
        transformed = torch.einsum("nij,njhw->nihw", matrix, x) + color[:, c * c :, None, None]
        return ((1 - mask) * leaky_clamp(transformed) + mask * local).clamp(0.0, 1.0)


def _sn_conv(in_width: int, out_width: int, kernel: int, stride: int) -> nn.Module:
    return spectral_norm(nn.Conv2d(in_width, out_width, kernel, stride=stride, padding=kernel // 2))


class Discriminator(nn.Module):
    """D: a spectral-normalised patch CNN that judges (image, phi's score) pairs;
    (N, C, H, W) in [0, 1] and (N,) in [0, 1] -> realness logits (N, P).

    Each of the P outputs judges one patch (the receptive field is about half the image),
    so a realistic image with an unrealistic patch is still rejected. The score enters by
    projection (Miyato & Koyama, 2018): a counterfactual must look like the real images that
    phi scores as it does, so an image phi calls normal because of a pasted mark is told
    apart from a normal one.

    Args:
        channels: image channels, 1 or 3.
        width: the first layer's width; the next two double it.
        extra: stride-2 layers that read the image instead of the first, stride-1 one
            (:func:`extra_levels` of the image size): the receptive field stays about half
            the image, and a step at 128 pixels costs D what one at 64 does.
    """

    def __init__(self, channels: int, width: int = 32, extra: int = 0) -> None:
        super().__init__()
        # Up to 64 pixels a stride-1 layer reads the image; above, one stride-2 layer per
        # doubling does, so that the rest sees what it sees at 64 pixels.
        first = [_sn_conv(channels, width, 3, 1)] if extra == 0 else []
        stem = [_sn_conv(channels if i == 0 else width, width, 4, 2) for i in range(extra)]
        self.net = nn.Sequential(
            *(layer for conv in first + stem for layer in (conv, nn.LeakyReLU(0.2))),
            _sn_conv(width, 2 * width, 4, 2),
            nn.LeakyReLU(0.2),
            _sn_conv(2 * width, 4 * width, 4, 2),
            nn.LeakyReLU(0.2),
            _sn_conv(4 * width, 1, 3, 1),
        )
        self.score_embedding = nn.Sequential(
            spectral_norm(nn.Linear(1, width)),
            nn.LeakyReLU(0.2),
            spectral_norm(nn.Linear(width, 4 * width)),
        )

    def forward(self, x: Tensor, score: Tensor) -> Tensor:
        """x (N, C, H, W) in [0, 1], score (N,) in [0, 1] -> (N, P)."""
        h = self.net[:-1](2 * x - 1)
        logits = self.net[-1](h).flatten(1)
        embedding = self.score_embedding(2 * score[:, None].to(h) - 1)
        return logits + torch.einsum("nc,nchw->nhw", embedding, h).flatten(1)


class ConceptClassifier(nn.Module):
    """R: which concept changed between two images; (x_a, x_b) -> K logits.

    R sees the pair average-pooled by ``pool`` (and the pooled difference), through a
    spectral-normalised CNN, so it cannot tell concepts apart by an invisible pixel marker:
    a concept must be a change visible at a coarse scale.
    """

    def __init__(self, channels: int, n_concepts: int, width: int = 32, pool: int = 4) -> None:
        super().__init__()
        self.pool = pool
        self.net = nn.Sequential(
            _sn_conv(3 * channels, width, 3, 1),
            nn.LeakyReLU(0.2),
            _sn_conv(width, 2 * width, 3, 1),
            nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            spectral_norm(nn.Linear(2 * width, n_concepts)),
        )

    def forward(self, x_a: Tensor, x_b: Tensor) -> Tensor:
        a, b = F.avg_pool2d(x_a, self.pool), F.avg_pool2d(x_b, self.pool)
        return self.net(torch.cat([a, b, b - a], 1))
