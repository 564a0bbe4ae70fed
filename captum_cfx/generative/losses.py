"""The five loss groups of the method (docs/method.rst, "The five loss groups"), one function each,
plus the distinctness hinge that keeps the K counterfactuals apart.

Images are (N, C, H, W) in [0, 1] throughout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def loss_discriminator(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """1. GAN, D's side (hinge): L_D = E[relu(1 - D(x))] + E[relu(1 + D(x_bar))]."""
    return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()


def loss_gan(d_fake: Tensor) -> Tensor:
    """1. GAN, G's side: L_G = -E[D(x_bar)]."""
    return -d_fake.mean()


def loss_phi(logit_bar: Tensor, target_bar: Tensor, logit_tilde: Tensor, score: Tensor) -> Tensor:
    """2. Anomaly score, the paper's ``BCE(phi(x_bar), alpha) + BCE(phi(x_tilde), s)`` with
    x_bar's term on phi's logit scale: a Huber loss (``beta = 1``) between phi's logits on
    x_bar (N,) and the targets' logits (N,), plus ``BCE(phi(x_tilde), s)``.

    BCE's pull on a logit is ``phi - alpha``, which fades as the target nears 0: a
    counterfactual at phi = 0.05 aimed at 0.005 is pulled with 0.045. The Huber term pulls
    with the logit gap, capped at 1, whatever the target. x_tilde keeps BCE: on logits it
    would demand the input's exact logit back (5.8 rather than 2 for phi = 0.997 rather than
    0.88), a cost for every round trip that leaves G better off not editing at all.
    """
    return F.smooth_l1_loss(logit_bar, target_bar) + F.binary_cross_entropy_with_logits(
        logit_tilde, score
    )


def loss_rec(x_rec: Tensor, x: Tensor) -> Tensor:
    """3. Reconstruction: ``L_rec = |G(x, s, k) - x|_1`` (mean)."""
    return (x_rec - x).abs().mean()


def loss_cyc(x_tilde: Tensor, x: Tensor) -> Tensor:
    """4. Cycle: ``L_cyc = |G(G(x, alpha, k), s, k) - x|_1`` (mean)."""
    return (x_tilde - x).abs().mean()


def loss_con(
    logits_change: Tensor, logits_back: Tensor, logits_rec: Tensor, concept: Tensor, n_concepts: int
) -> Tensor:
    """5. Concept: R predicts which concept changed (sigmoid BCE).

    Targets one-hot(k) for the pairs (x, x_bar) and (x_bar, x_tilde), logits (N, K) each
    with ``concept`` (N,); all-zero for (x, x_rec), logits (M, K).
    """
    target = F.one_hot(concept, n_concepts).to(logits_change.dtype)
    return (
        F.binary_cross_entropy_with_logits(logits_change, target)
        + F.binary_cross_entropy_with_logits(logits_back, target)
        + F.binary_cross_entropy_with_logits(logits_rec, torch.zeros_like(logits_rec))
    )


def loss_distinct(x_k: Tensor, x_other: Tensor, margin: float, pool: int = 4) -> Tensor:
    """The paper's ``|x_k - x_k'|_1 >= eps'`` as a hinge on ``pool``-pooled images.

    Counterfactuals of the same inputs for two different concepts, (N, C, H, W) each, are
    pushed apart until their pooled mean L1 distance reaches ``margin``. Pooling makes the
    difference one a person sees, not a pixel marker.
    """
    distance = (F.avg_pool2d(x_k, pool) - F.avg_pool2d(x_other, pool)).abs().mean((1, 2, 3))
    return F.relu(margin - distance).mean()
