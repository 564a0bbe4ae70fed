"""``CounterfactualAnomalyExplainer``: the Captum face of captum_cfx.

It wires the rooms together: the detector adapter (phi), the generator's training loop, and
Captum's :class:`~captum.attr.Attribution` contract. It holds no loss math.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import (
    Any,
    Dict,
    Iterable,
    Iterator,
    Optional,
    Sequence,
    Sized,
    Tuple,
    TypeVar,
    Union,
)

import torch
from captum.attr import Attribution
from captum.log import log_usage
from torch import Tensor
from tqdm.auto import tqdm

from captum_cfx._device import resolve_device
from captum_cfx._io import atomic_save, atomic_write_text
from captum_cfx._validation import check_images
from captum_cfx._version import __version__
from captum_cfx.detectors.adapter import (
    AnomalyDetector,
    CalibrationNotice,
    as_detector,
    iterate_images,
    score_images,
)
from captum_cfx.detectors.surrogate import (
    FIRST_STEPS,
    SURROGATE_BASE,
    SurrogateDistiller,
    SurrogateNet,
    fidelity,
    variants,
)
from captum_cfx.diagnosis import NormalReference, diagnose
from captum_cfx.distributed import is_writer, join
from captum_cfx.fit_report import (
    SELF_MADE_MAX,
    corruptions,
    failures,
    judge,
    probe_anomalies,
    quality,
    self_made_outliers,
)
from captum_cfx.generative.augment import robust_view
from captum_cfx.generative.config import GeneratorConfig, build_networks
from captum_cfx.generative.networks import extra_levels
from captum_cfx.generative.trainer import CounterfactualTrainer, random_subset
from captum_cfx.streaming import (
    Images,
    calibration_images,
    gather_images,
    holdout,
    read_images,
)

FORMAT = "captum_cfx.CounterfactualAnomalyExplainer"
FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, HISTORY_FILE = "config.json", "weights.pt", "history.json"
REPORT_FILE = "fit_report.json"
#: ``fit(steps="auto")`` stops after this many held-out judgements without improvement.
PATIENCE = 4

InputsT = TypeVar("InputsT", Tensor, Tuple[Tensor, ...])


class NotFittedError(RuntimeError):
    """The explainer was used before ``fit`` (or ``load``)."""


class FitWarning(UserWarning):
    """``fit`` failed its held-out judgement: counterfactuals that phi mostly does not find
    normal, concepts that make one edit, or no anomaly to judge by."""


class ExplanationWarning(UserWarning):
    """Counterfactuals that the detector still flags (phi >= 0.5 when aimed below 0.5): they
    did not reach normal, and do not explain their images."""


def _detector_device(phi: Any) -> Optional[torch.device]:
    """The device of the detector's weights when phi wraps a torch module that has any."""
    model = getattr(phi, "model", None)
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    return params[0].device if params else None


