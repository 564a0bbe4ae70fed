"""CounterfactualTrainer: L_phi's view calibration (``GeneratorConfig.calibrate_views``)."""

from __future__ import annotations

from dataclasses import replace

import torch
from helpers import TINY, bright_square_images
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


def _trainer(calibrate_views: bool) -> CounterfactualTrainer:
    config = replace(TINY, calibrate_views=calibrate_views)
    anomalous = torch.cat([bright_square_images(4, True, seed=10 + s, flat=True) for s in range(8)])
    return CounterfactualTrainer(
        as_detector(SquareOrNoise(), calibration="sigmoid"),
        bright_square_images(64, False, seed=1, flat=True),
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
