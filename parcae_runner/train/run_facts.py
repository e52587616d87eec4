"""What ``run.json`` says of a run beside its attempts: the model and data at the start, the hardware, the
carbon reading and the summary metrics at the end."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from parcae_runner.data import PreparedData
from parcae_runner.models import count_parameters
from parcae_runner.models.flops import training_flops_per_token
from parcae_runner.runs import RunDirectory, run_name
from parcae_runner.runs.provenance import hardware_info as provenance_hardware_info
from parcae_runner.train.energy import EnergyReading


def identity(cfg: DictConfig) -> dict[str, Any]:
    """Which run this is: its name, sweep, architecture, size and seeds."""
    return dict(
        run_name=run_name(cfg),
        sweep=cfg.sweep,
        arch=cfg.arch.name,
        size=cfg.size.name,
        seed=cfg.seed,
        data_seed=cfg.data.seed,
    )


def model_and_data(cfg: DictConfig, model: torch.nn.Module, data: PreparedData) -> dict[str, Any]:
    """What the run trains on what: step budget, parameters, FLOPs per token and the prepared data."""
    return dict(
        max_steps=cfg.train.max_steps,
        tokens_per_step=cfg.train.batch_size * cfg.data.seq_len,
        params=count_parameters(model),
        params_non_embedding=count_parameters(model, non_embedding=True),
        flops_per_token=training_flops_per_token(model, cfg.data.seq_len),
        data={
            "dir": str(data.dir),
            "vocab_size": data.vocab_size,
            "model_vocab_size": data.model_vocab_size,
            "eos_id": data.eos_id,
            "source": data.meta.get("source_description"),
            "tokenizer_sha256": data.meta.get("tokenizer_sha256"),
            "hash": data.dir.name.rsplit("-", 1)[-1],
            "train_tokens": int(data.train.tokens),
            "val_tokens": int(data.val.tokens),
        },
    )


def hardware_info(trainer: L.Trainer) -> dict[str, Any]:
    on_gpu = torch.cuda.is_available() and trainer.strategy.root_device.type == "cuda"
    return provenance_hardware_info(on_gpu, trainer.world_size, trainer.num_nodes)


def carbon_facts(reading: EnergyReading) -> dict[str, Any]:
    """Where the energy figure's carbon intensity came from."""
    return {
        "source": "codecarbon",
        "country": reading.country,
        "region": reading.region,
        "intensity_kg_per_kwh": reading.intensity_kg_per_kwh,
        # codecarbon's country figure, or cluster.carbon_intensity_kg_per_kwh with its source
        "intensity_source": reading.intensity_source,
        "cpu_model": reading.cpu_model,
        "gpu_model": reading.gpu_model,
    }


def summarize_metrics(run_dir: RunDirectory) -> dict[str, Any]:
    """Final and best values, read back from metrics.jsonl (the record that survives resumes)."""
    records = run_dir.read_metrics()
    val = [r for r in records if "val/loss" in r]
    train = [r for r in records if "train/loss" in r]
    out: dict[str, Any] = {}
    if val:
        # looped models also validate at several depths: keep each depth's final value
        out.update({f"final_{k[4:].replace('/', '_')}": v for k, v in val[-1].items() if "@R" in k})
        out.update(
            final_val_loss=val[-1]["val/loss"],
            final_val_bpb=val[-1]["val/bpb"],
            best_val_loss=min(r["val/loss"] for r in val),
        )
    if train:
        out["final_train_loss"] = train[-1]["train/loss"]
    return out
