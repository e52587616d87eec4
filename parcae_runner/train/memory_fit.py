"""The memory plan of a run as configured, and the strategy it resolves to.

:func:`memory_fit` turns a resolved run config into the :class:`~parcae_runner.models.memory.MemoryPlan` of one GPU
(``models/memory.py`` holds the formula) at the run's own settings:

- strategy: ``train.strategy`` (``auto`` resolved by :func:`resolve_strategy`); world size ``train.num_nodes`` x
  ``train.devices`` (``config.validate.world_size``, the profile's nodes x tasks per node), GPUs per node
  ``train.devices``; ``train.fsdp.hybrid`` shards within a node, ``train.fsdp.cpu_offload`` moves the shards to the
  host, ``train.fsdp.reshard_after_forward``;
- precision, on a GPU: activations in bf16 (fp16 for ``16-mixed``, fp32 for ``32``/``32-true``); FSDP with
  ``train.fsdp.mixed_precision`` gathers bf16 parameters and reduces gradients in fp32; the parameters, gradients
  and optimizer states stay fp32 (bf16 under ``bf16-true``). On a CPU everything is fp32;
- ``train.optimizer`` (adamw, or muon with ``train.muon.normuon``), ``train.no_decay``,
  ``train.activation_checkpointing``, ``train.micro_batch_size`` and ``data.seq_len``.

The check is against ``cluster.gpu_memory_gb`` (null: not checked). A run that does not fit is refused (exit 2) by
every entry point's preflight, naming the smallest change that fits (``models.memory.smallest_change_that_fits``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from parcae_runner.config.errors import ConfigError
from parcae_runner.config.schema import Precision, Strategy
from parcae_runner.config.validate import world_size
from parcae_runner.models.memory import GB, MemoryPlan, Suggestion, plan_memory, smallest_change_that_fits
from parcae_runner.models.registry import build_model, count_parameters, get_architecture

FP32_PRECISIONS = (Precision.FP32, Precision.FP32_TRUE)


def shardable(cfg: DictConfig) -> bool:
    """The run's architecture names its FSDP units (``Architecture.shard_units``)."""
    return bool(get_architecture(str(cfg.arch.name)).shard_units)


def on_gpu(cfg: DictConfig) -> bool:
    """The run trains on GPUs: ``train.accelerator=gpu``, or not ``cpu`` on a profile with GPUs or a GPU size."""
    c, accelerator = cfg.cluster, str(cfg.train.accelerator)
    if accelerator == "cpu":
        return False
    return accelerator == "gpu" or bool(c.gpus_per_node) or c.get("gpu_memory_gb") is not None


def _dtypes(cfg: DictConfig, strategy: str) -> tuple[torch.dtype, str, str]:
    """(dtype of the parameters as stored, compute dtype: gathered parameters and activations, gradient reduction
    dtype) on the run's device."""
    if not on_gpu(cfg):
        return torch.float32, "fp32", "fp32"
    precision = str(cfg.train.precision)
    stored = torch.bfloat16 if precision == Precision.BF16_TRUE else torch.float32
    compute = "fp32" if precision in FP32_PRECISIONS else "fp16" if precision == Precision.FP16_MIXED else "bf16"
    if strategy == Strategy.FSDP and cfg.train.fsdp.mixed_precision:
        compute = "bf16"
    return stored, compute, "fp32"


