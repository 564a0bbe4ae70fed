"""Metrics on inputs whose answers are known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from captum_cfx.data import DEFAULT_PALETTE
from captum_cfx.metrics import (
    auroc,
    colored_mnist_factors,
    concept_accuracy,
    digit_factors,
    disentanglement,
    fid,
    fidn,
    frechet_distance,
    inception_features,
    ink_colors,
    normal_support,
    normality_auroc,
    off_support_ink,
    posthoc_concept_accuracy,
    proximity,
    validity,
)

PALETTE = torch.tensor(list(DEFAULT_PALETTE.values()))


def test_auroc_known_answers():
    labels = torch.tensor([0, 0, 1, 1])
    assert auroc(labels, torch.tensor([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auroc(labels, torch.tensor([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert auroc(labels, torch.tensor([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert auroc(labels, torch.tensor([0.1, 0.6, 0.5, 0.9])) == 0.75
    with pytest.raises(ValueError, match="both"):
        auroc(torch.ones(3), torch.rand(3))


def test_normality_auroc_identical_sets_give_half_shifted_sets_give_one():
    scores = torch.rand(200)
    assert normality_auroc(scores, scores.clone()) == pytest.approx(0.5)
    assert normality_auroc(scores * 0.5, scores * 0.5 + 0.5) == 1.0
    assert normality_auroc(scores * 0.5 + 0.5, scores * 0.5) == 0.0


def test_validity_and_proximity():
    assert validity(torch.tensor([0.1, 0.4, 0.6, 0.9])) == 0.5
    x = torch.zeros(2, 3, 4, 4)
    assert proximity(x + 0.25, x) == pytest.approx(0.25)


class FixedDigits(nn.Module):
    """A stand-in digit oracle that reads a fixed answer per image."""

    def __init__(self, answers):
        super().__init__()
        self.answers = torch.tensor(answers)

    def forward(self, x):
        return nn.functional.one_hot(self.answers, 10).float()


def digit_image(color: int) -> torch.Tensor:
    """A 3x28x28 'digit': a thick vertical bar in a palette colour."""
    x = torch.zeros(3, 28, 28)
    x[:, 6:22, 11:17] = PALETTE[color][:, None, None]
    return x


def test_ink_colors_read_the_palette_and_background():
    ink = ink_colors(digit_image(3)[None], PALETTE)
    assert ink[0, 10, 12] == 3 and ink[0, 0, 0] == -1
    dim = ink_colors(0.6 * digit_image(1)[None], PALETTE)  # a darker red is still red
    assert dim[0, 10, 12] == 1


def test_oracle_table_on_constructed_counterfactuals():
    red = digit_image(1)
    recoloured = digit_image(0)  # same shape, cyan: the colour explanation
    patched = red.clone()
    patched[:, 0:4, 0:6] = PALETTE[0][:, None, None]  # a cyan bar pasted in a corner
    inputs = torch.stack([red, red, red, red])
    counterfactuals = torch.stack([recoloured, red, red, patched])
    # the oracle reads: digit 3 kept, digit 1 (made normal), digit 3 kept, digit 3 kept
    factors = colored_mnist_factors(
        counterfactuals,
        inputs,
        digits=torch.tensor([3, 3, 3, 3]),
        colors=torch.tensor([1, 1, 1, 1]),
        palette=PALETTE,
        digit_oracle=FixedDigits([3, 1, 3, 3]),
    )
    assert factors["color_to_normal"].tolist() == [True, False, False, False]
    assert factors["digit_to_normal"].tolist() == [False, True, False, False]
    assert factors["patch"].tolist() == [False, False, False, True]
    table = disentanglement(factors)
    assert table == {
        "color_only": 0.25,
        "digit_only": 0.25,
        "both": 0.0,
        "neither": 0.5,
        "other": 0.0,
        "patch": 0.25,
    }


def test_an_empty_image_is_not_a_digit_one():
    inputs = digit_image(1)[None]
    factors = colored_mnist_factors(
        torch.zeros_like(inputs),
        inputs,
        torch.tensor([3]),
        torch.tensor([1]),
        PALETTE,
        FixedDigits([1]),
    )
    assert not factors["digit_to_normal"].any()


def test_digit_factors_on_constructed_counterfactuals():
    bar = torch.zeros(1, 28, 28)
    bar[:, 6:22, 11:17] = 1.0  # a grayscale 'digit'
    patched = bar.clone()
    patched[:, 0:4, 0:6] = 1.0  # a bar pasted in a corner
    inputs = torch.stack([bar, bar, bar, bar])
    counterfactuals = torch.stack([bar, bar, patched, torch.zeros_like(bar)])
    # the oracle reads: the normal digit 7, the input's digit 3, 3 again, 7 in an empty image
    factors = digit_factors(
        counterfactuals,
        inputs,
        digits=torch.tensor([3, 3, 3, 3]),
        digit_oracle=FixedDigits([7, 3, 3, 7]),
        normal_digit=7,
    )
    assert factors["digit_to_normal"].tolist() == [True, False, False, False]
    assert factors["digit_kept"].tolist() == [False, True, True, False]
    assert factors["patch"].tolist() == [False, False, True, False]


def test_off_support_ink_flags_ink_off_the_normal_support_only():
    normal = torch.zeros(10, 1, 28, 28)
    normal[:, :, 6:22, 11:17] = 1.0  # every normal 'digit' is the same bar
    normal[:3, :, 22:26, 11:17] = 1.0  # three in ten reach lower
    support = normal_support(normal, quantile=0.95)
    assert support[6:26, 11:17].eq(1).all() and support[0:4, 0:6].eq(0).all()

    bar = normal[1]
    square = bar.clone()
    square[:, 0:6, 0:6] = 0.1  # a faint square, mass 3.6
    faint = bar.clone()
    faint[:, 0:6, 0:6] = 0.05  # fainter, mass 1.8: below min_mass
    lower = bar.clone()
    lower[:, 22:26, 11:17] = 1.0  # ink where a normal image has it
    kept = torch.zeros_like(bar)
    kept[:, 0:4, 0:6] = 1.0  # the input's own ink, off the support
    counterfactuals = torch.stack([bar, square, faint, lower, kept])
    inputs = torch.stack([bar, bar, bar, bar, kept])
    marks = off_support_ink(counterfactuals, inputs, support)
    assert marks.tolist() == [False, True, False, False, False]
    # read against no input, the input's own ink off the support is a mark
    assert off_support_ink(kept[None], torch.zeros_like(kept)[None], support).tolist() == [True]


def test_concept_accuracy_counts_when_r_names_the_right_concept():
    class ReadsBrightness(nn.Module):
        def forward(self, a, b):  # concept 1 when b is brighter than a, else 0
            brighter = (b.mean((1, 2, 3)) > a.mean((1, 2, 3))).long()
            return nn.functional.one_hot(brighter, 2).float()

    x = torch.full((4, 1, 8, 8), 0.5)
    cfs = torch.stack([x - 0.1, x + 0.1], 1)
    assert concept_accuracy(ReadsBrightness(), x, cfs) == 1.0
    assert concept_accuracy(ReadsBrightness(), x, cfs.flip(1)) == 0.0


def test_frechet_distance_known_answers():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + torch.tensor([2.0, 0.0, 0.0])
    assert frechet_distance(a, shifted) == pytest.approx(4.0, rel=1e-6)
    scaled = a * 2  # covariance 4 I vs I: trace term 3 * (1 + 4 - 2 * 2) = 3
    assert frechet_distance(a, scaled) == pytest.approx(3.0, rel=0.05)


def test_fid_and_fidn_in_a_feature_space():
    features = nn.Flatten()
    g = torch.Generator().manual_seed(1)
    normal = torch.rand(500, 1, 2, 2, generator=g) * 0.5
    anomalies = normal + 0.4
    halfway = normal + 0.2
    assert fid(normal, normal.clone(), features) == pytest.approx(0.0, abs=1e-9)
    assert fidn(halfway, anomalies, normal, features) == pytest.approx(
        25.0, rel=1e-4
    )  # (0.2/0.4)^2
    assert fidn(anomalies, anomalies, normal, features) == pytest.approx(100.0)


def _two_edits(n: int) -> tuple:
    """Dark noisy images and two visibly different edits of each: (N, 1, 28, 28) inputs and
    (N, 2, 1, 28, 28) counterfactuals (concept 0 brightens the top half, concept 1 paints a
    square at the bottom)."""
    g = torch.Generator().manual_seed(0)
    x = 0.2 * torch.rand(n, 1, 28, 28, generator=g)
    top, square = x.clone(), x.clone()
    top[:, :, :14] += 0.5
    square[:, :, 18:26, 10:18] = 1.0
    return x, torch.stack([top, square], 1)


def test_posthoc_concept_accuracy_tells_different_edits_apart():
    x, cfs = _two_edits(120)
    assert posthoc_concept_accuracy(x, cfs, epochs=4) > 0.95


def test_posthoc_concept_accuracy_is_chance_for_identical_concepts():
    x, cfs = _two_edits(120)
    same = torch.stack([cfs[:, 1], cfs[:, 1]], 1)
    assert posthoc_concept_accuracy(x, same, epochs=4) == pytest.approx(0.5, abs=0.1)
    with pytest.raises(ValueError, match="train_share"):
        posthoc_concept_accuracy(x, cfs, train_share=1.0)


def test_inception_features_load_local_weights_only(tmp_path):
    from torchvision.models import inception_v3

    with pytest.raises(FileNotFoundError, match="domain feature net"):
        inception_features(tmp_path / "missing.pth")
    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    torch.save(net.state_dict(), tmp_path / "inception.pth")
    features = inception_features(tmp_path / "inception.pth")
    with torch.no_grad():
        gray, color = features(torch.rand(2, 1, 28, 28)), features(torch.rand(2, 3, 28, 28))
    assert gray.shape == color.shape == (2, 2048)
    assert torch.isfinite(gray).all()
