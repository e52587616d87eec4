"""The Parc presets are the Parc recipe, and `plan` prices a Parc run the way the Parc card reports it."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from parcae_runner.config.compose import compose_run_config
from parcae_runner.data.budget import Availability
from parcae_runner.launch.plan import estimate, format_plan, throughput_assumption
from parcae_runner.launch.sweep_file import Point, Sweep
from parcae_runner.train.preflight import validate

# The Parc recipe. Sources: the Parc model cards (jmichaelov/parc-{pythia,mamba,rwkv}-seed*) and paper
# (Michaelov, Levy & Bergen, "Language Model Behavioral Phases are Consistent Across Architecture, Training Data,
# and Scale", NeurIPS 2025); their training script jmichaelov/lm-behavioral-phases train_models/train_model.py.
PARC_CARD = {
    "data.seq_len": 1024,  # context 1,024
    "train.batch_size": 512,  # effective batch 512
    "train.max_steps": 4000,
    "train.warmup_steps": 100,
    "train.weight_decay": 0.1,
    "train.lr": 6e-4,
    "train.schedule": "cosine",
    "train.precision": "32",  # fp32
    "data.dataset": "Skylion007/openwebtext",
    "data.tokenizer": "EleutherAI/gpt-neox-20b",
    "train.checkpoint.every": 10,  # save_steps 10
    "cluster.carbon_intensity_kg_per_kwh": 0.0231,  # the card's data-centre grid figure
}
# Where the card is silent: transformers.TrainingArguments' defaults, since Parc trained with a plain HF Trainer
HF_TRAINER_DEFAULTS = {
    "train.optimizer": "adamw",  # optim adamw_torch
    "train.beta1": 0.9,  # adam_beta1
    "train.beta2": 0.999,  # adam_beta2
    "train.eps": 1e-8,  # adam_epsilon
    "train.grad_clip": 1.0,  # max_grad_norm
    "train.min_lr": 0.0,  # get_cosine_schedule_with_warmup decays to 0
}
PRESETS = {"parc": "pythia", "parc-pythia": "pythia", "parc-mamba": "mamba", "parc-rwkv": "rwkv4"}
# Parc card: about 42 A100-hours per run (31 A100-days for its 18 runs)
CARD_A100_HOURS = 42.0
# OpenWebText in GPT-NeoX-20B tokens (~9B; the data side has its own tests): enough for one pass of 2.1B
OWT = Availability(tokens=9_000_000_000, model_vocab_size=50304, estimate=True, description="OpenWebText")


@pytest.mark.parametrize("preset", PRESETS)
def test_parc_preset_equals_the_card(preset):
    cfg = compose_run_config([], config_name=preset)
    assert cfg.arch.name == PRESETS[preset] and cfg.size.name == "parc"
    for key, want in {**PARC_CARD, **HF_TRAINER_DEFAULTS}.items():
        got = OmegaConf.select(cfg, key)
        assert got == pytest.approx(want) if isinstance(want, float) else got == want, (preset, key, got, want)
    # 512 sequences per update whatever the micro batch
    assert cfg.train.batch_size % cfg.train.micro_batch_size == 0
    assert cfg.cluster.carbon_intensity_source and "Parc" in cfg.cluster.carbon_intensity_source


@pytest.mark.parametrize("preset", ["parc-pythia", "parc-mamba", "parc-rwkv"])
def test_parc_plan_on_a100_is_the_cards_a100_hours(preset):
    cfg = compose_run_config(["cluster=slurm_a100"], config_name=preset)
    cfg.run_name = preset
    validate(cfg)
    run = estimate(Point(preset, []), cfg, OWT)
    assert run.tokens == 4000 * 512 * 1024
    assert abs(run.gpu_hours / CARD_A100_HOURS - 1) <= 0.30, run.gpu_hours
    # the card's grid figure prices the carbon, and the plan says so
    assert run.co2_kg == pytest.approx(run.kwh * 0.0231)
    peak, mfu, what = throughput_assumption(cfg)
    assert peak == 19.5e12 and what.startswith("fp32")


def test_plan_names_the_precision_and_the_carbon_figure():
    cfg = compose_run_config(["cluster=slurm_a100"], config_name="parc-pythia")
    cfg.run_name = "p"
    run = estimate(Point("p", []), cfg, OWT)
    sweep = Sweep("parc", Path("launch_configs/parc-pythia.yaml"), "parc-pythia", {}, {}, "")
    text = format_plan(sweep, [run])
    assert "fp32" in text and "19.5 TFLOP/s" in text and "0.0231 kg CO2/kWh" in text and "Parc model card" in text
    # bf16 on the same GPU: the tensor-core peak and its own measured utilisation
    cfg.train.precision = "bf16-mixed"
    peak, mfu, what = throughput_assumption(cfg)
    assert (peak, what.split(",")[0]) == (312e12, "bf16") and 0 < mfu < 1
    cfg.train.precision, cfg.train.tf32 = "32", True
    assert throughput_assumption(cfg)[0] == 156e12
    # an explicit cluster.mfu wins over the table
    cfg.cluster.mfu = 0.2
    assert throughput_assumption(cfg)[1] == 0.2
