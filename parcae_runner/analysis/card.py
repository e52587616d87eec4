"""Model cards: a Hugging Face-style ``card.md`` for one run, written from the run directory alone.

``render_card(run_dir)`` reads ``config.yaml``, ``run.json``, ``metrics.jsonl`` (and the sweep's
``sweep.json`` when there is one) and returns Markdown with YAML front matter (license, library,
tags, datasets, ``model-index`` with the validation results, ``co2_eq_emissions``) followed by the
sections of the Hugging Face model-card template: description, architecture, training data,
training procedure, evaluation, environmental impact, how to use, citation.

Every number comes from those files (or from the architecture registry and the package metadata,
which are code, not typing): a card can be regenerated at any time and always agrees with
``run.json``. ``write_card(run_dir)`` writes it as ``<run_dir>/card.md``, which ``parcae-runner
export`` copies into every exported folder as ``README.md``.
"""

from __future__ import annotations

import importlib.metadata
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from parcae_runner.runs import RunDirectory
from parcae_runner.util.files import atomic_write_text

CARD_FILE = "card.md"
TOOL = "parcae-runner"

# BibTeX of the paper behind each architecture. Papers are reference data, not run data; they are
# looked up on the registry's Architecture first (a ``citation`` attribute, should it grow one), so
# this table is only the fallback for the architectures that exist today.
ARCHITECTURE_CITATIONS: dict[str, str] = {
    "pythia": """@inproceedings{biderman2023pythia,
  title = {Pythia: A Suite for Analyzing Large Language Models Across Training and Scaling},
  author = {Biderman, Stella and Schoelkopf, Hailey and Anthony, Quentin and others},
  booktitle = {Proceedings of the 40th International Conference on Machine Learning (ICML)},
  year = {2023},
  eprint = {2304.01373},
  archivePrefix = {arXiv}
}""",
    "mamba": """@article{gu2023mamba,
  title = {Mamba: Linear-Time Sequence Modeling with Selective State Spaces},
  author = {Gu, Albert and Dao, Tri},
  journal = {arXiv preprint arXiv:2312.00752},
  year = {2023}
}""",
    "rwkv4": """@inproceedings{peng2023rwkv,
  title = {{RWKV}: Reinventing {RNN}s for the Transformer Era},
  author = {Peng, Bo and Alcaide, Eric and Anthony, Quentin and others},
  booktitle = {Findings of the Association for Computational Linguistics: EMNLP 2023},
  year = {2023},
  eprint = {2305.13048},
  archivePrefix = {arXiv}
}""",
}


def num(value: Any, digits: int = 6) -> str:
    """One format for every measured float in a card: ``digits`` significant digits (``n/a`` if missing).

    Significant digits, not decimals, because the values span ten orders of magnitude (kWh of a
    debug run to FLOPs); the card test parses these strings back and compares them with run.json.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.{digits}g}"


def count(value: Any) -> str:
    """Integers (parameters, tokens, steps) with thousands separators."""
    return "n/a" if value is None else f"{int(value):,}"


def _table(rows: list[tuple[str, str]], header: tuple[str, str] = ("", "")) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def _read(run_dir: Path) -> tuple[RunDirectory, DictConfig, dict[str, Any], list[dict[str, Any]]]:
    rd = RunDirectory(Path(run_dir))
    cfg = rd.read_config()
    run = rd.read_run()
    if cfg is None or not run:
        raise FileNotFoundError(f"{run_dir}: not a run directory (needs config.yaml and run.json)")
    return rd, cfg, run, rd.read_metrics()


def _sweep_info(run_dir: Path) -> dict[str, Any]:
    """The sweep's ``sweep.json`` (question, swept keys), when the run belongs to a launched sweep."""
    path = Path(run_dir).parent / "sweep.json"
    if not path.exists():
        return {}
    try:
        return yaml.safe_load(path.read_text()) or {}  # JSON is YAML; no second parser needed
    except yaml.YAMLError:
        return {}


