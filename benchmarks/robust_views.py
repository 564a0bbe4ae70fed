"""Benchmark: how often each detector flags *normal* images under L_phi's robust view.

L_phi scores a counterfactual under a random shift of up to 2 pixels, a 3x3 blur for half
the images and Gaussian noise (``captum_cfx.generative.augment.robust_view``), so that an
invisible edit cannot pass for an explanation. A detector that flags most normal images
under those changes rewards almost no edit. For each detector, trained as
the paper tables' cells train it, this measures on the normal test images the share that phi
flags (phi >= 0.5) and phi's median logit: as they are, under the full view, and under each
of its parts alone. Writes ``benchmarks/results/robust_views.json``.

    python benchmarks/robust_views.py [--classes 0 8 1] [--detectors bce hsc dsvdd]
        [--datasets mnist colored_mnist] [--detector-augment [shift]] [--out FILE]

``--detector-augment`` trains the detectors on those same views
(``train_detector(augment=True)``), ``--detector-augment shift`` on the shift alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Dict, List

import torch
from paper_tables_colored import colored_detector
from paper_tables_mnist import mnist_detector
from provenance import provenance, write_json
from table_cells import grid_arguments
from torch import Tensor, nn

from captum_cfx import GeneratorConfig, as_detector
from captum_cfx.data import LabeledImages, colored_mnist, load_mnist, one_vs_rest, random_strokes
from captum_cfx.generative.augment import box_blur, robust_view, shift_view
from captum_cfx.generative.networks import leaky_clamp

RESULTS = Path(__file__).parent / "results"
NOISE = GeneratorConfig().robust_noise


def views(generator: torch.Generator) -> Dict[str, Callable[[Tensor], Tensor]]:
    """The full robust view and each of its parts alone, as functions of images (N, C, H, W)."""
    return {
        "as is": lambda x: x,
        "robust view": lambda x: robust_view(x, generator, NOISE),
        "shift <= 2 px": lambda x: shift_view(x, generator),
        "blur": box_blur,
        "noise": lambda x: leaky_clamp(x + NOISE * torch.randn(x.shape, generator=generator)),
    }


def measure(detector: nn.Module, normal: Tensor, seed: int) -> Dict[str, Dict[str, float]]:
    """Per view: the share of ``normal`` (N, C, H, W) that phi flags, and phi's median logit."""
    phi = as_detector(detector)
    generator = torch.Generator().manual_seed(seed)
    flagged, median_logit = {}, {}
    with torch.no_grad():
        for name, view in views(generator).items():
            logit = phi.logit(view(normal))
            flagged[name] = float((logit >= 0).float().mean())
            median_logit[name] = float(logit.median())
    return {"flagged": flagged, "median_logit": median_logit}


def detector_rows(args, measured_by: Callable[[nn.Module, LabeledImages], Dict]) -> List[Dict]:
    """One row per data set, normal class and detector of the grid ``args``: each detector
    trained as the paper tables' cells train it, then ``measured_by(detector, test split)``."""
    rows = []
    if "mnist" in args.datasets:
        train, test = load_mnist(True), load_mnist(False)
        strokes = random_strokes(4000, channels=1, seed=args.seed + 1)
        for digit in args.classes:
            c_train, c_test = one_vs_rest(train, digit), one_vs_rest(test, digit)
            for name in args.detectors:
                measured = measured_by(mnist_detector(name, c_train, strokes, args), c_test)
                rows.append(
                    {"dataset": "mnist", "normal_class": digit, "detector": name, **measured}
                )
                print(json.dumps(rows[-1]), flush=True)
    if "colored_mnist" in args.datasets:
        train, test = colored_mnist(True), colored_mnist(False)
        for name in args.detectors:
            measured = measured_by(colored_detector(name, train, args), test)
            rows.append(
                {"dataset": "colored_mnist", "normal_class": None, "detector": name, **measured}
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def grid_table(rows: List[Dict], columns: List[str], cell: Callable[[Dict, str], str]) -> str:
    """A markdown table of ``detector_rows``' rows: data set, normal class, detector, then
    ``cell(row, column)`` under each of ``columns``."""
    lines = [
        "| data set | normal class | detector | " + " | ".join(columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for r in rows:
        cells = " | ".join(cell(r, c) for c in columns)
        normal_class = "-" if r["normal_class"] is None else r["normal_class"]
        lines.append(f"| {r['dataset']} | {normal_class} | {r['detector']} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    grid_arguments(parser, classes=[0, 8, 1])
    parser.add_argument("--out", type=Path, default=RESULTS / "robust_views.json")
    args = parser.parse_args()
    stamp = provenance()
    rows = detector_rows(
        args, lambda detector, test: measure(detector, test.normal().images, args.seed)
    )
    rows = [{**row, "detector_augment": args.detector_augment, **stamp} for row in rows]
    write_json(rows, args.out)
    print(grid_table(rows, list(rows[0]["flagged"]), lambda r, v: f"{100 * r['flagged'][v]:.0f}"))


if __name__ == "__main__":
    main()
