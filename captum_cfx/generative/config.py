"""``GeneratorConfig``: every hyperparameter of the counterfactual generator and its training."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Tuple

from captum_cfx.generative.networks import ROUTES, ConceptClassifier, Discriminator, Generator

#: The forms of L_phi: the paper's BCE on scores, or a Huber loss on logits.
PHI_LOSSES = ("bce", "logit")


@dataclass(frozen=True)
class GeneratorConfig:
    """Sizes, loss weights and optimiser settings; saved with the explainer as JSON.

    ``concept_routes`` restricts each concept to G's global colour route, its local route,
    its local route in the input's own palette, or both (``"global"``, ``"local"``,
    ``"shape"``, ``"mixed"``, one per concept; empty: all mixed; see
    :class:`~captum_cfx.generative.networks.Generator`).

    Loss weights follow METHOD.md's total
    ``lambda_gan L_G + lambda_phi L_phi + lambda_rec (L_rec + L_cyc) + lambda_con L_con``,
    plus ``lambda_distinct`` for the distinctness hinge, with the cycle term's weight
    ``lambda_cyc`` separate from ``lambda_rec`` (equal by default, as in the paper).
    Reconstruction is an L1 mean on [0, 1] images, so ``lambda_rec = 20`` equals METHOD's 10
    on [-1, 1] images.

    ``conditional_discriminator`` makes D judge (image, phi's score) pairs instead of images
    alone (:class:`~captum_cfx.generative.networks.Discriminator`): the real pairs (training
    images and their scores) teach D what the images phi calls normal look like, so an edit
    that lowers phi without making the image look like them (a pasted mark) is penalised.

    ``calibrate_views`` makes L_phi read phi's logit on each image itself while its gradient
    is still the one through the robust view: a detector can score the view of an image well
    above the image itself (blur and noise it never saw), so targets met on the views leave
    the images themselves scored far below normal. With it the images land at their targets,
    and G still edits only in directions that also move the views' scores.

    ``phi_loss`` is L_phi's form: ``"bce"``, the paper's BCE on phi's scores, or ``"logit"``,
    x_bar's term as a Huber loss on phi's logits
    (:func:`~captum_cfx.generative.losses.loss_phi_logit`), whose pull towards a target does
    not fade when the target is near 0, as BCE's does; x_tilde's term stays BCE.

    ``floor_feedback`` (with ``phi_loss="logit"``; 0 turns it off) lets the floor, x_bar's
    target at alpha = 0, follow the counterfactuals: after each step it moves by
    ``floor_feedback`` times (the batch's normality AuROC minus 1/2), where that AuROC is the
    share of (counterfactual, normal image) pairs in which the counterfactual scores higher,
    over the flagged inputs' alpha = 0 counterfactuals and the floor's normal images; down
    when counterfactuals score above normal, up when below, within ``floor_range``, the normal
    logits' quantiles (default: the 5th to the 95th percentile; ``(0.0, 0.95)`` lets the floor
    reach the lowest normal logit, never below it). The other losses hold counterfactuals a
    little above any fixed target; with the feedback phi ranks them, on the training data,
    neither above nor below normal images. ``floor_feedback_decay`` (in steps; 0 keeps the
    gain constant) lets the gain fall as ``floor_feedback / (1 + step /
    floor_feedback_decay)``, so that the floor settles instead of chasing each batch to the
    end of training.

    ``normal_quantile_targets`` (with ``phi_loss="logit"``) gives each flagged input's
    alpha = 0 counterfactuals of concept k, in a batch, the normal images' logits as targets
    by rank: the i-th lowest of n gets the normal logits' ``(i + 1/2) / n`` quantile (a
    one-dimensional optimal transport between the two distributions), in place of the floor.
    A single floor asks every counterfactual for one score; these targets ask each concept's
    counterfactuals, as a set, to be scored the way phi scores normal images. With
    ``floor_feedback`` the targets move with the floor (by the floor minus its starting
    point, the normal median).

    ``floor_per_concept`` (with ``floor_feedback``) gives each concept its own floor, moved by
    the batch's normality AuROC of that concept's counterfactuals alone: concepts whose
    edits phi finds easy to push below normal (a digit made a 1) and those it holds above
    (a recolouring) no longer share one floor that leaves one below normal and one above.

    ``ema_decay`` (in [0, 1); 0 turns it off) makes the explainer keep an exponential moving
    average of G's weights, updated after every step with this decay (0.99 averages about
    the last 100 steps), instead of G's last weights. Under the adversarial and floor
    dynamics G's normality AuROC swings from step to step, and the last step is one draw
    from that swing; the average keeps G's centre (Yazici et al., "The Unusual Effectiveness
    of Averaging in GAN Training", ICLR 2019). With ``floor_feedback`` the floor then follows
    the averaged G's batch normality AuROC: phi can score the average's counterfactuals
    lower than G's own (on Colored-MNIST by 2-3.5 points of AuROC), and a floor that followed
    G would leave the kept G below normal.

    ``lambda_support`` (0 turns it off) weighs a prior against ink that neither the input nor
    normal images have where it is drawn: x_bar's brightness above the normal training
    images' per-pixel 99% quantile, summed outside the input's ink dilated by 2 pixels
    (:func:`~captum_cfx.generative.losses.loss_support`). A detector trained on few normal
    images can accept a faint mark (a dim square in a corner, a bar under the digit) that no
    normal image has, and L_GAN alone does not stop G from adding it (benchmarks/RESULTS.md,
    runs 46-49); redrawing where normal images have ink, or erasing, costs nothing. It
    speaks only where normal images share a dark background (digits, aligned objects):
    where they have ink everywhere, the support is bright everywhere and the prior is 0.
    """

    widths: Tuple[int, int, int] = (16, 32, 64)
    cond_dim: int = 64
    global_gain: float = 20.0
    concept_routes: Tuple[str, ...] = ()
    disc_width: int = 32
    conditional_discriminator: bool = False
    calibrate_views: bool = False
    phi_loss: str = "bce"
    floor_feedback: float = 0.0
    floor_feedback_decay: float = 0.0
    floor_range: Tuple[float, float] = (0.05, 0.95)
    normal_quantile_targets: bool = False
    floor_per_concept: bool = False
    ema_decay: float = 0.0
    concept_width: int = 32
    concept_pool: int = 4
    lambda_gan: float = 3.0
    lambda_phi: float = 1.0
    lambda_rec: float = 20.0
    lambda_cyc: float = 20.0
    lambda_con: float = 1.0
    lambda_distinct: float = 2.0
    lambda_support: float = 0.0
    distinct_margin: float = 0.1
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
        if self.phi_loss not in PHI_LOSSES:
            raise ValueError(f"phi_loss must be one of {PHI_LOSSES}, got {self.phi_loss!r}.")
        if self.floor_feedback < 0:
            raise ValueError(f"floor_feedback must be nonnegative, got {self.floor_feedback}.")
        if self.floor_feedback_decay < 0:
            raise ValueError(
                f"floor_feedback_decay must be nonnegative, got {self.floor_feedback_decay}."
            )
        if len(self.floor_range) != 2 or not 0.0 <= self.floor_range[0] < self.floor_range[1] <= 1:
            raise ValueError(
                "floor_range is two quantiles of the normal logits, low < high in [0, 1], got "
                f"{self.floor_range}."
            )
        if self.floor_feedback > 0 and self.phi_loss != "logit":
            raise ValueError(
                "floor_feedback moves a floor on phi's logit scale; set phi_loss='logit' with it."
            )
        if self.floor_per_concept and self.floor_feedback <= 0:
            raise ValueError(
                "floor_per_concept moves each concept's floor by floor_feedback; set "
                "floor_feedback > 0 with it (0.02 in the benchmarks)."
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(
                f"ema_decay must lie in [0, 1) (0 turns the average off), got {self.ema_decay}."
            )
        if self.normal_quantile_targets and self.phi_loss != "logit":
            raise ValueError(
                "normal_quantile_targets are phi's logits on normal images; set "
                "phi_loss='logit' with them."
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
            self.lambda_support,
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
                f"unknown GeneratorConfig fields {unknown}; was it saved by a newer captum_cfx?"
            )
        data = dict(data)
        for key in ("widths", "betas", "concept_routes", "floor_range"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def build_networks(
    channels: int, n_concepts: int, config: GeneratorConfig
) -> Tuple[Generator, Discriminator, ConceptClassifier]:
    """G, D and R for images with ``channels`` channels and K = ``n_concepts``, as ``config``
    sizes them."""
    return (
        Generator(
            channels,
            n_concepts,
            config.widths,
            config.cond_dim,
            config.global_gain,
            config.concept_routes,
        ),
        Discriminator(channels, config.disc_width, config.conditional_discriminator),
        ConceptClassifier(channels, n_concepts, config.concept_width, config.concept_pool),
    )
