"""CIFAR-10 through torchvision, from disk (never downloaded unless asked)."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import torch

from captum_cfx.data.dataset import LabeledImages, default_data_root, stack_uint8


def load_cifar10(
    train: bool = True,
    root: Union[str, Path, None] = None,
    download: bool = False,
) -> LabeledImages:
    """CIFAR-10 as (N, 3, 32, 32) images in [0, 1] with the class as target and factor.

    Args:
        train: the training split, else the test split.
        root: the folder holding torchvision's ``cifar-10-batches-py/``; default
            ``$CAPTUM_CFX_DATA`` or ``~/.cache/captum_cfx``.
        download: let torchvision download the files when they are missing.

    Raises:
        FileNotFoundError: the files are not under ``root`` and ``download`` is False.
    """
    from torchvision.datasets import CIFAR10

    root = Path(root) if root is not None else default_data_root()
    try:
        tv = CIFAR10(str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise FileNotFoundError(
            f"CIFAR-10 is not under {root} (torchvision looks for cifar-10-batches-py/ there). "
            "Call load_cifar10(download=True) on a machine with internet, or point "
            "$CAPTUM_CFX_DATA (or root=) at a folder that holds it."
        ) from err
    images = stack_uint8(torch.from_numpy(tv.data))
    labels = torch.tensor(tv.targets, dtype=torch.long)
    return LabeledImages(
        images, labels, {"class": labels}, f"torchvision CIFAR-10 ({root})", {"classes": tv.classes}
    )
