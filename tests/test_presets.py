"""Presets: named recipes that carry the metrics and command of the table cells they reached."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from helpers import DarkIsNormal, bright_square_images, write_folder

from captum_cfx import CounterfactualAnomalyExplainer, GeneratorConfig, Preset
from captum_cfx.cli import main

TABLE = Path(__file__).parents[1] / "benchmarks" / "results" / "paper_tables.json"
DATA_SETS = {"MNIST": "mnist", "COLORED": "colored_mnist"}


@pytest.mark.parametrize("preset", list(Preset))
def test_a_preset_is_the_default_recipe_but_for_its_overrides(preset):
    config, default = preset.config, GeneratorConfig()
    changed = {
        f.name
        for f in fields(GeneratorConfig)
        if getattr(config, f.name) != getattr(default, f.name)
    }
    assert changed == set(preset.recipe.overrides) and changed
    for name, value in preset.recipe.overrides.items():
        assert getattr(config, name) == value


@pytest.mark.parametrize("preset", list(Preset))
def test_a_presets_metrics_are_the_table_rows_it_names(preset):
    rows = json.loads(TABLE.read_text())
    data_set = DATA_SETS[preset.name.split("_")[0]]
    for detector, metrics in preset.recipe.metrics.items():
        (row,) = [r for r in rows if (r["dataset"], r["detector"]) == (data_set, detector)]
        assert row["n_runs"] == preset.recipe.runs
        # The row was fitted with the preset: every field it recorded that the library still
        # has is the preset's (the others are switches since built in or retired).
        recorded = {name: row["config"][name] for name in preset.config.to_dict()}
        assert GeneratorConfig.from_dict(recorded) == preset.config
        assert metrics["normality_auroc"] == pytest.approx(
            100 * row["normality_auroc"][0], abs=0.05
        )
        assert metrics["validity"] == pytest.approx(100 * row["validity"][0], abs=0.05)
        assert metrics["fidn"] == pytest.approx(row["fidn"][0], abs=0.05)
        assert detector in preset.recipe.command


def test_a_preset_is_found_by_name_in_any_case_and_a_wrong_name_lists_them():
    assert Preset.from_name("colored_mnist") is Preset.COLORED_MNIST
    assert Preset.from_name("Mnist_Flat_Detector") is Preset.MNIST_FLAT_DETECTOR
    with pytest.raises(ValueError, match="colored_mnist_dsvdd"):
        Preset.from_name("cifar10")


def test_the_cli_fits_with_a_preset_and_saves_its_recipe(tmp_path):
    detector = tmp_path / "detector.pt"
    torch.jit.save(torch.jit.script(DarkIsNormal()), str(detector))
    normal = write_folder(tmp_path / "normal", bright_square_images(16, False, seed=1))
    fit = ["fit", "--detector", str(detector), "--normal", str(normal), "--steps", "2"]
    assert main([*fit, "--out", str(tmp_path / "ex"), "--preset", "colored_mnist_dsvdd"]) == 0
    loaded = CounterfactualAnomalyExplainer.load(tmp_path / "ex")
    assert loaded.config_ == Preset.COLORED_MNIST_DSVDD.config
    assert loaded.config_ != GeneratorConfig()
    with pytest.raises(SystemExit):  # argparse names the choices
        main([*fit, "--out", str(tmp_path / "bad"), "--preset", "no_such_preset"])
