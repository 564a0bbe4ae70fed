"""Benchmark: does the explainer explain? Colored-MNIST with the BCE-OE detector.

Normal: colour c0 (cyan) plus the digit 1 in any colour. Trains the BCE-OE detector
(``captum_cfx.demo.colored_mnist_detector``: palette strokes and normal digits with pasted
patches as outlier exposure), fits the explainer from scratch, and measures on held-out test
data: the detector's AuROC, normality AuROC, validity, proximity, and per concept the strict
oracle table (colour became c0 only / digit became 1 only / both / neither / other, and
pasted patches), on the test anomalies the detector flags (phi >= 0.5) and on all of them.
Writes ``benchmarks/results/explainer_colored_mnist.json`` and a PNG grid.

    python benchmarks/explainer_colored_mnist.py [--steps 2500] [--seed 0] [--no-anomalies]

By default the explainer's ``outlier_loader`` holds the *training* split's anomalies
(coloured digits the detector never saw in training); ``--no-anomalies`` fits on normal
images only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from provenance import provenance
from torch.utils.data import DataLoader

from captum_cfx import CounterfactualAnomalyExplainer, GeneratorConfig
from captum_cfx.data import colored_mnist
from captum_cfx.demo import colored_mnist_detector
from captum_cfx.detectors import score_images
from captum_cfx.metrics import (
    auroc,
    colored_mnist_factors,
    disentanglement,
    normality_auroc,
    proximity,
    train_digit_oracle,
    validity,
)
from captum_cfx.visualization import counterfactual_grid

RESULTS = Path(__file__).parent / "results"


def markdown_table(report: dict) -> str:
    """The RESULTS.md rows of one report: per concept, on flagged anomalies (all in brackets)."""
    lines = [
        "| concept | normality AuROC | validity | proximity | colour only | digit only "
        "| both | neither | other | patch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report["concepts"]:
        f, a = c["oracle_flagged"], c["oracle_all"]
        cells = [
            f"{100 * f[k]:.1f} ({100 * a[k]:.1f})"
            for k in ("color_only", "digit_only", "both", "neither", "other", "patch")
        ]
        lines.append(
            f"| {c['concept']} | {100 * c['normality_auroc_all']:.1f} "
            f"| {100 * c['validity_flagged']:.1f} | {c['proximity_flagged']:.4f} | "
            + " | ".join(cells)
            + " |"
        )
    lines.append(
        f"\nDetector AuROC {100 * report['detector_auroc']:.2f}%, {report['n_flagged']} of "
        f"{report['n_test_anomalies']} test anomalies flagged; normality AuROC over both concepts "
        f"{100 * report['normality_auroc_all_concepts']:.1f}%; "
        f"fit {report['fit_seconds'] / 60:.1f} min "
        f"({report['steps']} steps). `{report['command']}`, {report['date']}, {report['machine']}."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-anomalies", action="store_true")
    parser.add_argument(
        "--config", type=json.loads, default={}, help="GeneratorConfig overrides as JSON"
    )
    parser.add_argument("--tag", default="explainer_colored_mnist")
    parser.add_argument(
        "--table", type=Path, default=None, help="print the table of a results JSON"
    )
    args = parser.parse_args()
    if args.table is not None:
        print(markdown_table(json.loads(args.table.read_text())))
        return

    train, test = colored_mnist(True), colored_mnist(False)
    palette = train.meta["palette"]
    detector = colored_mnist_detector("bce", train, seed=args.seed, progress=False)
    test_scores = score_images(detector, test.images)
    detector_auroc = auroc(test.targets, test_scores)
    print(f"detector AuROC {detector_auroc:.4f}", flush=True)

    config = GeneratorConfig.from_dict(args.config)
    explainer = CounterfactualAnomalyExplainer(n_concepts=2, config=config)
    start = time.perf_counter()
    explainer.fit(
        detector,
        DataLoader(train.normal(), batch_size=256),
        outlier_loader=None if args.no_anomalies else DataLoader(train.anomalous(), batch_size=256),
        steps=args.steps,
        seed=args.seed,
        progress=True,
    )
    fit_seconds = time.perf_counter() - start

    oracle = train_digit_oracle(train.images, train.factors["digit"])
    anomalies = test.anomalous()
    normal_scores = test_scores[test.targets == 0]
    anomaly_scores = test_scores[test.targets == 1]
    flagged = anomaly_scores >= 0.5
    cfs = explainer.counterfactuals(anomalies.images, internal_batch_size=256)  # (N, K, C, H, W)
    all_cf_scores = score_images(detector, cfs.flatten(0, 1)).view(len(anomalies), -1)  # (N, K)
    per_concept = []
    for k in range(2):
        cf, cf_scores = cfs[:, k], all_cf_scores[:, k]
        factors = colored_mnist_factors(
            cf,
            anomalies.images,
            anomalies.factors["digit"],
            anomalies.factors["color"],
            palette,
            oracle,
        )
        per_concept.append(
            {
                "concept": k,
                "normality_auroc_all": normality_auroc(normal_scores, cf_scores),
                "normality_auroc_flagged": normality_auroc(normal_scores, cf_scores[flagged]),
                "validity_flagged": validity(cf_scores[flagged]),
                "validity_all": validity(cf_scores),
                "proximity_flagged": proximity(cf[flagged], anomalies.images[flagged]),
                "oracle_flagged": disentanglement({n: v[flagged] for n, v in factors.items()}),
                "oracle_all": disentanglement(factors),
            }
        )
        print(json.dumps(per_concept[-1], indent=1), flush=True)
    report = {
        **provenance(),
        "data_source": train.source,
        "outlier_loader": "none" if args.no_anomalies else "training-split anomalies",
        "steps": args.steps,
        "config": config.to_dict(),
        "fit_seconds": fit_seconds,
        "detector_auroc": detector_auroc,
        "n_test_anomalies": len(anomalies),
        "n_flagged": int(flagged.sum()),
        "normality_auroc_all_concepts": normality_auroc(normal_scores, all_cf_scores.flatten()),
        "concepts": per_concept,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(report, indent=2))
    show = flagged.nonzero()[:16, 0]
    fig = counterfactual_grid(
        anomalies.images[show],
        cfs[show],
        anomaly_scores[show],
        all_cf_scores[show],
    )
    fig.savefig(RESULTS / f"{args.tag}.png", dpi=80)
    print(f"wrote {RESULTS / args.tag}.json and .png; fit {fit_seconds:.0f}s", flush=True)


if __name__ == "__main__":
    main()
