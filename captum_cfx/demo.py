"""The demo: Colored-MNIST from the offline digits, a BCE-OE detector, its explainer, and
figures of counterfactuals beside Captum's heatmaps and FCDD's.

Everything it trains is saved in the output folder and reused by the next run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, Literal, Optional, Union

import torch
from captum.attr import IntegratedGradients, Saliency
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from captum_cfx._device import resolve_device
from captum_cfx._io import CLI_FILE, atomic_write_text
from captum_cfx.data import LabeledImages, colored_mnist, pasted_patches, random_strokes
from captum_cfx.detectors import (
    DETECTORS,
    FCDDDetector,
    PaperDetector,
    score_images,
    train_detector,
)
from captum_cfx.explainer import CounterfactualAnomalyExplainer
from captum_cfx.metrics import auroc, concept_accuracy, normality_auroc, proximity, validity
from captum_cfx.visualization import explanation_figure, traversal_strip

logger = logging.getLogger("captum_cfx")

#: Fit budgets: the default demo runs 8 minutes in all on 2 CPU cores, --quick under one.
DEMO_STEPS, QUICK_STEPS = 1100, 60
DEMO_DETECTOR_EPOCHS, QUICK_DETECTOR_EPOCHS = 30, 10


def colored_mnist_detector(
    name: str,
    train: LabeledImages,
    epochs: int = 30,
    seed: int = 0,
    device: Union[str, torch.device, None] = None,
    progress: bool = True,
    augment: Union[bool, Literal["shift"]] = False,
) -> PaperDetector:
    """A paper's detector for Colored-MNIST. Outlier exposure: 4,000 palette-coloured pen
    strokes and 2,000 normal digits with pasted palette-coloured patches; neither shares a
    class with the test anomalies, and the patches teach the detector that a pasted blob
    does not make an image normal. ``augment`` as in :func:`~captum_cfx.train_detector`."""
    palette = train.meta["palette"]
    strokes = random_strokes(4000, max_strokes=5, palette=palette, seed=seed + 1)
    patches = pasted_patches(train.normal().images, 2000, palette=palette, seed=seed + 2)
    outliers = TensorDataset(torch.cat([strokes.images, patches.images]))
    return train_detector(
        name,
        DataLoader(train.normal(), batch_size=128, shuffle=True),
        DataLoader(outliers, batch_size=128, shuffle=True),
        epochs=epochs,
        seed=seed,
        device=device,
        augment=augment,
        progress=progress,
    )


def _cached_detector(
    path: Path, name: str, train: LabeledImages, epochs: int, device: torch.device, progress: bool
) -> PaperDetector:
    """The detector saved at ``path``, or a newly trained one saved there."""
    if path.is_file():
        detector: PaperDetector = DETECTORS[name](3, 28).to(device)
        detector.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        logger.info("reusing the %s detector in %s", name, path)
        return detector.eval()
    detector = colored_mnist_detector(name, train, epochs, device=device, progress=progress)
    torch.save(detector.state_dict(), path)
    return detector


def pick_examples(anomalies: LabeledImages, scores: Tensor, n: int) -> Tensor:
    """Flagged anomalies of as many different (digit, colour) kinds as possible."""
    digits, colors, picked = set(), set(), []
    for i in (scores >= 0.5).nonzero()[:, 0].tolist():
        digit, color = int(anomalies.factors["digit"][i]), int(anomalies.factors["color"][i])
        if digit not in digits and color not in colors:
            digits.add(digit)
            colors.add(color)
            picked.append(i)
        if len(picked) == n:
            break
    return torch.tensor(picked, dtype=torch.long)


def run_demo(
    out: Union[str, Path],
    quick: bool = False,
    steps: Optional[int] = None,
    device: Union[str, torch.device, None] = None,
    progress: bool = True,
    detector_epochs: Optional[int] = None,
) -> Dict[str, Any]:
    """Train (or reuse) the detector and the explainer, write figures and metrics to ``out``.

    Args:
        out: the output folder; what it already holds is reused.
        quick: a short fit (``QUICK_STEPS``) instead of ``DEMO_STEPS``.
        steps: the fit steps, overriding ``quick``.
        device: where to train; CUDA when present, else CPU.
        progress: show progress bars.
        detector_epochs: training epochs of the BCE-OE and FCDD detectors; 30, or 10 with
            ``quick``.

    Returns:
        The metrics written to ``out/metrics.json``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device)
    detector_epochs = detector_epochs or (QUICK_DETECTOR_EPOCHS if quick else DEMO_DETECTOR_EPOCHS)
    train, test = colored_mnist(True), colored_mnist(False)
    logger.info("data: %s", train.source)
    detector = _cached_detector(
        out / "detector_bce.pt", "bce", train, detector_epochs, device, progress
    )
    fcdd = _cached_detector(
        out / "detector_fcdd.pt", "fcdd", train, detector_epochs, device, progress
    )
    assert isinstance(fcdd, FCDDDetector)

    saved = out / "explainer"
    if (saved / "config.json").is_file():
        logger.info("reusing the explainer in %s", saved)
        explainer = CounterfactualAnomalyExplainer.load(saved, detector=detector)
        explainer.generator_.to(device)
        explainer.concept_classifier_.to(device)
    else:
        explainer = CounterfactualAnomalyExplainer(n_concepts=2).fit(
            detector,
            DataLoader(train.normal(), batch_size=256),
            outlier_loader=DataLoader(train.anomalous(), batch_size=256),
            steps=steps or (QUICK_STEPS if quick else DEMO_STEPS),
            device=device,
            progress=progress,
            checkpoint_dir=out / "checkpoint",
        )
        explainer.save(saved)
    # So that `captum-cfx explain --explainer OUT/explainer` scores with this detector.
    cli_spec = {"paper_detector": "bce", "in_channels": 3, "image_size": 28}
    atomic_write_text(json.dumps({**cli_spec, "weights": "../detector_bce.pt"}), saved / CLI_FILE)
    phi = explainer.forward_func

    test_scores = score_images(phi, test.images.to(device))
    anomalies = test.anomalous()
    x_all = anomalies.images.to(device)
    anomaly_scores = test_scores[test.targets == 1]
    flagged = anomaly_scores >= 0.5
    cfs = explainer.counterfactuals(x_all, internal_batch_size=256)
    cf_scores = score_images(phi, cfs.flatten(0, 1)).view(len(x_all), -1)
    metrics = {
        "data_source": train.source,
        "detector_auroc": auroc(test.targets, test_scores),
        "normality_auroc": normality_auroc(test_scores[test.targets == 0], cf_scores.flatten()),
        "validity_flagged": validity(cf_scores[flagged]),
        "proximity_flagged": proximity(cfs[flagged].cpu(), anomalies.images[flagged][:, None]),
        "concept_accuracy": concept_accuracy(explainer.concept_classifier_, x_all, cfs),
        "n_test_anomalies": len(x_all),
        "n_flagged": int(flagged.sum()),
        "fit_steps": len(explainer.history_.get("loss_phi", [])),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))

    pick = pick_examples(anomalies, anomaly_scores, 6)
    x = x_all[pick]
    heatmaps = {
        "IntegratedGradients": IntegratedGradients(phi).attribute(
            x, n_steps=50, internal_batch_size=100
        ),
        "Saliency": Saliency(phi).attribute(x, abs=True),
        "FCDD": fcdd.heatmap(x).detach(),
    }
    figure = explanation_figure(
        x.cpu(),
        cfs[pick].cpu(),
        {k: v.cpu() for k, v in heatmaps.items()},
        anomaly_scores[pick],
        cf_scores[pick],
    )
    figure.savefig(out / "explanations.png", dpi=90)
    alphas = explainer.traversal_alphas(x)
    for k in range(explainer.n_concepts_):
        strip = explainer.traverse(x, concept=k, alphas=alphas)
        strip_scores = score_images(phi, strip.flatten(0, 1)).view(strip.shape[:2])
        traversal_strip(strip.cpu(), alphas, strip_scores).savefig(
            out / f"traversal_concept{k}.png", dpi=90
        )
    return metrics
