"""Hugging Face import: read an HF checkpoint folder back into one of our models.

Which HF class an architecture maps to is on its registry spec (``Architecture.hf``, the module of
``models/<name>/hf.py``, and ``Architecture.hf_model_type``); this module only asks the registry. Writing
a folder is ``parcae_runner.export.hf.export_hf``. ``transformers`` is an optional dependency: it is
imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, cast

import torch
from torch import Tensor, nn

from parcae_runner.models.layers.lm import LanguageModel
from parcae_runner.models.registry import ARCHITECTURES, get_architecture


def hf_mappings() -> dict[str, ModuleType]:
    """Architecture name -> its HF mapping module, for the registered architectures that have one."""
    return {name: arch.hf for name, arch in ARCHITECTURES.items() if arch.hf is not None}


def exporter_for(model: nn.Module) -> tuple[str, ModuleType]:
    """(architecture name, HF mapping module) of one of our models."""
    name = getattr(getattr(model, "hparams", None), "name", None)
    mappings = hf_mappings()
    if name not in mappings:
        raise ValueError(f"no HF exporter for architecture {name!r}; exporters: {', '.join(mappings)}")
    return name, mappings[name]


def hf_model_type(arch_name: str) -> str:
    """The HF ``model_type`` our architecture ``arch_name`` exports to (``"gpt_neox"``, ``"mamba"``, ...)."""
    model_type = get_architecture(arch_name).hf_model_type
    if model_type is None:
        raise ValueError(f"architecture {arch_name!r} has no HF export")
    return model_type


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
    mappings = hf_mappings()
    matches = [name for name in mappings if hf_model_type(name) == config.model_type]
    if not matches:
        known = ", ".join(f"{hf_model_type(n)} ({n})" for n in mappings)
        raise ValueError(f"{folder}: HF model_type {config.model_type!r} has no importer; known: {known}")
    arch_name = matches[0]
    mapping = mappings[arch_name]
    hparams, dims = mapping.from_hf_config(config)
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
    hf_state = hf.state_dict()  # lists tied weights under every name
    state = _our_state_dict(arch_name, mapping, hparams, dims, int(config.vocab_size), hf_state)
    return arch_name, hparams, dims, state


def _our_state_dict(
    arch_name: str, mapping: ModuleType, hparams: Any, dims: dict[str, int], vocab_size: int, hf_state: dict
) -> dict[str, Tensor]:
    """Rename an HF state dict to ours; every HF weight must find a place, and every one of ours a value."""
    with torch.device("meta"):
        model = get_architecture(arch_name).model_cls(hparams, dims, vocab_size)
    if hasattr(mapping, "from_hf_state_dict"):
        # a mapping that is more than renames (fused or transposed tensors) converts the whole dict
        return mapping.from_hf_state_dict(hf_state, model)
    names = {ours: mapping.hf_name(ours) for ours in model.state_dict()}
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


class InitMismatch(ValueError):
    """``train.init_from`` names a folder whose architecture or dims are not the run's.

    Worded as ``ConfigError`` (``key=value: what is allowed``), which this layer cannot import.
    """

    def __init__(self, folder: str | Path, allowed: str) -> None:
        self.key, self.value, self.allowed = "train.init_from", str(folder), allowed
        super().__init__(f"{self.key}={self.value}: {allowed}")


def init_from_hf(model: nn.Module, folder: str | Path) -> None:
    """Load an exported folder's weights into ``model``; its architecture and dims must match."""
    arch, _, dims, state = import_hf(folder)
    ours = exporter_for(model)[0]
    if arch != ours or dims != dict(cast(LanguageModel, model).dims):
        raise InitMismatch(folder, f"holds {arch} with dims {dims}; this run builds {ours} with {model.dims}")
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
