"""Benchmark: how often do an MNIST cell's counterfactuals draw off the normal images' support?

A counterfactual can lower phi by adding a mark the detector accepts (a faint square in a
corner, a bar under the digit, a frame) instead of redrawing the anomaly as a normal digit.
For each explainer saved by ``paper_tables_mnist.py --explainers`` (one-vs-rest MNIST), this takes
counterfactuals of all the cell's test anomalies and counts those with
``captum_cfx.metrics.off_support_ink``: ink off the normal training images' support (their
per-pixel 99% quantile) and away from the input's own ink, a mark or a haze alike. Beside them,
the oracle's own rates on what draws neither: the normal test images read on their own, and the
ideal edit (a normal test digit drawn at random in the anomaly's place) read against the
anomaly. Writes ``benchmarks/results/off_support.json`` (or ``--out``) and, beside it, per cell, a
picture of the six anomalies whose counterfactuals have the most ink off the support
(``<out's stem>_<cell>.png``).

    python benchmarks/off_support.py EXPLAINER_DIR [EXPLAINER_DIR ...] [--seed 0] [--out FILE]

Each folder's name is ``table_cells.cell_stem``'s, ``mnist_<detector>_digit<C>_seed<S>``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Dict, Tuple

import torch
from matplotlib.figure import Figure
from oracle_edits import edited
from provenance import provenance, write_json

from captum_cfx import CounterfactualAnomalyExplainer
from captum_cfx.data import LabeledImages, load_mnist, one_vs_rest
from captum_cfx.metrics import (
    OFF_SUPPORT_MIN_MASS,
    normal_support,
    off_support_ink,
    off_support_mass,
)
from captum_cfx.visualization import counterfactual_grid

RESULTS = Path(__file__).parent / "results"
CELL = re.compile(r"mnist_(?P<detector>\w+)_digit(?P<digit>\d)_seed(?P<seed>\d+)")


def cell_off_support(
    folder: Path, train: LabeledImages, test: LabeledImages, seed: int
) -> Tuple[Dict, Figure]:
    """The oracle's figures for the explainer saved in ``folder`` (its cell's ``train`` and
    ``test`` splits taken from the full MNIST ones), and the picture of the six anomalies whose
    counterfactuals have the most ink off the support."""
    match = CELL.fullmatch(folder.name)
    if match is None:
        raise ValueError(f"{folder.name} is not a paper_tables MNIST cell (mnist_D_digitC_seedS)")
    digit = int(match["digit"])
    c_train, c_test = one_vs_rest(train, digit), one_vs_rest(test, digit)
    support = normal_support(c_train.normal().images)
    anomalies, normal = c_test.anomalous().images, c_test.normal().images
    ideal = edited(c_test, c_test.anomalous(), seed)["normal digit"]  # (N, 1, H, W)
    explainer = CounterfactualAnomalyExplainer.load(folder)
    cfs = explainer.counterfactuals(anomalies, internal_batch_size=256)  # (N, K, C, H, W)
    k = cfs.shape[1]
    masses = torch.stack([off_support_mass(cfs[:, c], anomalies, support) for c in range(k)], 1)
    off = masses >= OFF_SUPPORT_MIN_MASS
    shown = masses.amax(1).argsort(descending=True)[:6]
    row = {
        "detector": match["detector"],
        "normal_digit": digit,
        "explainer": str(folder),
        "n_anomalies": len(anomalies),
        "off_support_by_concept": off.float().mean(0).tolist(),
        "off_support": float(off.float().mean()),
        "off_support_mass_median_by_concept": masses.median(0).values.tolist(),
        "off_support_normal_test": float(
            off_support_ink(normal, torch.zeros_like(normal), support).float().mean()
        ),
        "off_support_ideal_edit": float(off_support_ink(ideal, anomalies, support).float().mean()),
        "shown": shown.tolist(),
    }
    return row, counterfactual_grid(anomalies[shown], cfs[shown])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "explainers", type=Path, nargs="+", help="folders saved by paper_tables_mnist"
    )
    parser.add_argument("--seed", type=int, default=0, help="draws the ideal edits' digits")
    parser.add_argument("--out", type=Path, default=RESULTS / "off_support.json")
    args = parser.parse_args()
    train, test = load_mnist(True), load_mnist(False)
    rows = []
    for folder in args.explainers:
        row, figure = cell_off_support(folder, train, test, args.seed)
        picture = args.out.parent / f"{args.out.stem}_{folder.name}.png"
        picture.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(picture, dpi=80)
        row["figure"] = picture.name
        print(
            f"{folder}: off the support {row['off_support']:.3f} by concept "
            + " / ".join(f"{m:.3f}" for m in row["off_support_by_concept"])
            + f"; normal test {row['off_support_normal_test']:.3f}, ideal edit "
            f"{row['off_support_ideal_edit']:.3f}",
            flush=True,
        )
        rows.append(row)
    write_json({**provenance(), "cells": rows}, args.out)


if __name__ == "__main__":
    main()
