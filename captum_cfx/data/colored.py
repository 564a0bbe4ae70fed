"""Colored-MNIST: grayscale digits tinted with a palette, normal by a configurable rule."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch

from captum_cfx.data.dataset import LabeledImages
from captum_cfx.data.mnist import load_mnist

#: The default palette; colour index 0 (cyan, as in the paper) is the normal colour c0.
DEFAULT_PALETTE: Dict[str, Tuple[float, float, float]] = {
    "cyan": (0.0, 1.0, 1.0),
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
}


def colored_mnist(
    train: bool = True,
    *,
    palette: Optional[Dict[str, Tuple[float, float, float]]] = None,
    normal_colors: Sequence[int] = (0,),
    normal_digits: Sequence[int] = (1,),
    seed: int = 0,
    root: Union[str, Path, None] = None,
) -> LabeledImages:
    """Colored-MNIST: each digit gets a palette colour drawn uniformly at random.

    An image is normal when its colour index is in ``normal_colors`` or its digit in
    ``normal_digits`` (default: colour c0, plus the digit 1 in any colour).

    Args:
        train: the training split of the underlying MNIST, else the test split.
        palette: colour name -> RGB in [0, 1]; :data:`DEFAULT_PALETTE` when None.
        normal_colors: palette indices whose digits are normal.
        normal_digits: digits that are normal in any colour.
        seed: seeds the colour assignment (the test split uses ``seed + 1``).
        root: passed to :func:`~captum_cfx.data.load_mnist`.

    Returns:
        :class:`LabeledImages` of (N, 3, 28, 28) images, targets 0 normal / 1 anomalous,
        ``factors["digit"]`` and ``factors["color"]`` (palette index), and
        ``meta["palette"]`` (P, 3) and ``meta["color_names"]``.
    """
    palette = dict(palette or DEFAULT_PALETTE)
    colors = torch.tensor(list(palette.values()), dtype=torch.float32)
    if colors.dim() != 2 or colors.shape[1] != 3 or colors.min() < 0 or colors.max() > 1:
        raise ValueError("palette must map names to RGB triples in [0, 1].")
    if any(not 0 <= c < len(colors) for c in normal_colors):
        raise ValueError(
            f"normal_colors {list(normal_colors)} must index the {len(colors)}-colour palette."
        )
    gray = load_mnist(train=train, root=root)
    generator = torch.Generator().manual_seed(seed + (0 if train else 1))
    color = torch.randint(len(colors), (len(gray),), generator=generator)
    images = gray.images * colors[color][:, :, None, None]
    digit = gray.factors["digit"]
    normal = torch.isin(color, torch.tensor(list(normal_colors), dtype=torch.long)) | torch.isin(
        digit, torch.tensor(list(normal_digits), dtype=torch.long)
    )
    return LabeledImages(
        images,
        (~normal).long(),
        {"digit": digit, "color": color},
        f"Colored-MNIST from {gray.source}",
        {"palette": colors, "color_names": list(palette)},
    )
