"""The card's YAML front matter: the metadata the Hugging Face Hub reads (license, library, tags,
datasets, ``model-index`` with the validation results, ``co2_eq_emissions``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from parcae_runner.analysis.card.facts import TOOL, eval_metrics, hardware_used, location, tool_metadata


def front_matter(cfg: DictConfig, run: Mapping[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The card's YAML metadata, as the Hugging Face Hub reads it."""
    from parcae_runner.models.hf import hf_mappings

    data = run.get("data") or {}
    dataset_name = Path(data["dir"]).name if data.get("dir") else str(cfg.data.source)
    metrics = []
    for key, mtype, name in (
        ("final_val_loss", "loss", "Validation loss (final)"),
        ("best_val_loss", "loss", "Validation loss (best)"),
        ("final_val_bpb", "bits_per_byte", "Validation bits per byte (final)"),
    ):
        if run.get(key) is not None:
            metrics.append({"type": mtype, "name": name, "value": float(run[key]), "verified": False})
    for key, (_, value) in eval_metrics(records).items():
        metrics.append({"type": key.removeprefix("eval/"), "name": key, "value": value, "verified": False})

    meta: dict[str, Any] = {
        "license": tool_metadata()["license"],
        # exported folders load with transformers; architectures without an exporter are plain torch
        "library_name": "transformers" if run["arch"] in hf_mappings() else "pytorch",
        "pipeline_tag": "text-generation",
        "tags": [str(run["arch"]), str(run["size"]), TOOL],
        "datasets": [dataset_name],
        "model-index": [
            {
                "name": str(run.get("run_name")),
                "results": [
                    {
                        "task": {"type": "text-generation", "name": "Causal language modeling"},
                        "dataset": {"type": str(cfg.data.source), "name": dataset_name, "split": "validation"},
                        "metrics": metrics,
                    }
                ],
            }
        ],
    }
    carbon = run.get("carbon")
    if carbon:
        meta["co2_eq_emissions"] = {
            # the Hub's unit is grams
            "emissions": float(run["co2_kg"]) * 1000.0,
            "source": str(carbon.get("source") or "codecarbon"),
            "training_type": "pre-training",
            "geographical_location": location(run, cfg),
            "hardware_used": hardware_used(run),
        }
    return meta
