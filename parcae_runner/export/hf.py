"""Hugging Face export and import: the one place that maps our architecture names to HF model types.

``export_hf(model, out_dir)`` writes a folder that ``transformers.AutoModelForCausalLM.from_pretrained``
(and, given a ``tokenizer.json``, ``AutoTokenizer.from_pretrained``) loads; ``import_hf(folder)`` /
``load_hf(folder)`` read such a folder back into one of our models. Each exporter module provides
``hf_name(our_param_name)``, ``to_hf_config(model, **overrides)``, ``to_hf_state_dict(model)`` and
``from_hf_config(config) -> (hparams, dims)``.

``transformers`` is an optional dependency: it is imported inside the functions.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from parcae_runner.data.tokenizer import EOT_ID
from parcae_runner.export import hf_gpt_neox, hf_mamba, hf_rwkv
from parcae_runner.models.pythia import PythiaHParams
from parcae_runner.models.registry import get_architecture

# our architecture name -> its exporter module (which knows the HF model type)
EXPORTERS: dict[str, ModuleType] = {
    "pythia": hf_gpt_neox,
    "mamba": hf_mamba,
    "rwkv4": hf_rwkv,
}


def _gpt_neox_from_hf_config(config: Any) -> tuple[PythiaHParams, dict[str, int]]:
    """The inverse of ``hf_gpt_neox.to_hf_config``.

    It belongs in ``hf_gpt_neox`` as ``from_hf_config`` (like the other exporters); it lives here until that
    module is next edited.
    """
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
    rope = config.rope_parameters
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


def _from_hf_config(exporter: ModuleType):
    return getattr(exporter, "from_hf_config", None) or {hf_gpt_neox: _gpt_neox_from_hf_config}[exporter]


def exporter_for(model: nn.Module) -> tuple[str, ModuleType]:
    """(architecture name, exporter module) of one of our models."""
    name = getattr(getattr(model, "hparams", None), "name", None)
    if name not in EXPORTERS:
        raise ValueError(f"no HF exporter for architecture {name!r}; exporters: {', '.join(EXPORTERS)}")
    return name, EXPORTERS[name]


@cache
def hf_model_type(arch_name: str) -> str:
    """The HF ``model_type`` our architecture ``arch_name`` exports to (``"gpt_neox"``, ``"mamba"``, ...)."""
    arch = get_architecture(arch_name)
    with torch.device("meta"):  # read off the exporter itself, so no second table can drift
        model = arch.model_cls(arch.hparams_cls(), arch.sizes[next(iter(arch.sizes))], 64)
    return EXPORTERS[arch_name].to_hf_config(model).model_type


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

    _, exporter = exporter_for(model)
    out = Path(out_dir)
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

    if tokenizer_path is not None:
        _save_tokenizer(Path(tokenizer_path), out, bos_token_id, eos_token_id)
    if card_text is not None:
        (out / "README.md").write_text(card_text)
    return out


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


def import_hf(folder: str | Path) -> tuple[str, Any, dict[str, int], dict[str, Tensor]]:
    """Read an HF checkpoint folder (ours or a compatible one) as ``(arch_name, hparams, dims, state_dict)``.

    ``get_architecture(arch_name).model_cls(hparams, dims, vocab_size)`` builds the model that
    ``load_state_dict(state_dict, strict=True)`` fills; ``load_hf`` does both. The weights are read through
    ``from_pretrained`` rather than from the safetensors file, because transformers 5.x renames some keys
    on disk (GPT-NeoX's ``lm_head`` is saved as the 4.x ``embed_out``) and back on load.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder)
    matches = [name for name in EXPORTERS if hf_model_type(name) == config.model_type]
    if not matches:
        known = ", ".join(f"{hf_model_type(n)} ({n})" for n in EXPORTERS)
        raise ValueError(f"{folder}: HF model_type {config.model_type!r} has no importer; known: {known}")
    arch_name = matches[0]
    exporter = EXPORTERS[arch_name]
    hparams, dims = _from_hf_config(exporter)(config)
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
    hf_state = hf.state_dict()  # lists tied weights under every name
    state = _our_state_dict(arch_name, exporter, hparams, dims, int(config.vocab_size), hf_state)
    return arch_name, hparams, dims, state


def _our_state_dict(
    arch_name: str, exporter: ModuleType, hparams: Any, dims: dict[str, int], vocab_size: int, hf_state: dict
) -> dict[str, Tensor]:
    """Rename an HF state dict to ours; every HF weight must find a place, and every one of ours a value."""
    with torch.device("meta"):
        model = get_architecture(arch_name).model_cls(hparams, dims, vocab_size)
    names = {ours: exporter.hf_name(ours) for ours in model.state_dict()}
    missing = [f"{ours} ({theirs})" for ours, theirs in names.items() if theirs not in hf_state]
    unused = sorted(set(hf_state) - set(names.values()))
    if missing or unused:
        raise KeyError(
            f"HF checkpoint does not match our {arch_name}: missing {', '.join(missing[:5]) or 'none'}; "
            f"unused {', '.join(unused[:5]) or 'none'}"
        )
    return {ours: hf_state[theirs].detach() for ours, theirs in names.items()}


def load_hf(folder: str | Path) -> nn.Module:
    """Our model, with the weights of the HF checkpoint folder ``folder`` (see ``import_hf``)."""
    arch_name, hparams, dims, state = import_hf(folder)
    vocab_size = state["embed.weight"].shape[0]
    with torch.device("meta"):
        model = get_architecture(arch_name).model_cls(hparams, dims, vocab_size)
    model.load_state_dict(state, strict=True, assign=True)
    if getattr(hparams, "tie_embeddings", False):
        model.lm_head.weight = model.embed.weight  # assign=True untied them
    return model
