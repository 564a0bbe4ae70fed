"""captum_cfx: counterfactual explanations for image anomaly detectors, as a Captum plugin."""

from captum_cfx._version import __version__
from captum_cfx.detectors import AnomalyDetector, as_detector, train_detector
from captum_cfx.explainer import (
    CounterfactualAnomalyExplainer,
    ExplanationWarning,
    FitWarning,
    NotFittedError,
)
from captum_cfx.generative import GeneratorConfig, Preset
from captum_cfx.latent import LatentCounterfactualExplainer

__all__ = [
    "AnomalyDetector",
    "CounterfactualAnomalyExplainer",
    "ExplanationWarning",
    "FitWarning",
    "GeneratorConfig",
    "LatentCounterfactualExplainer",
    "NotFittedError",
    "Preset",
    "__version__",
    "as_detector",
    "train_detector",
]
