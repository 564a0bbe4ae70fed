"""Random, differentiable image transformations.

``diff_augment`` (translation and cutout, after DiffAugment) is applied to real and generated
images alike before D, which keeps a discriminator on small data from memorising.
``robust_view`` is the expectation over transformations applied before phi in L_phi: a
counterfactual must stay normal under a small shift, blur and noise, which a one-pixel
adversarial edit does not. ``shift_view`` is its shift alone.

Each takes an optional :class:`Rows`: under distributed training a process holds some rows of
the batch of all processes, draws for all of them, and keeps its own, so that N processes
augment their images exactly as one process would augment the batch of all.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from captum_cfx.generative.networks import leaky_clamp


class Rows(NamedTuple):
    """Where a process's images (n, C, H, W) sit in the batch of all processes: at the rows
    ``positions`` (n,) of ``total``. Random draws are made for all ``total`` rows, and each
    process keeps those at its ``positions``."""

    positions: Tensor
    total: int


def _count(x: Tensor, rows: Optional[Rows]) -> int:
    """How many rows to draw for: ``x``'s own, or all processes' ones."""
    return len(x) if rows is None else rows.total


def _mine(drawn: Tensor, rows: Optional[Rows], dim: int = 0) -> Tensor:
    """This process's part, along ``dim``, of what was drawn for all rows."""
    return drawn if rows is None else drawn.index_select(dim, rows.positions)


def random_shift(
    x: Tensor, max_shift: int, generator: torch.Generator, *, rows: Optional[Rows] = None
) -> Tensor:
    """Shift each image by up to ``max_shift`` pixels in each direction, zero filled."""
    n, _, h, w = x.shape
    padded = F.pad(x, [max_shift] * 4)
    drawn = torch.randint(0, 2 * max_shift + 1, (2, _count(x, rows)), generator=generator)
    dy, dx = _mine(drawn, rows, dim=1).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def cutout(
    x: Tensor, fraction: float, generator: torch.Generator, *, rows: Optional[Rows] = None
) -> Tensor:
    """Zero one random square of side ``fraction`` of the image per image."""
    n, _, h, w = x.shape
    side = max(1, int(fraction * h))
    top = _mine(torch.randint(0, h - side + 1, (_count(x, rows),), generator=generator), rows)
    left = _mine(torch.randint(0, w - side + 1, (_count(x, rows),), generator=generator), rows)
    ys = torch.arange(h)[None, :, None]
    xs = torch.arange(w)[None, None, :]
    hole = (ys >= top[:, None, None]) & (ys < top[:, None, None] + side)
    hole = hole & (xs >= left[:, None, None]) & (xs < left[:, None, None] + side)
    return x * (~hole[:, None]).to(x)


def diff_augment(x: Tensor, generator: torch.Generator, *, rows: Optional[Rows] = None) -> Tensor:
    """Translation by 1/8 of the side and a cutout of 1/4 of the side."""
    shifted = random_shift(x, max(1, x.shape[-1] // 8), generator, rows=rows)
    return cutout(shifted, 0.25, generator, rows=rows)


def box_blur(x: Tensor) -> Tensor:
    """A 3x3 box blur, edges replicated; same shape as ``x``."""
    return F.avg_pool2d(F.pad(x, [1] * 4, mode="replicate"), 3, stride=1)


#: The largest shift, in pixels, of ``robust_view`` and ``shift_view``.
VIEW_SHIFT = 2


def shift_view(x: Tensor, generator: torch.Generator, *, rows: Optional[Rows] = None) -> Tensor:
    """A random shift by up to ``VIEW_SHIFT`` pixels, zero filled: ``robust_view`` without
    its blur and noise."""
    return random_shift(x, VIEW_SHIFT, generator, rows=rows)


def robust_view(
    x: Tensor, generator: torch.Generator, noise: float = 0.03, *, rows: Optional[Rows] = None
) -> Tensor:
    """A random shift by up to ``VIEW_SHIFT`` pixels, a 3x3 box blur for half the images,
    Gaussian noise, leaky-clamped back to [0, 1]."""
    shifted = shift_view(x, generator, rows=rows)
    blur = _mine(torch.rand(_count(x, rows), generator=generator) < 0.5, rows)
    blurred = torch.where(blur[:, None, None, None].to(x.device), box_blur(shifted), shifted)
    drawn = torch.randn((_count(x, rows), *x.shape[1:]), generator=generator)
    return leaky_clamp(blurred + noise * _mine(drawn, rows).to(x))
