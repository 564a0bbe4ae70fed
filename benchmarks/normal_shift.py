"""Where MNIST explainers' normality AuROC moves between training and test data.

For explainers that ``paper_tables_mnist.py --explainers DIR`` saved, re-train each cell's
detector as that script does (same seed, epochs and ``--reference-share``) and measure the
detector's own shift (its test normal images ranked against the normal images it was trained
on: above 50% when it scores its training images lower), the share of its test normal images
it judges normal, and the counterfactuals' normality AuROC on the training split and on the
test split. Writes a JSON list, one entry per cell.

Usage (from ``benchmarks/``):
    python normal_shift.py --explainers DIR --detectors dsvdd --classes 0 9 --out F.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from paper_tables_mnist import held_out_normals, mnist_detector
from provenance import provenance, write_json
from table_cells import RESULTS, cell_stem, grid_arguments, training_diagnostics

from captum_cfx import CounterfactualAnomalyExplainer
from captum_cfx.data import load_mnist, one_vs_rest, random_strokes
from captum_cfx.detectors import score_images
from captum_cfx.metrics import auroc, normality_auroc, validity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    grid_arguments(parser, classes=[0])
    parser.add_argument(
        "--explainers", type=Path, required=True, help="paper_tables_mnist's folder"
    )
    parser.add_argument("--reference-share", type=float, default=0.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "normal_shift.json")
    args = parser.parse_args()
    train, test = load_mnist(True), load_mnist(False)
    strokes = random_strokes(4000, channels=1, seed=args.seed + 1)
    stamp = provenance()
    cells = []
    for name in args.detectors:
        for digit in args.classes:
            c_train, c_test = one_vs_rest(train, digit), one_vs_rest(test, digit)
            detector_train, _ = held_out_normals(c_train, args.reference_share, args.seed)
            detector = mnist_detector(name, detector_train, strokes, args)
            explainer = CounterfactualAnomalyExplainer.load(
                args.explainers / cell_stem(name, args.seed, digit), detector
            )
            test_scores = score_images(detector, c_test.images)
            normal_scores = test_scores[c_test.targets == 0]
            cfs = explainer.counterfactuals(c_test.anomalous().images, internal_batch_size=256)
            entry = {
                "detector": name,
                "normal_digit": digit,
                "reference_share": args.reference_share,
                "detector_auroc": auroc(c_test.targets, test_scores),
                # phi < 0.5 on the test normal images: the validity of counterfactuals scored
                # exactly like them, the most a normality AuROC of 50% allows
                "normal_validity": validity(normal_scores),
                "normality_auroc": normality_auroc(
                    normal_scores, score_images(detector, cfs.flatten(0, 1))
                ),
                **training_diagnostics(explainer, detector, detector_train, normal_scores),
                **stamp,
            }
            print({k: v for k, v in entry.items() if k not in stamp}, flush=True)
            cells.append(entry)
    write_json(cells, args.out)


if __name__ == "__main__":
    main()
