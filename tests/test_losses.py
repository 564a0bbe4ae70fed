"""captum_cfx.generative.losses: the five loss groups and the distinctness hinge, on known
answers."""

from __future__ import annotations

import pytest
import torch

from captum_cfx.generative import losses


def test_the_gan_hinge_is_zero_beyond_the_margins_and_g_lowers_ds_score():
    assert float(losses.loss_discriminator(torch.full((4,), 2.0), torch.full((4,), -2.0))) == 0
    assert float(losses.loss_discriminator(torch.zeros(4), torch.zeros(4))) == 2.0
    assert float(losses.loss_gan(torch.tensor([1.0, 3.0]))) == -2.0


def test_loss_phi_pulls_x_bar_by_the_logit_gap_capped_and_x_tilde_by_bce():
    score = torch.tensor([0.9, 0.2])
    logit_tilde = torch.logit(score)  # x_tilde scored as the input: BCE at its entropy
    entropy = float(torch.nn.functional.binary_cross_entropy(score, score))
    target = torch.tensor([-3.0, -3.0])
    near = float(losses.loss_phi(target + 0.5, target, logit_tilde, score))
    assert near == pytest.approx(0.5 * 0.5**2 + entropy, abs=1e-6)  # Huber's square
    logit_bar = torch.tensor([3.0, 7.0], requires_grad=True)  # 6 and 10 logits off
    far = losses.loss_phi(logit_bar, target, logit_tilde, score)
    assert float(far.detach()) == pytest.approx(
        (5.5 + 9.5) / 2 + entropy, abs=1e-5
    )  # linear beyond 1
    (gradient,) = torch.autograd.grad(far, logit_bar)
    torch.testing.assert_close(gradient, torch.tensor([0.5, 0.5]))  # capped, mean over 2


def test_reconstruction_and_cycle_are_the_mean_l1():
    x = torch.zeros(2, 1, 4, 4)
    assert float(losses.loss_rec(x + 0.25, x)) == 0.25
    assert float(losses.loss_cyc(x.index_fill(0, torch.tensor([0]), 1.0), x)) == 0.5


def test_the_concept_loss_is_low_when_r_names_the_concept_and_nothing_for_x_rec():
    concept = torch.tensor([0, 1, 1])
    right = 20 * (2 * torch.nn.functional.one_hot(concept, 3).float() - 1)
    silent = torch.full((2, 3), -20.0)
    assert float(losses.loss_con(right, right, silent, concept, 3)) < 1e-6
    wrong = right.roll(1, dims=1)
    assert float(losses.loss_con(wrong, right, silent, concept, 3)) > 5
    assert float(losses.loss_con(right, right, -silent, concept, 3)) > 5


def test_distinctness_pushes_apart_until_the_pooled_distance_reaches_the_margin():
    x = torch.zeros(2, 1, 16, 16)
    assert float(losses.loss_distinct(x, x, margin=0.1)) == pytest.approx(0.1)
    assert float(losses.loss_distinct(x, x + 0.2, margin=0.1)) == 0.0
    # One changed pixel is 1/16 of one pooled cell, 1/256 of the pooled mean: barely apart.
    marker = x.clone()
    marker[:, :, 5, 5] = 1.0
    assert float(losses.loss_distinct(x, marker, margin=0.1)) == pytest.approx(0.1 - 1 / 256)
