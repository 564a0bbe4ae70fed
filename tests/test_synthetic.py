"""The procedural two-factor domains: shapes, range, the normal rule, determinism."""

from __future__ import annotations

import pytest
import torch

from captum_cfx.data import DOMAINS, synthetic_domain


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_each_domain_draws_images_by_its_factors(name):
    domain = DOMAINS[name]
    data = synthetic_domain(name, 64, seed=0)
    assert data.images.shape == (64, domain.channels, domain.size, domain.size)
    assert data.images.dtype == torch.float32
    assert float(data.images.min()) >= 0 and float(data.images.max()) <= 1
    assert float(data.images.flatten(1).std(dim=1).min()) > 0  # nothing blank
    a, b = (data.factors[factor] for factor in domain.factors)
    for value, count in zip((a, b), domain.values):
        assert value.shape == (64,) and set(value.tolist()) == set(range(count))
    assert torch.equal(data.targets == 0, (a == 0) | (b == 0))  # normal: either factor at 0
    assert data.meta == {"factors": domain.factors, "values": domain.values}
    again, other = synthetic_domain(name, 64, seed=0), synthetic_domain(name, 64, seed=1)
    assert torch.equal(again.images, data.images) and torch.equal(again.targets, data.targets)
    assert not torch.equal(other.images, data.images)


def test_unknown_domains_and_empty_draws_are_refused():
    with pytest.raises(ValueError, match="unknown domain"):
        synthetic_domain("nope", 4)
    with pytest.raises(ValueError, match="at least 1"):
        synthetic_domain("bar", 0)
