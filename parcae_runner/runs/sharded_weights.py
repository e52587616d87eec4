"""The weights of a sharded run (``train.strategy=fsdp``): a ``torch.distributed.checkpoint`` (DCP) folder,
``checkpoint-N/model/``, that every rank writes its shards into, and that any reader consolidates on the CPU.

Writing is collective (every rank calls :func:`save_sharded_weights`). Reading needs no process group: the folder's
metadata names every tensor with its global shape, and :func:`load_sharded_weights` loads them one at a time,
straight into the parameters of a model built on the CPU, so a reader never holds more than the model itself
(plus one tensor's read buffer). Exports, evaluations, the model card and ``runs.load_model`` read checkpoints this
way through :func:`parcae_runner.runs.checkpoints.load_checkpoint_model`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from parcae_runner.config.errors import ConfigError


def save_sharded_weights(model: nn.Module, folder: Path) -> None:
    """Every rank writes its shards of ``model``'s weights under ``folder`` (a collective call)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    dcp.save(get_model_state_dict(model), checkpoint_id=str(folder))


def sharded_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Name -> global shape of every tensor in a weights folder."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = FileSystemReader(str(folder)).read_metadata()
    return {
        name: tuple(meta.size)
        for name, meta in metadata.state_dict_metadata.items()
        if isinstance(meta, TensorStorageMetadata)
    }


def load_sharded_weights(model: nn.Module, folder: Path) -> None:
    """Fill ``model`` (on the CPU) from a weights folder, one tensor at a time, in place.

    A tensor whose shape differs from the model's, or one the folder lacks, is bad input (exit 2): the checkpoint is
    of another size or architecture."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader

    shapes = sharded_shapes(folder)
    # a tied tensor (embedding = head) appears under both names; it is loaded once per name, into the same storage
    for name, tensor in model.state_dict(keep_vars=True).items():
        if name not in shapes:
            raise ConfigError("checkpoint", str(folder), f"has no tensor {name!r} (another architecture?)")
        if tuple(tensor.shape) != shapes[name]:
            raise ConfigError(
                "checkpoint",
                str(folder),
                f"{name} has shape {list(shapes[name])} there and {list(tensor.shape)} in the model",
            )
        with torch.no_grad():
            dcp.load({name: tensor.data}, storage_reader=FileSystemReader(str(folder)), no_dist=True)
