"""The default recipe on procedural domains it was not tuned on (benchmarks/RESULTS.md).

For each domain of :data:`captum_cfx.data.synthetic.DOMAINS` (or ``colored_mnist``: colour ;
digit, normal = cyan or the digit 1) and each detector (``logit``: a plain CNN that returns raw
logits, trained on normal images against the domain's anomalies; ``dsvdd``: Deep SVDD, trained
on normal images only; black boxes on the normal images' pixels, ``knn`` (PyOD's kNN) and
``iforest`` (scikit-learn's IsolationForest), whose numpy scores ``fit`` explains through a
distilled surrogate),
fit the explainer with the design card's calls and ``GeneratorConfig()`` (or ``--config``),
then judge the counterfactuals of the held-out
anomalies the detector flags: validity, normality AuROC per concept, and per concept the
strict oracle's shares (factor A alone made normal, factor B alone, neither, other).

    python generalisation.py --domains shape_color bar --detectors logit dsvdd \
        --out results/generalisation.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Optional

import torch
from provenance import provenance
from pyod.models.knn import KNN
from sklearn.ensemble import IsolationForest
from speed import plain_cnn
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from torchvision.utils import save_image

from captum_cfx import (
    CounterfactualAnomalyExplainer,
    ExplanationWarning,
    FitWarning,
    GeneratorConfig,
    train_detector,
)
from captum_cfx.data import LabeledImages, colored_mnist
from captum_cfx.data.synthetic import DOMAINS, synthetic_domain
from captum_cfx.detectors import VectorDetector
from captum_cfx.detectors.adapter import score_images
from captum_cfx.diagnosis import FLAGS
from captum_cfx.metrics import auroc, contrast, normality_auroc, train_classifier, validity

#: A factor reading counts only at this oracle confidence (strict: unsure reads as "other").
ORACLE_CONFIDENCE = 0.9
#: The domains besides the procedural ones: (factors, their normal values, their counts).
REAL_DOMAINS = {"colored_mnist": (("color", "digit"), (0, 1), (6, 10))}


def domain_data(name: str, seed: int) -> tuple[LabeledImages, LabeledImages, tuple, tuple, tuple]:
    """(train, test, factor names, each factor's normal value, each factor's count)."""
    if name in REAL_DOMAINS:
        return (
            colored_mnist(True, seed=seed),
            colored_mnist(False, seed=seed),
            *REAL_DOMAINS[name],
        )
    domain = DOMAINS[name]
    train = synthetic_domain(name, 3000, seed=seed)
    test = synthetic_domain(name, 1500, seed=seed + 1000)
    return train, test, domain.factors, (0, 0), domain.values


def logit_detector(images: torch.Tensor, targets: torch.Tensor, seed: int) -> nn.Module:
    """A plain CNN, images -> raw logits (N,), trained with BCE on normal (0) vs anomalous (1)."""
    torch.manual_seed(seed)
    net = plain_cnn(images.shape[1]).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(10):
        for index in torch.randperm(len(images)).split(64):
            loss = F.binary_cross_entropy_with_logits(net(images[index]), targets[index].float())
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def read(oracle: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The oracle's factor value per image, -1 where it is less sure than ORACLE_CONFIDENCE."""
    with torch.no_grad():
        prob = oracle(images).softmax(1)
    value = prob.argmax(1)
    value[prob.amax(1) < ORACLE_CONFIDENCE] = -1
    return value


