"""The normal images ``fit`` trains on: read a batch at a time from a Dataset, or held whole.

A ``DataLoader`` over a map-style ``Dataset`` (one with ``__len__`` and ``__getitem__``) that
keeps its default sampling is read through :class:`DatasetImages`: each training step reads
its batch's images from the Dataset, and what ``fit`` needs of the set as a whole comes
from bounded samples: the held-out split, the floor's reference, the support, the outliers
made from normal images and the detector's calibration. Any other loader is read whole into
one tensor, as it yields no image twice on demand.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.utils.data import (
    DataLoader,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    default_collate,
)

from captum_cfx._validation import check_images
from captum_cfx.detectors.adapter import iterate_images
from captum_cfx.fit_report import split_holdout

#: Images per read in a pass over many images (the same batches as a tensor's).
PASS_BATCH = 256
#: At most this many images of a Dataset, drawn at random, calibrate a raw detector.
CALIBRATION_SAMPLE = 4096


class DatasetImages:
    """Some images of a map-style Dataset, indexed like a tensor (M, C, H, W) and read only
    when indexed.

    Args:
        dataset (Dataset): yields an image tensor (C, H, W) in [0, 1], or a tuple or list
            whose first item is one, for each index.
        name (str): how the argument is called in ``fit``, for the messages.
        indices (Tensor, optional): the Dataset's indices (M,) these images are. Default:
            None (all, in order)
        device (torch.device, optional): where an indexed batch is put. Default: None (CPU)
    """

    def __init__(
        self,
        dataset: Any,
        name: str,
        indices: Optional[Tensor] = None,
        device: Optional[torch.device] = None,
    ) -> None:
        self.dataset = dataset
        self.name = name
        self.indices = torch.arange(len(dataset)) if indices is None else indices
        self.device = torch.device("cpu") if device is None else device
        if not len(self.indices):
            raise ValueError(f"{name}'s dataset is empty; pass a loader over at least one image.")
        self.image_shape = tuple(self._read(self.indices[:1]).shape[1:])

    @property
    def shape(self) -> torch.Size:
        """(M, C, H, W), as a tensor of these images would have."""
        return torch.Size((len(self), *self.image_shape))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: Union[Tensor, slice]) -> Tensor:
        """The images at ``index`` (a LongTensor (n,) or a slice), read now: (n, C, H, W)."""
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        return self._read(self.indices[index.cpu()]).to(self.device)

    def subset(self, index: Tensor) -> DatasetImages:
        """The images at ``index`` (n,), unread."""
        return DatasetImages(self.dataset, self.name, self.indices[index.cpu()], self.device)

    def to(self, device: torch.device) -> DatasetImages:
        """The same images, each indexed batch put on ``device``."""
        return DatasetImages(self.dataset, self.name, self.indices, device)

    def batches(self) -> Iterator[Tensor]:
        """All images in order, ``PASS_BATCH`` at a time."""
        for start in range(0, len(self), PASS_BATCH):
            yield self[slice(start, start + PASS_BATCH)]

    def _read(self, indices: Tensor) -> Tensor:
        if not len(indices):  # e.g. the held-out images of a set too small to hold any out
            return torch.empty((0, *self.image_shape))
        images = []
        for i in indices.tolist():
            item = self.dataset[i]
            images.append(item[0] if isinstance(item, (tuple, list)) else item)
        shapes = {tuple(getattr(image, "shape", ())) for image in images}
        if len(shapes) > 1:
            raise ValueError(
                f"{self.name} yields images of different shapes {sorted(shapes)}; resize them "
                "to one size."
            )
        if not all(isinstance(image, Tensor) for image in images):
            raise TypeError(
                f"{self.name}'s dataset yielded {type(images[0]).__name__}; it must yield "
                "image tensors (C, H, W) or (image, label) pairs. Add transforms.ToTensor()."
            )
        batch = check_images(torch.stack(images), f"{self.name}'s images")
        if hasattr(self, "image_shape") and tuple(batch.shape[1:]) != self.image_shape:
            raise ValueError(
                f"{self.name} yields images of different shapes {self.image_shape} and "
                f"{tuple(batch.shape[1:])}; resize them to one size."
            )
        return batch


#: Images in memory, or read when indexed.
Images = Union[Tensor, DatasetImages]


def read_images(loader: Iterable[Any], name: str) -> Images:
    """``loader``'s images: a :class:`DatasetImages` for a ``DataLoader`` over a map-style
    Dataset with its default sampling and collation (its shuffling is of no matter: ``fit``
    draws its own batches), else :func:`gather_images`."""
    if (
        isinstance(loader, DataLoader)
        and not isinstance(loader.dataset, IterableDataset)
        and hasattr(loader.dataset, "__len__")
        and isinstance(loader.sampler, (SequentialSampler, RandomSampler))
        and loader.collate_fn is default_collate
    ):
        return DatasetImages(loader.dataset, name)
    return gather_images(loader, name)


def gather_images(loader: Iterable[Any], name: str) -> Tensor:
    """All of ``loader``'s images in one tensor (M, C, H, W), each batch checked."""
    batches = [check_images(b, f"{name}'s images") for b in iterate_images(loader)]
    shapes = {tuple(b.shape[1:]) for b in batches}
    if len(shapes) > 1:
        raise ValueError(
            f"{name} yields images of different shapes {sorted(shapes)}; resize them to one size."
        )
    return torch.cat(batches)


def calibration_images(normal: Images, seed: int) -> Union[Tensor, Iterator[Tensor]]:
    """The normal images that calibrate a raw detector: all of a tensor's; of a Dataset's,
    up to ``CALIBRATION_SAMPLE`` drawn with ``seed`` (all, in order, when there are no
    more), read ``PASS_BATCH`` at a time."""
    if isinstance(normal, Tensor):
        return normal
    if len(normal) > CALIBRATION_SAMPLE:
        order = torch.randperm(len(normal), generator=torch.Generator().manual_seed(seed))
        normal = normal.subset(order[:CALIBRATION_SAMPLE])
    return normal.batches()


def holdout(normal: Images, seed: int) -> Tuple[Images, Tensor]:
    """(training, held out) images, as :func:`~captum_cfx.fit_report.split_holdout` splits
    them; the held-out ones (at most ``HOLDOUT_MAX``) read."""
    if isinstance(normal, Tensor):
        return split_holdout(normal, seed)
    training, held_out = split_holdout(torch.arange(len(normal)), seed)
    return normal.subset(training), normal[held_out]
