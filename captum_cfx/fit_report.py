"""Judging a fit: the counterfactuals of anomalies phi flags, against normal images held out.

``fit`` holds out a share of the normal images (:func:`split_holdout`) and judges the
counterfactuals of a probe set of anomalies (:func:`probe_anomalies`): the outliers the user
gave, or, without them, generic corruptions of the held-out normal images that phi flags, of
kinds G never trains on (a draining of colour, a shear, a half taken from another image, a
blur; :func:`corruptions`). The report
(:func:`judge`) holds validity, the normality AuROC against the held-out normal images,
proximity and the concepts' distinctness; :func:`failures` reads it and names what failed.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from captum_cfx.data.outliers import added_strokes, pasted_patches
from captum_cfx.detectors.adapter import AnomalyDetector, score_images
from captum_cfx.diagnosis import NormalReference, diagnose
from captum_cfx.metrics import normality_auroc, proximity, validity

#: The share of the normal images ``fit`` holds out, and the most it holds out.
HOLDOUT_SHARE, HOLDOUT_MAX = 0.1, 512
#: The most corruptions ``fit`` makes for G to train on when no outliers are given.
SELF_MADE_MAX = 4096
#: The most anomalies a report judges.
PROBE_SIZE = 256
#: A report on fewer anomalies than this cannot vouch for the explanations: one on eleven
#: reads 100% valid where 300 anomalies give 48% (benchmarks/RESULTS.md, generalisation).
MIN_JUDGED = 30
#: A fit fails when fewer than this share of one concept's counterfactuals score below 0.5 ...
MIN_VALIDITY = 0.8
#: ... or when this share of one concept's counterfactuals is a shortcut (off the normal
#: support, or adversarial: :mod:`captum_cfx.diagnosis`) ...
MAX_SHORTCUTS = 0.5
#: ... or when its K counterfactuals of an image differ by less than this share of their
#: distance to the input (the concepts make one edit).
MIN_DISTINCTNESS = 0.2

Counterfactuals = Callable[[Tensor], Tensor]


def split_holdout(normal: Tensor, seed: int) -> Tuple[Tensor, Tensor]:
    """(training, held out) normal images: ``HOLDOUT_SHARE`` of ``normal`` (M, C, H, W), at
    least one image and at most ``HOLDOUT_MAX``, drawn at random with ``seed``; nothing is
    held out from fewer than 10 images."""
    m = len(normal)
    n_out = 0 if m < 10 else min(HOLDOUT_MAX, max(1, int(HOLDOUT_SHARE * m)))
    order = torch.randperm(m, generator=torch.Generator().manual_seed(seed)).to(normal.device)
    return normal[order[n_out:]], normal[order[:n_out]]


def corruptions(normal: Tensor, seed: int, kinds: str = "training") -> Tensor:
    """Generic anomalies made from normal images (M, C, H, W) -> (M, C, H, W), one per image,
    each of a kind drawn at random from one of two disjoint families.

    ``kinds="training"``, the anomalies G trains on without outliers: colour channels rotated
    (grey images inverted), a quarter turn, a 1.5x zoom on the centre, pasted patches, an
    added pen stroke, a dimming. ``kinds="unseen"``, the anomalies ``fit`` judges by, which G
    never meets in training: the colours drained to grey (grey images: a gamma of 3), a
    shear, the right half taken from another image of the batch, a blur.
    """
    if kinds not in _KINDS:
        raise ValueError(f"kinds must be one of {sorted(_KINDS)}, got {kinds!r}.")
    g = torch.Generator().manual_seed(seed)
    makers = _KINDS[kinds]
    out = normal.clone()
    drawn = torch.randint(len(makers), (len(normal),), generator=g)
    for kind, make in enumerate(makers):
        members = (drawn == kind).nonzero().flatten().to(normal.device)
        if len(members):
            sub_seed = int(torch.randint(2**31, (1,), generator=g))
            out[members] = make(normal[members], sub_seed).clamp(0, 1)
    return out


def _recolour(x: Tensor, seed: int) -> Tensor:
    return x.roll(1, dims=1) if x.shape[1] == 3 else 1 - x


def _turn(x: Tensor, seed: int) -> Tensor:
    return x.rot90(1, dims=(2, 3)) if x.shape[2] == x.shape[3] else x.flip(2)


def _zoom(x: Tensor, seed: int) -> Tensor:
    h, w = x.shape[-2:]
    crop = x[..., h // 6 : h - h // 6, w // 6 : w - w // 6]
    return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)


def _patches(x: Tensor, seed: int) -> Tensor:
    return pasted_patches(x, len(x), seed=seed).images.to(x)


def _strokes(x: Tensor, seed: int) -> Tensor:
    if x.shape[-1] != x.shape[-2]:
        return x.flip(3)
    return added_strokes(x, len(x), max_strokes=2, seed=seed).images.to(x)


def _dim(x: Tensor, seed: int) -> Tensor:
    return 0.4 * x


def _drain(x: Tensor, seed: int) -> Tensor:
    return x.mean(1, keepdim=True).expand_as(x) if x.shape[1] == 3 else x.pow(3)


def _shear(x: Tensor, seed: int) -> Tensor:
    theta = torch.tensor([[1.0, 0.4, 0.0], [0.0, 1.0, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def _halves(x: Tensor, seed: int) -> Tensor:
    partner = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    out = x.clone()
    w = x.shape[-1]
    out[..., w // 2 :] = x[partner.to(x.device)][..., w // 2 :]
    return out


def _blur(x: Tensor, seed: int) -> Tensor:
    side = max(3, (min(x.shape[-2:]) // 6) | 1)
    return gaussian_blur(x, [side, side], [side / 3, side / 3])


_KINDS: Dict[str, Tuple[Callable[[Tensor, int], Tensor], ...]] = {
    "training": (_recolour, _turn, _zoom, _patches, _strokes, _dim),
    "unseen": (_drain, _shear, _halves, _blur),
}


def self_made_outliers(phi: AnomalyDetector, normal: Tensor, seed: int) -> Tensor:
    """Outliers for G to train on when the user has none: corruptions of the normal images
    (M, C, H, W), each image four times (at most ``SELF_MADE_MAX`` in all), that phi flags;
    (n, C, H, W), possibly empty. Without anomalous inputs G meets anomalies only through its
    own edits, and learns little of how to undo the anomalies phi flags."""
    copies = normal.repeat(4, 1, 1, 1)[:SELF_MADE_MAX]
    pool = corruptions(copies, seed)
    return pool[(score_images(phi, pool) >= 0.5).to(pool.device)] if len(pool) else pool


def probe_anomalies(
    phi: AnomalyDetector, held_out: Tensor, outliers: Optional[Tensor], seed: int
) -> Tuple[Tensor, str]:
    """Up to ``PROBE_SIZE`` anomalies that phi flags (score >= 0.5), and where they came from,
    from the first of these pools where phi flags any: random ``outliers`` when given
    (``"outlier_loader"``); corruptions of the held-out normal images (at least four of each,
    and at least ``2 * PROBE_SIZE`` in all) of kinds G never trains
    on (``"unseen corruptions"``), so that the judgement measures how G does on anomalies it
    did not learn to undo, as the user's will be; corruptions of the kinds G trains on
    (``"training corruptions"``). May be empty when phi flags none of any."""
    g = torch.Generator().manual_seed(seed)
    pools = [] if outliers is None else [(outliers, "outlier_loader")]
    # Each copy draws its own corruption; a small held-out set is copied more often.
    copies = held_out.repeat(max(4, math.ceil(2 * PROBE_SIZE / max(len(held_out), 1))), 1, 1, 1)
    pools.append((corruptions(copies, seed, "unseen"), "unseen corruptions"))
    pools.append((corruptions(copies, seed, "training"), "training corruptions"))
    for pool, source in pools:
        if len(pool) > PROBE_SIZE * 2:
            pool = pool[torch.randperm(len(pool), generator=g)[: PROBE_SIZE * 2].to(pool.device)]
        if not len(pool):
            continue
        flagged = pool[(score_images(phi, pool) >= 0.5).to(pool.device)]
        if len(flagged):
            return flagged[:PROBE_SIZE], source
    return held_out[:0], "training corruptions"


def judge(
    counterfactuals: Counterfactuals,
    phi: AnomalyDetector,
    anomalies: Tensor,
    normal_scores: Tensor,
    reference: NormalReference,
) -> Dict[str, Any]:
    """The report on a fit.

    Args:
        counterfactuals: images (N, C, H, W) -> their K counterfactuals (N, K, C, H, W).
        phi: the detector.
        anomalies: the probe anomalies (N, C, H, W), all flagged by phi; may be empty.
        normal_scores: phi's scores (M,) on the held-out normal images.
        reference: the normal images' :class:`~captum_cfx.diagnosis.NormalReference`.

    Returns:
        ``n_judged``; per concept (``concepts``, a list of K dicts) ``validity`` (share with
        phi < 0.5), ``normality_auroc`` (against ``normal_scores``; 0.5 is ideal) and
        ``proximity`` (mean per-pixel L1 to the input), ``off_support``, ``faded`` and
        ``adversarial`` (the shares :func:`~captum_cfx.diagnosis.diagnose` flags so); their
        means ``validity``, ``normality_auroc`` and ``proximity``; ``distinctness`` (mean L1
        between two concepts' counterfactuals of one image over the mean proximity; None for
        K = 1);
        ``false_alarms`` (share of the held-out normal images phi flags). Figures are None
        when there is nothing to judge.
    """
    report: Dict[str, Any] = {
        "n_judged": len(anomalies),
        "n_held_out": len(normal_scores),
        "false_alarms": float((normal_scores >= 0.5).float().mean())
        if len(normal_scores)
        else None,
    }
    if not len(anomalies):
        return {
            **report,
            "validity": None,
            "normality_auroc": None,
            "proximity": None,
            "distinctness": None,
            "concepts": [],
        }
    cfs = counterfactuals(anomalies)  # (N, K, C, H, W)
    after = score_images(phi, cfs.flatten(0, 1)).view(len(anomalies), -1)
    flags = diagnose(anomalies, cfs, score_images(phi, anomalies), after, reference)
    concepts: List[Dict[str, Optional[float]]] = []
    for k in range(cfs.shape[1]):
        scores = after[:, k]
        concepts.append(
            {
                "validity": validity(scores),
                "normality_auroc": normality_auroc(normal_scores, scores)
                if len(normal_scores)
                else None,
                "proximity": proximity(cfs[:, k], anomalies),
                "off_support": float(flags["off_support"][:, k].float().mean()),
                "faded": float(flags["faded"][:, k].float().mean()),
                "adversarial": float(flags["adversarial"][:, k].float().mean()),
            }
        )
    k_count = cfs.shape[1]
    distinct = None
    if k_count > 1:
        pairs = [
            float((cfs[:, i] - cfs[:, j]).abs().mean())
            for i in range(k_count)
            for j in range(i + 1, k_count)
        ]
        mean_proximity = sum(c["proximity"] for c in concepts) / k_count  # type: ignore[misc]
        distinct = sum(pairs) / len(pairs) / max(mean_proximity, 1e-8)
    aurocs = [c["normality_auroc"] for c in concepts if c["normality_auroc"] is not None]
    return {
        **report,
        "validity": sum(c["validity"] for c in concepts) / k_count,  # type: ignore[misc]
        "normality_auroc": sum(aurocs) / len(aurocs) if aurocs else None,
        "proximity": sum(c["proximity"] for c in concepts) / k_count,  # type: ignore[misc]
        "distinctness": distinct,
        "concepts": concepts,
    }


def quality(report: Dict[str, Any]) -> float:
    """One number to stop on (higher is better): validity minus the normality AuROC's distance
    from 1/2, averaged over the concepts; -inf when nothing was judged."""
    if not report["concepts"]:
        return float("-inf")
    terms = [
        c["validity"] - abs((c["normality_auroc"] if c["normality_auroc"] is not None else 1) - 0.5)
        for c in report["concepts"]
    ]
    return sum(terms) / len(terms)


def failures(report: Dict[str, Any]) -> List[str]:
    """What failed, in words, with the likely cause; empty when the fit passed."""
    problems = []
    if report["n_judged"] == 0:
        problems.append(
            "no anomaly was at hand to judge the counterfactuals by: phi flags none of the "
            "given outliers or of the corrupted held-out normal images, so nothing says that "
            "the explanations reach normal (pass outlier_loader= with anomalies phi flags)"
        )
        return problems
    if report["n_judged"] < MIN_JUDGED:
        problems.append(
            f"only {report['n_judged']} anomalies that phi flags were at hand to judge the "
            f"counterfactuals by ({report.get('judged_on')}; {MIN_JUDGED} needed): shares of so "
            "few cannot vouch for the explanations (pass outlier_loader= with more anomalies "
            "phi flags)"
        )
    short = [k for k, c in enumerate(report["concepts"]) if c["validity"] < MIN_VALIDITY]
    if short:
        cause = ""
        false_alarms, view_false_alarms = report["false_alarms"], report.get("view_false_alarms")
        if false_alarms is not None and false_alarms >= 0.5:
            cause = (
                f"; phi itself flags {false_alarms:.0%} of the normal images it was given (held "
                "out), as they are: at its 0.5 threshold normal images are not normal to it, so "
                "counterfactuals that look like them cannot be either (train the detector until "
                "it passes its own normal images, or give scores whose 0.5 separates normal "
                "from anomalous)"
            )
        elif view_false_alarms is not None and view_false_alarms >= 0.5:
            cause = (
                f"; phi itself flags {view_false_alarms:.0%} of the normal images after the "
                "small shift, blur and noise under which L_phi scores counterfactuals, which "
                "leaves G few edits that phi accepts (a detector trained on such views, as "
                "train_detector(..., augment=True) trains one, does not flag them)"
            )
        shares = ", ".join(f"concept {k}: {report['concepts'][k]['validity']:.0%}" for k in short)
        problems.append(
            f"too few counterfactuals of {report['n_judged']} anomalies phi flags "
            f"({report.get('judged_on')}) score below 0.5 ({shares}; {MIN_VALIDITY:.0%} "
            f"needed): those explanations are not normal yet{cause}. Fit for more steps "
            "(max_steps), or raise GeneratorConfig.lambda_phi"
        )
    for name, share, what in (
        ("off_support", MAX_SHORTCUTS, "draw a mark where no normal image has ink"),
        ("faded", MAX_SHORTCUTS, "fade the image to half the contrast of 99% of normal images"),
        ("adversarial", MAX_SHORTCUTS, "come no closer to any normal image than the input"),
    ):
        marked = [
            f"concept {k}: {c[name]:.0%}"
            for k, c in enumerate(report["concepts"])
            if c.get(name) is not None and c[name] >= share
        ]
        if marked:
            problems.append(
                f"the counterfactuals phi calls normal {what} ({', '.join(marked)}): phi "
                "accepts a shortcut, and those explanations show it, not a reason (train the "
                "detector against such edits, e.g. with outliers that carry them)"
            )
    rebuilt = (report.get("autoencoder") or {}).get("reconstruction_false_alarms")
    if rebuilt is not None and rebuilt > 1 - MIN_VALIDITY:
        problems.append(
            f"phi flags {rebuilt:.0%} of the autoencoder's reconstructions of held-out normal "
            "images: every counterfactual of the latent path is such a reconstruction, so "
            "phi's verdicts on them weigh the autoencoder's artefacts, not only G's edit (give "
            "a better autoencoder: train it longer or with more latent channels)"
        )
    distinct = report["distinctness"]
    if distinct is not None and distinct < MIN_DISTINCTNESS:
        problems.append(
            f"the concepts' counterfactuals of one image differ by {distinct:.0%} of their "
            "distance to the input: the K concepts show one edit, not K reasons (fit longer, "
            "or raise GeneratorConfig.lambda_distinct)"
        )
    return problems


__all__ = [
    "HOLDOUT_MAX",
    "HOLDOUT_SHARE",
    "MAX_SHORTCUTS",
    "MIN_DISTINCTNESS",
    "MIN_JUDGED",
    "MIN_VALIDITY",
    "PROBE_SIZE",
    "corruptions",
    "failures",
    "judge",
    "probe_anomalies",
    "quality",
    "split_holdout",
]
