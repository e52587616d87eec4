"""The Hugging Face side of ``bloom``: ``transformers.BloomForCausalLM``, both ways.

BLOOM fuses q, k, v per head (``query_key_value`` viewed as ``[H, 3, D]``, as Megatron-DeepSpeed wrote it).
"""

from __future__ import annotations

from typing import Any

from parcae_runner.models.bloom.model import BloomHParams
from parcae_runner.models.transformer.hf import Target, common_dims, require

TARGET = Target(
    "BLOOM",
    [
        (r"^embed\.", "transformer.word_embeddings."),
        (r"^embed_norm\.", "transformer.word_embeddings_layernorm."),
        (r"^blocks\.(\d+)\.ln1\.", r"transformer.h.\1.input_layernorm."),
        (r"^blocks\.(\d+)\.attn\.o\.", r"transformer.h.\1.self_attention.dense."),
        (r"^blocks\.(\d+)\.ln2\.", r"transformer.h.\1.post_attention_layernorm."),
        (r"^blocks\.(\d+)\.mlp\.up\.", r"transformer.h.\1.mlp.dense_h_to_4h."),
        (r"^blocks\.(\d+)\.mlp\.down\.", r"transformer.h.\1.mlp.dense_4h_to_h."),
        (r"^norm\.", "transformer.ln_f."),
        (r"^lm_head\.", "lm_head."),
    ],
    fused_qkv="transformer.h.{i}.self_attention.query_key_value.{kind}",
    per_head=True,
)

# ALiBi has no maximum length
CONTEXT_KEY: str | None = None


def to_hf_config(model: Any, **overrides: Any) -> Any:
    """The ``BloomConfig`` of ``model`` (its MLP is always 4x: ``mlp_ratio`` must be 4)."""
    from transformers import BloomConfig

    hp = require(
        model,
        "BloomForCausalLM",
        {
            "norm": "layernorm",
            "norm_position": "pre",
            "embed_norm": True,
            "position": "alibi",
            "mlp": "gelu_tanh",
            "mlp_ratio": 4.0,
            "residual": "serial",
            "bias": True,
            "sliding_window": None,
            "mha": True,
        },
    )
    dims = model.dims
    fields = dict(
        vocab_size=int(model.vocab_size),
        hidden_size=int(dims["d_model"]),
        n_layer=int(dims["n_layers"]),
        n_head=int(dims["n_heads"]),
        layer_norm_epsilon=float(hp.norm_eps),
        initializer_range=float(hp.init_std),
        tie_word_embeddings=bool(hp.tie_embeddings),
        hidden_dropout=0.0,
        attention_dropout=0.0,
    )
    return BloomConfig(**{**fields, **overrides})


def from_hf_config(config: Any) -> tuple[BloomHParams, dict[str, int]]:
    if config.apply_residual_connection_post_layernorm:
        raise ValueError("BloomConfig.apply_residual_connection_post_layernorm=True is not supported")
    hparams = BloomHParams(
        norm_eps=float(config.layer_norm_epsilon),
        init_std=float(config.initializer_range),
        tie_embeddings=bool(config.tie_word_embeddings),
    )
    return hparams, common_dims(config.n_layer, config.hidden_size, config.n_head)


hf_name = TARGET.hf_name
to_hf_state_dict = TARGET.state_dict
from_hf_state_dict = TARGET.from_hf_state_dict
