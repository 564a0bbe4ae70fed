"""Benchmark: the paper's Tables 1-2 and more, per detector and data set.

For BCE-OE, HSC-OE and DSVDD, on MNIST one-vs-rest (each chosen digit in turn as the normal
class) and on Colored-MNIST (normal: colour c0 plus the digit 1 in any colour), trains the
detector and fits the explainer (K = 2) from scratch, then measures on the held-out test
split: normality AuROC (phi on normal test images vs on the counterfactuals of all test
anomalies; 50% is ideal), FIDN (in a domain feature space: a CNN trained on the training
split's labels, digit for MNIST and digit x colour for Colored-MNIST), validity (on the
anomalies the detector flags), proximity, concept accuracy (the jointly trained R, and an
independent post-hoc pair classifier on held-out pairs), on MNIST the digit oracle's reading
of the counterfactuals (made the normal digit, kept the input's, added ink), and on
Colored-MNIST the oracle disentanglement per concept.
Writes ``benchmarks/results/paper_tables.json``.

    python benchmarks/paper_tables.py [--classes 0 1 ...] [--detectors bce hsc dsvdd]
        [--datasets mnist colored_mnist] [--steps 1000] [--colored-steps 1200]
        [--colored-config JSON] [--detector-config JSON] [--detector-augment [shift]]
        [--patch-outliers] [--stroke-outliers] [--overlay-outliers [--overlay-levels LO HI]]
        [--quick] [--figures DIR]
        [--explainers DIR] [--out FILE]
    python benchmarks/paper_tables.py --merge A.json B.json --out FILE   # join partial runs
    python benchmarks/paper_tables.py --merge A.json B.json --into T.json --out FILE   # update T
    python benchmarks/paper_tables.py --table [--out FILE]              # the RESULTS.md table
    python benchmarks/paper_tables.py --per-class A.json B.json         # one line per class

``--merge`` pools rows of the same data set and detector (e.g. other normal classes);
with ``--into``, the pooled rows take the place of the table's rows of the same data set and
detector, and its other rows stay as they are.
``--quick`` (digit 0 only, 150-step fits: a check of the pipeline, not a measurement) ran in
6 min 8 s on 2 CPU cores (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from provenance import mean_std, pooled_mean_std, provenance, write_json
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from captum_cfx import CounterfactualAnomalyExplainer, GeneratorConfig, train_detector
from captum_cfx.data import (
    FAINT_OVERLAY_LEVELS,
    LabeledImages,
    added_strokes,
    colored_mnist,
    faint_overlays,
    load_mnist,
    one_vs_rest,
    pasted_patches,
    random_strokes,
)
from captum_cfx.demo import colored_mnist_detector
from captum_cfx.detectors import score_images
from captum_cfx.metrics import (
    auroc,
    colored_mnist_factors,
    concept_accuracy,
    digit_factors,
    disentanglement,
    fidn,
    normality_auroc,
    posthoc_concept_accuracy,
    proximity,
    train_classifier,
    train_digit_oracle,
    validity,
)
from captum_cfx.visualization import counterfactual_grid

RESULTS = Path(__file__).parent / "results"
DETECTORS = ("bce", "hsc", "dsvdd")
#: The paper's Tables 1-2 (mean +- std over normal classes): normality AuROC %, FIDN %.
PAPER = {
    ("mnist", "bce"): {"normality_auroc": "72.0 +- 4.0", "fidn": "43 +- 8.1"},
    ("mnist", "hsc"): {"normality_auroc": "80.8 +- 5.3", "fidn": "68 +- 14.6"},
    ("mnist", "dsvdd"): {"normality_auroc": "75.2 +- 9.2", "fidn": "100 +- 8.8"},
    ("colored_mnist", "bce"): {"normality_auroc": "55.6 +- 1.5", "fidn": "56 +- 12.4"},
    ("colored_mnist", "hsc"): {"normality_auroc": "55.8 +- 4.7", "fidn": "95 +- 30.5"},
    ("colored_mnist", "dsvdd"): {"normality_auroc": "61.5 +- 4.3", "fidn": "83 +- 8.7"},
}
#: GeneratorConfig overrides per detector, on both data sets. HSC-OE's and DSVDD's logits are
#: flat (normal 5-95% about -1.5 to 0.6, against BCE-OE's large logits), so at lambda_phi = 1
#: the reconstruction and cycle terms hold G at the identity (RESULTS.md, issue 4).
DETECTOR_OVERRIDES = {"hsc": {"lambda_phi": 10.0}, "dsvdd": {"lambda_phi": 10.0}}
SUMMARISED = (
    "normality_auroc",
    "fidn",
    "validity",
    "validity_all",
    "proximity",
    "concept_accuracy",
    "concept_accuracy_posthoc",
    "detector_auroc",
    "train_seconds",
)
#: The training batches' normality AuROC (``history_["normality_auroc"]``) is averaged over
#: this many last steps.
BATCH_AUROC_WINDOW = 250
#: The digit oracle's reading of the counterfactuals (all K) of the flagged test anomalies
#: on MNIST (``captum_cfx.metrics.digit_factors``); rows from before it was added lack them.
ORACLE = ("oracle_to_normal", "oracle_kept", "oracle_patch")
#: A Colored-MNIST run's diagnostics, which do not pool: a merged row keeps them run by run.
RUN_DIAGNOSTICS = (
    "normality_auroc_by_concept",
    "normality_auroc_batches_at_end",
    "normality_auroc_train",
    "normal_shift_auroc",
    "normality_auroc_average_batches_at_end",
    "normality_auroc_of_normal_modes",
    "floor_at_end",
    "floors_at_end",
)


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
    ``figure``, save there the counterfactuals of six flagged test anomalies; with
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
    if figure is not None:
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


def mnist_detector(name: str, train: LabeledImages, strokes: LabeledImages, args) -> nn.Module:
    """Detector ``name`` trained on ``train``'s normal images (one-vs-rest MNIST) with the
    grid's ``--detector-epochs``, ``--seed`` and ``--detector-augment``. Outlier exposure:
    the random ``strokes`` (M, 1, H, W), plus, with ``--patch-outliers``, 2,000 normal
    training images with pasted patches (as the Colored-MNIST detector has), and with
    ``--stroke-outliers`` 2,000 with pen strokes drawn over them, and with
    ``--overlay-outliers`` 2,000 under a faint rectangle or haze (peak brightness drawn
    from ``--overlay-levels``)."""
    extra = []
    if args.patch_outliers:
        extra.append(pasted_patches(train.normal().images, 2000, seed=args.seed + 2).images)
    if args.stroke_outliers:
        extra.append(added_strokes(train.normal().images, 2000, seed=args.seed + 3).images)
    if args.overlay_outliers:
        overlays = faint_overlays(
            train.normal().images, 2000, levels=tuple(args.overlay_levels), seed=args.seed + 4
        )
        extra.append(overlays.images)
    outliers: Dataset = TensorDataset(torch.cat([strokes.images, *extra])) if extra else strokes
    return train_detector(
        name,
        DataLoader(train.normal(), batch_size=128, shuffle=True),
        DataLoader(outliers, batch_size=128, shuffle=True),
        epochs=args.detector_epochs,
        seed=args.seed,
        augment=args.detector_augment,
        progress=False,
    )


def colored_detector(name: str, train: LabeledImages, args) -> nn.Module:
    """Detector ``name`` for Colored-MNIST as the demo trains it, with the grid's
    ``--detector-epochs``, ``--seed`` and ``--detector-augment``."""
    return colored_mnist_detector(
        name,
        train,
        epochs=args.detector_epochs,
        seed=args.seed,
        progress=False,
        augment=args.detector_augment,
    )


def cell_stem(detector: str, seed: int, digit: Optional[int] = None) -> str:
    """The file name (no suffix) of a cell's figure and saved explainer: the MNIST cell of
    normal ``digit``, else the Colored-MNIST cell; the seed keeps seeds in one folder apart."""
    cell = f"mnist_{detector}_digit{digit}" if digit is not None else f"colored_mnist_{detector}"
    return f"{cell}_seed{seed}"


def held_out_normals(
    data: LabeledImages, share: float, seed: int
) -> Tuple[LabeledImages, Optional[LabeledImages]]:
    """``data`` less a random ``share`` of its normal images, and those normal images (None
    when ``share`` is 0): the detector trains on the first, the explainer's targets come
    from the second."""
    if share == 0:
        return data, None
    normal_index = (data.targets == 0).nonzero()[:, 0]
    order = torch.randperm(len(normal_index), generator=torch.Generator().manual_seed(seed))
    held = normal_index[order[: round(share * len(normal_index))]]
    kept = torch.ones(len(data), dtype=torch.bool)
    kept[held] = False
    return data.subset(kept), data.subset(held)


def mnist_rows(args, configs: Dict[str, GeneratorConfig], stamp: Dict) -> List[Dict]:
    """One row per detector (``configs`` maps each to its configuration), over the normal
    classes ``args.classes``; with ``args.reference_share``, that share of each class's
    normal training images is held out of the detector's training and sets the explainer's
    targets (:func:`held_out_normals`)."""
    train, test = load_mnist(True), load_mnist(False)
    features = mnist_features(train, args.seed)
    oracle = train_digit_oracle(train.images, train.factors["digit"], seed=args.seed)
    strokes = random_strokes(4000, channels=1, seed=args.seed + 1)
    rows = []
    for name in args.detectors:
        cells = []
        for digit in args.classes:
            c_train, c_test = one_vs_rest(train, digit), one_vs_rest(test, digit)
            detector_train, reference = held_out_normals(c_train, args.reference_share, args.seed)
            start = time.perf_counter()
            detector = mnist_detector(name, detector_train, strokes, args)
            detector_seconds = time.perf_counter() - start
            cell = measure(
                detector,
                c_train,
                c_test,
                features,
                configs[name],
                args.steps,
                args.seed,
                args.figures and args.figures / f"{cell_stem(name, args.seed, digit)}.png",
                args.explainers and args.explainers / cell_stem(name, args.seed, digit),
                reference,
            )
            cell["train_seconds"] = detector_seconds + cell["fit_seconds"]
            cell.update(oracle_shares(cell, c_test.anomalous(), oracle, digit))
            print(f"mnist {name} digit {digit}: " + _brief(cell), flush=True)
            cells.append(cell)
        rows.append(
            {
                "dataset": "mnist",
                "detector": name,
                **{key: mean_std([c[key] for c in cells]) for key in SUMMARISED + ORACLE},
                "n_runs": len(cells),
                "normal_classes": list(args.classes),
                "oracle_classes": list(args.classes),
                "steps": args.steps,
                "detector_augment": args.detector_augment,
                "patch_outliers": args.patch_outliers,
                "stroke_outliers": args.stroke_outliers,
                "overlay_outliers": args.overlay_outliers,
                "overlay_levels": args.overlay_levels if args.overlay_outliers else None,
                "reference_share": args.reference_share,
                "fid_features": "digit CNN trained on the MNIST training split (10 classes)",
                "config": configs[name].to_dict(),
                **stamp,
            }
        )
    return rows


def oracle_shares(
    cell: Dict, anomalies: LabeledImages, oracle: nn.Module, normal_digit: int
) -> Dict[str, float]:
    """The digit oracle on the counterfactuals of the flagged anomalies (all K): the shares
    it reads as the normal digit and as the input's digit, and with ink added away from the
    input's strokes."""
    flagged = cell["flagged"]
    cfs = cell["cfs"][flagged]  # (N, K, C, H, W)
    k = cfs.shape[1]
    factors = digit_factors(
        cfs.flatten(0, 1),
        anomalies.images[flagged].repeat_interleave(k, 0),
        anomalies.factors["digit"][flagged].repeat_interleave(k, 0),
        oracle,
        normal_digit,
    )
    return {
        "oracle_to_normal": float(factors["digit_to_normal"].float().mean()),
        "oracle_kept": float(factors["digit_kept"].float().mean()),
        "oracle_patch": float(factors["patch"].float().mean()),
    }


