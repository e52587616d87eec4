"""Model cards are written from the run directory alone: the energy, hours and CO2 a card states are
run.json's, its Hub metadata parses, and an exported Hugging Face folder carries it as README.md."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from parcae_runner.analysis.card import num, render_card, write_card
from parcae_runner.config import compose_run_config
from parcae_runner.export.hf import export_hf
from parcae_runner.models import get_architecture
from parcae_runner.train.runner import train

# every test reads a run trained (and metered) once for the module (about 13 s)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def _trained() -> dict[str, Path]:
    return {}


@pytest.fixture
def metered_run(fast_overrides, _trained) -> Path:
    """A finished 10-step debug Pythia with codecarbon on, so energy and CO2 are not zero.

    Trained once for the module (the first test's tmp folder outlives the session); the tests only read it,
    or write card.md, which is theirs to write.
    """
    if "run" not in _trained:
        overrides = [*fast_overrides, "logger.codecarbon=true", "train.max_steps=10", "train.val_batches=2"]
        _trained["run"] = train(compose_run_config(overrides)).path
    return _trained["run"]


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def table_value(card: str, label: str) -> str:
    """The value cell of the two-column table row whose first cell is ``label``."""
    m = re.search(rf"^\| {re.escape(label)} \| (.+?) \|$", card, re.MULTILINE)
    assert m, f"no row {label!r} in the card"
    return m.group(1)


def number_in(cell: str, unit: str) -> float:
    m = re.fullmatch(rf"(\S+) {re.escape(unit)}(?: .*)?", cell)
    assert m, f"{cell!r} is not '<number> {unit}'"
    return float(m.group(1))


def test_card_states_run_json_numbers(metered_run):
    path = write_card(metered_run)
    assert path == metered_run / "card.md"
    assert not list(metered_run.glob(".card.md.*")), "the atomic write left a temp file"
    card = path.read_text()
    run = json.loads((metered_run / "run.json").read_text())
    assert run["status"] == "done" and run["energy_kwh"] > 0 and run["co2_kg"] > 0

    # the Environmental Impact section, parsed back: equal to run.json at the card's 6 significant digits
    energy = number_in(table_value(card, "Energy"), "kWh")
    co2 = number_in(table_value(card, "Carbon emitted"), "kg")
    hours = number_in(table_value(card, "Hours used"), "h")
    assert energy == float(num(run["energy_kwh"])) == pytest.approx(run["energy_kwh"], rel=1e-5)
    assert co2 == float(num(run["co2_kg"])) == pytest.approx(run["co2_kg"], rel=1e-5)
    assert hours == float(num(run["duration_s"] / 3600)) == pytest.approx(run["duration_s"] / 3600, rel=1e-5)
    intensity = number_in(table_value(card, "Grid carbon intensity"), "kg")
    assert intensity == float(num(run["carbon"]["intensity_kg_per_kwh"]))
    assert table_value(card, "Carbon source") == "codecarbon"
    assert table_value(card, "Attempts") == str(run["attempts"])
    assert table_value(card, "Infrastructure").startswith("local machine")  # the cluster profile's text

    # the Hub metadata: exact values (the YAML holds the float itself)
    meta = front_matter(card)
    emissions = meta["co2_eq_emissions"]
    assert emissions["emissions"] == run["co2_kg"] * 1000  # grams, as the Hub wants
    assert emissions["source"] == "codecarbon" and emissions["training_type"] == "pre-training"
    assert emissions["geographical_location"] == run["carbon"]["country"]
    assert run["hardware"]["device_name"] in emissions["hardware_used"]
    assert meta["tags"][:2] == ["pythia", "debug"]
    assert meta["library_name"] == "transformers" and meta["license"] == "apache-2.0"
    [result] = meta["model-index"][0]["results"]
    values = {m["name"]: m["value"] for m in result["metrics"]}
    assert values["Validation loss (final)"] == run["final_val_loss"]
    assert values["Validation loss (best)"] == run["best_val_loss"]
    assert values["Validation bits per byte (final)"] == run["final_val_bpb"]

    # architecture, data and procedure come from the registry, run.json and config.yaml
    for key, value in get_architecture("pythia").sizes["debug"].items():
        assert table_value(card, f"`{key}`") == f"{value:,}"
    assert table_value(card, "Parameters") == f"{run['params']:,}"
    assert table_value(card, "Non-embedding parameters") == f"{run['params_non_embedding']:,}"
    assert table_value(card, "Data hash") == f"`{run['data']['hash']}`"
    assert table_value(card, "Steps") == "10 of 10"
    assert "| Context length | 64 tokens |" in card  # data.seq_len of fast_overrides
    assert "Same data, same order" in card
    assert "AutoModelForCausalLM.from_pretrained" in card and f"parcae-runner export {metered_run}" in card
    assert "@inproceedings{biderman2023pythia" in card


def test_card_without_energy_metering_says_so(metered_run, tmp_path):
    # the same run as if codecarbon had been off: no invented numbers, no co2 metadata for the Hub
    copy = tmp_path / "unmetered" / metered_run.name
    shutil.copytree(metered_run, copy, ignore=shutil.ignore_patterns("checkpoints", "wandb"))
    run = json.loads((copy / "run.json").read_text())
    run.pop("carbon")
    run["energy_kwh"] = run["co2_kg"] = 0.0
    (copy / "run.json").write_text(json.dumps(run))
    card = render_card(copy)
    assert "co2_eq_emissions" not in front_matter(card)
    assert table_value(card, "Energy").startswith("not metered")


def test_hf_export_carries_the_card(metered_run, tmp_path):
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM

    from parcae_runner.runs import RunRecord, load_model

    run = RunRecord.read(metered_run)
    model = load_model(metered_run)
    card = render_card(metered_run)
    out = export_hf(model, tmp_path / "hf", card_text=card)
    assert (out / "README.md").read_text() == card

    # the Hub's own parser reads the metadata, model-index included
    hub = ModelCard.load(out / "README.md")
    assert hub.data.co2_eq_emissions["emissions"] == run["co2_kg"] * 1000
    assert hub.data.eval_results and hub.data.eval_results[0].metric_value == run["final_val_loss"]
    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "gpt_neox"


def test_the_checkpoint_loader_snippet_runs(metered_run):
    # what the card shows for an architecture without a Hugging Face mapping, run as written
    import torch

    from parcae_runner.analysis.card.usage import _with_checkpoint_loader
    from parcae_runner.runs import list_checkpoints

    step = list_checkpoints(metered_run / "checkpoints")[-1][0]
    lines = _with_checkpoint_loader("pythia", metered_run, step)
    code = "\n".join(lines[lines.index("```python") + 1 : lines.index("```", lines.index("```python"))])
    scope = {"input_ids": torch.zeros(1, 4, dtype=torch.long)}
    exec(code, scope)
    assert scope["logits"].shape[:2] == (1, 4) and not scope["model"].training
