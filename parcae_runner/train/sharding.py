"""``train.strategy``: how the model is spread over the ranks, and FSDP2 sharding (``train.strategy=fsdp``).

- ``ddp``: Lightning's DDP; every rank holds the whole model, its gradients and its optimizer states.
- ``fsdp``: Lightning's ``ModelParallelStrategy`` with a data-parallel mesh only, and PyTorch's own FSDP2
  (``torch.distributed.fsdp.fully_shard``, DTensor parameters) applied in the module's ``configure_model`` hook:
  each of the architecture's sharding units (``Architecture.shard_units``, its block classes) is one FSDP unit and
  the rest of the model (embeddings, final norm, head) the root unit. Parameters, gradients and optimizer states
  are sharded on dim 0 over the ranks; a unit's parameters are gathered just before it runs and freed after
  (``train.fsdp.reshard_after_forward``); its gradients are reduce-scattered as soon as its backward is done.
  Checkpoints are written with ``torch.distributed.checkpoint`` (DCP), each rank its shards, and read back at any
  world size (train/checkpointing.py).

Why ``ModelParallelStrategy`` rather than Lightning's ``FSDPStrategy``: the latter wraps FSDP1
(``FullyShardedDataParallel``, flat parameters), whose checkpoints and optimizer states are tied to its flattening;
FSDP2 keeps every parameter a DTensor with its own name and shape, so the optimizer (Muon included), gradient norms,
DCP and the memory plan (models/memory.py) see the model's own tensors. ``ModelParallelStrategy`` runs FSDP2, saves
DCP checkpoints and passes no device id on CPU, so the same code trains on a CPU box over gloo.

A looped model (Parcae) runs each core block several times in one forward: every run gathers the block again
(when resharded after forward) and, with gradients, reduce-scatters its gradient once per run; the shards
accumulate, so the sum is the unsharded gradient. Every rank must run each unit the same number of times (the
collectives must match), so the depths of one micro step are drawn for the global micro batch and every rank loops
to the deepest of them (models/parcae/model.py ``set_depth_context``).
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from parcae_runner.config.errors import ConfigError
from parcae_runner.config.schema import Strategy
from parcae_runner.util.log import log


def resolved_strategy(cfg: DictConfig) -> str:
    """``ddp`` or ``fsdp``: ``train.strategy`` as given, and ``auto`` as the memory plan decides."""
    if cfg.train.strategy == Strategy.AUTO:
        from parcae_runner.train.memory_fit import resolve_strategy

        return resolve_strategy(cfg)
    return str(cfg.train.strategy)


def lightning_strategy(cfg: DictConfig, world_size: int) -> Any:
    """The strategy handed to Lightning's ``Trainer``: ``"auto"`` (DDP across ranks) or FSDP2's."""
    if resolved_strategy(cfg) != Strategy.FSDP:
        return "auto"
    from lightning.pytorch.strategies import ModelParallelStrategy

    # one mesh dimension, every rank a data-parallel rank; hybrid sharding builds its own 2-D mesh (shard_model)
    return ModelParallelStrategy(data_parallel_size=world_size, tensor_parallel_size=1)


def shard_unit_classes(arch_name: str) -> tuple[type, ...]:
    from parcae_runner.models.registry import get_architecture

    units = get_architecture(arch_name).shard_units
    if not units:
        raise ConfigError("train.strategy", "fsdp", f"architecture {arch_name!r} declares no sharding units")
    return units


def _mesh(mesh: Any, hybrid: bool, num_nodes: int) -> Any:
    """The data-parallel mesh, or for hybrid sharding over several nodes a (replicate, shard) mesh: shard within a
    node, replicate across nodes."""
    flat = mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh
    if not hybrid or num_nodes < 2:
        return flat
    from torch.distributed.device_mesh import init_device_mesh

    per_node = flat.size() // num_nodes
    return init_device_mesh(flat.device_type, (num_nodes, per_node), mesh_dim_names=("replicate", "shard"))


def shard_model(model: nn.Module, units: tuple[type, ...], mesh: Any, cfg: DictConfig) -> int:
    """``fully_shard`` each sharding unit of ``model``, then the model itself (the root unit). Returns how many units.

    On a GPU with ``train.fsdp.mixed_precision`` the gathered parameters are bf16 and gradients are reduced in fp32
    (the sharded master copy and optimizer states stay fp32); on a CPU everything stays fp32."""
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    f = cfg.train.fsdp
    on_gpu = mesh.device_type == "cuda"
    if f.cpu_offload and not on_gpu:
        log("fsdp: train.fsdp.cpu_offload has nothing to do on a CPU (the shards are in host memory already)")
    kwargs: dict[str, Any] = {
        "mesh": _mesh(mesh, bool(f.hybrid), int(cfg.train.num_nodes)),
        # offloaded shards are pinned host memory, for fast copies to the GPU
        "offload_policy": CPUOffloadPolicy() if f.cpu_offload and on_gpu else OffloadPolicy(),
    }
    if on_gpu and f.mixed_precision:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    found = [m for m in model.modules() if isinstance(m, units)]
    if not found:
        raise ConfigError("train.strategy", "fsdp", f"the model has none of its sharding units {units}")
    for unit in found:
        fully_shard(unit, reshard_after_forward=bool(f.reshard_after_forward), **kwargs)
    fully_shard(model, **kwargs)
    log(f"fsdp: {len(found)} units + root sharded over {kwargs['mesh'].size()} ranks")
    return len(found)


def is_sharded(tensor: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)