def plan_settings(cfg: DictConfig, strategy: str) -> dict[str, Any]:
    """The keyword arguments of ``plan_memory`` for ``cfg`` under ``strategy`` (``ddp`` or ``fsdp``)."""
    t = cfg.train
    _, compute, reduce = _dtypes(cfg, strategy)
    ranks = world_size(cfg)
    return {
        "micro_batch": int(t.micro_batch_size),
        "seq_len": int(cfg.data.seq_len),
        "optimizer": str(t.optimizer),
        "strategy": strategy,
        "world_size": ranks,
        "gpus_per_node": max(1, ranks // max(1, int(t.num_nodes))),
        "param_dtype": compute,
        "reduce_dtype": reduce,
        "reshard_after_forward": bool(t.fsdp.reshard_after_forward),
        "cpu_offload": bool(t.fsdp.cpu_offload),
        "hybrid": bool(t.fsdp.hybrid) and int(t.num_nodes) > 1,
        "activation_checkpointing": bool(t.activation_checkpointing),
        "normuon": bool(t.muon.normuon),
        "no_decay": tuple(str(n) for n in t.no_decay),
    }


@lru_cache(maxsize=8)
def _meta_model(arch_json: str, size_json: str, vocab: int, dtype: torch.dtype) -> nn.Module:
    size = json.loads(size_json)
    with torch.device("meta"):
        return build_model(json.loads(arch_json), size, vocab).to(dtype)


def meta_model(cfg: DictConfig, vocab: int) -> nn.Module:
    """``cfg``'s model on the meta device (nothing allocated), its parameters in the dtype they are stored in;
    built once per distinct architecture, size, vocabulary and dtype."""
    arch = json.dumps(OmegaConf.to_container(cfg.arch, resolve=True), sort_keys=True)
    size = json.dumps(OmegaConf.to_container(cfg.size, resolve=True), sort_keys=True)
    return _meta_model(arch, size, int(vocab), _dtypes(cfg, Strategy.DDP)[0])


def _strategy_for(cfg: DictConfig, model: nn.Module) -> str:
    requested = str(cfg.train.strategy)
    if requested != Strategy.AUTO:
        return requested
    gpu_gb = cfg.cluster.get("gpu_memory_gb")
    if gpu_gb is None or not shardable(cfg) or plan_memory(model, **plan_settings(cfg, Strategy.DDP)).fits(gpu_gb):
        return Strategy.DDP.value
    fsdp = plan_memory(model, **plan_settings(cfg, Strategy.FSDP))
    return Strategy.FSDP.value if fsdp.fits(gpu_gb) else Strategy.DDP.value


def resolve_strategy(cfg: DictConfig) -> str:
    """``"ddp"`` or ``"fsdp"``: ``train.strategy`` as given, or for ``auto`` ddp unless ``cluster.gpu_memory_gb`` is
    set and the DDP plan does not fit it while the FSDP plan does (at the run's world size)."""
    from parcae_runner.data.published import tokenizer_vocab

    requested = str(cfg.train.strategy)
    if requested != Strategy.AUTO or cfg.cluster.get("gpu_memory_gb") is None:
        return Strategy.DDP.value if requested == Strategy.AUTO else requested
    vocab = tokenizer_vocab(OmegaConf.to_object(cfg.data))  # type: ignore[arg-type]
    if vocab is None:
        raise ConfigError(
            "train.strategy",
            requested,
            f"auto needs the model's vocabulary to plan its memory: set data.vocab_size, or fill the Hugging Face "
            f"cache with data.tokenizer={cfg.data.tokenizer}",
        )
    return _strategy_for(cfg, meta_model(cfg, vocab))


@dataclass(frozen=True)
class MemoryFit:
    """The run's memory plan per GPU at its resolved strategy, against ``cluster.gpu_memory_gb``, and (when it does
    not fit) the changes that do."""

    requested: str
    plan: MemoryPlan
    gpu_memory_gb: float | None
    on_gpu: bool
    params: int
    suggestions: tuple[Suggestion, ...] = ()
    # under auto: the DDP plan that did not fit (why auto chose fsdp)
    ddp_total: int | None = None

    @property
    def strategy(self) -> str:
        return self.plan.strategy

    @property
    def fits(self) -> bool | None:
        """Whether the plan fits the GPU; None when the profile names no GPU memory."""
        return None if self.gpu_memory_gb is None else self.plan.fits(self.gpu_memory_gb)

    def where(self, name_auto: bool = True) -> str:
        """``fsdp on 2 GPUs``, and `` (train.strategy=auto)`` when auto chose it and ``name_auto``."""
        n = self.plan.world_size
        auto = " (train.strategy=auto)" if self.requested == Strategy.AUTO and name_auto else ""
        return f"{self.strategy} on {n} {'GPU' if self.on_gpu else 'rank'}{'s' if n > 1 else ''}{auto}"

    def _changes(self) -> str:
        if not self.suggestions:
            return "no change of strategy, GPU or node count, micro batch or activation checkpointing fits"
        first, *others = (f"{s.change} ({s.plan.total / GB:.1f} GB per GPU)" for s in self.suggestions)
        return f"smallest change that fits: {first}" + (f"; others: {'; '.join(others)}" if others else "")

    def verdict(self) -> str:
        """``fits`` / ``does not fit; smallest change that fits: ...`` / ``not checked``."""
        if self.fits is None:
            return "not checked (cluster.gpu_memory_gb is not set)"
        return "fits" if self.fits else f"does not fit; {self._changes()}"

    def summary(self) -> str:
        """One line: the total per GPU, where, and the verdict."""
        unit = "GPU" if self.on_gpu else "rank (CPU)"
        of = f" of {self.gpu_memory_gb:g} GB" if self.gpu_memory_gb is not None else ""
        return f"{self.plan.total / GB:.1f} GB per {unit} under {self.where()}{of}: {self.verdict()}"

    def format(self) -> str:
        """The plan's terms, one a line, then the GPU memory and the verdict."""
        lines = self.plan.format().splitlines()
        if self.ddp_total is not None:
            lines.append(f"train.strategy    auto chose fsdp: ddp would need {self.ddp_total / GB:.2f} GB per GPU")
        if self.gpu_memory_gb is None:
            lines.append(f"GPU memory        {self.verdict()}")
        else:
            lines.append(f"GPU memory        {self.gpu_memory_gb:g} GB (cluster.gpu_memory_gb): {self.verdict()}")
        return "\n".join(lines)

    def refusal(self) -> ConfigError:
        p = self.plan
        terms = (
            f"parameters {p.params / GB:.1f}, gradients {p.grads / GB:.1f}, optimizer states {p.optimizer / GB:.1f}, "
            f"unsharded/buffers {p.unsharded / GB:.1f}, activations {p.activations_used / GB:.1f} GB"
        )
        return ConfigError(
            "train.strategy",
            self.requested,
            f"the run ({self.params / 1e9:.2f}B parameters) needs {p.total / GB:.1f} GB per GPU under "
            f"{self.where(name_auto=False)} ({terms}), above cluster.gpu_memory_gb={self.gpu_memory_gb:g}; "
            f"{self._changes()}",
        )


def _suggestions(cfg: DictConfig, model: nn.Module, strategy: str, gpu_gb: float) -> tuple[Suggestion, ...]:
    """The changes that fit, as overrides a user can paste: none naming fsdp for an architecture that cannot shard;
    a GPU count whose ranks the batch does not divide says which batch it needs."""
    t = cfg.train
    found = []
    for s in smallest_change_that_fits(model, gpu_gb, **plan_settings(cfg, strategy)):
        change = s.change
        if "train.strategy=fsdp" in change and not shardable(cfg):
            continue
        if strategy == Strategy.FSDP and str(t.strategy) == Strategy.FSDP:
            change = change.replace("train.strategy=fsdp ", "")
        per_step = int(t.micro_batch_size) * s.plan.world_size
        if s.plan.world_size != world_size(cfg) and int(t.batch_size) % per_step:
            change += f" train.batch_size={-(-int(t.batch_size) // per_step) * per_step}"
        found.append(Suggestion(change, s.plan))
    return tuple(found)


def memory_fit(cfg: DictConfig, vocab: int) -> MemoryFit:
    """``cfg``'s memory plan per GPU at its resolved strategy, at model vocabulary ``vocab``."""
    model = meta_model(cfg, vocab)
    strategy = _strategy_for(cfg, model)
    plan = plan_memory(model, **plan_settings(cfg, strategy))
    gpu_gb = cfg.cluster.get("gpu_memory_gb")
    gpu_gb = None if gpu_gb is None else float(gpu_gb)
    ddp_total = None
    if str(cfg.train.strategy) == Strategy.AUTO and strategy == Strategy.FSDP:
        ddp_total = plan_memory(model, **plan_settings(cfg, Strategy.DDP)).total
    suggestions: tuple[Suggestion, ...] = ()
    if gpu_gb is not None and not plan.fits(gpu_gb):
        suggestions = _suggestions(cfg, model, strategy, gpu_gb)
    return MemoryFit(
        str(cfg.train.strategy), plan, gpu_gb, on_gpu(cfg), count_parameters(model), suggestions, ddp_total
    )


def check_fits(fit: MemoryFit) -> None:
    """Refuse (``ConfigError``, exit 2) a run whose plan does not fit ``cluster.gpu_memory_gb``."""
    if fit.fits is False:
        raise fit.refusal()
