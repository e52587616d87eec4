"""RWKV-7 "Goose" x070 (BlinkDL), as ``RWKV-LM/RWKV-v7/train_temp/src/model.py`` and the ``rwkv`` package.

``x = ln0(embed(ids))``, then per block ``x = x + TimeMix(ln1(x), v_first); x = x + ChannelMix(ln2(x))``, then
``ln_out`` and an untied head. With ``x'`` the previous token's input (zero at t = 0) and the static lerp
``x_* = x + (x' - x) * mu_*`` for * in r, w, k, v, a, g::

    r, k, v = receptance(x_r), key(x_k), value(x_v)
    w~    = -softplus(-(w0 + tanh(x_w w1) w2)) - 0.5          decay = exp(-exp(w~)) in (0.545, 1)
    a     = sigmoid(a0 + x_a a1 a2)                           in-context learning rate
    v     = v + (v_first - v) * sigmoid(v0 + x_v v1 v2)       layers > 0; layer 0 stores v_first = v
    g     = sigmoid(x_g g1) g2
    kk    = L2normalize_per_head(k * k_k);  k = k * (1 + (a - 1) * k_a)
    y     = WKV7(r, log decay = -exp(w~), k, v, -kk, kk * a)  (parcae_runner.kernels.wkv7)
    out   = output((GroupNorm_H(y, eps 64e-5) + sum_head(r * k * r_k) v) * g)
    ChannelMix: value(relu(key(x_k))^2)

Parameter names inside a block are the ``rwkv`` package's (``att.x_r``, ``att.w1``, ``ffn.key``, ...), so export
to its ``.pth`` is a rename (``parcae_runner.models.rwkv7.blinkdl``). The LoRA ranks are those of
``RWKV-v7/rwkv_v7_demo.py`` (decay and a: max(32, round(1.8 sqrt(C) / 32) * 32); v: 1.3 sqrt(C); gate 0.6 C^0.8).
Init follows ``RWKV_Tmix_x070.__init__`` / ``RWKV_CMix_x070.__init__`` and ``generate_init_weight`` of train_temp.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parcae_runner.kernels.wkv7 import wkv7
from parcae_runner.models.layers.init import init_norm
from parcae_runner.models.layers.lm import LanguageModel

# BlinkDL's GroupNorm eps for ln_x ("notice eps value"): 64e-5 = 1e-5 * head_size at 64
LN_X_EPS = 64e-5
EMBED_INIT = 1e-4


@dataclass
class RWKV7HParams:
    name: str = "rwkv7"
    # channel-mix hidden width = ffn_mult * d_model
    ffn_mult: int = 4
    norm_eps: float = 1e-5
    # WKV implementation: "auto" (Triton on CUDA, else reference), "triton" or "reference"
    kernel_impl: str = "auto"
    tie_embeddings: bool = False
    # LoRA ranks of the decay, in-context rate, value residual and gate; 0 = BlinkDL's rule for d_model
    # (set to load a published checkpoint made with other ranks)
    decay_lora: int = 0
    iclr_lora: int = 0
    value_lora: int = 0
    gate_lora: int = 0


def lora_rank(mult: float, c: int, power: float = 0.5) -> int:
    """BlinkDL's LoRA size rule: ``max(32, round(mult * C^power / 32) * 32)``."""
    return max(32, int(round(mult * c**power / 32)) * 32)


def lora_ranks(hp: RWKV7HParams, c: int) -> tuple[int, int, int, int]:
    """(decay, in-context rate, value, gate) LoRA ranks at width ``c``: the hparams', else BlinkDL's rule."""
    rule = (lora_rank(1.8, c), lora_rank(1.8, c), lora_rank(1.3, c), lora_rank(0.6, c, 0.8))
    given = (hp.decay_lora, hp.iclr_lora, hp.value_lora, hp.gate_lora)
    return tuple(g if g > 0 else r for g, r in zip(given, rule, strict=True))  # type: ignore[return-value]


