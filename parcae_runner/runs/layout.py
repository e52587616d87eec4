"""The run directory: the single source of truth for one run.

``results/<sweep>/<run_name>/`` holds ``config.yaml`` (resolved), ``run.json`` (status and
summary), ``metrics.jsonl``, ``checkpoints/checkpoint-N/``, ``emissions.csv``, ``wandb/``,
``eval/checkpoint-N/`` and ``card.md``; ``results/<sweep>/sweep.json`` records the sweep. Every
file that is replaced is written atomically (temp file, fsync, rename) so a killed job never
leaves a half-written record behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from parcae_runner.config.errors import ConfigError
from parcae_runner.runs.metrics import METRICS_FILE, format_records, read_metrics
from parcae_runner.runs.record import RUN_FILE, SWEEP_FILE, RunRecord
from parcae_runner.util.files import atomic_write_text

CONFIG_FILE = "config.yaml"
CHECKPOINTS_DIR = "checkpoints"
EMISSIONS_FILE = "emissions.csv"
WANDB_DIR = "wandb"
EVAL_DIR = "eval"
CARD_FILE = "card.md"


def run_name(cfg: DictConfig) -> str:
    """Deterministic run name: ``<arch>-<size>-s<seed>`` unless ``run_name`` is given."""
    return cfg.run_name or f"{cfg.arch.name}-{cfg.size.name}-s{cfg.seed}"


def sweep_root(cfg: DictConfig) -> Path:
    """``<results_dir>/<sweep>``: the folder of a sweep's run directories and its ``sweep.json``."""
    return Path(cfg.results_dir) / cfg.sweep


def sweep_file(root: Path) -> Path:
    return Path(root) / SWEEP_FILE


def _child(name: str) -> property:
    """A read-only attribute: the path ``name`` inside the run directory."""
    return property(lambda self: self.path / name, doc=f"``<run_dir>/{name}``")


@dataclass
class RunDirectory:
    path: Path

    @classmethod
    def for_config(cls, cfg: DictConfig) -> RunDirectory:
        return cls(sweep_root(cfg) / run_name(cfg))

    # the fixed children of a run directory, as paths
    config_file = _child(CONFIG_FILE)
    run_file = _child(RUN_FILE)
    metrics_file = _child(METRICS_FILE)
    checkpoints = _child(CHECKPOINTS_DIR)
    emissions_file = _child(EMISSIONS_FILE)
    wandb_dir = _child(WANDB_DIR)
    eval_dir = _child(EVAL_DIR)
    card_file = _child(CARD_FILE)

    def create(self) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def write_config(self, cfg: DictConfig) -> None:
        atomic_write_text(self.config_file, OmegaConf.to_yaml(cfg, resolve=True))

    def read_config(self) -> DictConfig | None:
        return OmegaConf.load(self.config_file) if self.config_file.exists() else None  # type: ignore[return-value]

    def read_run(self) -> RunRecord:
        """``run.json`` (empty before the run first starts)."""
        return RunRecord.read(self.path)

    def update_run(self, **fields: Any) -> RunRecord:
        """Merge ``fields`` into ``run.json`` (atomically) and return the new record."""
        return self.read_run().update(**fields)

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.metrics_file)

    def truncate_metrics(self, last_step: int) -> None:
        """Drop records after ``last_step``: on resume they are recomputed, and must not appear twice."""
        keep = [r for r in self.read_metrics() if r.get("step", 0) <= last_step]
        atomic_write_text(self.metrics_file, format_records(keep))


def open_run(run_dir: str | Path) -> tuple[RunDirectory, DictConfig, RunRecord]:
    """An existing run directory with its config and record; a :class:`ConfigError` when it is not one."""
    rd = RunDirectory(Path(run_dir))
    cfg = rd.read_config()
    if cfg is None:
        raise ConfigError("run_dir", str(run_dir), "not a run directory (no config.yaml)")
    return rd, cfg, rd.read_run()
