"""The detector adapter: any image anomaly detector as a differentiable phi(x) in [0, 1].

``as_detector`` wraps a user's model (a network returning a score, a logit, a class pair, a
dict or an object holding a score such as anomalib's ``pred_score``) in an
:class:`AnomalyDetector` whose ``forward`` is phi: (N, C, H, W) -> (N,) in [0, 1], smooth in
the input so that a generator can be trained through it.

Every calibration is computed through the score's logit, ``log(phi / (1 - phi))``, and phi is
recovered as ``exp(-softplus(-logit))``. The gradient of that form is ``phi * sigmoid(-logit)``,
which stays non-zero for a strong anomaly where ``sigmoid(logit)`` would round to 1 and its
gradient to 0. The statistics are computed in float64 for the same reason.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import Literal

from captum_cfx._validation import check_images

Calibration = Literal["auto", "identity", "sigmoid", "exp", "gaussian", "quantile"]
CALIBRATIONS = ("identity", "sigmoid", "exp", "gaussian", "quantile")
#: Field names searched, in order, when a detector returns a dict or an object.
SCORE_FIELDS = ("pred_score", "anomaly_score", "score", "scores")
#: ``quantile`` calibration: phi = 0.5 at the normal scores' 95% quantile and 0.05 at their
#: median.
QUANTILE_LEVELS = (0.5, 0.95)
#: ``exp`` calibration: this quantile of the normal scores is mapped to phi = 0.5, so that
#: "phi < 0.5" reads "as normal as 95% of the normal data".
EXP_NORMAL_QUANTILE = 0.95
_LOGIT_EPS = 1e-7

NormalData = Union[Tensor, Iterable[Any]]


class CalibrationNotice(UserWarning):
    """Says which calibration ``calibration="auto"`` picked, and why."""


class NotDifferentiableWarning(UserWarning):
    """The wrapped detector returns numpy values: phi carries no gradient to the input."""


def phi_from_logit(logit: Tensor) -> Tensor:
    """``sigmoid(logit)`` written so that its gradient survives where phi rounds to 1."""
    return torch.exp(-F.softplus(-logit))


def exp_score_logit(u: Tensor) -> Tensor:
    """The logit of ``phi = 1 - exp(-u)`` for ``u >= 0``: ``log(1 - exp(-u)) + u``, stable."""
    u = u.clamp_min(1e-12)
    return torch.log(-torch.expm1(-u)) + u


@contextmanager
def frozen(model: Any) -> Iterator[None]:
    """Run ``model`` in eval mode with frozen parameters, then restore it exactly.

    Every submodule's ``training`` flag and every parameter's ``requires_grad`` are put back
    as they were, so the user's model object is unchanged by being scored. Gradients still
    flow to the input.
    """
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in grads:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in grads:
            p.requires_grad_(flag)


def _find_score(output: Any, score_key: Optional[str]) -> Any:
    """Pull the score out of a dict or an object; pass tensors and arrays through."""
    if isinstance(output, (Tensor, np.ndarray)):
        return output
    fields = (score_key,) if score_key else SCORE_FIELDS
    for field in fields:
        if isinstance(output, Mapping) and field in output:
            return output[field]
        if not isinstance(output, Mapping) and getattr(output, field, None) is not None:
            return getattr(output, field)
    raise TypeError(
        f"the detector returned {type(output).__name__}, from which no score could be read. "
        f"Expected a tensor (N,), (N, 1) or (N, 2), or a dict/object with one of the fields "
        f"{list(fields)}; name the field with as_detector(..., score_key='...')."
    )


class AnomalyDetector(nn.Module):
    """A detector phi: images (N, C, H, W) in [0, 1] -> anomaly scores (N,) in [0, 1].

    Build it with :func:`as_detector`. The wrapped model is not registered as a submodule:
    ``.to()``, ``.train()``, ``.parameters()`` and ``state_dict()`` of the adapter never touch
    it, and each call runs it under :func:`frozen`. The calibration statistics (``tau``,
    ``mu``, ``sigma``) are buffers and travel with ``state_dict()``.

    Args:
        model: the user's detector, an ``nn.Module`` or any callable on image tensors.
        calibration: one of ``"identity"``, ``"sigmoid"``, ``"exp"``, ``"gaussian"``,
            ``"quantile"`` (see :func:`as_detector`).
        higher_is_anomalous: False when the model scores normality (higher = more normal).
        score_key: the field holding the score when the model returns a dict or object.
        pair_mode: for (N, 2) outputs, ``"prob"`` (rows are probabilities, the anomalous
            class second) or ``"logit"`` (rows are logits); chosen from ``calibration`` when
            None.
    """

    _model: Callable[..., Any]
    tau: Tensor
    mu: Tensor
    sigma: Tensor

    def __init__(
        self,
        model: Callable[..., Any],
        calibration: str = "identity",
        higher_is_anomalous: bool = True,
        score_key: Optional[str] = None,
        pair_mode: Optional[str] = None,
    ) -> None:
        super().__init__()
        if calibration not in CALIBRATIONS:
            raise ValueError(
                f"unknown calibration {calibration!r}; choose one of {CALIBRATIONS} or 'auto' "
                "(through as_detector)."
            )
        if pair_mode not in (None, "prob", "logit"):
            raise ValueError(f"pair_mode must be 'prob', 'logit' or None, got {pair_mode!r}.")
        object.__setattr__(self, "_model", model)  # deliberately not a submodule
        self.calibration = calibration
        self.higher_is_anomalous = higher_is_anomalous
        self.score_key = score_key
        self.pair_mode = pair_mode or ("prob" if calibration == "identity" else "logit")
        self.differentiable = True
        self.register_buffer("tau", torch.tensor(1.0, dtype=torch.float64))
        self.register_buffer("mu", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("sigma", torch.tensor(1.0, dtype=torch.float64))

    @property
    def model(self) -> Callable[..., Any]:
        """The user's model, exactly as it was given."""
        return self._model

    def model_output(self, x: Tensor) -> Tensor:
        """The model's score for ``x`` as a float64 tensor (N,) or (N, 2), not yet oriented."""
        with frozen(self._model):
            output = _find_score(self._model(x), self.score_key)
        if not isinstance(output, Tensor):
            if self.differentiable:
                warnings.warn(
                    "the detector returned numpy values, so phi has no gradient with respect "
                    "to the input and a generator cannot be trained through it; "
                    "CounterfactualAnomalyExplainer.fit distils a differentiable surrogate of "
                    "it (captum_cfx.detectors.surrogate).",
                    NotDifferentiableWarning,
                    stacklevel=3,
                )
                self.differentiable = False
            output = torch.as_tensor(np.asarray(output), device=x.device)
        n = x.shape[0]
        if output.dim() == 2 and output.shape[1] == 1:
            output = output[:, 0]
        if output.shape not in ((n,), (n, 2)):
            raise ValueError(
                f"the detector returned shape {tuple(output.shape)} for a batch of {n} images; "
                f"expected ({n},), ({n}, 1) or ({n}, 2) (normal, anomalous). Reduce pixel maps "
                "to one score per image, e.g. with a mean or max over pixels."
            )
        output = output.to(torch.float64)
        if not torch.isfinite(output).all():
            raise ValueError(
                "the detector returned NaN or Inf scores; check the model on these inputs "
                "(its preprocessing, or a division by a zero norm)."
            )
        return output

    def raw_score(self, x: Tensor) -> Tensor:
        """The oriented raw score (N,) in float64: higher means more anomalous."""
        return self.orient(self.model_output(x))

    def orient(self, output: Tensor) -> Tensor:
        """Turn model outputs (N,) or (N, 2) into oriented raw scores (N,)."""
        if output.dim() == 2:
            output = output[:, 1] if self.pair_mode == "prob" else output[:, 1] - output[:, 0]
        if self.higher_is_anomalous:
            return output
        return 1.0 - output if self.calibration == "identity" else -output

    @property
    def _model_gives_logit(self) -> bool:
        # Models whose output already is phi may define ``phi_logit(x)``; using it keeps the
        # gradient of a strong anomaly where phi itself has rounded to 1.
        return (
            self.calibration == "identity"
            and self.higher_is_anomalous
            and callable(getattr(self._model, "phi_logit", None))
        )

    def logit(self, x: Tensor) -> Tensor:
        """``log(phi / (1 - phi))`` (N,), float64; the loss-friendly form of phi."""
        if self._model_gives_logit:
            with frozen(self._model):
                return self._model.phi_logit(x).to(torch.float64)  # type: ignore[attr-defined]
        return self._logit_of(self.raw_score(x))

    def _logit_of(self, s: Tensor) -> Tensor:
        if self.calibration == "identity":
            return torch.logit(s, eps=_LOGIT_EPS)
        if self.calibration == "sigmoid":
            return s
        if self.calibration == "exp":
            return exp_score_logit(s.clamp_min(0.0) / self.tau)
        z = (s - self.mu) / self.sigma
        if self.calibration == "quantile":  # phi = sigmoid(z)
            return z
        return torch.special.log_ndtr(z) - torch.special.log_ndtr(-z)  # gaussian: phi = Phi(z)

    def _phi_of(self, s: Tensor) -> Tensor:
        if self.calibration == "identity":
            if s.min() < -1e-6 or s.max() > 1 + 1e-6:
                raise ValueError(
                    f"the detector's scores lie in [{float(s.min()):.3g}, {float(s.max()):.3g}], "
                    "outside [0, 1], but the calibration is 'identity'. Use as_detector(model, "
                    "normal_data=..., calibration='auto') or name 'sigmoid', 'exp' or 'gaussian'."
                )
            return s.clamp(0.0, 1.0)
        return phi_from_logit(self._logit_of(s))

    def forward(self, x: Tensor) -> Tensor:
        """phi(x): anomaly scores (N,) in [0, 1] in ``x``'s dtype, differentiable in ``x``."""
        if self._model_gives_logit:
            return phi_from_logit(self.logit(x)).to(x.dtype)
        return self._phi_of(self.raw_score(x)).to(x.dtype)

    def fit_statistics(self, scores: Tensor) -> AnomalyDetector:
        """Set the calibration buffers from oriented raw scores (M,) of normal data."""
        scores = scores.to(torch.float64)
        if self.calibration == "exp":
            if scores.min() < 0:
                raise ValueError(
                    "calibration 'exp' needs nonnegative scores (distances), but the normal "
                    f"data scored down to {float(scores.min()):.3g}; use 'gaussian' or 'sigmoid'."
                )
            q = torch.quantile(scores, EXP_NORMAL_QUANTILE)
            if q <= 0:
                raise ValueError(
                    "the detector scores (almost) all normal data 0, so 'exp' cannot set its "
                    "scale; check that the detector was trained, or use 'identity'."
                )
            self.tau.fill_(float(q) / math.log(2.0))
        elif self.calibration == "gaussian":
            sigma = scores.std() if scores.numel() > 1 else torch.zeros((), dtype=torch.float64)
            if not sigma > 0:
                raise ValueError(
                    "the detector gives every normal image the same score, so 'gaussian' cannot "
                    "set its scale; check that the detector was trained and is not constant."
                )
            self.mu.fill_(float(scores.mean()))
            self.sigma.fill_(float(sigma))
        elif self.calibration == "quantile":
            median, high = torch.quantile(scores, torch.tensor(QUANTILE_LEVELS).to(scores))
            if not high > median:
                raise ValueError(
                    "the detector gives most normal images the same score, so 'quantile' cannot "
                    "set its scale; check that the detector was trained and is not constant."
                )
            self.mu.fill_(float(high))
            self.sigma.fill_(float(high - median) / math.log(19.0))
        return self

    def extra_repr(self) -> str:
        model_name = type(self._model).__name__
        return (
            f"model={model_name}, calibration={self.calibration!r}, "
            f"higher_is_anomalous={self.higher_is_anomalous}"
        )