def run_cell(
    name: str,
    detector_name: str,
    steps,
    max_steps: int,
    config: GeneratorConfig,
    seed: int,
    figures: Optional[Path] = None,
    explainers: Optional[Path] = None,
) -> dict:
    train, test, factors, normal_values, counts = domain_data(name, seed)
    normal = train.normal()
    if detector_name == "logit":
        detector = logit_detector(train.images, train.targets, seed)
    elif detector_name == "knn":  # a black box: PyOD's kNN on the pixels, numpy scores
        detector = VectorDetector(KNN(n_neighbors=5).fit(normal.images.flatten(1).numpy()))
    elif detector_name == "iforest":  # a black box: scikit-learn's Isolation Forest, numpy
        forest = IsolationForest(random_state=seed).fit(normal.images.flatten(1).numpy())
        detector = VectorDetector(forest)
    else:
        detector = train_detector(
            "dsvdd",
            DataLoader(normal.images, batch_size=128, shuffle=True),
            epochs=20,
            seed=seed,
            progress=False,
        )
    oracles = [
        train_classifier(train.images, train.factors[f], v, epochs=6, seed=seed)
        for f, v in zip(factors, counts)
    ]
    start = time.time()
    explainer = CounterfactualAnomalyExplainer(n_concepts=2, config=config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FitWarning)
        explainer.fit(
            detector,
            DataLoader(normal.images, batch_size=256),
            steps=steps,
            max_steps=max_steps,
            seed=seed,
            progress=False,
        )
    fit_warnings = [str(w.message) for w in caught if issubclass(w.category, FitWarning)]
    fit_minutes = (time.time() - start) / 60
    if explainers is not None:
        explainer.save(explainers / f"{name}_{detector_name}")
    phi = explainer.forward_func
    scores = score_images(phi, test.images)
    anomalies = test.anomalous()
    flagged = anomalies.subset(score_images(phi, anomalies.images) >= 0.5)
    normal_scores = score_images(phi, test.normal().images)
    cell = {
        "domain": name,
        "detector": detector_name,
        "fit_minutes": round(fit_minutes, 2),
        "steps": len(explainer.history_.get("loss_total", [])),
        "kept_step": explainer.fit_report_["kept_step"],
        "detector_auroc": 100 * auroc(test.targets, scores),
        "flagged": len(flagged),
        "concepts": [],
        "fit_warnings": fit_warnings,
        "fit_report": getattr(explainer, "fit_report_", None),
        "history_last_100": {
            key: sum(v for v in values[-100:] if v is not None) / max(1, len(values[-100:]))
            for key, values in explainer.history_.items()
        },
    }
    a_in, b_in = (flagged.factors[f] for f in factors)
    a_normal, b_normal = normal_values
    if figures is not None:
        shown = flagged.images[:12]
        rows = [shown] + [explainer.counterfactual(shown, concept=k) for k in range(2)]
        grid = torch.cat(rows).expand(-1, 3, -1, -1)
        figures.mkdir(parents=True, exist_ok=True)
        save_image(grid, figures / f"{name}_{detector_name}.png", nrow=12, padding=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExplanationWarning)
        diagnosis = explainer.diagnose(flagged.images)
    contrast_inputs = float(contrast(flagged.images).mean())
    faint_limit = float(explainer.normal_reference_.faint_limit)
    for k in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ExplanationWarning)
            cf = explainer.counterfactual(flagged.images, concept=k)
        s = score_images(phi, cf)
        a, b = (read(o, cf) for o in oracles)
        a_only = (a == a_normal) & (b == b_in)
        b_only = (b == b_normal) & (a == a_in)
        neither = (a == a_in) & (b == b_in)
        cell["concepts"].append(
            {
                "validity": 100 * validity(s),
                "explain_warned": any(issubclass(w.category, ExplanationWarning) for w in caught),
                "normality_auroc": 100 * normality_auroc(normal_scores, s),
                "proximity": float((cf - flagged.images).abs().mean()),
                f"{factors[0]}_only": 100 * float(a_only.float().mean()),
                f"{factors[1]}_only": 100 * float(b_only.float().mean()),
                "neither": 100 * float(neither.float().mean()),
                "other": 100 * float((~(a_only | b_only | neither)).float().mean()),
                # diagnose's flags on these counterfactuals (% of them), and their contrast
                # beside the inputs' and the limit below which one is faded
                "diagnosis": {
                    flag: 100 * float(diagnosis[flag][:, k].float().mean()) for flag in FLAGS
                },
                "contrast": float(diagnosis["contrast"][:, k].mean()),
                "contrast_inputs": contrast_inputs,
                "faint_limit": faint_limit,
            }
        )
    return cell


def execute(args: argparse.Namespace) -> None:
    """Merge the runs ``--merge`` names into ``--out``, or fit and judge every (domain,
    detector) cell, rewriting ``--out`` after each."""
    if args.merge:
        runs = [json.loads(path.read_text()) for path in args.merge]
        cells = [cell for run in runs for cell in run["cells"]]
        args.out.write_text(json.dumps({"runs": runs, "cells": cells}, indent=1))
        return
    steps = args.steps if args.steps == "auto" else int(args.steps)
    config = GeneratorConfig(**args.config)
    cells = []
    for name in args.domains:
        for detector_name in args.detectors:
            cells.append(
                run_cell(
                    name,
                    detector_name,
                    steps,
                    args.max_steps,
                    config,
                    args.seed,
                    args.figures,
                    args.explainers,
                )
            )
            print(json.dumps(cells[-1]), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(
                json.dumps(
                    {"provenance": provenance(), "config": args.config, "cells": cells}, indent=1
                )
            )


def arguments(description: str, domains, detectors, out: str) -> argparse.ArgumentParser:
    """The command line of this benchmark and of ``black_box.py``, with their defaults."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--domains", nargs="+", default=domains)
    parser.add_argument("--detectors", nargs="+", default=detectors)
    parser.add_argument("--steps", default="auto")
    parser.add_argument("--max-steps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=json.loads, default={})
    parser.add_argument("--figures", type=Path, default=Path("results/figures/generalisation"))
    parser.add_argument("--explainers", type=Path, help="save each cell's fitted explainer here")
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="combine these runs' JSONs into --out, fit nothing"
    )
    parser.add_argument("--out", type=Path, default=Path(out))
    return parser


def main() -> None:
    execute(
        arguments(
            __doc__.splitlines()[0],
            sorted(DOMAINS),
            ["logit", "dsvdd"],
            "results/generalisation.json",
        ).parse_args()
    )


if __name__ == "__main__":
    main()