def mnist_features(train: LabeledImages, seed: int) -> nn.Module:
    """FIDN's domain features on MNIST: a digit classifier trained on ``train``, less its last
    layer (images (N, 1, H, W) to features (N, D))."""
    return train_classifier(train.images, train.factors["digit"], 10, seed=seed)[:-1]


def colored_features(train: LabeledImages, seed: int) -> nn.Module:
    """FIDN's domain features on Colored-MNIST: a digit x colour classifier trained on
    ``train``, less its last layer (images (N, 3, H, W) to features (N, D))."""
    palette = train.meta["palette"]
    joint = train.factors["digit"] * len(palette) + train.factors["color"]
    return train_classifier(train.images, joint, 10 * len(palette), seed=seed)[:-1]


def colored_rows(args, configs: Dict[str, GeneratorConfig], stamp: Dict) -> List[Dict]:
    """One row per detector on Colored-MNIST (``configs`` maps each to its configuration),
    with the oracle disentanglement per concept."""
    train, test = colored_mnist(True), colored_mnist(False)
    palette = train.meta["palette"]
    features = colored_features(train, args.seed)
    oracle = train_digit_oracle(train.images, train.factors["digit"], seed=args.seed)
    rows = []
    for name in args.detectors:
        start = time.perf_counter()
        detector = colored_detector(name, train, args)
        detector_seconds = time.perf_counter() - start
        cell = measure(
            detector,
            train,
            test,
            features,
            configs[name],
            args.colored_steps,
            args.seed,
            args.figures and args.figures / f"{cell_stem(name, args.seed)}.png",
            args.explainers and args.explainers / cell_stem(name, args.seed),
        )
        cell["train_seconds"] = detector_seconds + cell["fit_seconds"]
        anomalies, flagged = test.anomalous(), cell["flagged"]
        tables = {}
        for k in range(cell["cfs"].shape[1]):
            factors = colored_mnist_factors(
                cell["cfs"][:, k],
                anomalies.images,
                anomalies.factors["digit"],
                anomalies.factors["color"],
                palette,
                oracle,
            )
            tables[f"concept_{k}"] = disentanglement({n: v[flagged] for n, v in factors.items()})
        print(f"colored_mnist {name}: " + _brief(cell), json.dumps(tables), flush=True)
        rows.append(
            {
                "dataset": "colored_mnist",
                "detector": name,
                **{key: [cell[key], 0.0] for key in SUMMARISED},
                "n_runs": 1,
                "steps": args.colored_steps,
                "detector_augment": args.detector_augment,
                "fid_features": "CNN trained on the Colored-MNIST training split's digit x colour "
                f"({10 * len(palette)} classes)",
                "disentanglement": tables,
                "disentanglement_on": "the test anomalies the detector flags (phi >= 0.5)",
                "normality_auroc_by_concept": cell["normality_auroc_by_concept"],
                **training_diagnostics(
                    cell["explainer"], detector, train, cell["test_scores"][test.targets == 0]
                ),
                # What counterfactuals exactly like each normal mode would score: the
                # data set's own reference for normality AuROC, beside the ideal 50%.
                "normality_auroc_of_normal_modes": normal_mode_aurocs(cell["test_scores"], test),
                # x_bar's target at alpha = 0 when training stopped (it moves with
                # floor_feedback)
                "floor_at_end": cell["explainer"].history_["floor"][-1],
                "config": configs[name].to_dict(),
                **stamp,
            }
        )
    return rows


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
    steps without a value."""
    window = [value for value in values[-BATCH_AUROC_WINDOW:] if value is not None]
    return sum(window) / len(window)


def normal_mode_aurocs(scores: Tensor, test: LabeledImages) -> Dict[str, float]:
    """The normality AuROC that counterfactuals exactly like the normal test images of one
    mode would get, from phi's ``scores`` (N,) on ``test``'s images (Colored-MNIST, normal:
    colour c0 or the digit 1): the c0 images of other digits, what concept 0's recolourings
    aim at; the 1s of other colours, concept 1's aim; and the two in equal shares, as the
    K = 2 counterfactuals of every anomaly are."""
    digit, color, normal = test.factors["digit"], test.factors["color"], test.targets == 0
    recoloured = scores[normal & (color == 0) & (digit != 1)]
    redrawn = scores[normal & (digit == 1) & (color != 0)]
    modes = {
        "c0_other_digits": normality_auroc(scores[normal], recoloured),
        "ones_other_colours": normality_auroc(scores[normal], redrawn),
    }
    modes["equal_shares"] = (modes["c0_other_digits"] + modes["ones_other_colours"]) / 2
    return modes


def per_detector(config: GeneratorConfig, args) -> Dict[str, GeneratorConfig]:
    """``config`` with ``args.detector_config``'s overrides, per detector in ``args.detectors``
    (built before any training, so a bad override fails at once)."""
    return {name: replace(config, **args.detector_config.get(name, {})) for name in args.detectors}


def merge_rows(rows: List[Dict]) -> List[Dict]:
    """Join rows of the same data set and detector (other normal classes or seeds, same
    steps and configuration) into one, pooling their mean +- std (and Colored-MNIST's oracle
    tables: :func:`_pooled_disentanglement`; its :data:`RUN_DIAGNOSTICS` run by run in
    ``diagnostics_runs``); others pass through."""
    groups: Dict[tuple, List[Dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["detector"]), []).append(row)
    merged = []
    for (dataset, detector), group in groups.items():
        first = group[0]
        if len(group) == 1:
            merged.append(first)
            continue
        for row in group[1:]:
            if _setting(row) != _setting(first):
                raise ValueError(
                    f"cannot pool {dataset} {detector} rows fitted with different steps, "
                    "configurations or detector training; re-run them alike, or merge them "
                    "into separate files."
                )
        merged.append(
            {
                **{key: value for key, value in first.items() if key not in RUN_DIAGNOSTICS},
                **{
                    key: pooled_mean_std([(r[key], r["n_runs"]) for r in group])
                    for key in SUMMARISED
                },
                **_pooled_oracle(group),
                **_pooled_disentanglement(group),
                **_diagnostics_by_run(group),
                "n_runs": sum(r["n_runs"] for r in group),
                **(
                    {"normal_classes": [c for r in group for c in r["normal_classes"]]}
                    if "normal_classes" in first
                    else {}
                ),
                "command": " ; ".join(r["command"] for r in group),
                "date": max(r["date"] for r in group),
                "machine": " ; ".join(dict.fromkeys(r["machine"] for r in group)),
            }
        )
    return merged


def replace_rows(table: List[Dict], rows: List[Dict]) -> List[Dict]:
    """``table`` with each row replaced by the row of ``rows`` of the same data set and
    detector; rows of ``rows`` that replace none are appended."""
    new = {(r["dataset"], r["detector"]): r for r in rows}
    kept = [new.pop((r["dataset"], r["detector"]), r) for r in table]
    return kept + list(new.values())


def _pooled_oracle(group: List[Dict]) -> Dict:
    """The :data:`ORACLE` shares pooled over the rows of ``group`` that have them."""
    measured = [r for r in group if "oracle_classes" in r]
    if not measured:
        return {}
    return {
        **{key: pooled_mean_std([(r[key], r["n_runs"]) for r in measured]) for key in ORACLE},
        "oracle_classes": [c for r in measured for c in r["oracle_classes"]],
    }


def _pooled_disentanglement(group: List[Dict]) -> Dict:
    """Colored-MNIST's oracle tables pooled over the runs (seeds) of ``group``: the mean
    share per concept and outcome, and every run's table in ``disentanglement_runs``."""
    if "disentanglement" not in group[0]:
        return {}
    runs = [t for r in group for t in r.get("disentanglement_runs", [r["disentanglement"]])]
    mean = {
        concept: {key: statistics.mean(run[concept][key] for run in runs) for key in table}
        for concept, table in runs[0].items()
    }
    return {"disentanglement": mean, "disentanglement_runs": runs}


