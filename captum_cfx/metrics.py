"""Metrics for counterfactual explanations of anomaly detectors (docs/method.rst).

- :func:`normality_auroc`: phi on normal test images vs on counterfactuals; 50% is ideal.
- :func:`validity`: the share of counterfactuals phi finds normal (phi < 0.5).
- :func:`proximity`: mean per-pixel L1 between counterfactuals and inputs.
- :func:`fid`, :func:`fidn`: realism as a Frechet distance in a pluggable feature space:
  a domain feature net (:func:`train_classifier`) or Inception pool3 from local weights
  (:func:`inception_features`).
- :func:`concept_accuracy`: how often a pair classifier names the concept of a counterfactual;
  :func:`posthoc_concept_accuracy` trains an independent one on held-out pairs (as DISSECT).
- :func:`colored_mnist_factors` and :func:`disentanglement`: which ground-truth factor each
  counterfactual changed, read by strict oracles (the ink's colour from the pixels, the digit
  from a classifier trained on grayscale digits, :func:`train_digit_oracle`);
  :func:`digit_factors` does the same for one-vs-rest digits (made the normal digit, kept,
  or patched); :func:`normal_support`, :func:`off_support_mass` and :func:`off_support_ink`
  flag ink that neither the input nor the normal images have where it is drawn (a pasted
  square, a frame, a dot, a haze).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captum_cfx.detectors.networks import feature_dim, feature_net

#: A pixel is ink when its brightest channel exceeds this.
INK_THRESHOLD = 0.3
#: :func:`off_support_ink` flags a counterfactual with this much :func:`off_support_mass`.
OFF_SUPPORT_MIN_MASS = 2.0


def auroc(labels: Tensor, scores: Tensor) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties half.

    Args:
        labels: (N,) 0/1. scores: (N,).
    """
    labels = labels.flatten().bool()
    scores = scores.flatten().double()
    if labels.all() or not labels.any():
        raise ValueError("auroc needs both positive (1) and negative (0) labels.")
    ranks = torch.empty_like(scores)
    order = scores.argsort()
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    for value in scores.unique()[(scores.unique(return_counts=True)[1] > 1)]:
        tied = scores == value
        ranks[tied] = ranks[tied].mean()  # average ranks for ties
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def normality_auroc(scores_normal: Tensor, scores_counterfactual: Tensor) -> float:
    """AuROC of phi's scores: normal test images (label 0) vs counterfactuals (label 1).

    50% means the detector cannot tell counterfactuals from normal images; below 50% they
    look more normal than normal data.
    """
    labels = torch.cat([torch.zeros(len(scores_normal)), torch.ones(len(scores_counterfactual))])
    return auroc(
        labels, torch.cat([scores_normal.flatten(), scores_counterfactual.flatten()]).cpu()
    )


def validity(scores_counterfactual: Tensor, threshold: float = 0.5) -> float:
    """The share of counterfactuals with phi < ``threshold``."""
    return float((scores_counterfactual < threshold).float().mean())


def proximity(counterfactuals: Tensor, inputs: Tensor) -> float:
    """Mean per-pixel L1 distance ``|x_cf - x|``; (N, C, H, W) each."""
    return float((counterfactuals - inputs).abs().mean())


# -- realism: Frechet distance in a feature space -----------------------------------------
def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """The Frechet distance between Gaussians fitted to two feature sets (N, D) and (M, D):
    ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, in float64."""
    a, b = features_a.double(), features_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    # Tr (S_a S_b)^(1/2) = sum of sqrt of the eigenvalues of S_a^(1/2) S_b S_a^(1/2) (PSD).
    eigval, eigvec = torch.linalg.eigh(s_a)
    root_a = eigvec @ torch.diag(eigval.clamp_min(0).sqrt()) @ eigvec.T
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * cross)


def fid(images_a: Tensor, images_b: Tensor, features: nn.Module, batch_size: int = 512) -> float:
    """FID between two image sets (N, C, H, W) in the space of ``features`` (a module
    mapping images to (N, D); Inception pool3 where its weights are at hand, otherwise a
    domain feature net such as :func:`train_classifier`'s ``[:-1]``)."""
    with torch.no_grad():
        fa = torch.cat([features(batch) for batch in images_a.split(batch_size)])
        fb = torch.cat([features(batch) for batch in images_b.split(batch_size)])
    return frechet_distance(fa, fb)


