"""Shared fixtures: tiny synthetic data sets that train in a second."""

from __future__ import annotations

import pytest
import torch
from helpers import bright_square_images
from torch.utils.data import DataLoader, TensorDataset

# The tests' networks are tiny: one thread is faster than two and leaves a core free.
torch.set_num_threads(1)


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
