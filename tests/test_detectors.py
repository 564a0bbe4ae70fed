"""The paper's detectors: phi in [0, 1], separate an easy task, FCDD heatmaps, train_detector."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from captum_cfx import as_detector, train_detector
from captum_cfx.detectors import DETECTORS, DSVDDDetector, FCDDDetector
from captum_cfx.generative.augment import robust_view, shift_view


def auroc(normal: torch.Tensor, anomalous: torch.Tensor) -> float:
    """Probability that an anomaly outscores a normal image (ties count half)."""
    diff = anomalous[:, None] - normal[None, :]
    return float((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean())


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_each_detector_separates_bright_squares_from_dark_noise(name, square_loaders):
    normal_loader, outlier_loader, test_normal, test_anomalous = square_loaders
    detector = train_detector(name, normal_loader, outlier_loader, epochs=8, progress=False)
    assert not detector.training
    with torch.no_grad():
        s_normal, s_anomalous = detector(test_normal), detector(test_anomalous)
    for s in (s_normal, s_anomalous):
        assert s.shape == (len(s),) and (s >= 0).all() and (s <= 1).all()
    assert auroc(s_normal, s_anomalous) > 0.9


@pytest.mark.parametrize(
    ("channels", "size", "rep"), [(1, 28, 32), (3, 28, 32), (1, 32, 256), (3, 32, 256)]
)
def test_networks_fit_28_and_32_pixels_with_1_or_3_channels(channels, size, rep):
    for cls in DETECTORS.values():
        detector = cls(channels, size).eval()
        phi = detector(torch.rand(2, channels, size, size))
        assert phi.shape == (2,)
    assert DSVDDDetector(channels, size).features[-1].out_features == rep


def test_dsvdd_is_bias_free_with_a_center_away_from_zero(square_loaders):
    normal_loader, _, _, _ = square_loaders
    detector = train_detector("dsvdd", normal_loader, epochs=1, progress=False)
    assert all("bias" not in name for name, _ in detector.named_parameters())
    assert (detector.center.abs() >= 0.1 - 1e-6).all()
    assert float(detector.tau) > 0


def test_fcdd_heatmap_is_input_sized_and_lights_up_the_square(square_loaders):
    normal_loader, outlier_loader, _, _ = square_loaders
    detector: FCDDDetector = train_detector(
        "fcdd", normal_loader, outlier_loader, epochs=8, progress=False
    )
    x = torch.full((1, 1, 16, 16), 0.05)
    x[:, :, 2:8, 9:15] = 0.9
    with torch.no_grad():
        heat = detector.heatmap(x)
    assert heat.shape == (1, 1, 16, 16)
    inside = heat[0, 0, 2:8, 9:15].mean()
    outside = heat[0, 0, 10:, :6].mean()
    assert inside > outside
    assert detector.field > 1 and detector.jump == 4


def test_paper_detectors_adapt_as_identity_with_their_own_logit():
    detector = as_detector(DETECTORS["hsc"](1, 28).eval())
    assert detector.calibration == "identity"
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(detector(x), detector.model(x))


def test_train_detector_refuses_bad_requests(square_loaders):
    normal_loader, _, _, _ = square_loaders
    with pytest.raises(ValueError, match="outlier_loader"):
        train_detector("bce", normal_loader)
    with pytest.raises(ValueError, match="unknown detector"):
        train_detector("patchcore", normal_loader)
    with pytest.raises(ValueError, match="no batches"):
        train_detector("dsvdd", [])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_detector("dsvdd", [torch.full((4, 1, 16, 16), 255.0)])


def centred_squares(n: int, seed: int, size: int = 16) -> torch.Tensor:
    """Dark noisy images (n, 1, size, size) with a bright 6x6 square at the centre: normal
    data whose every image sits at the same place, as MNIST digits do."""
    x = 0.1 * torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))
    middle = size // 2
    x[:, :, middle - 3 : middle + 3, middle - 3 : middle + 3] = 0.9
    return x


@pytest.mark.parametrize("augment, view", [(True, robust_view), ("shift", shift_view)])
def test_augment_trains_dsvdd_to_accept_its_views_of_normal_images(augment, view):
    normal = DataLoader(TensorDataset(centred_squares(128, seed=1)), batch_size=32, shuffle=True)
    test_normal = centred_squares(64, seed=2)
    corner = test_normal.clone()
    corner[:, :, 1:4, 1:4] = 0.9  # a second square: anomalous
    views = view(test_normal, torch.Generator().manual_seed(0))
    flagged = {}
    for trained_on in (False, augment):
        detector = train_detector("dsvdd", normal, epochs=8, augment=trained_on, progress=False)
        with torch.no_grad():
            flagged[trained_on] = float((detector(views) >= 0.5).float().mean())
            assert auroc(detector(test_normal), detector(corner)) > 0.9
    assert flagged[False] > 0.5 and flagged[augment] < flagged[False] - 0.3, flagged


def test_train_detector_rejects_an_unknown_augmentation():
    normal = DataLoader(TensorDataset(centred_squares(8, seed=1)), batch_size=8)
    with pytest.raises(ValueError, match="augment must be False, True or 'shift'"):
        train_detector("dsvdd", normal, augment="blur", progress=False)
