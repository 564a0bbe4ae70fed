"""Random, differentiable image transformations.

``diff_augment`` (translation and cutout, after DiffAugment) is applied to real and generated
images alike before D, which keeps a discriminator on small data from memorising.
``robust_view`` is the expectation over transformations applied before phi in L_phi: a
counterfactual must stay normal under a small shift, blur and noise, which a one-pixel
adversarial edit does not. ``shift_view`` is its shift alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from captum_cfx.generative.networks import leaky_clamp


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Shift each image by up to ``max_shift`` pixels in each direction, zero filled."""
    n, _, h, w = x.shape
    padded = F.pad(x, [max_shift] * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def cutout(x: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """Zero one random square of side ``fraction`` of the image per image."""
    n, _, h, w = x.shape
    side = max(1, int(fraction * h))
    top = torch.randint(0, h - side + 1, (n,), generator=generator)
    left = torch.randint(0, w - side + 1, (n,), generator=generator)
    rows = torch.arange(h)[None, :, None]
    cols = torch.arange(w)[None, None, :]
    hole = (rows >= top[:, None, None]) & (rows < top[:, None, None] + side)
    hole = hole & (cols >= left[:, None, None]) & (cols < left[:, None, None] + side)
    return x * (~hole[:, None]).to(x)


def diff_augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Translation by 1/8 of the side and a cutout of 1/4 of the side."""
    return cutout(random_shift(x, max(1, x.shape[-1] // 8), generator), 0.25, generator)


def box_blur(x: Tensor) -> Tensor:
    """A 3x3 box blur, edges replicated; same shape as ``x``."""
    return F.avg_pool2d(F.pad(x, [1] * 4, mode="replicate"), 3, stride=1)


#: The largest shift, in pixels, of ``robust_view`` and ``shift_view``.
VIEW_SHIFT = 2


def shift_view(x: Tensor, generator: torch.Generator) -> Tensor:
    """A random shift by up to ``VIEW_SHIFT`` pixels, zero filled: ``robust_view`` without
    its blur and noise."""
    return random_shift(x, VIEW_SHIFT, generator)


def robust_view(x: Tensor, generator: torch.Generator, noise: float = 0.03) -> Tensor:
    """A random shift by up to ``VIEW_SHIFT`` pixels, a 3x3 box blur for half the images,
    Gaussian noise, leaky-clamped back to [0, 1]."""
    x = shift_view(x, generator)
    blur = torch.rand(len(x), generator=generator) < 0.5
    x = torch.where(blur[:, None, None, None].to(x.device), box_blur(x), x)
    return leaky_clamp(x + noise * torch.randn(x.shape, generator=generator).to(x))
