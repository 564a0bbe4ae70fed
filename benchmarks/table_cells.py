"""One cell of the paper tables: fit the explainer (K = 2) for a trained detector and measure
it on the held-out test split; and the options the cells' scripts share.

Used by ``paper_tables_mnist.py``, ``paper_tables_cifar.py`` and ``paper_tables_colored.py``
(one script per data set), and by the benchmarks that re-train a cell's detector as they do
(``robust_views.py``, ``oracle_edits.py``, ``dimming.py``, ``heatmaps_vs_counterfactuals.py``,
``normal_shift.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
from provenance import provenance, write_json
from table_merge import ORACLE
from table_print import markdown_table
from torch import Tensor, nn
from torch.utils.data import DataLoader

from captum_cfx import CounterfactualAnomalyExplainer, GeneratorConfig, Preset
from captum_cfx.data import FAINT_OVERLAY_LEVELS, LabeledImages
from captum_cfx.detectors import score_images
from captum_cfx.metrics import (
    auroc,
    concept_accuracy,
    fidn,
    normality_auroc,
    posthoc_concept_accuracy,
    proximity,
    validity,
)
from captum_cfx.visualization import counterfactual_grid

RESULTS = Path(__file__).parent / "results"
DETECTORS = ("bce", "hsc", "dsvdd")
#: The training batches' normality AuROC (``history_["normality_auroc"]``) is averaged over
#: this many last steps.
BATCH_AUROC_WINDOW = 250


def measure(
    detector: nn.Module,
    train: LabeledImages,
    test: LabeledImages,
    features: nn.Module,
    config: GeneratorConfig,
    steps: int,
    seed: int,
    figure: Optional[Path] = None,
    save_to: Optional[Path] = None,
    reference: Optional[LabeledImages] = None,
) -> Dict:
    """Fit the explainer for a trained detector and measure it on the test split; with
    ``figure``, save there the counterfactuals of six flagged test anomalies (none when the
    detector flags none); with
    ``save_to``, save the fitted explainer (weights and training history) in that folder;
    with ``reference``, normal images the detector was not trained on set L_phi's targets
    (``fit``'s ``reference_loader``)."""
    start = time.perf_counter()
    explainer = CounterfactualAnomalyExplainer(n_concepts=2, config=config)
    explainer.fit(
        detector,
        DataLoader(train.normal(), batch_size=256),
        outlier_loader=DataLoader(train.anomalous(), batch_size=256),
        reference_loader=None if reference is None else DataLoader(reference, batch_size=256),
        steps=steps,
        seed=seed,
        progress=False,
    )
    fit_seconds = time.perf_counter() - start
    if save_to is not None:
        explainer.save(save_to)
    anomalies, normal = test.anomalous(), test.normal()
    test_scores = score_images(detector, test.images)
    normal_scores, anomaly_scores = test_scores[test.targets == 0], test_scores[test.targets == 1]
    flagged = anomaly_scores >= 0.5
    cfs = explainer.counterfactuals(anomalies.images, internal_batch_size=256)  # (N, K, C, H, W)
    cf_scores = score_images(detector, cfs.flatten(0, 1)).view(len(anomalies), -1)
    if figure is not None and flagged.any():
        shown = flagged.nonzero()[:, 0]
        shown = shown[torch.linspace(0, len(shown) - 1, 6).long()]
        counterfactual_grid(
            anomalies.images[shown], cfs[shown], anomaly_scores[shown], cf_scores[shown]
        ).savefig(figure, dpi=80)
    return {
        "explainer": explainer,
        "cfs": cfs,
        "test_scores": test_scores,
        "flagged": flagged,
        "fit_seconds": fit_seconds,
        "detector_auroc": auroc(test.targets, test_scores),
        "normality_auroc": normality_auroc(normal_scores, cf_scores.flatten()),
        "normality_auroc_by_concept": [
            normality_auroc(normal_scores, cf_scores[:, k]) for k in range(cf_scores.shape[1])
        ],
        "fidn": fidn(cfs.flatten(0, 1), anomalies.images, normal.images, features),
        "validity": validity(cf_scores[flagged].flatten()),
        "validity_all": validity(cf_scores.flatten()),
        "proximity": proximity(cfs, anomalies.images[:, None].expand_as(cfs)),
        "concept_accuracy": concept_accuracy(explainer.concept_classifier_, anomalies.images, cfs),
        "concept_accuracy_posthoc": posthoc_concept_accuracy(anomalies.images, cfs, seed=seed),
    }


def training_diagnostics(
    explainer: CounterfactualAnomalyExplainer,
    detector: nn.Module,
    train: LabeledImages,
    test_normal_scores: Tensor,
) -> Dict[str, float]:
    """Where the normality AuROC moves between training and test data for an ``explainer``
    fitted against ``detector``: the training batches' at the end of the fit
    (``history_["normality_auroc"]``; with ``ema_decay`` also the averaged G's, the one kept),
    the training split's (its anomalies' counterfactuals against its normal images), and the
    detector's own shift (its normal test images' scores ``test_normal_scores`` against its
    training normal images')."""
    train_normal_scores = score_images(detector, train.normal().images)
    train_cfs = explainer.counterfactuals(train.anomalous().images, internal_batch_size=256)
    train_cf_scores = score_images(detector, train_cfs.flatten(0, 1))
    diagnostics = {
        "normality_auroc_batches_at_end": _mean_at_end(explainer.history_["normality_auroc"]),
        "normality_auroc_train": normality_auroc(train_normal_scores, train_cf_scores),
        "normal_shift_auroc": normality_auroc(train_normal_scores, test_normal_scores),
    }
    if "normality_auroc_average" in explainer.history_:  # ema_decay: the G kept
        diagnostics["normality_auroc_average_batches_at_end"] = _mean_at_end(
            explainer.history_["normality_auroc_average"]
        )
    return diagnostics


def _mean_at_end(values: List[Optional[float]]) -> float:
    """The mean of a per-step history over its last ``BATCH_AUROC_WINDOW`` steps, skipping
    steps without a value (NaN when none has one, as in a fit of a few steps)."""
    window = [value for value in values[-BATCH_AUROC_WINDOW:] if value is not None]
    return sum(window) / len(window) if window else float("nan")


def cell_stem(
    detector: str, seed: int, normal_class: Optional[int] = None, dataset: str = "mnist"
) -> str:
    """The file name (no suffix) of a cell's figure and saved explainer: the one-vs-rest cell
    of ``dataset`` (``"mnist"``, ``"cifar10"``) with ``normal_class`` normal, else the
    Colored-MNIST cell; the seed keeps seeds in one folder apart."""
    if normal_class is None:
        cell = f"colored_mnist_{detector}"
    else:
        cell = f"{dataset}_{detector}_{'digit' if dataset == 'mnist' else 'class'}{normal_class}"
    return f"{cell}_seed{seed}"


def per_detector(args) -> Dict[str, GeneratorConfig]:
    """Per detector in ``args.detectors``, its preset's configuration (``args.presets``; the
    default ``GeneratorConfig()`` for a detector without one) with ``args.config``'s fields on
    top (built before any training, so a bad name or field fails at once)."""
    configs = {}
    for name in args.detectors:
        preset = args.presets.get(name)
        base = GeneratorConfig() if preset is None else Preset.from_name(preset).config
        configs[name] = GeneratorConfig.from_dict({**base.to_dict(), **args.config})
    return configs


def brief(cell: Dict) -> str:
    """A cell's headline figures on one line, for the log."""
    return ", ".join(
        f"{key} {cell[key]:.3f}"
        for key in ("normality_auroc", "fidn", "validity", "concept_accuracy_posthoc", *ORACLE)
        if key in cell
    )


def detector_arguments(parser: argparse.ArgumentParser) -> None:
    """How a cell's detector is trained: ``--detectors``, ``--detector-epochs``,
    ``--detector-augment``, ``--seed``."""
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    parser.add_argument("--detector-epochs", type=int, default=30)
    parser.add_argument(
        "--detector-augment",
        nargs="?",
        const=True,
        default=False,
        choices=[True, "shift"],
        metavar="shift",
        help="train the detectors on robust views, or with 'shift' on their shift alone "
        "(train_detector's augment)",
    )
    parser.add_argument("--seed", type=int, default=0)


def mnist_arguments(parser: argparse.ArgumentParser, classes: List[int]) -> None:
    """One-vs-rest MNIST's options: ``--classes`` (the normal classes, default ``classes``)
    and what the detectors' outlier exposure adds to the random strokes."""
    parser.add_argument("--classes", type=int, nargs="+", default=classes)
    parser.add_argument(
        "--patch-outliers",
        action="store_true",
        help="MNIST: add normal images with pasted patches to the outlier exposure",
    )
    parser.add_argument(
        "--stroke-outliers",
        action="store_true",
        help="MNIST: add normal images with pen strokes drawn over them to the outlier exposure",
    )
    parser.add_argument(
        "--overlay-outliers",
        action="store_true",
        help="MNIST: add normal images under a faint rectangle or haze to the outlier exposure",
    )
    parser.add_argument(
        "--overlay-levels",
        type=float,
        nargs=2,
        default=list(FAINT_OVERLAY_LEVELS),
        metavar=("LOW", "HIGH"),
        help="with --overlay-outliers: the range of the overlays' peak brightness",
    )


def grid_arguments(parser: argparse.ArgumentParser, classes: List[int]) -> None:
    """The options of the detector x data set grid: ``--datasets`` with
    :func:`detector_arguments` and :func:`mnist_arguments`."""
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["mnist", "colored_mnist"],
        choices=["mnist", "colored_mnist"],
    )
    detector_arguments(parser)
    mnist_arguments(parser, classes)