def fidn(counterfactuals: Tensor, anomalies: Tensor, normal: Tensor, features: nn.Module) -> float:
    """FIDN in %: ``100 * FID(counterfactuals, normal) / FID(anomalies, normal)``. 100 means
    the counterfactuals are as far from normal data as the anomalies were."""
    return 100.0 * fid(counterfactuals, normal, features) / fid(anomalies, normal, features)


class _InceptionPool3(nn.Module):
    """Inception-v3 up to its 2048-d average pool, on images in [0, 1] of any size and 1 or
    3 channels (resized to 299 and normalised as for ImageNet)."""

    mean: Tensor
    std: Tensor

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406])[:, None, None])
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225])[:, None, None])

    def forward(self, x: Tensor) -> Tensor:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.net((x - self.mean) / self.std)


def inception_features(weights: Union[str, Path]) -> nn.Module:
    """Inception-v3 pool3 features (N, 2048) for FID, from a local torchvision state dict.

    Nothing is downloaded: ``weights`` is the path of ``inception_v3``'s ImageNet weights
    (the ``.pth`` file torchvision caches), loaded with ``weights_only=True``. Without it,
    use a domain feature net from :func:`train_classifier`, and say so beside the number.
    """
    from torchvision.models import inception_v3

    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"no Inception-v3 weights at {path}; pass torchvision's inception_v3 .pth file, "
            "or use a domain feature net (metrics.train_classifier(...)[:-1])."
        )
    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    net.fc = nn.Identity()
    return _InceptionPool3(net).eval()


