"""The generator's two routes and the concepts restricted to one of them; the discriminator."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from captum_cfx import CounterfactualAnomalyExplainer, GeneratorConfig
from captum_cfx.generative.networks import Discriminator, Generator


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
