"""Benchmark: the paper's Tables 1-2 on one-vs-rest CIFAR-10, per detector and normal class.

The cells of ``paper_tables_mnist.py`` (:func:`paper_tables_mnist.one_vs_rest_rows`) on
CIFAR-10, read by torchvision's ``CIFAR10`` from ``$CAPTUM_CFX_DATA/cifar-10-batches-py/``
(``captum_cfx.data.load_cifar10``; nothing is downloaded): for BCE-OE, HSC-OE and DSVDD, with
each chosen class in turn normal and the nine others anomalous, trains the detector (outlier
exposure: random coloured strokes, 32 px) and fits the explainer (K = 2) from scratch, then
measures normality AuROC, FIDN (in the feature space of a CNN trained on the ten CIFAR-10
classes), validity, proximity and concept accuracy on the test split. Writes one row per
detector, pooled over the classes; ``paper_tables.py --merge`` puts them into the table.

    CAPTUM_CFX_DATA=DIR python benchmarks/paper_tables_cifar.py --out FILE
        [--classes 0 1 ...] [--detectors bce hsc dsvdd] [--steps 1000] [--presets JSON]
        [--config JSON] [--detector-augment [shift]] [--patch-outliers]
        [--stroke-outliers] [--overlay-outliers [--overlay-levels LO HI]]
        [--reference-share S] [--quick] [--figures DIR] [--explainers DIR]

Every detector's cells use ``GeneratorConfig()`` (no preset was measured on CIFAR-10).
Without the files it stops at once with ``load_cifar10``'s message, which says where they go.
``--quick`` (class 0, 150-step fits, 5 detector epochs) checks the pipeline; it measures
nothing.
"""

from __future__ import annotations

import sys
from typing import Dict, List

from paper_tables_mnist import one_vs_rest_arguments, one_vs_rest_rows
from table_cells import run_cells
from torch import nn

from captum_cfx import GeneratorConfig
from captum_cfx.data import LabeledImages, load_cifar10, random_strokes
from captum_cfx.metrics import train_classifier


def cifar_features(train: LabeledImages, seed: int) -> nn.Module:
    """FIDN's domain features on CIFAR-10: a classifier of the ten classes trained on
    ``train``, less its last layer (images (N, 3, 32, 32) to features (N, D))."""
    return train_classifier(train.images, train.factors["class"], 10, seed=seed)[:-1]


def cifar_rows(args, configs: Dict[str, GeneratorConfig], stamp: Dict) -> List[Dict]:
    """One row per detector (``configs`` maps each to its configuration) on one-vs-rest
    CIFAR-10, over the normal classes ``args.classes``."""
    train, test = load_cifar10(True), load_cifar10(False)
    return one_vs_rest_rows(
        "cifar10",
        train,
        test,
        cifar_features(train, args.seed),
        "CNN trained on the CIFAR-10 training split (10 classes)",
        random_strokes(4000, size=32, channels=3, seed=args.seed + 1),
        None,
        args,
        configs,
        stamp,
    )


def main() -> None:
    args = one_vs_rest_arguments(__doc__.split("\n")[0], presets={})
    try:
        load_cifar10(False)  # before any training: say where the files go when they are not
    except FileNotFoundError as err:
        sys.exit(f"paper_tables_cifar.py: {err}")
    run_cells(args, cifar_rows)


if __name__ == "__main__":
    main()