def _tool_metadata() -> dict[str, str]:
    try:
        md = importlib.metadata.metadata(TOOL)
    except importlib.metadata.PackageNotFoundError:  # a source checkout that was never installed
        return {"version": "unknown", "license": "other", "summary": ""}
    return {
        "version": md["Version"],
        "license": (md.get("License-Expression") or md.get("License") or "other").lower(),
        "summary": md.get("Summary") or "",
    }


def _precision(cfg: DictConfig, run: dict[str, Any]) -> str:
    """The precision the run trained in. ``auto`` is resolved as ``runner.resolve_precision`` did,
    from the accelerator run.json recorded (the card may be written on another machine)."""
    chosen = str(cfg.train.precision)
    if chosen != "auto":
        return chosen
    on_gpu = (run.get("hardware") or {}).get("accelerator") == "gpu"
    return f"auto ({'bf16-mixed' if on_gpu else '32-true'})"


def _flops_per_token(cfg: DictConfig, run: dict[str, Any]) -> float | None:
    """Training FLOPs per token (``analysis/flops.py``), through the collector's cached meta-device build."""
    from parcae_runner.analysis.collect import flops_per_token

    fpt = flops_per_token(
        OmegaConf.to_container(cfg.arch, resolve=True), cfg.size.name, run["data"]["vocab_size"], cfg.data.seq_len
    )
    return None if math.isnan(fpt) else fpt


def _world_size(run: dict[str, Any]) -> int:
    """Data-parallel ranks: run.json's ``hardware.devices`` is Lightning's world size (all nodes)."""
    return int((run.get("hardware") or {}).get("devices") or 1)


def _hardware_used(run: dict[str, Any]) -> str:
    hw = run.get("hardware") or {}
    nodes = int(hw.get("num_nodes") or 1)
    kind = "GPU" if hw.get("accelerator") == "gpu" else "CPU process"
    where = f" on {nodes} nodes" if nodes > 1 else ""
    return f"{_world_size(run)} x {hw.get('device_name', 'unknown')} ({kind}){where}"


def _location(run: dict[str, Any], cfg: DictConfig) -> str:
    carbon = run.get("carbon") or {}
    country = carbon.get("country") or cfg.cluster.country_iso_code
    region = carbon.get("region") or cfg.cluster.region
    return f"{region}, {country}" if region else str(country)


def _citation(arch_name: str) -> str | None:
    from parcae_runner.models import get_architecture

    try:
        cited = getattr(get_architecture(arch_name), "citation", None)
    except KeyError:
        cited = None
    return cited or ARCHITECTURE_CITATIONS.get(arch_name)


def _finished_year(run: dict[str, Any]) -> int:
    when = run.get("finished_at") or run.get("started_at")
    return datetime.fromtimestamp(float(when), tz=UTC).year if when else datetime.now(tz=UTC).year


def _latest_checkpoint(rd: RunDirectory) -> int | None:
    from parcae_runner.runs import list_checkpoints

    found = list_checkpoints(rd.checkpoints)
    return found[-1][0] if found else None


def _eval_metrics(records: list[dict[str, Any]]) -> dict[str, tuple[int, float]]:
    """The last value of every ``eval/...`` key in metrics.jsonl, with its step."""
    out: dict[str, tuple[int, float]] = {}
    for rec in records:
        for key, value in rec.items():
            if key.startswith("eval/") and isinstance(value, (int, float)):
                out[key] = (int(rec.get("step", 0)), float(value))
    return out