# -- oracles for data with known factors --------------------------------------------------
def train_classifier(
    images: Tensor,
    labels: Tensor,
    n_classes: int,
    grayscale: bool = False,
    epochs: int = 8,
    seed: int = 0,
) -> nn.Sequential:
    """A small CNN classifier, for oracles and as a domain feature net for FID.

    Args:
        images: (N, C, H, W) in [0, 1]. labels: (N,) in 0..n_classes-1.
        grayscale: read only the brightest channel (a colour-blind classifier).

    Returns:
        An ``nn.Sequential`` in eval mode, images -> logits (N, n_classes); its ``[:-1]``
        gives the features (N, D).
    """
    size = images.shape[-1]
    channels = 1 if grayscale else images.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = [_Grayscale()] if grayscale else []
        net = nn.Sequential(*layers, feature_net(channels, size), nn.LeakyReLU(0.1))
        net.append(nn.Linear(feature_dim(size), n_classes))
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        for _ in range(epochs):
            net.train()
            for index in torch.randperm(len(images)).split(128):
                loss = F.cross_entropy(net(images[index]), labels[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return net.eval()


def train_digit_oracle(images: Tensor, digits: Tensor, epochs: int = 8, seed: int = 0) -> nn.Module:
    """A colour-blind digit classifier (N, C, H, W) -> logits (N, 10), for oracles."""
    return train_classifier(images, digits, 10, grayscale=True, epochs=epochs, seed=seed)


class _Grayscale(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.amax(1, keepdim=True)


def ink_colors(images: Tensor, palette: Tensor) -> Tensor:
    """The palette index of every pixel's hue, (N, H, W); -1 where there is no ink.

    Each ink pixel's colour, scaled so its brightest channel is 1, is matched to the nearest
    palette entry.
    """
    peak = images.amax(1, keepdim=True)
    hue = images / peak.clamp_min(1e-6)
    distance = ((hue[:, None] - palette[None, :, :, None, None]) ** 2).sum(2)  # (N, P, H, W)
    nearest = distance.argmin(1)
    return torch.where(peak[:, 0] > INK_THRESHOLD, nearest, torch.full_like(nearest, -1))


def digit_factors(
    counterfactuals: Tensor,
    inputs: Tensor,
    digits: Tensor,
    digit_oracle: nn.Module,
    normal_digit: int,
) -> Dict[str, Tensor]:
    """Strict oracles for one-vs-rest digit counterfactuals (MNIST, any colour).

    Args:
        counterfactuals, inputs: (N, C, H, W) in [0, 1]; ink is any channel above 0.3.
        digits: the inputs' true digit (N,).
        digit_oracle: from :func:`train_digit_oracle`.
        normal_digit: the normal class.

    Returns:
        Boolean tensors (N,): ``digit_to_normal`` (the oracle reads the normal digit in an
        image with at least 20 ink pixels: an empty image is no digit), ``digit_kept`` (it
        reads the input's digit) and ``patch`` (at least 10 ink pixels outside the input's
        ink dilated by 2 pixels: a pasted mark, or a new stroke a change of digit may need).
    """
    cf_mask = counterfactuals.amax(1) > INK_THRESHOLD
    with torch.no_grad():
        read = digit_oracle(counterfactuals).argmax(1)
    dilated = _dilated_ink(inputs)
    return {
        "digit_to_normal": (read == normal_digit) & (cf_mask.flatten(1).sum(1) >= 20),
        "digit_kept": read == digits,
        "patch": (cf_mask & ~dilated).flatten(1).sum(1) >= 10,
    }


def _dilated_ink(images: Tensor) -> Tensor:
    """The ink of ``images`` (N, C, H, W) dilated by 2 pixels, as booleans (N, H, W)."""
    ink = images.amax(1, keepdim=True) > INK_THRESHOLD
    return F.max_pool2d(ink.float(), 5, stride=1, padding=2)[:, 0] > 0


def normal_support(normal: Tensor, quantile: float = 0.99) -> Tensor:
    """Where normal images have ink: the ``quantile`` of each pixel's brightest channel over
    ``normal`` (N, C, H, W) in [0, 1], as (H, W)."""
    return torch.quantile(normal.amax(1).flatten(1), quantile, dim=0).view(normal.shape[-2:])


def contrast(images: Tensor) -> Tensor:
    """How much an image shows, per image (N,): the standard deviation over its pixels of each
    pixel's brightest channel, for images (N, C, H, W) in [0, 1]. A faded, dimmed or blanked
    image has little."""
    return images.amax(1).flatten(1).std(1)


def off_support_mass(counterfactuals: Tensor, inputs: Tensor, support: Tensor) -> Tensor:
    """Ink neither the input nor normal images have where it is drawn, per image (N,).

    Args:
        counterfactuals, inputs: (N, C, H, W) in [0, 1]. Pass zeros as ``inputs`` to read
            normal images themselves.
        support: (H, W), from :func:`normal_support`.

    Returns:
        The brightness above the support (brightest channel), summed over the pixels outside
        the input's ink dilated by 2 pixels.
    """
    excess = (counterfactuals.amax(1) - support).clamp_min(0) * ~_dilated_ink(inputs)
    return excess.flatten(1).sum(1)


def off_support_ink(
    counterfactuals: Tensor,
    inputs: Tensor,
    support: Tensor,
    min_mass: float = OFF_SUPPORT_MIN_MASS,
) -> Tensor:
    """Counterfactuals that draw off the normal images' support: (N,) booleans,
    :func:`off_support_mass` at least ``min_mass`` (2.0: e.g. ten pixels at 0.2 above it).

    It flags a pasted mark (a square in a corner, a frame, a dot) and a haze alike: grey ink
    a blurred digit spreads off the support counts too, so look at the pictures to tell them
    apart. Unlike :func:`digit_factors`' ``patch``, a new stroke where normal digits have ink
    does not count.
    """
    return off_support_mass(counterfactuals, inputs, support) >= min_mass


def colored_mnist_factors(
    counterfactuals: Tensor,
    inputs: Tensor,
    digits: Tensor,
    colors: Tensor,
    palette: Tensor,
    digit_oracle: nn.Module,
    normal_color: int = 0,
    normal_digit: int = 1,
) -> Dict[str, Tensor]:
    """Strict oracles for Colored-MNIST counterfactuals (a pasted patch is not a recolouring).

    Args:
        counterfactuals, inputs: (N, 3, 28, 28) in [0, 1].
        digits, colors: the inputs' true digit and palette index (N,).
        palette: (P, 3). digit_oracle: from :func:`train_digit_oracle`.

    Returns:
        Boolean tensors (N,): ``color_to_normal`` (at least 60% of the ink is the normal
        colour and the ink overlaps the input's with IoU >= 0.5), ``color_kept`` (the ink's
        majority colour is the input's), and :func:`digit_factors`' ``digit_to_normal``,
        ``digit_kept`` and ``patch`` (ink of any colour: a channel above 0.3, the threshold
        :func:`ink_colors` uses).
    """
    cf_ink, x_ink = ink_colors(counterfactuals, palette), ink_colors(inputs, palette)
    cf_mask, x_mask = cf_ink >= 0, x_ink >= 0
    n_ink = cf_mask.flatten(1).sum(1)
    share_normal = (cf_ink == normal_color).flatten(1).sum(1) / n_ink.clamp_min(1)
    iou = (cf_mask & x_mask).flatten(1).sum(1) / (cf_mask | x_mask).flatten(1).sum(1).clamp_min(1)
    votes = F.one_hot((cf_ink + 1).flatten(1), len(palette) + 1)[..., 1:].sum(1)  # (N, P)
    majority = torch.where(n_ink > 0, votes.argmax(1), torch.full_like(n_ink, -1))
    return {
        "color_to_normal": (share_normal >= 0.6) & (iou >= 0.5),
        "color_kept": majority == colors,
        **digit_factors(counterfactuals, inputs, digits, digit_oracle, normal_digit),
    }


def disentanglement(factors: Dict[str, Tensor]) -> Dict[str, float]:
    """The oracle table for one concept: shares of counterfactuals that changed what.

    Args:
        factors: the output of :func:`colored_mnist_factors` (or any oracle with the same
            keys, "color" and "digit" read as factor A and factor B).

    Returns:
        ``color_only`` (colour made normal, digit kept), ``digit_only`` (digit made normal,
        colour kept), ``both``, ``neither`` (colour and digit kept: no semantic change),
        ``other`` (the rest, e.g. another digit or colour), and ``patch``.
    """
    color, digit = factors["color_to_normal"], factors["digit_to_normal"]
    kept_c, kept_d = factors["color_kept"] & ~color, factors["digit_kept"] & ~digit
    table = {
        "color_only": color & kept_d,
        "digit_only": digit & kept_c,
        "both": color & digit,
        "neither": kept_c & kept_d,
    }
    table["other"] = ~(table["color_only"] | table["digit_only"] | table["both"] | table["neither"])
    table["patch"] = factors["patch"]
    return {name: float(mask.float().mean()) for name, mask in table.items()}


def concept_accuracy(
    concept_classifier: nn.Module, inputs: Tensor, counterfactuals: Tensor
) -> float:
    """How often R names the concept that made each counterfactual.

    Args:
        concept_classifier: R, (x_a, x_b) -> K logits (the jointly trained one, or any
            post-hoc pair classifier).
        inputs: (N, C, H, W). counterfactuals: (N, K, C, H, W).

    Returns:
        The share of (input, counterfactual k) pairs for which R's largest logit is k.
    """
    k = counterfactuals.shape[1]
    with torch.no_grad():
        hits = [
            (concept_classifier(inputs, counterfactuals[:, c]).argmax(1) == c).float().mean()
            for c in range(k)
        ]
    return float(torch.stack(hits).mean())


def posthoc_concept_accuracy(
    inputs: Tensor,
    counterfactuals: Tensor,
    train_share: float = 0.5,
    epochs: int = 8,
    seed: int = 0,
) -> float:
    """Concept accuracy of an independent pair classifier (DISSECT's post-hoc check).

    A fresh CNN (:func:`train_classifier`) learns to name k from the channel-concatenated
    pair (x, x_k, x_k - x) on the pairs of the first ``train_share`` of the images, and is
    scored on the pairs of the rest, which it never saw. Unlike the jointly trained R it
    cannot have co-adapted with G, so a high score means the concepts differ in a way a new
    observer can learn; 1/K means they cannot be told apart.

    Args:
        inputs: (N, C, H, W). counterfactuals: (N, K, C, H, W).

    Returns:
        The held-out accuracy in [0, 1].
    """
    n, k = counterfactuals.shape[:2]
    n_train = int(round(train_share * n))
    if not 0 < n_train < n:
        raise ValueError(f"train_share={train_share} leaves no images to train or to test on.")

    def pairs(index: slice) -> tuple:
        x = inputs[index, None].expand_as(counterfactuals[index]).flatten(0, 1)
        cf = counterfactuals[index].flatten(0, 1)
        labels = torch.arange(k).repeat(len(cf) // k)
        return torch.cat([x, cf, cf - x], 1), labels

    train_pairs, train_labels = pairs(slice(0, n_train))
    test_pairs, test_labels = pairs(slice(n_train, n))
    classifier = train_classifier(train_pairs, train_labels, k, epochs=epochs, seed=seed)
    with torch.no_grad():
        predicted = torch.cat([classifier(batch).argmax(1) for batch in test_pairs.split(512)])
    return float((predicted == test_labels).float().mean())
