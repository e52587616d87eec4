"""Teacher loading and checks, and the student: the teacher with every attention replaced by a cxa076 TimeMix.

The student is a deep copy of the teacher (a ``transformers`` Qwen2 / Qwen3 / Llama / Mistral causal LM) whose
``model.layers[i].self_attn`` is a :class:`StudentAttention`; MLPs, norms and embeddings stay the teacher's (copied).
r, k, v, o (and their biases) are copied from the teacher's q, k, v, o (OpenMOSE ``train_hybrid_deepspeed.py``:
q_proj -> receptance, k_proj -> key, v_proj -> value, o_proj -> output), as are Qwen3's q_norm / k_norm into the
optional per-head r / k norms.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from parcae_runner.config.errors import ConfigError
from parcae_runner.distill.timemix import Cxa076TimeMix

# HF model types whose decoder layers have self_attn.{q,k,v,o}_proj and GQA head counts in the config
DECODERS = ("qwen2", "qwen3", "llama", "mistral")


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
    if config.model_type not in DECODERS:
        raise ConfigError(
            "distill.teacher", folder, f"model_type {config.model_type!r} is not a decoder of {', '.join(DECODERS)}"
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


class VFirst:
    """Layer 0's value, shared by the student's attentions within one forward (x070's value residual)."""

    value: Tensor | None = None


class StudentAttention(nn.Module):
    """Stands where the teacher's ``self_attn`` was: ``(hidden_states [B, T, d], **kwargs) -> (out, None)``."""

    def __init__(self, timemix: Cxa076TimeMix, shared: VFirst) -> None:
        super().__init__()
        self.timemix = timemix
        self.shared = shared

    def forward(self, hidden_states: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, None]:
        v_first = None if self.timemix.layer_id == 0 else self.shared.value
        out, v_first = self.timemix(hidden_states, v_first)
        self.shared.value = v_first
        return out, None


def layers_of(model: nn.Module) -> nn.ModuleList:
    return model.model.layers


@torch.no_grad()
def inherit(timemix: Cxa076TimeMix, attn: nn.Module) -> None:
    """Copy the teacher attention's q, k, v, o (weights and biases) and q/k norms into ``timemix``."""
    pairs = [("q_proj", "receptance"), ("k_proj", "key"), ("v_proj", "value"), ("o_proj", "output")]
    for theirs, ours in pairs:
        src, dst = getattr(attn, theirs), getattr(timemix, ours)
        dst.weight.copy_(src.weight)
        if dst.bias is not None:
            dst.bias.copy_(src.bias)
    if timemix.r_norm is not None and hasattr(attn, "q_norm"):
        timemix.r_norm.weight.copy_(attn.q_norm.weight)
        timemix.k_norm.weight.copy_(attn.k_norm.weight)


def build_student(teacher: nn.Module, norm: str, rk_norm: bool, kernel_impl: str) -> nn.Module:
    """A copy of ``teacher`` whose attentions are cxa076 TimeMixes initialised from them."""
    config = teacher.config
    h = int(config.num_attention_heads)
    h_kv = int(getattr(config, "num_key_value_heads", None) or h)
    n = int(getattr(config, "head_dim", None) or config.hidden_size // h)
    student = copy.deepcopy(teacher)
    shared = VFirst()
    for i, layer in enumerate(layers_of(student)):
        attn = layer.self_attn
        biases = (attn.q_proj.bias is not None, attn.o_proj.bias is not None)
        timemix = Cxa076TimeMix(int(config.hidden_size), (h, h_kv, n), i, norm, rk_norm, biases)
        timemix.kernel_impl = kernel_impl
        inherit(timemix, attn)
        layer.self_attn = StudentAttention(timemix, shared)
    for p in student.parameters():
        p.requires_grad_(True)
    return student.train()


def timemixes(student: nn.Module) -> list[Cxa076TimeMix]:
    return [layer.self_attn.timemix for layer in layers_of(student)]


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
            self.handles.append(layer.self_attn.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.handles.append(layer.self_attn.register_forward_hook(self._post))

    def _pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.inputs.append(kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])

    def _post(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.outputs.append(output[0] if isinstance(output, tuple) else output)

    def clear(self) -> None:
        self.inputs, self.outputs = [], []

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
