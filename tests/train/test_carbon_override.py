"""cluster.carbon_intensity_kg_per_kwh replaces codecarbon's country figure: the run's CO2 is its metered energy
times that figure, and run.json and the model card name the figure and its source."""

from __future__ import annotations

import json

import pytest

from parcae_runner.analysis.card import render_card
from parcae_runner.config import compose_run_config
from parcae_runner.config.hardware import carbon_intensity_kg_per_kwh
from parcae_runner.train.runner import train

FIGURE = 0.0231  # the Parc card's data-centre figure
SOURCE = "Parc model card, the training data centre grid"


def test_override_prices_the_metered_energy(fast_overrides):
    overrides = [
        *fast_overrides,
        "logger.codecarbon=true",
        "logger.measure_power_secs=1",
        "train.max_steps=6",
        "train.val_batches=1",
        f"cluster.carbon_intensity_kg_per_kwh={FIGURE}",
        f"cluster.carbon_intensity_source='{SOURCE}'",
    ]
    run_dir = train(compose_run_config(overrides))
    run = json.loads((run_dir.path / "run.json").read_text())
    assert run["status"] == "done" and run["energy_kwh"] > 0
    # far from the USA mix codecarbon would use (~0.38), so the override is what priced it
    assert abs(carbon_intensity_kg_per_kwh("USA") - FIGURE) > 0.1
    assert run["co2_kg"] == pytest.approx(run["energy_kwh"] * FIGURE, rel=1e-9)
    for attempt in run["attempt_history"]:
        assert attempt["co2_kg"] == pytest.approx(attempt["energy_kwh"] * FIGURE, rel=1e-9)
    assert run["carbon"]["intensity_kg_per_kwh"] == FIGURE
    assert run["carbon"]["intensity_source"] == SOURCE
    card = render_card(run_dir.path)
    assert f"| Grid carbon intensity | {FIGURE:g} kg CO2eq/kWh |" in card
    assert f"| Carbon intensity source | {SOURCE} |" in card


def test_without_override_codecarbon_figure_is_named(fast_overrides):
    overrides = [*fast_overrides, "logger.codecarbon=true", "train.max_steps=2", "train.val_batches=1"]
    run_dir = train(compose_run_config(overrides))
    run = json.loads((run_dir.path / "run.json").read_text())
    assert run["carbon"]["intensity_source"].startswith("codecarbon's")
    assert "codecarbon's" in render_card(run_dir.path)