def _diagnostics_by_run(group: List[Dict]) -> Dict:
    """The :data:`RUN_DIAGNOSTICS` of each run (seed) of ``group``, in order, as
    ``diagnostics_runs``; nothing for rows without them (MNIST's)."""
    runs = [
        run
        for r in group
        for run in r.get("diagnostics_runs", [{k: r[k] for k in RUN_DIAGNOSTICS if k in r}])
    ]
    return {"diagnostics_runs": runs} if any(runs) else {}


def _setting(row: Dict) -> tuple:
    """What must agree for rows to be pooled (rows from before ``--detector-augment``,
    ``--patch-outliers``, ``--stroke-outliers``, ``--overlay-outliers`` and
    ``--reference-share`` were trained without them; configuration fields added since a row
    was written take their defaults)."""
    return (
        row["steps"],
        GeneratorConfig.from_dict(row["config"]),
        row.get("detector_augment", False),
        row.get("patch_outliers", False),
        row.get("stroke_outliers", False),
        row.get("overlay_outliers", False),
        tuple(row.get("overlay_levels") or FAINT_OVERLAY_LEVELS)
        if row.get("overlay_outliers")
        else None,
        row.get("reference_share", 0.0),
    )


def _brief(cell: Dict) -> str:
    return ", ".join(
        f"{key} {cell[key]:.3f}"
        for key in ("normality_auroc", "fidn", "validity", "concept_accuracy_posthoc", *ORACLE)
        if key in cell
    )


