"""The device a computation runs on, when the caller names none."""

from __future__ import annotations

from typing import Union

import torch


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """The device to run on: ``device`` when given, else CUDA when present, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
