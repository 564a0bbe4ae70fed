"""Benchmark: the paper's Tables 1-2 on one-vs-rest MNIST, per detector and normal digit.

For BCE-OE, HSC-OE and DSVDD, with each chosen digit in turn as the normal class, trains the
detector and fits the explainer (K = 2) from scratch, then measures on the held-out test
split (``table_cells.measure``): normality AuROC (phi on normal test images vs on the
counterfactuals of all test anomalies; 50% is ideal), FIDN (in a digit CNN's feature space),
validity (on the anomalies the detector flags), proximity, concept accuracy (the jointly
trained R, and an independent post-hoc pair classifier on held-out pairs) and the digit
oracle's reading of the counterfactuals (made the normal digit, kept the input's, added ink).
Writes one row per detector, pooled over the digits; ``paper_tables.py --merge`` joins rows
of other digits and puts them into the table. ``paper_tables_cifar.py`` runs the same
one-vs-rest cells (:func:`one_vs_rest_rows`) on CIFAR-10.

    python benchmarks/paper_tables_mnist.py --out FILE [--classes 0 1 ...]
        [--detectors bce hsc dsvdd] [--steps 1000] [--presets JSON] [--config JSON]
        [--detector-augment [shift]] [--patch-outliers] [--stroke-outliers]
        [--overlay-outliers [--overlay-levels LO HI]] [--reference-share S] [--quick]
        [--figures DIR] [--explainers DIR]

HSC-OE's and Deep SVDD's cells use ``captum_cfx.Preset.MNIST_FLAT_DETECTOR`` (``MNIST_PRESETS``),
BCE-OE's ``GeneratorConfig()``; ``--presets '{}'`` fits all with the default. ``--quick``
(digit 0, 150-step fits, 5 detector epochs) checks the pipeline; it measures nothing.
"""

from __future__ import annotations

import argparse
import time
from typing import Dict, List, Optional, Tuple

import torch
from provenance import mean_std
from table_cells import (
    brief,
    cell_stem,
    detector_arguments,
    fit_arguments,
    measure,
    mnist_arguments,
    run_cells,
)
from table_merge import ORACLE, SUMMARISED
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from captum_cfx import GeneratorConfig, train_detector
from captum_cfx.data import (
    LabeledImages,
    added_strokes,
    faint_overlays,
    load_mnist,
    one_vs_rest,
    pasted_patches,
    random_strokes,
)
from captum_cfx.metrics import digit_factors, train_classifier, train_digit_oracle


def mnist_detector(name: str, train: LabeledImages, strokes: LabeledImages, args) -> nn.Module:
    """Detector ``name`` trained on ``train``'s normal images (one-vs-rest MNIST or CIFAR-10)
    with the grid's ``--detector-epochs``, ``--seed`` and ``--detector-augment``. Outlier
    exposure: the random ``strokes`` (M, C, H, W), plus, with ``--patch-outliers``, 2,000 normal
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


def mnist_features(train: LabeledImages, seed: int) -> nn.Module:
    """FIDN's domain features on MNIST: a digit classifier trained on ``train``, less its last
    layer (images (N, 1, H, W) to features (N, D))."""
    return train_classifier(train.images, train.factors["digit"], 10, seed=seed)[:-1]


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


def mnist_rows(args, configs: Dict[str, GeneratorConfig], stamp: Dict) -> List[Dict]:
    """One row per detector (``configs`` maps each to its configuration) on one-vs-rest MNIST,
    over the normal digits ``args.classes``, with the digit oracle's shares."""
    train, test = load_mnist(True), load_mnist(False)
    return one_vs_rest_rows(
        "mnist",
        train,
        test,
        mnist_features(train, args.seed),
        "digit CNN trained on the MNIST training split (10 classes)",
        random_strokes(4000, channels=1, seed=args.seed + 1),
        train_digit_oracle(train.images, train.factors["digit"], seed=args.seed),
        args,
        configs,
        stamp,
    )


