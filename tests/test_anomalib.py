"""anomalib's detectors: its ``InferenceBatch`` output and its post-processor, for real.

A model here returns anomalib's own ``InferenceBatch`` (``pred_score``, ``pred_label``,
``anomaly_map``, ``pred_mask``), raw or passed through anomalib's ``PostProcessor``, which maps
a raw score s to ``clamp((s - threshold) / (max - min) + 0.5, 0, 1)`` with min, max and the
F1-best threshold measured on validation images. That clamp makes the score flat on normal
images: no gradient where a generator starts.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers import TINY, bright_square_images
from torch import Tensor, nn

from captum_cfx import CounterfactualAnomalyExplainer, FitWarning, as_detector
from captum_cfx import explainer as explainer_module
from captum_cfx.detectors import CalibrationNotice
from captum_cfx.generative import trainer as trainer_module

anomalib_data = pytest.importorskip("anomalib.data")  # the [anomalib] extra, in [dev]
anomalib_post = pytest.importorskip("anomalib.post_processing")


class PatchDistance(nn.Module):
    """A PaDiM-like model with anomalib's output: the anomaly map is each 4x4 patch's squared
    distance from the normal images' mean patch (N, 1, H/4, W/4), the image score its max;
    with ``post_process``, anomalib's ``PostProcessor`` normalises and clamps both, its min,
    max and threshold set from normal and anomalous validation images as its validation
    epoch would (the threshold at the lowest anomalous score, where F1 is highest)."""

    def __init__(self, normal: Tensor, anomalous: Tensor, post_process: bool) -> None:
        super().__init__()
        self.register_buffer("mean_patch", nn.functional.avg_pool2d(normal, 4).mean(0))
        self.post_processor = anomalib_post.PostProcessor() if post_process else None
        if self.post_processor is not None:
            with torch.no_grad():
                (normal_raw, normal_map), (anomalous_raw, anomalous_map) = (
                    self.raw(normal),
                    self.raw(anomalous),
                )
            for level, low, high, threshold in (
                ("image", normal_raw.min(), anomalous_raw.max(), anomalous_raw.min()),
                (
                    "pixel",
                    normal_map.min(),
                    anomalous_map.max(),
                    anomalous_map.amax((1, 2, 3)).min(),
                ),
            ):
                getattr(self.post_processor, f"{level}_min").fill_(low)
                getattr(self.post_processor, f"{level}_max").fill_(high)
                getattr(self.post_processor, f"_{level}_threshold").fill_(threshold)

    def raw(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(image scores (N,), anomaly maps (N, 1, H/4, W/4)) before post-processing."""
        distance = (nn.functional.avg_pool2d(x, 4) - self.mean_patch) ** 2
        anomaly_map = distance.sum(1, keepdim=True)
        return anomaly_map.amax((1, 2, 3)), anomaly_map

    def forward(self, x: Tensor):
        score, anomaly_map = self.raw(x)
        batch = anomalib_data.InferenceBatch(pred_score=score, anomaly_map=anomaly_map)
        return batch if self.post_processor is None else self.post_processor(batch)


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
    output = model(NORMAL)
    assert isinstance(output, anomalib_data.InferenceBatch)
    assert (output.pred_score == 0).all()  # clamped: no gradient on normal images
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
