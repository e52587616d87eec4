"""Mamba-1 (Gu & Dao, 2023): a stack of selective-state-space mixers, as HF ``MambaForCausalLM``.

Per block, a pre-norm residual ``x = x + Mixer(RMSNorm(x))``; the mixer is::

    [x, z] = in_proj(h)                         # d -> 2 E, no bias (E = expand * d)
    x = silu(causal_depthwise_conv1d(x))        # kernel d_conv, with bias
    [dt, B, C] = x_proj(x)                      # E -> dt_rank + 2 N
    y = selective_scan(x, dt_proj.W dt, A = -exp(A_log), B, C, D, z, delta_bias = dt_proj.b, softplus)
    out = out_proj(y)                           # E -> d, no bias; y already carries the silu(z) gate

then a final RMSNorm (``norm_f``) and an output head tied to the input embedding. Inner parameter names
are HF's (``mixer.in_proj``, ``mixer.A_log``, ...), so ``parcae_runner.models.mamba.hf`` is a rename.

Init is mamba_ssm's (``mamba_simple.Mamba.__init__`` + ``mixer_seq_simple._init_weights``): S4D-real
``A_log = log(1..N)``, ``D = 1``, dt bias = softplus^-1 of dt ~ logU[1e-3, 1e-1] floored at 1e-4, dt_proj
weight U(+-dt_rank^-0.5), in_proj / x_proj / conv1d PyTorch's default init, out_proj PyTorch's default
divided by sqrt(n_layers) (rescale_prenorm_residual, one residual branch per block), embedding N(0, 0.02).
HF's own ``_init_weights`` differs (zero conv bias, no out_proj rescale by default).

Precision: ``A_log``, ``D`` and the dt bias must stay fp32 (state-spaces/mamba#6). Under the trainer's
``bf16-mixed`` autocast every parameter is an fp32 master anyway, and the mixer hands them to the scan as
``.float()``; a pure-bf16 setup must leave the parameters listed in ``MambaMixer._keep_fp32`` alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parcae_runner.kernels.selective_scan import selective_scan
from parcae_runner.models.layers.init import init_embedding, init_norm
from parcae_runner.models.layers.lm import LanguageModel


@dataclass
class MambaHParams:
    name: str = "mamba"
    # SSM state size N per channel
    d_state: int = 16
    # width of the causal depthwise convolution
    d_conv: int = 4
    # inner width E = expand * d_model
    expand: int = 2
    # rank of the dt projection; 0 means "auto" = ceil(d_model / 16), as mamba_ssm and HF
    dt_rank: int = 0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    # selective-scan implementation: "auto" (Triton on CUDA, else reference), "triton" or "reference"
    kernel_impl: str = "auto"
    # False: A_log, D and the dt bias get no weight decay (mamba_ssm's _no_weight_decay);
    # True: leave them to the optimizer's default rule, as the HF Trainer (and so the Parc models) did
    decay_ssm_params: bool = False


# dt init range of mamba_ssm / HF (dt_min, dt_max, dt_init_floor)
DT_MIN, DT_MAX, DT_FLOOR = 1e-3, 1e-1, 1e-4
EMBED_STD = 0.02


def resolve_dt_rank(hp: MambaHParams, d_model: int) -> int:
    return hp.dt_rank if hp.dt_rank > 0 else math.ceil(d_model / 16)


class MambaMixer(nn.Module):
    """The selective-SSM mixer: ``[B, T, d] -> [B, T, d]``."""

    # parameters that must stay fp32 whatever the compute dtype (see the module docstring)
    _keep_fp32: tuple[str, ...] = ("A_log", "D", "dt_proj.bias")

    def __init__(self, d_model: int, d_inner: int, d_state: int, d_conv: int, dt_rank: int, kernel_impl: str) -> None:
        super().__init__()
        self.d_inner, self.d_state, self.dt_rank = d_inner, d_state, dt_rank
        self.kernel_impl = kernel_impl
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        # depthwise; padding d_conv - 1 on both sides, the right overhang is cut off in forward (causal)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        # its bias is the scan's delta_bias, added (in fp32) inside the scan
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(d_inner, d_state))
        self.D = nn.Parameter(torch.empty(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    @torch.no_grad()
    def init_weights(self, n_layers: int) -> None:
        for module in (self.in_proj, self.x_proj, self.conv1d):
            module.reset_parameters()  # PyTorch defaults, as mamba_ssm leaves them
        dt_std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -dt_std, dt_std)
        # dt ~ logU[DT_MIN, DT_MAX]; the bias is softplus^-1(dt) = dt + log(1 - exp(-dt))
        log_dt = torch.rand_like(self.dt_proj.bias, dtype=torch.float32) * (math.log(DT_MAX) - math.log(DT_MIN))
        dt = torch.exp(log_dt + math.log(DT_MIN)).clamp(min=DT_FLOOR)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real: A = -(1, 2, ..., N) in every channel
        a = torch.arange(1, self.d_state + 1, dtype=torch.float32, device=self.A_log.device)
        self.A_log.copy_(torch.log(a).expand(self.d_inner, -1))
        nn.init.ones_(self.D)
        # GPT-2 style rescale of the residual output (mamba_ssm's rescale_prenorm_residual, 1 branch per block)
        self.out_proj.reset_parameters()
        self.out_proj.weight.div_(math.sqrt(n_layers))

    def forward(self, h: Tensor) -> Tensor:
        """h: ``[B, T, d]`` -> ``[B, T, d]``."""
        T = h.shape[1]
        x, z = self.in_proj(h).transpose(1, 2).chunk(2, dim=1)  # each [B, E, T]
        x = F.silu(self.conv1d(x)[..., :T])  # [B, E, T]; keeping the first T outputs makes the conv causal
        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = self.dt_proj.weight @ dt.transpose(1, 2)  # [B, E, T]; bias and softplus are applied in the scan
        A = -torch.exp(self.A_log.float())  # [E, N]
        # without return_last_state the scan returns the output alone
        y = cast(
            Tensor,
            selective_scan(
                x,
                dt,
                A,
                B.transpose(1, 2),  # [B, N, T]
                C.transpose(1, 2),  # [B, N, T]
                D=self.D.float(),
                z=z,
                delta_bias=self.dt_proj.bias.float(),
                delta_softplus=True,
                impl=self.kernel_impl,
            ),
        )  # [B, E, T], gated by silu(z)
        return self.out_proj(y.transpose(1, 2))  # [B, T, d]


class MambaBlock(nn.Module):
    def __init__(self, hp: MambaHParams, d_model: int) -> None:
        super().__init__()
        d_inner = hp.expand * d_model
        self.norm = nn.RMSNorm(d_model, eps=hp.norm_eps)
        self.mixer = MambaMixer(d_model, d_inner, hp.d_state, hp.d_conv, resolve_dt_rank(hp, d_model), hp.kernel_impl)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[B, T, d]`` -> ``[B, T, d]``."""
        # the residual stream stays in the embedding's dtype (fp32 under autocast), as residual_in_fp32
        return x + self.mixer(self.norm(x))


