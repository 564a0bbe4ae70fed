"""Vector detectors (scikit-learn, PyOD) on images, and the quantile calibration."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers import TINY, bright_square_images
from pyod.models.knn import KNN
from sklearn.ensemble import IsolationForest

from captum_cfx import CounterfactualAnomalyExplainer, FitWarning, as_detector
from captum_cfx import explainer as explainer_module
from captum_cfx.detectors import CalibrationNotice, NotDifferentiableWarning, VectorDetector
from captum_cfx.detectors.adapter import AnomalyDetector
from captum_cfx.generative import trainer as trainer_module

NORMAL = bright_square_images(128, False, seed=1)
ANOMALIES = torch.cat([bright_square_images(4, True, seed=500 + s) for s in range(8)])


def pooled(images: torch.Tensor) -> torch.Tensor:
    """A feature extractor: the 4x4-pooled image, flattened."""
    return torch.nn.functional.avg_pool2d(images, 4).flatten(1)


@pytest.fixture(scope="module")
def forest():
    return IsolationForest(random_state=0).fit(NORMAL.flatten(1).numpy())


def test_scikit_learn_and_pyod_detectors_score_anomalies_higher(forest):
    knn = KNN(n_neighbors=5).fit(pooled(NORMAL).numpy())
    for detector in (VectorDetector(forest), VectorDetector(knn, features=pooled)):
        normal, anomalous = detector(NORMAL[:32]), detector(ANOMALIES)
        assert isinstance(normal, np.ndarray) and normal.shape == (32,)
        assert anomalous.min() > np.median(normal)
    # PyOD's decision_function is anomalous-high as it is; scikit-learn's are negated.
    np.testing.assert_allclose(
        VectorDetector(knn, features=pooled)(ANOMALIES),
        knn.decision_function(pooled(ANOMALIES).numpy()),
    )
    np.testing.assert_allclose(
        VectorDetector(forest)(ANOMALIES), -forest.score_samples(ANOMALIES.flatten(1).numpy())
    )
    with pytest.raises(TypeError, match="no decision_function or score_samples"):
        VectorDetector(object())


def test_as_detector_takes_the_quantile_calibration_a_vector_detector_names(forest):
    with pytest.warns(CalibrationNotice, match="'quantile': the model names it"):
        with pytest.warns(NotDifferentiableWarning):
            phi = as_detector(VectorDetector(forest), normal_data=NORMAL)
    scores = phi(NORMAL)
    assert abs(float(scores.median()) - 0.05) < 0.01  # the normal median at 0.05
    assert abs(float((scores >= 0.5).float().mean()) - 0.05) < 0.02  # the 95% quantile at 0.5
    assert float((phi(ANOMALIES) > 0.5).float().mean()) > 0.9


def test_quantile_calibration_maps_the_median_and_the_95th_percentile():
    raw = torch.linspace(-3.0, 7.0, 1001, dtype=torch.float64)
    phi = AnomalyDetector(lambda x: x, "quantile").fit_statistics(raw)
    median, high = torch.quantile(raw, torch.tensor([0.5, 0.95], dtype=torch.float64))
    out = phi._phi_of(torch.stack([median, high]))
    torch.testing.assert_close(out, torch.tensor([0.05, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="same score"):
        AnomalyDetector(lambda x: x, "quantile").fit_statistics(torch.zeros(10))


def test_fit_explains_an_isolation_forest_on_pixels(forest, monkeypatch):
    monkeypatch.setattr(explainer_module, "FIRST_STEPS", 20)
    monkeypatch.setattr(trainer_module, "REFRESH_STEPS", 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        with pytest.warns(CalibrationNotice, match="distilled a differentiable surrogate"):
            explainer = CounterfactualAnomalyExplainer(config=TINY).fit(
                VectorDetector(forest), [NORMAL], steps=4, checkpoint_every=2, progress=False
            )
    assert explainer.forward_func.calibration == "quantile"
    assert explainer.fit_report_["surrogate"]["auroc_black_box"] is not None
    assert explainer.counterfactuals(ANOMALIES[:3]).shape == (3, 2, 1, 16, 16)