def iterate_images(data: NormalData, batch_size: int = 256) -> Iterator[Tensor]:
    """Yield image batches from a tensor (N, C, H, W) or a loader of tensors/(tensor, ...) pairs."""
    if isinstance(data, Tensor):
        if data.dim() == 4 and data.shape[0] == 0:
            raise ValueError("the image tensor is empty; pass at least one image.")
        for start in range(0, max(len(data), 1), batch_size):
            yield data[start : start + batch_size]
        return
    seen = False
    for batch in data:
        if isinstance(batch, (tuple, list)) and batch:
            batch = batch[0]
        if not isinstance(batch, Tensor):
            raise TypeError(
                f"the loader yielded {type(batch).__name__}; it must yield image tensors "
                "(N, C, H, W) or (images, labels) pairs. Add transforms.ToTensor() to the dataset."
            )
        seen = True
        yield batch
    if not seen:
        raise ValueError("the loader yielded no batches; pass a loader over at least one image.")


def score_images(
    detector: Callable[[Tensor], Tensor], images: Tensor, batch_size: int = 512
) -> Tensor:
    """phi of images (N, C, H, W), batch by batch without gradients, as a CPU tensor (N,)."""
    with torch.no_grad():
        return torch.cat([detector(batch).cpu() for batch in images.split(batch_size)])


