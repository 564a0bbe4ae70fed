"""Benchmark: the bias audit. Do the counterfactuals reveal a detector's shortcut?

Trains the same detector (BCE-OE) twice on traffic signs (``captum_cfx.data.traffic_signs``):
the *biased* one on a split where every normal sign stands in front of grass and every anomaly
in front of another photo (``spurious_background=True``, as CIFAR-10's ships on water), the
*clean* one on a split whose backgrounds are drawn uniformly. For each it fits the explainer
with the library's defaults (K = 2, ``GeneratorConfig()``, ``steps="auto"``) on the
detector's own training split (its normal signs, and its anomalies as ``outlier_loader``),
then reads the counterfactuals (all K) of held-out anomalies that stand in front of another
photo than grass and that the detector flags, with a strict oracle: one classifier per factor
(shape, rim, fill, symbol, background) trained on clean signs, whose reading counts only at
confidence >= 0.9 (``generalisation.read``). A factor is *changed* when the oracle reads a
value other than the input's; the *sign* changed when any of the four plate factors did.

    OMP_NUM_THREADS=1 python bias_audit.py --size 32 --max-steps 1000 \
        --out results/bias_audit.json --figure results/figures/bias_audit.png

Goal (the issue): >= 70% of the biased detector's counterfactuals change the background,
<= 20% of the clean detector's do.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List

import torch
from generalisation import ORACLE_CONFIDENCE, read
from matplotlib.figure import Figure
from provenance import provenance, write_json
from torch import Tensor, nn
from torch.utils.data import DataLoader

from captum_cfx import CounterfactualAnomalyExplainer, train_detector
from captum_cfx.data import LabeledImages, traffic_signs
from captum_cfx.detectors import score_images
from captum_cfx.metrics import auroc, normality_auroc, train_classifier, validity
from captum_cfx.visualization import image_array

#: The plate factors: a change to any of them is a change to the sign.
PLATE = ("shape", "rim", "fill", "symbol")
#: The background of every normal training sign of the biased detector (factor value 0).
SPURIOUS = 0
DETECTORS = ("biased", "clean")


def bce_detector(train: LabeledImages, epochs: int, seed: int) -> nn.Module:
    """A BCE-OE detector trained on ``train``'s normal images against its anomalous ones."""
    return train_detector(
        "bce",
        DataLoader(train.normal(), batch_size=128, shuffle=True),
        DataLoader(train.anomalous(), batch_size=128, shuffle=True),
        epochs=epochs,
        seed=seed,
        progress=False,
    )


def factor_oracles(train: LabeledImages, epochs: int, seed: int) -> Dict[str, nn.Module]:
    """One classifier per factor of the signs ``train`` (uniform backgrounds), images
    (N, 3, H, W) -> logits (N, values)."""
    return {
        name: train_classifier(train.images, train.factors[name], count, epochs=epochs, seed=seed)
        for name, count in zip(train.meta["factors"], train.meta["values"])
    }


def readings(oracles: Dict[str, nn.Module], images: Tensor) -> Dict[str, Tensor]:
    """Each oracle's reading (N,) of ``images`` (N, 3, H, W); -1 where it is unsure."""
    return {name: read(oracle, images) for name, oracle in oracles.items()}


def oracle_accuracy(oracles: Dict[str, nn.Module], test: LabeledImages) -> Dict[str, Dict]:
    """Per factor on held-out signs: the share read confidently and right, and the share
    left unsure (a confident wrong reading is the rest)."""
    reads = readings(oracles, test.images)
    return {
        name: {
            "right": float((value == test.factors[name]).float().mean()),
            "unsure": float((value == -1).float().mean()),
        }
        for name, value in reads.items()
    }


def changes(oracles: Dict[str, nn.Module], cfs: Tensor, inputs: LabeledImages) -> Dict:
    """What the oracle reads changed in the counterfactuals ``cfs`` (N, K, 3, H, W) of
    ``inputs``: per factor the share of all N * K counterfactuals read, confidently, with
    another value than the input's; the background made the spurious one (grass); the sign
    (any plate factor) changed; each alone; and the share with some factor unsure."""
    k = cfs.shape[1]
    reads = readings(oracles, cfs.flatten(0, 1))
    truth = {name: inputs.factors[name].repeat_interleave(k) for name in reads}
    changed = {name: (reads[name] != -1) & (reads[name] != truth[name]) for name in reads}
    sign = torch.stack([changed[name] for name in PLATE]).any(0)
    background = changed["background"]
    unsure = torch.stack(list(reads.values())).eq(-1).any(0)
    shares = {f"{name}_changed": changed[name] for name in reads}
    shares.update(
        {
            "background_made_spurious": reads["background"] == SPURIOUS,
            "sign_changed": sign,
            "background_only": background & ~sign,
            "sign_only": sign & ~background,
            "some_factor_unsure": unsure,
        }
    )
    return {name: 100 * float(value.float().mean()) for name, value in shares.items()}


