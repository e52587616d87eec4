"""What a card states, read from the run directory (config.yaml, run.json, metrics.jsonl, the sweep's
sweep.json), the architecture registry and the package metadata, and the values derived from them."""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from parcae_runner.config.errors import ConfigError
from parcae_runner.runs import RunDirectory, SweepRecord

TOOL = "parcae-runner"


@dataclass
class CardFacts:
    """The run a card describes: its directory, config, run.json, metrics records and what follows from them."""

    rd: RunDirectory
    cfg: DictConfig
    run: Mapping[str, Any]
    records: list[dict[str, Any]]
    arch: Any  # the registry's Architecture
    size: str
    tool: dict[str, str]
    sweep: dict[str, Any]
    name: str
    step: int
    tokens: int

    @property
    def data(self) -> dict[str, Any]:
        """run.json's ``data`` block (vocabulary, token counts, hash)."""
        return self.run.get("data") or {}


def load_facts(run_dir: Path) -> CardFacts:
    """Everything a card of ``run_dir`` needs; FileNotFoundError if it is not a run directory."""
    from parcae_runner.models import get_architecture

    rd, cfg, run, records = _read(run_dir)
    return CardFacts(
        rd=rd,
        cfg=cfg,
        run=run,
        records=records,
        arch=get_architecture(str(run["arch"])),
        size=str(run["size"]),
        tool=tool_metadata(),
        sweep=_sweep_info(rd.path),
        name=str(run.get("run_name") or rd.path.name),
        step=int(run.get("step") or 0),
        tokens=int(run.get("tokens") or 0),
    )


def _read(run_dir: Path) -> tuple[RunDirectory, DictConfig, Mapping[str, Any], list[dict[str, Any]]]:
    rd = RunDirectory(Path(run_dir))
    cfg = rd.read_config()
    run = rd.read_run()
    if cfg is None or not run:
        raise ConfigError("run_dir", str(run_dir), "not a run directory (needs config.yaml and run.json)")
    return rd, cfg, run, rd.read_metrics()


def _sweep_info(run_dir: Path) -> dict[str, Any]:
    """The sweep's ``sweep.json`` (question, swept keys), when the run belongs to a launched sweep."""
    try:
        return dict(SweepRecord.read(Path(run_dir).parent))
    except (OSError, ValueError):
        return {}


def tool_metadata() -> dict[str, str]:
    try:
        md = importlib.metadata.metadata(TOOL)
    except importlib.metadata.PackageNotFoundError:  # a source checkout that was never installed
        return {"version": "unknown", "license": "other", "summary": ""}

    def field(name: str) -> str | None:
        return md[name] if name in md else None

    return {
        "version": md["Version"],
        "license": (field("License-Expression") or field("License") or "other").lower(),
        "summary": field("Summary") or "",
    }


def training_precision(cfg: DictConfig, run: Mapping[str, Any]) -> str:
    """The precision the run trained in. ``auto`` is resolved as ``runner.resolve_precision`` did,
    from the accelerator run.json recorded (the card may be written on another machine)."""
    chosen = str(cfg.train.precision)
    if chosen != "auto":
        return chosen
    on_gpu = (run.get("hardware") or {}).get("accelerator") == "gpu"
    return f"auto ({'bf16-mixed' if on_gpu else '32-true'})"


def training_flops_per_token(cfg: DictConfig, run: Mapping[str, Any]) -> float | None:
    """Training FLOPs per token (``models/flops.py``), through the collector's cached meta-device build."""
    from parcae_runner.analysis.collect import flops_per_token

    arch = OmegaConf.to_container(cfg.arch, resolve=True)
    size = OmegaConf.to_container(cfg.size, resolve=True)
    assert isinstance(arch, dict) and isinstance(size, dict), "arch and size are config groups: mappings"
    hparams = {str(k): v for k, v in arch.items()}
    dims = {str(k): v for k, v in size.items()}
    fpt = flops_per_token(hparams, dims, run["data"]["vocab_size"], cfg.data.seq_len)
    return None if math.isnan(fpt) else fpt


def world_size(run: Mapping[str, Any]) -> int:
    """Data-parallel ranks: run.json's ``hardware.devices`` is Lightning's world size (all nodes)."""
    return int((run.get("hardware") or {}).get("devices") or 1)


def hardware_used(run: Mapping[str, Any]) -> str:
    hw = run.get("hardware") or {}
    nodes = int(hw.get("num_nodes") or 1)
    kind = "GPU" if hw.get("accelerator") == "gpu" else "CPU process"
    where = f" on {nodes} nodes" if nodes > 1 else ""
    return f"{world_size(run)} x {hw.get('device_name', 'unknown')} ({kind}){where}"


def location(run: Mapping[str, Any], cfg: DictConfig) -> str:
    carbon = run.get("carbon") or {}
    country = carbon.get("country") or cfg.cluster.country_iso_code
    region = carbon.get("region") or cfg.cluster.region
    return f"{region}, {country}" if region else str(country)


def finished_year(run: Mapping[str, Any]) -> int:
    when = run.get("finished_at") or run.get("started_at")
    return datetime.fromtimestamp(float(when), tz=UTC).year if when else datetime.now(tz=UTC).year


def latest_checkpoint(rd: RunDirectory) -> int | None:
    from parcae_runner.runs import list_checkpoints

    found = list_checkpoints(rd.checkpoints)
    return found[-1][0] if found else None


def eval_metrics(records: list[dict[str, Any]]) -> dict[str, tuple[int, float]]:
    """The last value of every ``eval/...`` key in metrics.jsonl, with its step."""
    out: dict[str, tuple[int, float]] = {}
    for rec in records:
        for key, value in rec.items():
            if key.startswith("eval/") and isinstance(value, (int, float)):
                out[key] = (int(rec.get("step", 0)), float(value))
    return out
