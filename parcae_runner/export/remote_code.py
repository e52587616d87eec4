"""Export for architectures without a stock transformers class: our modeling file beside the weights.

``export_remote(model, out)`` writes ``config.json`` (with an ``auto_map``), ``model.safetensors`` under our own
parameter names, and the architecture's ``configuration_<arch>.py`` / ``modeling_<arch>.py`` from
``parcae_runner/export/remote/<arch>/``, so ``AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)``
loads it without parcae_runner installed (the way the published Levanter Backpack ships its code).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import shutil
from pathlib import Path
from typing import Any

from torch import nn

REMOTE_DIR = Path(__file__).parent / "remote"


def has_remote_code(arch_name: str) -> bool:
    return (REMOTE_DIR / arch_name / f"modeling_{arch_name}.py").is_file()


def _config_class(arch_name: str) -> type:
    """The configuration class the shipped ``configuration_<arch>.py`` defines (loaded from its file)."""
    path = REMOTE_DIR / arch_name / f"configuration_{arch_name}.py"
    spec = importlib.util.spec_from_file_location(f"_parcae_remote_{arch_name}_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from transformers import PretrainedConfig

    (cls,) = [
        c
        for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, PretrainedConfig) and c.__module__ == module.__name__
    ]
    return cls


def _model_class_name(arch_name: str) -> str:
    text = (REMOTE_DIR / arch_name / f"modeling_{arch_name}.py").read_text()
    (name,) = [
        line.split()[1].split("(")[0]
        for line in text.splitlines()
        if line.startswith("class ") and "ForCausalLM(" in line
    ]
    return name


def remote_config(model: nn.Module, arch_name: str, **overrides: Any) -> Any:
    """The shipped config class filled from ``model``: its dims, its hparams (less name / init_std / tying), the
    vocabulary, ``initializer_range`` and ``tie_word_embeddings``, then ``overrides`` (bos/eos ids, ...)."""
    hp = model.hparams
    fields = {f.name: getattr(hp, f.name) for f in dataclasses.fields(hp)}
    init_std, tied = fields.pop("init_std", 0.02), bool(fields.pop("tie_embeddings", False))
    fields.pop("name")
    cls = _config_class(arch_name)
    config = cls(
        vocab_size=int(model.vocab_size),
        **{k: int(v) for k, v in model.dims.items()},
        **fields,
        initializer_range=float(init_std),
        tie_word_embeddings=tied,
        **overrides,
    )
    config.auto_map = {
        "AutoConfig": f"configuration_{arch_name}.{cls.__name__}",
        "AutoModelForCausalLM": f"modeling_{arch_name}.{_model_class_name(arch_name)}",
    }
    config.architectures = [_model_class_name(arch_name)]
    return config


def export_remote(model: nn.Module, arch_name: str, out: Path, **overrides: Any) -> Path:
    """Write ``model`` as a trust-remote-code folder (see the module docstring)."""
    from safetensors.torch import save_model

    out.mkdir(parents=True, exist_ok=True)
    remote_config(model, arch_name, **overrides).save_pretrained(out)
    # the architecture's files, and the blocks they share (imported relatively, as transformers allows)
    for path in sorted([*(REMOTE_DIR / arch_name).glob("*.py"), *(REMOTE_DIR / "shared").glob("*.py")]):
        shutil.copyfile(path, out / path.name)
    # save_model keeps one name of a tied tensor (the embedding); the shipped model re-ties its head
    save_model(model, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out
