"""Benchmark: the paper's Tables 1-2 on Colored-MNIST, per detector, one seed per run.

Normal: colour c0 (cyan) plus the digit 1 in any colour. For BCE-OE, HSC-OE and DSVDD,
trains the detector as the demo does and fits the explainer (K = 2) from scratch, then
measures on the held-out test split (``table_cells.measure``): normality AuROC, FIDN (in the
feature space of a CNN trained on digit x colour), validity, proximity, concept accuracy, the
oracle disentanglement per concept (colour only, digit only, both, neither, other, patch) and
the fit's diagnostics (the training split's and the batches' normality AuROC, the detector's
own shift, what counterfactuals exactly like each normal mode would score). Writes one row
per detector; ``paper_tables.py --merge`` pools the seeds and puts them into the table.

    python benchmarks/paper_tables_colored.py --out FILE [--detectors bce hsc dsvdd]
        [--steps 1200] [--presets JSON] [--config JSON] [--detector-augment [shift]]
        [--seed S] [--quick] [--figures DIR] [--explainers DIR]

Each detector's cells use its ``captum_cfx.Preset`` (``COLORED_PRESETS``), the recipes these
cells measured; ``--presets '{}'`` fits them with ``GeneratorConfig()`` instead. ``--quick``
(150-step fits, 5 detector epochs) checks the pipeline; it measures nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Dict, List

from table_cells import (
    brief,
    cell_stem,
    detector_arguments,
    fit_arguments,
    measure,
    run_cells,
    training_diagnostics,
)
from table_merge import SUMMARISED
from torch import Tensor, nn

from captum_cfx import GeneratorConfig
from captum_cfx.data import LabeledImages, colored_mnist
from captum_cfx.demo import colored_mnist_detector
from captum_cfx.metrics import (
    colored_mnist_factors,
    disentanglement,
    normality_auroc,
    train_classifier,
    train_digit_oracle,
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


def colored_features(train: LabeledImages, seed: int) -> nn.Module:
    """FIDN's domain features on Colored-MNIST: a digit x colour classifier trained on
    ``train``, less its last layer (images (N, 3, H, W) to features (N, D))."""
    palette = train.meta["palette"]
    joint = train.factors["digit"] * len(palette) + train.factors["color"]
    return train_classifier(train.images, joint, 10 * len(palette), seed=seed)[:-1]


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
            args.steps,
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
        print(f"colored_mnist {name}: " + brief(cell), json.dumps(tables), flush=True)
        rows.append(
            {
                "dataset": "colored_mnist",
                "detector": name,
                **{key: [cell[key], 0.0] for key in SUMMARISED},
                "n_runs": 1,
                "steps": args.steps,
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


#: The preset of each detector's Colored-MNIST cells.
COLORED_PRESETS = {
    "bce": "colored_mnist",
    "hsc": "colored_mnist_hsc",
    "dsvdd": "colored_mnist_dsvdd",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    detector_arguments(parser)
    fit_arguments(parser, steps=1200, presets=COLORED_PRESETS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.detector_epochs = 150, 5
    run_cells(args, colored_rows)


if __name__ == "__main__":
    main()
