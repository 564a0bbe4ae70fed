"""Read a folder of PNG/JPEG images into one tensor, for the command line."""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_image_folder(folder: Union[str, Path]) -> Tuple[Tensor, List[str]]:
    """All PNG/JPEG images of ``folder`` (sorted by name) as (N, C, H, W) in [0, 1].

    Grayscale images give C = 1, colour images C = 3 (an alpha channel is dropped, a
    palette image is expanded to RGB).

    Returns:
        The images and their file names.

    Raises:
        FileNotFoundError: the folder is missing or holds no PNG/JPEG image.
        ValueError: an image cannot be decoded, or the images differ in size or channels.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist.")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"{folder} holds no .png, .jpg or .jpeg image.")
    images = []
    for path in paths:
        try:
            with Image.open(path) as opened:
                pil = opened.convert("L" if opened.mode in ("1", "L", "LA", "I;16") else "RGB")
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"cannot read the image {path}: {err}") from err
        array = np.asarray(pil, dtype=np.uint8)
        images.append(
            torch.from_numpy(array[..., None] if array.ndim == 2 else array).permute(2, 0, 1)
        )
    first = tuple(images[0].shape)
    for path, image in zip(paths, images):
        if tuple(image.shape) != first:
            raise ValueError(
                f"the images in {folder} differ in size or channels: {paths[0].name} is "
                f"{first} (C, H, W) but {path.name} is {tuple(image.shape)}. "
                "Resize them to one size and one colour mode."
            )
    return torch.stack(images).float() / 255.0, [p.name for p in paths]
