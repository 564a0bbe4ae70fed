"""Outlier exposure that shares no class with the test anomalies: random coloured strokes,
normal images with pasted patches, normal images with strokes drawn over them, and normal
images under a faint overlay."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from skimage.color import hsv2rgb
from skimage.draw import bezier_curve
from skimage.filters import gaussian
from skimage.morphology import dilation, disk
from torch import Tensor

from captum_cfx.data.dataset import LabeledImages


def random_strokes(
    n: int,
    *,
    size: int = 28,
    channels: int = 3,
    max_strokes: int = 3,
    palette: Optional[Tensor] = None,
    seed: int = 0,
) -> LabeledImages:
    """Digit-sized random pen strokes, each in its own random colour, as outliers.

    Each image holds 1 to ``max_strokes`` quadratic Bezier curves with control points in the
    central 70% of the image, about 3 pixels thick (as MNIST's pen), lightly blurred. Strokes
    are not digits, so a detector trained against them has seen no test anomaly.

    Args:
        n: the number of images.
        size: their side in pixels.
        channels: 3 for a random saturated colour per stroke, 1 for white strokes.
        max_strokes: the most strokes per image.
        palette: (P, 3) RGB colours to draw each stroke's colour from (e.g. the data set's
            own palette); a random saturated hue when None.
        seed: seeds the drawing.

    Returns:
        :class:`LabeledImages` of (n, channels, size, size) in [0, 1], every target 1.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}.")
    if n < 1 or size < 8:
        raise ValueError(f"need n >= 1 and size >= 8, got n={n}, size={size}.")
    if max_strokes < 1:
        raise ValueError(f"max_strokes must be at least 1, got {max_strokes}.")
    rng = np.random.default_rng(seed)
    lo, hi = int(0.15 * size), int(0.85 * size) - 1
    pen = disk(1)
    palette_np = None if palette is None else palette.detach().cpu().numpy().reshape(-1, 3)
    images = np.zeros((n, size, size, channels), dtype=np.float32)
    for image in images:
        for _ in range(rng.integers(1, max_strokes + 1)):
            mask = np.zeros((size, size), dtype=bool)
            r0, c0, r1, c1, r2, c2 = rng.integers(lo, hi + 1, size=6)
            rr, cc = bezier_curve(
                r0, c0, r1, c1, r2, c2, weight=float(rng.uniform(0.5, 3.0)), shape=mask.shape
            )
            mask[rr, cc] = True
            stroke = gaussian(dilation(mask, pen).astype(np.float32), sigma=0.5)
            if channels == 1:
                color = np.ones(1)
            elif palette_np is not None:
                color = palette_np[rng.integers(len(palette_np))]
            else:
                color = hsv2rgb(np.array([rng.uniform(), rng.uniform(0.6, 1.0), 1.0]))
            image[:] = np.maximum(image, stroke[..., None] * color[None, None, :])
    tensor = torch.from_numpy(np.clip(images, 0.0, 1.0)).permute(0, 3, 1, 2).contiguous()
    return LabeledImages(
        tensor, torch.ones(n, dtype=torch.long), {}, "random strokes (outlier exposure)"
    )


