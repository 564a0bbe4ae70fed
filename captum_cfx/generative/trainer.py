"""The training loop behind ``CounterfactualAnomalyExplainer.fit``.

One step (:meth:`CounterfactualTrainer.train_step`) draws a batch, samples target scores
alpha and concepts k, and computes

    x_bar = G(x, alpha, k)      x_tilde = G(x_bar, s, k)      x_rec = G(x, s, k)

with s = phi(x), then updates D on the hinge loss and G and R together on the five loss
groups. Each image is generated for two different concepts in the same step, so the
distinctness hinge can compare them. The trainer owns every random state (weights, batch
order, alpha, k, augmentations) in one ``torch.Generator``, so a checkpointed run resumes
to exactly the weights an uninterrupted run ends with on the CPU.

Under ``torch.distributed`` (a :class:`~captum_cfx.distributed.World` of N processes) the batch
of a step is N times ``batch_size``: every process draws the random numbers of the whole batch
from the same generator and computes its own ``batch_size`` rows, G, D and R average their
gradients in ``DistributedDataParallel``, and the statistics of the batch are gathered from
all processes, so N processes make the update that one process makes with the batch of all.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from captum_cfx._device import cpu_memory_retained, mixed_precision
from captum_cfx._io import atomic_save
from captum_cfx.detectors.adapter import AnomalyDetector, phi_from_logit, score_images
from captum_cfx.detectors.surrogate import REFRESH_STEPS, SurrogateDistiller
from captum_cfx.distributed import World
from captum_cfx.generative import losses
from captum_cfx.generative.augment import Rows, diff_augment, robust_view
from captum_cfx.generative.config import GeneratorConfig, build_networks
from captum_cfx.metrics import normality_auroc
from captum_cfx.streaming import Images

CHECKPOINT_NAME = "checkpoint.pt"
#: At most this many normal images, drawn at random, set phi's floor (their median score).
FLOOR_SAMPLE = 1024
#: ``floor_feedback`` moves the floor between these quantiles of the normal images' logits.
FLOOR_RANGE = (0.05, 0.95)
#: With a black-box detector, the images whose counterfactuals the surrogate learns at every
#: scoring.
ACTIVE_SAMPLE = 256
#: L_phi's weight is per unit of phi's steepness: the L1 norm of d logit / d x (how far the
#: logit moves when every pixel moves by one), the median over ``STEEPNESS_SAMPLE`` reference
#: normal images. A detector flatter than ``PHI_STEEPNESS`` has L_phi weighted up by the ratio
#: (at most ``MAX_PHI_GAIN``); a steeper one keeps ``lambda_phi``.
PHI_STEEPNESS, STEEPNESS_SAMPLE, MAX_PHI_GAIN = 130.0, 64, 100.0


def random_subset(images: Images, size: int, rng: torch.Generator) -> Tensor:
    """Up to ``size`` of the images (M, C, H, W), drawn with ``rng``; all of them, in order,
    when there are no more. Not the first ones: loaders often come sorted (by class, say),
    and the first images would stand for one kind of image only."""
    if len(images) > size:
        return images[torch.randperm(len(images), generator=rng)[:size]]
    return images if isinstance(images, Tensor) else images[:]


class CounterfactualTrainer:
    """Trains G, D and R for a frozen detector on normal images in memory or read a batch at
    a time (:class:`~captum_cfx.streaming.DatasetImages`).

    Args:
        detector: phi, frozen; its logits drive L_phi.
        normal: normal images (M, C, H, W) in [0, 1], on ``device`` (a tensor, or a
            :class:`~captum_cfx.streaming.DatasetImages` that puts each batch read there).
        outliers: optional outlier images (M', C, H, W); half of each batch when given.
        n_concepts: K.
        config: the hyperparameters.
        device: where to train.
        seed: seeds the weights and every random draw of training.
        reference: optional normal images (M'', C, H, W) on ``device`` that the detector was
            not trained on; their scores set the floor, its range and the quantile targets.
            Default: None (``normal``'s). A detector that fits its training images scores
            them lower than new normal images, and targets taken from them ask for
            counterfactuals more normal than the normal data they are judged against.
        surrogate: for a black-box detector, the distiller whose surrogate ``detector`` is;
            at every scoring it learns G's counterfactuals (:meth:`refresh_surrogate`), and
            its state travels with the checkpoints.
        world: the processes training together, each given the same arguments; rank 0
            alone writes checkpoints and shows the progress bar. Default: None (this process
            alone)
    """

    def __init__(
        self,
        detector: AnomalyDetector,
        normal: Images,
        outliers: Optional[Tensor],
        n_concepts: int,
        config: GeneratorConfig,
        device: torch.device,
        seed: int,
        reference: Optional[Tensor] = None,
        surrogate: Optional[SurrogateDistiller] = None,
        world: Optional[World] = None,
    ) -> None:
        self.detector = detector
        self.world = World(device=device) if world is None else world
        self.normal = normal
        self.outliers = outliers
        self.n_concepts = n_concepts
        self.config = config
        self.device = device
        channels = normal.shape[1]
        with torch.random.fork_rng(devices=[]):  # seed the weights without touching global RNG
            torch.manual_seed(seed)
            networks = build_networks(
                channels, n_concepts, config, (normal.shape[-2], normal.shape[-1])
            )
        self.generator, self.discriminator, self.concept_classifier = (
            n.to(device) for n in networks
        )
        # What a step calls: the networks themselves, or in DistributedDataParallel.
        self.synced = tuple(self.world.wrap(net) for net in networks)
        # With ema_decay, G's weights' moving average (G's buffers, its fixed concept routes,
        # are copied, not averaged).
        self.generator_average = (
            AveragedModel(self.generator, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))
            if config.ema_decay > 0
            else None
        )
        g_params = list(self.generator.parameters()) + list(self.concept_classifier.parameters())
        self.opt_g = torch.optim.Adam(g_params, lr=config.lr, betas=config.betas)
        self.opt_d = torch.optim.Adam(
            self.discriminator.parameters(), lr=config.lr, betas=config.betas
        )
        self.rng = torch.Generator().manual_seed(seed)
        # "Normal" means scored like normal data, not below all of it: targets of x_bar are
        # floored at phi's median on normal images, so G is not rewarded for pushing phi
        # further down (a push that only adversarial edits can deliver).
        self.reference = random_subset(
            normal if reference is None else reference,
            FLOOR_SAMPLE,
            torch.Generator().manual_seed(seed),
        )
        self.surrogate = surrogate
        if surrogate is not None:
            self.world.share(surrogate.net)  # one phi for all processes
        self._score_reference()
        self.floor = self.normal_median
        self.step = 0
        self.history: Dict[str, List[Optional[float]]] = defaultdict(list)
        self.running_normal = 0.0  # running share of alpha = 0 samples that phi finds normal
        self.best: Optional[Dict[str, Any]] = None
        self.scores: List[Tuple[int, float]] = []  # (step, score) at every scoring in run()

    def _score_reference(self) -> None:
        """phi's logits on the reference normal images: the floor's median and range and
        the quantile targets (logits, since a floor score can round to 0); and phi's
        steepness on them, which sets ``phi_gain``."""
        self.normal_scores = score_images(self.detector.logit, self.reference).float()  # (M,)
        self.normal_median = float(self.normal_scores.median())
        levels = torch.tensor(FLOOR_RANGE, device=self.normal_scores.device)
        low, high = self.normal_scores.quantile(levels).tolist()
        self.floor_bounds = (low, high)
        self.phi_gain = min(max(PHI_STEEPNESS / max(self._steepness(), 1e-12), 1.0), MAX_PHI_GAIN)

    def _steepness(self) -> float:
        """The median L1 norm of d logit / d x over up to ``STEEPNESS_SAMPLE`` reference
        normal images (how far phi's logit moves when every pixel moves by one)."""
        x = self.reference[:STEEPNESS_SAMPLE].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.detector.logit(x).float().sum(), x)
        return float(grad.flatten(1).abs().sum(1).median())

    def refresh_surrogate(self) -> None:
        """The active loop of a black-box detector: label G's current alpha = 0
        counterfactuals of up to ``ACTIVE_SAMPLE`` training images (outliers when there are
        any) with the black box, distil the surrogate on them, and re-read the normal
        images' logits through it (the floor keeps its offset from their median)."""
        if self.surrogate is None:
            return
        pool = self.normal if self.outliers is None else self.outliers
        x = pool[torch.randint(len(pool), (min(ACTIVE_SAMPLE, len(pool)),), generator=self.rng)]
        concept = torch.randint(self.n_concepts, (len(x),), generator=self.rng).to(self.device)
        self.generator.eval()
        with torch.no_grad():
            counterfactuals = self.generator(x, torch.zeros(len(x), device=self.device), concept)
        self.surrogate.add(counterfactuals)
        self.surrogate.train(REFRESH_STEPS)
        self.world.share(self.surrogate.net)  # one phi for all processes
        offset = self.floor - self.normal_median
        self._score_reference()
        low, high = self.floor_bounds
        self.floor = min(max(self.normal_median + offset, low), high)

    # -- one step -------------------------------------------------------------------------
    def sample_batch(self) -> Tuple[Tensor, Rows]:
        """This process's ``batch_size`` training images, half outliers when there are any,
        and their rows in the batch of all processes (normal images first, then outliers)."""
        b, n, rank = self.config.batch_size, self.world.size, self.world.rank
        half = 0 if self.outliers is None else b // 2
        pick_n = torch.randint(len(self.normal), (n * (b - half),), generator=self.rng)
        x = self.normal[pick_n[rank * (b - half) : (rank + 1) * (b - half)]]
        index = rank * (b - half) + torch.arange(b - half)
        if self.outliers is not None:
            pick_o = torch.randint(len(self.outliers), (n * half,), generator=self.rng)
            x = torch.cat([x, self.outliers[pick_o[rank * half : (rank + 1) * half]]])
            index = torch.cat([index, n * (b - half) + rank * half + torch.arange(half)])
        return x, Rows(index, n * b)

    def sample_conditions(self, rows: Rows) -> Tuple[Tensor, Tensor, Tensor]:
        """alpha with a share of exact zeros, concepts k and other concepts k' != k, each
        (n,) for the batch ``rows``."""
        n = rows.total
        alpha = torch.rand(n, generator=self.rng)
        alpha[torch.rand(n, generator=self.rng) < self.config.alpha_zero_share] = 0.0
        concept = torch.randint(self.n_concepts, (n,), generator=self.rng)
        other = (
            concept + torch.randint(1, max(self.n_concepts, 2), (n,), generator=self.rng)
        ) % self.n_concepts
        alpha, concept, other = (t[rows.positions].to(self.device) for t in (alpha, concept, other))
        return alpha, concept, other

    def train_step(self) -> Dict[str, Optional[float]]:
        """One update of D, then of G and R; returns every loss as a float, with the step's
        ``normal_at_zero``, ``normality_auroc`` (None when nothing was judged), ``floor`` and,
        with ``ema_decay``, ``normality_auroc_average``, the batch's normality AuROC for the
        averaged G (after this step's update), which the floor feedback then follows."""
        cfg, (G, D, R) = self.config, self.synced
        x, rows = self.sample_batch()
        with torch.no_grad():
            score = self.detector(x).float()
        alpha, concept, other = self.sample_conditions(rows)
        with mixed_precision(self.device):
            # Every image is generated for concept k and for another concept k' (distinctness).
            x_twice, alpha_twice, score_twice = (torch.cat([t, t]) for t in (x, alpha, score))
            concept_pair = torch.cat([concept, other])
            rows_twice = Rows(
                torch.cat([rows.positions, rows.total + rows.positions]), 2 * rows.total
            )
            x_bar = G(x_twice, alpha_twice, concept_pair)
            x_tilde = G(x_bar, score_twice, concept_pair)
            x_rec = G(x, score, concept)

            # 1. GAN, discriminator update. A conditional D judges (image, phi's score) pairs; the
            # counterfactuals' scores are phi's on the images themselves, as for the real ones.
            # phi's logits on x_bar itself serve both D's condition and the calibrated views.
            with torch.no_grad():
                image_logit_bar = self.detector.logit(x_bar).float()
                image_logit_tilde = self.detector.logit(x_tilde).float()
            score_bar = phi_from_logit(image_logit_bar)
            d_real = D(diff_augment(x, self.rng, rows=rows), score)
            d_fake = D(diff_augment(x_bar.detach(), self.rng, rows=rows_twice), score_bar)
            loss_d = losses.loss_discriminator(d_real, d_fake)
        reported = self._checked_means({"loss_d": loss_d})
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        # G and R: the five loss groups.
        with mixed_precision(self.device):
            n = len(x)
            # L_phi reads phi's logit on each image itself, with the gradient through its robust
            # view: a detector can score a view far above the image (blur and noise it never
            # saw), and targets met on the views would leave the images far below normal.
            view_bar = robust_view(x_bar, self.rng, cfg.robust_noise, rows=rows_twice)
            view_tilde = robust_view(x_tilde, self.rng, cfg.robust_noise, rows=rows_twice)
            logit_bar = self._calibrated(self.detector.logit(view_bar).float(), image_logit_bar)
            logit_tilde = self._calibrated(
                self.detector.logit(view_tilde).float(), image_logit_tilde
            )
            # The flagged inputs' alpha = 0 counterfactuals: those the normality AuROC judges.
            judged = (alpha_twice == 0) & (score_twice >= 0.5)
            # D itself, not in DistributedDataParallel: G's loss needs no averaged D gradients.
            d_bar = self.discriminator(diff_augment(x_bar, self.rng, rows=rows_twice), score_bar)
            terms = {
                "loss_gan": losses.loss_gan(d_bar),
                "loss_phi": self._loss_phi(
                    alpha_twice, score_twice, concept_pair, judged, logit_bar, logit_tilde
                ),
                "loss_rec": losses.loss_rec(x_rec, x),
                "loss_cyc": losses.loss_cyc(x_tilde, x_twice),
                "loss_con": losses.loss_con(
                    R(x_twice, x_bar), R(x_bar, x_tilde), R(x, x_rec), concept_pair, self.n_concepts
                ),
                "loss_distinct": losses.loss_distinct(
                    x_bar[:n], x_bar[n:], cfg.distinct_margin, cfg.concept_pool
                ),
            }
            weights = {
                "loss_gan": cfg.lambda_gan,
                "loss_phi": cfg.lambda_phi * self.phi_gain,
                "loss_rec": cfg.lambda_rec,
                "loss_cyc": cfg.lambda_cyc,
                "loss_con": cfg.lambda_con,
                "loss_distinct": cfg.lambda_distinct,
            }
            total = sum((weights[name] * term for name, term in terms.items()), x.new_zeros(()))
        reported.update(self._checked_means({**terms, "loss_total": total}))
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        if self.generator_average is not None:
            self.generator_average.update_parameters(self.generator)

        at_zero = alpha_twice == 0
        counts = torch.stack([at_zero.sum(), (logit_bar[at_zero] < 0).sum()]).float()
        at_zero_all, normal_all = self.world.mean(counts)
        if at_zero_all > 0:
            share = float(normal_all / at_zero_all)
            self.running_normal += 0.02 * (share - self.running_normal)
        judged_logits, _ = self.world.gather(logit_bar.detach()[judged])
        batch_auroc = self._batch_normality_auroc(judged_logits)
        # The floor follows the counterfactuals of the G the explainer keeps: with ema_decay
        # the average, which phi scores lower than G's own batches.
        followed, followed_auroc = judged_logits, batch_auroc
        if self.generator_average is not None:
            followed, _ = self.world.gather(
                self._averaged_logits(x_twice[judged], alpha_twice[judged], concept_pair[judged])
            )
            followed_auroc = self._batch_normality_auroc(followed)
        if cfg.floor_feedback > 0 and followed_auroc is not None:
            self.floor = self._moved(self.floor, followed_auroc)
        record: Dict[str, Optional[float]] = {name: reported[name] for name in terms}
        record.update(
            loss_d=reported["loss_d"],
            loss_total=reported["loss_total"],
            normal_at_zero=self.running_normal,
            normality_auroc=batch_auroc,
            floor=self.floor,
            phi_gain=self.phi_gain,
            world_size=self.world.size,
        )
        if self.generator_average is not None:
            record["normality_auroc_average"] = followed_auroc
        self.step += 1
        for name, value in record.items():
            self.history[name].append(value)
        return record

    def _loss_phi(
        self,
        alpha: Tensor,
        score: Tensor,
        concept: Tensor,
        judged: Tensor,
        logit_bar: Tensor,
        logit_tilde: Tensor,
    ) -> Tensor:
        """L_phi for x_bar's targets alpha (2N,) on the logit scale, floored at the floor, and
        x_tilde's, the inputs' scores (2N,). The counterfactuals the mask ``judged`` (2N,)
        selects (flagged inputs at alpha = 0) are aimed, per concept (``concept`` (2N,)), at
        the normal logits' quantiles by rank: a single floor asks every counterfactual for one
        score, these ask each concept's counterfactuals, as a set, to be scored the way phi
        scores normal images. The set is all processes' judged counterfactuals."""
        target_bar = torch.maximum(torch.logit(alpha), torch.full_like(alpha, self.floor))
        mine = torch.stack([logit_bar.detach()[judged], concept[judged].to(logit_bar)], 1)
        everyone, start = self.world.gather(mine)
        targets = torch.empty_like(everyone[:, 0])
        for k in range(self.n_concepts):
            members = everyone[:, 1] == k
            if members.any():
                targets[members] = self._normal_quantiles_by_rank(everyone[members, 0])
        target_bar[judged] = targets[start : start + len(mine)]
        return losses.loss_phi(logit_bar, target_bar, logit_tilde, score)

    @property
    def kept_generator(self) -> nn.Module:
        """The generator the explainer keeps: G's weights' moving average with ``ema_decay``,
        else G itself."""
        return self.generator if self.generator_average is None else self.generator_average.module

    def _normal_quantiles_by_rank(self, logits: Tensor) -> Tensor:
        """Targets (n,) for logits (n,): the i-th lowest gets the normal logits'
        ``(i + 1/2) / n`` quantile (a one-dimensional optimal transport between the two),
        moved as far as ``floor_feedback`` moved the floor."""
        levels = (torch.arange(len(logits)).to(self.normal_scores) + 0.5) / len(logits)
        quantiles = self.normal_scores.quantile(levels) + (self.floor - self.normal_median)
        targets = torch.empty_like(logits)
        targets[logits.argsort()] = quantiles.to(logits)
        return targets

    def _batch_normality_auroc(self, judged_logits: Tensor) -> Optional[float]:
        """The batch's normality AuROC on the training data: the share of (judged
        counterfactual, normal image) pairs in which the counterfactual scores higher (ties
        half; ``judged_logits`` (n,): phi's logits on the alpha = 0 counterfactuals of inputs
        phi flags; the normal images are the floor's). None when nothing is judged."""
        if not len(judged_logits):
            return None
        return normality_auroc(self.normal_scores, judged_logits)

    def _averaged_logits(self, x: Tensor, alpha: Tensor, concept: Tensor) -> Tensor:
        """phi's logits (n,) on the averaged G's counterfactuals of the inputs x (n, C, H, W)
        at their alpha (n,) and concepts (n,)."""
        if not len(x):
            return alpha.new_empty(0)
        with torch.no_grad():
            return self.detector.logit(self.kept_generator(x, alpha, concept)).float()

    def _moved(self, floor: float, auroc: float) -> float:
        """``floor`` moved by ``floor_feedback`` times (``auroc`` minus 1/2): down when
        counterfactuals score above normal images, up when below, within ``FLOOR_RANGE``'s
        quantiles of the normal logits."""
        low, high = self.floor_bounds
        return min(max(floor - self.config.floor_feedback * (auroc - 0.5), low), high)

    @staticmethod
    def _calibrated(logit_view: Tensor, logit_image: Tensor) -> Tensor:
        """phi's logits (2N,) on the images themselves, ``logit_image``, with the gradient of
        ``logit_view``, those on their robust views: the loss reads the score a user sees,
        and G edits in the directions that also move the views' scores."""
        return logit_view + (logit_image - logit_view).detach()

    def _checked_means(self, terms: Dict[str, Tensor]) -> Dict[str, float]:
        """The losses ``terms`` (scalars), averaged over the processes, as floats; raises,
        on every process, when one is not finite."""
        means = self.world.mean(torch.stack([t.detach() for t in terms.values()])).tolist()
        for name, value in zip(terms, means):
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"{name} became {value} at step {self.step + 1}; training stopped "
                    "before the update that loss feeds, and the explainer keeps none of this "
                    "run's weights. Lower the learning rate, check the detector's scores on "
                    "these images, or resume from the last checkpoint."
                )
        return dict(zip(terms, means))

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to resume: weights, optimisers, RNG, step, history."""
        return {
            "step": self.step,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "concept_classifier": self.concept_classifier.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": self.rng.get_state(),
            "history": dict(self.history),
            "running_normal": self.running_normal,
            "floor": self.floor,
            "best": self.best,
            "scores": list(self.scores),
            **({} if self.surrogate is None else {"surrogate": self.surrogate.state_dict()}),
            **(
                {}
                if self.generator_average is None
                else {"generator_average": self.generator_average.state_dict()}
            ),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`."""
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.concept_classifier.load_state_dict(state["concept_classifier"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.rng.set_state(state["rng"])
        self.step = int(state["step"])
        self.history = defaultdict(list, {k: list(v) for k, v in state["history"].items()})
        self.running_normal = float(state["running_normal"])
        self.floor = float(state["floor"])
        self.best = state.get("best")
        self.scores = [(int(step), float(score)) for step, score in state.get("scores", [])]
        if self.surrogate is not None:
            self.surrogate.load_state_dict(state["surrogate"])
            self._score_reference()
        # A checkpoint from before ema_decay starts the average at the resumed G.
        if self.generator_average is not None and "generator_average" in state:
            self.generator_average.load_state_dict(state["generator_average"])

    def _snapshot_if_best(self, score: float) -> bool:
        """Keep the kept G's and R's weights when ``score`` (higher is better) is the best
        so far; True when it was."""
        if self.best is not None and score <= self.best["score"]:
            self.best["stale"] += 1
            return False
        self.best = {
            "score": score,
            "step": self.step,
            "stale": 0,
            "generator": copy.deepcopy(self.kept_generator.state_dict()),
            "concept_classifier": copy.deepcopy(self.concept_classifier.state_dict()),
        }
        return True

    def _restore_best(self) -> None:
        if self.best is not None:
            self.kept_generator.load_state_dict(self.best["generator"])
            self.concept_classifier.load_state_dict(self.best["concept_classifier"])

    # -- the loop -------------------------------------------------------------------------
    def run(
        self,
        steps: int,
        progress: bool = True,
        checkpoint_dir: Union[str, Path, None] = None,
        checkpoint_every: int = 250,
        evaluate: Optional[Callable[[], float]] = None,
        patience: int = 0,
    ) -> None:
        """Train until ``steps`` steps in all, resuming from ``checkpoint_dir`` when it holds one.

        At every ``checkpoint_every``-th step the kept G is scored, by ``evaluate`` (a
        held-out judgement, higher is better) or else by the running share of alpha = 0
        samples that phi finds normal, and the best-scored G and R are remembered. With
        ``evaluate`` the explainer keeps that best G and R when training ends, and with
        ``patience`` > 0 training ends early once that many scorings in a row did not
        improve on the best. Ctrl-C stops cleanly: the step in progress is dropped, the last
        checkpoint stays the point to resume from, and G and R return to the best snapshot.
        """
        path = None
        if checkpoint_dir is not None:
            path = Path(checkpoint_dir) / CHECKPOINT_NAME
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                self.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
        self.world.check_same({"resumed step": self.step})  # a folder all processes read
        G, D, R = self.generator, self.discriminator, self.concept_classifier
        bar = tqdm(
            total=steps,
            initial=min(self.step, steps),
            desc="fit explainer",
            disable=not (progress and self.world.is_main),
        )
        try:
            # Freed activations stay in the heap for the next step (a no-op off glibc CPUs).
            with cpu_memory_retained(self.device):
                while self.step < steps:
                    for net in (G, D, R):
                        net.train()
                    record = self.train_step()
                    bar.update(1)
                    if self.step % 10 == 0 or self.step == steps:
                        bar.set_postfix(
                            phi=f"{record['loss_phi']:.3f}",
                            rec=f"{record['loss_rec']:.3f}",
                            gan=f"{record['loss_gan']:.2f}",
                            normal_at_0=f"{self.running_normal:.2f}",
                        )
                    if self.step % checkpoint_every == 0 or self.step == steps:
                        self.refresh_surrogate()
                        self._eval_mode()
                        score = self.running_normal
                        if evaluate is not None:  # rank 0's judgement, so all keep the same G
                            score = self.world.from_main(evaluate() if self.world.is_main else 0.0)
                        self.scores.append((self.step, float(score)))
                        self._snapshot_if_best(score)
                        stop = evaluate is not None and 0 < patience <= self.best["stale"]  # type: ignore[index]
                        if path is not None and self.world.is_main:
                            atomic_save(self.state_dict(), path)
                        if stop:
                            break
        except KeyboardInterrupt:
            # The step in progress is dropped; the last checkpoint stays the resume point.
            self._restore_best()
            warnings.warn(
                f"training interrupted at step {self.step}; keeping the best state so far "
                f"(from step {self.best['step'] if self.best else 0}). Call fit again "
                "with the same checkpoint_dir to resume.",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            if evaluate is not None:
                self._restore_best()
        finally:
            bar.close()
            self._eval_mode()

    def _eval_mode(self) -> None:
        for net in (self.generator, self.discriminator, self.concept_classifier):
            net.eval()
        self.kept_generator.eval()
