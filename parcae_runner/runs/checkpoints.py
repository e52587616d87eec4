"""A run's checkpoints, ``checkpoints/checkpoint-N/``, and loading a model from one.

Each checkpoint folder holds ``model.safetensors`` (weights, what exports and evals read),
``meta.json`` (step, tokens, time) and, for the newest ones, ``trainer_state.ckpt`` (Lightning's
full state) from which a killed run resumes. A folder is built under a temporary name and renamed
into place (:class:`parcae_runner.train.checkpointing.CheckpointSchedule`), so a folder named
``checkpoint-N`` with its ``meta.json`` is always complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from parcae_runner.config.errors import ConfigError
from parcae_runner.runs.layout import RunDirectory, open_run
from parcae_runner.runs.record import RunRecord

if TYPE_CHECKING:
    from torch import nn

PREFIX = "checkpoint-"
RESUME_FILE = "trainer_state.ckpt"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as ``(step, path)``, oldest first."""
    found = []
    for p in Path(root).glob(f"{PREFIX}*"):
        step = p.name[len(PREFIX) :]
        if step.isdigit() and (p / META_FILE).exists():
            found.append((int(step), p))
    return sorted(found)


def latest_resumable(root: Path) -> tuple[int, Path] | None:
    """The newest checkpoint that carries trainer state, or None."""
    for step, path in reversed(list_checkpoints(root)):
        if (path / RESUME_FILE).exists():
            return step, path
    return None


def read_meta(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / META_FILE).read_text())


def checkpoint_path(rd: RunDirectory, step: int | None) -> tuple[int, Path]:
    """The checkpoint at ``step``, or the newest one."""
    found = list_checkpoints(rd.checkpoints)
    if not found:
        raise ConfigError("run_dir", str(rd.path), "has no checkpoints")
    if step is None:
        return found[-1]
    for s, path in found:
        if s == step:
            return s, path
    raise ConfigError(
        "--checkpoint", step, f"no such checkpoint; {rd.path.name} has {', '.join(str(s) for s, _ in found)}"
    )


def load_checkpoint_model(rd: RunDirectory, cfg: DictConfig, run: RunRecord, path: Path) -> nn.Module:
    """Our model with the weights of one checkpoint folder (fp32, CPU, eval mode)."""
    from safetensors.torch import load_model as load_weights

    from parcae_runner.models import build_model

    # the embedding's size (the tokenizer's vocabulary padded); older runs recorded only the tokenizer's
    vocab = run.data_info.get("model_vocab_size") or run.data_info["vocab_size"]
    model = build_model(cfg.arch, cfg.size.name, vocab)
    # load_model, not load_file: a tied tensor (embedding = head) is stored once
    load_weights(model, str(path / WEIGHTS_FILE))
    return model.eval()


def load_model(run: RunDirectory | str | Path, step: int | None = None) -> nn.Module:
    """The model of run directory ``run`` at checkpoint ``step`` (default: the newest)."""
    rd, cfg, record = open_run(run.path if isinstance(run, RunDirectory) else run)
    return load_checkpoint_model(rd, cfg, record, checkpoint_path(rd, step)[1])
