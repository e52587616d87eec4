"""The run directory: the single source of truth for one run.

``results/<sweep>/<run_name>/`` holds ``config.yaml`` (resolved), ``run.json`` (status and
summary), ``metrics.jsonl``, ``checkpoints/checkpoint-N/``, ``emissions.csv`` and ``wandb/``.
Every file that is replaced is written atomically (temp file, fsync, rename) so a killed job
never leaves a half-written record behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see either the old or the new file, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would have
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def run_name_for(cfg: DictConfig) -> str:
    """Deterministic run name: ``<arch>-<size>-s<seed>`` unless ``run_name`` is given."""
    return cfg.run_name or f"{cfg.arch.name}-{cfg.size.name}-s{cfg.seed}"


@dataclass
class RunDirectory:
    path: Path

    @classmethod
    def for_config(cls, cfg: DictConfig) -> RunDirectory:
        return cls(Path(cfg.results_dir) / cfg.sweep / run_name_for(cfg))

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def run_file(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def emissions_file(self) -> Path:
        return self.path / "emissions.csv"

    def create(self) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def write_config(self, cfg: DictConfig) -> None:
        atomic_write_text(self.config_file, OmegaConf.to_yaml(cfg, resolve=True))

    def read_config(self) -> DictConfig | None:
        return OmegaConf.load(self.config_file) if self.config_file.exists() else None

    def read_run(self) -> dict[str, Any]:
        return json.loads(self.run_file.read_text()) if self.run_file.exists() else {}

    def update_run(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into ``run.json`` (atomically) and return the new record."""
        record = self.read_run()
        record.update(fields)
        atomic_write_json(self.run_file, record)
        return record

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_file.exists():
            return []
        with self.metrics_file.open() as f:
            # a line cut by a kill mid-write is dropped: it belongs to a step that will be redone
            return [json.loads(line) for line in f if line.endswith("\n") and line.strip()]

    def truncate_metrics(self, last_step: int) -> None:
        """Drop records after ``last_step``: on resume they are recomputed, and must not appear twice."""
        keep = [r for r in self.read_metrics() if r.get("step", 0) <= last_step]
        atomic_write_text(self.metrics_file, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))
