"""``LatentCounterfactualExplainer``: the paper's high-resolution path, G' in the latent space
of an autoencoder A (docs/latent.rst).

G(x, alpha, k) = A_dec(G'(A_enc(x), alpha, k)). G' is the pixel path's generator on latents
mapped into [0, 1] (:mod:`captum_cfx.latent.bridge`), trained by the pixel path's trainer with
the same five loss groups, phi reading the decoded images; the explainer is judged, and
explains, in pixel space with phi itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple, Union

import torch
from torch import Tensor

from captum_cfx._io import atomic_save
from captum_cfx.detectors.adapter import as_detector, score_images
from captum_cfx.diagnosis import NormalReference
from captum_cfx.distributed import is_writer
from captum_cfx.explainer import CounterfactualAnomalyExplainer
from captum_cfx.fit_report import (
    SELF_MADE_MAX,
    judge,
    probe_anomalies,
    quality,
    self_made_outliers,
)
from captum_cfx.generative.config import GeneratorConfig, build_networks
from captum_cfx.generative.networks import MAX_SIDE, MIN_SIDE, extra_levels
from captum_cfx.generative.trainer import CounterfactualTrainer, random_subset
from captum_cfx.latent.autoencoder import ConvAutoencoder, LatentAutoencoder, train_autoencoder
from captum_cfx.latent.bridge import LatentDetector, LatentGenerator, LatentRange
from captum_cfx.latent.kl import KLAutoencoder, load_autoencoder_kl
from captum_cfx.streaming import Images, calibration_images, holdout

FORMAT = "captum_cfx.LatentCounterfactualExplainer"
#: Where ``save`` writes a diffusers autoencoder (``save_pretrained``: safetensors and JSON).
AUTOENCODER_FOLDER = "autoencoder"
#: The library's own autoencoder's weights in a ``checkpoint_dir``, so a resumed fit keeps it.
AUTOENCODER_CHECKPOINT = "autoencoder.pt"
#: Images per autoencoder call when encoding the normal images.
ENCODE_BATCH = 256

Autoencoder = Union[None, str, Path, LatentAutoencoder, Any]


def encode_images(autoencoder: LatentAutoencoder, images: Images, device: torch.device) -> Tensor:
    """A_enc of images (M, C, H, W) in [0, 1], a tensor or a Dataset read a batch at a time,
    ``ENCODE_BATCH`` at a time, on ``device``: latents (M, c, h, w) on ``device``."""
    batches = images.split(ENCODE_BATCH) if isinstance(images, Tensor) else images.batches()
    with torch.no_grad():
        return torch.cat([autoencoder.encode(b.to(device)) for b in batches])


class LatentCounterfactualExplainer(CounterfactualAnomalyExplainer):
    """Explains an anomaly detector with K counterfactuals made in the latent space of an
    autoencoder A: G(x, alpha, k) = A_dec(G'(A_enc(x), alpha, k)).

    The public API is :class:`~captum_cfx.CounterfactualAnomalyExplainer`'s (``fit``,
    ``attribute``, ``counterfactual``, ``counterfactuals``, ``traverse``, ``diagnose``,
    ``save``/``load``, ``fit_report_``), on images; G' (a latent (c, h, w) in, a latent out)
    trains with the same five loss groups, phi reading A_dec of its latents, A frozen.

    Args:
        forward_func (callable, optional): the detector, when known before ``fit``. Default:
            None
        n_concepts (int): K. Default: 2
        config (GeneratorConfig, optional): G', D and R's recipe. Default: None
            (``GeneratorConfig()``)
        autoencoder (optional): A. None: a :class:`~captum_cfx.latent.ConvAutoencoder` that
            ``fit`` trains on the normal images; a folder (str or Path) holding a diffusers
            ``AutoencoderKL`` (Stable Diffusion's ``vae`` folder), read with
            ``local_files_only=True``; a diffusers ``AutoencoderKL``; or any
            :class:`~captum_cfx.latent.LatentAutoencoder`. A given one is frozen and moved to
            ``fit``'s device. Default: None
        autoencoder_steps (int): training steps of the library's own autoencoder. Default:
            2000

    After ``fit`` or ``load``, besides the pixel path's fitted state: ``autoencoder_`` is A,
    ``latent_shape_`` the latents' (c, h, w), ``generator_`` the composition G (a
    :class:`~captum_cfx.latent.LatentGenerator`; ``generator_.generator`` is G').
    ``fit_report_`` is judged on images with phi itself, and its ``"autoencoder"`` entry says
    how well A reconstructs the held-out normal images (``reconstruction_l1``) and what share
    of their reconstructions phi flags (``reconstruction_false_alarms``): G' can make no
    counterfactual more normal than A's reconstructions of normal images.
    """

    saved_format = FORMAT
    generator_: LatentGenerator
    autoencoder_: LatentAutoencoder

    def __init__(
        self,
        forward_func: Optional[Any] = None,
        n_concepts: int = 2,
        config: Optional[GeneratorConfig] = None,
        autoencoder: Autoencoder = None,
        autoencoder_steps: int = 2000,
    ) -> None:
        super().__init__(forward_func, n_concepts, config)
        self.autoencoder = autoencoder
        self.autoencoder_steps = autoencoder_steps

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
    ) -> LatentCounterfactualExplainer:
        """Get A (train the library's own on the normal images when none was given), encode
        the images, and train G', D and R in latent space against the frozen ``detector``.

        Arguments as in :meth:`CounterfactualAnomalyExplainer.fit
        <captum_cfx.CounterfactualAnomalyExplainer.fit>`, except that the latent path trains
        in one process (``distributed=True`` is an error) and needs a detector with a
        gradient (phi's gradient reaches G' through A_dec; a black box is explained by the
        pixel path, which distils a surrogate). With ``checkpoint_dir``, the trained
        autoencoder is kept there too and a resumed fit reuses it. The images' sides must be
        multiples of A's downscaling f, and the latents' sides 8 to 256.

        The held-out normal images, the outliers the fit makes when none are given (pixel
        corruptions of the normal images that phi flags) and the probe anomalies are those
        of the pixel path; G' trains on their latents, and every judgement scores
        A_dec(G'(A_enc(x))) with phi against the held-out normal images themselves.

        Returns:
            self, fitted.
        """
        if distributed:
            raise ValueError(
                "the latent path trains in one process; fit it without distributed=True "
                "(or fit the pixel-space CounterfactualAnomalyExplainer under torchrun)."
            )
        steps_in_all, patience = self._training_budget(steps, max_steps, checkpoint_every)
        config = self.config or GeneratorConfig()
        normal, outliers, reference = self._read_loaders(
            normal_loader, outlier_loader, reference_loader
        )
        calibrating = calibration_images(normal, seed)
        phi = as_detector(detector, normal_data=calibrating, calibration=calibration)  # type: ignore[arg-type]
        device = self._device_for(phi, device)
        normal, held_out = holdout(normal, seed)
        normal, held_out = normal.to(device), held_out.to(device)
        outliers = None if outliers is None else outliers.to(device)
        autoencoder = self._fitted_autoencoder(normal, device, seed, progress, checkpoint_dir)
        latents = encode_images(autoencoder, normal, device)
        latent_range = LatentRange.of(latents).to(device)
        phi_latent = as_detector(
            LatentDetector(phi, autoencoder, latent_range), calibration="sigmoid"
        )
        if not self._has_gradient(phi_latent, latent_range.to_unit(latents[: config.batch_size])):
            raise ValueError(
                "the detector's score carries no gradient to the image (numpy values, a "
                "detached tensor, or a score flat on normal images), and G' learns through "
                "phi's gradient. Explain it with CounterfactualAnomalyExplainer, which distils "
                "a differentiable surrogate of a black box."
            )
        probe, judged_on = probe_anomalies(phi, held_out, outliers, seed)
        if outliers is None:  # as the pixel path: corruptions of normal images phi flags
            sample = random_subset(normal, SELF_MADE_MAX // 4, torch.Generator().manual_seed(seed))
            outliers = self_made_outliers(phi, sample, seed + 1)

        def to_unit(images: Optional[Tensor]) -> Optional[Tensor]:
            if images is None or not len(images):
                return None
            return latent_range.to_unit(encode_images(autoencoder, images, device))

        reference_images = NormalReference.from_images(normal, held_out, seed)
        held_out_scores = score_images(phi, held_out) if len(held_out) else held_out.new_empty(0)
        trainer = CounterfactualTrainer(
            phi_latent,
            latent_range.to_unit(latents),
            to_unit(outliers),
            self.n_concepts,
            config,
            device,
            seed,
            to_unit(reference),
        )
        generator = LatentGenerator(autoencoder, latent_range, trainer.kept_generator)

        def counterfactuals(x: Tensor) -> Tensor:
            return self._all_concepts(x, 0.0, None, generator, self.n_concepts)

        def evaluate() -> float:
            return quality(judge(counterfactuals, phi, probe, held_out_scores, reference_images))

        trainer.run(steps_in_all, progress, checkpoint_dir, checkpoint_every, evaluate, patience)
        # Set the learned state only now, so a failed fit leaves the explainer as it was.
        self.forward_func = phi
        self.config_ = config
        self.generator_ = generator.eval()
        self.concept_classifier_ = trainer.concept_classifier
        self.history_ = dict(trainer.history)
        self.n_concepts_ = self.n_concepts
        self.input_shape_ = tuple(normal.shape[1:])
        self.latent_shape_ = tuple(latents.shape[1:])
        self.autoencoder_ = autoencoder
        self.normal_reference_ = reference_images
        self.surrogate_, self.surrogate_report_ = None, None
        report = judge(counterfactuals, phi, probe, held_out_scores, reference_images)
        report.update(self._training_record(trainer, judged_on if len(probe) else None))
        report["autoencoder"] = self._autoencoder_report(phi, held_out)
        self.fit_report_ = report
        self._warn_if_failed(report)
        return self

    # -- the autoencoder ------------------------------------------------------------------
    def _fitted_autoencoder(
        self,
        normal: Images,
        device: torch.device,
        seed: int,
        progress: bool,
        checkpoint_dir: Union[str, Path, None],
    ) -> LatentAutoencoder:
        """A for the normal images (M, C, H, W): the one given (read from its folder), or
        the library's own, checked against the images' channels and size before it is
        trained on them (or read from ``checkpoint_dir``); frozen, on ``device``."""
        given = self.autoencoder
        if isinstance(given, (str, Path)):
            autoencoder: LatentAutoencoder = load_autoencoder_kl(given)
        elif isinstance(given, LatentAutoencoder):
            autoencoder = given
        elif type(given).__name__ == "AutoencoderKL":  # diffusers', without importing it here
            autoencoder = KLAutoencoder(given)
        elif given is None:
            with torch.random.fork_rng(devices=[]):  # seed the weights, not the global RNG
                torch.manual_seed(seed)
                autoencoder = ConvAutoencoder(normal.shape[1])
        else:
            raise TypeError(
                "autoencoder must be None (captum_cfx trains its own), the folder of a "
                "diffusers AutoencoderKL, an AutoencoderKL or a captum_cfx.latent."
                f"LatentAutoencoder; got {type(given).__name__}."
            )
        self._check_fits(autoencoder, normal.shape[1:])
        if isinstance(autoencoder, ConvAutoencoder) and given is None:
            self._train_own(autoencoder, normal, device, seed, progress, checkpoint_dir)
        return autoencoder.to(device).eval().requires_grad_(False)

    @staticmethod
    def _check_fits(autoencoder: LatentAutoencoder, shape: Tuple[int, ...]) -> None:
        """Refuse an autoencoder for images of another channel count, or whose latents of
        images of ``shape`` (C, H, W) G' cannot take."""
        c, h, w = shape
        if autoencoder.image_channels != c:
            raise ValueError(
                f"the autoencoder takes {autoencoder.image_channels}-channel images, but "
                f"normal_loader's have {c} channels; give an autoencoder for {c}-channel "
                "images (or autoencoder=None to train one)."
            )
        f = autoencoder.downscale
        if h % f or w % f:
            raise ValueError(
                f"the autoencoder downscales by {f}, which does not divide the images' "
                f"{h}x{w} pixels; resize or crop them to multiples of {f}."
            )
        try:
            extra_levels((h // f, w // f))
        except ValueError:
            raise ValueError(
                f"the autoencoder turns {h}x{w} images into {h // f}x{w // f} latents; G' "
                f"takes latents of {MIN_SIDE} to {MAX_SIDE} a side. Resize the images, or give "
                "an autoencoder that downscales less (or more)."
            ) from None

    def _train_own(
        self,
        autoencoder: ConvAutoencoder,
        normal: Images,
        device: torch.device,
        seed: int,
        progress: bool,
        checkpoint_dir: Union[str, Path, None],
    ) -> None:
        """Train the library's own autoencoder on ``normal`` for ``autoencoder_steps``, or read
        its weights from ``checkpoint_dir`` when an earlier fit left them there."""
        path = None if checkpoint_dir is None else Path(checkpoint_dir) / AUTOENCODER_CHECKPOINT
        if path is not None and path.is_file():
            autoencoder.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return
        train_autoencoder(
            normal,
            steps=self.autoencoder_steps,
            seed=seed,
            device=device,
            progress=progress,
            autoencoder=autoencoder,
        )
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_save(autoencoder.state_dict(), path)

    def _autoencoder_report(self, phi: Any, held_out: Tensor) -> Dict[str, Any]:
        """A's kind, the latents' shape, and on the held-out normal images (M, C, H, W) the
        mean L1 of their reconstructions and the share of those phi flags (None without
        held-out images)."""
        report: Dict[str, Any] = {
            "kind": type(self.autoencoder_).__name__,
            "latent_shape": list(self.latent_shape_),
            "reconstruction_l1": None,
            "reconstruction_false_alarms": None,
        }
        if len(held_out):
            with torch.no_grad():
                rebuilt = self.autoencoder_.decode(self.autoencoder_.encode(held_out))
            report["reconstruction_l1"] = float((rebuilt - held_out).abs().mean())
            report["reconstruction_false_alarms"] = float(
                (score_images(phi, rebuilt) >= 0.5).float().mean()
            )
        return report

    # -- latents --------------------------------------------------------------------------
    def latents(self, inputs: Tensor) -> Tensor:
        """A_enc of images (N, C, H, W) in [0, 1]: latents (N, c, h, w) on A's device (for
        a Stable Diffusion VAE, scaled as its UNet takes them)."""
        self._check_fitted()
        x = self._check_inputs(inputs)
        device = next(self.generator_.parameters()).device
        return encode_images(self.autoencoder_, x, device)

    def counterfactual_latents(
        self, inputs: Tensor, concept: int = 0, target_score: float = 0.0
    ) -> Tuple[Tensor, Tensor]:
        """The latents of the images and of their counterfactuals for one concept.

        Args:
            inputs (Tensor): images (N, C, H, W) in [0, 1].
            concept (int): k in 0..K-1. Default: 0
            target_score (float): alpha; 0 = normal. Default: 0.0

        Returns:
            (z, z_bar): A_enc(x) and G'(A_enc(x), alpha, k), each (N, c, h, w), the pair
            :func:`captum_cfx.latent.diffedit.render_diffedit` renders.
        """
        z = self.latents(inputs)
        target = self._check_score(target_score)
        k = self._check_concept(concept)
        alpha = torch.full((len(z),), target, device=z.device)
        self.generator_.eval()
        with torch.no_grad():
            z_bar = self.generator_.edit(z, alpha, torch.full_like(alpha, k, dtype=torch.long))
        return z, z_bar

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: Union[str, Path]) -> Path:
        """Write the fitted explainer into the folder ``path``, as
        :meth:`CounterfactualAnomalyExplainer.save <captum_cfx.CounterfactualAnomalyExplainer.save>`
        does, with A: the library's own autoencoder's weights in ``weights.pt``, a diffusers
        ``AutoencoderKL`` in the subfolder ``autoencoder`` (``save_pretrained``: safetensors
        and JSON). G' alone is saved of G.

        Returns:
            The folder.
        """
        folder = super().save(path)
        if is_writer() and isinstance(self.autoencoder_, KLAutoencoder):
            self.autoencoder_.vae.save_pretrained(folder / AUTOENCODER_FOLDER)
        return folder

    def _saved_state(self, folder: Path) -> Tuple[Dict[str, Dict[str, Tensor]], Dict[str, Any]]:
        weights, config = super()._saved_state(folder)
        own = isinstance(self.autoencoder_, ConvAutoencoder)
        if not own and not isinstance(self.autoencoder_, KLAutoencoder):
            raise ValueError(
                f"save() writes the library's own autoencoder or a diffusers AutoencoderKL; "
                f"this explainer's is a {type(self.autoencoder_).__name__}."
            )
        weights["generator"] = self.generator_.generator.state_dict()
        weights["latent_range"] = self.generator_.latent_range.state_dict()
        weights["autoencoder"] = self.autoencoder_.state_dict() if own else {}
        config["latent_shape"] = list(self.latent_shape_)
        config["autoencoder"] = (
            {"kind": "conv", "config": self.autoencoder_.config()}  # type: ignore[operator]
            if own
            else {"kind": "autoencoder_kl", "folder": AUTOENCODER_FOLDER}
        )
        return weights, config

    @classmethod
    def load(
        cls, path: Union[str, Path], detector: Optional[Any] = None
    ) -> LatentCounterfactualExplainer:
        """Read an explainer written by :meth:`save`, executing nothing from the files
        (tensors through ``torch.load(weights_only=True)``, a diffusers autoencoder through
        ``from_pretrained(local_files_only=True)``).

        Args:
            path (str or Path): the folder given to ``save``.
            detector (optional): the detector it was fitted with, as in
                :meth:`CounterfactualAnomalyExplainer.load
                <captum_cfx.CounterfactualAnomalyExplainer.load>`. Default: None

        Raises:
            FileNotFoundError: a file is missing. ValueError: the files are not a
            LatentCounterfactualExplainer, come from a newer format, or do not fit together.
        """
        folder = Path(path)
        config, weights = cls._read_saved(folder)
        gen_config = GeneratorConfig.from_dict(config["generator_config"])
        explainer = cls(n_concepts=int(config["n_concepts"]), config=gen_config)
        saved = config.get("autoencoder") or {}
        autoencoder: LatentAutoencoder
        if saved.get("kind") == "conv":
            autoencoder = ConvAutoencoder(**saved["config"])
            cls._load_weights(folder, weights, autoencoder=autoencoder)
        elif saved.get("kind") == "autoencoder_kl":
            autoencoder = load_autoencoder_kl(folder / saved["folder"])
        else:
            raise ValueError(f"{folder}'s config.json names no autoencoder it can read.")
        c, h, w = (int(v) for v in config["latent_shape"])
        generator, _, concept_classifier = build_networks(
            c, explainer.n_concepts, gen_config, (h, w)
        )
        latent_range = LatentRange(torch.ones(c), 2 * torch.ones(c))
        cls._load_weights(
            folder,
            weights,
            generator=generator,
            concept_classifier=concept_classifier,
            latent_range=latent_range,
        )
        composed = LatentGenerator(
            autoencoder.eval().requires_grad_(False), latent_range, generator
        )
        explainer._restore(folder, config, weights, detector, composed, concept_classifier)
        explainer.latent_shape_ = (c, h, w)
        explainer.autoencoder_ = autoencoder
        return explainer


__all__ = ["LatentCounterfactualExplainer", "encode_images"]