class MambaModel(LanguageModel):
    """Mamba-1 LM: ``input_ids [B, T] -> logits [B, T, V]``."""

    def __init__(self, hparams: MambaHParams, dims: Mapping[str, int], vocab_size: int) -> None:
        super().__init__(hparams, dims, vocab_size)
        d_model, n_layers = dims["d_model"], dims["n_layers"]
        self.blocks = nn.ModuleList(MambaBlock(hparams, d_model) for _ in range(n_layers))
        self.norm_f = nn.RMSNorm(d_model, eps=hparams.norm_eps)
        self.finish_init()

    @torch.no_grad()
    def init_weights(self) -> None:
        self.tie_head()
        init_embedding(self.embed, EMBED_STD)
        for block in cast(Iterable[MambaBlock], self.blocks):
            init_norm(block.norm)
            block.mixer.init_weights(self.dims["n_layers"])
        init_norm(self.norm_f)
        if not self.hparams.tie_embeddings:
            self.lm_head.reset_parameters()  # mamba_ssm leaves an untied head at PyTorch's default

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters the optimizer must not decay: every mixer's A_log, D and dt bias."""
        if self.hparams.decay_ssm_params:
            return set()
        return {f"blocks.{i}.mixer.{name}" for i in range(len(self.blocks)) for name in ("A_log", "D", "dt_proj.bias")}

    def forward(self, input_ids: Tensor) -> Tensor:
        """input_ids: ``[B, T]`` int64 -> logits ``[B, T, V]``."""
        x = self.embed(input_ids)  # [B, T, d]
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.norm_f(x))  # [B, T, V]
