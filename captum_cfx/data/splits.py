"""Turn a labelled data set into a normal-vs-anomalous one."""

from __future__ import annotations

from typing import Sequence, Union

import torch

from captum_cfx.data.dataset import LabeledImages


def one_vs_rest(dataset: LabeledImages, normal_classes: Union[int, Sequence[int]]) -> LabeledImages:
    """Targets become 0 for ``normal_classes`` and 1 for every other class.

    Args:
        dataset: images whose ``targets`` are class labels.
        normal_classes: the class (or classes) that count as normal.

    Returns:
        The same images with 0/1 targets; the old labels are kept as ``factors["class"]``.
    """
    classes = [normal_classes] if isinstance(normal_classes, int) else list(normal_classes)
    present = set(dataset.targets.unique().tolist())
    missing = [c for c in classes if c not in present]
    if not classes or missing:
        raise ValueError(
            f"normal_classes {classes} must name classes present in the data set "
            f"({sorted(present)}); missing: {missing}."
        )
    normal = torch.isin(dataset.targets, torch.tensor(classes, dtype=dataset.targets.dtype))
    factors = {"class": dataset.targets, **dataset.factors}
    return LabeledImages(dataset.images, (~normal).long(), factors, dataset.source, dataset.meta)
