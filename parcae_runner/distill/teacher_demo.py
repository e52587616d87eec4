"""The CPU demo's teacher: a small Qwen2-style GQA model (4 query heads over 2 key/value heads) trained briefly on the
demo data, saved once as a Hugging Face folder that every demo run reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from parcae_runner.distill.data import TokenStreams, train_batch
from parcae_runner.util.log import log


def ensure_demo_teacher(folder: Path, data: TokenStreams, seq_len: int, steps: int) -> Path:
    """Train and save the demo teacher into ``folder`` unless it is there already; returns ``folder``."""
    if (folder / "config.json").is_file():
        return folder
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    # transformers wraps the config dataclass's __init__ to take the fields it does not declare, as head_dim
    config = Qwen2Config(  # type: ignore[call-arg]
        vocab_size=data.vocab_size,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=max(4 * seq_len, 256),
        tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for step in range(steps):
        x, y = train_batch(data, seq_len, 16, seed=10_000, step=step)
        loss = F.cross_entropy(model(x).logits.flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"demo teacher step {step}: loss {loss.item():.3f}", "distill")
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.eval().save_pretrained(tmp)
    tmp.replace(folder)
    return folder
