"""The card's "How to use" section: transformers on an exported folder where the architecture has a
Hugging Face exporter, else the package's own checkpoint loader."""

from __future__ import annotations

from pathlib import Path

from parcae_runner.analysis.card.facts import TOOL, CardFacts, latest_checkpoint


def how_to_use(f: CardFacts) -> list[str]:
    """Loading instructions for the newest checkpoint (the last step when none is saved)."""
    from parcae_runner.models.hf import hf_mappings

    run = f.run
    ckpt = latest_checkpoint(f.rd)
    ckpt = ckpt if ckpt is not None else f.step
    run_path = Path(str(f.cfg.results_dir)) / str(run.get("sweep")) / f.name
    if run["arch"] not in hf_mappings():
        return _with_checkpoint_loader(run["arch"], run_path, ckpt)
    return _with_transformers(run_path, ckpt)


def _with_checkpoint_loader(arch: str, run_path: Path, ckpt: int) -> list[str]:
    return [
        "## How to use",
        "",
        f"`{arch}` has no Hugging Face exporter yet: load a checkpoint (here the newest, step {ckpt}) with `{TOOL}`:",
        "",
        "```python",
        "from parcae_runner.runs import load_model",
        "",
        f'model = load_model("{run_path}", step={ckpt})',
        "logits = model(input_ids)  # [batch, seq, vocab]",
        "```",
        "",
    ]


def _with_transformers(run_path: Path, ckpt: int) -> list[str]:
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
