"""Diagnosing single explanations: is each counterfactual normal, and normal for a reason a
person can see?

``fit`` records what normal images look like (:class:`NormalReference`); :func:`diagnose`
reads every counterfactual of an image against it and flags the five ways an explanation
fails: it is not normal to phi (``not_normal``), it draws a mark where no normal image has
ink (``off_support``: phi accepts a shortcut), it fades the image to half the contrast of
almost any normal image (``faded``: phi accepts an image with little in it), phi calls it normal
though it came no closer to any normal image than the input was (``adversarial``), or another
concept made the same edit (``same_as_other_concept``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List

import torch
import torch.nn.functional as F
from torch import Tensor

from captum_cfx.metrics import OFF_SUPPORT_MIN_MASS, contrast, normal_support, off_support_mass

if TYPE_CHECKING:
    from captum_cfx.streaming import Images

#: The side of the pooled images in which the nearest normal image is found.
FEATURE_SIDE = 8
#: The most normal images the reference keeps for the nearest-normal distance.
REFERENCE_MAX = 1024
#: ``adversarial``: phi calls the counterfactual normal, yet its nearest normal image is at
#: least this share of the input's distance to its own nearest normal image.
ADVERSARIAL_RATIO = 0.95
#: ``same_as_other_concept``: two concepts' counterfactuals differ by less than this share of
#: their distance to the input (as ``fit_report.MIN_DISTINCTNESS``).
SAME_EDIT_RATIO = 0.2
#: ``off_support``: the share of held-out normal images allowed to exceed the limit.
OFF_SUPPORT_QUANTILE = 0.99
#: ``faded``: the limit is ``FAINT_SHARE`` of the contrast that all but ``FAINT_QUANTILE`` of
#: the held-out normal images show (a margin, so that a smoother rendering of a noisy normal
#: image is not taken for a faded one).
FAINT_QUANTILE = 0.01
FAINT_SHARE = 0.5
#: ``faded``: the counterfactual also keeps less than this share of the input's contrast (an
#: input that was faint itself is not faded by its counterfactual).
FADE_RATIO = 0.8


def features(images: Tensor) -> Tensor:
    """Images (N, C, H, W) -> their appearance at ``FEATURE_SIDE`` pixels a side, (N, D)."""
    side = min(FEATURE_SIDE, *images.shape[-2:])
    return F.adaptive_avg_pool2d(images.float(), side).flatten(1)


@dataclass
class NormalReference:
    """What the normal images look like, for :func:`diagnose`.

    Attributes:
        support: (H, W), each pixel's 0.99 quantile of the normal images' brightest channel
            (:func:`captum_cfx.metrics.normal_support`).
        features: (M, D), :func:`features` of up to ``REFERENCE_MAX`` normal images.
        off_support_limit: the ink off the support (:func:`~captum_cfx.metrics.off_support_mass`)
            above which a counterfactual is flagged: at least ``OFF_SUPPORT_MIN_MASS``, and
            above what all but 1% of the held-out normal images show themselves.
        faint_limit: the :func:`~captum_cfx.metrics.contrast` below which a counterfactual is
            faded: half of what all but 1% of the held-out normal images show (0, no flag,
            when none was held out).
    """

    support: Tensor
    features: Tensor
    off_support_limit: Tensor
    faint_limit: Tensor

    @classmethod
    def from_images(cls, normal: Images, held_out: Tensor, seed: int) -> NormalReference:
        """The reference of the training ``normal`` images (M, C, H, W), its support and
        features those of up to ``REFERENCE_MAX`` of them drawn with ``seed``, its limit set on
        the ``held_out`` normal images (M', C, H, W; may be empty, then the limit is the
        floor)."""
        order = torch.randperm(len(normal), generator=torch.Generator().manual_seed(seed))
        kept = normal[order[:REFERENCE_MAX].to(normal.device)]
        support = normal_support(kept)
        limit, faint = torch.tensor(OFF_SUPPORT_MIN_MASS), torch.tensor(0.0)
        if len(held_out):
            mass = off_support_mass(held_out, torch.zeros_like(held_out), support)
            limit = torch.maximum(limit, mass.quantile(OFF_SUPPORT_QUANTILE).cpu())
            faint = FAINT_SHARE * contrast(held_out.float()).quantile(FAINT_QUANTILE).cpu()
        return cls(support.cpu(), features(kept).cpu(), limit.float(), faint.float())

    def state_dict(self) -> Dict[str, Tensor]:
        """The tensors to save."""
        return {
            "support": self.support,
            "features": self.features,
            "off_support_limit": self.off_support_limit,
            "faint_limit": self.faint_limit,
        }

    @classmethod
    def from_state_dict(cls, state: Dict[str, Tensor]) -> NormalReference:
        """The inverse of :meth:`state_dict` (an explainer saved before ``faint_limit`` existed
        loads without the ``faded`` flag)."""
        faint = state.get("faint_limit", torch.tensor(0.0))
        return cls(state["support"], state["features"], state["off_support_limit"], faint)

    def nearest_distance(self, images: Tensor) -> Tensor:
        """Images (N, C, H, W) -> mean absolute distance (N,) of their features to the nearest
        normal image's."""
        query = features(images).to(self.features)
        return torch.cdist(query, self.features, p=1).amin(1) / query.shape[1]


