"""Teacher loading and checks, and the student: the teacher with every attention replaced by the mixer of the
architecture whose spec declares a student recipe (``models.students``; the cxa076 TimeMix of RWKV-7, PRWKV).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from parcae_runner.config.errors import ConfigError
from parcae_runner.models.students import decoder_layers, student_recipe


def resolve_teacher(teacher: str) -> str:
    """The HF folder ``teacher`` names: itself, or for a run directory of this project its newest export
    (``<run>/hf/checkpoint-N``, written by ``parcae-runner export``)."""
    path = Path(teacher)
    if not (path / "run.json").is_file():
        return teacher
    exports = [p for p in (path / "hf").glob("checkpoint-*") if (p / "config.json").is_file()]
    if not exports:
        raise ConfigError("distill.teacher", teacher, "a run without an HF export: run `parcae-runner export` first")
    return str(max(exports, key=lambda p: int(p.name.rsplit("-", 1)[-1])))


def check_teacher_folder(folder: str) -> Any:
    """The teacher's ``transformers`` config; ConfigError (exit 2) when the folder is missing, is not a GQA decoder
    we know, or its query heads are not a multiple of its key/value heads."""
    from transformers import AutoConfig

    path = Path(folder)
    if not (path / "config.json").is_file():
        raise ConfigError("distill.teacher", folder, "not a Hugging Face model folder (no config.json)")
    try:
        config = AutoConfig.from_pretrained(path)
    except (ValueError, OSError) as e:
        raise ConfigError("distill.teacher", folder, f"transformers cannot read its config ({e})") from None
    decoders = student_recipe().teacher_model_types
    if config.model_type not in decoders:
        raise ConfigError(
            "distill.teacher", folder, f"model_type {config.model_type!r} is not a decoder of {', '.join(decoders)}"
        )
    h = int(config.num_attention_heads)
    h_kv = int(getattr(config, "num_key_value_heads", None) or h)
    if h % h_kv:
        raise ConfigError(
            "distill.teacher", folder, f"{h} query heads are not a multiple of {h_kv} key/value heads (RepeatKV)"
        )
    return config


def load_teacher(folder: str) -> nn.Module:
    from transformers import AutoModelForCausalLM

    teacher = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def layers_of(model: nn.Module) -> nn.ModuleList:
    return decoder_layers(model)


def build_student(teacher: nn.Module, norm: str, rk_norm: bool, kernel_impl: str) -> nn.Module:
    """A copy of ``teacher`` whose attentions are the student architecture's mixers, initialised from them."""
    return student_recipe().build(teacher, norm, rk_norm, kernel_impl)


def timemixes(student: nn.Module) -> list[nn.Module]:
    return student_recipe().mixers(student)


def freeze_all_but_timemix(student: nn.Module) -> list[nn.Parameter]:
    """Stage 1: only the TimeMixes train; returns their parameters."""
    for p in student.parameters():
        p.requires_grad_(False)
    params = [p for tm in timemixes(student) for p in tm.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


class AttentionTap:
    """Records each teacher layer's attention input (after its input norm) and output during a forward."""

    def __init__(self, teacher: nn.Module) -> None:
        self.inputs: list[Tensor] = []
        self.outputs: list[Tensor] = []
        self.handles = []
        for layer in layers_of(teacher):
            attn = cast(nn.Module, layer.self_attn)
            self.handles.append(attn.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.handles.append(attn.register_forward_hook(self._post))

    def _pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.inputs.append(kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])

    def _post(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.outputs.append(output[0] if isinstance(output, tuple) else output)

    def clear(self) -> None:
        self.inputs, self.outputs = [], []

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
