"""The memory plan against the real tensors: parameter, gradient and optimizer bytes per rank at 1 rank (every
architecture, two sizes, both optimizers) and at 2 ranks under real FSDP2 ``fully_shard`` (gloo on CPU); the
activation estimate against what autograd saves; and the LLaMA-7B decision on an 80 GB GPU."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from parcae_runner.models import ARCHITECTURES
from parcae_runner.models.memory import (
    plan_memory,
    shard_numel,
    shard_units,
    smallest_change_that_fits,
)
from parcae_runner.models.registry import build_model, count_parameters

BENCH = str(Path(__file__).resolve().parents[2] / "bench")


@contextlib.contextmanager
def bench_on_path() -> Iterator[None]:
    """bench/ importable for a while: left on sys.path, its kernels.py would pass for the `kernels` package that
    transformers looks for (and then fails to import from) in every later test."""
    sys.path.insert(0, BENCH)
    try:
        yield
    finally:
        sys.path.remove(BENCH)


# bench/fsdp_memory.py holds the measuring (one step, then the bytes of every local tensor), shared with the benchmark
with bench_on_path():
    import fsdp_memory as measure

VOCAB = measure.VOCAB
# the second size each architecture is tested at: its smallest named size up to this many parameters, else the
# debug size twice as wide (Parcae's smallest named size is 140M)
SECOND_SIZE_MAX_PARAMS = 40_000_000


def second_size(arch: str) -> str | dict:
    spec = ARCHITECTURES[arch]
    with torch.device("meta"):
        counts = {
            size: count_parameters(build_model({"name": arch}, size, VOCAB))
            for size in spec.sizes
            if size != "debug" and size not in spec.plan_only
        }
    size = min(counts, key=counts.get)
    if counts[size] <= SECOND_SIZE_MAX_PARAMS:
        return size
    return {"name": "debug", "d_model": 2 * spec.sizes["debug"]["d_model"]}


def meta_model(arch: str, size: str | dict, vocab: int = VOCAB):
    with torch.device("meta"):
        return build_model(measure.arch_config(arch), size, vocab)


def state_figures(plan) -> dict[str, int]:
    return {"params": plan.params, "grads": plan.grads, "optimizer": plan.optimizer}


# the second sizes build and step models of ~14M parameters: a few seconds each, so `slow`
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
@pytest.mark.parametrize("size_kind", ["debug", pytest.param("second", marks=pytest.mark.slow)])
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_one_rank_bytes_are_the_real_tensors(arch, size_kind, optimizer):
    size = "debug" if size_kind == "debug" else second_size(arch)
    torch.manual_seed(0)
    model = build_model(measure.arch_config(arch), size, VOCAB)
    real = measure.tensor_bytes(model, measure.step_once(model, optimizer))
    cfg = measure.train_config(optimizer)
    plan = plan_memory(
        meta_model(arch, size),
        micro_batch=2,
        seq_len=measure.SEQ_LEN,
        optimizer=optimizer,
        normuon=cfg.muon.normuon,
        no_decay=list(cfg.no_decay),
    )
    assert state_figures(plan) == real


# Two processes (torch.multiprocessing spawn, gloo), so `multiprocess` (left out by `make test-quick`): about 20 s,
# most of it two interpreters importing torch. The same measurement writes bench/results/fsdp_memory-*.json.
TWO_RANK_ARCHS = sorted(ARCHITECTURES)


@pytest.fixture(scope="module")
def two_ranks() -> list[dict[str, dict[str, int]]]:
    # the spawned ranks import fsdp_memory by name, from the sys.path they inherit
    with bench_on_path():
        return measure.measure_two_ranks([(arch, "debug") for arch in TWO_RANK_ARCHS])


@pytest.mark.multiprocess
@pytest.mark.parametrize("arch", TWO_RANK_ARCHS)
def test_two_rank_fsdp_shards_are_the_plans(arch, two_ranks):
    plan = state_figures(
        plan_memory(meta_model(arch, "debug"), micro_batch=2, seq_len=16, strategy="fsdp", world_size=2)
    )
    rank0, rank1 = (rank[f"{arch}/debug"] for rank in two_ranks)
    # rank 0 holds ceil(dim0 / 2) rows of every parameter: the per-rank figure the plan promises
    assert {k: rank0[k] for k in plan} == plan
    # the last rank's unpadded view may be shorter, but FSDP allocates every rank's shard padded
    assert all(rank1[k] <= plan[k] for k in plan)
    assert rank0["params_padded"] == rank1["params_padded"] == plan["params"]
    one = measure.measure_one_rank(arch, "debug")
    assert sum(rank0[k] for k in plan) <= measure.RATIO_GOAL * sum(one.values())


# The formula assumes the kernels a GPU runs: fused attention (PyTorch SDPA) and the fused Triton scans, which the
# tests run through Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1). The reference scans save every
# step's state instead (Mamba's reference saves about 4x the estimate).
@pytest.mark.parametrize(
    "arch, config, batch, seq_len",
    [
        ("pythia", {}, 4, 256),
        ("llama", {}, 4, 256),
        ("mamba", {"kernel_impl": "triton"}, 1, 64),
        # the core's blocks keep activations for each of the last mean_backprop_depth iterations
        ("parcae", {}, 4, 256),
    ],
)
def test_activation_estimate_is_within_25_percent(arch, config, batch, seq_len):
    torch.manual_seed(0)
    model = build_model({"name": arch, **config}, "debug", VOCAB)
    measured = measure.saved_activation_bytes(model, batch, seq_len, VOCAB)
    plan = plan_memory(meta_model(arch, "debug"), micro_batch=batch, seq_len=seq_len)
    params = sum(p.nbytes for p in model.parameters())
    # the micro batch is one where activations dominate the parameters
    assert measured > params
    assert 0.75 <= plan.activations / measured <= 1.25, (plan.activations, measured)
    assert plan.activations_checkpointed < plan.activations


LLAMA_7B = dict(micro_batch=1, seq_len=2048, param_dtype=torch.bfloat16, world_size=1, gpus_per_node=1)
GPU_GB = 80


def test_llama_7b_does_not_fit_one_80gb_gpu_with_ddp_and_fsdp_names_the_count_that_does():
    model = meta_model("llama", "llama-7b", vocab=32000)
    ddp = plan_memory(model, strategy="ddp", **LLAMA_7B)
    assert not ddp.fits(GPU_GB)
    first = smallest_change_that_fits(model, GPU_GB, strategy="ddp", **LLAMA_7B)[0]
    gpus = first.plan.world_size
    assert first.change == f"train.strategy=fsdp cluster.gpus_per_node={gpus}"
    assert first.plan.strategy == "fsdp" and first.plan.fits(GPU_GB)
    at = {**LLAMA_7B, "world_size": gpus, "gpus_per_node": gpus}
    assert plan_memory(model, strategy="fsdp", **at).fits(GPU_GB)
    # DDP replicates everything: more GPUs do not help; one GPU fewer does not fit under FSDP either
    assert not plan_memory(model, strategy="ddp", **at).fits(GPU_GB)
    fewer = {**LLAMA_7B, "world_size": gpus - 1, "gpus_per_node": gpus - 1}
    assert not plan_memory(model, strategy="fsdp", **fewer).fits(GPU_GB)


def test_a_plan_that_fits_has_no_suggestion_and_micro_batch_and_checkpointing_are_offered():
    model = meta_model("llama", "llama-7b", vocab=32000)
    settings = {**LLAMA_7B, "strategy": "fsdp", "world_size": 8, "gpus_per_node": 8}
    assert smallest_change_that_fits(model, GPU_GB, **settings) == []
    heavy = {**settings, "micro_batch": 16}
    changes = [s.change for s in smallest_change_that_fits(model, GPU_GB, **heavy)]
    assert any(c.startswith("train.micro_batch_size=") for c in changes)
    assert "train.activation_checkpointing=true" in changes


def test_hybrid_shards_within_a_node_and_offload_moves_the_shards_to_the_cpu():
    model = meta_model("pythia", "debug")
    hybrid = plan_memory(model, micro_batch=1, seq_len=16, strategy="fsdp", world_size=8, gpus_per_node=4, hybrid=True)
    within = plan_memory(model, micro_batch=1, seq_len=16, strategy="fsdp", world_size=4)
    assert hybrid.shard_group == 4 and hybrid.params == within.params
    offload = plan_memory(model, micro_batch=1, seq_len=16, strategy="fsdp", world_size=4, cpu_offload=True)
    assert offload.params == offload.grads == offload.optimizer == 0
    assert offload.cpu_offloaded == within.params + within.grads + within.optimizer
    with pytest.raises(ValueError, match="world_size=6"):
        plan_memory(model, micro_batch=1, seq_len=16, strategy="fsdp", world_size=6, gpus_per_node=4, hybrid=True)


def test_shard_units_are_the_blocks_and_shards_pad_dim_0():
    model = meta_model("parcae", "debug")
    assert len(shard_units(model)) == len(model.prelude) + len(model.core) + len(model.coda)
    assert shard_numel((511, 64), 2) == 256 * 64
    assert shard_numel((3,), 4) == 1
    assert shard_numel((), 2) == 1


def test_the_format_has_one_line_per_term_in_gb():
    text = plan_memory(meta_model("pythia", "debug"), micro_batch=1, seq_len=16).format()
    for term in ("parameters", "gradients", "optimizer states", "activations", "total per GPU"):
        assert any(line.startswith(term) and line.endswith("GB") for line in text.splitlines())
