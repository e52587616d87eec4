"""Hugging Face export: write one of our models as a folder that transformers loads.

``export_hf(model, out_dir)`` writes a folder that ``transformers.AutoModelForCausalLM.from_pretrained``
(and, given a ``tokenizer.json``, ``AutoTokenizer.from_pretrained``) loads. The mapping of each architecture
is its registry spec's ``hf`` module (``parcae_runner/models/<name>/hf.py``); reading a folder back
(``import_hf``, ``load_hf``, ``init_from_hf``) is ``parcae_runner.models.hf``, so that training needs no export.

``transformers`` is an optional dependency: it is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from parcae_runner.data.tokenizer import EOT_ID
from parcae_runner.export.remote_code import export_remote, has_remote_code
from parcae_runner.models.hf import exporter_for, hf_mappings


def export_hf(
    model: nn.Module,
    out_dir: str | Path,
    tokenizer_path: str | Path | None = None,
    bos_token_id: int = EOT_ID,
    eos_token_id: int = EOT_ID,
    card_text: str | None = None,
    **config_overrides: Any,
) -> Path:
    """Write ``model`` as an HF checkpoint folder: ``config.json`` + ``model.safetensors`` (+ tokenizer, README).

    The weights are saved in the model's dtype through the HF model's ``save_pretrained``, after a strict
    ``load_state_dict`` of our renamed weights (so every HF parameter is accounted for). ``tokenizer_path``
    (a ``tokenizers`` ``tokenizer.json``) is saved as a ``PreTrainedTokenizerFast`` with the ``bos`` / ``eos``
    tokens named by the ids; ``card_text`` becomes ``README.md``. ``config_overrides`` go to the exporter's
    ``to_hf_config`` (e.g. ``context_length=1024`` for RWKV, ``max_position_embeddings`` for GPT-NeoX).
    """
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    arch_name = getattr(getattr(model, "hparams", None), "name", None)
    if arch_name not in hf_mappings() and has_remote_code(str(arch_name)):
        export_remote(
            model, str(arch_name), out, bos_token_id=bos_token_id, eos_token_id=eos_token_id, **config_overrides
        )
        _finish(out, tokenizer_path, bos_token_id, eos_token_id, card_text)
        return out
    _, exporter = exporter_for(model)
    out.mkdir(parents=True, exist_ok=True)
    config = exporter.to_hf_config(model, bos_token_id=bos_token_id, eos_token_id=eos_token_id, **config_overrides)
    # built on meta and given our tensors (assign=True): no second copy of the weights, no HF init pass
    with torch.device("meta"):
        hf = AutoModelForCausalLM.from_config(config)
    state = {k: v.detach().cpu() for k, v in exporter.to_hf_state_dict(model).items()}
    hf.load_state_dict(state, strict=True, assign=True)
    if config.tie_word_embeddings:
        hf.tie_weights()  # assign=True gave the tied names two Parameter objects; make them one again
    hf.save_pretrained(out)
    _finish(out, tokenizer_path, bos_token_id, eos_token_id, card_text)
    return out


def _finish(
    out: Path, tokenizer_path: str | Path | None, bos_token_id: int, eos_token_id: int, card_text: str | None
) -> None:
    if tokenizer_path is not None:
        _save_tokenizer(Path(tokenizer_path), out, bos_token_id, eos_token_id)
    if card_text is not None:
        (out / "README.md").write_text(card_text)


def _save_tokenizer(tokenizer_path: Path, out: Path, bos_token_id: int, eos_token_id: int) -> None:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer.from_file(str(tokenizer_path))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token=tk.id_to_token(bos_token_id),
        eos_token=tk.id_to_token(eos_token_id),
        # byte-level BPE decodes exactly; HF's clean-up would rewrite " ." as "."
        clean_up_tokenization_spaces=False,
    )
    tokenizer.save_pretrained(out)
