"""A differentiable surrogate of a black-box detector, distilled on the images G meets.

A detector whose score carries no gradient (numpy scores, a detached or clamped tensor) cannot
train a generator. ``fit`` then distils a small CNN on the black box's calibrated logits
(:class:`SurrogateDistiller`): first on the normal images, perturbed and mixed variants of
them and the outliers, then, at every scoring during training, on G's counterfactuals labelled
by the black box, so that the surrogate is right where G goes. G trains through the surrogate;
every judgement uses the black box itself.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import Tensor, nn

from captum_cfx.detectors.adapter import AnomalyDetector, as_detector, score_images
from captum_cfx.metrics import auroc

#: Black-box logits are clipped to +-this before the surrogate regresses them.
LOGIT_CAP = 8.0
#: The most labelled images the distiller keeps (the oldest are dropped first), stored in 8
#: bits so that they travel with the checkpoints.
POOL_MAX = 4096
#: Optimiser steps of the first distillation, and at every refresh during training.
FIRST_STEPS, REFRESH_STEPS = 600, 150
#: The most normal images (and outliers) the first distillation reads.
SURROGATE_BASE = 1024
#: Images per distillation step.
BATCH = 64


class SurrogateNet(nn.Module):
    """A small smooth CNN, images (N, C, H, W) in [0, 1] -> logits (N,).

    SiLU activations and average pooling keep its gradient smooth, so that G follows a trend
    of the black box rather than the surrogate's own kinks.
    """

    def __init__(self, channels: int, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.SiLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.SiLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * width, width),
            nn.SiLU(),
            nn.Linear(width, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(2 * x - 1)[:, 0]


def variants(normal: Tensor, rng: torch.Generator) -> Tensor:
    """Perturbed and mixed variants of normal images (M, C, H, W) -> (2M, C, H, W): each image
    with noise of a random level up to 0.2, and blended with another at a random weight."""
    m = len(normal)
    level = 0.2 * torch.rand(m, 1, 1, 1, generator=rng).to(normal)
    noisy = normal + level * torch.randn(normal.shape, generator=rng).to(normal)
    weight = torch.rand(m, 1, 1, 1, generator=rng).to(normal)
    partner = normal[torch.randperm(m, generator=rng).to(normal.device)]
    return torch.cat([noisy.clamp(0, 1), weight * normal + (1 - weight) * partner])


class SurrogateDistiller:
    """Distils a :class:`SurrogateNet` on a black box's calibrated logits.

    Args:
        black_box: the user's detector as phi (:func:`~captum_cfx.as_detector`), without
            gradient.
        channels: image channels.
        device: where the surrogate lives.
        seed: seeds its weights and its batches.
    """

    def __init__(
        self, black_box: AnomalyDetector, channels: int, device: torch.device, seed: int
    ) -> None:
        self.black_box = black_box
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = SurrogateNet(channels).to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.rng = torch.Generator().manual_seed(seed)
        #: Labelled images (8-bit) and their target logits: ``"base"``, those ``fit`` gives
        #: before training, kept throughout; ``"active"``, G's counterfactuals, the newest
        #: ``POOL_MAX``.
        self.pools: Dict[str, Optional[Tuple[Tensor, Tensor]]] = {"base": None, "active": None}
        #: phi through the surrogate: what G trains against.
        self.detector = as_detector(self.net, calibration="sigmoid")

    def label(self, images: Tensor) -> Tensor:
        """The black box's calibrated logits of images (N, C, H, W), clipped, (N,)."""
        logits = score_images(self.black_box.logit, images).float()
        return logits.clamp(-LOGIT_CAP, LOGIT_CAP).to(images.device)

    def add(self, images: Tensor, pool: str = "active") -> Tensor:
        """Label images (N, C, H, W) in [0, 1] with the black box and keep them in ``pool``;
        returns their target logits (N,)."""
        labels = self.label(images.detach())
        images, targets = (images.detach() * 255).round().to(torch.uint8), labels
        held = self.pools[pool]
        if held is not None:
            images, targets = torch.cat([held[0], images]), torch.cat([held[1], targets])
        if pool == "active":
            images, targets = images[-POOL_MAX:], targets[-POOL_MAX:]
        self.pools[pool] = (images, targets)
        return labels

    def train(self, steps: int) -> float:
        """``steps`` Adam steps of a Huber loss on the logits of batches drawn half from each
        pool that holds images; the last loss."""
        held = [p for p in self.pools.values() if p is not None]
        if not held:
            raise ValueError("the distiller has no labelled images: add() some first.")
        self.net.train()
        loss = torch.zeros(())
        for _ in range(steps):
            parts = []
            for images, targets in held:
                pick = torch.randint(len(images), (BATCH // len(held),), generator=self.rng)
                parts.append((images[pick.to(images.device)], targets[pick.to(images.device)]))
            x = torch.cat([p[0] for p in parts]).float() / 255
            loss = F.smooth_l1_loss(self.net(x), torch.cat([p[1] for p in parts]))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        self.net.eval()
        return float(loss.detach())

    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to resume: weights, optimiser, RNG and the labelled images."""
        return {
            "net": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "rng": self.rng.get_state(),
            "pools": {name: pool for name, pool in self.pools.items() if pool is not None},
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`."""
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.rng.set_state(state["rng"])
        self.pools = {"base": None, "active": None}
        self.pools.update({name: tuple(pool) for name, pool in state["pools"].items()})
        self.net.eval()


def fidelity(
    black_box: AnomalyDetector,
    surrogate: AnomalyDetector,
    normal: Tensor,
    anomalies: Tensor,
    counterfactuals: Tensor,
) -> Dict[str, Optional[float]]:
    """How faithful the surrogate is to the black box.

    Args:
        black_box, surrogate: the two as phi.
        normal: held-out normal images (M, C, H, W).
        anomalies: anomalies the black box flags (N, C, H, W).
        counterfactuals: their counterfactuals, all concepts flattened (N', C, H, W).

    Returns:
        ``spearman_images`` (the rank correlation of the two's scores on normal images and
        anomalies together), ``spearman_counterfactuals`` (on the counterfactuals), and
        ``auroc_black_box`` / ``auroc_surrogate`` (normal against anomalies, by each); None
        where a set is too small.
    """

    def rank_correlation(images: Tensor) -> Optional[float]:
        if len(images) < 3:
            return None
        a = score_images(black_box.logit, images).double().numpy()
        b = score_images(surrogate.logit, images).double().numpy()
        rho = spearmanr(a, b).statistic
        return None if rho != rho else float(rho)  # NaN when either is constant

    both = torch.cat([normal, anomalies])
    labels = torch.cat([torch.zeros(len(normal)), torch.ones(len(anomalies))])
    separable = len(normal) > 0 and len(anomalies) > 0
    return {
        "spearman_images": rank_correlation(both),
        "spearman_counterfactuals": rank_correlation(counterfactuals),
        "auroc_black_box": auroc(labels, score_images(black_box, both)) if separable else None,
        "auroc_surrogate": auroc(labels, score_images(surrogate, both)) if separable else None,
    }


__all__ = ["SURROGATE_BASE", "SurrogateDistiller", "SurrogateNet", "fidelity", "variants"]