def time_shift(x: Tensor) -> Tensor:
    """``[B, T, C]`` -> the previous token's ``[B, T, C]``, zeros at t = 0."""
    return F.pad(x, (0, 0, 1, -1))


def _ortho(x: Tensor, scale: float) -> None:
    """BlinkDL's ``ortho_init`` for a 2-d LoRA matrix."""
    gain = math.sqrt(x.shape[0] / x.shape[1]) if x.shape[0] > x.shape[1] else 1.0
    nn.init.orthogonal_(x, gain=gain * scale)


@torch.compiler.disable
def _wkv7_by_head(heads: tuple[int, int], impl: str, *flat: Tensor) -> Tensor:
    """``wkv7`` on ``[B, T, C]`` inputs (r, log w, k, v, a, b), viewed as ``[B, T, H, N]`` here -> ``[B*T, C]``.

    The views are made outside any compiled graph on purpose: a graph that breaks around the kernel would otherwise
    return the six head views beside their bases, and torch 2.13 rebuilds such aliased outputs through a record that
    can be read after it was freed (pytorch/pytorch#185630; seen here as garbage shapes and, rarely, a segfault)."""
    bsz, t, c = flat[0].shape
    r, w, k, v, a, b = (z.view(bsz, t, *heads) for z in flat)
    # without return_state the kernel returns the output alone
    return cast(Tensor, wkv7(r, w, k, v, a, b, impl=impl)).view(bsz * t, c)


