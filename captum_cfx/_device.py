"""The device a computation runs on, when the caller names none, its training precision, and
how the CPU's memory allocator serves a training run."""

from __future__ import annotations

import ctypes
import sys
from contextlib import contextmanager
from typing import Iterator, Optional, Union

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


# glibc's mallopt parameters and their defaults (malloc.h, mallopt(3)).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


def _glibc() -> Optional[ctypes.CDLL]:
    """The process's C library when it is glibc (the one whose mallopt these settings are
    for), else None."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)  # the symbols the process already has loaded, libc's among them
    needed = ("gnu_get_libc_version", "mallopt", "malloc_trim")
    return libc if all(hasattr(libc, name) for name in needed) else None


@contextmanager
def cpu_memory_retained(device: torch.device) -> Iterator[None]:
    """While training on the CPU under glibc, keep freed memory in the heap for reuse.

    glibc serves each allocation above its mmap threshold (at most 32 MiB) by a fresh mmap
    and returns it on free, so a step whose activations exceed it (a batch of 32 at 128
    pixels) touches every page anew: on a 2-core EPYC, 3 million page faults and 9 of 25
    seconds of each 128-pixel step went to the kernel. Inside this block malloc takes every
    allocation from its heap and keeps the freed memory there (``mallopt``: no mmap, no
    trim), as PyTorch's CPU tuning guide's jemalloc or tcmalloc would; on leaving it the
    glibc defaults come back and ``malloc_trim`` returns the free memory to the system.
    Elsewhere (a GPU, another C library or system) it does nothing. Process-wide, as malloc
    is: glibc's sliding mmap threshold stays where it was (mallopt freezes it)."""
    libc = _glibc() if device.type == "cpu" else None
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, -1)  # -1: never trim (mallopt(3))
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)
