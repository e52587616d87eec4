"""Muon with the additions of Parcae's ``MuonAdamW`` (``SandyResearch/parcae``, ``recpre/optim/muon_adamw.py``),
built on :class:`torch.optim.Muon`.

For a 2-D weight ``W [rows, cols]`` with gradient ``G`` at update ``t`` (0-based)::

    mu_t   = momentum warm-up: mu_0 -> mu over the first `momentum_warmup_steps` updates (linear)
    M      = lerp(M, G, 1 - mu_t)                      # momentum buffer
    U      = lerp(G, M, mu_t)  (Nesterov)  or  M
    O      = NS(U)                                     # orthogonalised: ns_steps Newton-Schulz iterations
    O      = NorMuon(O)                                # optional, below
    lr'    = lr * sqrt(max(1, rows / cols))            # Keller Jordan's shape scaling (torch's "original")
    wd_t   = weight_decay * (1 - t / decay_steps)      # optional linear decay to 0
    mask   = (O * W >= 0)  (cautious)  or  1
    W     <- W - lr' * O - lr' * wd_t * mask * W

Sources of each option:

* Newton-Schulz: Keller Jordan, "Muon: an optimizer for hidden layers" (2024); the fixed quintic
  ``(3.4445, -4.7750, 2.0315)`` is torch's default. ``polar_express``: one quintic per iteration, the
  coefficients of Amsel et al., "The Polar Express" (arXiv 2505.16932, 5 iterations, safety factor 2e-2),
  with the input scaled by ``1 / (1.02 ||U||_F + 1e-6)`` as nanochat (karpathy/nanochat) and Parcae do.
* NorMuon (Li et al., arXiv 2510.05491; modded-nanogpt, nanochat): an EMA ``v`` (``beta2``) of the mean square of
  ``O`` along its longer side (one value per row of a tall or square matrix, per column of a wide one), then
  ``O <- O / sqrt(v)`` rescaled so that ``||O||_F`` is unchanged.
* Cautious weight decay (Chen et al., "Cautious Weight Decay", arXiv 2510.12402): decay only the entries where
  the update and the weight have the same sign.
* Momentum warm-up 0.85 -> 0.95 over 300 steps and weight decay falling linearly to 0 by the end of training:
  nanochat's ``base_train.py`` schedules, which Parcae's ``train.py`` uses.

The decay uses the shape-scaled ``lr'`` as nanochat does (torch's Muon uses the plain ``lr``). The update counter
and the warm-up/decay settings live in the param group, so ``state_dict`` carries them and a resumed run continues
exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributed.tensor import DTensor, distribute_tensor

# Amsel et al., "The Polar Express" (arXiv 2505.16932), 5 iterations, safety factor 2e-2, cushion 2
POLAR_EXPRESS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
# Keller Jordan's quintic, every iteration (torch.optim.Muon's default)
KELLER = ((3.4445, -4.7750, 2.0315),)
NS_COEFFICIENTS = {"polar_express": POLAR_EXPRESS, "keller": KELLER}
# how U is scaled before the first iteration: U / (||U||_F * (1 + safety) + eps)
NS_SCALING = {"polar_express": (0.02, 1e-6), "keller": (0.0, 1e-7)}


def newton_schulz(u: Tensor, coefficients: str, steps: int, dtype: torch.dtype | None = None) -> Tensor:
    """Approximate the orthogonal polar factor of ``u [rows, cols]`` (in ``dtype``, default ``u``'s).

    Each iteration ``X <- a X + (b A + c A^2) X`` with ``A = X X^T`` on the wide orientation (a tall ``u`` is
    transposed first and back at the end); iteration ``i`` uses ``coefficients``' ``i``-th tuple, the last
    one once they run out."""
    table = NS_COEFFICIENTS[coefficients]
    safety, eps = NS_SCALING[coefficients]
    x = u.to(dtype or u.dtype)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / (x.norm() * (1 + safety) + eps)
    for i in range(steps):
        a, b, c = table[min(i, len(table) - 1)]
        gram = x @ x.T
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.T if tall else x


def normuon_dim(shape: torch.Size) -> int:
    """The dimension NorMuon averages over: columns of a tall or square matrix (a value per row), else rows."""
    return -1 if shape[0] >= shape[1] else -2


def normuon(o: Tensor, second_moment: Tensor, beta2: float) -> Tensor:
    """Scale ``o`` by the inverse root of the EMA ``second_moment`` (updated in place) of its mean square along
    :func:`normuon_dim`, keeping ``||o||_F``."""
    dim = normuon_dim(o.shape)
    sq = o.float().square()
    v_mean = sq.mean(dim=dim, keepdim=True)  # [rows, 1] or [1, cols]
    second_moment.lerp_(v_mean.to(second_moment.dtype), 1 - beta2)
    scale = second_moment.float().clamp_min(1e-10).rsqrt()
    norm_before = sq.sum().sqrt()
    norm_after = (sq * scale.square()).sum().sqrt()
    return o * (scale * (norm_before / norm_after.clamp_min(1e-10))).to(o.dtype)


def momentum_at(step: int, momentum: float, start: float, warmup_steps: int) -> float:
    """Linear warm-up of the momentum from ``start`` to ``momentum`` over ``warmup_steps`` updates."""
    if warmup_steps <= 0:
        return momentum
    frac = min(step / warmup_steps, 1.0)
    return (1 - frac) * start + frac * momentum


def weight_decay_at(step: int, weight_decay: float, decay_steps: int | None) -> float:
    """``weight_decay`` falling linearly to 0 at ``decay_steps`` (constant when None)."""
    if not decay_steps:
        return weight_decay
    return weight_decay * max(0.0, 1 - step / decay_steps)


class Muon(torch.optim.Muon):
    """:class:`torch.optim.Muon` with Polar-Express coefficients, NorMuon, cautious weight decay and the momentum
    and weight-decay schedules (see the module docstring). With ``ns_coefficients="keller"``, ``normuon=False``,
    ``cautious=False``, no schedules and ``ns_dtype=torch.bfloat16`` it is torch's Muon with
    ``adjust_lr_fn="original"``, except that decay uses the shape-scaled lr."""

    def __init__(
        self,
        params,
        lr: float = 0.02,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: str = "polar_express",
        ns_steps: int = 5,
        normuon: bool = True,
        beta2: float = 0.95,
        cautious: bool = True,
        momentum_start: float | None = None,
        momentum_warmup_steps: int = 0,
        weight_decay_steps: int | None = None,
        ns_dtype: torch.dtype | None = None,
    ) -> None:
        if ns_coefficients not in NS_COEFFICIENTS:
            raise ValueError(f"ns_coefficients={ns_coefficients!r}: choose one of {', '.join(NS_COEFFICIENTS)}")
        super().__init__(
            params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps
        )
        extra = dict(
            ns_coefficients=ns_coefficients,
            normuon=normuon,
            beta2=beta2,
            cautious=cautious,
            momentum_start=momentum if momentum_start is None else momentum_start,
            momentum_warmup_steps=momentum_warmup_steps,
            weight_decay_steps=weight_decay_steps,
            updates=0,
        )
        self.defaults.update(extra)
        for group in self.param_groups:
            # torch's group holds its (a, b, c) tuple under ns_coefficients: ours names a table
            group.update({k: v for k, v in extra.items() if k not in group or k == "ns_coefficients"})
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            t = group["updates"]
            mu = momentum_at(t, group["momentum"], group["momentum_start"], group["momentum_warmup_steps"])
            wd = weight_decay_at(t, group["weight_decay"], group["weight_decay_steps"])
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group, mu, wd)
            group["updates"] = t + 1
        return loss

    def _update(self, p: Tensor, group: dict, mu: float, wd: float) -> None:
        grad, state = p.grad, self.state[p]
        assert grad is not None, "step() updates only the parameters that have a gradient"
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
            if group["normuon"]:
                reduced = list(p.shape)
                reduced[normuon_dim(p.shape)] = 1
                state["second_moment"] = torch.zeros(reduced, dtype=torch.float32, device=p.device)
        buf = state["momentum_buffer"]
        buf.lerp_(grad, 1 - mu)
        u = grad.lerp(buf, mu) if group["nesterov"] else buf
        if isinstance(u, DTensor):
            # FSDP: Newton-Schulz needs the whole matrix. Gather it (one all-gather of the matrix, in the gradient's
            # dtype, per step), orthogonalize on every rank (the same numbers everywhere), keep this rank's shard.
            u = u.full_tensor()
        o = newton_schulz(u, group["ns_coefficients"], group["ns_steps"], self.ns_dtype).to(p.dtype)
        if group["normuon"]:
            o = normuon(o, state["second_moment"], group["beta2"])
        if isinstance(p, DTensor):
            # no communication: every rank holds the full update and keeps the slice that matches its shard of p
            o = distribute_tensor(o, p.device_mesh, p.placements, src_data_rank=None)
        lr = group["lr"] * math.sqrt(max(1.0, p.size(0) / p.size(1)))
        if wd:
            decay = p * (o * p >= 0) if group["cautious"] else p
            p.sub_(lr * wd * decay + lr * o)
        else:
            p.sub_(lr * o)
