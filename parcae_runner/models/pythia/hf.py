"""The Hugging Face side of ``pythia``: HF ``transformers.GPTNeoXForCausalLM``, both ways.

``to_hf_config(model)`` builds the ``GPTNeoXConfig`` (``transformers``, an optional dependency, is imported
inside the functions), ``to_hf_state_dict(model)`` gives our weights under GPT-NeoX names, and
``from_hf_config(config)`` reads a config back as our hparams and dims.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from parcae_runner.models.pythia.model import PythiaHParams, PythiaModel
from parcae_runner.models.renames import Renames

if TYPE_CHECKING:
    from transformers import GPTNeoXConfig

# our parameter name -> HF GPTNeoXForCausalLM name (transformers 5.x; 4.x called lm_head "embed_out")
RENAMES = Renames(
    PythiaModel,
    "GPT-NeoX",
    "GPTNeoXConfig",
    [
        (r"^embed\.", "gpt_neox.embed_in."),
        (r"^blocks\.(\d+)\.ln1\.", r"gpt_neox.layers.\1.input_layernorm."),
        (r"^blocks\.(\d+)\.ln2\.", r"gpt_neox.layers.\1.post_attention_layernorm."),
        (r"^blocks\.(\d+)\.attn\.qkv\.", r"gpt_neox.layers.\1.attention.query_key_value."),
        (r"^blocks\.(\d+)\.attn\.proj\.", r"gpt_neox.layers.\1.attention.dense."),
        (r"^blocks\.(\d+)\.mlp\.up\.", r"gpt_neox.layers.\1.mlp.dense_h_to_4h."),
        (r"^blocks\.(\d+)\.mlp\.down\.", r"gpt_neox.layers.\1.mlp.dense_4h_to_h."),
        (r"^norm\.", "gpt_neox.final_layer_norm."),
        (r"^lm_head\.", "lm_head."),
    ],
)


# the config key that carries the training context length (None: the model has none)
CONTEXT_KEY: str | None = "max_position_embeddings"


def to_hf_config(model: PythiaModel, **overrides: Any) -> GPTNeoXConfig:
    """The ``GPTNeoXConfig`` of ``model``. ``overrides`` set other fields (``bos_token_id``,
    ``eos_token_id``, ``max_position_embeddings``, ``attn_implementation``, ...)."""
    hp, dims = RENAMES.check(model).hparams, model.dims
    fields: dict[str, Any] = dict(
        num_attention_heads=int(dims["n_heads"]),
        intermediate_size=int(hp.mlp_ratio * dims["d_model"]),
        hidden_act="gelu",  # HF "gelu" is the exact erf GELU
        # transformers 5.x keeps rotary settings in rope_parameters (4.x: rotary_pct, rotary_emb_base)
        rope_parameters={
            "rope_type": "default",
            "rope_theta": float(hp.rotary_base),
            "partial_rotary_factor": float(hp.rotary_pct),
        },
        layer_norm_eps=float(hp.norm_eps),
        use_parallel_residual=True,
        attention_bias=True,
        tie_word_embeddings=bool(hp.tie_embeddings),
        hidden_dropout=0.0,
        attention_dropout=0.0,
        initializer_range=float(hp.init_std),
        attn_implementation="sdpa",
    )
    return RENAMES.hf_config(model, fields, overrides)


def from_hf_config(config: GPTNeoXConfig) -> tuple[PythiaHParams, dict[str, int]]:
    """The inverse of ``to_hf_config``: our hparams and dims for an HF ``GPTNeoXConfig``."""
    unsupported = {
        "use_parallel_residual": (config.use_parallel_residual, True),
        "hidden_act": (config.hidden_act, "gelu"),
        "attention_bias": (config.attention_bias, True),
    }
    for key, (got, want) in unsupported.items():
        if got != want:
            raise ValueError(f"GPTNeoXConfig.{key}={got!r}: only {want!r} is supported by our pythia")
    d_model = int(config.hidden_size)
    if int(config.intermediate_size) % d_model:
        raise ValueError(f"GPTNeoXConfig.intermediate_size={config.intermediate_size} is not a multiple of {d_model}")
    # GPTNeoXConfig's __init__ always leaves a dict here (rope_theta and partial_rotary_factor filled in)
    rope = cast("dict[str, Any]", config.rope_parameters)
    hparams = PythiaHParams(
        rotary_pct=float(rope.get("partial_rotary_factor", 1.0)),
        rotary_base=float(rope["rope_theta"]),
        norm_eps=float(config.layer_norm_eps),
        mlp_ratio=int(config.intermediate_size) // d_model,
        init_std=float(config.initializer_range),
        tie_embeddings=bool(config.tie_word_embeddings),
    )
    dims = {
        "n_layers": int(config.num_hidden_layers),
        "d_model": d_model,
        "n_heads": int(config.num_attention_heads),
    }
    return hparams, dims


# our parameter name -> the HF one; our weights under HF names (detached views of the model's own)
hf_name = RENAMES.hf_name
to_hf_state_dict = RENAMES.state_dict
