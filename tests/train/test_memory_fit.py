"""A run config's memory plan (train/memory_fit.py): the settings it hands the formula are the run's own (strategy,
world size, GPUs per node, precision, optimizer, checkpointing, micro batch), ``resolve_strategy`` picks fsdp for
``auto`` exactly when DDP does not fit the GPU and FSDP does, and the preflight refuses what does not fit, naming
the smallest change that does, while a plan-only size trains once it fits sharded."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from parcae_runner.config import ConfigError, compose_run_config
from parcae_runner.models.memory import plan_memory
from parcae_runner.models.registry import ARCHITECTURES, build_model
from parcae_runner.train.memory_fit import memory_fit, meta_model, plan_settings, resolve_strategy
from parcae_runner.train.preflight import check_trainable, preflight

# acceptance 5's run: the debug preset's batch (16 = 2 micro-batches of 8, seq 128) on a LLaMA 7B, vocab 2048
LLAMA_7B = ["arch=llama", "size=llama-7b", "cluster=slurm_a100"]
VOCAB = 2048


def cfg_of(*overrides: str):
    return compose_run_config(list(overrides), config_name="pythia-debug")


def test_the_settings_are_the_runs_own():
    cfg = cfg_of(
        "cluster=slurm_h100",
        "cluster.nodes=2",
        "train.strategy=fsdp",
        "train.fsdp.hybrid=true",
        "train.fsdp.reshard_after_forward=false",
        "train.optimizer=muon",
        "train.muon.normuon=false",
        "train.activation_checkpointing=true",
        "train.batch_size=64",
        "train.micro_batch_size=4",
        "data.seq_len=256",
    )
    s = plan_settings(cfg, "fsdp")
    # 2 nodes x 8 GPUs: the world the profile gives; hybrid shards within the node of 8
    assert (s["world_size"], s["gpus_per_node"], s["hybrid"]) == (16, 8, True)
    # on GPUs with train.fsdp.mixed_precision: bf16 gathered parameters and activations, fp32 reduction
    assert (s["param_dtype"], s["reduce_dtype"]) == ("bf16", "fp32")
    assert (s["optimizer"], s["normuon"], s["activation_checkpointing"]) == ("muon", False, True)
    assert (s["micro_batch"], s["seq_len"], s["reshard_after_forward"]) == (4, 256, False)


@pytest.mark.parametrize(
    ("overrides", "compute"),
    [
        (["cluster=local"], "fp32"),  # a CPU run: everything fp32
        (["cluster=slurm_a100"], "bf16"),  # precision auto on a GPU: bf16-mixed
        (["cluster=slurm_a100", "train.precision=32"], "fp32"),
        (["cluster=slurm_a100", "train.precision=16-mixed"], "fp16"),
        (["cluster=slurm_a100", "train.precision=32", "train.strategy=fsdp"], "bf16"),  # FSDP's mixed precision
        (["cluster=slurm_a100", "train.strategy=fsdp", "train.fsdp.mixed_precision=false"], "bf16"),
        (
            ["cluster=slurm_a100", "train.precision=32", "train.strategy=fsdp", "train.fsdp.mixed_precision=false"],
            "fp32",
        ),
    ],
)
def test_the_compute_dtype_follows_device_precision_and_fsdp_mixed_precision(overrides, compute):
    cfg = cfg_of(*overrides)
    strategy = "fsdp" if cfg.train.strategy == "fsdp" else "ddp"
    assert plan_settings(cfg, strategy)["param_dtype"] == compute


def test_bf16_true_stores_the_parameters_in_bf16():
    model = meta_model(cfg_of("cluster=slurm_a100", "train.precision=bf16-true"), VOCAB)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in meta_model(cfg_of("cluster=slurm_a100"), VOCAB).parameters()} == {torch.float32}


def test_the_plan_is_the_formulas_at_those_settings():
    cfg = cfg_of("cluster=slurm_h100", "train.strategy=fsdp", "train.batch_size=64")
    with torch.device("meta"):
        model = build_model({"name": "pythia"}, "debug", VOCAB)
    fit = memory_fit(cfg, VOCAB)
    assert fit.plan == plan_memory(model, **plan_settings(cfg, "fsdp"))
    assert fit.plan.world_size == 8 and fit.plan.shard_group == 8 and fit.fits


def test_explicit_strategies_are_kept_and_auto_is_ddp_without_a_gpu_memory():
    assert resolve_strategy(cfg_of("train.strategy=ddp", *LLAMA_7B)) == "ddp"
    assert resolve_strategy(cfg_of("train.strategy=fsdp")) == "fsdp"
    # no cluster.gpu_memory_gb (a CPU profile): nothing to fit, plain data parallel
    assert resolve_strategy(cfg_of("arch=llama", "size=llama-7b")) == "ddp"


def test_auto_is_fsdp_exactly_when_ddp_does_not_fit_and_fsdp_does():
    assert resolve_strategy(cfg_of("cluster=slurm_a100")) == "ddp"  # a debug model fits one GPU
    # 7B on one 80 GB GPU: neither fits, so auto stays ddp (and the preflight refuses it, below)
    assert resolve_strategy(cfg_of(*LLAMA_7B)) == "ddp"
    two = cfg_of(*LLAMA_7B, "cluster.gpus_per_node=2")
    assert resolve_strategy(two) == "fsdp"
    assert not plan_memory(meta_model(two, VOCAB), **plan_settings(two, "ddp")).fits(80)
    fit = memory_fit(two, VOCAB)
    assert fit.strategy == "fsdp" and fit.fits and fit.ddp_total is not None and fit.ddp_total > 80e9


def test_an_architecture_without_sharding_units_is_never_offered_fsdp(monkeypatch):
    # LLaMA 1.4B at 16 x 2048 tokens on one GPU: FSDP on 5 GPUs fits, and so do a smaller micro batch or checkpointing
    heavy = ["arch=llama", "size=1.4b", "cluster=slurm_a100", "data.seq_len=2048", "train.micro_batch_size=16"]
    changes = [s.change for s in memory_fit(cfg_of(*heavy), VOCAB).suggestions]
    assert changes[0].startswith("train.strategy=fsdp cluster.gpus_per_node=") and len(changes) == 3
    monkeypatch.setitem(ARCHITECTURES, "llama", dataclasses.replace(ARCHITECTURES["llama"], shard_units=()))
    assert [s.change for s in memory_fit(cfg_of(*heavy), VOCAB).suggestions] == changes[1:]
    # a 7B that fits only sharded: auto stays ddp, and nothing that fits is left to name
    two = cfg_of(*LLAMA_7B, "cluster.gpus_per_node=2")
    assert resolve_strategy(two) == "ddp"
    fit = memory_fit(two, VOCAB)
    assert not fit.fits and fit.suggestions == ()
    assert "no change of strategy, GPU or node count, micro batch or activation checkpointing fits" in str(
        fit.refusal()
    )


def test_a_run_that_does_not_fit_is_refused_naming_fsdp_and_the_gpu_count():
    cfg = cfg_of(*LLAMA_7B, "train.strategy=ddp", "data.vocab_size=2048")
    with pytest.raises(ConfigError) as refused:
        preflight(cfg, "job")
    message = str(refused.value)
    assert message.startswith("train.strategy=ddp: the run (6.49B parameters) needs ")
    assert "above cluster.gpu_memory_gb=80; smallest change that fits: " in message
    assert "train.strategy=fsdp cluster.gpus_per_node=2 (" in message and " GB per GPU)" in message
    assert "\n" not in message


def test_a_suggested_gpu_count_names_the_batch_it_needs():
    # one micro-batch of 8 per step: on 2 GPUs the batch must be 16
    fit = memory_fit(cfg_of(*LLAMA_7B, "train.batch_size=8"), VOCAB)
    assert fit.suggestions[0].change == "train.strategy=fsdp cluster.gpus_per_node=2 train.batch_size=16"


def test_a_plan_only_size_trains_under_fsdp_once_it_fits():
    # no GPU memory to fit: plan-only, as before
    with pytest.raises(ConfigError, match="size=llama-7b: plan-only for llama: it trains only with"):
        check_trainable(cfg_of("arch=llama", "size=llama-7b", "train.strategy=fsdp"))
    sharded = cfg_of(*LLAMA_7B, "train.strategy=fsdp", "cluster.gpus_per_node=2", "data.vocab_size=2048")
    checked = preflight(sharded, "job")
    assert checked.trainable and checked.memory is not None and checked.memory.fits
    # and auto picks fsdp by itself on those two GPUs
    assert preflight(cfg_of(*LLAMA_7B, "cluster.gpus_per_node=2", "data.vocab_size=2048"), "job").trainable
