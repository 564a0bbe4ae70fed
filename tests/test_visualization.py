"""captum_cfx.visualization: the figures' layout, titles and what each panel shows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from captum_cfx.visualization import (
    counterfactual_grid,
    difference_map,
    explanation_figure,
    heatmap_map,
    image_array,
    to_hwc,
    traversal_strip,
)


def test_to_hwc_and_image_array_give_matplotlibs_layout():
    image = torch.rand(3, 5, 7)
    assert to_hwc(image).shape == (5, 7, 3)
    grey = image_array(2 * image[:1] - 0.5)
    assert grey.shape == (5, 7) and grey.min() >= 0 and grey.max() <= 1  # clamped
    with pytest.raises(ValueError, match=r"one image \(C, H, W\)"):
        to_hwc(torch.rand(1, 3, 5, 7))


def test_difference_and_heatmap_maps_sum_over_channels():
    difference = torch.zeros(3, 4, 4)
    difference[:, 0, 0], difference[0, 1, 1] = 0.2, -0.1
    signed, bound = difference_map(difference)
    assert signed.shape == (4, 4) and signed[0, 0] == pytest.approx(0.6)
    assert signed[1, 1] == pytest.approx(-0.1) and bound == pytest.approx(0.6)
    np.testing.assert_allclose(heatmap_map(difference)[1, 1], 0.1, rtol=1e-6)


def test_counterfactual_grid_has_a_row_per_image_and_a_column_per_panel():
    inputs, cfs = torch.rand(3, 1, 8, 8), torch.rand(3, 2, 1, 8, 8)
    fig = counterfactual_grid(inputs, cfs, torch.tensor([0.9, 0.8, 0.7]), torch.rand(3, 2))
    assert len(fig.axes) == 3 * (1 + 2 + 2)
    assert fig.axes[5].get_title() == "input phi=0.80"
    np.testing.assert_allclose(fig.axes[5].images[0].get_array(), inputs[1, 0].numpy())
    assert fig.axes[3].get_title() == "x - cf (concept 0)"
    named = counterfactual_grid(inputs, cfs, show_differences=False, concept_names=["a", "b"])
    assert len(named.axes) == 3 * 3 and named.axes[2].get_title() == "b"
    flags = [[[], ["off_support"]], [[], []], [["not_normal", "adversarial"], []]]
    flagged = counterfactual_grid(inputs, cfs, show_differences=False, flags=flags)
    assert flagged.axes[2].get_title() == "concept 1\noff_support"
    assert flagged.axes[7].get_title() == "concept 0\nnot_normal\nadversarial"
    assert flagged.axes[2].title.get_color() == "red" != flagged.axes[1].title.get_color()


def test_explanation_figure_puts_the_heatmaps_after_the_counterfactuals():
    inputs, cfs = torch.rand(2, 3, 8, 8), torch.rand(2, 2, 3, 8, 8)
    heatmaps = {"IntegratedGradients": torch.randn(2, 3, 8, 8), "FCDD": torch.rand(2, 1, 8, 8)}
    fig = explanation_figure(inputs, cfs, heatmaps, torch.rand(2), torch.rand(2, 2))
    assert len(fig.axes) == 2 * (1 + 2 * 2 + 2)
    assert [ax.get_title() for ax in fig.axes[5:7]] == ["IntegratedGradients", "FCDD"]
    assert fig.axes[1].images[0].get_array().shape == (8, 8, 3)


def test_traversal_strip_titles_each_image_with_its_alpha_and_phi():
    strip = torch.rand(2, 4, 1, 8, 8)
    alphas = torch.linspace(1, 0, 4)
    fig = traversal_strip(strip, alphas, torch.full((2, 4), 0.25))
    assert len(fig.axes) == 8
    assert fig.axes[1].get_title() == "alpha=0.67\nphi=0.25"
    assert traversal_strip(strip, alphas).axes[7].get_title() == "alpha=0.00"
