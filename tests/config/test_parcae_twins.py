"""Each Parcae preset and its GPT twin are one experiment: the looped model against its non-looped baseline, trained
alike. The pair shares one recipe (``launch_configs/recipe/parcae-<size>.yaml``), so their composed configs may differ
in the architecture alone, and the hyperparameters both architectures have (the blocks parcae_baseline shares with
parcae: norm eps, RoPE base, MLP width, value embeddings, tied head) must agree. An edit that lets the twins drift
fails here."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from parcae_runner.config import compose_run_config, config_dir

SIZES = ("small-140m", "medium-370m", "large-770m", "xlarge-1_3b")


def _composed(preset: str) -> dict:
    return OmegaConf.to_container(compose_run_config([], config_name=preset))


def test_every_parcae_and_gpt_preset_has_its_twin_and_every_size_recipe_its_presets():
    presets = {p.stem for p in config_dir().glob("*.yaml")}
    paired = {f"{family}-{size}" for family in ("parcae", "gpt") for size in SIZES}
    assert {p for p in presets if p.startswith(("parcae-", "gpt-"))} == paired
    # recipe/parcae.yaml is what every size's recipe builds on; a size recipe no preset names would go untested
    recipes = {p.stem for p in (config_dir() / "recipe").glob("parcae*.yaml")}
    assert recipes == {"parcae"} | {f"parcae-{size}" for size in SIZES}


@pytest.mark.parametrize("size", SIZES)
def test_twins_differ_in_the_architecture_alone(size):
    looped, baseline = _composed(f"parcae-{size}"), _composed(f"gpt-{size}")
    looped_arch, baseline_arch = looped.pop("arch"), baseline.pop("arch")
    assert (looped_arch["name"], baseline_arch["name"]) == ("parcae", "parcae_baseline")
    assert looped == baseline
    shared = (set(looped_arch) & set(baseline_arch)) - {"name"}
    assert shared, "the two architectures no longer share a hyperparameter: check the schemas"
    assert {k: looped_arch[k] for k in shared} == {k: baseline_arch[k] for k in shared}
