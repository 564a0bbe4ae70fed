"""The autoencoder A = (A_enc, A_dec) that G' works in the latent space of.

:class:`LatentAutoencoder` is what the latent path needs of one: ``encode`` images in [0, 1]
to latents, ``decode`` latents back, both differentiable. :class:`ConvAutoencoder` is the
small convolutional one ``captum_cfx`` trains on the normal images itself when the user gives
none (:func:`train_autoencoder`); :mod:`captum_cfx.latent.kl` wraps Stable Diffusion's
``AutoencoderKL`` from diffusers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from captum_cfx.generative.trainer import random_subset
from captum_cfx.streaming import Images


class LatentAutoencoder(nn.Module, ABC):
    """An autoencoder for the latent path: images (N, C, H, W) in [0, 1] <-> latents
    (N, c, H / f, W / f), f = ``downscale``; both directions differentiable, the weights
    frozen while G' trains.

    An abstract base: subclasses set ``image_channels``, ``latent_channels`` and ``downscale``
    and implement :meth:`encode` and :meth:`decode` (it cannot be instantiated without them).
    """

    image_channels: int
    latent_channels: int
    downscale: int

    @abstractmethod
    def encode(self, x: Tensor) -> Tensor:
        """A_enc: images (N, C, H, W) in [0, 1] -> latents (N, c, H / f, W / f)."""

    @abstractmethod
    def decode(self, z: Tensor) -> Tensor:
        """A_dec: latents (N, c, h, w) -> images (N, C, h f, w f) in [0, 1]."""


def _block(in_width: int, out_width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_width, out_width, 3, padding=1),
        nn.GroupNorm(min(8, out_width), out_width),
        nn.SiLU(),
    )


class ConvAutoencoder(LatentAutoencoder):
    """The library's own autoencoder: ``downsamplings`` stride-2 levels, each halving the side,
    to ``latent_channels`` channels; nearest-neighbour upsampling back, a sigmoid output.

    The default, f = 2 to 4 channels (a third of an RGB image's numbers), is the one measured
    best on traffic signs (benchmarks/RESULTS.md, the latent path): f = 4 to 8 channels blurred
    the signs' symbols enough for the detector to flag 44% of the normal signs' reconstructions,
    and G' then reached normal for half of the anomalies.

    Args:
        channels (int): image channels, 1 or 3.
        latent_channels (int): c, the latent's channels. Default: 4
        width (int): the first level's width; each level below doubles it. Default: 16
        downsamplings (int): levels; f = 2 ** downsamplings. Default: 1
    """

    def __init__(
        self, channels: int, latent_channels: int = 4, width: int = 16, downsamplings: int = 1
    ) -> None:
        super().__init__()
        if channels not in (1, 3) or latent_channels < 1 or width < 1 or downsamplings < 1:
            raise ValueError(
                "ConvAutoencoder needs 1 or 3 image channels and positive latent_channels, "
                f"width and downsamplings; got {channels}, {latent_channels}, {width}, "
                f"{downsamplings}."
            )
        self.image_channels = channels
        self.latent_channels = latent_channels
        self.downscale = 2**downsamplings
        self.width = width
        self.downsamplings = downsamplings
        widths = [width * 2**i for i in range(downsamplings + 1)]
        down: List[nn.Module] = [_block(channels, widths[0])]
        for w_in, w_out in zip(widths, widths[1:]):
            down += [nn.Conv2d(w_in, w_out, 4, stride=2, padding=1), _block(w_out, w_out)]
        self.encoder = nn.Sequential(*down, nn.Conv2d(widths[-1], latent_channels, 1))
        up: List[nn.Module] = [_block(latent_channels, widths[-1])]
        for w_in, w_out in zip(widths[::-1], widths[-2::-1]):
            up += [nn.Upsample(scale_factor=2.0), _block(w_in, w_out), _block(w_out, w_out)]
        self.decoder = nn.Sequential(*up, nn.Conv2d(widths[0], channels, 3, padding=1))

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(2 * x - 1)

    def decode(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.decoder(z))

    def config(self) -> Dict[str, Any]:
        """The constructor's arguments, JSON-ready; ``ConvAutoencoder(**config())`` rebuilds it."""
        return {
            "channels": self.image_channels,
            "latent_channels": self.latent_channels,
            "width": self.width,
            "downsamplings": self.downsamplings,
        }


def train_autoencoder(
    normal: Images,
    *,
    steps: int = 2000,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    device: Optional[torch.device] = None,
    progress: bool = True,
    autoencoder: Optional[ConvAutoencoder] = None,
) -> ConvAutoencoder:
    """Train a :class:`ConvAutoencoder` to reconstruct the normal images (M, C, H, W) in
    [0, 1] (a tensor or :class:`~captum_cfx.streaming.DatasetImages`), L1, with Adam and a
    cosine decay of the learning rate.

    Args:
        normal: the images; H and W must be multiples of the autoencoder's f.
        steps (int): Adam steps. Default: 2000
        batch_size (int): images per step. Default: 32
        lr (float): the first learning rate. Default: 1e-3
        seed (int): seeds the weights (of a new autoencoder) and the batches. Default: 0
        device (torch.device, optional): where to train. Default: None (the images' device)
        progress (bool): show a progress bar. Default: True
        autoencoder (ConvAutoencoder, optional): the one to train. Default: None (a new
            ``ConvAutoencoder(C)``)

    Returns:
        The autoencoder, in eval mode, its weights frozen (``requires_grad`` False).
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}.")
    device = device or (normal.device if isinstance(normal, Tensor) else torch.device("cpu"))
    if autoencoder is None:
        with torch.random.fork_rng(devices=[]):  # seed the weights without touching global RNG
            torch.manual_seed(seed)
            autoencoder = ConvAutoencoder(normal.shape[1])
    autoencoder.to(device).train()
    optimiser = torch.optim.Adam(autoencoder.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    rng = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(steps), desc="fit autoencoder", disable=not progress):
        x = random_subset(normal, batch_size, rng).to(device)
        loss = F.l1_loss(autoencoder.decode(autoencoder.encode(x)), x)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
    optimiser.zero_grad(set_to_none=True)  # no gradients left on the frozen weights
    return autoencoder.eval().requires_grad_(False)
