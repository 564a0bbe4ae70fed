"""The HTML report (captum_cfx.report): one self-contained page, read back with html.parser."""

from __future__ import annotations

import base64

import pytest
import torch
from helpers import bright_square_images, parse_page, tiny_fitted_explainer

from captum_cfx import CounterfactualAnomalyExplainer
from captum_cfx.detectors import score_images
from captum_cfx.report import build_report, write_report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def explainer():
    return tiny_fitted_explainer()


@pytest.fixture(scope="module")
def anomalies():
    return torch.cat([bright_square_images(1, True, seed=40 + s) for s in range(3)])


def test_each_image_shows_input_counterfactuals_differences_ig_and_traversals(
    explainer, anomalies, tmp_path
):
    path = write_report(
        tmp_path / "sub" / "report.html",
        explainer,
        anomalies,
        names=["a.png", "b.png", "c.png"],
        traversal_steps=4,
        ig_steps=8,
    )
    page = path.read_text(encoding="utf-8")
    sections = parse_page(page)
    assert sorted(sections) == ["fit-report", "image-0", "image-1", "image-2"]
    phi = explainer.forward_func
    before = score_images(phi, anomalies)
    cfs = explainer.counterfactuals(anomalies)
    after = score_images(phi, cfs.flatten(0, 1)).view(3, 2)
    for i, name in enumerate(["a.png", "b.png", "c.png"]):
        section = sections[f"image-{i}"]
        # input, 2 counterfactuals, 2 difference maps, IntegratedGradients, 2 strips of 4
        assert len(section["images"]) == 1 + 2 + 2 + 1 + 2 * 4
        for src in section["images"]:
            assert src.startswith("data:image/png;base64,")  # inlined: nothing to fetch
            assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
        text = " ".join(section["text"])
        assert text.startswith(name) and "IntegratedGradients" in text
        assert f"input phi {float(before[i]):.3f}" in text
        for k in range(2):
            assert f"concept {k} phi {float(before[i]):.3f} -> {float(after[i, k]):.3f}" in text
            assert f"x - cf (concept {k})" in text
        assert text.count("alpha ") == 2 * 4 and "alpha 0.00" in text
    report = " ".join(sections["fit-report"]["text"])
    assert report.startswith("Fit report")
    for key in ("validity", "normality_auroc", "distinctness", "judged_on", "concepts"):
        assert key in report
    assert f"{explainer.fit_report_['validity']:.4g}" in report
    assert "<script" not in page and "<link" not in page  # nothing but the one file


def test_without_the_detector_or_a_fit_report_the_page_says_so(explainer, anomalies, tmp_path):
    explainer.save(tmp_path / "ex")
    (tmp_path / "ex" / "fit_report.json").unlink()  # as saved before fit reported
    old = CounterfactualAnomalyExplainer.load(tmp_path / "ex")
    assert old.forward_func is None and old.fit_report_ == {}
    sections = parse_page(build_report(old, anomalies[:2], traversal_steps=3))
    assert sorted(sections) == ["fit-report", "image-0", "image-1"]
    for i in range(2):
        text = " ".join(sections[f"image-{i}"]["text"])
        assert len(sections[f"image-{i}"]["images"]) == 1 + 2 + 2 + 2 * 3  # no heatmap
        assert text.startswith(f"image {i}") and "phi" not in text
        assert "IntegratedGradients" not in text
    assert "no fit report" in " ".join(sections["fit-report"]["text"])


def test_max_images_caps_the_sections(explainer, anomalies):
    sections = parse_page(build_report(explainer, anomalies, max_images=1, ig_steps=4))
    assert sorted(sections) == ["fit-report", "image-0"]


def test_flagged_counterfactuals_are_framed_and_named(explainer, anomalies):
    flags = [[["off_support"], []], [[], []], [[], ["not_normal", "adversarial"]]]
    page = build_report(explainer, anomalies, flags=flags, traversal_steps=2, ig_steps=4)
    sections = parse_page(page)
    assert "concept 0 phi" in " ".join(sections["image-0"]["text"])
    assert "FLAGGED: off_support" in " ".join(sections["image-0"]["text"])
    assert "FLAGGED" not in " ".join(sections["image-1"]["text"])
    assert "FLAGGED: not_normal, adversarial" in " ".join(sections["image-2"]["text"])
    assert page.count('class="counterfactual flagged"') == 2
