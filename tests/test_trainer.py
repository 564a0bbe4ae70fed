"""The trainer's target floor: measured where L_phi measures, on robust views."""

from __future__ import annotations

import torch
from torch import nn

from captum_cfx import GeneratorConfig
from captum_cfx.detectors.adapter import as_detector
from captum_cfx.generative.augment import robust_view
from captum_cfx.generative.trainer import CounterfactualTrainer

TINY = GeneratorConfig(widths=(4, 8, 8), cond_dim=8, disc_width=4, concept_width=4, batch_size=8)


class Roughness(nn.Module):
    """phi = sigmoid(200 (mean |x - box blur of x| - 0.01)): smooth images are normal, noise
    (which every robust view adds) raises the score."""

    def forward(self, x):
        blurred = nn.functional.avg_pool2d(nn.functional.pad(x, [1] * 4, mode="replicate"), 3, 1)
        return torch.sigmoid(200 * ((x - blurred).abs().mean((1, 2, 3)) - 0.01))


def test_the_alpha_floor_is_phis_median_on_robust_views_of_normal_images():
    normal = torch.full((64, 1, 16, 16), 0.5)
    phi = as_detector(Roughness(), calibration="identity")
    trainer = CounterfactualTrainer(phi, normal, None, 2, TINY, torch.device("cpu"), seed=0)
    raw_median = float(phi(normal).median())
    # Views drawn independently of the trainer's: the floor is what normal images reach.
    views = robust_view(normal, torch.Generator().manual_seed(123), TINY.robust_noise)
    view_median = float(phi(views).median())
    assert raw_median < 0.2 < view_median
    assert abs(trainer.alpha_floor - view_median) < 0.05


def test_measuring_the_floor_leaves_the_training_draws_alone():
    normal = torch.rand(64, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    phi = as_detector(Roughness(), calibration="identity")
    trainer = CounterfactualTrainer(phi, normal, None, 2, TINY, torch.device("cpu"), seed=5)
    assert torch.equal(trainer.rng.get_state(), torch.Generator().manual_seed(5).get_state())