def _cell(values: List[float], percent: bool = True) -> str:
    scale = 100 if percent else 1
    return f"{scale * values[0]:.1f} +- {scale * values[1]:.1f}"


def markdown_table(rows: List[Dict]) -> str:
    """The RESULTS.md tables: the paper's metrics side by side, then the oracle tables."""
    lines = [
        "| data set | detector | runs | normality AuROC (paper) | FIDN (paper) | validity "
        "| proximity | concept acc. R / post-hoc | detector AuROC | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paper = PAPER[(r["dataset"], r["detector"])]
        lines.append(
            f"| {r['dataset']} | {r['detector']} | {r['n_runs']} "
            f"| {_cell(r['normality_auroc'])} ({paper['normality_auroc']}) "
            f"| {r['fidn'][0]:.0f} +- {r['fidn'][1]:.0f} ({paper['fidn']}) "
            f"| {_cell(r['validity'])} | {r['proximity'][0]:.3f} "
            f"| {100 * r['concept_accuracy'][0]:.0f} "
            f"/ {100 * r['concept_accuracy_posthoc'][0]:.0f} "
            f"| {_cell(r['detector_auroc'])} | {r['train_seconds'][0]:.0f} |"
        )
    oracle = [r for r in rows if "disentanglement" in r]
    if oracle:
        keys = ("color_only", "digit_only", "both", "neither", "other", "patch")
        lines += [
            "",
            "| detector | concept | " + " | ".join(keys) + " |",
            "|---|---|" + "---|" * len(keys),
        ]
        for r in oracle:
            for concept, table in r["disentanglement"].items():
                cells = " | ".join(f"{100 * table[k]:.1f}" for k in keys)
                lines.append(f"| {r['detector']} | {concept.split('_')[1]} | {cells} |")
    read = [r for r in rows if "oracle_classes" in r]
    if read:
        lines += [
            "",
            "| data set | detector | normal classes | made the normal digit | kept the input's "
            "digit | patch |",
            "|---|---|---|---|---|---|",
        ]
        for r in read:
            cells = " | ".join(_cell(r[key]) for key in ORACLE)
            classes = " ".join(str(c) for c in r["oracle_classes"])
            lines.append(f"| {r['dataset']} | {r['detector']} | {classes} | {cells} |")
    return "\n".join(lines)


def per_class_table(rows: List[Dict]) -> str:
    """The RESULTS.md per-class table of single-class MNIST rows: normality AuROC / validity,
    then made the normal digit / added ink where the oracle ran (%)."""
    cells = {
        (r["normal_classes"][0], r["detector"]): r
        for r in rows
        if r["dataset"] == "mnist" and len(r["normal_classes"]) == 1
    }
    lines = ["| normal digit | BCE-OE | HSC-OE | DSVDD |", "|---|---|---|---|"]
    for digit in sorted({digit for digit, _ in cells}):
        shown = []
        for name in ("bce", "hsc", "dsvdd"):
            r = cells.get((digit, name))
            keys = ("normality_auroc", "validity", "oracle_to_normal", "oracle_patch")
            values = [] if r is None else [100 * r[key][0] for key in keys if key in r]
            formats = ("{:.1f}", "{:.1f}", "{:.1f}", "{:.0f}")
            shown.append(" / ".join(f.format(v) for f, v in zip(formats, values)) or "-")
        lines.append(f"| {digit} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def grid_arguments(parser: argparse.ArgumentParser, classes: List[int]) -> None:
    """The options of the detector x data set grid: ``--classes`` (MNIST normal classes,
    default ``classes``), ``--detectors``, ``--datasets``, ``--detector-epochs``,
    ``--detector-augment``, ``--patch-outliers``, ``--seed``."""
    parser.add_argument("--classes", type=int, nargs="+", default=classes)
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["mnist", "colored_mnist"],
        choices=["mnist", "colored_mnist"],
    )
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
    parser.add_argument("--seed", type=int, default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    grid_arguments(parser, classes=[0, 8])
    parser.add_argument("--steps", type=int, default=1000, help="explainer steps per MNIST cell")
    parser.add_argument("--colored-steps", type=int, default=1200)
    parser.add_argument("--config", type=json.loads, default={}, help="MNIST GeneratorConfig")
    parser.add_argument(
        "--colored-config",
        type=json.loads,
        default=None,
        help="Colored-MNIST GeneratorConfig (default: GeneratorConfig())",
    )
    parser.add_argument(
        "--detector-config",
        type=json.loads,
        default=DETECTOR_OVERRIDES,
        help="JSON {detector: GeneratorConfig overrides}, on top of both configs",
    )
    parser.add_argument(
        "--reference-share",
        type=float,
        default=0.0,
        help="MNIST: hold this share of the normal training images out of the detector's "
        "training; they set the explainer's targets (fit's reference_loader)",
    )
    parser.add_argument("--quick", action="store_true", help="digit 0, short fits")
    parser.add_argument("--figures", type=Path, help="save each cell's counterfactuals here")
    parser.add_argument("--explainers", type=Path, help="save each cell's fitted explainer here")
    parser.add_argument("--out", type=Path, default=RESULTS / "paper_tables.json")
    parser.add_argument("--merge", type=Path, nargs="+", help="join these partial runs into --out")
    parser.add_argument(
        "--into", type=Path, help="with --merge: the table whose rows the merged rows replace"
    )
    parser.add_argument("--table", action="store_true", help="print the tables of --out and stop")
    parser.add_argument(
        "--per-class", type=Path, nargs="+", help="print the per-class table of these files"
    )
    args = parser.parse_args()
    if args.into and not args.merge:
        parser.error("--into replaces a table's rows with --merge's; give --merge too.")
    if args.table:
        print(markdown_table(json.loads(args.out.read_text())))
        return
    if args.per_class:
        print(
            per_class_table(
                [row for path in args.per_class for row in json.loads(path.read_text())]
            )
        )
        return
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)  # before the fits, not after them
    if args.merge:
        rows = merge_rows([row for path in args.merge for row in json.loads(path.read_text())])
        if args.into:
            rows = replace_rows(json.loads(args.into.read_text()), rows)
    else:
        if args.quick:
            args.classes, args.steps, args.colored_steps, args.detector_epochs = [0], 150, 150, 5
        stamp = provenance()
        colored_config = GeneratorConfig.from_dict(args.colored_config or {})
        rows = []
        if "mnist" in args.datasets:
            mnist_configs = per_detector(GeneratorConfig.from_dict(args.config), args)
            rows += mnist_rows(args, mnist_configs, stamp)
        if "colored_mnist" in args.datasets:
            rows += colored_rows(args, per_detector(colored_config, args), stamp)
    write_json(rows, args.out)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