class CounterfactualAnomalyExplainer(Attribution):
    """Explains an anomaly detector with K counterfactuals: the anomaly, made normal, K ways.

    ``fit`` trains a conditional generator G(x, alpha, k) against a frozen detector phi on
    normal images; ``attribute(x, concept=k)`` then returns ``x - G(x, 0, k)``, a map of
    ``x``'s shape that is positive where the anomaly has more than its normal version.

    Args:
        forward_func (callable, optional): the detector, when known before ``fit``; ``fit``'s
            ``detector`` replaces it. Default: None
        n_concepts (int): K, the number of counterfactuals per image. Default: 2
        config (GeneratorConfig, optional): sizes, loss weights, optimiser. Default: None
            (``GeneratorConfig()``)

    After ``fit`` or ``load``, ``forward_func`` is phi, the wrapped detector (None after a
    ``load`` without one); ``fit_report_`` is the held-out judgement of the kept G (see
    ``fit``; saved with the explainer); ``generator_`` and ``concept_classifier_`` are the
    trained G (its weights' moving average with ``ema_decay``) and R; ``history_`` maps every
    loss to its value per training step, and also ``normal_at_zero`` (the running share of alpha = 0
    counterfactuals phi finds normal), ``normality_auroc`` (the batch's flagged inputs'
    alpha = 0 counterfactuals ranked against the normal images that set the targets, ``fit``'s
    ``reference_loader`` or else ``normal_loader``; None in a step without
    any), ``floor`` (x_bar's target at alpha = 0) and, with ``ema_decay``,
    ``normality_auroc_average`` (the same for G's weights' moving average, the G kept);
    ``n_concepts_`` is K and ``input_shape_`` the fitted (C, H, W).
    """

    generator_: torch.nn.Module
    concept_classifier_: torch.nn.Module

    def __init__(
        self,
        forward_func: Optional[Any] = None,
        n_concepts: int = 2,
        config: Optional[GeneratorConfig] = None,
    ) -> None:
        super().__init__(forward_func)
        self.n_concepts = n_concepts
        self.config = config

    # -- Captum's contract ---------------------------------------------------------------
    def has_convergence_delta(self) -> bool:
        return False

    @property
    def multiplies_by_inputs(self) -> bool:
        return False

    # -- training -------------------------------------------------------------------------
    def fit(
        self,
        detector: Any,
        normal_loader: Iterable[Any],
        *,
        outlier_loader: Optional[Iterable[Any]] = None,
        reference_loader: Optional[Iterable[Any]] = None,
        steps: Union[int, str] = "auto",
        max_steps: int = 4000,
        device: Union[str, torch.device, None] = None,
        seed: int = 0,
        progress: bool = True,
        checkpoint_dir: Union[str, Path, None] = None,
        checkpoint_every: int = 250,
        calibration: str = "auto",
        distributed: Optional[bool] = None,
    ) -> CounterfactualAnomalyExplainer:
        """Train G, D and R against the frozen ``detector``.

        Args:
            detector: anything :func:`~captum_cfx.as_detector` takes; a raw model is wrapped
                and calibrated on ``normal_loader``'s images (of a Dataset's, on up to
                ``captum_cfx.streaming.CALIBRATION_SAMPLE`` of them). It is never modified.
            normal_loader: yields normal images (N, C, H, W) in [0, 1] (1 or 3 channels) or
                (images, labels) pairs. A ``DataLoader`` over a map-style Dataset is read a
                batch at a time, never whole (:mod:`captum_cfx.streaming`); any other
                loader is read once into memory.
            outlier_loader: optional anomalous or outlier images of the same shape; when
                given, half of each batch comes from it. Without it, half of each batch
                comes from corruptions of the normal images that phi flags
                (:func:`captum_cfx.fit_report.self_made_outliers`).
            reference_loader: optional normal images of the same shape that the detector
                was not trained on (a held-out split); their scores, not ``normal_loader``'s,
                set what "normal" means to L_phi (its floor and quantile targets). Give it
                when the detector scores its training images lower than new normal images:
                counterfactuals aimed at training scores come out more normal than the
                normal data they are judged against.
            steps: training steps in all (a resumed run continues to this count), or
                ``"auto"``: train until the held-out judgement (below) stops improving for
                ``PATIENCE`` scorings in a row, at most ``max_steps``.
            max_steps: the most steps ``steps="auto"`` trains.
            device: where to train; the detector's device, else CUDA when present, else CPU.
            seed: makes a CPU run repeatable (weights, batch order, every random draw).
            progress: show a tqdm bar with the losses.
            checkpoint_dir: write a checkpoint here every ``checkpoint_every`` steps and at
                the end, and resume from it when it holds one.
            checkpoint_every: steps between checkpoints and held-out judgements.
            calibration: passed to ``as_detector`` for a raw model.
            distributed: None: train with ``torch.distributed``'s process group when one is
                initialised (under torchrun), else alone; True: initialise it from torchrun's
                environment when it is not (gloo on the CPU, nccl on CUDA); False: alone.

        Returns:
            self, fitted.

        Under torchrun (``torchrun --nproc-per-node N script.py``, every process calling
        ``fit`` with the same arguments and the same, whole, normal data), the N processes
        train together: each computes ``batch_size`` images of every step's batch of N times
        ``batch_size``, G, D and R average their gradients in ``DistributedDataParallel``,
        and the update is the one a single process makes with the batch of all (to float
        rounding). The detector stays frozen on every process; rank 0 alone shows the
        progress bar and writes the checkpoints, which resume with any number of processes.
        ``history_["world_size"]`` records the processes of every step. Processes that
        disagree (on the data, the seed, the steps, the checkpoint they resumed) stop with a
        ValueError.

        ``fit`` judges itself: it holds out a share of the normal images (10%, at most 512;
        none of fewer than 10), and at every checkpoint step scores the counterfactuals of up
        to 256 anomalies phi flags (the outliers when given and flagged, else corruptions of
        the held-out images: a recolouring, a quarter turn, a zoom, patches, a stroke, a
        dimming) by validity and normality AuROC against the held-out normal images. It
        keeps the best-judged G and R, and ``fit_report_`` holds the judgement of them
        (:func:`captum_cfx.fit_report.judge`). A :class:`FitWarning` names every failure
        (counterfactuals that are not normal, concepts that make one edit, nothing to judge
        by) and its likely cause.

        A detector whose score carries no gradient (numpy scores, a detached or clamped
        tensor) is explained through a differentiable surrogate that ``fit`` distils from it
        (:mod:`captum_cfx.detectors.surrogate`), with a :class:`~captum_cfx.detectors.
        CalibrationNotice`; G trains through the surrogate, every judgement uses the
        detector itself, and ``surrogate_report_`` (also ``fit_report_["surrogate"]``) holds
        the surrogate's rank correlation with it on held-out images and on the final
        counterfactuals. ``surrogate_`` is the surrogate as phi (None for a differentiable
        detector), for gradient heatmaps of a black box.
        """
        steps_in_all, patience = self._training_budget(steps, max_steps, checkpoint_every)
        config = self.config or GeneratorConfig()
        normal, outliers, reference = self._read_loaders(
            normal_loader, outlier_loader, reference_loader
        )
        extra_levels((normal.shape[-2], normal.shape[-1]))  # refuses sizes the nets do not take
        calibrating = calibration_images(normal, seed)
        phi = as_detector(detector, normal_data=calibrating, calibration=calibration)  # type: ignore[arg-type]
        world = join(distributed, self._device_for(phi, device))
        device = world.device
        normal, held_out = holdout(normal, seed)
        normal, held_out = normal.to(device), held_out.to(device)
        world.check_same(
            {
                "normal images": (tuple(normal.shape), float(held_out.double().sum())),
                "outliers": None if outliers is None else tuple(outliers.shape),
                "reference": None if reference is None else tuple(reference.shape),
                "seed": seed,
                "steps": (steps_in_all, patience, checkpoint_every),
                "config": (self.n_concepts, config.to_dict()),
            }
        )
        reference_images = NormalReference.from_images(normal, held_out, seed)
        outliers = None if outliers is None else outliers.to(device)
        reference = None if reference is None else reference.to(device)
        distiller = None
        if not self._has_gradient(phi, normal[: config.batch_size]):
            distiller = self._distil(phi, normal, outliers, seed, device)
        probe, judged_on = probe_anomalies(phi, held_out, outliers, seed)
        if outliers is None:  # G learns to undo anomalies only from anomalous inputs
            # Four corruptions each of up to SELF_MADE_MAX / 4 normal images, drawn at random.
            sample = random_subset(normal, SELF_MADE_MAX // 4, torch.Generator().manual_seed(seed))
            outliers = self_made_outliers(phi, sample, seed + 1)
            outliers = outliers if len(outliers) else None
        held_out_scores = score_images(phi, held_out) if len(held_out) else held_out.new_empty(0)
        trainer = CounterfactualTrainer(
            phi if distiller is None else distiller.detector,
            normal,
            outliers,
            self.n_concepts,
            config,
            device,
            seed,
            reference,
            distiller,
            world,
        )

        def counterfactuals(x: Tensor) -> Tensor:
            return self._all_concepts(x, 0.0, None, trainer.kept_generator, self.n_concepts)

        def evaluate() -> float:
            return quality(judge(counterfactuals, phi, probe, held_out_scores, reference_images))

        trainer.run(steps_in_all, progress, checkpoint_dir, checkpoint_every, evaluate, patience)
        # Set the learned state only now, so a failed fit leaves the explainer as it was.
        self.forward_func = phi
        self.config_ = config
        self.generator_ = trainer.kept_generator
        self.concept_classifier_ = trainer.concept_classifier
        self.history_ = dict(trainer.history)
        self.n_concepts_ = self.n_concepts
        self.input_shape_ = tuple(normal.shape[1:])
        self.normal_reference_ = reference_images
        report = judge(counterfactuals, phi, probe, held_out_scores, reference_images)
        view_false_alarms = None
        if len(held_out):
            views = robust_view(held_out, torch.Generator().manual_seed(seed), config.robust_noise)
            view_false_alarms = float((score_images(phi, views) >= 0.5).float().mean())
        report.update(
            self._training_record(trainer, judged_on if len(probe) else None),
            view_false_alarms=view_false_alarms,
        )
        self.surrogate_ = None if distiller is None else distiller.detector
        self.surrogate_report_ = None
        if distiller is not None:
            flat = counterfactuals(probe).flatten(0, 1) if len(probe) else probe
            self.surrogate_report_ = fidelity(phi, distiller.detector, held_out, probe, flat)
            report["surrogate"] = self.surrogate_report_
        self.fit_report_ = report
        if world.is_main:
            self._warn_if_failed(report)
        return self

    @staticmethod
    def _read_loaders(
        normal_loader: Iterable[Any],
        outlier_loader: Optional[Iterable[Any]],
        reference_loader: Optional[Iterable[Any]],
    ) -> Tuple[Images, Optional[Tensor], Optional[Tensor]]:
        """``fit``'s normal images (read as :func:`~captum_cfx.streaming.read_images` reads
        them), and its outliers and reference images (in memory; None when not given), each
        checked, all of one shape."""
        normal = read_images(normal_loader, "normal_loader")
        outliers = (
            None if outlier_loader is None else gather_images(outlier_loader, "outlier_loader")
        )
        reference = (
            None
            if reference_loader is None
            else gather_images(reference_loader, "reference_loader")
        )
        for name, images in (("outlier_loader", outliers), ("reference_loader", reference)):
            if images is not None and images.shape[1:] != normal.shape[1:]:
                raise ValueError(
                    f"{name}'s images are {tuple(images.shape[1:])}, normal_loader's "
                    f"{tuple(normal.shape[1:])}; they must match."
                )
        return normal, outliers, reference

    def _training_budget(
        self, steps: Union[int, str], max_steps: int, checkpoint_every: int
    ) -> Tuple[int, int]:
        """``fit``'s (steps in all, patience) from its ``steps``, ``max_steps`` and
        ``checkpoint_every``, each checked, and ``n_concepts`` checked."""
        if not isinstance(self.n_concepts, int) or self.n_concepts < 1:
            raise ValueError(f"n_concepts must be a positive int, got {self.n_concepts!r}.")
        if steps == "auto":
            steps_in_all, patience = max_steps, PATIENCE
        elif isinstance(steps, int) and not isinstance(steps, bool):
            steps_in_all, patience = steps, 0
        else:
            raise ValueError(f"steps must be a positive int or 'auto', got {steps!r}.")
        if steps_in_all < 1 or checkpoint_every < 1:
            raise ValueError(
                "steps (max_steps with steps='auto') and checkpoint_every must be positive, got "
                f"{steps_in_all} and {checkpoint_every}."
            )
        return steps_in_all, patience

    @staticmethod
    def _training_record(
        trainer: CounterfactualTrainer, judged_on: Optional[str]
    ) -> Dict[str, Any]:
        """What ``fit_report_`` says of the training: where the judged anomalies came from,
        the steps trained, the step of the kept G, the judgement at every scoring and the
        factor by which phi's flatness weighted L_phi up (1 for a steep detector)."""
        return {
            "judged_on": judged_on,
            "phi_gain": trainer.phi_gain,
            "steps": trainer.step,
            "kept_step": trainer.best["step"] if trainer.best else trainer.step,
            "quality_by_step": [list(pair) for pair in trainer.scores],
        }

    @staticmethod
    def _warn_if_failed(report: Dict[str, Any]) -> None:
        """A :class:`FitWarning` naming every failure of the held-out judgement ``report``."""
        problems = failures(report)
        if problems:
            warnings.warn(
                "the explainer failed its held-out judgement: " + "; ".join(problems) + ".",
                FitWarning,
                stacklevel=3,
            )

    @staticmethod
    def _device_for(phi: AnomalyDetector, device: Union[str, torch.device, None]) -> torch.device:
        home = _detector_device(phi)
        if home is not None and device is None:
            return home
        chosen = resolve_device(device)
        if home is not None and home != chosen:
            raise ValueError(
                f"the detector lives on {home} but fit was asked to train on {chosen}; "
                "move the detector there first (captum_cfx never moves your model)."
            )
        return chosen

    @staticmethod
    def _has_gradient(phi: AnomalyDetector, x: Tensor) -> bool:
        """Whether a generator can be trained through phi itself: its logit carries a
        nonzero gradient to normal images ``x``. Refuses a non-finite gradient."""
        probe = x.clone().requires_grad_(True)
        logit = phi.logit(probe)
        if not phi.differentiable or not logit.requires_grad:
            return False
        (gradient,) = torch.autograd.grad(logit.sum(), probe)
        if not torch.isfinite(gradient).all():
            raise ValueError(
                "the detector's gradient on normal images is NaN or Inf; check its output on "
                "normal_loader's images (a division by a zero norm, a log of 0)."
            )
        return bool(gradient.abs().sum() > 0)

    @staticmethod
    def _distil(
        phi: AnomalyDetector,
        normal: Images,
        outliers: Optional[Tensor],
        seed: int,
        device: torch.device,
    ) -> SurrogateDistiller:
        """A surrogate of the black box phi, distilled on normal images (M, C, H, W), noisy
        and blended variants of them, corruptions of them and the outliers, if any."""
        rng = torch.Generator().manual_seed(seed + 3)
        base = random_subset(normal, SURROGATE_BASE, rng)
        images = [base, variants(base, rng), corruptions(base, seed + 3)]
        if outliers is not None:
            images.append(random_subset(outliers, SURROGATE_BASE, rng))
        distiller = SurrogateDistiller(phi, normal.shape[1], device, seed)
        targets = distiller.add(torch.cat(images), pool="base")
        if float(targets.max() - targets.min()) < 1e-4:
            raise ValueError(
                "the detector's score does not change with the input: it gives every normal "
                "image and every variant of them the same score. Is it constant, or saturated? "
                "Check its output on normal_loader's images."
            )
        distiller.train(FIRST_STEPS)
        warnings.warn(
            "the detector's score carries no gradient to the input (numpy values, a detached "
            "tensor, or a score flat on normal images), so fit distilled a differentiable "
            "surrogate of it (a small CNN on its calibrated logits, refreshed on the "
            "generator's counterfactuals at every scoring). The generator trains through the "
            "surrogate; every judgement uses your detector, and surrogate_report_ says how "
            "faithful the surrogate is.",
            CalibrationNotice,
            stacklevel=3,
        )
        return distiller

    # -- explaining -----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "generator_"):
            name = type(self).__name__
            raise NotFittedError(
                f"this {name} is not fitted yet; call fit(detector, normal_loader) or "
                f"{name}.load(path) first."
            )

    def _check_inputs(self, inputs: Tensor, clamp_inputs: bool = False) -> Tensor:
        if clamp_inputs and isinstance(inputs, Tensor) and torch.is_floating_point(inputs):
            inputs = inputs.clamp(0.0, 1.0)
        c, h, w = self.input_shape_
        return check_images(inputs, "inputs", channels=c, size=(h, w))

    def _check_concept(self, concept: int) -> int:
        if (
            isinstance(concept, bool)
            or not isinstance(concept, int)
            or not 0 <= concept < self.n_concepts_
        ):
            raise ValueError(
                f"concept must be an int in 0..{self.n_concepts_ - 1}, got {concept!r}."
            )
        return concept

    @staticmethod
    def _check_score(target_score: float) -> float:
        if not 0.0 <= float(target_score) <= 1.0:
            raise ValueError(f"target_score must lie in [0, 1] (0 = normal), got {target_score}.")
        return float(target_score)

    @torch.no_grad()
    def _generate(
        self,
        x: Tensor,
        alpha: Tensor,
        concept: int,
        internal_batch_size: Optional[int],
        out: Optional[Tensor] = None,
        generator: Optional[torch.nn.Module] = None,
    ) -> Tensor:
        """G(x, alpha, concept) batch by batch, in eval mode, on G's device, written into
        ``out`` (a new tensor like ``x`` when None): memory is the output plus one batch.
        ``generator``: G (default: the fitted ``generator_``)."""
        G = self.generator_ if generator is None else generator
        G.eval()
        g_device = next(G.parameters()).device
        step = internal_batch_size or len(x)
        if step < 1:
            raise ValueError(f"internal_batch_size must be positive, got {internal_batch_size}.")
        out = torch.empty_like(x) if out is None else out
        for start in range(0, len(x), step):
            xb = x[start : start + step].to(g_device)
            ab = alpha[start : start + step].to(g_device, xb.dtype)
            kb = torch.full((len(xb),), concept, dtype=torch.long, device=g_device)
            out[start : start + step] = G(xb, ab, kb)
        return out

    def counterfactual(
        self,
        inputs: Tensor,
        concept: int = 0,
        target_score: float = 0.0,
        internal_batch_size: Optional[int] = None,
    ) -> Tensor:
        """The counterfactual of each image for one concept.

        Args:
            inputs (Tensor): images (N, C, H, W) in [0, 1], of the fitted channels and size.
            concept (int): k in 0..K-1. Default: 0
            target_score (float): alpha, the anomaly score to reach; 0 = normal. Default: 0.0
            internal_batch_size (int, optional): images per generator call. Default: None (all)

        Returns:
            Tensor (N, C, H, W) in [0, 1].

        Warns:
            ExplanationWarning: the detector (when the explainer has it) still flags some
                counterfactuals aimed at a score below 0.5; the warning names them.
        """
        self._check_fitted()
        x = self._check_inputs(inputs)
        target = self._check_score(target_score)
        k = self._check_concept(concept)
        out = self._generate(x, torch.full((len(x),), target), k, internal_batch_size)
        self._warn_not_normal(out, k, target)
        return out

    def counterfactuals(
        self, inputs: Tensor, target_score: float = 0.0, internal_batch_size: Optional[int] = None
    ) -> Tensor:
        """All K counterfactuals of each image, (N, K, C, H, W); arguments and warnings as in
        :meth:`counterfactual`."""
        self._check_fitted()
        x = self._check_inputs(inputs)
        target = self._check_score(target_score)
        out = self._all_concepts(x, target, internal_batch_size, self.generator_, self.n_concepts_)
        for k in range(self.n_concepts_):
            self._warn_not_normal(out[:, k], k, target)
        return out

    def iter_counterfactuals(
        self,
        loader: Iterable[Any],
        target_score: float = 0.0,
        internal_batch_size: Optional[int] = None,
        progress: bool = True,
    ) -> Iterator[Tuple[Tensor, Tensor]]:
        """Stream the counterfactuals of a loader of any size, a batch at a time.

        Args:
            loader: yields images (B, C, H, W) in [0, 1] or (images, labels, ...) tuples (a
                ``DataLoader``, a list of tensors, a generator); a tensor (N, C, H, W) is
                read 256 images at a time.
            target_score: as in :meth:`counterfactual`.
            internal_batch_size: as in :meth:`counterfactual`, within each batch.
            progress: show a progress bar over the batches.

        Yields:
            ``(images, counterfactuals)`` per batch: the batch's images (B, C, H, W) and their
            K counterfactuals (B, K, C, H, W). Nothing is read before it is asked for and
            nothing is kept after it is yielded, so memory is one batch's, whatever the
            number of images. An ``ExplanationWarning`` names a batch's images by their
            position in that batch.

        Examples::

            >>> for images, cfs in explainer.iter_counterfactuals(test_loader):
            ...     save(images, cfs)  # write as they come
        """
        self._check_fitted()
        total = len(loader) if isinstance(loader, Sized) else None
        batches = tqdm(iterate_images(loader), total=total, disable=not progress, unit="batch")
        for images in batches:
            yield images, self.counterfactuals(images, target_score, internal_batch_size)

    def _phi_scores(self, images: Tensor) -> Tensor:
        """phi of images (N, C, H, W), moved to the detector's device, as a CPU tensor (N,)."""
        home = _detector_device(self.forward_func)
        return score_images(self.forward_func, images if home is None else images.to(home))

    def _warn_not_normal(self, counterfactuals: Tensor, concept: int, target_score: float) -> None:
        """Warn (:class:`ExplanationWarning`) when the detector, if at hand, still flags some
        of the ``counterfactuals`` (N, C, H, W) of ``concept`` that aimed below 0.5."""
        phi = self.forward_func
        if phi is None or target_score >= 0.5 or not len(counterfactuals):
            return
        flagged = (self._phi_scores(counterfactuals) >= 0.5).nonzero().flatten().tolist()
        if flagged:
            shown = ", ".join(map(str, flagged[:10])) + (", ..." if len(flagged) > 10 else "")
            warnings.warn(
                f"the detector still flags {len(flagged)} of {len(counterfactuals)} "
                f"counterfactuals of concept {concept} (phi >= 0.5; images {shown}): they did "
                "not reach normal and do not explain those images. fit_report_ says how the "
                "fit was judged; fit for more steps (max_steps) if it is short.",
                ExplanationWarning,
                stacklevel=3,
            )

    def _all_concepts(
        self,
        x: Tensor,
        target_score: float,
        internal_batch_size: Optional[int],
        generator: torch.nn.Module,
        n_concepts: int,
    ) -> Tensor:
        """``generator``'s K = ``n_concepts`` counterfactuals (N, K, C, H, W) of checked
        images x (N, C, H, W) at ``target_score``."""
        alpha = torch.full((len(x),), target_score)
        out = x.new_empty((len(x), n_concepts, *x.shape[1:]))
        for k in range(n_concepts):
            self._generate(x, alpha, k, internal_batch_size, out=out[:, k], generator=generator)
        return out

    def traverse(
        self,
        inputs: Tensor,
        concept: int = 0,
        alphas: Union[Sequence[float], Tensor, None] = None,
        internal_batch_size: Optional[int] = None,
    ) -> Tensor:
        """The path from each image towards normal along one concept.

        Args:
            inputs (Tensor): images (N, C, H, W) in [0, 1].
            concept (int): k in 0..K-1. Default: 0
            alphas (sequence of float, Tensor (A,) or (N, A), optional): the target scores
                of the strip's A images, each in [0, 1], shared or per image. Default: None
                (:meth:`traversal_alphas`)
            internal_batch_size (int, optional): images per generator call. Default: None

        Returns:
            Tensor (N, A, C, H, W).
        """
        self._check_fitted()
        x = self._check_inputs(inputs)
        k = self._check_concept(concept)
        path = self.traversal_alphas(x) if alphas is None else torch.as_tensor(alphas).float()
        if path.dim() == 1:
            path = path[None, :].expand(len(x), -1)
        if path.dim() != 2 or len(path) != len(x) or path.shape[1] == 0:
            raise ValueError(
                f"alphas must have shape (A,) or ({len(x)}, A), got {tuple(path.shape)}."
            )
        if path.min() < 0 or path.max() > 1:
            raise ValueError(f"alphas must be values in [0, 1], got {alphas}.")
        out = x.new_empty((len(x), path.shape[1], *x.shape[1:]))
        for a in range(path.shape[1]):
            self._generate(x, path[:, a], k, internal_batch_size, out=out[:, a])
        return out

    def traversal_alphas(self, inputs: Tensor, steps: int = 6) -> Tensor:
        """The default path of :meth:`traverse`: ``steps`` target scores per image, evenly
        from its own score phi(x) down to 0, as a CPU tensor (N, steps). Needs the detector."""
        if self.forward_func is None:
            raise ValueError("traversal_alphas needs the detector: load(path, detector=...).")
        own = score_images(self.forward_func, inputs).float()
        return own[:, None] * torch.linspace(1.0, 0.0, steps)[None, :]

    def diagnose(
        self,
        inputs: Tensor,
        target_score: float = 0.0,
        internal_batch_size: Optional[int] = None,
    ) -> Dict[str, Tensor]:
        """Measure and flag every counterfactual of each image.

        Args:
            inputs (Tensor): images (N, C, H, W) in [0, 1].
            target_score (float): alpha, as in :meth:`counterfactual`. Default: 0.0
            internal_batch_size (int, optional): images per generator call. Default: None

        Returns:
            A dict of CPU tensors (:func:`captum_cfx.diagnosis.diagnose`): phi before (N,)
            and after (N, K), L1 and L2 proximity, ink off the normal images' support, the
            distance to the nearest normal image, and the flags (N, K) ``not_normal``,
            ``off_support`` (a mark no normal image has: phi accepts a shortcut),
            ``adversarial`` (phi moved, but the image came no closer to any normal image),
            ``same_as_other_concept`` and ``flagged`` (any of them); plus
            ``counterfactuals`` (N, K, C, H, W).

        Examples::

            >>> report = explainer.diagnose(x)
            >>> report["flagged"].float().mean()  # share of explanations not to trust
        """
        self._check_fitted()
        if self.forward_func is None:
            raise ValueError("diagnose needs the detector: load(path, detector=...).")
        if not hasattr(self, "normal_reference_"):
            raise ValueError(
                "this explainer was saved without its normal reference (an older captum_cfx); "
                "refit it to diagnose its explanations."
            )
        x = self._check_inputs(inputs)
        target = self._check_score(target_score)
        cfs = self._all_concepts(x, target, internal_batch_size, self.generator_, self.n_concepts_)
        after = self._phi_scores(cfs.flatten(0, 1)).view(len(x), -1)
        report = diagnose(x, cfs, self._phi_scores(x), after, self.normal_reference_, target)
        return {**report, "counterfactuals": cfs}

    @log_usage()
    def attribute(
        self,
        inputs: InputsT,
        concept: int = 0,
        target_score: float = 0.0,
        internal_batch_size: Optional[int] = None,
        clamp_inputs: bool = False,
    ) -> InputsT:
        """The counterfactual attribution ``inputs - counterfactual(inputs, concept)``.

        Args:
            inputs (Tensor or tuple[Tensor]): images (N, C, H, W) in [0, 1], or a one-tuple
                of them (Captum's convention; the same form is returned).
            concept (int): k in 0..K-1. Default: 0
            target_score (float): alpha, the score the counterfactual is made to reach; 0 is
                normal. Default: 0.0
            internal_batch_size (int, optional): images per generator call, to bound memory
                on large inputs. Default: None (all at once)
            clamp_inputs (bool): clamp inputs into [0, 1] instead of refusing them; for
                wrappers that add noise, such as Captum's ``NoiseTunnel`` and
                ``sensitivity_max``. Default: False

        Returns:
            Tensor (or a one-tuple) of ``inputs``' shape: positive where the anomaly has more
            than its normal version, negative where it has less.

        Warns:
            ExplanationWarning: as :meth:`counterfactual`.
        """
        is_tuple = isinstance(inputs, tuple)
        if is_tuple and len(inputs) != 1:
            raise ValueError(
                f"inputs must be a tensor or a tuple of one tensor, got a tuple of {len(inputs)}."
            )
        self._check_fitted()
        x = self._check_inputs(inputs[0] if isinstance(inputs, tuple) else inputs, clamp_inputs)
        target = self._check_score(target_score)
        k = self._check_concept(concept)
        counterfactual = self._generate(x, torch.full((len(x),), target), k, internal_batch_size)
        self._warn_not_normal(counterfactual, k, target)
        attribution = counterfactual.neg_().add_(x)  # x - counterfactual, in place
        return (attribution,) if is_tuple else attribution  # type: ignore[return-value]

    # -- persistence ----------------------------------------------------------------------
    #: The ``format`` that ``save`` writes into config.json and ``load`` accepts.
    saved_format = FORMAT

    def save(self, path: Union[str, Path]) -> Path:
        """Write the fitted explainer into the folder ``path``.

        ``weights.pt`` holds tensors only (read back with ``torch.load(weights_only=True)``),
        ``config.json`` the configuration, ``history.json`` the training history and
        ``fit_report.json`` the held-out judgement. The
        detector is not saved (only its calibration statistics): pass it to :meth:`load`.
        Under torchrun, rank 0 alone writes; the other processes return the folder.

        Returns:
            The folder.
        """
        self._check_fitted()
        folder = Path(path)
        if not is_writer():
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        weights, config = self._saved_state(folder)
        for name, state in weights.items():
            if any(not torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
                raise ValueError(f"the {name} weights hold NaN or Inf; refusing to save them.")
        atomic_save(weights, folder / WEIGHTS_FILE)
        atomic_write_text(json.dumps(config, indent=2), folder / CONFIG_FILE)
        atomic_write_text(json.dumps(self.history_), folder / HISTORY_FILE)
        atomic_write_text(json.dumps(self.fit_report_, indent=2), folder / REPORT_FILE)
        return folder

    def _saved_state(self, folder: Path) -> Tuple[Dict[str, Dict[str, Tensor]], Dict[str, Any]]:
        """(weights, config) for :meth:`save` to write into ``folder``: named state dicts of
        tensors, and a JSON-ready dict."""
        phi = self.forward_func if isinstance(self.forward_func, AnomalyDetector) else None
        weights = {
            "generator": self.generator_.state_dict(),
            "concept_classifier": self.concept_classifier_.state_dict(),
            "detector_calibration": phi.state_dict() if phi is not None else {},
            "normal_reference": self.normal_reference_.state_dict(),
            **(
                {}
                if getattr(self, "surrogate_", None) is None
                else {"surrogate": self.surrogate_.model.state_dict()}  # type: ignore[union-attr]
            ),
        }
        config = {
            "format": self.saved_format,
            "format_version": FORMAT_VERSION,
            "captum_cfx_version": __version__,
            "n_concepts": self.n_concepts_,
            "input_shape": list(self.input_shape_),
            "world_size": (self.history_.get("world_size") or [1])[-1],
            "generator_config": self.config_.to_dict(),
            "detector": None
            if phi is None
            else {
                "calibration": phi.calibration,
                "higher_is_anomalous": phi.higher_is_anomalous,
                "score_key": phi.score_key,
            },
        }
        return weights, config

    @classmethod
    def load(
        cls, path: Union[str, Path], detector: Optional[Any] = None
    ) -> CounterfactualAnomalyExplainer:
        """Read an explainer written by :meth:`save`, executing nothing from the files.

        Args:
            path (str or Path): the folder given to ``save``.
            detector (optional): the detector it was fitted with; an ``AnomalyDetector`` is
                used as it is, a raw model gets the saved calibration. Default: None (the
                counterfactuals work without it; ``forward_func`` stays None)

        Raises:
            FileNotFoundError: a file is missing. ValueError: the files are not a captum_cfx
            explainer, come from a newer format, or do not fit together.
        """
        folder = Path(path)
        config, weights = cls._read_saved(folder)
        gen_config = GeneratorConfig.from_dict(config["generator_config"])
        explainer = cls(n_concepts=int(config["n_concepts"]), config=gen_config)
        size = (int(config["input_shape"][1]), int(config["input_shape"][2]))
        generator, _, concept_classifier = build_networks(
            int(config["input_shape"][0]), explainer.n_concepts, gen_config, size
        )
        cls._load_weights(
            folder, weights, generator=generator, concept_classifier=concept_classifier
        )
        explainer._restore(folder, config, weights, detector, generator, concept_classifier)
        return explainer

    @classmethod
    def _read_saved(cls, folder: Path) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """(config, weights) of a folder :meth:`save` wrote, checked: the files are there,
        the format is this class's and this version's, the weights plain tensors."""
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(
                    f"{folder / name} is missing; is {folder} a folder written by save()?"
                )
        try:
            config = json.loads((folder / CONFIG_FILE).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{folder / CONFIG_FILE} is not valid JSON: {err}") from err
        saved = config.get("format") if isinstance(config, dict) else None
        if saved != cls.saved_format:
            raise ValueError(
                f"{folder} does not hold a {cls.__name__} (config format mismatch: it holds "
                f"{saved!r}); "
                + (
                    f"read it with {saved.split('.')[-1]}.load."
                    if isinstance(saved, str) and saved.startswith("captum_cfx.")
                    else "is it a folder written by save()?"
                )
            )
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{folder} was saved in format version {config.get('format_version')}; this "
                f"captum_cfx reads version {FORMAT_VERSION}. Upgrade captum_cfx."
            )
        try:
            weights = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        except Exception as err:  # any unpickling refusal or corrupt file
            raise ValueError(
                f"{folder / WEIGHTS_FILE} is not a plain tensor file and was refused without "
                f"running it ({type(err).__name__}). Re-save the explainer with save()."
            ) from err
        return config, weights

    @staticmethod
    def _load_weights(folder: Path, weights: Dict[str, Any], **modules: torch.nn.Module) -> None:
        """Load ``weights[name]`` into each of ``modules`` (name=module); a missing or
        mismatched entry is a ValueError that names the folder."""
        try:
            for name, module in modules.items():
                module.load_state_dict(weights[name])
        except (KeyError, RuntimeError, TypeError) as err:
            raise ValueError(
                f"{folder / WEIGHTS_FILE} does not match its config.json: {err}"
            ) from err

    def _restore(
        self,
        folder: Path,
        config: Dict[str, Any],
        weights: Dict[str, Any],
        detector: Optional[Any],
        generator: torch.nn.Module,
        concept_classifier: torch.nn.Module,
    ) -> None:
        """Set the learned state that :meth:`load` reads from ``folder``'s ``config`` and
        ``weights``, with the loaded G and R and the user's ``detector`` (or None)."""
        if detector is not None:
            saved = config.get("detector") or {}
            phi = as_detector(
                detector,
                calibration=saved.get("calibration", "identity"),
                higher_is_anomalous=saved.get("higher_is_anomalous", True),
                score_key=saved.get("score_key"),
            )
            if weights.get("detector_calibration") and not isinstance(detector, AnomalyDetector):
                phi.load_state_dict(weights["detector_calibration"])
            self.forward_func = phi
        self.config_ = GeneratorConfig.from_dict(config["generator_config"])
        if weights.get("normal_reference"):
            self.normal_reference_ = NormalReference.from_state_dict(weights["normal_reference"])
        self.surrogate_ = None
        if weights.get("surrogate"):
            net = SurrogateNet(int(config["input_shape"][0]))
            net.load_state_dict(weights["surrogate"])
            self.surrogate_ = as_detector(net.eval(), calibration="sigmoid")
        self.generator_ = generator.eval()
        self.concept_classifier_ = concept_classifier.eval()
        history_path = folder / HISTORY_FILE
        self.history_ = json.loads(history_path.read_text()) if history_path.is_file() else {}
        report_path = folder / REPORT_FILE
        self.fit_report_ = json.loads(report_path.read_text()) if report_path.is_file() else {}
        self.surrogate_report_ = self.fit_report_.get("surrogate")
        self.n_concepts_ = self.n_concepts
        self.input_shape_ = tuple(int(v) for v in config["input_shape"])


__all__ = ["CounterfactualAnomalyExplainer", "ExplanationWarning", "FitWarning", "NotFittedError"]
