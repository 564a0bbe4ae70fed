"""CIFAR-10 through torchvision's own reader, from disk (never downloaded unless asked)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Union

import torch

from captum_cfx.data.dataset import LabeledImages, default_data_root, stack_uint8

logger = logging.getLogger("captum_cfx")


def load_cifar10(
    train: bool = True,
    root: Union[str, Path, None] = None,
    download: bool = False,
) -> LabeledImages:
    """CIFAR-10 as (N, 3, 32, 32) images in [0, 1] with the class as target and factor.

    Read by torchvision's ``CIFAR10`` from ``root/cifar-10-batches-py/`` (``data_batch_1``
    to ``data_batch_5``, ``test_batch``, ``batches.meta``: the extracted
    ``cifar-10-python.tar.gz``), which checks every file's md5. For the paper's one-vs-rest
    setting, the caller picks the normal class: ``one_vs_rest(load_cifar10(), 8)`` makes
    ships normal and the nine other classes anomalous.

    Args:
        train: the training split (50,000 images), else the test split (10,000).
        root: the folder holding ``cifar-10-batches-py/``; default ``$CAPTUM_CFX_DATA`` or
            ``~/.cache/captum_cfx``.
        download: let torchvision download the files into ``root`` when they are missing.

    Returns:
        A :class:`LabeledImages` with ``factors["class"]`` and ``meta["classes"]`` (the ten
        class names, by label).

    Raises:
        FileNotFoundError: the files are missing or corrupted under ``root`` and
            ``download`` is False; the message says where to put them.
    """
    from torchvision.datasets import CIFAR10

    root = Path(root) if root is not None else default_data_root()
    try:
        tv = CIFAR10(str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise FileNotFoundError(
            f"CIFAR-10 is missing or corrupted under {root}: torchvision's CIFAR10 reads "
            f"{root / CIFAR10.base_folder}/ (data_batch_1 to data_batch_5, test_batch, "
            "batches.meta, as extracted from cifar-10-python.tar.gz) and checks their md5s. "
            "Extract the archive there, point $CAPTUM_CFX_DATA (or root=) at the folder that "
            "holds cifar-10-batches-py/, or call load_cifar10(download=True) on a machine with "
            "internet."
        ) from err
    images = stack_uint8(torch.from_numpy(tv.data))
    labels = torch.tensor(tv.targets, dtype=torch.long)
    source = f"torchvision CIFAR-10 ({root})"
    logger.info(
        "CIFAR-10 %s split: %d images from %s", "train" if train else "test", len(images), source
    )
    return LabeledImages(images, labels, {"class": labels}, source, {"classes": tv.classes})
