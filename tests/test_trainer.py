"""CounterfactualTrainer: phi's floor, L_phi read on the images with the views' gradient,
L_phi on logits, the floor's feedback (``floor_feedback``), the normal logits' quantiles as
targets, G's weights' moving average (``ema_decay``) and the best-judged snapshot."""

from __future__ import annotations

import resource
from contextlib import contextmanager
from dataclasses import replace
from typing import List, Optional

import pytest
import torch
from helpers import TINY, BrightSquare, bright_square_images
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from captum_cfx import CounterfactualAnomalyExplainer, GeneratorConfig, as_detector
from captum_cfx._device import _glibc, cpu_memory_retained
from captum_cfx.generative.augment import robust_view
from captum_cfx.generative.trainer import (
    FLOOR_SAMPLE,
    MAX_PHI_GAIN,
    PHI_STEEPNESS,
    CounterfactualTrainer,
)


class SquareOrNoise(nn.Module):
    """phi's logit: a bright square is anomalous, and so is pixel noise, which the robust
    view adds to these smooth images (as blur and noise raise the scores of detectors never
    shown them)."""

    def forward(self, x):
        pooled = nn.functional.avg_pool2d(x, 4).amax((1, 2, 3))
        noise = (x - nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)).abs()
        return 20 * (pooled - 0.4) + 200 * noise.mean((1, 2, 3))


def _trainer(
    normal: torch.Tensor,
    n_concepts: int = 1,
    reference: Optional[torch.Tensor] = None,
    **overrides: float,
) -> CounterfactualTrainer:
    config = replace(TINY, **overrides)
    anomalous = torch.cat([bright_square_images(4, True, seed=10 + s, flat=True) for s in range(8)])
    return CounterfactualTrainer(
        as_detector(SquareOrNoise(), calibration="sigmoid"),
        normal,
        anomalous,
        n_concepts,
        config,
        torch.device("cpu"),
        seed=0,
        reference=reference,
    )


