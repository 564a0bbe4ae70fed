"""Helpers shared by the tests (importable: setup.cfg puts tests/ on the path)."""

from __future__ import annotations

import torch

from captum_cfx import GeneratorConfig

#: The smallest networks that train: for tests of plumbing, not of quality.
TINY = GeneratorConfig(widths=(4, 8, 8), cond_dim=8, disc_width=4, concept_width=4, batch_size=8)


def bright_square_images(
    n: int, anomalous: bool, channels: int = 1, size: int = 16, seed: int = 0, flat: bool = False
) -> torch.Tensor:
    """Dark noisy images (normal) or the same with a bright 6x6 square (anomalous); with
    ``flat``, one grey level in [0, 0.1] per image instead of per-pixel noise."""
    g = torch.Generator().manual_seed(seed)
    if flat:
        x = 0.1 * torch.rand(n, 1, 1, 1, generator=g).expand(n, channels, size, size).clone()
    else:
        x = 0.1 * torch.rand(n, channels, size, size, generator=g)
    if anomalous:
        r, c = torch.randint(0, size - 6, (2,), generator=g).tolist()
        x[:, :, r : r + 6, c : c + 6] = 0.9
    return x
