"""A checkpoint's weights against the model they are about to fill: the same names with the same shapes, or bad input.

Both layouts are checked from their headers alone, before a byte of weights is read: ``model.safetensors`` (a DDP
run's file) and the ``model/`` DCP folder of a sharded run (:mod:`parcae_runner.runs.sharded_weights`). A checkpoint
of another size or architecture (a run directory whose ``config.yaml`` was edited, weights copied from another run)
is then refused in one line naming the tensor and both shapes (exit 2), not with the loader's traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import nn

from parcae_runner.config.errors import ConfigError

KEY = "checkpoint"


def safetensors_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a safetensors file, from its header."""
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as f:
        return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}


def check_shapes(model: nn.Module, shapes: Mapping[str, tuple[int, ...]], source: Path) -> None:
    """Refuse (:class:`ConfigError`) weights ``shapes`` that do not fit ``model``: a tensor of another shape, one the
    model has and the checkpoint lacks, or one the checkpoint has and the model lacks.

    A tied tensor (embedding = head) may be stored under one of its names only (safetensors keeps one per storage):
    a name is missing only when no tensor sharing its storage is there."""
    tensors = model.state_dict(keep_vars=True)
    stored = {tensors[name].untyped_storage().data_ptr() for name in tensors if name in shapes}
    for name, tensor in tensors.items():
        if name not in shapes:
            if tensor.untyped_storage().data_ptr() in stored:
                continue
            raise ConfigError(KEY, str(source), f"has no tensor {name!r} (another architecture?)")
        if tuple(tensor.shape) != tuple(shapes[name]):
            raise ConfigError(
                KEY,
                str(source),
                f"{name} has shape {list(shapes[name])} there and {list(tensor.shape)} in the model "
                "(another size or architecture?)",
            )
    extra = sorted(set(shapes) - set(tensors))
    if extra:
        lacking = ", ".join(extra[:3])
        raise ConfigError(KEY, str(source), f"has tensors the model lacks: {lacking} (another architecture?)")