def _pick_calibration(outputs: Tensor, higher_is_anomalous: bool) -> Tuple[str, str]:
    """The calibration ``"auto"`` chooses for raw model outputs on normal data, and why."""
    lo, hi = float(outputs.min()), float(outputs.max())
    if outputs.dim() == 2:
        rows_sum_to_one = torch.allclose(
            outputs.sum(1), torch.ones(len(outputs), dtype=outputs.dtype), atol=1e-4
        )
        if lo >= 0 and hi <= 1 and rows_sum_to_one:
            return "identity", "the (N, 2) outputs are class probabilities"
        return "sigmoid", "the (N, 2) outputs are class logits (softmax of the pair)"
    if lo >= 0 and hi <= 1:
        return "identity", f"scores on normal data lie in [{lo:.3g}, {hi:.3g}] within [0, 1]"
    if not higher_is_anomalous:
        return "gaussian", "scores are normality scores outside [0, 1]"
    if lo >= 0:
        return "exp", f"scores are nonnegative (distances) up to {hi:.3g}"
    return "sigmoid", f"scores take negative values (down to {lo:.3g}), read as logits"


def as_detector(
    model: Any,
    *,
    normal_data: Optional[NormalData] = None,
    calibration: Calibration = "auto",
    higher_is_anomalous: bool = True,
    score_key: Optional[str] = None,
) -> AnomalyDetector:
    """Wrap an anomaly detector as phi: (N, C, H, W) in [0, 1] -> (N,) in [0, 1].

    Args:
        model: an ``nn.Module`` or callable on image tensors returning a tensor (N,), (N, 1),
            (N, 2) (normal, anomalous), a dict or an object holding the score (anomalib's
            ``pred_score``), or a numpy array (then phi is not differentiable). An
            :class:`AnomalyDetector` is returned as it is.
        normal_data: normal images, a tensor (N, C, H, W) or a loader yielding tensors or
            (tensor, label) pairs, in [0, 1]. Needed by ``"exp"``, ``"gaussian"``,
            ``"quantile"`` and ``"auto"`` (except for captum_cfx's paper's detectors,
            already in [0, 1]).
        calibration: ``"identity"`` (already in [0, 1]), ``"sigmoid"`` (logits), ``"exp"``
            (nonnegative distances: ``1 - exp(-s / tau)``, tau putting the 95% quantile of the
            normal scores at 0.5), ``"gaussian"`` (``Phi((s - mu) / sigma)`` from the normal
            scores), ``"quantile"`` (scores of any sign and scale, such as scikit-learn's or
            PyOD's: ``sigmoid((s - q95) / scale)``, the normal scores' 95% quantile at 0.5 and
            their median at 0.05) or ``"auto"``, which takes the one a model names in a
            ``preferred_calibration`` attribute, else picks from the range of the normal
            scores, and says which it picked with a :class:`CalibrationNotice`.
        higher_is_anomalous: False when the model's score grows with normality.
        score_key: the field to read when the model returns a dict or an object.

    Returns:
        An :class:`AnomalyDetector`; the user's ``model`` is never modified.
    """
    if isinstance(model, AnomalyDetector):
        return model
    if not callable(model):
        raise TypeError(
            f"the detector must be an nn.Module or a callable on image tensors, got "
            f"{type(model).__name__}."
        )
    if calibration != "auto" and calibration not in CALIBRATIONS:
        raise ValueError(
            f"unknown calibration {calibration!r}; choose 'auto' or one of {CALIBRATIONS}."
        )
    if calibration == "auto" and getattr(model, "outputs_phi", False):
        return AnomalyDetector(model, "identity", higher_is_anomalous, score_key)
    preferred = getattr(model, "preferred_calibration", None) if calibration == "auto" else None
    if preferred is not None and preferred not in CALIBRATIONS:
        raise ValueError(
            f"the model's preferred_calibration {preferred!r} is not one of {CALIBRATIONS}."
        )
    if calibration in ("auto", "exp", "gaussian", "quantile") and normal_data is None:
        raise ValueError(
            f"calibration={calibration!r} needs normal_data (a tensor or loader of normal "
            "images) to set its statistics; pass it, or name 'identity' or 'sigmoid'."
        )
    if normal_data is None:
        return AnomalyDetector(model, str(calibration), higher_is_anomalous, score_key)

    probe = AnomalyDetector(model, "identity", True, score_key)
    with torch.no_grad():
        outputs = torch.cat(
            [
                probe.model_output(check_images(b, "normal_data"))
                for b in iterate_images(normal_data)
            ]
        )
    chosen = str(calibration)
    if calibration == "auto":
        chosen, reason = (
            (preferred, "the model names it (preferred_calibration)")
            if preferred is not None
            else _pick_calibration(outputs, higher_is_anomalous)
        )
        warnings.warn(
            f"as_detector picked calibration={chosen!r}: {reason}.", CalibrationNotice, stacklevel=2
        )
    detector = AnomalyDetector(model, chosen, higher_is_anomalous, score_key)
    detector.differentiable = probe.differentiable
    return detector.fit_statistics(detector.orient(outputs))
