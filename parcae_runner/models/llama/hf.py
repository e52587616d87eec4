"""The Hugging Face side of ``llama``: ``transformers.LlamaForCausalLM``, both ways (plain renames).

``mistral`` shares this mapping (``MistralForCausalLM`` has LLaMA's names plus ``sliding_window``).
"""

from __future__ import annotations

import importlib
from typing import Any

from parcae_runner.models.llama.model import LlamaHParams
from parcae_runner.models.transformer.config import TransformerHParams
from parcae_runner.models.transformer.hf import Target, common_dims, require

TARGET = Target(
    "LLaMA",
    [
        (r"^embed\.", "model.embed_tokens."),
        (r"^blocks\.(\d+)\.ln1\.", r"model.layers.\1.input_layernorm."),
        (r"^blocks\.(\d+)\.attn\.q\.", r"model.layers.\1.self_attn.q_proj."),
        (r"^blocks\.(\d+)\.attn\.k\.", r"model.layers.\1.self_attn.k_proj."),
        (r"^blocks\.(\d+)\.attn\.v\.", r"model.layers.\1.self_attn.v_proj."),
        (r"^blocks\.(\d+)\.attn\.o\.", r"model.layers.\1.self_attn.o_proj."),
        (r"^blocks\.(\d+)\.ln2\.", r"model.layers.\1.post_attention_layernorm."),
        (r"^blocks\.(\d+)\.mlp\.gate\.", r"model.layers.\1.mlp.gate_proj."),
        (r"^blocks\.(\d+)\.mlp\.up\.", r"model.layers.\1.mlp.up_proj."),
        (r"^blocks\.(\d+)\.mlp\.down\.", r"model.layers.\1.mlp.down_proj."),
        (r"^norm\.", "model.norm."),
        (r"^lm_head\.", "lm_head."),
    ],
)

CONTEXT_KEY: str | None = "max_position_embeddings"


def llama_config(model: Any, config_cls: str, overrides: dict[str, Any], windowed: bool) -> Any:
    """The LLaMA-style config (``LlamaConfig`` or ``MistralConfig``) of ``model``."""
    wanted: dict[str, Any] = {
        "norm": "rmsnorm",
        "norm_position": "pre",
        "position": "rope",
        "rotary_fraction": 1.0,
        "mlp": "swiglu",
        "residual": "serial",
        "embed_norm": False,
    }
    if not windowed:
        wanted["sliding_window"] = None
    hp = require(model, config_cls.removesuffix("Config") + "ForCausalLM", wanted)
    dims = model.dims
    fields = dict(
        vocab_size=int(model.vocab_size),
        hidden_size=int(dims["d_model"]),
        num_hidden_layers=int(dims["n_layers"]),
        num_attention_heads=int(dims["n_heads"]),
        num_key_value_heads=int(model.blocks[0].attn.n_kv_heads),
        head_dim=int(model.blocks[0].attn.head_dim),
        intermediate_size=int(model.blocks[0].mlp.up.out_features),
        hidden_act="silu",
        rms_norm_eps=float(hp.norm_eps),
        rope_parameters={"rope_type": "default", "rope_theta": float(hp.rope_base)},
        attention_bias=bool(hp.bias),
        tie_word_embeddings=bool(hp.tie_embeddings),
        initializer_range=float(hp.init_std),
        attention_dropout=0.0,
        attn_implementation="sdpa",
    )
    if config_cls == "LlamaConfig":
        fields["mlp_bias"] = bool(hp.bias)
    elif hp.bias:
        raise ValueError("arch.bias=True: MistralForCausalLM has no biases")
    if windowed:
        fields["sliding_window"] = hp.sliding_window
    return getattr(importlib.import_module("transformers"), config_cls)(**{**fields, **overrides})


def llama_hparams(config: Any, hparams_cls: type[TransformerHParams]) -> tuple[Any, dict[str, int]]:
    """Our hparams and dims of a ``LlamaConfig`` / ``MistralConfig``."""
    if config.hidden_act != "silu":
        raise ValueError(f"{type(config).__name__}.hidden_act={config.hidden_act!r}: only 'silu' (SwiGLU)")
    d_model, n_heads = int(config.hidden_size), int(config.num_attention_heads)
    if getattr(config, "head_dim", None) not in (None, d_model // n_heads):
        raise ValueError(f"head_dim={config.head_dim}: ours is hidden_size / num_attention_heads")
    rope = config.rope_parameters
    if rope.get("rope_type", "default") != "default" or rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError(f"rope_parameters={rope}: only the default full rotary is supported")
    extra = {"sliding_window": config.sliding_window} if hasattr(config, "sliding_window") else {}
    hparams = hparams_cls(
        norm_eps=float(config.rms_norm_eps),
        rope_base=float(rope["rope_theta"]),
        mlp_ratio=int(config.intermediate_size) / d_model,
        mlp_multiple_of=1,
        tie_embeddings=bool(config.tie_word_embeddings),
        bias=bool(config.attention_bias),
        init_std=float(config.initializer_range),
        **extra,
    )
    dims = common_dims(config.num_hidden_layers, d_model, n_heads, config.num_key_value_heads)
    return hparams, dims


def to_hf_config(model: Any, **overrides: Any) -> Any:
    return llama_config(model, "LlamaConfig", overrides, windowed=False)


def from_hf_config(config: Any) -> tuple[LlamaHParams, dict[str, int]]:
    return llama_hparams(config, LlamaHParams)


hf_name = TARGET.hf_name
to_hf_state_dict = TARGET.state_dict
from_hf_state_dict = TARGET.from_hf_state_dict