class RWKV7TimeMix(nn.Module):
    """x070 time mixing (``att``): ``[B, T, C], v_first -> [B, T, C], v_first``."""

    # the [1, 1, C] token-shift lerps and per-channel vectors, registered by name in __init__
    x_r: nn.Parameter
    x_w: nn.Parameter
    x_k: nn.Parameter
    x_v: nn.Parameter
    x_a: nn.Parameter
    x_g: nn.Parameter
    w0: nn.Parameter
    a0: nn.Parameter
    k_k: nn.Parameter
    k_a: nn.Parameter

    def __init__(self, hp: RWKV7HParams, d_model: int, head_size: int, layer_id: int) -> None:
        super().__init__()
        c, self.head_size, self.layer_id, self.kernel_impl = d_model, head_size, layer_id, hp.kernel_impl
        self.n_heads = c // head_size
        for name in ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "w0", "a0", "k_k", "k_a"):
            setattr(self, name, nn.Parameter(torch.empty(1, 1, c)))
        d_w, d_a, d_v, d_g = lora_ranks(hp, c)
        self.w1, self.w2 = nn.Parameter(torch.empty(c, d_w)), nn.Parameter(torch.empty(d_w, c))
        self.a1, self.a2 = nn.Parameter(torch.empty(c, d_a)), nn.Parameter(torch.empty(d_a, c))
        if layer_id > 0:  # layer 0 has no value residual (the package ignores its v0/v1/v2)
            self.v0 = nn.Parameter(torch.empty(1, 1, c))
            self.v1, self.v2 = nn.Parameter(torch.empty(c, d_v)), nn.Parameter(torch.empty(d_v, c))
        self.g1, self.g2 = nn.Parameter(torch.empty(c, d_g)), nn.Parameter(torch.empty(d_g, c))
        self.r_k = nn.Parameter(torch.empty(self.n_heads, head_size))
        self.receptance = nn.Linear(c, c, bias=False)
        self.key = nn.Linear(c, c, bias=False)
        self.value = nn.Linear(c, c, bias=False)
        self.output = nn.Linear(c, c, bias=False)
        self.ln_x = nn.GroupNorm(self.n_heads, c, eps=LN_X_EPS)

    @torch.no_grad()
    def init_weights(self, n_layers: int) -> None:
        c, n, lid = self.x_r.shape[-1], self.head_size, self.layer_id
        r01 = lid / max(n_layers - 1, 1)  # 0 -> 1 over depth
        r10 = 1.0 - lid / n_layers  # 1 -> ~0 over depth
        i = torch.arange(c, dtype=torch.float32, device=self.x_r.device)
        ddd = (i / c).view(1, 1, c)
        for name, p in (("x_r", 0.2), ("x_w", 0.9), ("x_k", 0.7), ("x_v", 0.7), ("x_a", 0.9), ("x_g", 0.2)):
            getattr(self, name).copy_(1.0 - ddd ** (p * r10))
        linear = (i / max(c - 1, 1) - 0.5).view(1, 1, c)
        zigzag = ((i % n) - (n - 1) / 2) / max((n - 1) / 2, 1)
        zigzag = (zigzag * zigzag.abs()).view(1, 1, c)
        www = (-6 + 6 * (i / max(c - 1, 1)) ** (1 + r01**0.3)).view(1, 1, c)
        self.w0.copy_(www + 0.5 + zigzag * 2.5)  # +0.5: cancels the -0.5 after the softplus
        self.a0.copy_(-0.19 + zigzag * 0.3 + linear * 0.4)
        self.k_k.copy_(0.71 - linear * 0.1)
        self.k_a.fill_(1.02)
        self.r_k.fill_(-0.04)
        for lo, hi in ((self.w1, self.w2), (self.a1, self.a2), (self.g1, self.g2)):
            nn.init.zeros_(lo)
            _ortho(hi, 0.1)
        if self.layer_id > 0:
            self.v0.copy_(0.73 - linear * 0.4)
            nn.init.zeros_(self.v1)
            _ortho(self.v2, 0.1)
        bound = c**-0.5
        nn.init.uniform_(self.receptance.weight, -0.5 * bound, 0.5 * bound)
        nn.init.uniform_(self.key.weight, -0.05 * bound, 0.05 * bound)
        nn.init.uniform_(self.value.weight, -0.5 * bound, 0.5 * bound)
        nn.init.zeros_(self.output.weight)
        self.ln_x.weight.fill_(((1 + lid) / n_layers) ** 0.7)
        nn.init.zeros_(self.ln_x.bias)

    def forward(self, x: Tensor, v_first: Tensor | None) -> tuple[Tensor, Tensor]:
        """x: ``[B, T, C]`` (ln1-normed), v_first: layer 0's v ``[B, T, C]`` (None in layer 0)."""
        bsz, t, c = x.shape
        h, n = self.n_heads, self.head_size
        xx = time_shift(x) - x
        xr, xw, xk, xv, xa, xg = (x + xx * mu for mu in (self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g))
        r, k, v = self.receptance(xr), self.key(xk), self.value(xv)
        # log decay -exp(w~) with w~ = -softplus(-z) - 0.5, i.e. -e^-0.5 sigmoid(z) (the package's CPU form); fp32
        # under autocast too: decays near 1 compound over the sequence (the package also casts before the sigmoid)
        log_w = -math.exp(-0.5) * torch.sigmoid((self.w0 + torch.tanh(xw @ self.w1) @ self.w2).float())
        if v_first is None:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)
        a = torch.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)
        g = torch.sigmoid(xg @ self.g1) @ self.g2
        kk = F.normalize((k * self.k_k).view(bsz, t, h, n), dim=-1, p=2.0).view(bsz, t, c)
        k = k * (1 + (a - 1) * self.k_a)
        y = _wkv7_by_head((h, n), self.kernel_impl, r, log_w, k, v, -kk, kk * a)  # [B*T, C]
        y = self.ln_x(y).view(bsz, t, c)
        bonus = (r.view(bsz, t, h, n) * k.view(bsz, t, h, n) * self.r_k).sum(-1, keepdim=True) * v.view(bsz, t, h, n)
        return self.output((y + bonus.view(bsz, t, c)) * g), v_first


