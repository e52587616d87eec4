"""The memory plan: the bytes one GPU holds to train a model, per term, under DDP or FSDP2.

``plan_memory`` reads a model's own parameter shapes (build it on the ``meta`` device, so planning a 7B model
allocates nothing) and returns a :class:`MemoryPlan` per rank:

* parameters, gradients, optimizer states: the persistent tensors. FSDP2 (``fully_shard``) shards every parameter
  on dim 0, padded to a multiple of the shard group ``W``, so a rank holds ``ceil(dim0 / W) * prod(rest)`` elements
  of each (``W`` = world size; under hybrid sharding the GPUs of one node, replicated across nodes). The sharded
  parameters, their gradients and the optimizer states stay fp32 (the master copy) under mixed precision.
  AdamW keeps ``exp_avg`` and ``exp_avg_sq`` (the parameter's shape and dtype) and a 4-byte ``step``; Muon keeps a
  momentum buffer (the gradient's shape) and, with NorMuon, an fp32 vector of ``max(rows, cols)`` values that the
  optimizer allocates from the global shape, so it is not sharded (``parcae_runner/train/muon.py``).
* ``unsharded``: the transient full-size copies FSDP gathers (parameters in ``param_dtype``) and reduces
  (gradients in ``reduce_dtype``): the root unit (embeddings, head; it is not resharded after forward), two block
  units (the one computing and the one prefetched) and one block's gradients; every unit when parameters are not
  resharded after forward. Under DDP it is the reducer's gradient buckets (one more copy of the gradients).
* activations, the tensors autograd saves for backward at the micro batch. Per block and token, Korthikanti et al.
  2022 ("Reducing Activation Recomputation in Large Transformer Models", arXiv 2205.05198, Sec. 4.1) count the inputs
  of every matmul and pointwise op; written through the block's own layers this is

      block = B * T * (sum over the block's nn.Linear of (in_features + out_features) + 4 * d_model) * act_bytes

  (each matmul's input, and its output, which the next pointwise op saves; ``4 * d_model``: the two norms' inputs
  and outputs). It assumes fused attention (no ``[B, H, T, T]`` scores) and fused scan kernels, as on a GPU; the
  loss adds ``B * T * vocab * 4`` (cross-entropy's fp32 log-softmax) and the head ``2 * B * T * d_model`` (the
  final norm's and the head's inputs). A block that runs several times with gradients (Parcae's core, under
  truncated backprop: ``Architecture.activation_passes``) counts once per run. With activation checkpointing a
  block keeps only its input ``B * T * d_model`` and one block at a time is recomputed in full during backward.

``smallest_change_that_fits`` names, in order, the changes that make a plan fit a GPU: ``train.strategy=fsdp``,
the smallest GPU or node count, a smaller micro batch, activation checkpointing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from parcae_runner.models.param_roles import muon_parameter_names
from parcae_runner.models.registry import ARCHITECTURES

GB = 1e9
STRATEGIES = ("ddp", "fsdp")
OPTIMIZERS = ("adamw", "muon")
# AdamW's ``step`` is a 0-d fp32 tensor per parameter (torch.optim.AdamW's ``_get_scalar_dtype``)
ADAM_STEP_BYTES = 4
# cross-entropy saves its log-softmax in fp32 (the task casts the logits: ``logits.float()``)
LOSS_BYTES = 4


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes one rank holds on its GPU for each term (``cpu_offloaded``: the bytes moved to host memory instead)."""

    strategy: str
    world_size: int
    shard_group: int
    params: int
    grads: int
    optimizer: int
    unsharded: int
    activations: int
    activations_checkpointed: int
    activation_checkpointing: bool
    cpu_offloaded: int = 0

    @property
    def activations_used(self) -> int:
        return self.activations_checkpointed if self.activation_checkpointing else self.activations

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.unsharded + self.activations_used

    def fits(self, gpu_memory_gb: float) -> bool:
        return self.total <= gpu_memory_gb * GB

    def format(self) -> str:
        """One line per term, in GB (1e9 bytes)."""
        checkpointing = "on" if self.activation_checkpointing else "off"
        lines = [
            f"strategy          {self.strategy}, {self.world_size} GPU(s), shards over {self.shard_group}, "
            f"activation checkpointing {checkpointing}",
            f"parameters        {self.params / GB:.2f} GB",
            f"gradients         {self.grads / GB:.2f} GB",
            f"optimizer states  {self.optimizer / GB:.2f} GB",
            f"unsharded/buffers {self.unsharded / GB:.2f} GB",
            f"activations       {self.activations / GB:.2f} GB",
            f"  checkpointed    {self.activations_checkpointed / GB:.2f} GB",
        ]
        if self.cpu_offloaded:
            lines.append(f"offloaded to CPU  {self.cpu_offloaded / GB:.2f} GB")
        lines.append(f"total per GPU     {self.total / GB:.2f} GB")
        return "\n".join(lines)


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The modules FSDP wraps one by one before the root: the elements of the model's outermost ``nn.ModuleList``s
    (``blocks``; Parcae's ``prelude``, ``core``, ``coda``). Everything else belongs to the root unit."""
    units: list[nn.Module] = []
    inside: set[int] = set()
    for module in model.modules():
        if id(module) in inside:
            continue
        if isinstance(module, nn.ModuleList):
            units.extend(module)
            inside.update(id(m) for unit in module for m in unit.modules())
    return units


def shard_numel(shape: Sequence[int], group: int) -> int:
    """Elements of the largest dim-0 shard of a ``shape`` tensor over ``group`` ranks (FSDP2 pads dim 0 to a
    multiple of ``group``): ``ceil(dim0 / group) * prod(rest)``; a 0-d tensor is one element."""
    if len(shape) == 0:
        return 1
    return math.ceil(shape[0] / group) * math.prod(shape[1:])


def _dtype_bytes(dtype: torch.dtype | str) -> int:
    if isinstance(dtype, str):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    return torch.empty((), dtype=dtype, device="meta").element_size()


def _unique_named_parameters(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad]


def _optimizer_bytes(
    named: Iterable[tuple[str, nn.Parameter]], optimizer: str, muon_names: set[str], normuon: bool, group: int
) -> int:
    total = 0
    for name, p in named:
        local = shard_numel(p.shape, group) * p.element_size()
        if optimizer == "muon" and name in muon_names:
            total += local + (max(p.shape) * 4 if normuon else 0)
        else:
            total += 2 * local + ADAM_STEP_BYTES
    return total


def _block_activation_elements(block: nn.Module, d_model: int) -> int:
    """Per token: the block's matmul inputs and outputs plus its two norms (see the module docstring)."""
    linear = sum(m.in_features + m.out_features for m in block.modules() if isinstance(m, nn.Linear))
    return linear + 4 * d_model


def _model_width(model: nn.Module) -> tuple[int, int]:
    """(d_model, vocab) from the token embedding table ``[vocab, d_model]`` (the first ``nn.Embedding``)."""
    embedding = next(m for m in model.modules() if isinstance(m, nn.Embedding))
    return embedding.embedding_dim, embedding.num_embeddings


def _passes(model: nn.Module) -> dict[int, int]:
    """id(block) -> how many times it runs with gradients in one training forward, where the architecture's
    ``activation_passes`` says more than once (Parcae's core under truncated backprop)."""
    arch = next((a for a in ARCHITECTURES.values() if type(model) is a.model_cls), None)
    if arch is None or arch.activation_passes is None:
        return {}
    counts = arch.activation_passes(model.hparams)
    return {id(block): n for name, n in counts.items() for block in getattr(model, name)}


def activation_bytes(model: nn.Module, micro_batch: int, seq_len: int, act_bytes: int, checkpointing: bool) -> int:
    """Bytes autograd saves for backward in one forward of ``[micro_batch, seq_len]`` tokens (the module docstring's
    formula); ``checkpointing``: each block keeps only its input, one block is recomputed at a time. A block that
    runs several times with gradients (``Architecture.activation_passes``) keeps its activations once per run."""
    d_model, vocab = _model_width(model)
    tokens = micro_batch * seq_len
    passes = _passes(model)
    blocks = [
        _block_activation_elements(unit, d_model) for unit in shard_units(model) for _ in range(passes.get(id(unit), 1))
    ]
    head = tokens * (2 * d_model * act_bytes + vocab * LOSS_BYTES)
    if checkpointing:
        largest = max(blocks, default=0)
        return head + tokens * act_bytes * (len(blocks) * d_model + largest)
    return head + tokens * act_bytes * sum(blocks)


def plan_memory(
    model: nn.Module,
    *,
    micro_batch: int,
    seq_len: int,
    optimizer: str = "adamw",
    strategy: str = "ddp",
    world_size: int = 1,
    gpus_per_node: int | None = None,
    param_dtype: torch.dtype | str = torch.float32,
    reduce_dtype: torch.dtype | str = torch.float32,
    reshard_after_forward: bool = True,
    cpu_offload: bool = False,
    hybrid: bool = False,
    activation_checkpointing: bool = False,
    normuon: bool = True,
    no_decay: Sequence[str] = ("bias", "norm"),
) -> MemoryPlan:
    """The per-rank memory of training ``model`` (any device; ``meta`` costs nothing) at ``[micro_batch, seq_len]``.

    ``param_dtype``: the compute dtype (bf16 under mixed precision: FSDP gathers bf16 copies and activations are
    bf16); ``reduce_dtype``: the dtype gradients are reduced in; ``hybrid``: shard within a node of
    ``gpus_per_node`` GPUs, replicate across nodes; ``cpu_offload``: FSDP keeps the sharded parameters, gradients
    and optimizer states in host memory.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
    gpus_per_node = gpus_per_node or world_size
    if strategy == "ddp":
        group = 1
    elif hybrid:
        if world_size % gpus_per_node:
            raise ValueError(f"hybrid sharding: world_size={world_size} is not a multiple of {gpus_per_node=}")
        group = gpus_per_node
    else:
        group = world_size
    named = _unique_named_parameters(model)
    params = sum(shard_numel(p.shape, group) * p.element_size() for _, p in named)
    muon_names = muon_parameter_names(model, no_decay) if optimizer == "muon" else set()
    states = _optimizer_bytes(named, optimizer, muon_names, normuon, group)
    grads = params
    compute = _dtype_bytes(param_dtype)
    if strategy == "ddp":
        unsharded = grads
    else:
        unsharded = _gathered_bytes(model, compute, _dtype_bytes(reduce_dtype), reshard_after_forward)
    offloaded = 0
    if strategy == "fsdp" and cpu_offload:
        offloaded, params, grads, states = params + grads + states, 0, 0, 0
    return MemoryPlan(
        strategy=strategy,
        world_size=world_size,
        shard_group=group,
        params=params,
        grads=grads,
        optimizer=states,
        unsharded=unsharded,
        activations=activation_bytes(model, micro_batch, seq_len, compute, checkpointing=False),
        activations_checkpointed=activation_bytes(model, micro_batch, seq_len, compute, checkpointing=True),
        activation_checkpointing=activation_checkpointing,
        cpu_offloaded=offloaded,
    )


def _gathered_bytes(model: nn.Module, param_bytes: int, grad_bytes: int, reshard_after_forward: bool) -> int:
    """FSDP's full-size copies in flight (see the module docstring): root + two blocks' parameters (every unit's
    when not resharded after forward) and one block's unsharded gradients."""
    units = [sum(p.numel() for p in unit.parameters()) for unit in shard_units(model)]
    root = sum(p.numel() for p in model.parameters()) - sum(units)
    largest = max(units, default=0)
    gathered = root + (sum(units) if not reshard_after_forward else min(2, len(units)) * largest)
    return gathered * param_bytes + max(largest, root) * grad_bytes


@dataclass(frozen=True)
class Suggestion:
    """One change (as config overrides) and the plan it gives."""

    change: str
    plan: MemoryPlan


def smallest_change_that_fits(
    model: nn.Module,
    gpu_memory_gb: float,
    *,
    max_gpus_per_node: int = 8,
    max_nodes: int = 64,
    **settings,
) -> list[Suggestion]:
    """The changes that make ``plan_memory(model, **settings)`` fit ``gpu_memory_gb``, smallest first per kind:
    FSDP at the same GPU count; FSDP (or the same strategy) on the fewest GPUs, then nodes, that fit; the largest
    micro batch (halving) that fits; activation checkpointing. [] when none does (or when the plan fits already)."""
    base = plan_memory(model, **settings)
    if base.fits(gpu_memory_gb):
        return []
    out: list[Suggestion] = []
    world = settings.get("world_size", 1)
    per_node = settings.get("gpus_per_node") or world
    strategy = settings.get("strategy", "ddp")
    if strategy == "ddp":
        plan = plan_memory(model, **{**settings, "strategy": "fsdp"})
        if plan.fits(gpu_memory_gb):
            out.append(Suggestion("train.strategy=fsdp", plan))
    fsdp = {**settings, "strategy": "fsdp"}
    more = _fewest_gpus(model, gpu_memory_gb, fsdp, world, per_node, max_gpus_per_node, max_nodes)
    if more is not None:
        out.append(more)
    batch = settings["micro_batch"] // 2
    while batch >= 1:
        plan = plan_memory(model, **{**settings, "micro_batch": batch})
        if plan.fits(gpu_memory_gb):
            out.append(Suggestion(f"train.micro_batch_size={batch}", plan))
            break
        batch //= 2
    if not settings.get("activation_checkpointing", False):
        plan = plan_memory(model, **{**settings, "activation_checkpointing": True})
        if plan.fits(gpu_memory_gb):
            out.append(Suggestion("train.activation_checkpointing=true", plan))
    return out


def _fewest_gpus(
    model: nn.Module,
    gpu_memory_gb: float,
    settings: dict,
    world: int,
    per_node: int,
    max_gpus_per_node: int,
    max_nodes: int,
) -> Suggestion | None:
    """FSDP on more GPUs of one node, then on more full nodes: the first count (above ``world``) that fits."""
    counts = [(1, g) for g in range(1, max_gpus_per_node + 1)]
    counts += [(n, max_gpus_per_node) for n in range(2, max_nodes + 1)]
    for nodes, gpus in counts:
        if nodes * gpus <= world:
            continue
        plan = plan_memory(model, **{**settings, "world_size": nodes * gpus, "gpus_per_node": gpus})
        if plan.fits(gpu_memory_gb):
            change = f"train.strategy=fsdp cluster.gpus_per_node={gpus}"
            if nodes > 1:
                change += f" cluster.nodes={nodes}"
            return Suggestion(change, plan)
    return None