def pasted_patches(
    images: Tensor,
    n: int,
    *,
    palette: Optional[Tensor] = None,
    max_patches: int = 3,
    seed: int = 0,
) -> LabeledImages:
    """Normal images with small solid patches pasted on, as outliers (after CutPaste).

    A detector trained against these learns that an added blob or bar does not make an image
    normal, which closes the cheapest shortcut a counterfactual generator can find: pasting a
    normal-coloured patch onto an anomaly.

    Args:
        images: normal images (M, C, H, W) in [0, 1] to paste onto (drawn with replacement).
        n: the number of outliers.
        palette: (P, 3) colours for the patches (3-channel images); random colours when None.
        max_patches: the most patches per image (at least one).
        seed: seeds the draw.

    Returns:
        :class:`LabeledImages` of (n, C, H, W) in [0, 1], every target 1.
    """
    g = torch.Generator().manual_seed(seed)
    out = _drawn(images, n, g).clone()
    _, c, h, w = out.shape
    for image in out:
        for _ in range(int(torch.randint(1, max_patches + 1, (1,), generator=g))):
            ph, pw = (int(v) for v in torch.randint(2, max(3, h // 5), (2,), generator=g))
            top = int(torch.randint(0, h - ph + 1, (1,), generator=g))
            left = int(torch.randint(0, w - pw + 1, (1,), generator=g))
            if palette is not None and c == 3:
                color = palette[torch.randint(len(palette), (1,), generator=g)][0]
            else:
                color = torch.rand(c, generator=g)
            image[:, top : top + ph, left : left + pw] = color[:, None, None]
    return LabeledImages(
        out, torch.ones(n, dtype=torch.long), {}, "pasted patches (outlier exposure)"
    )


def added_strokes(
    images: Tensor,
    n: int,
    *,
    palette: Optional[Tensor] = None,
    max_strokes: int = 1,
    seed: int = 0,
) -> LabeledImages:
    """Normal images with random pen strokes drawn over them, as outliers.

    ``pasted_patches`` teaches a detector that a solid blob does not make an image normal; a
    stroke in the pen's own style (a bar under an 8, arcs above and below a 3) is the
    shortcut that stays open, and a counterfactual generator finds it. A detector trained
    against these learns that such an addition does not make an image normal either, but a
    stroke over a normal image can leave it normal (a longer tail on a 2), so it may also
    learn to flag part of the normal class: check its false alarms.

    Args:
        images: normal images (M, C, H, W) in [0, 1] to draw on (drawn with replacement).
        n: the number of outliers.
        palette: (P, 3) colours for the strokes (3-channel images), as in
            :func:`random_strokes`.
        max_strokes: the most strokes per image (at least one).
        seed: seeds the draw.

    Returns:
        :class:`LabeledImages` of (n, C, H, W) in [0, 1], every target 1.
    """
    base = _drawn(images, n, torch.Generator().manual_seed(seed))
    _, c, h, w = base.shape
    if h != w:
        raise ValueError(f"added_strokes needs square images, got {h}x{w}.")
    strokes = random_strokes(
        n, size=h, channels=c, max_strokes=max_strokes, palette=palette, seed=seed
    ).images
    return LabeledImages(
        torch.maximum(base, strokes.to(base)),
        torch.ones(n, dtype=torch.long),
        {},
        "normal images with added strokes (outlier exposure)",
    )


#: :func:`faint_overlays`' default range of the overlays' peak brightness.
FAINT_OVERLAY_LEVELS: Tuple[float, float] = (0.05, 0.3)


def faint_overlays(
    images: Tensor,
    n: int,
    *,
    levels: Tuple[float, float] = FAINT_OVERLAY_LEVELS,
    seed: int = 0,
) -> LabeledImages:
    """Normal images under a faint overlay, as outliers: a large dim rectangle or a haze.

    ``pasted_patches`` teaches a detector that a bright blob does not make an image normal; a
    dim one the size of a quarter of the image, or grey haze over the background, stays open,
    and a counterfactual generator finds it. Even outliers get a
    rectangle of side 5 pixels to half the image, odd ones a smooth haze (a 4x4 random field
    upsampled to the image); either at a peak brightness drawn from ``levels`` (grey on one
    channel, a random colour on more), taken as the pixel-wise maximum with the image so the
    digit stays as it is.

    Args:
        images: normal images (M, C, H, W) in [0, 1] to overlay (drawn with replacement).
        n: the number of outliers.
        levels: the range of the overlay's peak brightness, within (0, 1].
        seed: seeds the draw.

    Returns:
        :class:`LabeledImages` of (n, C, H, W) in [0, 1], every target 1.
    """
    low, high = levels
    if not 0 < low <= high <= 1:
        raise ValueError(f"levels must satisfy 0 < low <= high <= 1, got {levels}.")
    g = torch.Generator().manual_seed(seed)
    base = _drawn(images, n, g)
    _, c, h, w = base.shape
    overlay = F.interpolate(torch.rand(n, 1, 4, 4, generator=g), size=(h, w), mode="bilinear")
    overlay = overlay / overlay.flatten(1).amax(1)[:, None, None, None]
    for i in range(0, n, 2):
        rh, rw = (int(v) for v in torch.randint(5, max(6, h // 2 + 1), (2,), generator=g))
        top = int(torch.randint(0, h - rh + 1, (1,), generator=g))
        left = int(torch.randint(0, w - rw + 1, (1,), generator=g))
        overlay[i] = 0.0
        overlay[i, :, top : top + rh, left : left + rw] = 1.0
    level = low + (high - low) * torch.rand(n, 1, 1, 1, generator=g)
    tint = torch.ones(n, c, 1, 1) if c == 1 else torch.rand(n, c, 1, 1, generator=g)
    return LabeledImages(
        torch.maximum(base, overlay * level * tint),
        torch.ones(n, dtype=torch.long),
        {},
        "normal images under a faint overlay (outlier exposure)",
    )


def _drawn(images: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``n`` of the normal ``images`` (M, C, H, W), drawn with replacement: (n, C, H, W)."""
    if n < 1 or images.dim() != 4 or len(images) == 0:
        raise ValueError("need n >= 1 and a non-empty batch of images (M, C, H, W).")
    return images[torch.randint(len(images), (n,), generator=generator)]
