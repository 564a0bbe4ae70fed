"""The held-out judgement's parts: the corruption families, the probe, the failures read."""

import pytest
import torch
from torch import nn

from captum_cfx.detectors.adapter import as_detector
from captum_cfx.fit_report import MIN_JUDGED, PROBE_SIZE, corruptions, failures, probe_anomalies


class Constant(nn.Module):
    """phi = sigmoid(c) for every image."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c))

    def forward(self, x):
        return torch.sigmoid(self.c + 0 * x.mean((1, 2, 3)))


class RightHalfDiffers(nn.Module):
    """phi flags images whose right half is not the mirror of their left half."""

    def forward(self, x):
        w = x.shape[-1]
        gap = (x[..., w // 2 :] - x[..., : w // 2].flip(-1)).abs().mean((1, 2, 3))
        return torch.sigmoid(200 * (gap - 0.02))


def symmetric_images(n: int, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    left = torch.rand(n, channels, 16, 8, generator=g)
    return torch.cat([left, left.flip(-1)], dim=-1)


@pytest.mark.parametrize("kinds", ["training", "unseen"])
def test_corruptions_keep_shape_and_range_and_change_the_images(kinds):
    x = symmetric_images(64)
    out = corruptions(x, seed=0, kinds=kinds)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    changed = (out - x).abs().flatten(1).amax(1) > 1e-3
    assert changed.float().mean() > 0.9
    assert torch.equal(out, corruptions(x, seed=0, kinds=kinds))  # repeatable


def test_the_two_families_differ_and_an_unknown_family_is_refused():
    x = symmetric_images(64)
    assert not torch.allclose(corruptions(x, 0, "training"), corruptions(x, 0, "unseen"))
    with pytest.raises(ValueError, match="kinds must be one of"):
        corruptions(x, 0, "all")


def test_probe_prefers_outliers_then_kinds_g_never_trains_on_then_its_own():
    held_out = symmetric_images(16)
    flags_all = as_detector(Constant(5.0), calibration="identity")
    outliers = torch.rand(8, 3, 16, 16)
    probe, source = probe_anomalies(flags_all, held_out, outliers, seed=0)
    assert source == "outlier_loader" and len(probe) == 8
    probe, source = probe_anomalies(flags_all, held_out, None, seed=0)
    # Each of the 16 held-out images is corrupted 32 times: 2 * PROBE_SIZE in all.
    assert source == "unseen corruptions" and len(probe) == PROBE_SIZE
    # Only the right-half swap among the unseen kinds breaks the mirror symmetry this
    # detector wants; the training kinds' turn, zoom, patches and strokes break it too.
    halves = as_detector(RightHalfDiffers(), calibration="identity")
    probe, source = probe_anomalies(halves, held_out, None, seed=0)
    assert source == "unseen corruptions" and 0 < len(probe) < PROBE_SIZE
    flags_none = as_detector(Constant(-5.0), calibration="identity")
    probe, source = probe_anomalies(flags_none, held_out, None, seed=0)
    assert len(probe) == 0


def report(validities, distinctness=0.5, n_judged=100):
    return {
        "n_judged": n_judged,
        "validity": sum(validities) / max(len(validities), 1),
        "distinctness": distinctness,
        "false_alarms": 0.0,
        "view_false_alarms": 0.0,
        "judged_on": "unseen corruptions",
        "concepts": [{"validity": v} for v in validities],
    }


def test_failures_name_each_concept_that_is_not_normal_even_when_the_mean_passes():
    assert failures(report([0.9, 0.8])) == []
    (problem,) = failures(report([0.95, 0.3]))  # mean 0.625 passes; concept 1 does not
    assert "concept 1: 30%" in problem and "concept 0" not in problem
    assert "unseen corruptions" in problem


def test_failures_name_concepts_that_make_one_edit_and_an_empty_probe():
    (problem,) = failures(report([0.9, 0.9], distinctness=0.1))
    assert "one edit" in problem
    (problem,) = failures(report([], n_judged=0))
    assert "no anomaly was at hand" in problem


def test_failures_say_when_too_few_anomalies_were_judged_to_vouch_for_the_fit():
    assert failures(report([1.0, 1.0], n_judged=MIN_JUDGED)) == []
    (problem,) = failures(report([1.0, 1.0], n_judged=11))
    assert "only 11 anomalies" in problem and "outlier_loader" in problem


def test_failures_name_an_autoencoder_whose_reconstructions_phi_flags():
    latent = report([0.9, 0.9])
    latent["autoencoder"] = {"reconstruction_false_alarms": 0.1}
    assert failures(latent) == []
    latent["autoencoder"]["reconstruction_false_alarms"] = 0.25
    (problem,) = failures(latent)
    assert "phi flags 25% of the autoencoder's reconstructions" in problem
