"""``train.compile`` and ``train.activation_checkpointing``: the same model and the same numbers, faster or in less
memory. Both act in place, so parameter names (checkpoints, exports, the optimizer's groups) do not change.

- Compile: ``nn.Module.compile`` (``torch.compile`` in place) on the whole model; on a looped model (one whose depth
  is drawn per step, like Parcae's recurrent core) on each block instead, as Parcae's own trainer compiles around its
  loop: a loop whose trip count changes every step would otherwise recompile the graph for every depth it meets.
- Activation checkpointing: each block's forward runs under ``torch.utils.checkpoint`` (non-reentrant), so only
  the blocks' inputs are kept and their activations are recomputed in the backward pass. Iterations run without
  gradient (a looped model's truncated part) are not checkpointed: they keep nothing to begin with.
"""

from __future__ import annotations

import functools

import torch
import torch._functorch.config
from torch import nn
from torch.utils.checkpoint import checkpoint

from parcae_runner.util.log import log


def blocks(model: nn.Module) -> list[nn.Module]:
    """The model's blocks: the members of its top-level ``ModuleList``s (``blocks``; Parcae's prelude, core, coda)."""
    return [block for module in model.children() if isinstance(module, nn.ModuleList) for block in module]


def is_looped(model: nn.Module) -> bool:
    """A model that runs some blocks a drawn number of times (its depth is set per step)."""
    return hasattr(model, "set_depth_context")


def checkpoint_blocks(model: nn.Module) -> int:
    """Run each block's forward under activation checkpointing; returns how many blocks."""
    found = blocks(model)
    for block in found:
        if getattr(block, "_activation_checkpointed", False):
            continue
        block.forward = _checkpointed(block.forward)
        # a plain flag, neither a tensor nor a submodule, which is all Module.__setattr__ is typed to take
        object.__setattr__(block, "_activation_checkpointed", True)
    return len(found)


def _checkpointed(forward):
    @functools.wraps(forward)
    def run(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        # non-reentrant: keyword arguments, outputs that need no grad, and torch.compile all work; the RNG state is
        # restored for the recomputation, so dropout draws the same mask
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


def compile_model(model: nn.Module) -> str:
    """Compile in place: the blocks of a looped model, else the whole model. Returns what was compiled."""
    # A graph that breaks around a Triton kernel (kernels/_host.py apply_eagerly) returns views of its intermediates
    # (the heads' [B, T, H, N] views). torch 2.13 rebuilds such outputs by replaying their recorded views, and that
    # record can be read after it was freed (pytorch/pytorch#185630, fixed upstream by #184774): an intermittent
    # "shape '[94520649687058, ...]' is invalid". Rebuilding them with as_strided from the traced metadata (what
    # fbcode builds of torch use by default) gives the same tensors without that record.
    torch._functorch.config.view_replay_for_aliased_outputs = False
    if is_looped(model):
        for block in blocks(model):
            block.compile()
        return f"{len(blocks(model))} blocks (around the loop)"
    model.compile()
    return "the model"


def speed_up(model: nn.Module, compile: bool, activation_checkpointing: bool) -> None:
    """Apply ``train.activation_checkpointing`` then ``train.compile`` (checkpointing is traced into the graph)."""
    if activation_checkpointing:
        log(f"activation checkpointing on {checkpoint_blocks(model)} blocks")
    if compile:
        log(f"torch.compile: {compile_model(model)}")
