"""``mamba`` <-> HF ``transformers.MambaForCausalLM`` (``transformers`` is imported inside the functions).

The mixer's inner parameter names are already HF's, so the weights map by renaming the outer ones; the config
carries our init constants in case HF re-initialises (``from_config``), and ``from_hf_config`` refuses the
HF settings our model cannot reproduce.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from parcae_runner.models.mamba.model import (
    DT_FLOOR,
    DT_MAX,
    DT_MIN,
    EMBED_STD,
    MambaHParams,
    MambaModel,
    resolve_dt_rank,
)
from parcae_runner.models.renames import Renames

if TYPE_CHECKING:
    from transformers import MambaConfig

# our parameter name -> HF MambaForCausalLM name; the mixer's inner names are already HF's
RENAMES = Renames(
    MambaModel,
    "Mamba",
    "MambaConfig",
    [
        (r"^embed\.", "backbone.embeddings."),
        (r"^blocks\.(\d+)\.norm\.", r"backbone.layers.\1.norm."),
        (r"^blocks\.(\d+)\.mixer\.", r"backbone.layers.\1.mixer."),
        (r"^norm_f\.", "backbone.norm_f."),
        (r"^lm_head\.", "lm_head."),
    ],
)


# the config key that carries the training context length (None: the model has none)
CONTEXT_KEY: str | None = None


def to_hf_config(model: MambaModel, **overrides: Any) -> MambaConfig:
    """The ``MambaConfig`` of ``model``. ``overrides`` set other fields (``bos_token_id``, ``eos_token_id``, ...)."""
    hp, dims = RENAMES.check(model).hparams, model.dims
    fields: dict[str, Any] = dict(
        state_size=int(hp.d_state),
        expand=int(hp.expand),
        conv_kernel=int(hp.d_conv),
        # explicit, never "auto": HF resolves "auto" with the same ceil(d / 16), but a number leaves no doubt
        time_step_rank=int(resolve_dt_rank(hp, dims["d_model"])),
        layer_norm_epsilon=float(hp.norm_eps),
        use_bias=False,
        use_conv_bias=True,
        hidden_act="silu",
        residual_in_fp32=True,
        tie_word_embeddings=bool(hp.tie_embeddings),
        # only used if HF re-initialises the model (from_config): our init's constants
        time_step_min=DT_MIN,
        time_step_max=DT_MAX,
        time_step_floor=DT_FLOOR,
        time_step_init_scheme="random",
        # must stay False although our init does rescale out_proj: transformers 5.x's _init_weights divides
        # out_proj.weight by sqrt(n_layers) in place on every from_pretrained, loaded weights included
        rescale_prenorm_residual=False,
        initializer_range=EMBED_STD,
    )
    return RENAMES.hf_config(model, fields, overrides)


def from_hf_config(config: MambaConfig) -> tuple[MambaHParams, dict[str, int]]:
    """The inverse of ``to_hf_config``: our hparams and dims for an HF ``MambaConfig``."""
    unsupported = {
        "use_bias": (config.use_bias, False),
        "use_conv_bias": (config.use_conv_bias, True),
        "hidden_act": (config.hidden_act, "silu"),
    }
    for key, (got, want) in unsupported.items():
        if got != want:
            raise ValueError(f"MambaConfig.{key}={got!r}: only {want!r} is supported by our mamba")
    if config.rescale_prenorm_residual:
        raise ValueError(
            "MambaConfig.rescale_prenorm_residual=True: transformers 5.x divides out_proj.weight by "
            "sqrt(num_hidden_layers) when it loads such a checkpoint, so its weights cannot be read faithfully; "
            "set it to false in config.json (it only matters for a fresh init)"
        )
    d_model = int(config.hidden_size)
    dt_rank = int(config.time_step_rank)
    hparams = MambaHParams(
        d_state=int(config.state_size),
        d_conv=int(config.conv_kernel),
        expand=int(config.expand),
        dt_rank=0 if dt_rank == math.ceil(d_model / 16) else dt_rank,  # 0 = auto, our default
        norm_eps=float(config.layer_norm_epsilon),
        tie_embeddings=bool(config.tie_word_embeddings),
    )
    return hparams, {"n_layers": int(config.num_hidden_layers), "d_model": d_model}


# our parameter name -> the HF one; our weights under HF names (detached views of the model's own)
hf_name = RENAMES.hf_name
to_hf_state_dict = RENAMES.state_dict