class RWKV7ChannelMix(nn.Module):
    """x070 channel mixing (``ffn``): ``[B, T, C] -> [B, T, C]``."""

    def __init__(self, d_model: int, d_ffn: int, layer_id: int) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.x_k = nn.Parameter(torch.empty(1, 1, d_model))
        self.key = nn.Linear(d_model, d_ffn, bias=False)
        self.value = nn.Linear(d_ffn, d_model, bias=False)

    @torch.no_grad()
    def init_weights(self, n_layers: int) -> None:
        c = self.x_k.shape[-1]
        r10 = 1.0 - self.layer_id / n_layers
        ddd = (torch.arange(c, dtype=torch.float32, device=self.x_k.device) / c).view(1, 1, c)
        self.x_k.copy_(1.0 - ddd ** (r10**4))
        nn.init.uniform_(self.key.weight, -0.5 * c**-0.5, 0.5 * c**-0.5)
        nn.init.zeros_(self.value.weight)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[B, T, C]`` (ln2-normed) -> ``[B, T, C]``."""
        k = x + (time_shift(x) - x) * self.x_k
        return self.value(torch.relu(self.key(k)) ** 2)


class RWKV7Block(nn.Module):
    def __init__(self, hp: RWKV7HParams, d_model: int, head_size: int, layer_id: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model, eps=hp.norm_eps)
        self.ln2 = nn.LayerNorm(d_model, eps=hp.norm_eps)
        self.att = RWKV7TimeMix(hp, d_model, head_size, layer_id)
        self.ffn = RWKV7ChannelMix(d_model, hp.ffn_mult * d_model, layer_id)

    def forward(self, x: Tensor, v_first: Tensor | None) -> tuple[Tensor, Tensor]:
        """x: ``[B, T, C]`` -> ``[B, T, C]``, and layer 0's v."""
        out, v_first = self.att(self.ln1(x), v_first)
        x = x + out
        return x + self.ffn(self.ln2(x)), v_first


class RWKV7Model(LanguageModel):
    """RWKV-7 LM: ``input_ids [B, T] -> logits [B, T, V]``; dims n_layers, d_model, head_size."""

    def __init__(self, hparams: RWKV7HParams, dims: Mapping[str, int], vocab_size: int) -> None:
        super().__init__(hparams, dims, vocab_size)
        d_model, n_layers, head_size = dims["d_model"], dims["n_layers"], dims["head_size"]
        if d_model % head_size:
            raise ValueError(f"d_model={d_model} is not a multiple of head_size={head_size}")
        self.ln0 = nn.LayerNorm(d_model, eps=hparams.norm_eps)
        self.blocks = nn.ModuleList(RWKV7Block(hparams, d_model, head_size, i) for i in range(n_layers))
        self.ln_out = nn.LayerNorm(d_model, eps=hparams.norm_eps)
        self.finish_init()

    @torch.no_grad()
    def init_weights(self) -> None:
        n_layers = self.dims["n_layers"]
        self.tie_head()
        nn.init.uniform_(self.embed.weight, -EMBED_INIT, EMBED_INIT)
        init_norm(self.ln0)
        for block in cast(Iterable[RWKV7Block], self.blocks):
            init_norm(block.ln1)
            init_norm(block.ln2)
            block.att.init_weights(n_layers)
            block.ffn.init_weights(n_layers)
        init_norm(self.ln_out)
        if not self.hparams.tie_embeddings:
            gain = math.sqrt(max(self.vocab_size / self.dims["d_model"], 1.0))
            nn.init.orthogonal_(self.lm_head.weight, gain=0.5 * gain)

    def no_weight_decay(self) -> set[str]:
        """Everything but the Linear ``.weight`` matrices: BlinkDL decays only those (the LoRA factors w1, w2, ...
        and the ``[1, 1, C]`` lerps would otherwise look like matrices to the optimizer's ``ndim < 2`` rule)."""
        return {name for name, _ in self.blocks.named_parameters(prefix="blocks") if not name.endswith(".weight")}

    def forward(self, input_ids: Tensor) -> Tensor:
        """input_ids: ``[B, T]`` int64 -> logits ``[B, T, V]``."""
        x = self.ln0(self.embed(input_ids))  # [B, T, C]
        v_first = None
        for block in self.blocks:
            x, v_first = block(x, v_first)
        return self.lm_head(self.ln_out(x))  # [B, T, V]
