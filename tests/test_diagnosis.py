"""Diagnosing single explanations: the reference of normal images and the five flags."""

import pytest
import torch

from captum_cfx.diagnosis import NormalReference, diagnose
from captum_cfx.fit_report import failures
from captum_cfx.metrics import OFF_SUPPORT_MIN_MASS


def centred_squares(n: int, seed: int) -> torch.Tensor:
    """Normal images: dark noise with a bright 6x6 square near the centre (1, 16, 16)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.05 * torch.rand(n, 1, 16, 16, generator=g)
    for image, (r, c) in zip(x, torch.randint(4, 7, (n, 2), generator=g).tolist()):
        image[:, r : r + 6, c : c + 6] = 0.9
    return x


@pytest.fixture(scope="module")
def reference():
    return NormalReference.from_images(centred_squares(200, 0), centred_squares(50, 1), seed=0)


def test_the_reference_sets_its_limit_on_held_out_normal_images_and_round_trips(reference):
    assert reference.support.shape == (16, 16) and reference.features.shape == (200, 64)
    assert float(reference.off_support_limit) >= OFF_SUPPORT_MIN_MASS
    again = NormalReference.from_state_dict(reference.state_dict())
    assert torch.equal(again.features, reference.features)
    # A normal image is at distance zero from the reference it is part of.
    assert float(reference.nearest_distance(centred_squares(200, 0)[:3]).max()) < 1e-6


def test_each_flag_marks_its_failure_and_a_true_fix_passes(reference):
    anomaly = centred_squares(4, 2)
    anomaly[:, :, 5:11, 5:11] = 0.05  # the square gone: far from every normal image
    fixed = centred_squares(4, 3)  # a normal image: the fix a person would draw
    marked = fixed.clone()
    marked[:, :, 0:4, 12:16] = 1.0  # a bright corner no normal image has
    untouched = anomaly + 0.001  # phi moved, the image did not
    cfs = torch.stack([fixed, marked, untouched, fixed], 1)  # (4, K=4, 1, 16, 16)
    before = torch.full((4,), 0.9)
    after = torch.tensor([0.1, 0.1, 0.1, 0.8]).expand(4, -1)
    report = diagnose(anomaly, cfs, before, after, reference)
    assert report["flagged"].shape == (4, 4)
    assert not report["off_support"][:, 0].any() and not report["adversarial"][:, 0].any()
    assert report["off_support"][:, 1].all() and not report["off_support"][:, 2].any()
    assert report["adversarial"][:, 2].all() and not report["adversarial"][:, 1].any()
    assert report["not_normal"][:, 3].all() and not report["not_normal"][:, :3].any()
    # Concepts 0 and 3 made the same edit.
    assert report["same_as_other_concept"][:, [0, 3]].all()
    assert not report["same_as_other_concept"][:, [1, 2]].any()
    assert (report["l1"][:, 2] < 0.01).all() and (report["l2"] >= report["l1"] - 1e-6).all()
    # Aimed at an anomalous score, reaching phi >= 0.5 is no failure.
    aimed_high = diagnose(anomaly, cfs, before, after, reference, target_score=0.9)
    assert not aimed_high["not_normal"].any() and not aimed_high["adversarial"].any()


def test_fit_warns_when_most_of_a_concepts_counterfactuals_are_shortcuts():
    concept = {"validity": 1.0, "off_support": 0.8, "adversarial": 0.0}
    report = {
        "n_judged": 50,
        "validity": 1.0,
        "distinctness": 0.5,
        "false_alarms": 0.0,
        "judged_on": "unseen corruptions",
        "concepts": [dict(concept), {**concept, "off_support": 0.1}],
    }
    (problem,) = failures(report)
    assert "no normal image has ink (concept 0: 80%)" in problem and "shortcut" in problem
    report["concepts"][1]["adversarial"] = 0.6
    assert any("no closer to any normal image" in p for p in failures(report))
    report["concepts"][0]["faded"] = 0.7
    assert any("fade the image" in p and "concept 0: 70%" in p for p in failures(report))


def test_a_counterfactual_that_dims_the_image_is_faded_and_a_fainter_normal_one_is_not(reference):
    anomaly = centred_squares(4, 2)
    anomaly[:, :, 0:4, 0:4] = 0.9  # a second square: the anomaly
    dimmed = 0.2 * anomaly  # phi may accept it; no normal image is this faint
    fixed = centred_squares(4, 3)
    cfs = torch.stack([fixed, dimmed], 1)
    report = diagnose(anomaly, cfs, torch.full((4,), 0.9), torch.full((4, 2), 0.1), reference)
    assert report["faded"][:, 1].all() and not report["faded"][:, 0].any()
    assert (report["contrast"][:, 1] < reference.faint_limit).all()
    # The normal images set the limit: all but about 1% of them show more.
    shown = centred_squares(100, 4).amax(1).flatten(1).std(1)
    assert float((shown < reference.faint_limit).float().mean()) <= 0.05
    # An input already that faint is not faded by a counterfactual that keeps it so.
    kept = diagnose(
        dimmed, dimmed[:, None] + 0.001, torch.full((4,), 0.9), torch.full((4, 1), 0.1), reference
    )
    assert not kept["faded"].any()


def test_a_reference_saved_before_the_faint_limit_loads_without_the_faded_flag(reference):
    state = {k: v for k, v in reference.state_dict().items() if k != "faint_limit"}
    old = NormalReference.from_state_dict(state)
    anomaly = centred_squares(2, 2)
    report = diagnose(
        anomaly, 0.1 * anomaly[:, None], torch.full((2,), 0.9), torch.full((2, 1), 0.1), old
    )
    assert not report["faded"].any()
