"""as_detector / AnomalyDetector: every output form, every calibration, the user's model intact."""

from __future__ import annotations

import copy
import types

import numpy as np
import pytest
import torch
from torch import nn

from captum_cfx import AnomalyDetector, as_detector
from captum_cfx.detectors import CalibrationNotice, NotDifferentiableWarning


class MeanBrightness(nn.Module):
    """A toy detector: an affine map of the mean pixel, with BN so eval/train differ."""

    def __init__(self, form: str = "vector", scale: float = 10.0, shift: float = -2.0) -> None:
        super().__init__()
        self.form = form
        self.linear = nn.Linear(1, 1)
        with torch.no_grad():
            self.linear.weight.fill_(scale)
            self.linear.bias.fill_(shift)

    def forward(self, x):
        s = self.linear(x.mean((1, 2, 3))[:, None])  # (N, 1)
        if self.form == "column":
            return s
        if self.form == "vector":
            return s[:, 0]
        if self.form == "pair_logits":
            return torch.cat([torch.zeros_like(s), s], 1)
        if self.form == "pair_probs":
            return torch.cat([1 - torch.sigmoid(s), torch.sigmoid(s)], 1)
        if self.form == "dict":
            return {"pred_score": s[:, 0], "anomaly_map": x}
        if self.form == "object":
            return types.SimpleNamespace(pred_score=s[:, 0], pred_label=None)
        raise AssertionError(self.form)


def ramp(n: int = 8) -> torch.Tensor:
    """Images whose mean brightness rises from 0.05 to 0.95."""
    return torch.linspace(0.05, 0.95, n)[:, None, None, None].expand(n, 1, 4, 4).clone()


NORMAL = torch.rand(64, 1, 4, 4) * 0.2


@pytest.mark.parametrize(
    "form", ["vector", "column", "pair_logits", "pair_probs", "dict", "object"]
)
def test_every_output_form_gives_monotone_phi_in_unit_interval(form):
    detector = as_detector(
        MeanBrightness(form),
        normal_data=NORMAL,
        calibration="sigmoid" if "probs" not in form else "identity",
    )
    phi = detector(ramp())
    assert phi.shape == (8,)
    assert (phi >= 0).all() and (phi <= 1).all()
    assert (phi.diff() > 0).all()


def test_pair_logits_equal_softmax_of_anomalous_class():
    model = MeanBrightness("pair_logits")
    detector = as_detector(model, calibration="sigmoid")
    x = ramp()
    expected = torch.softmax(model(x), 1)[:, 1]
    torch.testing.assert_close(detector(x), expected)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (MeanBrightness("pair_probs"), "identity"),
        (MeanBrightness("pair_logits"), "sigmoid"),
        (MeanBrightness("vector", scale=0.5, shift=0.1), "identity"),
        (MeanBrightness("vector", scale=10.0, shift=1.0), "exp"),
        (MeanBrightness("vector", scale=10.0, shift=-2.0), "sigmoid"),
    ],
)
def test_auto_picks_from_the_normal_range_and_says_so(model, expected):
    with pytest.warns(CalibrationNotice, match=expected):
        detector = as_detector(model, normal_data=NORMAL)
    assert detector.calibration == expected


@pytest.mark.parametrize("calibration", ["sigmoid", "exp", "gaussian"])
def test_calibrations_are_monotone_in_range_and_keep_gradients_for_strong_anomalies(calibration):
    model = MeanBrightness("vector", scale=10.0, shift=0.5)
    detector = as_detector(model, normal_data=NORMAL, calibration=calibration)
    phi = detector(ramp(32))
    assert (phi >= 0).all() and (phi <= 1).all()
    assert (phi.diff() >= 0).all() and phi[-1] > phi[0]
    # A strong anomaly: phi rounds to 1 in float32, yet its gradient must not vanish.
    brightness = {"sigmoid": 5.0, "exp": 5.0, "gaussian": 0.22}[calibration]
    strong = torch.full((1, 1, 4, 4), brightness, requires_grad=True)
    phi_strong = detector(strong)
    assert phi_strong.item() == 1.0
    phi_strong.sum().backward()
    assert strong.grad is not None and strong.grad.abs().sum() > 0


@pytest.mark.parametrize("calibration", ["identity", "sigmoid", "exp", "gaussian"])
def test_logit_keeps_its_gradient_for_extreme_anomalies(calibration):
    model = MeanBrightness("vector", scale=10.0 if calibration != "identity" else 1.0, shift=0.5)
    if calibration == "identity":
        model = nn.Sequential(model, nn.Sigmoid())
    detector = as_detector(model, normal_data=NORMAL, calibration=calibration)
    extreme = torch.full(
        (1, 1, 4, 4), 1.0 if calibration != "identity" else 0.99, requires_grad=True
    )
    logit = detector.logit(extreme)
    assert torch.isfinite(logit).all()
    logit.sum().backward()
    assert extreme.grad.abs().sum() > 0


