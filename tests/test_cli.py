"""The command line: --help everywhere, and the demo end to end on a tiny configuration."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from matplotlib.image import imread

from captum_cfx import CounterfactualAnomalyExplainer
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
