"""Hardening: bad input gets clear errors, training resumes exactly, NaNs stop training,
loading executes nothing, the explainer stays usable after an error."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
from helpers import TINY, bright_square_images
from torch import nn

import captum_cfx.generative.losses as losses
from captum_cfx import CounterfactualAnomalyExplainer, NotFittedError
from captum_cfx.generative.trainer import CounterfactualTrainer

NORMAL = bright_square_images(32, False, seed=1)
ANOMALOUS = bright_square_images(4, True, seed=7)


class Spot(nn.Module):
    """phi = sigmoid(20 (max pooled brightness - 0.4)); optionally interrupts at call N."""

    def __init__(self, interrupt_at: int = -1) -> None:
        super().__init__()
        self.calls = 0
        self.interrupt_at = interrupt_at

    def forward(self, x):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        return torch.sigmoid(20 * (nn.functional.avg_pool2d(x, 4).amax((1, 2, 3)) - 0.4))


@pytest.fixture(scope="module")
def fitted():
    return CounterfactualAnomalyExplainer(config=TINY).fit(
        Spot(), [NORMAL], steps=2, progress=False
    )


def weights(explainer):
    return {k: v.clone() for k, v in explainer.generator_.state_dict().items()}


def test_an_interrupted_and_resumed_fit_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    full = CounterfactualAnomalyExplainer(config=TINY).fit(
        Spot(), [NORMAL], steps=6, checkpoint_dir=tmp_path / "a", checkpoint_every=2, progress=False
    )
    # Ctrl-C in the middle of step 5: its detector calls stop at the third.
    interrupting = Spot()
    real_step = CounterfactualTrainer.train_step

    def step_then_interrupt(trainer):
        if trainer.step == 4:
            interrupting.interrupt_at = interrupting.calls + 3
        return real_step(trainer)

    monkeypatch.setattr(CounterfactualTrainer, "train_step", step_then_interrupt)
    with pytest.warns(RuntimeWarning, match="interrupted at step 4"):
        CounterfactualAnomalyExplainer(config=TINY).fit(
            interrupting,
            [NORMAL],
            steps=6,
            checkpoint_dir=tmp_path / "b",
            checkpoint_every=2,
            progress=False,
        )
    monkeypatch.setattr(CounterfactualTrainer, "train_step", real_step)
    resumed = CounterfactualAnomalyExplainer(config=TINY).fit(
        Spot(), [NORMAL], steps=6, checkpoint_dir=tmp_path / "b", checkpoint_every=2, progress=False
    )
    for name, value in weights(full).items():
        torch.testing.assert_close(weights(resumed)[name], value, rtol=0, atol=0)
    assert resumed.history_ == full.history_
    assert resumed.fit_report_ == full.fit_report_
    assert not list((tmp_path / "b").glob("*.tmp"))


def test_a_nan_in_a_loss_stops_training_with_its_name_and_step(monkeypatch, tmp_path):
    calls = {"n": 0}
    real = losses.loss_cyc

    def poisoned(x_tilde, x):
        calls["n"] += 1
        return real(x_tilde, x) * (float("nan") if calls["n"] == 3 else 1.0)

    monkeypatch.setattr(losses, "loss_cyc", poisoned)
    explainer = CounterfactualAnomalyExplainer(config=TINY)
    with pytest.raises(FloatingPointError, match=r"loss_cyc became nan at step 3"):
        explainer.fit(
            Spot(), [NORMAL], steps=5, checkpoint_dir=tmp_path, checkpoint_every=1, progress=False
        )
    assert not hasattr(explainer, "generator_")  # nothing half-fitted
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 2
    assert all(torch.isfinite(v).all() for v in saved["generator"].values())


def test_a_malicious_weights_file_is_refused_without_running_it(fitted, tmp_path):
    folder = fitted.save(tmp_path / "ex")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    torch.save({"generator": Payload()}, folder / "weights.pt")
    with pytest.raises(ValueError, match="refused without running it"):
        CounterfactualAnomalyExplainer.load(folder)
    assert not marker.exists()


def test_foreign_or_broken_files_are_refused(fitted, tmp_path):
    folder = fitted.save(tmp_path / "ex")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(ValueError, match="format version 99"):
        CounterfactualAnomalyExplainer.load(folder)
    (folder / "config.json").write_text(json.dumps({**config, "n_concepts": 3}))
    with pytest.raises(ValueError, match="does not match"):
        CounterfactualAnomalyExplainer.load(folder)
    (folder / "config.json").write_text("{ not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        CounterfactualAnomalyExplainer.load(folder)
    with pytest.raises(FileNotFoundError, match="missing"):
        CounterfactualAnomalyExplainer.load(tmp_path / "nowhere")


def test_an_unfitted_explainer_says_to_call_fit():
    with pytest.raises(NotFittedError, match="call fit"):
        CounterfactualAnomalyExplainer().attribute(ANOMALOUS)


@pytest.mark.parametrize(
    ("inputs", "match"),
    [
        (ANOMALOUS[0], "unsqueeze"),
        (ANOMALOUS.repeat(1, 3, 1, 1), "3 channels, expected 1"),
        (ANOMALOUS[..., :8], "size"),
        (ANOMALOUS * 255, r"\[0, 1\]"),
        (torch.full_like(ANOMALOUS, float("nan")), "NaN"),
        ((ANOMALOUS * 255).byte(), "floating point"),
    ],
)
def test_bad_inputs_raise_errors_that_name_the_fix(fitted, inputs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fitted.attribute(inputs)
    assert fitted.attribute(ANOMALOUS).shape == ANOMALOUS.shape  # still usable


def test_bad_arguments_raise(fitted):
    with pytest.raises(ValueError, match="concept must be an int in 0..1"):
        fitted.counterfactual(ANOMALOUS, concept=2)
    with pytest.raises(ValueError, match="target_score"):
        fitted.counterfactuals(ANOMALOUS, target_score=1.5)
    with pytest.raises(ValueError, match="alphas"):
        fitted.traverse(ANOMALOUS, alphas=[0.5, 2.0])
    with pytest.raises(ValueError, match="tuple of one tensor"):
        fitted.attribute((ANOMALOUS, ANOMALOUS))


def test_fit_refuses_bad_data_and_detectors():
    explainer = CounterfactualAnomalyExplainer(config=TINY)
    with pytest.raises(ValueError, match="no batches"):
        explainer.fit(Spot(), [], steps=1, progress=False)
    with pytest.raises(TypeError, match="yielded str"):
        explainer.fit(Spot(), ["not an image"], steps=1, progress=False)
    with pytest.raises(ValueError, match="different shapes"):
        explainer.fit(Spot(), [NORMAL, NORMAL[..., :12, :12]], steps=1, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        explainer.fit(
            lambda x: torch.full((len(x),), float("nan")), [NORMAL], steps=1, progress=False
        )
    for name in ("outlier_loader", "reference_loader"):
        with pytest.raises(ValueError, match=f"{name}'s images are \\(1, 12, 12\\)"):
            explainer.fit(
                Spot(), [NORMAL], **{name: [NORMAL[..., :12, :12]]}, steps=1, progress=False
            )
    with pytest.raises(ValueError, match="does not change with the input"):
        explainer.fit(lambda x: 0.0 * x.sum((1, 2, 3)) + 0.3, [NORMAL], steps=1, progress=False)
    with pytest.raises(ValueError, match="n_concepts"):
        CounterfactualAnomalyExplainer(n_concepts=0).fit(Spot(), [NORMAL], steps=1, progress=False)
    assert not hasattr(explainer, "generator_")


def test_a_crash_while_saving_leaves_the_previous_save_intact(fitted, tmp_path, monkeypatch):
    folder = fitted.save(tmp_path / "ex")
    before = (folder / "weights.pt").read_bytes()

    def crash(obj, path):
        pathlib.Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        fitted.save(folder)
    monkeypatch.undo()
    assert (folder / "weights.pt").read_bytes() == before
    CounterfactualAnomalyExplainer.load(folder)


def test_nan_weights_are_never_saved(tmp_path):
    explainer = CounterfactualAnomalyExplainer(config=TINY).fit(
        Spot(), [NORMAL], steps=1, progress=False
    )
    with torch.no_grad():
        next(explainer.generator_.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN or Inf"):
        explainer.save(tmp_path / "ex")
    assert not (tmp_path / "ex" / "weights.pt").exists()
