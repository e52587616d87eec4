"""The Hugging Face side of ``mistral``: ``transformers.MistralForCausalLM`` (LLaMA's names + sliding window)."""

from __future__ import annotations

from typing import Any

from parcae_runner.models.llama.hf import TARGET, llama_config, llama_hparams
from parcae_runner.models.mistral.model import MistralHParams

CONTEXT_KEY: str | None = "max_position_embeddings"


def to_hf_config(model: Any, **overrides: Any) -> Any:
    return llama_config(model, "MistralConfig", overrides, windowed=True)


def from_hf_config(config: Any) -> tuple[MistralHParams, dict[str, int]]:
    return llama_hparams(config, MistralHParams)


hf_name = TARGET.hf_name
to_hf_state_dict = TARGET.state_dict
from_hf_state_dict = TARGET.from_hf_state_dict
