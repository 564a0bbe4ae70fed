"""captum_cfx.generative.augment: the shifts, cutout and blur before D and phi."""

from __future__ import annotations

import pytest
import torch

from captum_cfx.generative.augment import (
    VIEW_SHIFT,
    box_blur,
    cutout,
    diff_augment,
    random_shift,
    robust_view,
    shift_view,
)


def dots(n: int = 8, size: int = 16) -> torch.Tensor:
    """One bright pixel in the middle of each dark image."""
    x = torch.zeros(n, 1, size, size)
    x[:, :, size // 2, size // 2] = 1.0
    return x


def test_random_shift_moves_each_image_by_at_most_max_shift_zero_filled():
    moved = random_shift(dots(), 2, torch.Generator().manual_seed(0))
    assert moved.shape == dots().shape and moved.sum() == 8  # the dot is kept, nothing added
    where = moved[:, 0].flatten(1).argmax(1)
    rows, cols = where.div(16, rounding_mode="floor"), where % 16
    assert ((rows - 8).abs() <= 2).all() and ((cols - 8).abs() <= 2).all()
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 1  # per image, not one shift for all
    torch.testing.assert_close(
        shift_view(dots(), torch.Generator().manual_seed(3)),
        random_shift(dots(), VIEW_SHIFT, torch.Generator().manual_seed(3)),
    )


def test_cutout_zeroes_one_square_of_the_given_fraction_per_image():
    holes = cutout(torch.ones(5, 3, 16, 16), 0.25, torch.Generator().manual_seed(0))
    assert ((holes == 0).all(1).flatten(1).sum(1) == 16).all()  # a 4x4 square in every channel
    assert diff_augment(torch.ones(5, 3, 16, 16), torch.Generator()).shape == (5, 3, 16, 16)


def test_box_blur_keeps_flat_images_and_spreads_a_dot_over_3x3():
    flat = torch.full((1, 3, 8, 8), 0.3)
    torch.testing.assert_close(box_blur(flat), flat)
    blurred = box_blur(dots(1))[0, 0]
    torch.testing.assert_close(blurred[7:10, 7:10], torch.full((3, 3), 1 / 9))
    assert float(blurred.sum()) == pytest.approx(1.0)


def test_robust_view_is_seeded_and_stays_in_the_unit_interval():
    x = torch.rand(6, 3, 16, 16)
    one = robust_view(x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(one, robust_view(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(one, robust_view(x, torch.Generator().manual_seed(2)))
    assert one.min() >= -0.05 and one.max() <= 1.05  # leaky-clamped
    assert 0.01 < float((one - x).abs().mean()) < 0.5  # a view, not the image nor noise