class MeanLogit(nn.Module):
    """phi's logit: ``gain`` times the mean pixel minus 1/2, whose d logit / d x has L1 norm
    ``gain`` exactly."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, x):
        return self.gain * (x.mean((1, 2, 3)) - 0.5)


@pytest.mark.parametrize(
    "steepness, gain",
    [(PHI_STEEPNESS / 10, 10.0), (PHI_STEEPNESS * 10, 1.0), (1e-6, MAX_PHI_GAIN)],
)
def test_l_phi_is_weighted_up_for_a_flat_detector_by_its_steepness_not_for_a_steep_one(
    steepness, gain
):
    normal = bright_square_images(64, False, seed=1)
    trainer = CounterfactualTrainer(
        as_detector(MeanLogit(steepness), calibration="sigmoid"),
        normal,
        None,
        2,
        TINY,
        torch.device("cpu"),
        seed=0,
    )
    record = trainer.train_step()
    assert record["phi_gain"] == pytest.approx(gain, rel=1e-4)
    cfg = trainer.config
    weights = {
        "loss_gan": cfg.lambda_gan,
        "loss_phi": cfg.lambda_phi * gain,
        "loss_rec": cfg.lambda_rec,
        "loss_cyc": cfg.lambda_cyc,
        "loss_con": cfg.lambda_con,
        "loss_distinct": cfg.lambda_distinct,
    }
    total = sum(weight * record[name] for name, weight in weights.items())
    assert record["loss_total"] == pytest.approx(total, rel=1e-4)


def test_the_floor_is_the_median_of_all_kinds_of_normal_image_in_a_sorted_set():
    # Normal images sorted by brightness, as a loader sorted by class delivers them: the
    # first images alone are the darkest, and their median score is far below the set's.
    m = 2000
    assert m > FLOOR_SAMPLE  # so the floor is set by a random subset, not by all of them
    levels = torch.linspace(0.25, 0.45, m)  # logits -3 to 1
    normal = levels[:, None, None, None].expand(m, 1, 16, 16).clone()
    trainer = _trainer(normal)
    phi = trainer.detector
    with torch.no_grad():
        middle, first = float(phi.logit(normal).median()), float(phi.logit(normal[:512]).median())
    assert first < middle - 0.5
    assert abs(trainer.floor - middle) < 0.2


def test_a_held_out_reference_not_the_training_images_sets_the_floor_and_its_range():
    # The detector scores its training images (logits -3 to -1) below held-out normal images
    # (-1 to 1); the floor and its range must come from the held-out ones.
    normal = torch.linspace(0.25, 0.35, 512)[:, None, None, None].expand(512, 1, 16, 16).clone()
    reference = normal + 0.1
    trainer = _trainer(normal, reference=reference)
    with torch.no_grad():
        held_out = trainer.detector.logit(reference).float()
        training_median = float(trainer.detector.logit(normal).median())
    assert abs(trainer.floor - float(held_out.median())) < 1e-4
    assert trainer.floor > training_median + 1.0
    low, high = trainer.floor_bounds
    assert float(held_out.min()) - 1e-4 <= low < high <= float(held_out.max()) + 1e-4


def test_calibrated_logits_read_the_images_and_take_the_views_gradient():
    trainer = _trainer(bright_square_images(64, False, seed=1, flat=True))
    images = bright_square_images(6, True, seed=3, flat=True).requires_grad_()
    view = robust_view(images, torch.Generator().manual_seed(0), trainer.config.robust_noise)
    logit_view = trainer.detector.logit(view)
    assert (logit_view - trainer.detector.logit(images)).abs().min() > 1.0  # views score higher
    calibrated = trainer._calibrated(logit_view, trainer.detector.logit(images).detach())
    torch.testing.assert_close(calibrated, trainer.detector.logit(images).detach())
    (grad_calibrated,) = torch.autograd.grad(calibrated.sum(), images, retain_graph=True)
    (grad_view,) = torch.autograd.grad(logit_view.sum(), images)
    torch.testing.assert_close(grad_calibrated, grad_view)


def test_logit_phi_loss_aims_x_bar_at_alpha_floored_and_x_tilde_at_the_inputs_score():
    normal = bright_square_images(64, False, seed=1, flat=True)
    trainer = _trainer(normal)
    phi = trainer.detector
    with torch.no_grad():
        expected_floor = float(phi.logit(normal).float().median())
    assert trainer.floor == pytest.approx(expected_floor, abs=1e-5)
    floor = trainer.floor
    assert floor > -20  # so alpha = 1e-9 (logit -20.7) is floored too
    alpha = torch.tensor([0.0, 0.5, 0.9, 0.0, 1e-9, 0.0])
    targets = torch.tensor([floor, 0.0, 2.1972246, floor, floor, floor])
    x = bright_square_images(3, True, seed=2, flat=True)
    with torch.no_grad():
        logit_tilde, score = phi.logit(torch.cat([x, x])).float(), phi(torch.cat([x, x]))
    # x_tilde's term is the paper's BCE against the inputs' scores.
    tilde_term = float(nn.functional.binary_cross_entropy_with_logits(logit_tilde, score))
    # With nothing judged (no flagged input at alpha = 0) the targets are alpha, floored.
    concept, judged = torch.zeros(6, dtype=torch.long), torch.zeros(6, dtype=torch.bool)
    at_targets = float(trainer._loss_phi(alpha, score, concept, judged, targets, logit_tilde))
    assert at_targets == pytest.approx(tilde_term, abs=1e-6)
    # Half a logit off on every x_bar: Huber's 0.5 * 0.5**2 = 0.125 more.
    off = float(trainer._loss_phi(alpha, score, concept, judged, targets + 0.5, logit_tilde))
    assert off - at_targets == pytest.approx(0.125, abs=1e-5)


def test_the_batch_normality_auroc_ranks_judged_counterfactuals_against_the_normal_images():
    normal = bright_square_images(64, False, seed=1, flat=True)
    trainer = _trainer(normal)
    with torch.no_grad():
        logits = trainer.detector.logit(normal).float()
    above, below = float(logits.max()) + 1.0, float(logits.min()) - 1.0
    judged = torch.tensor([True, True, True, True, False, False])
    # The trainer passes only the judged counterfactuals' logits; 3 of these 4 lie above
    # every normal image: 3/4.
    batch = torch.tensor([above, above, above, below, below, below])
    assert trainer._batch_normality_auroc(batch[judged]) == pytest.approx(0.75)
    # It counts pairs, not sides of the median: two judged above every normal image and two
    # above exactly a quarter of them give (1 + 1 + 1/4 + 1/4) / 4 = 5/8.
    ranked = logits.sort().values
    assert ranked.unique().numel() == len(ranked)  # so "above a quarter" is exact
    quarter = float(ranked[len(ranked) // 4 - 1 : len(ranked) // 4 + 1].mean())
    batch = torch.tensor([above, quarter, above, quarter, below, below])
    assert trainer._batch_normality_auroc(batch[judged]) == pytest.approx(5 / 8)
    assert trainer._batch_normality_auroc(batch[:0]) is None


def test_floor_feedback_moves_the_floor_by_the_batch_normality_auroc_minus_one_half():
    normal = bright_square_images(64, False, seed=1, flat=True)
    trainer = _trainer(normal, floor_feedback=0.1)
    with torch.no_grad():
        logits = trainer.detector.logit(normal).float()
    low, high = trainer.floor_bounds
    assert (low, high) == pytest.approx(logits.quantile(torch.tensor([0.05, 0.95])).tolist())
    median = trainer.normal_median
    assert low < median < high and trainer.floor == median
    assert trainer._moved(median, 0.75) == pytest.approx(median - 0.025)  # above: down by 0.1 / 4
    assert trainer._moved(median, 0.5) == median
    # All below: up by 0.05, but never past the 95th percentile.
    assert trainer._moved(median, 0.0) == pytest.approx(median + 0.05)
    assert trainer._moved(high - 0.01, 0.0) == pytest.approx(high)


def test_floor_feedback_follows_training_and_resumes_from_a_checkpoint():
    normal = bright_square_images(64, False, seed=1, flat=True)
    every_zero = {"floor_feedback": 0.05, "alpha_zero_share": 1.0}
    trainer = _trainer(normal, **every_zero)
    for _ in range(3):
        trainer.train_step()
    # An untrained G barely edits: the counterfactuals of the batch's bright squares (all
    # flagged, all at alpha = 0) score far above the normal median, so the floor went down by
    # 0.05 / 2 in each step.
    floors = torch.tensor([trainer.normal_median] + trainer.history["floor"])
    torch.testing.assert_close(floors.diff(), torch.full((3,), -0.025))
    assert trainer.history["floor"][-1] == trainer.floor
    assert trainer.history["normality_auroc"] == [1.0, 1.0, 1.0]
    resumed = _trainer(normal, **every_zero)
    resumed.load_state_dict(trainer.state_dict())
    assert resumed.floor == trainer.floor
    # Without the feedback the floor stays where it started.
    fixed = _trainer(normal, floor_feedback=0.0)
    fixed.train_step()
    assert fixed.history["floor"] == [fixed.normal_median]


def test_floor_feedback_is_checked():
    with pytest.raises(ValueError, match="floor_feedback must be nonnegative"):
        GeneratorConfig(floor_feedback=-0.1)
    # A configuration saved with a switch since retired is refused by name.
    with pytest.raises(ValueError, match="floor_per_concept.*retired"):
        GeneratorConfig.from_dict({"floor_per_concept": True})


def test_normal_quantile_targets_aim_each_concepts_judged_counterfactuals_by_rank():
    normal = bright_square_images(64, False, seed=1, flat=True)
    trainer = _trainer(normal, n_concepts=2)
    quantile = trainer.normal_scores.quantile
    # The i-th lowest of four gets the (i + 1/2) / 4 quantile, whatever the logits' order.
    targets = trainer._normal_quantiles_by_rank(torch.tensor([3.0, -1.0, 2.0, 0.0]))
    expected = quantile(torch.tensor([0.875, 0.125, 0.625, 0.375]))
    torch.testing.assert_close(targets, expected)
    # In L_phi each concept's judged counterfactuals are ranked among themselves; the others
    # (an unjudged alpha = 0 and an alpha = 0.5) keep the floored targets.
    alpha = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.5])
    concept = torch.tensor([0, 0, 1, 1, 0, 1])
    judged = torch.tensor([True, True, True, True, False, False])
    halves = quantile(torch.tensor([0.25, 0.75]))
    logit_bar = torch.stack([halves[1], halves[0], halves[0], halves[1]])
    logit_bar = torch.cat([logit_bar, torch.tensor([trainer.floor, 0.0])])
    x = bright_square_images(3, True, seed=2, flat=True)
    with torch.no_grad():
        logit_tilde, score = (
            trainer.detector.logit(torch.cat([x, x])).float(),
            trainer.detector(torch.cat([x, x])),
        )
    tilde_term = float(nn.functional.binary_cross_entropy_with_logits(logit_tilde, score))
    loss = trainer._loss_phi(alpha, score, concept, judged, logit_bar, logit_tilde)
    assert float(loss) == pytest.approx(tilde_term, abs=1e-6)
    # The same logits as one concept: four ranks, so none sits at its target any more.
    one = trainer._loss_phi(
        alpha, score, torch.zeros(6, dtype=torch.long), judged, logit_bar, logit_tilde
    )
    assert float(one) > tilde_term + 1e-3
    # With floor_feedback they move as far as the floor has.
    trainer.floor = trainer.normal_median - 0.5
    shifted = trainer._normal_quantiles_by_rank(torch.tensor([3.0, -1.0, 2.0, 0.0]))
    torch.testing.assert_close(shifted, expected - 0.5)
    # And in training: every batch image at alpha = 0 with two concepts.
    training = _trainer(normal, 2, alpha_zero_share=1.0)
    records = [training.train_step() for _ in range(2)]
    assert all(r["loss_phi"] > 0 and r["normality_auroc"] == 1.0 for r in records)


def test_ema_decay_keeps_gs_weights_moving_average_and_resumes_it(monkeypatch):
    normal = bright_square_images(64, False, seed=1, flat=True)
    trainer = _trainer(normal, ema_decay=0.5, alpha_zero_share=1.0)
    assert trainer.kept_generator is not trainer.generator
    expected = None
    for _ in range(3):
        trainer.train_step()
        weights = [p.detach().clone() for p in trainer.generator.parameters()]
        # The first update copies G; each later one moves halfway to G.
        expected = weights if expected is None else [(e + w) / 2 for e, w in zip(expected, weights)]
    for kept, want in zip(trainer.kept_generator.parameters(), expected):
        torch.testing.assert_close(kept, want)
    assert any(not torch.equal(k, w) for k, w in zip(trainer.kept_generator.parameters(), weights))
    # The averaged G is judged on every step's batch too (every input at alpha = 0 here).
    assert len(trainer.history["normality_auroc_average"]) == 3
    # An untrained average barely edits either: every counterfactual above normal.
    assert trainer.history["normality_auroc_average"] == [1.0, 1.0, 1.0]
    # A checkpoint restores the average; one from before ema_decay starts it at G.
    resumed = _trainer(normal, ema_decay=0.5, alpha_zero_share=1.0)
    resumed.load_state_dict(trainer.state_dict())
    for a, b in zip(resumed.kept_generator.parameters(), trainer.kept_generator.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    older = _trainer(normal, ema_decay=0.5, alpha_zero_share=1.0)
    older.load_state_dict(
        {k: v for k, v in trainer.state_dict().items() if k != "generator_average"}
    )
    older.train_step()
    for a, b in zip(older.kept_generator.parameters(), older.generator.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # With the floor feedback the floor follows the averaged G's batch AuROC, not G's: an
    # untrained G scores every counterfactual above normal (AuROC 1), so with the average
    # made to score every one below normal (AuROC 0) the floor goes up by 0.05 / 2 a step.
    following = _trainer(normal, ema_decay=0.5, alpha_zero_share=1.0, floor_feedback=0.05)
    below_normal = following.normal_scores.min() - 1
    monkeypatch.setattr(
        following, "_averaged_logits", lambda x, alpha, k: below_normal.expand(len(x))
    )
    for _ in range(3):
        following.train_step()
    floors = torch.tensor([following.normal_median] + following.history["floor"])
    torch.testing.assert_close(floors.diff(), torch.full((3,), 0.025))
    assert following.history["normality_auroc"] == [1.0, 1.0, 1.0]
    assert following.history["normality_auroc_average"] == [0.0, 0.0, 0.0]
    # Without it the explainer keeps G itself and nothing else is recorded.
    plain = _trainer(normal, ema_decay=0.0)
    plain.train_step()
    assert plain.kept_generator is plain.generator
    assert "normality_auroc_average" not in plain.history


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_ema_decay_is_checked(decay):
    with pytest.raises(ValueError, match=r"ema_decay must lie in \[0, 1\)"):
        GeneratorConfig(ema_decay=decay)


def _conv_output_dtypes(monkeypatch) -> List[torch.dtype]:
    """The dtype of every convolution's output from now on, in order (G's, D's, R's)."""
    dtypes: List[torch.dtype] = []
    original = nn.Conv2d.forward

    def recording(self, x):
        out = original(self, x)
        dtypes.append(out.dtype)
        return out

    monkeypatch.setattr(nn.Conv2d, "forward", recording)
    return dtypes


def test_on_a_bf16_device_the_forward_passes_run_in_bfloat16_and_the_weights_stay_float32(
    monkeypatch,
):
    # CUDA is where the library turns bfloat16 autocast on; the CPU's autocast runs the same
    # code path here, so that the step is checked end to end without a GPU.
    monkeypatch.setattr("captum_cfx._device.BF16_DEVICE_TYPES", ("cuda", "cpu"))
    dtypes = _conv_output_dtypes(monkeypatch)
    normal = bright_square_images(64, False, seed=1, flat=True)
    trainer = _trainer(normal, n_concepts=2)
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    record = trainer.train_step()
    assert torch.bfloat16 in dtypes
    assert all(value is None or torch.isfinite(torch.tensor(value)) for value in record.values())
    after = list(trainer.generator.parameters())
    assert all(p.dtype == torch.float32 for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))


def test_on_the_cpu_a_training_step_runs_in_float32(monkeypatch):
    dtypes = _conv_output_dtypes(monkeypatch)
    _trainer(bright_square_images(64, False, seed=1, flat=True)).train_step()
    assert dtypes and set(dtypes) == {torch.float32}


def _page_faults_of_a_fresh_tensor(numel: int) -> int:
    """Minor page faults while a tensor of ``numel`` floats is made and written once."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(numel)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(_glibc() is None, reason="the allocator settings are glibc's")
