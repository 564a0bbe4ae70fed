"""Helpers shared by the tests (importable: setup.cfg puts tests/ on the path)."""

from __future__ import annotations

import warnings
from html.parser import HTMLParser
from typing import Dict, List, Optional, Tuple

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.utils import save_image

from captum_cfx import CounterfactualAnomalyExplainer, FitWarning, GeneratorConfig

#: The smallest networks that train: for tests of plumbing, not of quality.
TINY = GeneratorConfig(widths=(4, 8, 8), cond_dim=8, disc_width=4, concept_width=4, batch_size=8)


def bright_square_images(
    n: int, anomalous: bool, channels: int = 1, size: int = 16, seed: int = 0, flat: bool = False
) -> torch.Tensor:
    """Dark noisy images (normal) or the same with a bright 6x6 square (anomalous); with
    ``flat``, one grey level in [0, 0.1] per image instead of per-pixel noise."""
    g = torch.Generator().manual_seed(seed)
    if flat:
        x = 0.1 * torch.rand(n, 1, 1, 1, generator=g).expand(n, channels, size, size).clone()
    else:
        x = 0.1 * torch.rand(n, channels, size, size, generator=g)
    if anomalous:
        r, c = torch.randint(0, size - 6, (2,), generator=g).tolist()
        x[:, :, r : r + 6, c : c + 6] = 0.9
    return x


class BrightSquare(nn.Module):
    """phi = sigmoid(20 (max of the 4x4-pooled image - 0.4)): a bright square is anomalous."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.avg_pool2d(x.amax(1, keepdim=True), 4).amax((1, 2, 3))
        return torch.sigmoid(20 * (pooled - 0.4))


def tiny_fitted_explainer(steps: int = 20) -> CounterfactualAnomalyExplainer:
    """A K = 2 explainer of :class:`BrightSquare`, fitted in a second on 64 normal images
    (1 channel, 16 px) with :data:`TINY`: for tests of what is done with a fitted one."""
    normal = DataLoader(TensorDataset(bright_square_images(64, False, seed=1)), batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # a fit this short is judged a failure
        return CounterfactualAnomalyExplainer(n_concepts=2, config=TINY).fit(
            BrightSquare(), normal, steps=steps, progress=False
        )


def tiny_autoencoder_kl(channels: int = 3):
    """A diffusers ``AutoencoderKL`` with random weights, two levels (f = 2), 4 latent
    channels; skips the test when diffusers is not installed."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    return diffusers.AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        latent_channels=4,
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=16,
    )


class PageParser(HTMLParser):
    """An HTML page's ``<section id=...>`` parts: per id, the ``src`` of each ``<img>`` and
    the text, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: Dict[str, Dict[str, List[str]]] = {}
        self._current: Optional[Dict[str, List[str]]] = None

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        found = dict(attrs)
        if tag == "section":
            self._current = self.sections.setdefault(
                str(found.get("id")), {"images": [], "text": []}
            )
        elif tag == "img" and self._current is not None:
            self._current["images"].append(str(found.get("src")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._current is not None and data.strip():
            self._current["text"].append(data.strip())


def parse_page(page: str) -> Dict[str, Dict[str, List[str]]]:
    """:class:`PageParser`'s sections of ``page``."""
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser.sections


class DarkIsNormal(nn.Module):
    """A tiny detector for the fit/explain commands: brightness is anomalous."""

    def forward(self, x):
        return torch.sigmoid(20 * (nn.functional.avg_pool2d(x, 4).amax((1, 2, 3)) - 0.4))


def write_folder(folder, images):
    """Save ``images`` (N, C, H, W) as PNGs img00.png, ... into a new ``folder``; returns it."""
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        save_image(image, folder / f"img{i:02d}.png")
    return folder
