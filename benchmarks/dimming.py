"""Benchmark: does dimming an image make it normal to the detector?

Deep SVDD's counterfactuals on Colored-MNIST dim or erase the digits (RESULTS.md, runs 8 and
18). This measures whether that edit is one the detector itself rewards: for each detector,
trained as the paper tables' cells train it, the test images are multiplied by a brightness
factor ``a`` (1: as they are, 0: black) and scored. Reported per factor: the share of the
flagged test anomalies (phi >= 0.5 as they are) that phi calls normal once dimmed, the share
of normal test images it flags once dimmed, and phi's median logit on each. Writes
``benchmarks/results/dimming.json``.

    python benchmarks/dimming.py [--datasets colored_mnist mnist] [--classes 0 8 1]
        [--detectors bce hsc dsvdd] [--seed 0] [--out FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict

import torch
from provenance import provenance, write_json
from robust_views import detector_rows, grid_table
from table_cells import grid_arguments
from torch import Tensor, nn

from captum_cfx import as_detector
from captum_cfx.data import LabeledImages

RESULTS = Path(__file__).parent / "results"
FACTORS = (1.0, 0.75, 0.5, 0.25, 0.1, 0.0)


def measure(detector: nn.Module, test: LabeledImages) -> Dict[str, Dict[str, float]]:
    """Per brightness factor (as a string key): ``anomalies_made_normal``, the share of the
    flagged anomalies of ``test`` with phi < 0.5 once dimmed; ``normal_flagged``, the share of
    its normal images with phi >= 0.5 once dimmed; and the median logits of both."""
    phi = as_detector(detector)
    with torch.no_grad():
        anomalies = test.anomalous().images
        flagged = anomalies[phi.logit(anomalies) >= 0]
        normal = test.normal().images
        out: Dict[str, Dict[str, float]] = {}
        for a in FACTORS:
            logit_a: Tensor = phi.logit(a * flagged)
            logit_n: Tensor = phi.logit(a * normal)
            out[str(a)] = {
                "anomalies_made_normal": float((logit_a < 0).float().mean()),
                "normal_flagged": float((logit_n >= 0).float().mean()),
                "median_logit_anomalies": float(logit_a.median()),
                "median_logit_normal": float(logit_n.median()),
            }
    return out


def dimmed_cell(row: Dict, factor: str) -> str:
    """Anomalies made normal / normal images flagged (%) at brightness ``factor``."""
    made_normal, flagged = row[factor]["anomalies_made_normal"], row[factor]["normal_flagged"]
    return f"{100 * made_normal:.0f} / {100 * flagged:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    grid_arguments(parser, classes=[0, 8, 1])
    parser.set_defaults(datasets=["colored_mnist"])
    parser.add_argument("--out", type=Path, default=RESULTS / "dimming.json")
    args = parser.parse_args()
    stamp = provenance()
    rows = [{**row, "seed": args.seed, **stamp} for row in detector_rows(args, measure)]
    write_json(rows, args.out)
    print(grid_table(rows, [str(a) for a in FACTORS], dimmed_cell))


if __name__ == "__main__":
    main()
