"""Benchmark: the latent path (G' in the latent space of the library's own autoencoder,
``LatentCounterfactualExplainer``) beside the pixel-space G (``CounterfactualAnomalyExplainer``)
on the same traffic signs, the same BCE-OE detector, the same recipe (``GeneratorConfig()``,
K = 2) and the same number of steps.

Both fit on the training split's normal signs with its anomalies as ``outlier_loader``, and
are measured on the held-out split: validity (of the flagged anomalies' counterfactuals),
normality AuROC (all anomalies' counterfactuals against the normal test signs), FIDN (in the
feature space of a CNN trained on the training split's shape x rim colour,
``paper_tables_signs.sign_features``), proximity, what a strict per-factor oracle reads
changed (``bias_audit.changes``), the fit's seconds per step and the seconds per image of
making the K counterfactuals; for the latent path also its autoencoder's shape, training time
and reconstructions (``fit_report_["autoencoder"]``). The library's own autoencoder
(``ConvAutoencoder``, ``--downsamplings`` and ``--latent-channels`` its shape) is trained here
with ``train_autoencoder``, as ``fit`` trains it, on the training split's normal signs, and
given to the explainer, so that its time is told apart from G''s.

    OMP_NUM_THREADS=1 python benchmarks/latent_path.py --size 32 --steps 500 \
        --out benchmarks/results/latent_path.json
    OMP_NUM_THREADS=1 python benchmarks/latent_path.py --size 32 --steps 500 --paths latent \
        --downsamplings 2 --latent-channels 8 --out benchmarks/results/latent_path_f4.json

``--quick`` (10-step fits, 1 detector epoch, 300 signs) checks the pipeline; it measures
nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict

import torch
from bias_audit import bce_detector, changes, factor_oracles
from paper_tables_signs import sign_features
from provenance import provenance, write_json
from torch import nn
from torch.utils.data import DataLoader

from captum_cfx import (
    CounterfactualAnomalyExplainer,
    LatentCounterfactualExplainer,
)
from captum_cfx.data import LabeledImages, traffic_signs
from captum_cfx.detectors import score_images
from captum_cfx.latent import ConvAutoencoder, train_autoencoder
from captum_cfx.metrics import auroc, fidn, normality_auroc, proximity, validity


def measure(
    explainer: CounterfactualAnomalyExplainer,
    detector: nn.Module,
    train: LabeledImages,
    test: LabeledImages,
    features: nn.Module,
    oracles: Dict[str, nn.Module],
    steps: int,
    seed: int,
) -> Dict:
    """Fit ``explainer`` for ``detector`` on ``train`` and measure it on ``test``."""
    start = time.perf_counter()
    explainer.fit(
        detector,
        DataLoader(train.normal(), batch_size=256),
        outlier_loader=DataLoader(train.anomalous(), batch_size=256),
        steps=steps,
        checkpoint_every=max(1, steps // 4),
        seed=seed,
        progress=False,
    )
    fit_seconds = time.perf_counter() - start
    anomalies, normal = test.anomalous(), test.normal()
    scores = score_images(detector, test.images)
    normal_scores, anomaly_scores = scores[test.targets == 0], scores[test.targets == 1]
    flagged = anomaly_scores >= 0.5
    start = time.perf_counter()
    cfs = explainer.counterfactuals(anomalies.images, internal_batch_size=256)
    seconds_per_image = (time.perf_counter() - start) / len(anomalies)
    cf_scores = score_images(detector, cfs.flatten(0, 1)).view(len(anomalies), -1)
    report = explainer.fit_report_
    return {
        "fit_seconds": round(fit_seconds, 1),
        "seconds_per_step": fit_seconds / steps,
        "explain_seconds_per_image": seconds_per_image,
        "validity": 100 * validity(cf_scores[flagged].flatten()),
        "normality_auroc": 100 * normality_auroc(normal_scores, cf_scores.flatten()),
        "fidn": fidn(cfs.flatten(0, 1), anomalies.images, normal.images, features),
        "proximity": proximity(cfs, anomalies.images[:, None].expand_as(cfs)),
        "oracle_changes": changes(oracles, cfs[flagged], anomalies.subset(flagged))
        if flagged.any()
        else {},
        "flagged_anomalies": int(flagged.sum()),
        "fit_report": {k: v for k, v in report.items() if k != "quality_by_step"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=32, help="the signs' side in pixels")
    parser.add_argument("--train", type=int, default=2000, help="signs in the training split")
    parser.add_argument("--test", type=int, default=1000, help="held-out signs")
    parser.add_argument("--detector-epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=400, help="fit steps of each path")
    parser.add_argument("--paths", nargs="+", default=["pixel", "latent"])
    parser.add_argument("--autoencoder-steps", type=int, default=2000)
    parser.add_argument("--downsamplings", type=int, default=1, help="f = 2 ** this")
    parser.add_argument("--latent-channels", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="check the pipeline only")
    parser.add_argument("--out", type=Path, default=Path("results/latent_path.json"))
    args = parser.parse_args()
    if args.quick:
        args.train, args.test, args.detector_epochs, args.steps = 300, 200, 1, 10
        args.autoencoder_steps = 10
    stamp = provenance()
    torch.manual_seed(args.seed)
    train = traffic_signs(args.train, args.size, args.seed)
    test = traffic_signs(args.test, args.size, args.seed + 2)
    oracles = factor_oracles(traffic_signs(args.train, args.size, args.seed + 1), 6, args.seed)
    features = sign_features(train, args.seed)
    detector = bce_detector(train, args.detector_epochs, args.seed)
    scores = score_images(detector, test.images)
    cells = {}
    for name in args.paths:
        extra = {}
        if name == "latent":
            start = time.perf_counter()
            shape = {"latent_channels": args.latent_channels, "downsamplings": args.downsamplings}
            with torch.random.fork_rng(devices=[]):  # its weights from --seed, as fit seeds them
                torch.manual_seed(args.seed)
                initial = ConvAutoencoder(3, **shape)
            autoencoder = train_autoencoder(
                train.normal().images,
                steps=args.autoencoder_steps,
                seed=args.seed,
                progress=False,
                autoencoder=initial,
            )
            extra = {"autoencoder_seconds": round(time.perf_counter() - start, 1), **shape}
            explainer = LatentCounterfactualExplainer(n_concepts=2, autoencoder=autoencoder)
        else:
            explainer = CounterfactualAnomalyExplainer(n_concepts=2)
        cells[name] = {
            **extra,
            **measure(explainer, detector, train, test, features, oracles, args.steps, args.seed),
        }
        print(name, json.dumps({k: v for k, v in cells[name].items() if k != "fit_report"}))
    write_json(
        {
            **stamp,
            "size": args.size,
            "train": args.train,
            "test": args.test,
            "detector": "bce (BCE-OE) against the training split's anomalies",
            "detector_epochs": args.detector_epochs,
            "detector_auroc": 100 * auroc(test.targets, scores),
            "steps": args.steps,
            "autoencoder_steps": args.autoencoder_steps,
            "autoencoder": "captum_cfx.latent.ConvAutoencoder(3, latent_channels, "
            "downsamplings=log2 f), trained by train_autoencoder on the training split's normal "
            "signs",
            "fid_features": "CNN trained on the training split's shape x rim colour",
            "oracle_changes_on": "the test anomalies the detector flags; % of all K "
            "counterfactuals, a factor counted at oracle confidence >= 0.9",
            "quick": args.quick,
            "paths": cells,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
