"""Benchmark: the paper's Tables 1-2 on traffic signs, a synthetic stand-in for its GTSDB rows.

Normal: round speed-limit-like signs (``captum_cfx.data.traffic_signs``); every other shape,
colour or symbol is an anomaly, on photo backgrounds drawn uniformly. For BCE-OE, HSC-OE and
DSVDD, trains the detector on the training split (the OE detectors against its anomalies)
and fits the explainer (K = 2) with the library's defaults (``GeneratorConfig()``, no
preset unless ``--presets`` names one), then measures on the held-out
split (``table_cells.measure``): normality AuROC, FIDN (in the feature space of a CNN trained
on the training split's shape x rim colour), validity, proximity, concept accuracy, and what a
strict per-factor oracle reads changed (``bias_audit.changes``: one classifier per factor,
counted at confidence >= 0.9), with the paper's finding as a figure: the share of flagged
triangular anomalies that at least one concept makes round. One row per detector;
``paper_tables.py --merge ... --into results/paper_tables.json`` puts them into the table.

    OMP_NUM_THREADS=1 python benchmarks/paper_tables_signs.py --out FILE [--size 32]
        [--detectors bce hsc dsvdd] [--steps 1000] [--train 4000] [--test 2000] [--quick]

``--quick`` (100-step fits, 2 detector epochs, 400 signs) checks the pipeline; it measures
nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Dict, List

import torch
from bias_audit import changes, factor_oracles
from generalisation import read
from table_cells import brief, detector_arguments, fit_arguments, measure, run_cells
from table_merge import SUMMARISED
from torch import Tensor, nn
from torch.utils.data import DataLoader

from captum_cfx import GeneratorConfig, train_detector
from captum_cfx.data import LabeledImages, traffic_signs
from captum_cfx.data.traffic_signs import SHAPES
from captum_cfx.metrics import train_classifier

ROUND, TRIANGLE = SHAPES.index("round"), SHAPES.index("triangle")


def sign_features(train: LabeledImages, seed: int) -> nn.Module:
    """FIDN's domain features on signs: a shape x rim colour classifier trained on ``train``,
    less its last layer (images (N, 3, H, W) to features (N, D))."""
    rims = train.meta["values"][train.meta["factors"].index("rim")]
    joint = train.factors["shape"] * rims + train.factors["rim"]
    return train_classifier(train.images, joint, len(SHAPES) * rims, seed=seed)[:-1]


def triangles_made_round(shape_oracle: nn.Module, cfs: Tensor, anomalies: LabeledImages) -> Dict:
    """Of the triangular ``anomalies`` (N of them, counterfactuals ``cfs`` (N, K, 3, H, W)),
    the share (%) whose counterfactual the shape oracle reads round, per concept and for at
    least one concept; with how many triangles there were."""
    triangle = anomalies.factors["shape"] == TRIANGLE
    if not triangle.any():
        return {"triangles": 0}
    k = cfs.shape[1]
    made_round = read(shape_oracle, cfs[triangle].flatten(0, 1)).view(-1, k) == ROUND
    return {
        "triangles": int(triangle.sum()),
        "by_concept": [100 * float(made_round[:, c].float().mean()) for c in range(k)],
        "any_concept": 100 * float(made_round.any(1).float().mean()),
    }


def sign_rows(args, configs: Dict[str, GeneratorConfig], stamp: Dict) -> List[Dict]:
    """One row per detector on traffic signs (``configs`` maps each to its configuration),
    with what the oracle reads changed in the counterfactuals of the flagged anomalies."""
    train = traffic_signs(args.train, args.size, args.seed)
    test = traffic_signs(args.test, args.size, args.seed + 2)
    oracles = factor_oracles(traffic_signs(args.train, args.size, args.seed + 1), 6, args.seed)
    features = sign_features(train, args.seed)
    rows = []
    for name in args.detectors:
        start = time.perf_counter()
        detector = train_detector(
            name,
            DataLoader(train.normal(), batch_size=128, shuffle=True),
            DataLoader(train.anomalous(), batch_size=128, shuffle=True),
            epochs=args.detector_epochs,
            seed=args.seed,
            progress=False,
        )
        detector_seconds = time.perf_counter() - start
        cell = measure(
            detector,
            train,
            test,
            features,
            configs[name],
            args.steps,
            args.seed,
            args.figures and args.figures / f"traffic_signs_{name}_seed{args.seed}.png",
            args.explainers and args.explainers / f"traffic_signs_{name}_seed{args.seed}",
        )
        cell["train_seconds"] = detector_seconds + cell["fit_seconds"]
        flagged = test.anomalous().subset(cell["flagged"])
        cfs = cell["cfs"][cell["flagged"]]
        shares = changes(oracles, cfs, flagged) if len(flagged) else {}
        made_round = triangles_made_round(oracles["shape"], cfs, flagged)
        print(f"traffic_signs {name}: " + brief(cell), json.dumps(made_round), flush=True)
        rows.append(
            {
                "dataset": "traffic_signs",
                "detector": name,
                **{key: [cell[key], 0.0] for key in SUMMARISED},
                "n_runs": 1,
                "steps": args.steps,
                "size": args.size,
                "stand_in_for": "the paper's GTSDB rows (synthetic signs, one normal type)",
                "fid_features": "CNN trained on the training split's shape x rim colour",
                "oracle_changes": shares,
                "oracle_changes_on": "the test anomalies the detector flags (phi >= 0.5); % "
                "of all K counterfactuals, a factor counted at oracle confidence >= 0.9",
                "triangles_made_round": made_round,
                "normality_auroc_by_concept": cell["normality_auroc_by_concept"],
                "config": configs[name].to_dict(),
                **stamp,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    detector_arguments(parser)
    fit_arguments(parser, steps=1000, presets={})
    parser.set_defaults(detector_epochs=10)
    parser.add_argument("--size", type=int, default=32, help="the signs' side in pixels")
    parser.add_argument("--train", type=int, default=4000, help="signs in the training split")
    parser.add_argument("--test", type=int, default=2000, help="held-out signs")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.detector_epochs, args.train, args.test = 100, 2, 400, 400
    torch.manual_seed(args.seed)
    run_cells(args, sign_rows)


if __name__ == "__main__":
    main()
