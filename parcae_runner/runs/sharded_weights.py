"""The weights of a sharded run (``train.strategy=fsdp``): a ``torch.distributed.checkpoint`` (DCP) folder,
``checkpoint-N/model/``, that every rank writes its shards into, and that any reader consolidates on the CPU.

Writing is collective (every rank calls :func:`save_sharded_weights`). Reading needs no process group: the folder's
metadata names every tensor with its global shape, and :func:`load_sharded_weights` loads them one at a time,
straight into the parameters of a model built on the CPU, so a reader never holds more than the model itself
(plus one tensor's read buffer). Exports, evaluations, the model card and ``runs.load_model`` read checkpoints this
way through :func:`parcae_runner.runs.checkpoints.load_checkpoint_model`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from parcae_runner.runs.weight_shapes import check_shapes


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

    Never two copies of the model: each ``dcp.load`` call is handed one of the model's own tensors, so DCP's reader
    reads only that tensor's chunks (one per rank that wrote it, each ``torch.load``-ed and copied into the target's
    slice) and writes them into the model's storage. Beside the model, a reader holds at most one tensor's chunks:
    tests/runs/test_sharded_weights.py measures the peak resident memory of a load against that bound.

    A tensor whose shape differs from the model's, one the folder lacks or one the model lacks is bad input (exit 2):
    the checkpoint is of another size or architecture (runs/weight_shapes.py)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader

    shapes = sharded_shapes(folder)
    check_shapes(model, shapes, folder)
    with warnings.catch_warnings(), torch.no_grad():
        # no_dist is the intent (any process reads, with no process group): DCP warns that it assumes so
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        # a tied tensor (embedding = head) appears under both names; it is loaded once per name, into the same storage
        for name, tensor in model.state_dict(keep_vars=True).items():
            if name in shapes:  # else a tied name whose storage another name fills (check_shapes)
                dcp.load({name: tensor.data}, storage_reader=FileSystemReader(str(folder)), no_dist=True)
