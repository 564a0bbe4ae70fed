"""Shared fixtures: tiny synthetic data sets that train in a second."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset


def bright_square_images(
    n: int, anomalous: bool, channels: int = 1, size: int = 16, seed: int = 0
) -> torch.Tensor:
    """Dark noisy images (normal) or the same with a bright 6x6 square (anomalous)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.rand(n, channels, size, size, generator=g)
    if anomalous:
        r, c = torch.randint(0, size - 6, (2,), generator=g).tolist()
        x[:, :, r : r + 6, c : c + 6] = 0.9
    return x


@pytest.fixture
def square_loaders():
    """(normal loader, outlier loader, normal test, anomalous test): 1 channel, 16 px."""
    normal = bright_square_images(128, False, seed=1)
    outliers = torch.cat([bright_square_images(8, True, seed=s) for s in range(16)])
    test_normal = bright_square_images(64, False, seed=2)
    test_anomalous = torch.cat([bright_square_images(4, True, seed=100 + s) for s in range(16)])
    return (
        DataLoader(TensorDataset(normal), batch_size=32, shuffle=True),
        DataLoader(TensorDataset(outliers), batch_size=32, shuffle=True),
        test_normal,
        test_anomalous,
    )
