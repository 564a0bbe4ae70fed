"""CounterfactualTrainer: L_phi's view calibration (``GeneratorConfig.calibrate_views``)."""

from __future__ import annotations

from dataclasses import replace

import torch
from helpers import TINY
from torch import nn

from captum_cfx import as_detector
from captum_cfx.generative.trainer import CounterfactualTrainer


class SquareOrNoise(nn.Module):
    """phi's logit: a bright square is anomalous, and so is pixel noise, which the robust
    view adds to these smooth images (as blur and noise raise the scores of detectors never
    shown them)."""

    def forward(self, x):
        pooled = nn.functional.avg_pool2d(x, 4).amax((1, 2, 3))
        noise = (x - nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)).abs()
        return 20 * (pooled - 0.4) + 200 * noise.mean((1, 2, 3))


def _smooth_images(n: int, anomalous: bool, seed: int) -> torch.Tensor:
    """Flat grey levels in [0, 0.1] (n, 1, 16, 16), with a bright 6x6 square if anomalous."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.rand(n, 1, 1, 1, generator=g).expand(n, 1, 16, 16).clone()
    if anomalous:
        r, c = torch.randint(0, 10, (2,), generator=g).tolist()
        x[:, :, r : r + 6, c : c + 6] = 0.9
    return x


def _trainer(calibrate_views: bool) -> CounterfactualTrainer:
    config = replace(TINY, calibrate_views=calibrate_views)
    anomalous = torch.cat([_smooth_images(4, True, seed=10 + s) for s in range(8)])
    return CounterfactualTrainer(
        as_detector(SquareOrNoise(), calibration="sigmoid"),
        _smooth_images(64, False, seed=1),
        anomalous,
        1,
        config,
        torch.device("cpu"),
        seed=0,
    )


def test_the_view_gap_is_tracked_capped_and_resumed():
    plain, trainer = _trainer(False), _trainer(True)
    assert plain.max_view_gap == 0.0
    assert trainer.max_view_gap > 2.0  # the views' noise on the normal images
    for _ in range(10):
        plain.train_step()
        trainer.train_step()
    assert plain.view_gap == 0.0
    assert 0.0 < trainer.view_gap <= trainer.max_view_gap
    resumed = _trainer(True)
    resumed.load_state_dict(trainer.state_dict())
    assert resumed.view_gap == trainer.view_gap
