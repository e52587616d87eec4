"""The configurable transformer family: blocks from config, not from classes.

The named architectures ``gpt2``, ``llama``, ``mistral`` and ``bloom`` (``models/<name>/``) are this model
with their papers' defaults; ``register_family`` registers one of them.
"""

from __future__ import annotations

from types import ModuleType

from parcae_runner.models.registry import Architecture, register
from parcae_runner.models.transformer.block import Block
from parcae_runner.models.transformer.config import TransformerHParams, check
from parcae_runner.models.transformer.model import TransformerModel


def register_family(
    hparams_cls: type[TransformerHParams],
    sizes: dict[str, dict[str, int]],
    description: str,
    hf: ModuleType,
    hf_model_type: str,
    citation: str,
    published: dict[str, tuple[float, int]],
    plan_only: tuple[str, ...] = (),
) -> Architecture:
    """Register the architecture named by ``hparams_cls``'s ``name`` default on ``TransformerModel``."""
    name = hparams_cls().name
    arch = Architecture(
        name,
        hparams_cls,
        sizes,
        TransformerModel,
        description,
        hf=hf,
        hf_model_type=hf_model_type,
        citation=citation,
        check=check,
        published=published,
        plan_only=frozenset(plan_only),
        shard_units=(Block,),
    )
    return register(arch)


__all__ = ["TransformerHParams", "TransformerModel", "register_family"]
