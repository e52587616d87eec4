"""Export a run's checkpoints as Hugging Face folders (a run starts from one through ``models.hf.init_from_hf``).

``--format <name>``, a weight format the run's architecture declares (``Architecture.formats``), writes
``<run_dir>/<name>/checkpoint-N<suffix>`` instead (e.g. a BlinkDL ``.pth``).

``parcae-runner export <run_dir> --format hf`` -> ``<run_dir>/hf/checkpoint-N/`` (or ``--out``):
``config.json``, ``model.safetensors``, the run's tokenizer and, when the run has one, its model
card as ``README.md``; ``--all-checkpoints`` writes one folder per checkpoint, named as the Parc
and Pythia model pages name their revisions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parcae_runner.config.errors import ConfigError
from parcae_runner.data import EOT_ID
from parcae_runner.export.hf import export_hf
from parcae_runner.export.remote_code import has_remote_code, remote_code_architectures
from parcae_runner.models.formats import WeightFormat, export_format, format_names
from parcae_runner.models.hf import exporter_for, hf_mappings
from parcae_runner.runs import PREFIX, checkpoint_path, list_checkpoints, open_run
from parcae_runner.runs.checkpoints import load_checkpoint_model
from parcae_runner.util.log import log

HF = "hf"


def export_run(
    run_dir: str | Path,
    checkpoint: int | None = None,
    all_checkpoints: bool = False,
    out: str | Path | None = None,
    fmt: str = HF,
) -> list[Path]:
    allowed = [HF, *format_names()]
    if fmt not in allowed:
        raise ConfigError("--format", fmt, f"choose one of: {', '.join(allowed)}")
    rd, cfg, run = open_run(run_dir)
    weight_format = None
    if fmt == HF:
        _check_exportable(str(cfg.arch.name))
    else:
        try:
            weight_format = export_format(str(cfg.arch.name), fmt)
        except ValueError as e:
            raise ConfigError("--format", fmt, str(e)) from None
    chosen = list_checkpoints(rd.checkpoints) if all_checkpoints else [checkpoint_path(rd, checkpoint)]
    root = Path(out) if out else rd.path / "hf"
    tokenizer = Path(run.data_info["dir"]) / "tokenizer.json"
    card = rd.card_file
    eos_id = int(run.data_info.get("eos_id", EOT_ID))
    written = []
    for step, path in chosen:
        model = load_checkpoint_model(rd, cfg, run, path)
        if weight_format is not None:
            root_of_files = Path(out) if out else rd.path / weight_format.name
            written.append(_export_file(weight_format, model, root_of_files, step, all_checkpoints))
            continue
        context = _context(model, int(cfg.data.seq_len))
        target = root / f"{PREFIX}{step}" if (all_checkpoints or out is None) else root
        export_hf(
            model,
            target,
            tokenizer_path=tokenizer if tokenizer.exists() else None,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            card_text=card.read_text() if card.exists() else None,
            **context,
        )
        log(f"exported {PREFIX}{step} -> {target}")
        written.append(target)
    return written


def _export_file(fmt: WeightFormat, model: Any, root: Path, step: int, all_checkpoints: bool) -> Path:
    """``<root>/checkpoint-N<suffix>`` (or ``root`` itself as the file when one checkpoint goes to ``--out``)."""
    one_file = not all_checkpoints and root.suffix == fmt.suffix
    target = root if one_file else root / f"{PREFIX}{step}{fmt.suffix}"
    try:
        written = fmt.export(model, target)
    except ValueError as e:
        raise ConfigError("--format", fmt.name, str(e)) from None
    log(f"exported {PREFIX}{step} -> {written}")
    return written


def _check_exportable(arch_name: str) -> None:
    """Bad input (exit 2, one line), not a traceback, for an architecture with neither export."""
    from parcae_runner.models import get_architecture

    arch = get_architecture(arch_name)
    if arch.name not in hf_mappings() and not has_remote_code(arch.name):
        allowed = sorted([*hf_mappings(), *remote_code_architectures()])
        raise ConfigError("arch", arch.name, f"has no HF export yet; runs of these export: {', '.join(allowed)}")


def _context(model, seq_len: int) -> dict[str, int]:
    """The training context under the HF config key that holds it (stock exports that have one)."""
    name = model.hparams.name
    if name not in hf_mappings():
        # the shipped configs name it as generic tools (lm-eval's max_length) look for it
        return {"max_position_embeddings": seq_len}
    exporter = exporter_for(model)[1]
    return {exporter.CONTEXT_KEY: seq_len} if exporter.CONTEXT_KEY else {}
