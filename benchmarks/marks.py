"""Benchmark: how often do an MNIST cell's counterfactuals draw a mark?

A counterfactual can lower phi by adding a mark the detector accepts (a faint square in a
corner, a bar under the digit, a frame) instead of redrawing the anomaly as a normal digit.
For each explainer saved by ``paper_tables.py --explainers`` (one-vs-rest MNIST), this takes the
counterfactuals of all the cell's test anomalies and counts those with
``captum_cfx.metrics.added_marks``: ink off the normal training images' support (their per-pixel
99% quantile) and away from the input's own ink. Beside them, the oracle's own rates on what
draws no mark: the normal test images read on their own, and the ideal edit (a normal test digit
drawn at random in the anomaly's place) read against the anomaly. Writes
``benchmarks/results/marks.json`` and, per cell, a picture of the six anomalies whose
counterfactuals have the most mark mass (``marks_<cell>.png``).

    python benchmarks/marks.py EXPLAINER_DIR [EXPLAINER_DIR ...] [--seed 0] [--out FILE]

Each folder's name is ``paper_tables.cell_stem``'s, ``mnist_<detector>_digit<C>_seed<S>``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Dict, Tuple

import torch
from matplotlib.figure import Figure
from provenance import provenance, write_json

from captum_cfx import CounterfactualAnomalyExplainer
from captum_cfx.data import LabeledImages, load_mnist, one_vs_rest
from captum_cfx.metrics import added_marks, mark_mass, normal_support
from captum_cfx.visualization import counterfactual_grid

RESULTS = Path(__file__).parent / "results"
CELL = re.compile(r"mnist_(?P<detector>\w+)_digit(?P<digit>\d)_seed(?P<seed>\d+)")


def cell_marks(
    folder: Path, train: LabeledImages, test: LabeledImages, seed: int
) -> Tuple[Dict, Figure]:
    """The oracle's figures for the explainer saved in ``folder`` (its cell's ``train`` and
    ``test`` splits taken from the full MNIST ones), and the picture of the six anomalies whose
    counterfactuals have the most mark mass."""
    match = CELL.fullmatch(folder.name)
    if match is None:
        raise ValueError(f"{folder.name} is not a paper_tables MNIST cell (mnist_D_digitC_seedS)")
    digit = int(match["digit"])
    c_train, c_test = one_vs_rest(train, digit), one_vs_rest(test, digit)
    support = normal_support(c_train.normal().images)
    anomalies, normal = c_test.anomalous().images, c_test.normal().images
    explainer = CounterfactualAnomalyExplainer.load(folder)
    cfs = explainer.counterfactuals(anomalies, internal_batch_size=256)  # (N, K, C, H, W)
    k = cfs.shape[1]
    masses = torch.stack([mark_mass(cfs[:, c], anomalies, support) for c in range(k)], 1)
    marked = torch.stack([added_marks(cfs[:, c], anomalies, support) for c in range(k)], 1)
    drawn = torch.randint(
        len(normal), (len(anomalies),), generator=torch.Generator().manual_seed(seed)
    )
    shown = masses.amax(1).argsort(descending=True)[:6]
    row = {
        "detector": match["detector"],
        "normal_digit": digit,
        "explainer": str(folder),
        "n_anomalies": len(anomalies),
        "marks_by_concept": marked.float().mean(0).tolist(),
        "marks": float(marked.float().mean()),
        "mark_mass_median_by_concept": masses.median(0).values.tolist(),
        "marks_normal_test": float(
            added_marks(normal, torch.zeros_like(normal), support).float().mean()
        ),
        "marks_ideal_edit": float(added_marks(normal[drawn], anomalies, support).float().mean()),
        "shown": shown.tolist(),
    }
    return row, counterfactual_grid(anomalies[shown], cfs[shown])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("explainers", type=Path, nargs="+", help="folders saved by paper_tables")
    parser.add_argument("--seed", type=int, default=0, help="draws the ideal edits' digits")
    parser.add_argument("--out", type=Path, default=RESULTS / "marks.json")
    args = parser.parse_args()
    train, test = load_mnist(True), load_mnist(False)
    rows = []
    for folder in args.explainers:
        row, figure = cell_marks(folder, train, test, args.seed)
        picture = args.out.parent / f"marks_{folder.name}.png"
        picture.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(picture, dpi=80)
        row["figure"] = picture.name
        print(
            f"{folder}: marks {row['marks']:.3f} by concept "
            + " / ".join(f"{m:.3f}" for m in row["marks_by_concept"])
            + f"; normal test {row['marks_normal_test']:.3f}, ideal edit "
            f"{row['marks_ideal_edit']:.3f}",
            flush=True,
        )
        rows.append(row)
    write_json({**provenance(), "cells": rows}, args.out)


if __name__ == "__main__":
    main()
