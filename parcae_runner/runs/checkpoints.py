"""A run's checkpoints, ``checkpoints/checkpoint-N/``, and loading a model from one.

Each checkpoint folder holds ``model.safetensors`` (weights, what exports and evals read),
``meta.json`` (step, tokens, time, every file's size and sha256) and, for the newest ones, ``trainer_state.ckpt``
(Lightning's full state) from which a killed run resumes. A sharded run (``train.strategy=fsdp``) writes both as
``torch.distributed.checkpoint`` folders instead, each rank its shards: ``model/`` (the weights, read back one
tensor at a time by :mod:`parcae_runner.runs.sharded_weights`) and ``trainer_state.ckpt/``. A folder is built under
a temporary name and renamed into place (:class:`parcae_runner.train.checkpointing.CheckpointSchedule`), so a folder
named ``checkpoint-N`` with its ``meta.json`` is always complete. Every reader of the weights (``export``, ``eval``,
``senses``, ``runs.load_model``) goes through :func:`load_checkpoint_model`, which reads either layout and refuses
weights of another shape (runs/weight_shapes.py).
"""

from __future__ import annotations

import hashlib
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
SHARDED_WEIGHTS_DIR = "model"
META_FILE = "meta.json"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as ``(step, path)``, oldest first."""
    found = []
    for p in Path(root).glob(f"{PREFIX}*"):
        step = p.name[len(PREFIX) :]
        if step.isdigit() and (p / META_FILE).exists():
            found.append((int(step), p))
    return sorted(found)


def file_digest(path: Path) -> dict[str, Any]:
    """``{"bytes", "sha256"}`` of a checkpoint file, as ``meta.json`` records it."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"bytes": path.stat().st_size, "sha256": digest}


def checkpoint_files(folder: Path) -> list[str]:
    """Every file of a checkpoint folder but ``meta.json``, as paths relative to it (a DCP folder's files too)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != META_FILE)


def _is_resume_state(name: str) -> bool:
    return name == RESUME_FILE or name.startswith(f"{RESUME_FILE}/")


def verify_checkpoint(path: Path) -> str | None:
    """``None`` when every file ``meta.json`` lists is there with its size and sha256; else what is wrong.

    Checkpoints written before ``meta.json`` listed its files are taken as they are."""
    try:
        meta = read_meta(path)
    except (OSError, json.JSONDecodeError) as exc:
        return f"{META_FILE} unreadable ({exc})"
    for name, expected in (meta.get("files") or {}).items():
        file = path / name
        if not file.is_file():
            if _is_resume_state(name) and not (path / RESUME_FILE).exists():
                continue  # older checkpoints lose their trainer state by design (keep_resume_state)
            return f"{name} is missing"
        if file.stat().st_size != expected["bytes"]:
            return f"{name} has {file.stat().st_size} bytes, {expected['bytes']} were written"
        if file_digest(file)["sha256"] != expected["sha256"]:
            return f"{name} does not match its sha256"
    return None


def latest_resumable(root: Path, verify: bool = False) -> tuple[int, Path] | None:
    """The newest checkpoint that carries trainer state, or None. ``verify``: check its files against
    ``meta.json`` and fall back to the previous one, with a warning naming the bad one, when they do not match."""
    from parcae_runner.util.log import log

    for step, path in reversed(list_checkpoints(root)):
        if (path / RESUME_FILE).exists():
            problem = verify_checkpoint(path) if verify else None
            if problem is None:
                return step, path
            log(f"warning: {path} is corrupt ({problem}); resuming from an older checkpoint")
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
    model = build_model(cfg.arch, cfg.size, vocab)
    if (path / SHARDED_WEIGHTS_DIR).is_dir():
        from parcae_runner.runs.sharded_weights import load_sharded_weights

        load_sharded_weights(model, path / SHARDED_WEIGHTS_DIR)
    else:
        from parcae_runner.runs.weight_shapes import check_shapes, safetensors_shapes

        file = path / WEIGHTS_FILE
        check_shapes(model, safetensors_shapes(file), file)
        # load_model, not load_file: a tied tensor (embedding = head) is stored once
        load_weights(model, str(file))
    return model.eval()


def load_model(run: RunDirectory | str | Path, step: int | None = None) -> nn.Module:
    """The model of run directory ``run`` at checkpoint ``step`` (default: the newest)."""
    rd, cfg, record = open_run(run.path if isinstance(run, RunDirectory) else run)
    return load_checkpoint_model(rd, cfg, record, checkpoint_path(rd, step)[1])
