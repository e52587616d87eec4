"""Export a run's checkpoints as Hugging Face folders, and start a run from one.

``parcae-runner export <run_dir> --format hf`` -> ``<run_dir>/hf/checkpoint-N/`` (or ``--out``):
``config.json``, ``model.safetensors``, the run's tokenizer and, when the run has one, its model
card as ``README.md``; ``--all-checkpoints`` writes one folder per checkpoint, named as the Parc
and Pythia model pages name their revisions.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig
from safetensors.torch import load_model
from torch import nn

from parcae_runner.config.errors import ConfigError
from parcae_runner.data import EOT_ID
from parcae_runner.export.hf import export_hf
from parcae_runner.models import build_model
from parcae_runner.models.hf import exporter_for
from parcae_runner.train.checkpointing import WEIGHTS_FILE, list_checkpoints
from parcae_runner.train.run_dir import RunDirectory

FORMATS = ("hf",)


def open_run(run_dir: str | Path) -> tuple[RunDirectory, DictConfig, dict]:
    rd = RunDirectory(Path(run_dir))
    cfg = rd.read_config()
    if cfg is None:
        raise ConfigError("run_dir", str(run_dir), "not a run directory (no config.yaml)")
    return rd, cfg, rd.read_run()


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


def load_checkpoint_model(rd: RunDirectory, cfg: DictConfig, run: dict, path: Path) -> nn.Module:
    """Our model with the weights of one checkpoint (fp32, CPU)."""
    model = build_model(cfg.arch, cfg.size.name, run["data"]["vocab_size"])
    load_model(model, str(path / WEIGHTS_FILE))
    return model.eval()


def export_run(
    run_dir: str | Path,
    checkpoint: int | None = None,
    all_checkpoints: bool = False,
    out: str | Path | None = None,
    fmt: str = "hf",
) -> list[Path]:
    if fmt not in FORMATS:
        raise ConfigError("--format", fmt, f"choose one of: {', '.join(FORMATS)}")
    rd, cfg, run = open_run(run_dir)
    steps = (
        [s for s, _ in list_checkpoints(rd.checkpoints)] if all_checkpoints else [checkpoint_path(rd, checkpoint)[0]]
    )
    root = Path(out) if out else rd.path / "hf"
    tokenizer = Path(run["data"]["dir"]) / "tokenizer.json"
    card = rd.path / "card.md"
    written = []
    for step in steps:
        _, path = checkpoint_path(rd, step)
        model = load_checkpoint_model(rd, cfg, run, path)
        _, exporter = exporter_for(model)
        context = {exporter.CONTEXT_KEY: int(cfg.data.seq_len)} if exporter.CONTEXT_KEY else {}
        target = root / f"checkpoint-{step}" if (all_checkpoints or out is None) else root
        export_hf(
            model,
            target,
            tokenizer_path=tokenizer if tokenizer.exists() else None,
            bos_token_id=EOT_ID,
            eos_token_id=EOT_ID,
            card_text=card.read_text() if card.exists() else None,
            **context,
        )
        print(f"[parcae-runner] exported checkpoint-{step} -> {target}", file=sys.stderr, flush=True)
        written.append(target)
    return written
