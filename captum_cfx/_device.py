"""The device a computation runs on, when the caller names none, and its training precision."""

from __future__ import annotations

from typing import Union

import torch

#: The device types on which a training step's forward passes run in bfloat16 (autocast).
BF16_DEVICE_TYPES = ("cuda",)


def mixed_precision(device: torch.device) -> torch.autocast:
    """bfloat16 autocast for the forward passes of a training step on a device of
    :data:`BF16_DEVICE_TYPES`, and off elsewhere: the CPU trains in float32 (bfloat16 is slower
    there on most CPUs). The weights, the optimiser's state, phi's logits and the losses stay
    float32 (autocast runs losses and reductions in float32)."""
    enabled = device.type in BF16_DEVICE_TYPES
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """The device to run on: ``device`` when given, else CUDA when present, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
