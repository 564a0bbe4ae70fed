"""Benchmark: counterfactuals against heatmaps and per-image optimisation, on one detector.

By default uses the BCE-OE detector, the FCDD detector and the explainer that ``captum-cfx
demo`` trained and saved on Colored-MNIST (run the demo first; ``--demo-dir`` names its
folder). With ``--explainer DIR --detector NAME --seed S`` it explains instead with an
explainer that ``paper_tables_{mnist,colored}.py --explainers`` saved, and its cell's
detector, trained again as that script trains it (its test AuROC is recorded so that it can be
matched to the cell's). On Colored-MNIST the FCDD heatmaps still come from the demo's FCDD
detector, trained on the same normal images. With ``--dataset mnist --normal-class C`` the
cell is one-vs-rest MNIST's (``--patch-outliers`` for the BCE-OE cells, as their command has
it), and an FCDD detector is trained on the same normal images and outlier exposure as the
cell's detector.
On ``--n`` flagged test anomalies, spread evenly over all the flagged ones, it measures:

- faithfulness at equal change: phi, and phi's logit, after editing each anomaly by a mean
  per-pixel L1 budget, (a) along the counterfactual, x + t (cf - x), and by its own largest
  changes first (the pixels where |cf - x| is largest moved to their counterfactual values,
  a deletion curve whose attribution is the counterfactual's change); (b) for
  IntegratedGradients, Saliency, GradientShap, Occlusion and FCDD, by moving the
  top-attributed pixels to the mean normal image (a deletion curve); the curves and their
  areas (the logits still rank methods where the scores all round to 1);
- a Wachter-style per-image counterfactual (Adam on the pixels towards phi = 0 with an L1
  penalty, as Alibi's ``Counterfactual`` does) with the same metrics and oracles as the
  counterfactuals: validity, proximity, FIDN (the domain features of the paper tables; on
  ``--n`` images, so comparable within a run) and the oracle table (Colored-MNIST: colour only,
  digit only, ...; MNIST: the digit oracle's shares read as the normal digit, as the input's
  digit, and with ink added away from the input's);
- milliseconds per explained image for every method, in one process.

Writes ``benchmarks/results/heatmaps/colored_mnist_demo_bce.json`` and ``.png`` (``--out``
names the JSON; the figure takes its name with ``.png``).

    python benchmarks/heatmaps_vs_counterfactuals.py [--demo-dir captum_cfx_demo] [--n 64]
        [--explainer DIR --detector {bce,hsc,dsvdd} [--seed 0]]
        [--dataset mnist --normal-class C [--patch-outliers]] [--out FILE]
    python benchmarks/heatmaps_vs_counterfactuals.py --table --out FILE   # RESULTS.md's tables
    python benchmarks/heatmaps_vs_counterfactuals.py --summary FILE [FILE ...]   # one row each
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch
from captum.attr import GradientShap, IntegratedGradients, Occlusion, Saliency
from paper_tables_colored import colored_features
from paper_tables_mnist import mnist_detector, mnist_features
from provenance import provenance, write_json
from table_cells import grid_arguments
from torch import Tensor, nn

from captum_cfx import CounterfactualAnomalyExplainer
from captum_cfx.data import LabeledImages, colored_mnist, load_mnist, one_vs_rest, random_strokes
from captum_cfx.demo import colored_mnist_detector
from captum_cfx.detectors import DETECTORS, BCEDetector, FCDDDetector, score_images
from captum_cfx.metrics import (
    auroc,
    colored_mnist_factors,
    digit_factors,
    disentanglement,
    fidn,
    proximity,
    train_digit_oracle,
    validity,
)
from captum_cfx.visualization import explanation_figure

RESULTS = Path(__file__).parent / "results"
BUDGETS = [0.005, 0.01, 0.02, 0.04, 0.08]


def load_detector(cls, path: Path):
    detector = cls(3, 28)
    detector.load_state_dict(torch.load(path, weights_only=True))
    return detector.eval()


def deletion(
    x: torch.Tensor, attribution: torch.Tensor, baseline: torch.Tensor, budget: float
) -> torch.Tensor:
    """Move the most-attributed pixels of each image to the baseline until the mean per-pixel
    L1 change reaches ``budget``. x (N, C, H, W), attribution (N, C', H, W), baseline
    (1 or N, C, H, W)."""
    n, c, h, w = x.shape
    rank = attribution.abs().sum(1).flatten(1).argsort(1, descending=True)  # (N, HW)
    change = (baseline - x).abs().sum(1).flatten(1)  # per-pixel L1 over channels (N, HW)
    ordered = change.gather(1, rank).cumsum(1) / (c * h * w)
    keep = ordered <= budget
    mask = torch.zeros(n, h * w, dtype=torch.bool).scatter(1, rank, keep).view(n, 1, h, w)
    return torch.where(mask, baseline.expand_as(x), x)


def along(x: torch.Tensor, cf: torch.Tensor, budget: float) -> torch.Tensor:
    """x + t (cf - x) with t chosen so the mean per-pixel L1 change is ``budget`` (t <= 1)."""
    l1 = (cf - x).abs().mean((1, 2, 3), keepdim=True).clamp_min(1e-8)
    return x + (budget / l1).clamp(max=1.0) * (cf - x)


def wachter(
    phi, x: torch.Tensor, steps: int = 100, l1: float = 0.5, lr: float = 0.02
) -> torch.Tensor:
    """Per-image counterfactuals: minimise BCE(phi(x'), 0) + l1 |x' - x|_1 over the pixels."""
    z = x.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        loss = torch.nn.functional.softplus(phi.logit(z.clamp(0, 1))).sum()
        loss = loss + l1 * (z - x).abs().sum((1, 2, 3)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return z.detach().clamp(0, 1)


@dataclass
class Cell:
    """What one cell's measurement needs: its detector, an FCDD detector of the same normal
    images, the explainer's folder, the data split into train and test (targets 0 normal, 1
    anomalous), FIDN's domain features, and ``oracle(cfs, index)``: the oracle table of
    counterfactuals (N, C, H, W) of the test anomalies ``index`` (N,)."""

    detector: nn.Module
    fcdd: FCDDDetector
    explainer_dir: Path
    train: LabeledImages
    test: LabeledImages
    features: nn.Module
    oracle: Callable[[Tensor, Tensor], Dict]


def colored_cell(args) -> Cell:
    """Colored-MNIST: the demo's BCE-OE detector and explainer, or with ``--explainer`` the
    table's cell; the demo's FCDD detector either way."""
    train, test = colored_mnist(True), colored_mnist(False)
    if args.explainer is None:
        detector = load_detector(BCEDetector, args.demo_dir / "detector_bce.pt")
        explainer_dir = args.demo_dir / "explainer"
    else:
        detector = colored_mnist_detector(args.detector, train, seed=args.seed, progress=False)
        explainer_dir = args.explainer
    digit_oracle = train_digit_oracle(train.images, train.factors["digit"])
    anomalies, palette = test.anomalous(), train.meta["palette"]

    def oracle(cfs: Tensor, index: Tensor) -> Dict:
        digits, colors = anomalies.factors["digit"][index], anomalies.factors["color"][index]
        x = anomalies.images[index]
        return disentanglement(colored_mnist_factors(cfs, x, digits, colors, palette, digit_oracle))

    fcdd = load_detector(FCDDDetector, args.demo_dir / "detector_fcdd.pt")
    return Cell(
        detector, fcdd, explainer_dir, train, test, colored_features(train, args.seed), oracle
    )


def mnist_cell(args) -> Cell:
    """One-vs-rest MNIST with normal digit ``args.normal_class``: the cell's detector and an
    FCDD detector, both trained as ``paper_tables_mnist.py`` trains the cell's (its grid options at
    their defaults, with ``--seed`` and ``--patch-outliers``), and the cell's explainer."""
    normal_digit = args.normal_class
    train, test = load_mnist(True), load_mnist(False)
    c_train, c_test = one_vs_rest(train, normal_digit), one_vs_rest(test, normal_digit)
    grid = argparse.ArgumentParser()
    grid_arguments(grid, classes=[normal_digit])
    grid_args = grid.parse_args(
        ["--seed", str(args.seed)] + (["--patch-outliers"] if args.patch_outliers else [])
    )
    strokes = random_strokes(4000, channels=1, seed=args.seed + 1)
    detector = mnist_detector(args.detector, c_train, strokes, grid_args)
    fcdd = mnist_detector("fcdd", c_train, strokes, grid_args)
    assert isinstance(fcdd, FCDDDetector)
    digit_oracle = train_digit_oracle(train.images, train.factors["digit"], seed=args.seed)
    anomalies = c_test.anomalous()

    def oracle(cfs: Tensor, index: Tensor) -> Dict:
        x, digits = anomalies.images[index], anomalies.factors["digit"][index]
        factors = digit_factors(cfs, x, digits, digit_oracle, normal_digit)
        return {name: float(value.float().mean()) for name, value in factors.items()}

    features = mnist_features(train, args.seed)
    return Cell(detector, fcdd, args.explainer, c_train, c_test, features, oracle)


def gradient_shap(phi: nn.Module, x: Tensor, baseline: Tensor, seed: int) -> Tensor:
    """GradientShap's map of ``x`` (N, C, H, W), 20 samples around ``baseline`` (1, C, H, W),
    its random draws (torch's noise, numpy's baseline choice and interpolation points) seeded
    with ``seed`` and both generators restored after: a rerun gives the same map."""
    # captum draws from numpy's legacy global generator, so that is the one to seed
    numpy_state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return GradientShap(phi).attribute(
                x, baselines=baseline.expand(4, -1, -1, -1), n_samples=20
            )
    finally:
        np.random.set_state(numpy_state)  # noqa: NPY002


def timed(fn, n: int):
    start = time.perf_counter()
    out = fn()
    return out, 1000 * (time.perf_counter() - start) / n


def markdown_tables(report: Dict) -> str:
    """RESULTS.md's three tables of a report: phi and phi's logit after each method's edit per
    L1 budget with the curves' means; each candidate set's quality (validity, proximity and
    oracle shares in %, FIDN); milliseconds per image and the ratio to the counterfactuals."""
    budgets = report["budgets_mean_l1"]
    head = [f"L1 {budgets[0]}", *map(str, budgets[1:]), "mean"]
    head += [f"logit at {budgets[0]}", *map(str, budgets[1:]), "mean logit"]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name, curve in report["mean_phi_after_edit"].items():
        logits = report["mean_logit_after_edit"][name]
        cells = [f"{v:.3f}" for v in curve] + [f"{report['area_under_phi_curve'][name]:.3f}"]
        cells += [f"{v:.2f}" for v in logits] + [f"{report['area_under_logit_curve'][name]:.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    oracle_keys = list(next(iter(report["quality"].values()))["oracle"])
    head = ["validity %", "proximity", "FIDN", *(f"{key} %" for key in oracle_keys)]
    lines += ["", "| counterfactuals | " + " | ".join(head) + " |"]
    lines.append("|---" * (len(head) + 1) + "|")
    for name, q in report["quality"].items():
        cells = [f"{100 * q['validity']:.1f}", f"{q['proximity']:.4f}", f"{q['fidn']:.0f}"]
        cells += [f"{100 * q['oracle'][key]:.1f}" for key in oracle_keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| method | ms / image | ratio |", "|---|---|---|"]
    for name, ms in report["ms_per_image"].items():
        ratio = report["ms_ratio_to_counterfactuals"][name]
        lines.append(f"| {name} | {ms:.2f} | {ratio:.1f}x |")
    return "\n".join(lines)


def summary_table(reports: List[Dict]) -> str:
    """One row per report: at how many L1 budgets the counterfactuals (their best edit: along
    the counterfactual or largest changes first, either concept) leave phi, and phi's logit,
    lower than every heatmap does, with the budgets where they do not; the lowest mean phi
    curve of each side; validity, FIDN and (MNIST) the normal digit's share of the
    concepts-alternating set against Wachter's; IntegratedGradients' and Wachter's cost per
    image as multiples of the counterfactuals'."""
    head = [
        "data set", "detector", "normal", "detector AuROC %", "budgets won: phi / logit",
        "lost at: phi; logit", "mean phi: counterfactual / best heatmap",
        "validity %: cf / Wachter", "FIDN: cf / Wachter", "normal digit %: cf / Wachter",
        "IG / cf time", "Wachter / cf time",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in reports:
        budgets, won, lost = r["budgets_mean_l1"], [], []
        # the heatmap methods are the report's attributions: all but the counterfactuals and Wachter
        heatmaps = [
            n
            for n in r["area_under_phi_curve"]
            if n.split(" ")[0] not in ("counterfactual", "Wachter")
        ]
        for curves in (r["mean_phi_after_edit"], r["mean_logit_after_edit"]):
            cfs = [v for name, v in curves.items() if name.startswith("counterfactual")]
            beaten = [
                b
                for i, b in enumerate(budgets)
                if min(v[i] for v in cfs) >= min(curves[name][i] for name in heatmaps)
            ]
            won.append(str(len(budgets) - len(beaten)))
            lost.append(", ".join(map(str, beaten)) or "-")
        area = r["area_under_phi_curve"]
        best_cf = min(v for name, v in area.items() if name.startswith("counterfactual"))
        best_heat = min(heatmaps, key=area.__getitem__)
        sets = [r["quality"][n] for n in ("counterfactuals, concepts alternating", "Wachter")]
        oracle = "digit_to_normal" in sets[0]["oracle"]
        ms = r["ms_ratio_to_counterfactuals"]
        cells = [
            r.get("dataset", "colored_mnist"),
            r["detector"],
            str(r.get("normal_class", "-")),
            f"{100 * r['detector_auroc']:.1f}",
            " / ".join(won),
            "; ".join(lost),
            f"{best_cf:.3f} / {area[best_heat]:.3f} ({best_heat})",
            " / ".join(f"{100 * q['validity']:.1f}" for q in sets),
            " / ".join(f"{q['fidn']:.0f}" for q in sets),
            " / ".join(f"{100 * q['oracle']['digit_to_normal']:.1f}" for q in sets)
            if oracle
            else "-",
            f"{ms['IntegratedGradients']:.1f}x",
            f"{ms['Wachter (100 Adam steps)']:.1f}x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo-dir", type=Path, default=Path("captum_cfx_demo"))
    parser.add_argument(
        "--n",
        type=int,
        default=64,
        help="flagged test anomalies to explain, spread over all flagged ones",
    )
    parser.add_argument(
        "--explainer",
        type=Path,
        help="a folder saved by paper_tables_{mnist,colored}.py --explainers",
    )
    parser.add_argument(
        "--detector", choices=DETECTORS, help="with --explainer: the cell's detector"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the cell's seed (with --explainer) and GradientShap's random draws",
    )
    parser.add_argument("--dataset", choices=["colored_mnist", "mnist"], default="colored_mnist")
    parser.add_argument("--normal-class", type=int, help="with --dataset mnist: the cell's digit")
    parser.add_argument(
        "--patch-outliers",
        action="store_true",
        help="with --dataset mnist: the cell's detector had pasted patches in its outlier "
        "exposure (the table's BCE-OE cells)",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS / "heatmaps" / "colored_mnist_demo_bce.json"
    )
    parser.add_argument("--table", action="store_true", help="print the tables of --out and stop")
    parser.add_argument(
        "--summary", type=Path, nargs="+", help="print one summary row per JSON given and stop"
    )
    args = parser.parse_args()
    if args.table:
        print(markdown_tables(json.loads(args.out.read_text())))
        return
    if args.summary:
        print(summary_table([json.loads(path.read_text()) for path in args.summary]))
        return
    if (args.explainer is None) != (args.detector is None):
        parser.error("--explainer and --detector go together")
    if args.dataset == "mnist" and (args.explainer is None or args.normal_class is None):
        parser.error("--dataset mnist needs --explainer, --detector and --normal-class")
    cell = mnist_cell(args) if args.dataset == "mnist" else colored_cell(args)
    explainer = CounterfactualAnomalyExplainer.load(cell.explainer_dir, detector=cell.detector)
    phi, fcdd, test = explainer.forward_func, cell.fcdd, cell.test
    test_scores = score_images(phi, test.images)
    detector_auroc = auroc(test.targets, test_scores)
    anomalies = test.anomalous()
    flagged = (test_scores[test.targets == 1] >= 0.5).nonzero()[:, 0]
    # evenly spread over the flagged anomalies, which the test split orders by digit
    flagged = flagged[torch.linspace(0, len(flagged) - 1, min(args.n, len(flagged))).long()]
    x = anomalies.images[flagged]
    n, channels = len(x), x.shape[1]
    baseline = cell.train.normal().images.mean(0, keepdim=True)

    cfs, ms_cf = timed(lambda: explainer.counterfactuals(x), n)
    maps, ms = {}, {"counterfactuals (all K)": ms_cf}
    methods = {
        "IntegratedGradients": lambda: IntegratedGradients(phi).attribute(
            x, n_steps=50, internal_batch_size=512
        ),
        "Saliency": lambda: Saliency(phi).attribute(x.clone().requires_grad_(True), abs=True),
        "GradientShap": lambda: gradient_shap(phi, x, baseline, args.seed),
        "Occlusion": lambda: Occlusion(phi).attribute(
            x, sliding_window_shapes=(channels, 4, 4), strides=(channels, 2, 2)
        ),
        "FCDD": lambda: fcdd.heatmap(x).detach(),
    }
    for name, method in methods.items():
        maps[name], ms[name] = timed(method, n)
    wachter_cf, ms["Wachter (100 Adam steps)"] = timed(lambda: wachter(phi, x), n)

    edits = {}  # method -> the edited images at each budget
    for k in range(cfs.shape[1]):
        cf = cfs[:, k]
        edits[f"counterfactual {k}"] = [along(x, cf, b) for b in BUDGETS]
        edits[f"counterfactual {k}, largest changes first"] = [
            deletion(x, cf - x, cf, b) for b in BUDGETS
        ]
    for name, attribution in maps.items():
        edits[name] = [deletion(x, attribution.detach(), baseline, b) for b in BUDGETS]
    edits["Wachter"] = [along(x, wachter_cf, b) for b in BUDGETS]
    with torch.no_grad():
        curves = {name: [float(phi(e).mean()) for e in edited] for name, edited in edits.items()}
        logit_curves = {
            name: [float(phi.logit(e).mean()) for e in edited] for name, edited in edits.items()
        }
    area, logit_area = (
        {name: sum(v) / len(v) for name, v in c.items()} for c in (curves, logit_curves)
    )

    features, normal = cell.features, test.normal().images
    quality = {}
    candidates = {f"counterfactual {k}": cfs[:, k] for k in range(cfs.shape[1])}
    # all K concepts in one set of n images (image i by concept i mod K), the set FIDN compares
    candidates["counterfactuals, concepts alternating"] = cfs[
        torch.arange(n), torch.arange(n) % cfs.shape[1]
    ]
    candidates["Wachter"] = wachter_cf
    with torch.no_grad():
        for name, cf in candidates.items():
            quality[name] = {
                "validity": validity(phi(cf)),
                "proximity": proximity(cf, x),
                "fidn": fidn(cf, x, normal, features),
                "oracle": cell.oracle(cf, flagged),
            }
    report = {
        **provenance(),
        "dataset": args.dataset,
        "normal_class": args.normal_class,
        "detector": args.detector or "bce",
        "explainer": str(cell.explainer_dir),
        "detector_auroc": detector_auroc,
        "n_images": n,
        "budgets_mean_l1": BUDGETS,
        "mean_phi_after_edit": curves,
        "mean_logit_after_edit": logit_curves,
        "area_under_phi_curve": area,
        "area_under_logit_curve": logit_area,
        "quality": quality,
        "ms_per_image": ms,
        "ms_ratio_to_counterfactuals": {name: value / ms_cf for name, value in ms.items()},
    }
    write_json(report, args.out)
    show = torch.linspace(0, n - 1, min(6, n)).long()
    with torch.no_grad():
        fig = explanation_figure(
            x[show],
            cfs[show],
            {
                "IG": maps["IntegratedGradients"][show],
                "Saliency": maps["Saliency"][show],
                "FCDD": maps["FCDD"][show],
            },
            phi(x[show]),
            phi(cfs[show].flatten(0, 1)).view(len(show), -1),
        )
    fig.savefig(args.out.with_suffix(".png"), dpi=90)
    print(markdown_tables(report))


if __name__ == "__main__":
    main()
