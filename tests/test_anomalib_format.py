"""Detectors in anomalib's output format.

anomalib itself (with lightning, torchmetrics and their pins) does not install within CI's
budget beside this project's torch, so its output is reproduced here: a model returns an
``InferenceBatch`` (a NamedTuple of ``pred_score``, ``pred_label``, ``anomaly_map``,
``pred_mask``), and its one-class post-processing maps a raw score s to
``clamp((s - threshold) / (max - min) + 0.5, 0, 1)``, min, max and threshold measured on
validation images. That clamp makes the score flat on most normal images: no gradient
where a generator starts.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple, Optional

import pytest
import torch
from helpers import TINY, bright_square_images
from torch import Tensor, nn

from captum_cfx import CounterfactualAnomalyExplainer, FitWarning, as_detector
from captum_cfx import explainer as explainer_module
from captum_cfx.detectors import CalibrationNotice
from captum_cfx.generative import trainer as trainer_module


class InferenceBatch(NamedTuple):
    """anomalib's model output, field for field."""

    pred_score: Optional[Tensor] = None
    pred_label: Optional[Tensor] = None
    anomaly_map: Optional[Tensor] = None
    pred_mask: Optional[Tensor] = None


class PatchDistance(nn.Module):
    """A PaDiM-like model in anomalib's format: the anomaly map is each 4x4 patch's squared
    distance from the normal images' mean patch (N, 1, H/4, W/4), the image score its max;
    with ``post_process``, normalised and clamped as anomalib's post-processor does, with
    min, max and the F1-best threshold taken from normal and anomalous validation images."""

    def __init__(self, normal: Tensor, anomalous: Tensor, post_process: bool) -> None:
        super().__init__()
        self.register_buffer("mean_patch", nn.functional.avg_pool2d(normal, 4).mean(0))
        self.post_process = post_process
        with torch.no_grad():
            normal_raw, anomalous_raw = self.raw(normal)[0], self.raw(anomalous)[0]
        self.minimum = float(normal_raw.min())
        self.maximum = float(anomalous_raw.max())
        self.threshold = float(anomalous_raw.min())  # F1 is highest there, as anomalib picks

    def raw(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(image scores (N,), anomaly maps (N, 1, H/4, W/4)) before post-processing."""
        distance = (nn.functional.avg_pool2d(x, 4) - self.mean_patch) ** 2
        anomaly_map = distance.sum(1, keepdim=True)
        return anomaly_map.amax((1, 2, 3)), anomaly_map

    def forward(self, x: Tensor) -> InferenceBatch:
        score, anomaly_map = self.raw(x)
        if self.post_process:
            spread = self.maximum - self.minimum
            score = ((score - self.threshold) / spread + 0.5).clamp(0, 1)
        return InferenceBatch(
            pred_score=score, pred_label=score > 0.5, anomaly_map=anomaly_map, pred_mask=None
        )


NORMAL = bright_square_images(128, False, seed=1)
ANOMALIES = torch.cat([bright_square_images(4, True, seed=500 + s) for s in range(8)])


def test_an_inference_batch_is_read_by_its_pred_score():
    model = PatchDistance(NORMAL, ANOMALIES, post_process=False)
    phi = as_detector(model, normal_data=NORMAL)
    normal, anomalous = phi(NORMAL[:16]), phi(ANOMALIES[:16])
    assert normal.shape == (16,) and anomalous.shape == (16,)
    assert float(normal.max()) < float(anomalous.min())  # the map is not mistaken for scores
    probe = ANOMALIES[:4].clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(phi.logit(probe).sum(), probe)
    assert gradient.abs().sum() > 0  # the raw score reaches phi with its gradient


def test_a_post_processed_score_flat_on_normal_images_is_explained_through_a_surrogate(
    monkeypatch,
):
    model = PatchDistance(NORMAL, ANOMALIES, post_process=True)
    assert (model(NORMAL).pred_score == 0).all()  # clamped: no gradient on normal images
    monkeypatch.setattr(explainer_module, "FIRST_STEPS", 20)  # the path, not the quality
    monkeypatch.setattr(trainer_module, "REFRESH_STEPS", 5)
    with pytest.warns(CalibrationNotice, match="distilled a differentiable surrogate"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)  # four steps explain nothing yet
            explainer = CounterfactualAnomalyExplainer(config=TINY).fit(
                model, [NORMAL], steps=4, checkpoint_every=2, progress=False
            )
    assert explainer.forward_func.model is model  # validity is read on anomalib's own score
    assert explainer.surrogate_ is not None
    assert set(explainer.surrogate_report_) >= {"spearman_images", "spearman_counterfactuals"}

