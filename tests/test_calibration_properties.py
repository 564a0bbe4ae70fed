"""Property tests: any finite score distribution maps into [0, 1], monotone, finite gradients."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_cfx import as_detector

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, width=32)


class Lookup:
    """A detector that returns given raw scores, indexed by the first pixel."""

    def __init__(self, scores: torch.Tensor) -> None:
        self.scores = scores

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # Differentiable in x: the score plus 0 * pixel keeps a graph to the input.
        return self.scores + 0.0 * x.flatten(1)[:, 0] + x.flatten(1)[:, 1]


@settings(max_examples=40, deadline=None)
@given(
    normal=st.lists(finite, min_size=3, max_size=20, unique=True),
    probe=st.lists(finite, min_size=2, max_size=20),
    calibration=st.sampled_from(["sigmoid", "exp", "gaussian"]),
)
def test_any_finite_scores_map_into_unit_interval_monotone_with_finite_gradients(
    normal, probe, calibration
):
    normal_t = torch.tensor(normal, dtype=torch.float32)
    if calibration == "exp":
        normal_t = normal_t.abs() + 1.0  # exp is for nonnegative distances
    probe_t = torch.tensor(sorted(probe), dtype=torch.float32)
    x_normal = torch.zeros(len(normal_t), 1, 2, 2)
    detector = as_detector(Lookup(normal_t), normal_data=x_normal, calibration=calibration)
    detector._model.scores = probe_t  # now score the probe values
    x = torch.zeros(len(probe_t), 1, 2, 2, requires_grad=True)
    phi = detector(x)
    assert torch.isfinite(phi).all() and (phi >= 0).all() and (phi <= 1).all()
    assert (phi.diff() >= 0).all()
    phi.sum().backward()
    assert torch.isfinite(x.grad).all()
