"""How many times a run sees its data: ``plan`` and ``train`` warn above one epoch and refuse above
``data.max_epochs``, naming the run and the numbers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from parcae_runner.data.errors import DataError
from parcae_runner.util.log import log

if TYPE_CHECKING:
    from parcae_runner.config.schema import DataConfig


def epochs_needed(tokens_needed: int, tokens_available: int) -> float:
    """Passes over the training tokens a run makes (``inf`` for an empty corpus)."""
    return tokens_needed / tokens_available if tokens_available > 0 else float("inf")


def check_epochs(
    run: str, tokens_needed: int, tokens_available: int, max_epochs: float, estimate: bool = False
) -> float:
    """The run's epochs; a warning above 1, ``DataError`` above ``max_epochs``. ``estimate``: the available count
    is estimated from the input's size (the corpus is not prepared yet), and the messages say so."""
    epochs = epochs_needed(tokens_needed, tokens_available)
    about = "about " if estimate else ""
    numbers = f"it needs {tokens_needed:,} tokens and the corpus has {about}{tokens_available:,} training tokens"
    if epochs > max_epochs:
        raise DataError(
            f"run {run} would repeat its data {about}{epochs:,.1f} times ({numbers}), above data.max_epochs="
            f"{max_epochs:g}; use a larger corpus or fewer steps, or raise data.max_epochs"
        )
    if epochs > 1:
        log(f"warning: run {run} repeats its data {about}{epochs:.2f} times ({numbers})", "data")
    return epochs


# bytes of input per token for estimates before preparing: byte-level BPE at 32k-50k tokens on English web text
# gives about 4.2 (GPT-2 on OpenWebText); 4.0 errs on the side of more tokens, so a refusal is never an artefact
ESTIMATE_BYTES_PER_TOKEN = 4.0


@dataclass
class Availability:
    """Training tokens a data config offers (in whole windows of ``seq_len``) and the model vocabulary it implies.

    ``estimate``: not prepared yet, so counted from the input's size (``ESTIMATE_BYTES_PER_TOKEN``) or, where
    ``published`` says so, taken from the corpus's published size (``data/published.py``: ``plan`` without the data)."""

    tokens: int
    model_vocab_size: int
    estimate: bool
    description: str
    published: str | None = None


def _window_tokens(shard_tokens: list[int], seq_len: int, overlap: bool) -> int:
    stride = seq_len if overlap else seq_len + 1
    return sum((n - 1 - seq_len) // stride + 1 for n in shard_tokens if n > seq_len) * seq_len


def availability(cfg: DataConfig) -> Availability:
    """What ``plan`` needs to know of ``cfg``'s data, checking it on the way (``DataError`` for bad input): exact
    from the prepared manifest when it exists (the embedded corpus is prepared here: seconds), else estimated."""
    from parcae_runner.data.prepare import MANIFEST, plan_data, prepare_data
    from parcae_runner.data.pretrained import padded_vocab_size

    plan = plan_data(cfg)
    if not (plan.final / MANIFEST).is_file() and plan.source.name == "embedded":
        prepare_data(cfg, progress=False, plan=plan)
    if (plan.final / MANIFEST).is_file():
        manifest = json.loads((plan.final / MANIFEST).read_text())
        tokens = _window_tokens([s["train"]["tokens"] for s in manifest["shards"]], cfg.seq_len, cfg.chunk_overlap)
        return Availability(tokens, int(manifest["model_vocab_size"]), False, plan.source.describe())
    size = plan.source.size_bytes()
    tokens = int((size or 0) / ESTIMATE_BYTES_PER_TOKEN * (1 - cfg.val_fraction))
    if plan.pretrained is not None:
        vocab = cfg.vocab_size or padded_vocab_size(plan.pretrained.tokenizer.get_vocab_size(), cfg.pad_vocab_multiple)
    else:
        vocab = padded_vocab_size(int(cfg.vocab_size or 0), cfg.pad_vocab_multiple)
    return Availability(tokens, int(vocab), True, plan.source.describe())
