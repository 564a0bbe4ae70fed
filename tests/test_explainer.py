"""CounterfactualAnomalyExplainer: the public calls, Captum's contract, persistence, learning."""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace

import pytest
import torch
from captum.attr import NoiseTunnel
from captum.attr import visualization as viz
from captum.metrics import infidelity, sensitivity_max
from helpers import TINY, bright_square_images
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from captum_cfx import (
    CounterfactualAnomalyExplainer,
    ExplanationWarning,
    FitWarning,
    GeneratorConfig,
    as_detector,
)
from captum_cfx.visualization import to_hwc


class BrightSpot(nn.Module):
    """phi = sigmoid(20 (max of the 4x4-pooled image - 0.4)): a bright square is anomalous."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        return torch.sigmoid(
            self.gain * (nn.functional.avg_pool2d(x.amax(1, keepdim=True), 4).amax((1, 2, 3)) - 0.4)
        )


@pytest.fixture(scope="module")
def data():
    normal = bright_square_images(64, False, seed=1)
    anomalous = torch.cat([bright_square_images(4, True, seed=10 + s) for s in range(16)])
    return normal, anomalous


@pytest.fixture(scope="module")
def fitted(data):
    normal, anomalous = data
    detector = BrightSpot()
    explainer = CounterfactualAnomalyExplainer(n_concepts=2, config=TINY)
    explainer.fit(
        detector, DataLoader(TensorDataset(normal), batch_size=16), steps=20, progress=False
    )
    return explainer, detector


def test_public_calls_have_the_documented_shapes_and_forms(fitted, data):
    explainer, _ = fitted
    x = data[1][:5]
    assert explainer.counterfactual(x, concept=1).shape == (5, 1, 16, 16)
    assert explainer.counterfactuals(x).shape == (5, 2, 1, 16, 16)
    assert explainer.traverse(x, concept=0, alphas=[1.0, 0.5, 0.0]).shape == (5, 3, 1, 16, 16)
    assert explainer.traverse(x, concept=0).shape == (5, 6, 1, 16, 16)
    per_image = explainer.traversal_alphas(x)
    assert per_image.shape == (5, 6) and (per_image[:, -1] == 0).all()
    torch.testing.assert_close(
        explainer.traverse(x, concept=0, alphas=per_image), explainer.traverse(x, concept=0)
    )
    assert explainer.attribute(x).shape == x.shape
    out = explainer.attribute((x,), concept=1)
    assert isinstance(out, tuple) and len(out) == 1 and out[0].shape == x.shape
    cf = explainer.counterfactuals(x)
    assert cf.min() >= 0 and cf.max() <= 1 and not cf.requires_grad
    assert set(explainer.history_) >= {
        "loss_gan",
        "loss_phi",
        "loss_rec",
        "loss_cyc",
        "loss_con",
        "loss_d",
    }
    assert all(len(v) == 20 for v in explainer.history_.values())
    assert explainer.has_convergence_delta() is False and explainer.multiplies_by_inputs is False


def test_attribute_is_input_minus_counterfactual(fitted, data):
    explainer, _ = fitted
    x = data[1][:6]
    for k in range(2):
        torch.testing.assert_close(
            explainer.attribute(x, concept=k), x - explainer.counterfactual(x, concept=k)
        )
    chunked = explainer.attribute(x, concept=1, internal_batch_size=4)
    torch.testing.assert_close(chunked, explainer.attribute(x, concept=1))


def test_forward_func_is_phi_and_feeds_captum_methods(fitted, data):
    explainer, detector = fitted
    x = data[1][:4]
    torch.testing.assert_close(
        explainer.forward_func(x), detector(x).detach(), rtol=1e-5, atol=1e-6
    )
    attr = explainer.attribute(x)
    nt = NoiseTunnel(explainer).attribute(
        x, nt_type="smoothgrad", nt_samples=3, stdevs=0.02, clamp_inputs=True
    )
    assert nt.shape == x.shape and torch.isfinite(nt).all()

    def perturb(inputs):
        noise = 0.01 * torch.randn_like(inputs)
        return noise, (inputs - noise).clamp(0, 1)

    inf = infidelity(explainer.forward_func, perturb, x, attr)
    assert inf.shape == (4,) and torch.isfinite(inf).all()
    sens = sensitivity_max(
        explainer.attribute, x, perturb_radius=0.01, n_perturb_samples=2, clamp_inputs=True
    )
    assert sens.shape == (4,) and torch.isfinite(sens).all()
    fig, axis = viz.visualize_image_attr(
        to_hwc(attr[0]), to_hwc(x[0]), method="blended_heat_map", sign="all", use_pyplot=False
    )
    # One axis: the input in grey and the attribution blended over it, both at its 16x16.
    assert fig.axes == [axis]
    assert [image.get_array().shape for image in axis.images] == [(16, 16), (16, 16)]


def test_save_then_load_gives_identical_outputs(fitted, data, tmp_path):
    explainer, detector = fitted
    x = data[1][:4]
    explainer.save(tmp_path / "ex")
    loaded = CounterfactualAnomalyExplainer.load(tmp_path / "ex", detector=detector)
    torch.testing.assert_close(
        loaded.counterfactuals(x), explainer.counterfactuals(x), rtol=0, atol=0
    )
    torch.testing.assert_close(loaded.forward_func(x), explainer.forward_func(x))
    assert loaded.history_ == explainer.history_
    without = CounterfactualAnomalyExplainer.load(tmp_path / "ex")
    assert without.forward_func is None
    torch.testing.assert_close(without.attribute(x), explainer.attribute(x), rtol=0, atol=0)


def test_the_users_detector_is_unchanged_by_fit_attribute_and_save(data, tmp_path):
    normal, anomalous = data
    detector = BrightSpot().train()
    detector.gain.requires_grad_(True)
    before = copy.deepcopy(detector.state_dict())
    explainer = CounterfactualAnomalyExplainer(config=TINY).fit(
        detector, [normal], steps=3, progress=False
    )
    explainer.attribute(anomalous[:2])
    explainer.save(tmp_path / "ex")
    assert detector.training and detector.gain.requires_grad and detector.gain.grad is None
    assert torch.equal(detector.state_dict()["gain"], before["gain"])
    assert explainer.forward_func.model is detector


def test_a_fixed_seed_gives_the_same_counterfactuals_twice(data):
    normal, anomalous = data
    runs = [
        CounterfactualAnomalyExplainer(config=TINY).fit(
            BrightSpot(), [normal], steps=5, seed=3, progress=False
        )
        for _ in range(2)
    ]
    torch.testing.assert_close(
        runs[0].counterfactuals(anomalous[:4]),
        runs[1].counterfactuals(anomalous[:4]),
        rtol=0,
        atol=0,
    )
    other = CounterfactualAnomalyExplainer(config=TINY).fit(
        BrightSpot(), [normal], steps=5, seed=4, progress=False
    )
    assert not torch.equal(
        other.counterfactuals(anomalous[:4]), runs[0].counterfactuals(anomalous[:4])
    )


def test_with_ema_decay_the_explainer_keeps_gs_moving_average(data, tmp_path):
    normal, anomalous = data
    # The average does not touch training: the same seed trains the same G with and
    # without it, so the explainers differ only by the generator kept.
    last, averaged = (
        CounterfactualAnomalyExplainer(config=replace(TINY, **extra)).fit(
            BrightSpot(), [normal], steps=5, seed=3, progress=False
        )
        for extra in ({}, {"ema_decay": 0.5})
    )
    torch.testing.assert_close(
        torch.tensor(last.history_["loss_total"]),
        torch.tensor(averaged.history_["loss_total"]),
        rtol=0,
        atol=0,
    )
    assert not torch.equal(
        last.counterfactuals(anomalous[:4]), averaged.counterfactuals(anomalous[:4])
    )
    assert len(averaged.history_["normality_auroc_average"]) == 5
    averaged.save(tmp_path / "averaged")
    loaded = CounterfactualAnomalyExplainer.load(tmp_path / "averaged")
    assert loaded.config_.ema_decay == 0.5
    torch.testing.assert_close(
        loaded.counterfactuals(anomalous[:4]), averaged.counterfactuals(anomalous[:4])
    )


@pytest.mark.parametrize("options", [{}, {"ema_decay": 0.0, "floor_feedback": 0.0}])
def test_a_short_fit_makes_most_anomalies_normal(options):
    # The bright square is the only reason for the anomaly, so one concept (K = 2 would make
    # the distinctness hinge push the second concept away from the one good edit).
    normal = bright_square_images(128, False, seed=1)
    anomalous = torch.cat([bright_square_images(4, True, seed=10 + s) for s in range(32)])
    detector = BrightSpot()
    config = GeneratorConfig(
        widths=(8, 16, 16),
        cond_dim=16,
        disc_width=8,
        concept_width=8,
        batch_size=16,
        lr=1e-3,
        **options,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitWarning)  # most counterfactuals are valid: no warning
        explainer = CounterfactualAnomalyExplainer(n_concepts=1, config=config).fit(
            detector, [normal], outlier_loader=[anomalous], steps=300, progress=False
        )
    test = torch.cat([bright_square_images(4, True, seed=500 + s) for s in range(8)])
    with torch.no_grad():
        before = detector(test)
        after = detector(explainer.counterfactual(test, concept=0))
    assert (before > 0.9).all()
    assert float((after < 0.5).float().mean()) >= 0.75
    # The edit is where the anomaly is: the square changes far more than the background.
    change = (explainer.counterfactual(test) - test).abs()
    square = test > 0.5
    assert change[square].mean() > 3 * change[~square].mean()


class TemplateDistance(nn.Module):
    """phi = sigmoid(200 (mean |x - template| - 0.005)): only the template itself is normal,
    so a shifted, blurred or noisy normal image is an anomaly."""

    def __init__(self, template: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("template", template)

    def forward(self, x):
        return torch.sigmoid(200 * ((x - self.template).abs().mean((1, 2, 3)) - 0.005))


def test_fit_warns_when_the_counterfactuals_are_not_normal_and_names_the_cause(data):
    normal, anomalous = data
    with pytest.warns(FitWarning, match="score below 0.5") as caught:
        CounterfactualAnomalyExplainer(config=TINY).fit(
            BrightSpot(), [normal], outlier_loader=[anomalous], steps=3, progress=False
        )
    assert "shift, blur and noise" not in str(caught[0].message)  # BrightSpot's views are fair

    template = normal[:1]
    strict = TemplateDistance(template)
    with pytest.warns(FitWarning, match="flags 100% of the normal images after the small shift"):
        CounterfactualAnomalyExplainer(config=TINY).fit(
            strict,
            [(template + 0.002).expand(16, -1, -1, -1)],  # off the kink of |x - template|
            outlier_loader=[anomalous],
            steps=3,
            progress=False,
        )


class AlwaysFlagged(nn.Module):
    """phi = sigmoid(1 + mean(x)) > 0.73: a detector that flags its normal images too."""

    def forward(self, x):
        return torch.sigmoid(1 + x.mean((1, 2, 3)))


def test_fit_warns_when_phi_flags_the_normal_images_themselves(data):
    normal, anomalous = data
    with pytest.warns(FitWarning, match="flags 100% of the normal images it was given") as caught:
        CounterfactualAnomalyExplainer(config=TINY).fit(
            AlwaysFlagged(), [normal], outlier_loader=[anomalous], steps=3, progress=False
        )
    assert "shift, blur and noise" not in str(caught[0].message)  # the views are not the cause


def test_without_flagged_outliers_fit_judges_itself_on_corrupted_held_out_images(data):
    normal, _ = data
    with pytest.warns(
        FitWarning, match=r"anomalies phi flags \(training corruptions\) score below 0.5"
    ):
        explainer = CounterfactualAnomalyExplainer(config=TINY).fit(
            BrightSpot(), [normal], outlier_loader=[normal], steps=3, progress=False
        )
    report = explainer.fit_report_
    assert report["judged_on"] == "training corruptions"  # phi flags none of the unseen kinds
    assert report["n_held_out"] == 6  # 10% of the 64 normal images
    assert report["n_judged"] > 0 and report["validity"] < 0.5
    assert report["steps"] == 3 and len(report["concepts"]) == 2


def test_without_outliers_g_learns_from_corruptions_and_makes_real_anomalies_normal():
    # Normal images only, as the design card calls fit: G trains on corruptions of them that
    # phi flags (pasted patches, mostly, for this detector) and is judged on held-out ones;
    # the real anomalies, bright squares, it never saw.
    normal = bright_square_images(128, False, seed=1)
    config = GeneratorConfig(
        widths=(8, 16, 16), cond_dim=16, disc_width=8, concept_width=8, batch_size=16, lr=1e-3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitWarning)
        explainer = CounterfactualAnomalyExplainer(n_concepts=1, config=config).fit(
            BrightSpot(), [normal], steps=300, checkpoint_every=50, progress=False
        )
    report = explainer.fit_report_
    assert report["judged_on"] == "training corruptions"  # phi flags none of the unseen kinds
    assert report["validity"] >= 0.5 and report["false_alarms"] == 0.0
    test = torch.cat([bright_square_images(4, True, seed=500 + s) for s in range(8)])
    with torch.no_grad():
        after = BrightSpot()(explainer.counterfactual(test, concept=0))
    assert float((after < 0.5).float().mean()) >= 0.75


def test_steps_auto_stops_when_the_judgement_stops_improving_and_keeps_the_best(data):
    normal, anomalous = data
    explainer = CounterfactualAnomalyExplainer(config=TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        explainer.fit(
            BrightSpot(),
            [normal],
            outlier_loader=[anomalous],
            steps="auto",
            max_steps=400,
            checkpoint_every=2,
            progress=False,
        )
    report = explainer.fit_report_
    # Tiny networks at lr 2e-4 barely move: the judgement stalls long before max_steps.
    assert report["steps"] < 400
    assert report["kept_step"] <= report["steps"] - 2 * 4  # PATIENCE scorings after the best
    steps, scores = zip(*report["quality_by_step"])
    assert steps[-1] == report["steps"] and max(scores) == scores[steps.index(report["kept_step"])]
    with pytest.raises(ValueError, match="positive int or 'auto'"):
        explainer.fit(BrightSpot(), [normal], steps="forever", progress=False)


def test_counterfactuals_the_detector_still_flags_are_named_in_a_warning(fitted, data):
    explainer, _ = fitted
    x = data[1][:6]
    with warnings.catch_warnings():  # BrightSpot passes the fitted G's counterfactuals
        warnings.simplefilter("error", ExplanationWarning)
        explainer.counterfactuals(data[0][:6])
    strict = copy.copy(explainer)
    strict.forward_func = as_detector(AlwaysFlagged(), calibration="identity")
    with pytest.warns(ExplanationWarning, match=r"flags 6 of 6 counterfactuals of concept 1 "):
        strict.counterfactual(x, concept=1)
    with pytest.warns(ExplanationWarning, match=r"images 0, 1, 2, 3, 4, 5\)"):
        strict.attribute(x)
    with pytest.warns(ExplanationWarning) as caught:
        strict.counterfactuals(x)
    assert len(caught) == 2  # one per concept
    with warnings.catch_warnings():  # aimed at an anomalous score, or without the detector
        warnings.simplefilter("error", ExplanationWarning)
        strict.counterfactual(x, target_score=0.9)
        strict.forward_func = None
        strict.counterfactual(x)


def test_diagnose_reports_every_counterfactual_and_survives_save_and_load(fitted, data, tmp_path):
    explainer, detector = fitted
    x = data[1][:5]
    report = explainer.diagnose(x)
    assert report["counterfactuals"].shape == (5, 2, 1, 16, 16)
    for key in ("score_after", "l1", "off_support_mass", "not_normal", "flagged"):
        assert report[key].shape == (5, 2)
    torch.testing.assert_close(report["score_before"], detector(x))
    torch.testing.assert_close(
        report["score_after"][:, 1], detector(report["counterfactuals"][:, 1])
    )
    assert torch.equal(report["not_normal"], report["score_after"] >= 0.5)
    for concept in explainer.fit_report_["concepts"]:
        assert 0 <= concept["off_support"] <= 1 and 0 <= concept["adversarial"] <= 1
    explainer.save(tmp_path / "e")
    loaded = CounterfactualAnomalyExplainer.load(tmp_path / "e", detector=detector)
    again = loaded.diagnose(x)
    for key in ("flagged", "off_support_mass", "nearest_normal"):
        torch.testing.assert_close(again[key], report[key])
    with pytest.raises(ValueError, match="diagnose needs the detector"):
        CounterfactualAnomalyExplainer.load(tmp_path / "e").diagnose(x)
