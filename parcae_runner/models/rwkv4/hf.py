"""``rwkv4`` <-> HF ``transformers.RwkvForCausalLM`` (imported inside the functions, an optional dependency);
``to_hf_config(model, context_length=1024)`` names the context HF's CUDA kernel is built for.

HF traps: ``RwkvModel.ln_out`` is built with LayerNorm's default eps (1e-5) whatever
``layer_norm_epsilon`` says, so only ``norm_eps=1e-5`` exports; in eval mode HF rescales the block
outputs by ``rescale_every`` (default 6), which we export as our own ``rescale_every`` (0 unless set).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from parcae_runner.models.renames import Renames
from parcae_runner.models.rwkv4.model import RWKV4HParams, RWKV4Model

if TYPE_CHECKING:
    from transformers import RwkvConfig

# HF hard-codes this eps for ln_out
HF_LN_OUT_EPS = 1e-5

# our parameter name -> HF RwkvForCausalLM name; the block-inner names are already HF's
RENAMES = Renames(
    RWKV4Model,
    "RWKV",
    "RwkvConfig",
    [
        (r"^embed\.", "rwkv.embeddings."),
        (r"^ln0\.", "rwkv.blocks.0.pre_ln."),
        (r"^blocks\.(\d+)\.(ln1|ln2|attention|feed_forward)\.", r"rwkv.blocks.\1.\2."),
        (r"^ln_out\.", "rwkv.ln_out."),
        (r"^lm_head\.", "head."),
    ],
)


# the config key that carries the training context length (None: the model has none)
CONTEXT_KEY: str | None = "context_length"


def to_hf_config(model: RWKV4Model, **overrides: Any) -> RwkvConfig:
    """The ``RwkvConfig`` of ``model``. ``overrides`` set other fields: ``context_length`` (HF's default 1024;
    only its CUDA kernel uses it), ``bos_token_id``, ``eos_token_id``, ..."""
    hp, dims = RENAMES.check(model).hparams, model.dims
    if hp.norm_eps != HF_LN_OUT_EPS:
        raise ValueError(
            f"arch.norm_eps={hp.norm_eps} cannot be exported: HF RwkvModel.ln_out always uses eps {HF_LN_OUT_EPS}"
        )
    fields: dict[str, Any] = dict(
        attention_hidden_size=int(dims["d_model"]),
        intermediate_size=int(hp.ffn_mult * dims["d_model"]),
        layer_norm_epsilon=float(hp.norm_eps),
        # HF's default is 6; anything but ours changes the eval-mode function (see RWKV4HParams.rescale_every)
        rescale_every=int(hp.rescale_every),
        tie_word_embeddings=bool(hp.tie_embeddings),
    )
    return RENAMES.hf_config(model, fields, overrides)


def from_hf_config(config: RwkvConfig) -> tuple[RWKV4HParams, dict[str, int]]:
    """The inverse of ``to_hf_config``: our hparams and dims for an HF ``RwkvConfig``."""
    d_model = int(config.hidden_size)
    # RwkvConfig's __init__ fills the optional sizes from hidden_size, so a built config has ints there
    attention_hidden_size = cast(int, config.attention_hidden_size)
    intermediate_size = cast(int, config.intermediate_size)
    if int(attention_hidden_size) != d_model:
        raise ValueError(
            f"RwkvConfig.attention_hidden_size={config.attention_hidden_size} != hidden_size={d_model}: "
            "our rwkv4 has square time-mix projections"
        )
    if float(config.layer_norm_epsilon) != HF_LN_OUT_EPS:
        raise ValueError(
            f"RwkvConfig.layer_norm_epsilon={config.layer_norm_epsilon}: HF's ln_out ignores it and uses "
            f"{HF_LN_OUT_EPS}, our rwkv4 has one norm_eps for every LayerNorm"
        )
    if int(intermediate_size) % d_model:
        raise ValueError(f"RwkvConfig.intermediate_size={config.intermediate_size} is not a multiple of {d_model}")
    hparams = RWKV4HParams(
        ffn_mult=int(intermediate_size) // d_model,
        norm_eps=float(config.layer_norm_epsilon),
        rescale_every=max(int(config.rescale_every), 0),  # HF: <= 0 means off
        tie_embeddings=bool(config.tie_word_embeddings),
    )
    return hparams, {"n_layers": int(config.num_hidden_layers), "d_model": d_model}


# our parameter name -> the HF one; our weights under HF names (detached views of the model's own)
hf_name = RENAMES.hf_name
to_hf_state_dict = RENAMES.state_dict
