"""Distillation students an architecture can make from a Hugging Face decoder teacher (its spec's ``student``).

An architecture that declares a :class:`StudentRecipe` (RWKV-7's cxa076 TimeMix, ``models/rwkv7/student.py``) says
which teachers it takes, how it replaces their attentions and where its mixers are; ``parcae_runner.distill`` asks
the registry for the recipe and never names the architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from torch import nn


@dataclass(frozen=True)
class StudentRecipe:
    # HF ``model_type``s of the decoders whose ``model.layers[i].self_attn`` the student can replace
    teacher_model_types: tuple[str, ...]
    # the mixer output norms a run may choose (``distill.norm``)
    norms: tuple[str, ...]
    # build(teacher, norm, rk_norm, kernel_impl): a copy of the teacher with every attention replaced by a mixer
    # initialised from it (trainable); the teacher is left as it was
    build: Callable[[nn.Module, str, bool, str], nn.Module]
    # mixers(student): the student's mixers in layer order, each ``(x [B, T, d], v_first) -> (out, v_first)``
    mixers: Callable[[nn.Module], list[nn.Module]]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a transformers causal LM (``model.model.layers``)."""
    return cast(nn.ModuleList, cast(nn.Module, model.model).layers)


def student_recipe() -> StudentRecipe:
    """The one registered architecture's student recipe; LookupError when none, or more than one, declares one."""
    from parcae_runner.models.registry import ARCHITECTURES

    recipes = {name: arch.student for name, arch in ARCHITECTURES.items() if arch.student is not None}
    if len(recipes) != 1:
        raise LookupError(f"distillation needs exactly one architecture with a student recipe; found {sorted(recipes)}")
    (recipe,) = recipes.values()
    return recipe