def front_matter(cfg: DictConfig, run: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The card's YAML metadata, as the Hugging Face Hub reads it."""
    from parcae_runner.export.hf import EXPORTERS

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
    for key, (_, value) in _eval_metrics(records).items():
        metrics.append({"type": key.removeprefix("eval/"), "name": key, "value": value, "verified": False})

    meta: dict[str, Any] = {
        "license": _tool_metadata()["license"],
        # exported folders load with transformers; architectures without an exporter are plain torch
        "library_name": "transformers" if run["arch"] in EXPORTERS else "pytorch",
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
            "geographical_location": _location(run, cfg),
            "hardware_used": _hardware_used(run),
        }
    return meta


def _how_to_use(rd: RunDirectory, cfg: DictConfig, run: dict[str, Any], name: str, step: int) -> list[str]:
    """Loading instructions: transformers on an export where the architecture has an HF exporter, else our loader."""
    from parcae_runner.export.hf import EXPORTERS

    ckpt = _latest_checkpoint(rd)
    ckpt = ckpt if ckpt is not None else step
    run_path = Path(str(cfg.results_dir)) / str(run.get("sweep")) / name
    if run["arch"] not in EXPORTERS:
        return [
            "## How to use",
            "",
            f"`{run['arch']}` has no Hugging Face exporter yet: load a checkpoint (here the newest, step {ckpt}) "
            f"with `{TOOL}`:",
            "",
            "```python",
            "from parcae_runner.export.run_export import checkpoint_path, load_checkpoint_model, open_run",
            "",
            f'rd, cfg, run = open_run("{run_path}")',
            f"model = load_checkpoint_model(rd, cfg, run, checkpoint_path(rd, {ckpt})[1])",
            "logits = model(input_ids)  # [batch, seq, vocab]",
            "```",
            "",
        ]
    export_dir = run_path / "hf" / f"checkpoint-{ckpt}"
    return [
        "## How to use",
        "",
        f"Export a checkpoint as a Hugging Face folder (this card becomes its `README.md`; default: the newest, "
        f"step {ckpt}):",
        "",
        "```bash",
        f"parcae-runner export {run_path} --format hf",
        "```",
        "",
        "then load it with `transformers`:",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'model = AutoModelForCausalLM.from_pretrained("{export_dir}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{export_dir}")',
        'inputs = tokenizer("def main():", return_tensors="pt")',
        "print(tokenizer.decode(model.generate(**inputs, max_new_tokens=32)[0]))",
        "```",
        "",
        f"`parcae-runner export {run_path} --all-checkpoints` writes every saved checkpoint "
        "(`checkpoint-N`), and `train.init_from=<folder>` starts a new run from an exported one.",
        "",
    ]


def render_card(run_dir: Path) -> str:
    """The model card of the run in ``run_dir`` as Markdown with YAML front matter."""
    from parcae_runner.models import get_architecture

    rd, cfg, run, records = _read(run_dir)
    arch = get_architecture(str(run["arch"]))
    size = str(run["size"])
    dims = dict(arch.sizes.get(size, {}))
    tool = _tool_metadata()
    sweep = _sweep_info(rd.path)
    data = run.get("data") or {}
    t = cfg.train
    name = str(run.get("run_name") or rd.path.name)
    step, tokens = int(run.get("step") or 0), int(run.get("tokens") or 0)
    fpt = _flops_per_token(cfg, run)

    parts = ["---", yaml.safe_dump(front_matter(cfg, run, records), sort_keys=False).rstrip(), "---", ""]

    # -- description
    parts += [
        f"# {name}",
        "",
        f"A `{size}` **{arch.name}** language model ({arch.description or 'no description'}) trained from scratch "
        f"with `{TOOL}` {tool['version']} as run `{name}` of the sweep `{run.get('sweep')}`: "
        f"{count(step)} of {count(run.get('max_steps'))} steps, {count(tokens)} tokens. "
        f"Model seed {run.get('seed')}, data seed {run.get('data_seed')}.",
        "",
    ]
    if run.get("status") != "done":
        parts += [
            f"> **Unfinished run**: status `{run.get('status')}`"
            + (f" ({run['error']})" if run.get("error") else "")
            + ".",
            "",
        ]
    if sweep.get("question"):
        parts += [f"The sweep asks: {sweep['question']}", ""]

    # -- architecture and size
    arch_rows = [("Architecture", f"`{arch.name}`: {arch.description}"), ("Size", f"`{size}`")]
    arch_rows += [(f"`{k}`", count(v) if isinstance(v, int) else str(v)) for k, v in dims.items()]
    arch_rows += [
        ("Parameters", count(run.get("params"))),
        ("Non-embedding parameters", count(run.get("params_non_embedding"))),
        ("Vocabulary", count(data.get("vocab_size"))),
        ("Context length", count(cfg.data.seq_len)),
    ]
    hparams = {k: v for k, v in OmegaConf.to_container(cfg.arch, resolve=True).items() if k != "name"}
    arch_rows += [(f"`arch.{k}`", f"`{v}`") for k, v in hparams.items()]
    parts += [
        "## Architecture and size",
        "",
        _table(arch_rows, ("", "value")),
        "",
        "Non-embedding parameters leave out the token embedding and the output head (Kaplan et al., Pythia). "
        "The dims are the registry's for this size.",
        "",
    ]

    # -- training data
    source = str(cfg.data.source) + (f" (`{cfg.data.path}`)" if cfg.data.get("path") else "")
    epochs = tokens / data["train_tokens"] if data.get("train_tokens") else None
    digests = [h.get("batch_digest") for h in run.get("attempt_history", []) if h.get("batch_digest")]
    data_rows = [
        ("Source", source),
        ("Tokenizer", f"byte-level BPE trained on the training documents, {count(data.get('vocab_size'))} tokens"),
        ("Training tokens available", count(data.get("train_tokens"))),
        ("Validation tokens", count(data.get("val_tokens"))),
        ("Validation fraction (of documents)", num(cfg.data.val_fraction)),
        ("Tokens trained on", f"{count(tokens)} ({num(epochs, 4)} epochs)"),
        ("Data hash", f"`{data.get('hash')}`"),
        ("Data seed", str(run.get("data_seed"))),
    ]
    if digests:
        data_rows.append(("Digest of the batches seen", ", ".join(f"`{d}`" for d in digests)))
    parts += [
        "## Training data",
        "",
        _table(data_rows, ("", "value")),
        "",
        "**Same data, same order.** The training sequence at every position of the run is a pure function of "
        f"the data seed ({run.get('data_seed')}) and the position; the model seed changes only the initialisation. "
        "Every run with this data hash and data seed, whatever its architecture or model seed, saw the same tokens "
        "in the same order, so differences between such runs come from the model alone.",
        "",
    ]

    # -- training procedure
    world = _world_size(run)
    accumulate = int(t.batch_size) // max(int(t.micro_batch_size) * world, 1)
    proc_rows = [
        ("Context length", f"{count(cfg.data.seq_len)} tokens"),
        ("Effective batch", f"{count(t.batch_size)} sequences ({count(run.get('tokens_per_step'))} tokens)"),
        ("Micro batch", f"{count(t.micro_batch_size)} sequences x {world} ranks x {accumulate} accumulation steps"),
        ("Steps", f"{count(step)} of {count(run.get('max_steps'))}"),
        ("Tokens", count(tokens)),
        ("Training FLOPs (estimate, `analysis/flops.py`)", num(fpt * tokens if fpt is not None else None, 4)),
        ("Optimizer", f"AdamW (beta1 {t.beta1}, beta2 {t.beta2}, eps {t.eps})"),
        ("Learning rate", f"{t.lr} peak, {t.min_lr} minimum"),
        ("Schedule", f"{t.warmup_steps} warm-up steps, then {t.schedule}"),
        ("Weight decay", f"{t.weight_decay} (not on {', '.join(t.no_decay)} or 1-D parameters)"),
        ("Gradient clipping", str(t.grad_clip)),
        ("Precision", _precision(cfg, run)),
        ("Model seed", str(run.get("seed"))),
        ("Data seed", str(run.get("data_seed"))),
    ]
    parts += ["## Training procedure", "", _table(proc_rows, ("", "value")), ""]

    # -- evaluation
    eval_rows = [
        ("Final validation loss (nats/token)", num(run.get("final_val_loss"))),
        ("Best validation loss", num(run.get("best_val_loss"))),
        ("Final validation bits per byte", num(run.get("final_val_bpb"))),
        ("Final training loss", num(run.get("final_train_loss"))),
    ]
    parts += [
        "## Evaluation results",
        "",
        f"On the held-out {count(data.get('val_tokens'))} validation tokens "
        f"({count(t.val_batches)} batches per evaluation):",
        "",
        _table(eval_rows, ("metric", "value")),
        "",
    ]
    val = [r for r in records if "val/loss" in r]
    if val:
        tps = int(run.get("tokens_per_step") or 0)
        parts += ["| step | tokens | val loss | val bpb |", "|---|---|---|---|"]
        parts += [
            f"| {count(r['step'])} | {count(r['step'] * tps)} | {num(r['val/loss'])} | {num(r.get('val/bpb'))} |"
            for r in val
        ]
        parts.append("")
    evals = _eval_metrics(records)
    if evals:
        parts += ["| benchmark metric | step | value |", "|---|---|---|"]
        parts += [f"| `{k}` | {count(s)} | {num(v)} |" for k, (s, v) in sorted(evals.items())]
        parts.append("")

    # -- environmental impact
    carbon = run.get("carbon") or {}
    duration = run.get("duration_s")
    hours = duration / 3600 if duration is not None else None
    env_rows = [
        ("Hardware type", _hardware_used(run)),
        ("Hours used", f"{num(hours)} h (wall clock, all attempts; x {_world_size(run)} devices)"),
    ]
    if carbon:
        env_rows += [
            ("Energy", f"{num(run.get('energy_kwh'))} kWh"),
            ("Carbon emitted", f"{num(run.get('co2_kg'))} kg CO2eq"),
            ("Carbon source", str(carbon.get("source"))),
            ("Grid carbon intensity", f"{num(carbon.get('intensity_kg_per_kwh'))} kg CO2eq/kWh"),
        ]
    else:
        env_rows += [("Energy", "not metered (logger.codecarbon=false)"), ("Carbon emitted", "not metered")]
    env_rows += [
        ("Country / region", _location(run, cfg)),
        ("Infrastructure", f"{cfg.cluster.infrastructure} (cluster profile `{cfg.cluster.name}`)"),
        ("Attempts", str(run.get("attempts"))),
    ]
    parts += ["## Environmental Impact", "", _table(env_rows, ("", "value")), ""]
    history = run.get("attempt_history") or []
    if history:
        parts += ["| attempt | status | steps | hours | energy (kWh) | CO2eq (kg) |", "|---|---|---|---|---|---|"]
        parts += [
            f"| {h.get('attempt')} | {h.get('status')} | {count(h.get('start_step'))}-{count(h.get('end_step'))} "
            f"| {num(h['duration_s'] / 3600 if h.get('duration_s') is not None else None)} "
            f"| {num(h.get('energy_kwh'))} | {num(h.get('co2_kg'))} |"
            for h in history
        ]
        parts.append("")
    if carbon:
        parts += [
            f"Energy is metered by {carbon.get('source')} (CPU, GPU and RAM power; one tracker per node) and "
            "summed over attempts; CO2eq is that energy times the grid intensity of the location above.",
            "",
        ]

    # -- how to use
    parts += _how_to_use(rd, cfg, run, name, step)

    # -- citation
    parts += [
        "## Citation",
        "",
        "```bibtex",
        f"@misc{{{TOOL.replace('-', '_')},",
        f"  title = {{{{{TOOL}}}: {tool['summary'].rstrip('.')}}},",
        f"  note = {{Version {tool['version']}}},",
        f"  year = {{{_finished_year(run)}}}",
        "}",
    ]
    paper = _citation(arch.name)
    if paper:
        parts += ["", paper]
    parts += ["```", ""]
    return "\n".join(parts)


def write_card(run_dir: Path) -> Path:
    """Render the card of ``run_dir`` and write it (atomically) as ``<run_dir>/card.md``."""
    path = Path(run_dir) / CARD_FILE
    atomic_write_text(path, render_card(Path(run_dir)))
    return path
