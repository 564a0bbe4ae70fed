"""``GeneratorConfig``: every hyperparameter of the counterfactual generator and its training."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Tuple

import torch

from captum_cfx.generative.networks import (
    ROUTES,
    ConceptClassifier,
    Discriminator,
    Generator,
    extra_levels,
)


@dataclass(frozen=True)
class GeneratorConfig:
    """The recipe: sizes, loss weights and optimiser settings; saved with the explainer.

    ``GeneratorConfig()`` is the one recipe the tables, the demo and the generalisation
    benchmark use (benchmarks/RESULTS.md). Its parts are in docs/method.rst: the paper's five
    loss groups, with L_phi's x_bar term on phi's logits aimed at the normal images' logit
    quantiles, a floor that follows the counterfactuals, phi read on each image with the
    gradient through a robust view, a discriminator that judges (image, score) pairs, the
    distinctness hinge, and G's weights' moving average.

    Args:
        widths: G's U-Net widths at full, half and quarter resolution. Default: (16, 32, 64)
        cond_dim: width of G's (alpha, k) embedding. Default: 64
        global_gain: steepness of G's global colour route. Default: 20.0
        concept_routes: an optional prior, one route per concept: ``"global"`` (recolour the
            whole image), ``"local"`` (redraw locally), ``"shape"`` (redraw locally in the
            input's own palette) or ``"mixed"`` (both); empty: all mixed. Default: ()
        disc_width: D's width. Default: 32
        concept_width: R's width. Default: 32
        concept_pool: the pooling R and the distinctness hinge see images through. Default: 4
        lambda_gan: weight of L_G. Default: 5.0
        lambda_phi: weight of L_phi. Default: 1.0
        lambda_rec: weight of L_rec (an L1 mean on [0, 1] images). Default: 20.0
        lambda_cyc: weight of L_cyc. Default: 5.0
        lambda_con: weight of L_con. Default: 1.0
        lambda_distinct: weight of the distinctness hinge. Default: 2.0
        distinct_margin: the hinge's margin on pooled mean L1. Default: 0.1
        floor_feedback: the gain by which the floor (x_bar's target at alpha = 0) follows
            the batch's normality AuROC; 0 holds it at the normal median. Default: 0.02
        ema_decay: decay of the moving average of G's weights that the explainer keeps;
            0 keeps G's last weights. Default: 0.99
        alpha_zero_share: share of each batch with alpha = 0. Default: 0.25
        robust_noise: the noise level of the robust view phi scores in L_phi. Default: 0.03
        batch_size: images per step. Default: 32
        lr: Adam's learning rate for G, R and D. Default: 2e-4
        betas: Adam's betas. Default: (0.0, 0.9)

    Examples::

        >>> from captum_cfx import GeneratorConfig
        >>> GeneratorConfig().lambda_rec
        20.0
        >>> GeneratorConfig(concept_routes=("global", "shape")).concept_routes
        ('global', 'shape')
    """

    widths: Tuple[int, int, int] = (16, 32, 64)
    cond_dim: int = 64
    global_gain: float = 20.0
    concept_routes: Tuple[str, ...] = ()
    disc_width: int = 32
    concept_width: int = 32
    concept_pool: int = 4
    lambda_gan: float = 5.0
    lambda_phi: float = 1.0
    lambda_rec: float = 20.0
    lambda_cyc: float = 5.0
    lambda_con: float = 1.0
    lambda_distinct: float = 2.0
    distinct_margin: float = 0.1
    floor_feedback: float = 0.02
    ema_decay: float = 0.99
    alpha_zero_share: float = 0.25
    robust_noise: float = 0.03
    batch_size: int = 32
    lr: float = 2e-4
    betas: Tuple[float, float] = (0.0, 0.9)

    def __post_init__(self) -> None:
        if len(self.widths) != 3 or min(self.widths) < 1:
            raise ValueError(f"widths must be three positive ints, got {self.widths}.")
        if not 0.0 <= self.alpha_zero_share <= 1.0:
            raise ValueError(f"alpha_zero_share must lie in [0, 1], got {self.alpha_zero_share}.")
        if not set(self.concept_routes) <= set(ROUTES):
            raise ValueError(
                f"concept_routes must be drawn from {ROUTES}, got {self.concept_routes}."
            )
        if self.floor_feedback < 0:
            raise ValueError(f"floor_feedback must be nonnegative, got {self.floor_feedback}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(
                f"ema_decay must lie in [0, 1) (0 turns the average off), got {self.ema_decay}."
            )
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {self.batch_size}.")
        weights = [
            self.lambda_gan,
            self.lambda_phi,
            self.lambda_rec,
            self.lambda_cyc,
            self.lambda_con,
            self.lambda_distinct,
        ]
        if min(weights) < 0 or self.lr <= 0:
            raise ValueError("loss weights must be nonnegative and lr positive.")

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> GeneratorConfig:
        """The inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"unknown GeneratorConfig fields {unknown}: saved by another captum_cfx version "
                "(a newer one, or one with switches since retired); refit with this one."
            )
        data = dict(data)
        for key in ("widths", "betas", "concept_routes"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def build_networks(
    channels: int, n_concepts: int, config: GeneratorConfig, size: Tuple[int, int]
) -> Tuple[Generator, Discriminator, ConceptClassifier]:
    """G, D and R for images of ``channels`` channels and ``size`` (H, W) pixels and K =
    ``n_concepts``, as ``config`` sizes them, G and D as deep as the size needs
    (:func:`~captum_cfx.generative.networks.extra_levels`), their weights in the channels_last
    layout (the convolutions' faster one on CPU and GPU alike; a loaded G computes exactly as
    the trained one)."""
    extra = extra_levels(size)
    networks = (
        Generator(
            channels,
            n_concepts,
            config.widths,
            config.cond_dim,
            config.global_gain,
            config.concept_routes,
            extra,
        ),
        Discriminator(channels, config.disc_width, extra),
        ConceptClassifier(channels, n_concepts, config.concept_width, config.concept_pool),
    )
    for net in networks:
        net.to(memory_format=torch.channels_last)
    return networks
