"""Detectors on vectors, such as scikit-learn's and PyOD's, as detectors on images.

Such a detector scores feature vectors (N, D) with numpy: the image's pixels, flattened, or a
feature extractor's output. :class:`VectorDetector` makes it a callable on image tensors that
returns anomaly scores (higher = more anomalous) as numpy; ``fit`` then explains it through a
distilled surrogate (:mod:`captum_cfx.detectors.surrogate`), since numpy carries no gradient.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor


class VectorDetector:
    """An anomaly detector on vectors, as a callable on images (N, C, H, W) -> numpy (N,).

    Args:
        model: a fitted detector with one of, in this order of preference: PyOD's
            ``decision_function`` (higher = more anomalous; a PyOD detector is told by its
            ``decision_scores_``), scikit-learn's ``score_samples`` (higher = more normal:
            negated), or scikit-learn's ``decision_function`` (higher = more normal:
            negated), as ``IsolationForest``, ``LocalOutlierFactor(novelty=True)`` and
            ``OneClassSVM`` have.
        features: images (N, C, H, W) -> vectors (N, D), the ones ``model`` was fitted on;
            None: the flattened pixels. Run without gradient.

    Its ``preferred_calibration`` is ``"quantile"``: such scores have no fixed range or sign,
    so :func:`~captum_cfx.as_detector` maps them through their quantiles on normal images.

    Examples::

        >>> from sklearn.ensemble import IsolationForest
        >>> forest = IsolationForest(random_state=0).fit(normal.flatten(1).numpy())
        >>> explainer.fit(VectorDetector(forest), normal_loader)
    """

    preferred_calibration = "quantile"

    def __init__(self, model: Any, features: Optional[Callable[[Tensor], Tensor]] = None) -> None:
        if hasattr(model, "decision_scores_") and hasattr(model, "decision_function"):
            self._score, self._sign = model.decision_function, 1.0
        elif hasattr(model, "score_samples"):
            self._score, self._sign = model.score_samples, -1.0
        elif hasattr(model, "decision_function"):
            self._score, self._sign = model.decision_function, -1.0
        else:
            raise TypeError(
                f"{type(model).__name__} has no decision_function or score_samples; pass a "
                "fitted PyOD or scikit-learn outlier detector."
            )
        self.model = model
        self.features = features

    def __call__(self, images: Tensor) -> np.ndarray:
        with torch.no_grad():
            vectors = images.flatten(1) if self.features is None else self.features(images)
        scores = self._score(vectors.detach().cpu().numpy().astype(np.float64))
        return self._sign * np.asarray(scores, dtype=np.float64)

    def __repr__(self) -> str:
        return f"VectorDetector({type(self.model).__name__})"


__all__ = ["VectorDetector"]