def one_vs_rest_rows(
    dataset: str,
    train: LabeledImages,
    test: LabeledImages,
    features: nn.Module,
    features_named: str,
    strokes: LabeledImages,
    oracle: Optional[nn.Module],
    args,
    configs: Dict[str, GeneratorConfig],
    stamp: Dict,
) -> List[Dict]:
    """One row per detector (``configs`` maps each to its configuration) on ``dataset``
    (``"mnist"`` or ``"cifar10"``) one-vs-rest, over the normal classes ``args.classes``:
    ``train`` and ``test`` hold the ten classes as targets, ``features`` (named in words by
    ``features_named``) are FIDN's, the detectors' outlier exposure starts from ``strokes``,
    and the digit ``oracle`` (MNIST's; None elsewhere) reads the counterfactuals. With
    ``args.reference_share``, that share of each class's normal training images is held out
    of the detector's training and sets the explainer's targets (:func:`held_out_normals`)."""
    rows = []
    for name in args.detectors:
        cells = []
        for normal_class in args.classes:
            c_train = one_vs_rest(train, normal_class)
            c_test = one_vs_rest(test, normal_class)
            detector_train, reference = held_out_normals(c_train, args.reference_share, args.seed)
            start = time.perf_counter()
            detector = mnist_detector(name, detector_train, strokes, args)
            detector_seconds = time.perf_counter() - start
            stem = cell_stem(name, args.seed, normal_class, dataset)
            cell = measure(
                detector,
                c_train,
                c_test,
                features,
                configs[name],
                args.steps,
                args.seed,
                args.figures and args.figures / f"{stem}.png",
                args.explainers and args.explainers / stem,
                reference,
            )
            cell["train_seconds"] = detector_seconds + cell["fit_seconds"]
            if oracle is not None:
                cell.update(oracle_shares(cell, c_test.anomalous(), oracle, normal_class))
            print(f"{dataset} {name} class {normal_class}: " + brief(cell), flush=True)
            cells.append(cell)
        measured = SUMMARISED + (ORACLE if oracle is not None else ())
        rows.append(
            {
                "dataset": dataset,
                "detector": name,
                **{key: mean_std([c[key] for c in cells]) for key in measured},
                "n_runs": len(cells),
                "normal_classes": list(args.classes),
                **({"oracle_classes": list(args.classes)} if oracle is not None else {}),
                "steps": args.steps,
                "detector_augment": args.detector_augment,
                "patch_outliers": args.patch_outliers,
                "stroke_outliers": args.stroke_outliers,
                "overlay_outliers": args.overlay_outliers,
                "overlay_levels": args.overlay_levels if args.overlay_outliers else None,
                "reference_share": args.reference_share,
                "fid_features": features_named,
                "config": configs[name].to_dict(),
                **stamp,
            }
        )
    return rows


#: The preset of each detector's MNIST cells (BCE-OE's: the default ``GeneratorConfig()``).
MNIST_PRESETS = {"hsc": "mnist_flat_detector", "dsvdd": "mnist_flat_detector"}


def one_vs_rest_arguments(description: str, presets: Dict[str, str]) -> argparse.Namespace:
    """The command line of a one-vs-rest cell script (this one, ``paper_tables_cifar.py``):
    the detectors' options, ``--classes`` (default 0 and 8) with the outlier exposure's,
    the fits' (``--steps`` default 1000, ``--presets`` default ``presets``) and
    ``--reference-share``; ``--quick`` sets class 0, 150-step fits and 5 detector epochs."""
    parser = argparse.ArgumentParser(description=description)
    detector_arguments(parser)
    mnist_arguments(parser, classes=[0, 8])
    fit_arguments(parser, steps=1000, presets=presets)
    parser.add_argument(
        "--reference-share",
        type=float,
        default=0.0,
        help="hold this share of the normal training images out of the detector's "
        "training; they set the explainer's targets (fit's reference_loader)",
    )
    args = parser.parse_args()
    if args.quick:
        args.classes, args.steps, args.detector_epochs = [0], 150, 5
    return args


def main() -> None:
    run_cells(one_vs_rest_arguments(__doc__.split("\n")[0], MNIST_PRESETS), mnist_rows)


if __name__ == "__main__":
    main()
