"""Data: offline MNIST, Colored-MNIST with its factors, procedural domains and traffic signs
with their factors, one-vs-rest splits, outlier exposure, CIFAR-10."""

from captum_cfx.data.cifar import load_cifar10
from captum_cfx.data.colored import DEFAULT_PALETTE, colored_mnist
from captum_cfx.data.dataset import LabeledImages, default_data_root
from captum_cfx.data.folder import load_image_folder
from captum_cfx.data.mnist import load_mnist
from captum_cfx.data.outliers import (
    FAINT_OVERLAY_LEVELS,
    added_strokes,
    faint_overlays,
    pasted_patches,
    random_strokes,
)
from captum_cfx.data.splits import one_vs_rest
from captum_cfx.data.synthetic import DOMAINS, synthetic_domain
from captum_cfx.data.traffic_signs import traffic_signs

__all__ = [
    "DEFAULT_PALETTE",
    "DOMAINS",
    "FAINT_OVERLAY_LEVELS",
    "LabeledImages",
    "added_strokes",
    "colored_mnist",
    "default_data_root",
    "faint_overlays",
    "load_cifar10",
    "load_image_folder",
    "load_mnist",
    "one_vs_rest",
    "pasted_patches",
    "random_strokes",
    "synthetic_domain",
    "traffic_signs",
]
