"""``parcae-runner senses <run> WORD...``: what each Backpack sense of a word predicts.

A Backpack's sense vector ``C(x)_l`` is context-free and lives in the output space, so ``E C(x)_l`` (the tied
embedding times the sense) scores the vocabulary: its top tokens say what that sense adds wherever the word
occurs (Hewitt et al., 2023, section 6; the Backpack demo's sense visualisation).
"""

from __future__ import annotations

from pathlib import Path

import torch

from parcae_runner.config.errors import ConfigError
from parcae_runner.models.abilities import SenseVectors
from parcae_runner.runs import checkpoint_path, open_run
from parcae_runner.runs.checkpoints import load_checkpoint_model


def sense_rows(model: SenseVectors, token_id: int, top: int) -> list[list[int]]:
    """The ``top`` token ids each of the ``k`` senses of ``token_id`` scores highest: ``k`` lists."""
    with torch.no_grad():
        senses = model.sense_vectors(torch.tensor([[token_id]]))[0, :, 0]  # [k, d]
        scores = senses @ model.embed.weight.T  # [k, V]
    return scores.topk(top, dim=-1).indices.tolist()


def sense_table(run_dir: str | Path, words: list[str], top: int = 8, checkpoint: int | None = None) -> list[str]:
    """One line per (word, sense): ``word  sense l: tok tok ...``; a word of several tokens uses its first."""
    from tokenizers import Tokenizer

    rd, cfg, run = open_run(run_dir)
    model = load_checkpoint_model(rd, cfg, run, checkpoint_path(rd, checkpoint)[1])
    if not isinstance(model, SenseVectors):
        raise ConfigError("run_dir", str(run_dir), f"a backpack run (this one is {cfg.arch.name})")
    tokenizer = Tokenizer.from_file(str(Path(run.data_info["dir"]) / "tokenizer.json"))
    lines = []
    for word in words:
        ids = tokenizer.encode(word).ids
        if not ids:
            raise ConfigError("WORD", repr(word), "a word the run's tokenizer encodes to at least one token")
        shown = word if len(ids) == 1 else f"{word} ({tokenizer.decode(ids[:1])!r}, first of {len(ids)} tokens)"
        for sense, row in enumerate(sense_rows(model, ids[0], top)):
            lines.append(f"{shown}\tsense {sense}: " + " ".join(repr(tokenizer.decode([t])) for t in row))
    return lines
