"""``train_detector``: fit one of the paper's detectors on a loader of normal images."""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Iterator, Literal, Optional, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from captum_cfx._device import resolve_device
from captum_cfx._validation import check_images
from captum_cfx.detectors.adapter import iterate_images
from captum_cfx.detectors.paper import DETECTORS, DSVDDDetector, PaperDetector
from captum_cfx.generative.augment import robust_view, shift_view


def _cycle(loader: Iterable[Any]) -> Iterator[Tensor]:
    while True:
        yield from iterate_images(loader)


def train_detector(
    name: str,
    normal_loader: Iterable[Any],
    outlier_loader: Optional[Iterable[Any]] = None,
    *,
    epochs: int = 20,
    lr: float = 1e-3,
    weight_decay: float = 1e-6,
    device: Union[str, torch.device, None] = None,
    seed: int = 0,
    augment: Union[bool, Literal["shift"]] = False,
    progress: bool = True,
) -> PaperDetector:
    """Train a paper's detector.

    Args:
        name: ``"bce"``, ``"hsc"``, ``"fcdd"`` (these need ``outlier_loader``) or ``"dsvdd"``.
        normal_loader: yields normal images (N, C, H, W) in [0, 1], or (images, labels).
        outlier_loader: yields outlier-exposure images of the same shape; cycled as needed.
        epochs: passes over ``normal_loader``.
        lr: Adam's learning rate.
        weight_decay: Adam's weight decay.
        device: where to train; CUDA when present, else CPU, when None.
        seed: seeds the weights (and the loaders' shuffling, when they use torch's RNG).
        augment: train on robust views of every batch, normal images and outliers alike
            (:func:`~captum_cfx.generative.augment.robust_view`: a shift by up to 2 pixels,
            a 3x3 blur for half the images, noise), the view under which the explainer's
            L_phi scores counterfactuals. Without it a detector can flag most normal images
            after a shift no person would notice, which leaves the explainer no edit that
            phi accepts (benchmarks/RESULTS.md, robust views). ``"shift"``: the shift
            alone (:func:`~captum_cfx.generative.augment.shift_view`), so that the detector
            does not learn to accept blurred images.
        progress: show a tqdm bar with the loss.

    Returns:
        The trained detector in eval mode; its ``forward`` is phi in [0, 1].
    """
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {sorted(DETECTORS)}.")
    cls = DETECTORS[name]
    if cls.needs_outliers and outlier_loader is None:
        raise ValueError(
            f"the {name!r} detector is trained with outlier exposure: pass outlier_loader "
            "(e.g. captum_cfx.data.random_strokes), or use 'dsvdd', which needs normal data only."
        )
    if augment not in (False, True, "shift"):
        raise ValueError(f"augment must be False, True or 'shift', got {augment!r}.")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}.")
    device = resolve_device(device)
    torch.manual_seed(seed)
    first = check_images(next(iterate_images(normal_loader)), "normal_loader's images")
    detector = cls(first.shape[1], first.shape[-1]).to(device)
    if isinstance(detector, DSVDDDetector):
        detector.eval()
        detector.init_center(torch.cat([b.to(device) for b in iterate_images(normal_loader)]))
    optimizer = torch.optim.Adam(detector.parameters(), lr=lr, weight_decay=weight_decay)
    outliers = _cycle(outlier_loader) if outlier_loader is not None else itertools.repeat(None)
    views = torch.Generator().manual_seed(seed)

    augmentation = {True: robust_view, "shift": shift_view}.get(augment)

    def view(x: Tensor) -> Tensor:
        x = x.to(device)
        return x if augmentation is None else augmentation(x, views)

    bar = tqdm(range(epochs), desc=f"train {name}", disable=not progress)
    for _ in bar:
        detector.train()
        for normal in iterate_images(normal_loader):
            out = next(outliers)
            loss = detector.loss(view(normal), None if out is None else view(out))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.4f}")
    detector.eval()
    if isinstance(detector, DSVDDDetector):
        with torch.no_grad():
            detector.calibrate(
                torch.cat([detector.distance(b.to(device)) for b in iterate_images(normal_loader)])
            )
    return detector