def audit(
    detector: nn.Module,
    train: LabeledImages,
    test: LabeledImages,
    oracles: Dict[str, nn.Module],
    max_steps: int,
    seed: int,
) -> Dict:
    """Fit the explainer with the library's defaults for ``detector`` on its training split
    ``train``, and read the counterfactuals of ``test``'s anomalies in front of another
    photo than the spurious one that the detector flags."""
    start = time.perf_counter()
    explainer = CounterfactualAnomalyExplainer(n_concepts=2).fit(
        detector,
        DataLoader(train.normal(), batch_size=256),
        outlier_loader=DataLoader(train.anomalous(), batch_size=256),
        steps="auto",
        max_steps=max_steps,
        seed=seed,
        progress=False,
    )
    fit_minutes = (time.perf_counter() - start) / 60
    scores = score_images(detector, test.images)
    off_spurious = test.factors["background"] != SPURIOUS
    anomalies = test.subset((test.targets == 1) & off_spurious & (scores >= 0.5))
    cell = {
        "fit_minutes": round(fit_minutes, 1),
        "steps": len(explainer.history_["loss_total"]),
        "fit_report": explainer.fit_report_,
        "detector_auroc": 100 * auroc(test.targets, scores),
        # The shortcut on held-out signs: normal signs in front of other photos flagged.
        "normal_off_spurious_flagged": 100
        * float((scores[(test.targets == 0) & off_spurious] >= 0.5).float().mean()),
        "anomalies_off_spurious_flagged": 100
        * float((scores[(test.targets == 1) & off_spurious] >= 0.5).float().mean()),
        "audited": len(anomalies),
    }
    if not len(anomalies):  # nothing to explain: the audit of this detector failed
        return cell
    cfs = explainer.counterfactuals(anomalies.images, internal_batch_size=256)
    cf_scores = score_images(detector, cfs.flatten(0, 1))
    return {
        **cell,
        "validity": 100 * validity(cf_scores),
        "normality_auroc": 100 * normality_auroc(scores[test.targets == 0], cf_scores),
        "changes": changes(oracles, cfs, anomalies),
        "changes_by_concept": [
            changes(oracles, cfs[:, k : k + 1], anomalies) for k in range(cfs.shape[1])
        ],
        "_shown": (anomalies, cfs),
    }


def figure(cells: Dict[str, Dict], n: int = 8) -> Figure:
    """Rows: ``n`` held-out anomalies flagged by both detectors, then each detector's K
    counterfactuals; below, each detector's shares of counterfactuals whose background and
    whose sign the oracle reads changed."""
    shown = [name for name in DETECTORS if "_shown" in cells[name]]
    ids = [set(cells[name]["_shown"][0].factors["id"].tolist()) for name in shown]
    both = sorted(set.intersection(*ids))[:n] if ids else []
    rows: List[tuple] = []
    for name in shown:
        anomalies, cfs = cells[name]["_shown"]
        where = [anomalies.factors["id"].tolist().index(i) for i in both]
        if not rows:
            rows.append(("anomaly", anomalies.images[where]))
        rows += [(f"{name}, concept {k}", cfs[where, k]) for k in range(cfs.shape[1])]
    fig = Figure(figsize=(1.2 * max(len(both), 4), 1.25 * len(rows) + 2.6))
    grid = fig.add_gridspec(len(rows) + 2, max(len(both), 1))
    for r, (title, images) in enumerate(rows):
        for c, image in enumerate(images):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(image_array(image))
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=7)
    bars = fig.add_subplot(grid[len(rows) :, :])
    keys = ("background_changed", "sign_changed", "background_only", "sign_only")
    for i, name in enumerate(shown):
        shares = [cells[name]["changes"][key] for key in keys]
        bars.bar([j + 0.4 * i for j in range(len(keys))], shares, width=0.4, label=name)
    bars.set_xticks([j + 0.2 for j in range(len(keys))], [k.replace("_", " ") for k in keys])
    bars.set_ylabel("% of counterfactuals")
    bars.set_ylim(0, 100)
    bars.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=32, help="the signs' side in pixels")
    parser.add_argument("--train", type=int, default=4000, help="signs per training split")
    parser.add_argument("--test", type=int, default=2000, help="held-out signs")
    parser.add_argument("--detector-epochs", type=int, default=10)
    parser.add_argument("--oracle-epochs", type=int, default=6)
    parser.add_argument("--max-steps", type=int, default=1000, help="fit's max_steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/bias_audit.json"))
    parser.add_argument("--figure", type=Path, default=Path("results/figures/bias_audit.png"))
    args = parser.parse_args()
    stamp = provenance()
    splits = {
        "biased": traffic_signs(args.train, args.size, args.seed, spurious_background=True),
        "clean": traffic_signs(args.train, args.size, args.seed + 1),
    }
    test = traffic_signs(args.test, args.size, args.seed + 2)
    test.factors["id"] = torch.arange(len(test))  # to find an image again after subsets
    oracles = factor_oracles(splits["clean"], args.oracle_epochs, args.seed)
    cells = {}
    for name in DETECTORS:
        train = splits[name]
        detector = bce_detector(train, args.detector_epochs, args.seed)
        cells[name] = audit(detector, train, test, oracles, args.max_steps, args.seed)
        print(name, {k: v for k, v in cells[name].items() if k != "_shown"}, flush=True)
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    figure(cells).savefig(args.figure, dpi=100)
    report = {
        **stamp,
        "size": args.size,
        "train_per_split": args.train,
        "test": args.test,
        "detector": "bce (BCE-OE), trained on each split's normal signs against its anomalies",
        "detector_epochs": args.detector_epochs,
        "max_steps": args.max_steps,
        "oracle_confidence": ORACLE_CONFIDENCE,
        "oracle_accuracy_on_test": oracle_accuracy(oracles, test),
        "audited_on": "held-out anomalies in front of another photo than grass that the "
        "detector flags (phi >= 0.5); shares in % of all K counterfactuals",
        "goal": "biased: background_changed >= 70; clean: background_changed <= 20",
        "detectors": {
            name: {k: v for k, v in cell.items() if k != "_shown"} for name, cell in cells.items()
        },
    }
    write_json(report, args.out)


if __name__ == "__main__":
    main()
