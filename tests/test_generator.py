"""The generator's two routes and the concepts restricted to one of them; the discriminator."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from captum_cfx import CounterfactualAnomalyExplainer, GeneratorConfig
from captum_cfx.generative.config import build_networks
from captum_cfx.generative.networks import Discriminator, Generator, extra_levels

TINY_NETS = GeneratorConfig(
    widths=(4, 8, 8), cond_dim=8, disc_width=4, concept_width=4, batch_size=4
)


def _perturbed_generator(mask_bias: float) -> Generator:
    """A 3-channel G with routes (global, local, mixed, shape), a random colour transform and
    the mask pinned near 0 or 1 through its bias."""
    torch.manual_seed(0)
    routes = ("global", "local", "mixed", "shape")
    generator = Generator(3, 4, widths=(4, 8, 8), cond_dim=8, routes=routes)
    nn.init.normal_(generator.to_color[-1].weight, std=0.05)
    nn.init.constant_(generator.to_mask.bias, mask_bias)
    return generator.eval()


def test_a_global_concept_only_transforms_colours_image_wide():
    generator = _perturbed_generator(mask_bias=20.0)  # the local route would take every pixel
    x = torch.rand(2, 3, 16, 16)
    x[:, :, :8] = x[:, :, 8:]  # the top half repeats the bottom half pixel for pixel
    with torch.no_grad():
        out = generator(x, torch.zeros(2), torch.zeros(2, dtype=torch.long))
    assert torch.allclose(out[:, :, :8], out[:, :, 8:])  # a function of each pixel's colour
    assert not torch.allclose(out, x, atol=1e-3)


def test_a_local_concept_keeps_the_colours_where_its_mask_is_off():
    generator = _perturbed_generator(mask_bias=-20.0)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        local = generator(x, torch.zeros(2), torch.ones(2, dtype=torch.long))
        mixed = generator(x, torch.zeros(2), torch.full((2,), 2, dtype=torch.long))
    assert torch.allclose(local, x, atol=1e-6)
    assert not torch.allclose(mixed, x, atol=1e-3)


def test_a_shape_concept_redraws_in_the_inputs_own_colour():
    generator = _perturbed_generator(mask_bias=20.0)  # the local image takes every pixel
    orange = torch.tensor([1.0, 0.5, 0.0])
    x = torch.rand(2, 1, 16, 16) * orange[:, None, None]  # strokes of one colour on black
    with torch.no_grad():
        shape = generator(x, torch.zeros(2), torch.full((2,), 3, dtype=torch.long))
        local = generator(x, torch.zeros(2), torch.ones(2, dtype=torch.long))
    assert not torch.allclose(shape, x, atol=1e-3)  # the strokes were redrawn
    assert torch.allclose(shape[:, 1], 0.5 * shape[:, 0], atol=1e-6)  # still orange
    assert shape[:, 2].abs().max() < 1e-6
    assert (local[:, 2] > 0.1).any()  # a plain local concept may paint any colour


def test_routes_are_checked_by_name_and_count():
    with pytest.raises(ValueError, match="concept_routes"):
        GeneratorConfig(concept_routes=("colour", "local"))
    images = TensorDataset(torch.rand(8, 1, 16, 16))
    explainer = CounterfactualAnomalyExplainer(
        n_concepts=3, config=GeneratorConfig(concept_routes=("global", "local"))
    )
    with pytest.raises(ValueError, match="one per concept"):
        explainer.fit(lambda x: x.mean((1, 2, 3)), DataLoader(images, batch_size=4), steps=1)
    config = GeneratorConfig(concept_routes=("global", "local"))
    assert GeneratorConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_the_discriminator_judges_each_image_with_its_score():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 28, 28)
    discriminator = Discriminator(3, 8)
    as_normal, as_anomalous = discriminator(x, torch.zeros(4)), discriminator(x, torch.ones(4))
    assert as_normal.shape == (4, 64)
    assert (as_normal - as_anomalous).abs().min() > 0  # every patch's verdict uses the score


@pytest.mark.parametrize(
    "size, levels",
    [((16, 16), 0), ((28, 28), 0), ((64, 64), 0), ((65, 80), 1), ((128, 96), 1), ((256, 256), 2)],
)
def test_the_networks_grow_a_level_per_doubling_above_64_pixels(size, levels):
    assert extra_levels(size) == levels
    generator, discriminator, classifier = build_networks(3, 2, TINY_NETS, size)
    assert len(generator.deeper) == len(generator.shallower) == levels
    x = torch.rand(2, 3, *size)
    out = generator(x, torch.zeros(2), torch.tensor([0, 1]))
    assert out.shape == x.shape
    assert discriminator(x, torch.rand(2)).shape[0] == 2
    assert classifier(x, out).shape == (2, 2)
    # D reads the image at stride 1 up to 64 pixels, through one stride-2 layer per doubling
    # above: a 128-pixel step costs it what a 64-pixel one does.
    strides = [m.stride[0] for m in discriminator.net if isinstance(m, nn.Conv2d)]
    assert strides == [1] * (levels == 0) + [2] * (levels + 2) + [1]
    if levels == 0:  # explainers saved before the deeper levels existed load as they were
        assert not any(k.startswith(("deeper", "shallower")) for k in generator.state_dict())


@pytest.mark.parametrize("size", [(4, 16), (300, 300), (128, 512)])
def test_sizes_outside_8_to_256_pixels_are_refused_with_the_supported_range(size):
    with pytest.raises(ValueError, match="8 to 256 pixels a side"):
        extra_levels(size)


def test_a_tiny_explainer_fits_and_explains_128_pixel_rgb_images(tmp_path):
    g = torch.Generator().manual_seed(0)
    normal = 0.1 * torch.rand(24, 3, 128, 128, generator=g)
    anomalous = normal[:4].clone()
    anomalous[:, 0, 40:80, 40:80] = 0.9

    def red_square(x):
        return torch.sigmoid(20 * (nn.functional.avg_pool2d(x[:, :1], 16).amax((1, 2, 3)) - 0.4))

    explainer = CounterfactualAnomalyExplainer(config=TINY_NETS).fit(
        red_square, [normal], outlier_loader=[anomalous], steps=2, progress=False
    )
    assert explainer.counterfactuals(anomalous).shape == (4, 2, 3, 128, 128)
    loaded = CounterfactualAnomalyExplainer.load(explainer.save(tmp_path / "e"))
    torch.testing.assert_close(
        loaded.counterfactual(anomalous), explainer.counterfactual(anomalous, concept=0)
    )
