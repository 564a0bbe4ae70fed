"""Benchmark: does the detector accept the edits an ideal explanation makes?

A counterfactual that makes exactly the edit the data's rule asks for can still be flagged, so
the detector bounds the counterfactuals' validity. For each detector, trained as
the paper tables' cells train it, this makes the ideal edits on the flagged test anomalies (phi >=
0.5) and scores them. On Colored-MNIST an anomaly (a digit other than 1 in a colour other than
c0) becomes normal by either of two edits: "colour only" takes the anomaly's ink (its brightest
channel) in c0, "digit only" takes the ink of a test 1 drawn at random in the anomaly's colour.
On MNIST one-vs-rest the one edit is "normal digit": a normal test digit drawn at random in
the anomaly's place. Reported per edit: the share of those anomalies that phi calls normal once
edited (on Colored-MNIST per input colour too) and phi's median logit; and the detector's test
AuROC, to tell the detector apart from another seed's. Writes
``benchmarks/results/oracle_edits.json``.

    python benchmarks/oracle_edits.py [--datasets colored_mnist mnist] [--classes 0 1 ...]
        [--detectors bce hsc dsvdd] [--patch-outliers] [--seed 0] [--out FILE]
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
from captum_cfx.metrics import auroc

RESULTS = Path(__file__).parent / "results"
EDITS = ("colour only", "digit only", "normal digit")


def edited(test: LabeledImages, anomalies: LabeledImages, seed: int) -> Dict[str, Tensor]:
    """The ideal edits of ``anomalies`` (N, C, H, W), images of the ``test`` split, as images
    (N, C, H, W): Colored-MNIST's "colour only" and "digit only" when ``test`` has a palette,
    else one-vs-rest MNIST's "normal digit"."""
    generator = torch.Generator().manual_seed(seed)
    if "palette" not in test.meta:
        normal = test.normal().images
        return {
            "normal digit": normal[
                torch.randint(len(normal), (len(anomalies),), generator=generator)
            ]
        }
    palette: Tensor = test.meta["palette"]  # (P, 3)
    ink = anomalies.images.amax(dim=1, keepdim=True)  # (N, 1, H, W)
    ones = test.subset(test.factors["digit"] == 1).images.amax(dim=1, keepdim=True)
    drawn = ones[torch.randint(len(ones), (len(anomalies),), generator=generator)]
    return {
        "colour only": ink * palette[0][None, :, None, None],
        "digit only": drawn * palette[anomalies.factors["color"]][:, :, None, None],
    }


def measure(detector: nn.Module, test: LabeledImages, seed: int) -> Dict:
    """Per edit: ``made_normal`` (the share of the flagged anomalies of ``test`` with phi < 0.5
    once edited), on Colored-MNIST ``made_normal_by_colour`` (the same per input colour name),
    and ``median_logit``; and ``detector_auroc`` on ``test``."""
    phi = as_detector(detector)
    with torch.no_grad():
        logit = phi.logit(test.images)
        anomalies = test.subset((test.targets == 1) & (logit >= 0))
        out: Dict = {"detector_auroc": auroc(test.targets, logit)}
        for name, images in edited(test, anomalies, seed).items():
            edit_logit = phi.logit(images)
            normal = edit_logit < 0
            out[name] = {
                "made_normal": float(normal.float().mean()),
                "median_logit": float(edit_logit.median()),
            }
            if "palette" in test.meta:
                colour, names = anomalies.factors["color"], test.meta["color_names"]
                out[name]["made_normal_by_colour"] = {
                    names[c]: float(normal[colour == c].float().mean())
                    for c in colour.unique().tolist()
                }
    return out


def edit_cell(row: Dict, edit: str) -> str:
    """Flagged anomalies made normal by ``edit`` (%), overall and per input colour; "-" where
    the row's data set has no such edit."""
    if edit not in row:
        return "-"
    by_colour = row[edit].get("made_normal_by_colour", {})
    colours = ", ".join(f"{name} {100 * share:.0f}" for name, share in by_colour.items())
    return f"{100 * row[edit]['made_normal']:.1f}" + (f" ({colours})" if colours else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    grid_arguments(parser, classes=list(range(10)))
    parser.set_defaults(datasets=["colored_mnist"])
    parser.add_argument("--out", type=Path, default=RESULTS / "oracle_edits.json")
    args = parser.parse_args()
    stamp = provenance()
    rows = detector_rows(args, lambda detector, test: measure(detector, test, args.seed))
    rows = [{**row, "seed": args.seed, **stamp} for row in rows]
    write_json(rows, args.out)
    edits = [edit for edit in EDITS if any(edit in row for row in rows)]
    print(grid_table(rows, edits, edit_cell))


if __name__ == "__main__":
    main()
