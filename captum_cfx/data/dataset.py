"""``LabeledImages``: an in-memory image data set that keeps its ground-truth factors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from torch import Tensor
from torch.utils.data import Dataset


def default_data_root() -> Path:
    """Where torchvision data sets are looked for: $CAPTUM_CFX_DATA or ~/.cache/captum_cfx."""
    return Path(os.environ.get("CAPTUM_CFX_DATA", Path.home() / ".cache" / "captum_cfx"))


class LabeledImages(Dataset):
    """Images (N, C, H, W) in [0, 1] with targets (N,) and named ground-truth factors.

    Indexing yields ``(image, target)`` pairs, so a ``DataLoader`` over it feeds ``fit`` and
    ``train_detector`` directly. ``factors`` maps a name (``"digit"``, ``"color"``, ...) to a
    long tensor (N,) of the true value per image, for oracles and metrics.

    Args:
        images: float tensor (N, C, H, W) in [0, 1].
        targets: long tensor (N,); the class, or 0 = normal / 1 = anomalous after a split.
        factors: ground-truth factors, each (N,).
        source: where the images came from, in words.
        meta: facts about the whole set that travel with subsets (e.g. ``"palette"``).
    """

    def __init__(
        self,
        images: Tensor,
        targets: Tensor,
        factors: Optional[Dict[str, Tensor]] = None,
        source: str = "",
        meta: Optional[Dict[str, Any]] = None,
    ) -> None:
        if images.dim() != 4 or len(images) != len(targets):
            raise ValueError(
                f"images must be (N, C, H, W) and targets (N,), got {tuple(images.shape)} "
                f"and {tuple(targets.shape)}."
            )
        self.images = images
        self.targets = targets
        self.factors = dict(factors or {})
        self.source = source
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tuple[Tensor, Tensor]:
        return self.images[index], self.targets[index]

    def subset(self, index: Union[Tensor, slice]) -> LabeledImages:
        """The images selected by a boolean mask, an index tensor or a slice."""
        return LabeledImages(
            self.images[index],
            self.targets[index],
            {name: value[index] for name, value in self.factors.items()},
            self.source,
            self.meta,
        )

    def normal(self) -> LabeledImages:
        """The images with target 0 (normal, after a normal/anomalous split)."""
        return self.subset(self.targets == 0)

    def anomalous(self) -> LabeledImages:
        """The images with target 1 (anomalous, after a normal/anomalous split)."""
        return self.subset(self.targets == 1)

    def __repr__(self) -> str:
        return (
            f"LabeledImages(n={len(self)}, shape={tuple(self.images.shape[1:])}, "
            f"factors={sorted(self.factors)}, source={self.source!r})"
        )


def stack_uint8(images: Tensor) -> Tensor:
    """uint8 images (N, H, W) or (N, H, W, C) -> float (N, C, H, W) in [0, 1]."""
    x = images.float() / 255.0
    return x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()


__all__ = ["LabeledImages", "default_data_root", "stack_uint8"]