def test_statistics_are_buffers_that_travel_with_state_dict():
    detector = as_detector(
        MeanBrightness(scale=10.0, shift=0.5), normal_data=NORMAL, calibration="gaussian"
    )
    state = detector.state_dict()
    assert set(state) == {"tau", "mu", "sigma"}
    assert float(state["sigma"]) > 0 and float(state["mu"]) != 0.0
    fresh = AnomalyDetector(MeanBrightness(scale=10.0, shift=0.5), "gaussian")
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh(ramp()), detector(ramp()))


def test_exp_puts_the_95_percent_normal_quantile_at_one_half():
    model = MeanBrightness(scale=10.0, shift=0.5)
    detector = as_detector(model, normal_data=NORMAL, calibration="exp")
    phi = detector(NORMAL)
    assert abs(float((phi < 0.5).float().mean()) - 0.95) < 0.03


def test_lower_is_anomalous_reverses_the_order():
    detector = as_detector(MeanBrightness(), calibration="sigmoid", higher_is_anomalous=False)
    assert (detector(ramp()).diff() < 0).all()


def test_users_model_is_left_exactly_as_given():
    model = MeanBrightness()
    model.train()
    model.linear.bias.requires_grad_(False)
    before = copy.deepcopy(model.state_dict())
    hooks_before = dict(model._forward_hooks)
    detector = as_detector(model, normal_data=NORMAL, calibration="gaussian")
    x = ramp().requires_grad_(True)
    detector(x).sum().backward()
    detector.to(torch.float64).train()
    assert model.training is True
    assert model.linear.weight.requires_grad is True and model.linear.bias.requires_grad is False
    assert model.linear.weight.grad is None
    assert model.linear.weight.dtype == torch.float32
    for key, value in before.items():
        assert torch.equal(model.state_dict()[key], value)
    assert dict(model._forward_hooks) == hooks_before
    assert detector.model is model
    assert list(detector.parameters()) == []


def test_wrapped_model_runs_in_eval_mode():
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append((self.training, any(p.requires_grad for p in self.parameters())))
            return x.mean((1, 2, 3))

        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

    spy = Spy().train()
    as_detector(spy, calibration="identity")(ramp())
    assert seen == [(False, False)] and spy.training and spy.p.requires_grad


def test_numpy_detector_works_but_warns_it_is_not_differentiable():
    def numpy_detector(x):
        return x.mean((1, 2, 3)).detach().numpy()

    detector = as_detector(numpy_detector, calibration="identity")
    with pytest.warns(NotDifferentiableWarning, match="surrogate"):
        phi = detector(ramp())
    assert not detector.differentiable
    assert phi.shape == (8,) and not phi.requires_grad
    np.testing.assert_allclose(phi.numpy(), ramp().mean((1, 2, 3)).numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    ("output", "error", "match"),
    [
        (lambda x: torch.zeros(len(x), 3), ValueError, r"shape \(8, 3\).*expected"),
        (lambda x: torch.full((len(x),), float("nan")), ValueError, "NaN"),
        (lambda x: {"logits": x.mean((1, 2, 3))}, TypeError, "score_key"),
        (lambda x: "bad", TypeError, "str"),
        (lambda x: x.mean((1, 2, 3)) * 5, ValueError, "outside \\[0, 1\\]"),
    ],
)
def test_unusable_outputs_raise_errors_that_name_them(output, error, match):
    with pytest.raises(error, match=match):
        as_detector(output, calibration="identity")(ramp())


def test_score_key_reads_a_named_field():
    detector = as_detector(
        lambda x: {"logits": x.mean((1, 2, 3))}, calibration="identity", score_key="logits"
    )
    assert detector(ramp()).shape == (8,)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="needs normal_data"):
        as_detector(MeanBrightness(), calibration="gaussian")
    with pytest.raises(ValueError, match="unknown calibration"):
        as_detector(MeanBrightness(), calibration="softmax")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        as_detector(3)
    with pytest.raises(ValueError, match="same score"):
        as_detector(lambda x: torch.ones(len(x)) * 3, normal_data=NORMAL, calibration="gaussian")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_detector(MeanBrightness(), normal_data=NORMAL * 300, calibration="gaussian")


def test_an_adapter_is_passed_through():
    detector = as_detector(MeanBrightness(), calibration="sigmoid")
    assert as_detector(detector) is detector
