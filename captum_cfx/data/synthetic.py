"""Procedural two-factor image domains with known factors, for judging the default recipe on
data it was not tuned on.

Each domain draws images from two factors, A and B, each with value 0 as its normal value;
an image is normal when A or B is at its normal value (as Colored-MNIST: cyan digits, or a 1
in any colour). An anomaly therefore has two routes back to normal, one per factor, and a
strict oracle (a classifier per factor, trained on the domain's own images) says which
factor a counterfactual changed. Position, size and brightness jitter make the images
varied; nothing is downloaded.
"""

from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Tuple

import numpy as np
import torch
from skimage.draw import disk, line_aa, polygon
from skimage.filters import gaussian

from captum_cfx.data.dataset import LabeledImages

Render = Callable[[np.random.Generator, int, int, int], np.ndarray]

#: Fill colours of ``shape_color``; index 0 (cyan) is the normal colour.
SHAPE_COLORS = ((0.0, 1.0, 1.0), (1.0, 0.2, 0.2), (1.0, 1.0, 0.0), (1.0, 0.0, 1.0))


def _shape_mask(shape: int, size: int, rng: np.random.Generator, scale: float = 0.3) -> np.ndarray:
    """A filled disc (0), square (1), triangle (2) or cross (3), jittered, (size, size) bool."""
    radius = size * scale * rng.uniform(0.85, 1.15)
    cy, cx = size / 2 + rng.uniform(-0.08, 0.08, 2) * size
    mask = np.zeros((size, size), dtype=bool)
    if shape == 0:
        rr, cc = disk((cy, cx), radius, shape=mask.shape)
    elif shape == 1:
        r = radius * 0.85
        rr, cc = polygon(
            [cy - r, cy - r, cy + r, cy + r], [cx - r, cx + r, cx + r, cx - r], mask.shape
        )
    elif shape == 2:
        rr, cc = polygon(
            [cy - radius, cy + radius * 0.8, cy + radius * 0.8],
            [cx, cx + radius, cx - radius],
            mask.shape,
        )
    else:
        t = radius * 0.35
        rr1, cc1 = polygon(
            [cy - radius, cy - radius, cy + radius, cy + radius],
            [cx - t, cx + t, cx + t, cx - t],
            mask.shape,
        )
        mask[rr1, cc1] = True
        rr, cc = polygon(
            [cy - t, cy - t, cy + t, cy + t],
            [cx - radius, cx + radius, cx + radius, cx - radius],
            mask.shape,
        )
    mask[rr, cc] = True
    return mask


def _render_shape_color(rng: np.random.Generator, shape: int, color: int, size: int) -> np.ndarray:
    mask = gaussian(_shape_mask(shape, size, rng).astype(np.float32), 0.6)
    rgb = np.asarray(SHAPE_COLORS[color], dtype=np.float32) * rng.uniform(0.8, 1.0)
    return mask[..., None] * rgb


def _render_bar(
    rng: np.random.Generator, orientation: int, thickness: int, size: int
) -> np.ndarray:
    """A bright bar through the centre at 0, 90, 45 or 135 degrees (+-8), thin or thick."""
    angle = np.deg2rad((0, 90, 45, 135)[orientation] + rng.uniform(-8, 8))
    half = size * rng.uniform(0.3, 0.38)
    cy, cx = size / 2 + rng.uniform(-2, 2, 2)
    dy, dx = -np.sin(angle) * half, np.cos(angle) * half
    canvas = np.zeros((size, size), dtype=np.float32)
    width = 1 if thickness == 0 else 3
    for offset in range(-width, width + 1):
        oy, ox = np.cos(angle) * offset * 0.7, np.sin(angle) * offset * 0.7
        rr, cc, val = line_aa(
            *(int(round(v)) for v in (cy - dy + oy, cx - dx + ox, cy + dy + oy, cx + dx + ox))
        )
        keep = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
        canvas[rr[keep], cc[keep]] = np.maximum(canvas[rr[keep], cc[keep]], val[keep])
    canvas = np.clip(gaussian(canvas, 0.5) * 1.6, 0, 1) * rng.uniform(0.8, 1.0)
    return canvas[..., None]


