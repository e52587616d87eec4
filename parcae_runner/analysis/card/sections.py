"""The sections of a card after its front matter, one function each, in the order of the Hugging Face
model-card template (how to use is ``usage.py``): each returns its Markdown lines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf

from parcae_runner.analysis.card.citations import citation_for, tool_citation
from parcae_runner.analysis.card.facts import (
    TOOL,
    CardFacts,
    eval_metrics,
    finished_year,
    hardware_used,
    location,
    training_flops_per_token,
    training_precision,
    world_size,
)
from parcae_runner.analysis.card.markdown import count, num, table, table_lines
from parcae_runner.runs import RunStatus


def description(f: CardFacts) -> list[str]:
    """The title, what was trained how far, whether it finished, and the sweep's question."""
    run, arch = f.run, f.arch
    lines = [
        f"# {f.name}",
        "",
        f"A `{f.size}` **{arch.name}** language model ({arch.description or 'no description'}) trained from scratch "
        f"with `{TOOL}` {f.tool['version']} as run `{f.name}` of the sweep `{run.get('sweep')}`: "
        f"{count(f.step)} of {count(run.get('max_steps'))} steps, {count(f.tokens)} tokens. "
        f"Model seed {run.get('seed')}, data seed {run.get('data_seed')}.",
        "",
    ]
    if run.get("status") != RunStatus.DONE:
        error = f" ({run['error']})" if run.get("error") else ""
        lines += [f"> **Unfinished run**: status `{run.get('status')}`{error}.", ""]
    if f.sweep.get("question"):
        lines += [f"The sweep asks: {f.sweep['question']}", ""]
    return lines


def architecture(f: CardFacts) -> list[str]:
    """The registry's dims for the size (with those the run overrode), parameter counts and every ``arch.*``
    setting."""
    run, cfg = f.run, f.cfg
    rows = [("Architecture", f"`{f.arch.name}`: {f.arch.description}"), ("Size", f"`{f.size}`")]
    dims = {**f.arch.sizes.get(f.size, {}), **{k: v for k, v in cfg.size.items() if k != "name"}}
    rows += [(f"`{k}`", count(v) if isinstance(v, int) else str(v)) for k, v in dims.items()]
    rows += [
        ("Parameters", count(run.get("params"))),
        ("Non-embedding parameters", count(run.get("params_non_embedding"))),
        ("Vocabulary", count(f.data.get("vocab_size"))),
        ("Context length", count(cfg.data.seq_len)),
    ]
    arch = OmegaConf.to_container(cfg.arch, resolve=True)
    assert isinstance(arch, dict), "arch is a config group: a mapping"
    hparams = {str(k): v for k, v in arch.items() if k != "name"}
    rows += [(f"`arch.{k}`", f"`{v}`") for k, v in hparams.items()]
    return [
        "## Architecture and size",
        "",
        table(rows, ("", "value")),
        "",
        "Non-embedding parameters leave out the token embedding and the output head (Kaplan et al., Pythia). "
        "The dims are the registry's for this size.",
        "",
    ]


def training_data(f: CardFacts) -> list[str]:
    """Source, tokenizer, token counts, the data hash and seed, and why same seed means same batches."""
    run, cfg, data = f.run, f.cfg, f.data
    source = str(cfg.data.source) + (f" (`{cfg.data.path}`)" if cfg.data.get("path") else "")
    epochs = f.tokens / data["train_tokens"] if data.get("train_tokens") else None
    digests = [h.get("batch_digest") for h in run.get("attempt_history", []) if h.get("batch_digest")]
    rows = [
        ("Source", source),
        ("Tokenizer", f"byte-level BPE trained on the training documents, {count(data.get('vocab_size'))} tokens"),
        ("Training tokens available", count(data.get("train_tokens"))),
        ("Validation tokens", count(data.get("val_tokens"))),
        ("Validation fraction (of documents)", num(cfg.data.val_fraction)),
        ("Tokens trained on", f"{count(f.tokens)} ({num(epochs, 4)} epochs)"),
        ("Data hash", f"`{data.get('hash')}`"),
        ("Data seed", str(run.get("data_seed"))),
    ]
    if digests:
        rows.append(("Digest of the batches seen", ", ".join(f"`{d}`" for d in digests)))
    return [
        "## Training data",
        "",
        table(rows, ("", "value")),
        "",
        "**Same data, same order.** The training sequence at every position of the run is a pure function of "
        f"the data seed ({run.get('data_seed')}) and the position; the model seed changes only the initialisation. "
        "Every run with this data hash and data seed, whatever its architecture or model seed, saw the same tokens "
        "in the same order, so differences between such runs come from the model alone.",
        "",
    ]


