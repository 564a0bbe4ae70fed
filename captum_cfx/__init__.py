"""captum_cfx: counterfactual explanations for image anomaly detectors, as a Captum plugin."""

from importlib.metadata import PackageNotFoundError, version

from captum_cfx.detectors import AnomalyDetector, as_detector, train_detector

try:
    __version__ = version("captum-cfx")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["AnomalyDetector", "__version__", "as_detector", "train_detector"]
