"""Black-box detectors: the distilled surrogate, its active loop, and fit through it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers import TINY, bright_square_images
from torch import nn

from captum_cfx import CounterfactualAnomalyExplainer, FitWarning, GeneratorConfig, as_detector
from captum_cfx import explainer as explainer_module
from captum_cfx.detectors import CalibrationNotice
from captum_cfx.detectors.surrogate import SurrogateDistiller, fidelity
from captum_cfx.generative import trainer as trainer_module


def bright_spot_numpy(x: torch.Tensor) -> np.ndarray:
    """A black box: phi = sigmoid(20 (max of the 4x4-pooled image - 0.4)), as numpy."""
    peak = nn.functional.avg_pool2d(x.amax(1, keepdim=True), 4).amax((1, 2, 3))
    return torch.sigmoid(20 * (peak - 0.4)).detach().cpu().numpy()


NORMAL = bright_square_images(128, False, seed=1)
ANOMALIES = torch.cat([bright_square_images(4, True, seed=500 + s) for s in range(8)])


def test_the_distiller_learns_the_black_boxs_ranking():
    black_box = as_detector(bright_spot_numpy, calibration="identity")
    distiller = SurrogateDistiller(black_box, 1, torch.device("cpu"), seed=0)
    train = torch.cat(
        [NORMAL, torch.cat([bright_square_images(4, True, seed=s) for s in range(16)])]
    )
    distiller.add(train, pool="base")
    distiller.train(300)
    report = fidelity(black_box, distiller.detector, NORMAL[:32], ANOMALIES, ANOMALIES)
    assert report["spearman_images"] > 0.8
    assert report["auroc_black_box"] == 1.0 and report["auroc_surrogate"] > 0.95
    with pytest.raises(ValueError, match="no labelled images"):
        SurrogateDistiller(black_box, 1, torch.device("cpu"), seed=0).train(1)


def test_fit_explains_a_numpy_detector_through_a_surrogate_and_judges_on_the_black_box():
    config = GeneratorConfig(
        widths=(8, 16, 16), cond_dim=16, disc_width=8, concept_width=8, batch_size=16, lr=1e-3
    )
    with pytest.warns(CalibrationNotice, match="distilled a differentiable surrogate"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            explainer = CounterfactualAnomalyExplainer(n_concepts=1, config=config).fit(
                bright_spot_numpy, [NORMAL], steps=300, checkpoint_every=50, progress=False
            )
    assert explainer.forward_func.model is bright_spot_numpy  # judged on the black box
    report = explainer.surrogate_report_
    assert report == explainer.fit_report_["surrogate"]
    assert set(report) == {
        "spearman_images",
        "spearman_counterfactuals",
        "auroc_black_box",
        "auroc_surrogate",
    }
    assert report["spearman_images"] > 0.5
    after = bright_spot_numpy(explainer.counterfactual(ANOMALIES, concept=0))
    assert float((after < 0.5).mean()) >= 0.75  # normal to the black box itself
    assert explainer.surrogate_.logit(ANOMALIES.requires_grad_(True)).requires_grad


def test_a_fit_through_a_surrogate_resumes_exactly_and_saves_the_surrogate(tmp_path, monkeypatch):
    # Fewer distillation steps: the same code paths in a fraction of the time.
    monkeypatch.setattr(explainer_module, "FIRST_STEPS", 20)
    monkeypatch.setattr(trainer_module, "REFRESH_STEPS", 5)

    def fit(folder):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return CounterfactualAnomalyExplainer(config=TINY).fit(
                bright_spot_numpy,
                [NORMAL],
                steps=steps,
                checkpoint_dir=folder,
                checkpoint_every=2,
                progress=False,
            )

    steps = 6
    full = fit(tmp_path / "a")
    steps = 4
    fit(tmp_path / "b")
    steps = 6
    resumed = fit(tmp_path / "b")
    for name, value in full.generator_.state_dict().items():
        torch.testing.assert_close(resumed.generator_.state_dict()[name], value, rtol=0, atol=0)
    for name, value in full.surrogate_.model.state_dict().items():
        torch.testing.assert_close(
            resumed.surrogate_.model.state_dict()[name], value, rtol=0, atol=0
        )
    assert resumed.fit_report_ == full.fit_report_
    loaded = CounterfactualAnomalyExplainer.load(full.save(tmp_path / "saved"))
    torch.testing.assert_close(loaded.surrogate_(ANOMALIES), full.surrogate_(ANOMALIES))
    assert loaded.surrogate_report_ == full.surrogate_report_


def test_a_black_box_that_gives_one_score_to_everything_is_refused():
    with pytest.raises(ValueError, match="does not change with the input"):
        CounterfactualAnomalyExplainer(config=TINY).fit(
            lambda x: np.full(len(x), 0.3), [NORMAL], steps=1, progress=False
        )