#: The measures :func:`diagnose` reports per image and concept, besides phi.
MEASURES = ("l1", "l2", "off_support_mass", "contrast", "nearest_normal")
#: The flags :func:`diagnose` raises, in the order they are named.
FLAGS = ("not_normal", "off_support", "faded", "adversarial", "same_as_other_concept")


def flag_names(report: Dict[str, Tensor]) -> List[List[List[str]]]:
    """The names of the flags :func:`diagnose`'s ``report`` raised, per image and concept:
    ``names[i][k]`` lists those of image i's counterfactual for concept k (empty: none)."""
    n, k = report["flagged"].shape
    return [[[f for f in FLAGS if bool(report[f][i, c])] for c in range(k)] for i in range(n)]


def diagnose(
    inputs: Tensor,
    counterfactuals: Tensor,
    score_before: Tensor,
    score_after: Tensor,
    reference: NormalReference,
    target_score: float = 0.0,
) -> Dict[str, Tensor]:
    """Per image and concept, the measures and flags of an explanation.

    Args:
        inputs: images (N, C, H, W) in [0, 1].
        counterfactuals: their K counterfactuals (N, K, C, H, W).
        score_before: phi(inputs), (N,).
        score_after: phi of the counterfactuals, (N, K).
        reference: the normal images' :class:`NormalReference`.
        target_score: the score the counterfactuals were aimed at; ``not_normal`` and
            ``adversarial`` apply only when it is below 0.5.

    Returns:
        CPU tensors: ``score_before`` (N,); ``score_after``, ``l1`` and ``l2`` (mean per-pixel
        distances to the input), ``off_support_mass``, ``contrast``
        (:func:`~captum_cfx.metrics.contrast`), ``nearest_normal`` (the counterfactual's
        feature distance to the nearest normal image), each (N, K); ``nearest_normal_input``
        (N,); boolean flags (N, K) ``not_normal``, ``off_support``, ``faded``,
        ``adversarial``, ``same_as_other_concept``, and ``flagged``, any of them.
    """
    n, k = counterfactuals.shape[:2]
    x = inputs.detach().float().cpu()
    cfs = counterfactuals.detach().float().cpu()
    before, after = score_before.detach().float().cpu(), score_after.detach().float().cpu()
    delta = cfs - x[:, None]
    l1 = delta.abs().mean((2, 3, 4))
    l2 = delta.pow(2).mean((2, 3, 4)).sqrt()
    flat_cfs = cfs.flatten(0, 1)
    mass = off_support_mass(
        flat_cfs, x.repeat_interleave(k, 0), reference.support.to(flat_cfs)
    ).view(n, k)
    shown = contrast(flat_cfs).view(n, k)
    faded = (shown < reference.faint_limit) & (shown < FADE_RATIO * contrast(x)[:, None])
    nearest = reference.nearest_distance(flat_cfs).view(n, k)
    nearest_input = reference.nearest_distance(x)
    aimed_normal = target_score < 0.5
    not_normal = (after >= 0.5) & aimed_normal
    crossed = (before[:, None] >= 0.5) & (after < 0.5) & aimed_normal
    adversarial = crossed & (nearest >= ADVERSARIAL_RATIO * nearest_input[:, None])
    same = torch.zeros(n, k, dtype=torch.bool)
    for i in range(k):
        for j in range(k):
            if i != j:
                gap = (cfs[:, i] - cfs[:, j]).abs().mean((1, 2, 3))
                same[:, i] |= gap < SAME_EDIT_RATIO * l1[:, i]
    off_support = mass >= reference.off_support_limit
    return {
        "score_before": before,
        "score_after": after,
        "l1": l1,
        "l2": l2,
        "off_support_mass": mass,
        "contrast": shown,
        "nearest_normal": nearest,
        "nearest_normal_input": nearest_input,
        "not_normal": not_normal,
        "off_support": off_support,
        "faded": faded,
        "adversarial": adversarial,
        "same_as_other_concept": same,
        "flagged": not_normal | off_support | faded | adversarial | same,
    }


__all__ = ["FLAGS", "MEASURES", "NormalReference", "diagnose", "features", "flag_names"]
