"""Checks on user-facing inputs, shared by every public entry point.

Each check raises an exception whose message names the problem and the fix, so a user who
passes the wrong thing learns what to pass instead.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

#: Images per chunk when scanning a batch for NaN and range.
CHECK_CHUNK = 1024


def check_images(
    x: object,
    name: str = "inputs",
    channels: Optional[int] = None,
    size: Optional[Sequence[int]] = None,
) -> Tensor:
    """Validate a batch of images and return it unchanged.

    Args:
        x: the candidate batch, expected a float tensor (N, C, H, W) in [0, 1].
        name: how the argument is called in the public API, for the message.
        channels: the number of channels required (1 or 3); any of 1 or 3 when None.
        size: the (H, W) required; any when None.

    Returns:
        ``x`` itself.

    Raises:
        TypeError: ``x`` is not a floating point tensor.
        ValueError: wrong rank, channels or size, NaN/Inf, or values outside [0, 1].
    """
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of images (N, C, H, W) in [0, 1], got "
            f"{type(x).__name__}. Convert with torch.as_tensor(...) or a torchvision "
            "transform such as ToTensor()."
        )
    if not torch.is_floating_point(x):
        raise TypeError(
            f"{name} must be a floating point tensor in [0, 1], got dtype {x.dtype}. "
            "Divide uint8 images by 255: x.float() / 255."
        )
    if x.dim() != 4:
        hint = " Add the batch dimension with x.unsqueeze(0)." if x.dim() == 3 else ""
        raise ValueError(
            f"{name} must have shape (N, C, H, W), got {tuple(x.shape)} ({x.dim()} dims).{hint}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (N = 0); pass at least one image.")
    wanted = (1, 3) if channels is None else (channels,)
    if x.shape[1] not in wanted:
        raise ValueError(
            f"{name} has {x.shape[1]} channels, expected {' or '.join(map(str, wanted))}. "
            "Images are NCHW: a channels-last batch needs x.permute(0, 3, 1, 2)."
        )
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(
            f"{name} has size {tuple(x.shape[-2:])}, expected {tuple(size)} (the size it was "
            "fitted on). Resize with torch.nn.functional.interpolate or "
            "torchvision.transforms.Resize."
        )
    # Chunked, so validating a large batch never allocates a mask of the whole batch.
    chunks = x.split(CHECK_CHUNK)
    if not all(bool(torch.isfinite(chunk).all()) for chunk in chunks):
        raise ValueError(f"{name} contains NaN or Inf values; clean or drop those images.")
    lo, hi = min(float(c.min()) for c in chunks), max(float(c.max()) for c in chunks)
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]. Undo any "
            "normalisation (e.g. x * std + mean) or divide 0-255 images by 255."
        )
    return x
