"""CounterfactualTrainer: phi's floor and L_phi's view calibration (``calibrate_views``)."""

from __future__ import annotations

from dataclasses import replace

import torch
from helpers import TINY, bright_square_images
from torch import nn

from captum_cfx import as_detector
from captum_cfx.generative.augment import robust_view
from captum_cfx.generative.trainer import FLOOR_SAMPLE, CounterfactualTrainer


class SquareOrNoise(nn.Module):
    """phi's logit: a bright square is anomalous, and so is pixel noise, which the robust
    view adds to these smooth images (as blur and noise raise the scores of detectors never
    shown them)."""

    def forward(self, x):
        pooled = nn.functional.avg_pool2d(x, 4).amax((1, 2, 3))
        noise = (x - nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)).abs()
        return 20 * (pooled - 0.4) + 200 * noise.mean((1, 2, 3))


def _trainer(calibrate_views: bool, normal: torch.Tensor) -> CounterfactualTrainer:
    config = replace(TINY, calibrate_views=calibrate_views)
    anomalous = torch.cat([bright_square_images(4, True, seed=10 + s, flat=True) for s in range(8)])
    return CounterfactualTrainer(
        as_detector(SquareOrNoise(), calibration="sigmoid"),
        normal,
        anomalous,
        1,
        config,
        torch.device("cpu"),
        seed=0,
    )


def test_the_floor_is_the_median_of_all_kinds_of_normal_image_in_a_sorted_set():
    # Normal images sorted by brightness, as a loader sorted by class delivers them: the
    # first images alone are the darkest, and their median score is far below the set's.
    m = 2000
    assert m > FLOOR_SAMPLE  # so the floor is set by a random subset, not by all of them
    levels = torch.linspace(0.25, 0.45, m)  # logits -3 to 1
    normal = levels[:, None, None, None].expand(m, 1, 16, 16).clone()
    trainer = _trainer(False, normal)
    phi = trainer.detector
    with torch.no_grad():
        middle, first = float(phi(normal).median()), float(phi(normal[:512]).median())
    assert first < middle - 0.1
    assert abs(trainer.alpha_floor - middle) < 0.04


def test_calibrated_logits_read_the_images_and_take_the_views_gradient():
    trainer = _trainer(True, bright_square_images(64, False, seed=1, flat=True))
    images = bright_square_images(6, True, seed=3, flat=True).requires_grad_()
    view = robust_view(images, torch.Generator().manual_seed(0), trainer.config.robust_noise)
    logit_view = trainer.detector.logit(view)
    assert (logit_view - trainer.detector.logit(images)).abs().min() > 1.0  # views score higher
    calibrated = trainer._calibrated(logit_view, images)
    torch.testing.assert_close(calibrated, trainer.detector.logit(images).detach())
    (grad_calibrated,) = torch.autograd.grad(calibrated.sum(), images, retain_graph=True)
    (grad_view,) = torch.autograd.grad(logit_view.sum(), images)
    torch.testing.assert_close(grad_calibrated, grad_view)
