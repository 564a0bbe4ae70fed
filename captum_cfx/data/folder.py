"""Read a folder of PNG/JPEG images, for the command line: into one tensor, or as a Dataset
that reads each image when indexed."""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

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
    paths = image_paths(folder)
    images = [read_image(path) for path in paths]
    for path, image in zip(paths, images):
        _check_alike(paths[0], images[0], path, image)
    return torch.stack(images).float() / 255.0, [p.name for p in paths]


def image_paths(folder: Path) -> List[Path]:
    """The PNG/JPEG files of ``folder``, sorted by name; FileNotFoundError when none."""
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist.")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"{folder} holds no .png, .jpg or .jpeg image.")
    return paths


def _check_alike(first_path: Path, first: Tensor, path: Path, image: Tensor) -> None:
    """Raise when ``image`` (read from ``path``) differs in size or channels from the
    folder's first image."""
    if image.shape != first.shape:
        raise ValueError(
            f"the images in {path.parent} differ in size or channels: {first_path.name} is "
            f"{tuple(first.shape)} (C, H, W) but {path.name} is {tuple(image.shape)}. "
            "Resize them to one size and one colour mode."
        )


def read_image(path: Path) -> Tensor:
    """One image file as a uint8 tensor (C, H, W): C = 1 for grayscale, else 3."""
    try:
        with Image.open(path) as opened:
            pil = opened.convert("L" if opened.mode in ("1", "L", "LA", "I;16") else "RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read the image {path}: {err}") from err
    array = np.asarray(pil, dtype=np.uint8)
    return torch.from_numpy(array[..., None] if array.ndim == 2 else array).permute(2, 0, 1)


class FolderImages(Dataset):
    """The PNG/JPEG images of ``folder`` (sorted by name), each read from its file when
    indexed, as (C, H, W) in [0, 1]: the pixels :func:`load_image_folder` gives, without
    holding them all.

    Args:
        folder (str or Path): the folder.
    """

    def __init__(self, folder: Union[str, Path]) -> None:
        self.paths = image_paths(Path(folder))
        self.first = read_image(self.paths[0])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tensor:
        image = read_image(self.paths[index])
        _check_alike(self.paths[0], self.first, self.paths[index], image)
        return image.float() / 255.0