def test_a_cpu_training_run_reuses_freed_memory_instead_of_faulting_it_in_again():
    # 64 MiB, above glibc's largest mmap threshold: outside the block every such tensor is a
    # fresh mmap whose 16,384 pages fault in when written (as a 128-pixel step's activations).
    numel, pages = 16 * 2**20, 64 * 2**20 // resource.getpagesize()
    with cpu_memory_retained(torch.device("cpu")):
        for _ in range(3):  # the heap grows to hold it (twice here, as alignment splits it)
            _page_faults_of_a_fresh_tensor(numel)
        again = [_page_faults_of_a_fresh_tensor(numel) for _ in range(3)]
    assert max(again) < pages / 10


def test_every_training_step_of_a_run_is_taken_inside_the_retained_memory_block(monkeypatch):
    inside: List[bool] = []
    steps_inside: List[bool] = []

    @contextmanager
    def recording(device):
        inside.append(True)
        yield
        inside.pop()

    monkeypatch.setattr("captum_cfx.generative.trainer.cpu_memory_retained", recording)
    trainer = _trainer(bright_square_images(64, False, seed=1, flat=True))
    take_step = trainer.train_step
    monkeypatch.setattr(
        trainer, "train_step", lambda: steps_inside.append(bool(inside)) or take_step()
    )
    trainer.run(3, progress=False)
    assert steps_inside == [True] * 3 and not inside


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fit_on_cuda_trains_there_and_returns_cpu_counterfactuals():
    normal = DataLoader(TensorDataset(bright_square_images(64, False, seed=1)), batch_size=16)
    explainer = CounterfactualAnomalyExplainer(n_concepts=2, config=TINY).fit(
        BrightSquare(), normal, steps=20, device="cuda", progress=False
    )
    assert next(explainer.generator_.parameters()).device.type == "cuda"
    cfs = explainer.counterfactuals(bright_square_images(4, True, seed=2))
    assert cfs.shape == (4, 2, 1, 16, 16) and cfs.device.type == "cpu"
    assert torch.isfinite(cfs).all()
