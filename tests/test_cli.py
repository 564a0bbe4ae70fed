"""The command line: --help everywhere, and the demo end to end on a tiny configuration."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from helpers import DarkIsNormal, bright_square_images, parse_page, write_folder
from matplotlib.image import imread
from torchvision.utils import save_image

from captum_cfx import CounterfactualAnomalyExplainer, cli
from captum_cfx.cli import main


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"]])
def test_help_works(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "usage: captum-cfx" in capsys.readouterr().out


def test_python_dash_m_runs_the_same_command():
    result = subprocess.run(
        [sys.executable, "-m", "captum_cfx", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("captum-cfx ")


def test_the_demo_writes_figures_metrics_and_a_loadable_explainer(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "3", "--detector-epochs", "1"]) == 0
    assert "normality AuROC" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "detector_auroc",
        "normality_auroc",
        "validity_flagged",
        "proximity_flagged",
        "concept_accuracy",
    ):
        assert 0.0 <= metrics[key] <= 1.0
    figure = imread(out / "explanations.png")
    assert figure.ndim == 3 and figure.shape[1] > figure.shape[0]  # rows of 8 panels are wide
    for k in range(2):
        assert imread(out / f"traversal_concept{k}.png").ndim == 3
    explainer = CounterfactualAnomalyExplainer.load(out / "explainer")
    assert explainer.n_concepts_ == 2 and explainer.input_shape_ == (3, 28, 28)
    # A second run reuses what is there: no new training, the same explainer.
    mtime = (out / "explainer" / "weights.pt").stat().st_mtime
    assert main(["demo", "--out", str(out), "--steps", "3", "--detector-epochs", "1"]) == 0
    assert (out / "explainer" / "weights.pt").stat().st_mtime == mtime
    # explain finds the demo's detector by the explainer's cli.json: phi, IG, the report.
    images = write_folder(tmp_path / "images", torch.rand(2, 3, 28, 28))
    argv = ["explain", "--explainer", str(out / "explainer"), "--images", str(images)]
    report = tmp_path / "report.html"
    assert main([*argv, "--out", str(tmp_path / "explained"), "--report", str(report)]) == 0
    scores = json.loads((tmp_path / "explained" / "scores.json").read_text())
    assert sorted(scores) == ["img00.png", "img01.png"]
    sections = parse_page(report.read_text(encoding="utf-8"))
    assert [len(sections[f"image-{i}"]["images"]) for i in range(2)] == [18, 18]
    assert "IntegratedGradients" in " ".join(sections["image-1"]["text"])


def test_fit_then_explain_on_your_own_torchscript_detector(tmp_path, capsys):
    detector = tmp_path / "detector.pt"
    torch.jit.save(torch.jit.script(DarkIsNormal()), str(detector))
    normal = write_folder(tmp_path / "normal", bright_square_images(16, False, seed=1))
    anomalies = write_folder(tmp_path / "anomalies", bright_square_images(3, True, seed=2))
    assert (
        main(
            [
                "fit",
                "--detector",
                str(detector),
                "--normal",
                str(normal),
                "--out",
                str(tmp_path / "ex"),
                "--steps",
                "2",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "explain",
                "--explainer",
                str(tmp_path / "ex"),
                "--images",
                str(anomalies),
                "--out",
                str(tmp_path / "out"),
                "--report",
                str(tmp_path / "report.html"),
            ]
        )
        == 0
    )
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert sorted(scores) == ["img00.png", "img01.png", "img02.png"]
    assert len(scores["img00.png"]["counterfactuals"]) == 2 and scores["img00.png"]["input"] > 0.9
    assert imread(tmp_path / "out" / "img02_concept1.png").shape[:2] == (16, 16)
    assert imread(tmp_path / "out" / "counterfactuals.png").ndim == 3
    # The report: per image the input, 2 counterfactuals, 2 differences, IG, 2 strips of 6.
    sections = parse_page((tmp_path / "report.html").read_text(encoding="utf-8"))
    assert sorted(sections) == ["fit-report", "image-0", "image-1", "image-2"]
    for i, name in enumerate(sorted(scores)):
        text = " ".join(sections[f"image-{i}"]["text"])
        assert len(sections[f"image-{i}"]["images"]) == 18 and text.startswith(name)
        input_score = scores[name]["input"]
        for k, cf_score in enumerate(scores[name]["counterfactuals"]):
            assert f"concept {k} phi {input_score:.3f} -> {cf_score:.3f}" in text
            # The diagnosis: flags named per concept, in scores.json and on the page.
            raised = scores[name]["flags"][k]
            assert ("not_normal" in raised) == (cf_score >= 0.5)
            assert (f"FLAGGED: {', '.join(raised)}" in text) == bool(raised)
        for key in ("l1", "l2", "off_support_mass", "nearest_normal"):
            assert len(scores[name][key]) == 2
    assert "validity" in " ".join(sections["fit-report"]["text"])


def test_fit_accepts_an_importable_module_attr(tmp_path, monkeypatch):
    (tmp_path / "my_detectors.py").write_text(
        "import torch\nclass Bright(torch.nn.Module):\n"
        "    def forward(self, x):\n        return torch.sigmoid(20 * (x.amax((1, 2, 3)) - 0.5))\n"
    )
    monkeypatch.chdir(tmp_path)
    normal = write_folder(tmp_path / "normal", bright_square_images(8, False, seed=1))
    assert (
        main(
            [
                "fit",
                "--detector",
                "my_detectors:Bright",
                "--normal",
                str(normal),
                "--out",
                "ex",
                "--steps",
                "1",
            ]
        )
        == 0
    )


def test_fit_and_explain_errors_are_clear(tmp_path, capsys):
    good = write_folder(tmp_path / "good", bright_square_images(4, False))
    mixed = write_folder(tmp_path / "mixed", bright_square_images(2, False))
    save_image(torch.rand(1, 20, 20), mixed / "big.png")
    broken = write_folder(tmp_path / "broken", bright_square_images(1, False))
    (broken / "bad.png").write_bytes(b"not a png")
    (tmp_path / "notscript.pt").write_bytes(b"garbage")
    cases = [
        (
            [
                "fit",
                "--detector",
                str(tmp_path / "missing.pt"),
                "--normal",
                str(good),
                "--out",
                "x",
            ],
            "neither a file",
        ),
        (
            [
                "fit",
                "--detector",
                str(tmp_path / "notscript.pt"),
                "--normal",
                str(good),
                "--out",
                "x",
            ],
            "TorchScript",
        ),
        (
            ["fit", "--detector", "no_such_module:X", "--normal", str(good), "--out", "x"],
            "cannot import",
        ),
        (
            [
                "explain",
                "--explainer",
                str(tmp_path / "nothing"),
                "--images",
                str(good),
                "--out",
                "x",
            ],
            "missing",
        ),
    ]
    detector = tmp_path / "detector.pt"
    torch.jit.save(torch.jit.script(DarkIsNormal()), str(detector))
    cases += [
        (
            ["fit", "--detector", str(detector), "--normal", str(mixed), "--out", "x"],
            "differ in size",
        ),
        (
            ["fit", "--detector", str(detector), "--normal", str(broken), "--out", "x"],
            "cannot read the image",
        ),
        (
            ["fit", "--detector", str(detector), "--normal", str(tmp_path / "none"), "--out", "x"],
            "does not exist",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        assert message in capsys.readouterr().err


def test_explain_reads_writes_and_scores_the_folder_batch_by_batch(tmp_path, monkeypatch):
    detector = tmp_path / "detector.pt"
    torch.jit.save(torch.jit.script(DarkIsNormal()), str(detector))
    normal = write_folder(tmp_path / "normal", bright_square_images(16, False, seed=1))
    anomalies = write_folder(tmp_path / "anomalies", bright_square_images(5, True, seed=2))
    fit = ["fit", "--detector", str(detector), "--normal", str(normal), "--steps", "2"]
    assert main([*fit, "--out", str(tmp_path / "ex")]) == 0
    explain = ["explain", "--explainer", str(tmp_path / "ex"), "--images", str(anomalies)]
    assert main([*explain, "--out", str(tmp_path / "at_once")]) == 0
    monkeypatch.setattr(cli, "EXPLAIN_BATCH", 2)
    assert main([*explain, "--out", str(tmp_path / "in_twos")]) == 0
    at_once, batched = (
        json.loads((tmp_path / out / "scores.json").read_text()) for out in ("at_once", "in_twos")
    )
    assert sorted(batched) == [f"img{i:02d}.png" for i in range(5)]
    for name, entry in at_once.items():  # the same, up to a batch size's float rounding
        assert batched[name]["flags"] == entry["flags"]
        for key, value in entry.items():
            if key != "flags":
                assert batched[name][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert (tmp_path / "in_twos" / "img04_concept1.png").is_file()
