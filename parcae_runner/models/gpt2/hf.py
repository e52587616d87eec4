"""The Hugging Face side of ``gpt2``: ``transformers.GPT2LMHeadModel``, both ways.

GPT-2's linear layers are ``Conv1D`` (weights stored ``[in, out]``) and its ``c_attn`` is ``[q; k; v]``.
"""

from __future__ import annotations

from typing import Any

from parcae_runner.models.gpt2.model import GPT2HParams
from parcae_runner.models.transformer.hf import Target, common_dims, require

TARGET = Target(
    "GPT-2",
    [
        (r"^embed\.", "transformer.wte."),
        (r"^pos_embed\.", "transformer.wpe."),
        (r"^blocks\.(\d+)\.ln1\.", r"transformer.h.\1.ln_1."),
        (r"^blocks\.(\d+)\.attn\.o\.", r"transformer.h.\1.attn.c_proj."),
        (r"^blocks\.(\d+)\.ln2\.", r"transformer.h.\1.ln_2."),
        (r"^blocks\.(\d+)\.mlp\.up\.", r"transformer.h.\1.mlp.c_fc."),
        (r"^blocks\.(\d+)\.mlp\.down\.", r"transformer.h.\1.mlp.c_proj."),
        (r"^norm\.", "transformer.ln_f."),
        (r"^lm_head\.", "lm_head."),
    ],
    transposed=r"\.(c_attn|c_proj|c_fc)\.weight$",
    fused_qkv="transformer.h.{i}.attn.c_attn.{kind}",
)
ACTIVATIONS = {"gelu_tanh": "gelu_new", "gelu": "gelu"}

CONTEXT_KEY: str | None = None


def to_hf_config(model: Any, **overrides: Any) -> Any:
    """The ``GPT2Config`` of ``model``; ``overrides`` set other fields (bos/eos ids, ...)."""
    from transformers import GPT2Config

    hp = require(
        model,
        "GPT2LMHeadModel",
        {
            "norm": "layernorm",
            "norm_position": "pre",
            "position": "learned",
            "mlp": tuple(ACTIVATIONS),
            "residual": "serial",
            "bias": True,
            "embed_norm": False,
            "sliding_window": None,
            "mha": True,
        },
    )
    dims = model.dims
    fields = dict(
        vocab_size=int(model.vocab_size),
        n_positions=int(hp.max_positions),
        n_embd=int(dims["d_model"]),
        n_layer=int(dims["n_layers"]),
        n_head=int(dims["n_heads"]),
        n_inner=int(model.blocks[0].mlp.up.out_features),
        activation_function=ACTIVATIONS[hp.mlp],
        layer_norm_epsilon=float(hp.norm_eps),
        initializer_range=float(hp.init_std),
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=bool(hp.tie_embeddings),
    )
    return GPT2Config(**{**fields, **overrides})


def from_hf_config(config: Any) -> tuple[GPT2HParams, dict[str, int]]:
    """The inverse of ``to_hf_config``."""
    act = {v: k for k, v in ACTIVATIONS.items()}
    if config.activation_function not in act or config.scale_attn_by_inverse_layer_idx:
        raise ValueError(f"GPT2Config activation {config.activation_function!r}: our gpt2 has {', '.join(act)}")
    d_model = int(config.n_embd)
    inner = config.n_inner or 4 * d_model
    hparams = GPT2HParams(
        max_positions=int(config.n_positions),
        mlp=act[config.activation_function],
        mlp_ratio=inner / d_model,
        norm_eps=float(config.layer_norm_epsilon),
        init_std=float(config.initializer_range),
        tie_embeddings=bool(config.tie_word_embeddings),
    )
    return hparams, common_dims(config.n_layer, d_model, config.n_head)


hf_name = TARGET.hf_name
to_hf_state_dict = TARGET.state_dict
from_hf_state_dict = TARGET.from_hf_state_dict