def fit_arguments(parser: argparse.ArgumentParser, steps: int, presets: Dict[str, str]) -> None:
    """The explainer's options in a cell's script: ``--steps`` (default ``steps``),
    ``--presets`` (default ``presets``: {detector: ``captum_cfx.Preset`` name}), ``--config``,
    ``--quick``, ``--figures``, ``--explainers``, ``--out``."""
    parser.add_argument("--steps", type=int, default=steps, help="explainer steps per cell")
    parser.add_argument(
        "--config", type=json.loads, default={}, help="GeneratorConfig fields as JSON, on top"
    )
    parser.add_argument(
        "--presets",
        type=json.loads,
        default=presets,
        help="JSON {detector: captum_cfx.Preset name}; a detector not named gets "
        f"GeneratorConfig() (default: {json.dumps(presets)})",
    )
    parser.add_argument("--quick", action="store_true", help="one cell, short fits")
    parser.add_argument("--figures", type=Path, help="save each cell's counterfactuals here")
    parser.add_argument("--explainers", type=Path, help="save each cell's fitted explainer here")
    parser.add_argument("--out", type=Path, required=True, help="the rows' JSON")


def run_cells(args, rows: Callable[[Any, Dict[str, GeneratorConfig], Dict], List[Dict]]) -> None:
    """A cell script's run: make ``--figures``' folder (before the fits, not after them),
    build each detector's configuration, measure ``rows(args, configs, provenance)``, write
    them to ``--out`` and print them as RESULTS.md's table."""
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
    table = rows(args, per_detector(args), provenance())
    write_json(table, args.out)
    print(markdown_table(table))
