"""Export our ``pythia`` models to HF ``transformers.GPTNeoXForCausalLM``.

``transformers`` is an optional dependency: it is imported inside the functions.
Usage::

    hf = GPTNeoXForCausalLM(to_hf_config(model))
    hf.load_state_dict(to_hf_state_dict(model), strict=True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor

from parcae_runner.export.renames import rename, renamed_state_dict
from parcae_runner.models.pythia import PythiaModel

if TYPE_CHECKING:
    from transformers import GPTNeoXConfig

# our parameter name -> HF GPTNeoXForCausalLM name (transformers 5.x; 4.x called lm_head "embed_out")
_RENAMES: list[tuple[str, str]] = [
    (r"^embed\.", "gpt_neox.embed_in."),
    (r"^blocks\.(\d+)\.ln1\.", r"gpt_neox.layers.\1.input_layernorm."),
    (r"^blocks\.(\d+)\.ln2\.", r"gpt_neox.layers.\1.post_attention_layernorm."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"gpt_neox.layers.\1.attention.query_key_value."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"gpt_neox.layers.\1.attention.dense."),
    (r"^blocks\.(\d+)\.mlp\.up\.", r"gpt_neox.layers.\1.mlp.dense_h_to_4h."),
    (r"^blocks\.(\d+)\.mlp\.down\.", r"gpt_neox.layers.\1.mlp.dense_4h_to_h."),
    (r"^norm\.", "gpt_neox.final_layer_norm."),
    (r"^lm_head\.", "lm_head."),
]


# the config key that carries the training context length (None: the model has none)
CONTEXT_KEY: str | None = "max_position_embeddings"


def _check(model: Any) -> PythiaModel:
    if not isinstance(model, PythiaModel):
        raise TypeError(f"GPT-NeoX export takes a PythiaModel, not {type(model).__name__}")
    return model


def hf_name(name: str) -> str:
    """Our parameter name -> the HF ``GPTNeoXForCausalLM`` one."""
    return rename(name, _RENAMES, "GPT-NeoX")


def to_hf_config(model: PythiaModel, **overrides: Any) -> GPTNeoXConfig:
    """The ``GPTNeoXConfig`` of ``model``. ``overrides`` set other fields (``bos_token_id``,
    ``eos_token_id``, ``max_position_embeddings``, ``attn_implementation``, ...)."""
    from transformers import GPTNeoXConfig

    model = _check(model)
    hp, dims = model.hparams, model.dims
    kwargs: dict[str, Any] = dict(
        vocab_size=int(model.vocab_size),
        hidden_size=int(dims["d_model"]),
        num_hidden_layers=int(dims["n_layers"]),
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
    kwargs.update(overrides)
    return GPTNeoXConfig(**kwargs)


def to_hf_state_dict(model: PythiaModel) -> dict[str, Tensor]:
    """``model``'s weights under HF ``GPTNeoXForCausalLM`` names (transformers 5.x).

    The tensors are detached views of the model's own (no copy). With tied embeddings
    ``lm_head.weight`` and ``gpt_neox.embed_in.weight`` are the same tensor.
    """
    model = _check(model)
    return renamed_state_dict(model, _RENAMES, "GPT-NeoX")
