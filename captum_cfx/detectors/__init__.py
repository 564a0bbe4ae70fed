"""Detectors: the adapter that makes any detector a phi in [0, 1], and the paper's detectors."""

from captum_cfx.detectors.adapter import (
    AnomalyDetector,
    CalibrationNotice,
    NotDifferentiableWarning,
    as_detector,
    score_images,
)
from captum_cfx.detectors.paper import (
    DETECTORS,
    BCEDetector,
    DSVDDDetector,
    FCDDDetector,
    HSCDetector,
    PaperDetector,
)
from captum_cfx.detectors.training import train_detector
from captum_cfx.detectors.vectors import VectorDetector

__all__ = [
    "DETECTORS",
    "AnomalyDetector",
    "BCEDetector",
    "CalibrationNotice",
    "DSVDDDetector",
    "FCDDDetector",
    "HSCDetector",
    "NotDifferentiableWarning",
    "PaperDetector",
    "VectorDetector",
    "as_detector",
    "score_images",
    "train_detector",
]