def _texture(kind: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A dim background: plain (0), stripes (1), checkerboard (2) or dots (3)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    period = rng.uniform(5, 7)
    phase = rng.uniform(0, period, 2)
    if kind == 0:
        field = np.zeros((size, size), dtype=np.float32)
    elif kind == 1:
        field = ((xx + phase[1]) % period < period / 2).astype(np.float32)
    elif kind == 2:
        field = (((xx + phase[1]) // (period / 2) + (yy + phase[0]) // (period / 2)) % 2).astype(
            np.float32
        )
    else:
        dy = (yy + phase[0]) % period - period / 2
        dx = (xx + phase[1]) % period - period / 2
        field = (dy**2 + dx**2 < (period / 4) ** 2).astype(np.float32)
    return 0.35 * field


def _render_texture_shape(
    rng: np.random.Generator, texture: int, shape: int, size: int
) -> np.ndarray:
    mask = gaussian(_shape_mask(shape, size, rng, scale=0.28).astype(np.float32), 0.6)
    image = np.maximum(_texture(texture, size, rng) * (1 - mask), mask * rng.uniform(0.85, 1.0))
    return image[..., None]


def _render_ring_gap(rng: np.random.Generator, gap: int, color: int, size: int) -> np.ndarray:
    """A ring, closed (0) or with a quarter missing at a random side, in one of four colours."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    cy, cx = size / 2 + rng.uniform(-2, 2, 2)
    radius = size * rng.uniform(0.26, 0.32)
    dist = np.hypot(yy - cy, xx - cx)
    ring = (np.abs(dist - radius) < size * 0.06).astype(np.float32)
    if gap:
        start = rng.uniform(0, 2 * np.pi)
        theta = (np.arctan2(yy - cy, xx - cx) - start) % (2 * np.pi)
        ring[theta < np.pi / 2] = 0
    ring = gaussian(ring, 0.6)
    rgb = np.asarray(SHAPE_COLORS[color], dtype=np.float32) * rng.uniform(0.8, 1.0)
    return ring[..., None] * rgb


class Domain(NamedTuple):
    """A procedural domain: its renderer, factor names and value counts, channels, size."""

    render: Render
    factors: Tuple[str, str]
    values: Tuple[int, int]
    channels: int
    size: int


#: The domains, by name: colour x shape (RGB 32), orientation x thickness (grey 28),
#: background texture x shape (grey 40), a missing part x colour (RGB 32).
DOMAINS: Dict[str, Domain] = {
    "shape_color": Domain(_render_shape_color, ("shape", "color"), (4, 4), 3, 32),
    "bar": Domain(_render_bar, ("orientation", "thickness"), (4, 2), 1, 28),
    "texture_shape": Domain(_render_texture_shape, ("texture", "shape"), (4, 4), 1, 40),
    "ring_gap": Domain(_render_ring_gap, ("gap", "color"), (2, 4), 3, 32),
}


def synthetic_domain(name: str, n: int, *, seed: int = 0) -> LabeledImages:
    """``n`` images of the domain ``name``, each factor drawn uniformly.

    Args:
        name: a key of :data:`DOMAINS`.
        n: the number of images.
        seed: seeds every draw (use another seed for a test split).

    Returns:
        :class:`LabeledImages` (n, C, S, S) in [0, 1], targets 0 normal / 1 anomalous (normal:
        either factor at value 0), ``factors`` the two factors by name, and
        ``meta["factors"]`` (names) and ``meta["values"]`` (counts).
    """
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}; choose one of {sorted(DOMAINS)}.")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    domain = DOMAINS[name]
    rng = np.random.default_rng(seed)
    a = rng.integers(domain.values[0], size=n)
    b = rng.integers(domain.values[1], size=n)
    images = np.stack([domain.render(rng, int(i), int(j), domain.size) for i, j in zip(a, b)])
    tensor = torch.from_numpy(np.clip(images, 0, 1).astype(np.float32)).permute(0, 3, 1, 2)
    factor_a, factor_b = torch.from_numpy(a).long(), torch.from_numpy(b).long()
    normal = (factor_a == 0) | (factor_b == 0)
    return LabeledImages(
        tensor.contiguous(),
        (~normal).long(),
        {domain.factors[0]: factor_a, domain.factors[1]: factor_b},
        f"synthetic domain {name!r}",
        {"factors": domain.factors, "values": domain.values},
    )


__all__ = ["DOMAINS", "SHAPE_COLORS", "Domain", "synthetic_domain"]
