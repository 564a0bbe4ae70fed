"""Benchmark: AuROC of the paper's detectors on MNIST one-vs-rest and Colored-MNIST.

Trains BCE-OE, HSC-OE and DSVDD on each normal class of MNIST (one-vs-rest) and on
Colored-MNIST (normal: colour c0, plus the digit 1 in any colour), scores the held-out test
split, and writes ``benchmarks/results/detectors.json`` and the table in ``RESULTS.md`` is
made from it. Outlier exposure: random pen strokes (white on MNIST; in the palette's colours
on Colored-MNIST), which share no class with the test anomalies.

    python benchmarks/detectors.py [--epochs 30] [--classes 0 1 ...] [--seed 0] [--augment]
    python benchmarks/detectors.py --table     # the markdown table of the last run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from provenance import mean_std, provenance, write_json
from torch.utils.data import DataLoader

from captum_cfx import train_detector
from captum_cfx.data import LabeledImages, colored_mnist, load_mnist, one_vs_rest, random_strokes
from captum_cfx.metrics import auroc

RESULTS = Path(__file__).parent / "results"


def evaluate(
    name: str, train: LabeledImages, test: LabeledImages, outliers: LabeledImages, args
) -> dict:
    """Train one detector on the normal training images and measure test AuROC."""
    normal_loader = DataLoader(train.normal(), batch_size=128, shuffle=True)
    outlier_loader = DataLoader(outliers, batch_size=128, shuffle=True)
    start = time.perf_counter()
    detector = train_detector(
        name,
        normal_loader,
        outlier_loader,
        epochs=args.epochs,
        seed=args.seed,
        augment=args.augment,
        progress=False,
    )
    seconds = time.perf_counter() - start
    with torch.no_grad():
        scores = torch.cat([detector(batch) for batch in test.images.split(512)])
    anomalous = test.targets == 1
    return {
        "auroc": auroc(test.targets, scores),
        "flagged_anomalies": float((scores[anomalous] >= 0.5).float().mean()),
        "normal_below_half": float((scores[~anomalous] < 0.5).float().mean()),
        "train_seconds": seconds,
    }


PAPER_MNIST = {"bce": "~99", "hsc": "~99", "dsvdd": "~95"}


def markdown_table(report: dict) -> str:
    """The RESULTS.md table of a detectors.json report: AuROC in % per class, mean +- std."""
    classes = sorted({c for r in report["rows"] for c in r.get("auroc_per_class", {})}, key=int)
    head = (
        "| data set | detector | " + " | ".join(classes) + " | mean +- std | paper (full MNIST) |"
    )
    lines = [head, "|" + "---|" * (len(classes) + 4)]
    for r in report["rows"]:
        per = [
            f"{100 * r['auroc_per_class'][c]:.1f}" if c in r.get("auroc_per_class", {}) else ""
            for c in classes
        ]
        mean, std = r["auroc"]
        paper = PAPER_MNIST[r["detector"]] if r["dataset"] == "mnist" else "-"
        lines.append(
            f"| {r['dataset']} | {r['detector']} | "
            + " | ".join(per)
            + f" | {100 * mean:.1f} +- {100 * std:.1f} | {paper} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--classes", type=int, nargs="*", default=list(range(10)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--augment", action="store_true", help="train on robust views (train_detector's augment)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "detectors.json")
    parser.add_argument("--table", action="store_true", help="print the table of --out and stop")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(args.out.read_text())))
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    mnist_train, mnist_test = load_mnist(True), load_mnist(False)
    strokes = random_strokes(4000, channels=1, seed=1)
    for name in ("bce", "hsc", "dsvdd"):
        per_class = {}
        for c in args.classes:
            per_class[c] = evaluate(
                name, one_vs_rest(mnist_train, c), one_vs_rest(mnist_test, c), strokes, args
            )
            print(f"mnist {name} class {c}: {per_class[c]['auroc']:.4f}", flush=True)
        rows.append(
            {
                "dataset": "mnist",
                "detector": name,
                "auroc_per_class": {str(c): r["auroc"] for c, r in per_class.items()},
                "auroc": mean_std([r["auroc"] for r in per_class.values()]),
                "train_seconds": mean_std([r["train_seconds"] for r in per_class.values()]),
            }
        )
    c_train, c_test = colored_mnist(True), colored_mnist(False)
    c_strokes = random_strokes(4000, max_strokes=5, palette=c_train.meta["palette"], seed=1)
    for name in ("bce", "hsc", "dsvdd"):
        r = evaluate(name, c_train, c_test, c_strokes, args)
        print(f"colored_mnist {name}: {r['auroc']:.4f}", flush=True)
        rows.append({"dataset": "colored_mnist", "detector": name, **r, "auroc": [r["auroc"], 0.0]})
    report = {
        **provenance(),
        "data_source": mnist_train.source,
        "epochs": args.epochs,
        "augment": args.augment,
        "rows": rows,
    }
    write_json(report, args.out)
    print(markdown_table(report))


if __name__ == "__main__":
    main()