def training_procedure(f: CardFacts) -> list[str]:
    """Batch sizes, steps, FLOPs, optimizer, schedule, precision and seeds."""
    run, cfg, t = f.run, f.cfg, f.cfg.train
    world = world_size(run)
    accumulate = int(t.batch_size) // max(int(t.micro_batch_size) * world, 1)
    fpt = training_flops_per_token(cfg, run)
    rows = [
        ("Context length", f"{count(cfg.data.seq_len)} tokens"),
        ("Effective batch", f"{count(t.batch_size)} sequences ({count(run.get('tokens_per_step'))} tokens)"),
        ("Micro batch", f"{count(t.micro_batch_size)} sequences x {world} ranks x {accumulate} accumulation steps"),
        ("Steps", f"{count(f.step)} of {count(run.get('max_steps'))}"),
        ("Tokens", count(f.tokens)),
        ("Training FLOPs (estimate, `models/flops.py`)", num(fpt * f.tokens if fpt is not None else None, 4)),
        ("Optimizer", f"AdamW (beta1 {t.beta1}, beta2 {t.beta2}, eps {t.eps})"),
        ("Learning rate", f"{t.lr} peak, {t.min_lr} minimum"),
        ("Schedule", f"{t.warmup_steps} warm-up steps, then {t.schedule}"),
        ("Weight decay", f"{t.weight_decay} (not on {', '.join(t.no_decay)} or 1-D parameters)"),
        ("Gradient clipping", str(t.grad_clip)),
        ("Precision", training_precision(cfg, run)),
        ("Model seed", str(run.get("seed"))),
        ("Data seed", str(run.get("data_seed"))),
    ]
    return ["## Training procedure", "", table(rows, ("", "value")), ""]


def evaluation(f: CardFacts) -> list[str]:
    """Final and best validation numbers, the validation curve, and the latest benchmark metrics."""
    run = f.run
    rows = [
        ("Final validation loss (nats/token)", num(run.get("final_val_loss"))),
        ("Best validation loss", num(run.get("best_val_loss"))),
        ("Final validation bits per byte", num(run.get("final_val_bpb"))),
        ("Final training loss", num(run.get("final_train_loss"))),
    ]
    lines = [
        "## Evaluation results",
        "",
        f"On the held-out {count(f.data.get('val_tokens'))} validation tokens "
        f"({count(f.cfg.train.val_batches)} batches per evaluation):",
        "",
        table(rows, ("metric", "value")),
        "",
    ]
    val = [r for r in f.records if "val/loss" in r]
    if val:
        tps = int(run.get("tokens_per_step") or 0)
        curve = [(count(r["step"]), count(r["step"] * tps), num(r["val/loss"]), num(r.get("val/bpb"))) for r in val]
        lines += [*table_lines(("step", "tokens", "val loss", "val bpb"), curve), ""]
    evals = eval_metrics(f.records)
    if evals:
        metrics = [(f"`{k}`", count(s), num(v)) for k, (s, v) in sorted(evals.items())]
        lines += [*table_lines(("benchmark metric", "step", "value"), metrics), ""]
    return lines


def environmental_impact(f: CardFacts) -> list[str]:
    """Hardware, hours, energy and CO2 (or that they were not metered), location, and every attempt."""
    run, cfg = f.run, f.cfg
    carbon = run.get("carbon") or {}
    duration = run.get("duration_s")
    hours = duration / 3600 if duration is not None else None
    rows = [
        ("Hardware type", hardware_used(run)),
        ("Hours used", f"{num(hours)} h (wall clock, all attempts; x {world_size(run)} devices)"),
    ]
    if carbon:
        rows += [
            ("Energy", f"{num(run.get('energy_kwh'))} kWh"),
            ("Carbon emitted", f"{num(run.get('co2_kg'))} kg CO2eq"),
            ("Carbon source", str(carbon.get("source"))),
            ("Grid carbon intensity", f"{num(carbon.get('intensity_kg_per_kwh'))} kg CO2eq/kWh"),
            ("Carbon intensity source", str(carbon.get("intensity_source") or "codecarbon's country energy mix")),
        ]
    else:
        rows += [("Energy", "not metered (logger.codecarbon=false)"), ("Carbon emitted", "not metered")]
    rows += [
        ("Country / region", location(run, cfg)),
        ("Infrastructure", f"{cfg.cluster.infrastructure} (cluster profile `{cfg.cluster.name}`)"),
        ("Attempts", str(run.get("attempts"))),
    ]
    lines = ["## Environmental Impact", "", table(rows, ("", "value")), "", *_attempts(run)]
    if carbon:
        lines += [
            f"Energy is metered by {carbon.get('source')} (CPU, GPU and RAM power; one tracker per node) and "
            "summed over attempts; CO2eq is that energy times the grid carbon intensity above (see its source).",
            "",
        ]
    return lines


def _attempts(run: Mapping[str, Any]) -> list[str]:
    """One table row per attempt of the run (none without an attempt history)."""
    history = run.get("attempt_history") or []
    if not history:
        return []
    rows = [
        (
            str(h.get("attempt")),
            str(h.get("status")),
            f"{count(h.get('start_step'))}-{count(h.get('end_step'))}",
            num(h["duration_s"] / 3600 if h.get("duration_s") is not None else None),
            num(h.get("energy_kwh")),
            num(h.get("co2_kg")),
        )
        for h in history
    ]
    return [*table_lines(("attempt", "status", "steps", "hours", "energy (kWh)", "CO2eq (kg)"), rows), ""]


def citation(f: CardFacts) -> list[str]:
    """The tool's BibTeX entry and the architecture's paper."""
    lines = ["## Citation", "", "```bibtex"]
    lines += tool_citation(TOOL, f.tool["summary"], f.tool["version"], finished_year(f.run))
    paper = citation_for(f.arch.name)
    if paper:
        lines += ["", paper]
    return [*lines, "```", ""]
