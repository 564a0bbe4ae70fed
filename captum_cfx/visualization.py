"""Figures of counterfactuals, built on matplotlib's object API (no pyplot state: headless).

Every function returns a :class:`matplotlib.figure.Figure`; save it with ``fig.savefig``.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor


def to_hwc(image: Tensor) -> np.ndarray:
    """One image (C, H, W) as a numpy array (H, W, C), the layout Captum's
    ``visualize_image_attr`` and matplotlib expect."""
    if image.dim() != 3:
        raise ValueError(f"to_hwc takes one image (C, H, W), got shape {tuple(image.shape)}.")
    return image.detach().cpu().permute(1, 2, 0).numpy()


#: The colour maps of a difference map (signed: red where the input has more) and a heatmap.
DIFFERENCE_CMAP, HEATMAP_CMAP = "bwr", "inferno"


def image_array(image: Tensor) -> np.ndarray:
    """One image (C, H, W) as shown: clamped to [0, 1], (H, W) for one channel (drawn in grey
    from 0 to 1), else (H, W, C)."""
    array = to_hwc(image.clamp(0, 1))
    return array[..., 0] if array.shape[-1] == 1 else array


def difference_map(difference: Tensor) -> Tuple[np.ndarray, float]:
    """A difference (C, H, W), input minus counterfactual, as shown: its signed sum over
    channels (H, W) and the bound b of its colour scale, drawn from -b (blue: the input has
    less) to b (red: the input has more) with :data:`DIFFERENCE_CMAP`."""
    signed = difference.detach().cpu().sum(0).numpy()
    return signed, max(float(np.abs(signed).max()), 1e-6)


def heatmap_map(heat: Tensor) -> np.ndarray:
    """An attribution (C, H, W) as shown: its absolute value summed over channels (H, W),
    drawn with :data:`HEATMAP_CMAP`."""
    return heat.detach().cpu().abs().sum(0).numpy()


def _show(ax, image: Tensor, title: str) -> None:
    ax.imshow(image_array(image), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=7)
    ax.set_axis_off()


def _show_difference(ax, difference: Tensor, title: str) -> None:
    signed, bound = difference_map(difference)
    ax.imshow(signed, cmap=DIFFERENCE_CMAP, vmin=-bound, vmax=bound)
    ax.set_title(title, fontsize=7)
    ax.set_axis_off()


def counterfactual_grid(
    inputs: Tensor,
    counterfactuals: Tensor,
    input_scores: Optional[Tensor] = None,
    counterfactual_scores: Optional[Tensor] = None,
    show_differences: bool = True,
    concept_names: Optional[Sequence[str]] = None,
    flags: Optional[Sequence[Sequence[Sequence[str]]]] = None,
) -> Figure:
    """Rows of: input, counterfactual per concept, difference per concept.

    Args:
        inputs: (N, C, H, W) in [0, 1].
        counterfactuals: (N, K, C, H, W), from ``explainer.counterfactuals``.
        input_scores: phi of the inputs (N,), shown in the titles.
        counterfactual_scores: phi of the counterfactuals (N, K).
        show_differences: add the signed sum over channels of input - counterfactual
            (red: the anomaly has more; blue: less).
        concept_names: K column names; "concept k" when None.
        flags: per image and concept, the names of the flags its diagnosis raised
            (:func:`captum_cfx.diagnosis.flag_names`); a flagged counterfactual's title
            names them in red.

    Returns:
        The figure.
    """
    n, k = counterfactuals.shape[:2]
    names = list(concept_names or [f"concept {i}" for i in range(k)])
    cols = 1 + k * (2 if show_differences else 1)
    fig = Figure(figsize=(1.3 * cols, 1.4 * n))
    axes = fig.subplots(n, cols, squeeze=False)
    for row in range(n):
        score = "" if input_scores is None else f" phi={float(input_scores[row]):.2f}"
        _show(axes[row, 0], inputs[row], "input" + score)
        for c in range(k):
            score = (
                ""
                if counterfactual_scores is None
                else f" phi={float(counterfactual_scores[row, c]):.2f}"
            )
            raised = [] if flags is None else list(flags[row][c])
            title = names[c] + score + "".join(f"\n{name}" for name in raised)
            _show(axes[row, 1 + c], counterfactuals[row, c], title)
            if raised:
                axes[row, 1 + c].title.set_color("red")
            if show_differences:
                _show_difference(
                    axes[row, 1 + k + c],
                    inputs[row] - counterfactuals[row, c],
                    f"x - cf ({names[c]})",
                )
    fig.tight_layout()
    return fig


def _show_heatmap(ax, heat: Tensor, title: str) -> None:
    ax.imshow(heatmap_map(heat), cmap=HEATMAP_CMAP)
    ax.set_title(title, fontsize=7)
    ax.set_axis_off()


def explanation_figure(
    inputs: Tensor,
    counterfactuals: Tensor,
    heatmaps: Dict[str, Tensor],
    input_scores: Tensor,
    counterfactual_scores: Tensor,
) -> Figure:
    """Counterfactuals beside heatmaps, one anomaly per row.

    Columns: input, counterfactual per concept, difference per concept, one column per
    heatmap (Captum's IntegratedGradients, Saliency, ..., FCDD), each titled with phi's score
    where it has one.

    Args:
        inputs: (N, C, H, W) in [0, 1].
        counterfactuals: (N, K, C, H, W).
        heatmaps: name -> attribution (N, C', H, W); shown as the absolute value summed
            over channels.
        input_scores: phi (N,). counterfactual_scores: phi (N, K).

    Returns:
        The figure.
    """
    n, k = counterfactuals.shape[:2]
    cols = 1 + 2 * k + len(heatmaps)
    fig = Figure(figsize=(1.3 * cols, 1.45 * n))
    axes = fig.subplots(n, cols, squeeze=False)
    for row in range(n):
        _show(axes[row, 0], inputs[row], f"input phi={float(input_scores[row]):.2f}")
        for c in range(k):
            score = float(counterfactual_scores[row, c])
            _show(axes[row, 1 + c], counterfactuals[row, c], f"concept {c} phi={score:.2f}")
            _show_difference(
                axes[row, 1 + k + c], inputs[row] - counterfactuals[row, c], f"x - cf {c}"
            )
        for col, (name, heat) in enumerate(heatmaps.items()):
            _show_heatmap(axes[row, 1 + 2 * k + col], heat[row], name)
    fig.tight_layout()
    return fig


def traversal_strip(strip: Tensor, alphas: Tensor, scores: Optional[Tensor] = None) -> Figure:
    """Rows of alpha traversals: the image at each target score on its way to normal.

    Args:
        strip: (N, A, C, H, W), from ``explainer.traverse``.
        alphas: the target scores (N, A) or (A,).
        scores: phi of each image in the strip (N, A), shown in the titles.

    Returns:
        The figure.
    """
    n, a = strip.shape[:2]
    alphas = alphas.expand(n, a) if alphas.dim() == 1 else alphas
    fig = Figure(figsize=(1.2 * a, 1.35 * n))
    axes = fig.subplots(n, a, squeeze=False)
    for row in range(n):
        for col in range(a):
            title = f"alpha={float(alphas[row, col]):.2f}"
            if scores is not None:
                title += f"\nphi={float(scores[row, col]):.2f}"
            _show(axes[row, col], strip[row, col], title)
    fig.tight_layout()
    return fig
