"""CounterfactualTrainer: phi's floor, L_phi's view calibration (``calibrate_views``),
L_phi on logits (``phi_loss="logit"``), the floor's feedback (``floor_feedback``) and the
normal logits' quantiles as targets (``normal_quantile_targets``), G's weights' moving
average (``ema_decay``) and the prior against ink off the normal support
(``lambda_support``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import pytest
import torch
from helpers import TINY, bright_square_images
from torch import nn

from captum_cfx import GeneratorConfig, as_detector
from captum_cfx.generative import losses
from captum_cfx.generative.augment import robust_view
from captum_cfx.generative.trainer import FLOOR_SAMPLE, CounterfactualTrainer


class SquareOrNoise(nn.Module):
    """phi's logit: a bright square is anomalous, and so is pixel noise, which the robust
    view adds to these smooth images (as blur and noise raise the scores of detectors never
    shown them)."""

    def forward(self, x):
        pooled = nn.functional.avg_pool2d(x, 4).amax((1, 2, 3))
        noise = (x - nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)).abs()
        return 20 * (pooled - 0.4) + 200 * noise.mean((1, 2, 3))


def _trainer(
    calibrate_views: bool,
    normal: torch.Tensor,
    phi_loss: str = "bce",
    n_concepts: int = 1,
    reference: Optional[torch.Tensor] = None,
    **overrides: float,
) -> CounterfactualTrainer:
    config = replace(TINY, calibrate_views=calibrate_views, phi_loss=phi_loss, **overrides)
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


def test_the_floor_is_the_median_of_all_kinds_of_normal_image_in_a_sorted_set():
    # Normal images sorted by brightness, as a loader sorted by class delivers them: the
    # first images alone are the darkest, and their median score is far below the set's.
    m = 2000
    assert m > FLOOR_SAMPLE  # so the floor is set by a random subset, not by all of them
    levels = torch.linspace(0.25, 0.45, m)  # logits -3 to 1
    normal = levels[:, None, None, None].expand(m, 1, 16, 16).clone()
    trainer = _trainer(False, normal)
    phi = trainer.detector
    with torch.no_grad():
        middle, first = float(phi(normal).median()), float(phi(normal[:512]).median())
    assert first < middle - 0.1
    assert abs(trainer.floor - middle) < 0.04


def test_a_held_out_reference_not_the_training_images_sets_the_floor_and_its_range():
    # The detector scores its training images (logits -3 to -1) below held-out normal images
    # (-1 to 1); the floor and its range must come from the held-out ones.
    normal = torch.linspace(0.25, 0.35, 512)[:, None, None, None].expand(512, 1, 16, 16).clone()
    reference = normal + 0.1
    trainer = _trainer(False, normal, reference=reference)
    with torch.no_grad():
        held_out = trainer.detector(reference)
        training_median = float(trainer.detector(normal).median())
    assert abs(trainer.floor - float(held_out.median())) < 1e-4
    assert trainer.floor > training_median + 0.2
    low, high = trainer.floor_bounds
    assert float(held_out.min()) - 1e-4 <= low < high <= float(held_out.max()) + 1e-4


def test_calibrated_logits_read_the_images_and_take_the_views_gradient():
    trainer = _trainer(True, bright_square_images(64, False, seed=1, flat=True))
    images = bright_square_images(6, True, seed=3, flat=True).requires_grad_()
    view = robust_view(images, torch.Generator().manual_seed(0), trainer.config.robust_noise)
    logit_view = trainer.detector.logit(view)
    assert (logit_view - trainer.detector.logit(images)).abs().min() > 1.0  # views score higher
    calibrated = trainer._calibrated(logit_view, images)
    torch.testing.assert_close(calibrated, trainer.detector.logit(images).detach())
    (grad_calibrated,) = torch.autograd.grad(calibrated.sum(), images, retain_graph=True)
    (grad_view,) = torch.autograd.grad(logit_view.sum(), images)
    torch.testing.assert_close(grad_calibrated, grad_view)


def test_bce_pull_fades_near_a_low_target_and_the_logit_loss_pull_does_not():
    # A counterfactual x_bar at phi = 0.05, against a target of 0.005 and against one of 0.3.
    logit_bar = torch.logit(torch.tensor([0.05])).requires_grad_()
    logit_tilde, score = torch.tensor([2.0]), torch.tensor([0.9])
    for target, bce_pull in ((0.005, 0.045), (0.3, -0.25)):
        alpha = torch.tensor([target])
        (grad_bce,) = torch.autograd.grad(
            losses.loss_phi(logit_bar, alpha, logit_tilde, score), logit_bar
        )
        torch.testing.assert_close(grad_bce, torch.tensor([bce_pull]))  # phi - alpha
        (grad_logit,) = torch.autograd.grad(
            losses.loss_phi_logit(logit_bar, torch.logit(alpha), logit_tilde, score), logit_bar
        )
        # The logit gaps are 2.35 and -2.10: beyond Huber's beta = 1, the pull is 1 either way.
        torch.testing.assert_close(grad_logit, torch.tensor([1.0 if bce_pull > 0 else -1.0]))


def test_logit_phi_loss_aims_x_bar_at_alpha_floored_and_x_tilde_at_the_inputs_score():
    normal = bright_square_images(64, False, seed=1, flat=True)
    trainer = _trainer(False, normal, phi_loss="logit")
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
    # Without normal_quantile_targets the concepts and the judged mask leave the targets alone.
    concept, judged = torch.zeros(6, dtype=torch.long), alpha == 0
    at_targets = float(trainer._loss_phi(alpha, score, concept, judged, targets, logit_tilde))
    assert at_targets == pytest.approx(tilde_term, abs=1e-6)
    # Half a logit off on every x_bar: Huber's 0.5 * 0.5**2 = 0.125 more.
    off = float(trainer._loss_phi(alpha, score, concept, judged, targets + 0.5, logit_tilde))
    assert off - at_targets == pytest.approx(0.125, abs=1e-5)


def test_phi_loss_is_checked_by_name():
    with pytest.raises(ValueError, match="phi_loss must be one of"):
        GeneratorConfig(phi_loss="mse")


def test_the_batch_normality_auroc_ranks_judged_counterfactuals_against_the_normal_images():
    normal = bright_square_images(64, False, seed=1, flat=True)
    trainer = _trainer(False, normal, phi_loss="logit")
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


@pytest.mark.parametrize("phi_loss", ["bce", "logit"])
def test_the_batch_normality_auroc_reads_the_floors_scale_under_either_phi_loss(phi_loss):
    # The BCE L_phi keeps the normal images' scores, the logit form their logits; the judged
    # counterfactuals' logits are ranked against them on that scale either way.
    normal = bright_square_images(64, False, seed=1, flat=True)
    trainer = _trainer(False, normal, phi_loss=phi_loss)
    with torch.no_grad():
        logits = trainer.detector.logit(normal).float()
    assert float(logits.max()) < -1  # so logits and scores do not interleave
    assert trainer._batch_normality_auroc(logits) == pytest.approx(0.5, abs=0.02)
    above = torch.full((4,), float(logits.max()) + 0.5)
    assert trainer._batch_normality_auroc(above) == 1.0
    below = torch.full((4,), float(logits.min()) - 0.5)
    assert trainer._batch_normality_auroc(below) == 0.0


def test_floor_feedback_moves_the_floor_by_the_batch_normality_auroc_minus_one_half():
    normal = bright_square_images(64, False, seed=1, flat=True)
    trainer = _trainer(False, normal, phi_loss="logit", floor_feedback=0.1)
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
    # With floor_feedback_decay = 100 the gain at step 300 is 0.1 / (1 + 3).
    decaying = _trainer(
        False, normal, phi_loss="logit", floor_feedback=0.1, floor_feedback_decay=100
    )
    decaying.step = 300
    assert decaying._moved(median, 0.75) == pytest.approx(median - 0.025 / 4)


def test_floor_range_sets_the_quantiles_the_floor_moves_between():
    normal = bright_square_images(64, False, seed=1, flat=True)
    wide = _trainer(False, normal, phi_loss="logit", floor_feedback=0.1, floor_range=(0.0, 0.95))
    with torch.no_grad():
        logits = wide.detector.logit(normal).float()
    low, high = wide.floor_bounds
    assert low == pytest.approx(float(logits.min()))
    assert high == pytest.approx(float(logits.quantile(0.95)))
    assert low < float(logits.quantile(0.05))
    # Every counterfactual above normal: a floor just above the lowest normal logit moves down
    # to it (by the gain's 0.05 at most) and no further.
    assert wide._moved(low + 0.01, 1.0) == pytest.approx(low)
    for bad in [(0.5, 0.5), (-0.1, 0.9), (0.1, 1.2), (0.0, 0.5, 0.9)]:
        with pytest.raises(ValueError, match="floor_range"):
            GeneratorConfig(floor_range=bad)
    restored = GeneratorConfig.from_dict({"floor_range": [0.0, 0.95]})
    assert restored.floor_range == (0.0, 0.95)


def test_floor_per_concept_moves_each_concepts_floor_by_its_own_auroc():
    normal = bright_square_images(64, False, seed=1, flat=True)
    shared = _trainer(False, normal, "logit", 2, floor_feedback=0.1)
    own = _trainer(False, normal, "logit", 2, floor_feedback=0.1, floor_per_concept=True)
    median = own.normal_median
    high = float(own.normal_scores.max()) + 1.0
    low = float(own.normal_scores.min()) - 1.0
    # Concept 0's two judged counterfactuals score above every normal image, concept 1's
    # below; the unjudged third one of concept 0 (below) counts for neither.
    logit_bar = torch.tensor([high, high, low, low, low])
    concept = torch.tensor([0, 0, 1, 1, 0])
    judged = torch.tensor([True, True, True, True, False])
    pooled = shared._batch_normality_auroc(logit_bar[judged])
    assert pooled == 0.5
    shared._move_floors(logit_bar[judged], concept[judged], pooled)
    assert shared.floors == [median, median]
    own._move_floors(logit_bar[judged], concept[judged], pooled)
    assert own.floors == pytest.approx([median - 0.05, median + 0.05])
    assert own.floor == pytest.approx(median)
    # A concept with nothing judged keeps its floor.
    ones = judged & (concept == 1)
    own._move_floors(logit_bar[ones], concept[ones], None)
    assert own.floors == pytest.approx([median - 0.05, median + 0.1])
    # Each x_bar at alpha = 0 is aimed at its own concept's floor.
    alpha = torch.zeros(2)
    score = torch.full((2,), 0.9)
    at_floors = torch.tensor(own.floors)
    loss = own._loss_phi(
        alpha,
        score,
        torch.tensor([0, 1]),
        torch.zeros(2, dtype=torch.bool),
        at_floors,
        torch.full((2,), 3.0),
    )
    tilde_term = nn.functional.binary_cross_entropy_with_logits(torch.full((2,), 3.0), score)
    assert float(loss) == pytest.approx(float(tilde_term), abs=1e-6)
    # In training each floor is recorded and resumes from a checkpoint.
    training = _trainer(
        False,
        normal,
        "logit",
        2,
        floor_feedback=0.1,
        floor_per_concept=True,
        alpha_zero_share=1.0,
    )
    record = training.train_step()
    # An untrained G barely edits: both concepts' counterfactuals of the bright squares score
    # above every normal image (AuROC 1), so each floor went down by 0.1 / 2.
    assert training.floors == pytest.approx([median - 0.05, median - 0.05])
    assert [record["floor_0"], record["floor_1"]] == training.floors
    assert record["floor"] == pytest.approx(sum(training.floors) / 2)
    resumed = _trainer(False, normal, "logit", 2, floor_feedback=0.1, floor_per_concept=True)
    resumed.load_state_dict(training.state_dict())
    assert resumed.floors == training.floors


def test_floor_feedback_follows_training_and_resumes_from_a_checkpoint():
    normal = bright_square_images(64, False, seed=1, flat=True)
    every_zero = {"floor_feedback": 0.05, "alpha_zero_share": 1.0}
    trainer = _trainer(False, normal, phi_loss="logit", **every_zero)
    for _ in range(3):
        trainer.train_step()
    # An untrained G barely edits: the counterfactuals of the batch's bright squares (all
    # flagged, all at alpha = 0) score far above the normal median, so the floor went down by
    # 0.05 / 2 in each step.
    floors = torch.tensor([trainer.normal_median] + trainer.history["floor"])
    torch.testing.assert_close(floors.diff(), torch.full((3,), -0.025))
    assert trainer.history["floor"][-1] == trainer.floor
    assert trainer.history["normality_auroc"] == [1.0, 1.0, 1.0]
    resumed = _trainer(False, normal, phi_loss="logit", **every_zero)
    resumed.load_state_dict(trainer.state_dict())
    assert resumed.floor == trainer.floor
    # A checkpoint written before floor_per_concept holds one shared floor; one written
    # before floor_feedback existed carries no floor: it never moved.
    shared = {k: v for k, v in trainer.state_dict().items() if k != "floors"}
    resumed.load_state_dict({**shared, "floor": -1.5})
    assert resumed.floors == [-1.5]
    resumed.load_state_dict(shared)
    assert resumed.floor == resumed.normal_median != trainer.floor
    # Without the feedback the floor stays where it started.
    fixed = _trainer(False, normal, phi_loss="logit")
    fixed.train_step()
    assert fixed.history["floor"] == [fixed.normal_median]


def test_floor_feedback_is_checked():
    with pytest.raises(ValueError, match="floor_feedback must be nonnegative"):
        GeneratorConfig(phi_loss="logit", floor_feedback=-0.1)
    with pytest.raises(ValueError, match="floor_feedback_decay must be nonnegative"):
        GeneratorConfig(phi_loss="logit", floor_feedback=0.1, floor_feedback_decay=-1)
    with pytest.raises(ValueError, match="set phi_loss='logit'"):
        GeneratorConfig(floor_feedback=0.02)
    with pytest.raises(ValueError, match="set floor_feedback > 0 with it"):
        GeneratorConfig(phi_loss="logit", floor_per_concept=True)


def test_normal_quantile_targets_aim_each_concepts_judged_counterfactuals_by_rank():
    normal = bright_square_images(64, False, seed=1, flat=True)
    trainer = _trainer(False, normal, phi_loss="logit", n_concepts=2, normal_quantile_targets=True)
    quantile = trainer.normal_scores.quantile
    # The i-th lowest of four gets the (i + 1/2) / 4 quantile, whatever the logits' order.
    targets = trainer._normal_quantiles_by_rank(
        torch.tensor([3.0, -1.0, 2.0, 0.0]), trainer.normal_median
    )
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
    shifted = trainer._normal_quantiles_by_rank(
        torch.tensor([3.0, -1.0, 2.0, 0.0]), trainer.normal_median - 0.5
    )
    torch.testing.assert_close(shifted, expected - 0.5)
    # And in training: every batch image at alpha = 0 with two concepts.
    training = _trainer(
        False, normal, "logit", 2, normal_quantile_targets=True, alpha_zero_share=1.0
    )
    records = [training.train_step() for _ in range(2)]
    assert all(r["loss_phi"] > 0 and r["normality_auroc"] == 1.0 for r in records)


def test_normal_quantile_targets_are_checked():
    with pytest.raises(ValueError, match="set phi_loss='logit' with them"):
        GeneratorConfig(normal_quantile_targets=True)


def test_ema_decay_keeps_gs_weights_moving_average_and_resumes_it(monkeypatch):
    normal = bright_square_images(64, False, seed=1, flat=True)
    trainer = _trainer(False, normal, ema_decay=0.5, alpha_zero_share=1.0)
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
    resumed = _trainer(False, normal, ema_decay=0.5, alpha_zero_share=1.0)
    resumed.load_state_dict(trainer.state_dict())
    for a, b in zip(resumed.kept_generator.parameters(), trainer.kept_generator.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    older = _trainer(False, normal, ema_decay=0.5, alpha_zero_share=1.0)
    older.load_state_dict(
        {k: v for k, v in trainer.state_dict().items() if k != "generator_average"}
    )
    older.train_step()
    for a, b in zip(older.kept_generator.parameters(), older.generator.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # With the floor feedback the floor follows the averaged G's batch AuROC, not G's: an
    # untrained G scores every counterfactual above normal (AuROC 1), so with the average
    # made to score every one below normal (AuROC 0) the floor goes up by 0.05 / 2 a step.
    following = _trainer(
        False, normal, phi_loss="logit", ema_decay=0.5, alpha_zero_share=1.0, floor_feedback=0.05
    )
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
    plain = _trainer(False, normal)
    plain.train_step()
    assert plain.kept_generator is plain.generator
    assert "normality_auroc_average" not in plain.history


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_ema_decay_is_checked(decay):
    with pytest.raises(ValueError, match=r"ema_decay must lie in \[0, 1\)"):
        GeneratorConfig(ema_decay=decay)


def test_loss_support_costs_a_mark_off_the_normal_support_and_nothing_on_it():
    support = torch.zeros(16, 16)
    support[4:12, 6:10] = 1.0  # normal images have ink in a central bar only
    x = torch.zeros(1, 1, 16, 16)
    x[:, :, 5:11, 7:9] = 1.0  # the input's own ink, inside the support
    redrawn = torch.zeros_like(x)
    redrawn[:, :, 4:12, 6:10] = 1.0  # new ink where normal images have it
    marked = x.clone()
    marked[:, :, 0:2, 0:5] = 0.2  # a faint mark in a corner: 10 pixels at 0.2
    marked.requires_grad_(True)
    assert losses.loss_support(redrawn, x, support).item() == 0.0
    assert losses.loss_support(torch.zeros_like(x), x, support).item() == 0.0  # erasing
    cost = losses.loss_support(marked, x, support)
    torch.testing.assert_close(cost, torch.tensor(2.0))
    cost.backward()
    assert marked.grad is not None
    assert marked.grad[:, :, 0:2, 0:5].eq(1).all() and marked.grad.sum() == 10


def test_lambda_support_adds_the_prior_on_the_normal_images_support_to_gs_loss():
    normal = bright_square_images(64, False, seed=1, flat=True)
    trainer = _trainer(False, normal, lambda_support=0.5)
    # The support is the normal images' per-pixel 99% quantile: their flat grey, below 0.1.
    assert trainer.support is not None and trainer.support.shape == (16, 16)
    assert 0 < float(trainer.support.max()) <= 0.1
    record = trainer.train_step()
    # The total is every term, loss_support among them, times its weight.
    weighted = sum(
        getattr(trainer.config, name.replace("loss_", "lambda_")) * record[name]
        for name in ("loss_gan", "loss_phi", "loss_rec", "loss_cyc", "loss_con")
        + ("loss_distinct", "loss_support")
    )
    assert record["loss_total"] == pytest.approx(weighted, rel=1e-5)
    # Off by default: no support, no term.
    plain = _trainer(False, normal)
    assert plain.support is None and "loss_support" not in plain.train_step()
    with pytest.raises(ValueError, match="nonnegative"):
        GeneratorConfig(lambda_support=-1.0)
