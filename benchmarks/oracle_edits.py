"""Benchmark: does the detector accept the single-factor edits an ideal explanation makes?

On Colored-MNIST an anomaly (a digit other than 1 in a colour other than c0) becomes normal
by either of two edits: its digit recoloured to c0, or a 1 drawn in its own colour. The
counterfactuals' validity is bounded by how often phi accepts those edits. For each detector,
trained as ``paper_tables.py`` trains it, this makes both edits exactly on the flagged test
anomalies (phi >= 0.5): "colour only" takes the anomaly's ink (its brightest channel) in c0,
"digit only" takes the ink of a test 1 drawn at random in the anomaly's colour. Reported per
edit: the share of those anomalies that phi calls normal once edited, per input colour too,
and phi's median logit; and the detector's test AuROC, to tell the detector apart from
another seed's. Writes ``benchmarks/results/oracle_edits.json``.

    python benchmarks/oracle_edits.py [--detectors bce hsc dsvdd] [--seed 0] [--out FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict

import torch
from paper_tables import grid_arguments
from provenance import provenance, write_json
from robust_views import detector_rows, grid_table
from torch import Tensor, nn

from captum_cfx import as_detector
from captum_cfx.data import LabeledImages
from captum_cfx.metrics import auroc

RESULTS = Path(__file__).parent / "results"
EDITS = ("colour only", "digit only")


def edited(test: LabeledImages, anomalies: LabeledImages, seed: int) -> Dict[str, Tensor]:
    """Each edit of :data:`EDITS` applied to ``anomalies`` (N, 3, H, W) of Colored-MNIST's
    ``test`` split, as images (N, 3, H, W)."""
    palette: Tensor = test.meta["palette"]  # (P, 3)
    ink = anomalies.images.amax(dim=1, keepdim=True)  # (N, 1, H, W)
    ones = test.subset(test.factors["digit"] == 1).images.amax(dim=1, keepdim=True)
    generator = torch.Generator().manual_seed(seed)
    drawn = ones[torch.randint(len(ones), (len(anomalies),), generator=generator)]
    return {
        "colour only": ink * palette[0][None, :, None, None],
        "digit only": drawn * palette[anomalies.factors["color"]][:, :, None, None],
    }


def measure(detector: nn.Module, test: LabeledImages, seed: int) -> Dict:
    """Per edit: ``made_normal`` (the share of the flagged anomalies of ``test`` with phi < 0.5
    once edited), ``made_normal_by_colour`` (the same per input colour name) and
    ``median_logit``; and ``detector_auroc`` on ``test``."""
    phi = as_detector(detector)
    names = test.meta["color_names"]
    with torch.no_grad():
        logit = phi.logit(test.images)
        anomalies = test.subset((test.targets == 1) & (logit >= 0))
        out: Dict = {"detector_auroc": auroc(test.targets, logit)}
        for name, images in edited(test, anomalies, seed).items():
            edit_logit = phi.logit(images)
            normal = edit_logit < 0
            colour = anomalies.factors["color"]
            out[name] = {
                "made_normal": float(normal.float().mean()),
                "made_normal_by_colour": {
                    names[c]: float(normal[colour == c].float().mean())
                    for c in colour.unique().tolist()
                },
                "median_logit": float(edit_logit.median()),
            }
    return out


def edit_cell(row: Dict, edit: str) -> str:
    """Flagged anomalies made normal by ``edit`` (%), overall and per input colour."""
    by_colour = row[edit]["made_normal_by_colour"]
    colours = ", ".join(f"{name} {100 * share:.0f}" for name, share in by_colour.items())
    return f"{100 * row[edit]['made_normal']:.1f} ({colours})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    grid_arguments(parser, classes=[])
    parser.set_defaults(datasets=["colored_mnist"])
    parser.add_argument("--out", type=Path, default=RESULTS / "oracle_edits.json")
    args = parser.parse_args()
    if args.datasets != ["colored_mnist"]:
        parser.error("the edits are Colored-MNIST's: pass --datasets colored_mnist")
    stamp = provenance()
    rows = detector_rows(args, lambda detector, test: measure(detector, test, args.seed))
    rows = [{**row, "seed": args.seed, **stamp} for row in rows]
    write_json(rows, args.out)
    print(grid_table(rows, list(EDITS), edit_cell))


if __name__ == "__main__":
    main()
