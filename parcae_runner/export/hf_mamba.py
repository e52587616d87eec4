"""Export our ``mamba`` models to HF ``transformers.MambaForCausalLM`` (and back).

``transformers`` is an optional dependency: it is imported inside the functions.
Usage::

    hf = MambaForCausalLM(to_hf_config(model))
    hf.load_state_dict(to_hf_state_dict(model), strict=True)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from torch import Tensor

from parcae_runner.export.renames import rename, renamed_state_dict
from parcae_runner.models.mamba import DT_FLOOR, DT_MAX, DT_MIN, EMBED_STD, MambaHParams, MambaModel, resolve_dt_rank

if TYPE_CHECKING:
    from transformers import MambaConfig

# our parameter name -> HF MambaForCausalLM name; the mixer's inner names are already HF's
_RENAMES: list[tuple[str, str]] = [
    (r"^embed\.", "backbone.embeddings."),
    (r"^blocks\.(\d+)\.norm\.", r"backbone.layers.\1.norm."),
    (r"^blocks\.(\d+)\.mixer\.", r"backbone.layers.\1.mixer."),
    (r"^norm_f\.", "backbone.norm_f."),
    (r"^lm_head\.", "lm_head."),
]


# the config key that carries the training context length (None: the model has none)
CONTEXT_KEY: str | None = None


def _check(model: Any) -> MambaModel:
    if not isinstance(model, MambaModel):
        raise TypeError(f"Mamba export takes a MambaModel, not {type(model).__name__}")
    return model


def hf_name(name: str) -> str:
    """Our parameter name -> the HF ``MambaForCausalLM`` one."""
    return rename(name, _RENAMES, "Mamba")


def to_hf_config(model: MambaModel, **overrides: Any) -> MambaConfig:
    """The ``MambaConfig`` of ``model``. ``overrides`` set other fields (``bos_token_id``, ``eos_token_id``, ...)."""
    from transformers import MambaConfig

    model = _check(model)
    hp, dims = model.hparams, model.dims
    kwargs: dict[str, Any] = dict(
        vocab_size=int(model.vocab_size),
        hidden_size=int(dims["d_model"]),
        num_hidden_layers=int(dims["n_layers"]),
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
    kwargs.update(overrides)
    return MambaConfig(**kwargs)


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


def to_hf_state_dict(model: MambaModel) -> dict[str, Tensor]:
    """``model``'s weights under HF ``MambaForCausalLM`` names; detached views of the model's own (no copy).

    With tied embeddings ``lm_head.weight`` and ``backbone.embeddings.weight`` are the same tensor.
    """
    model = _check(model)
    return renamed_state_dict(model, _RENAMES, "Mamba")
