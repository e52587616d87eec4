"""RWKV-4 (Peng et al., 2023), as HF ``RwkvForCausalLM`` / BlinkDL's RWKV-v4neo.

``x = ln0(embed(ids))``, then per block ``x = x + TimeMix(ln1(x)); x = x + ChannelMix(ln2(x))``, then
``ln_out`` and an untied head. With ``x'`` the previous token's input (zero at t = 0, "token shift") and
``mix(mu) = mu * x + (1 - mu) * x'``::

    TimeMix:    k = key(mix(mu_k)), v = value(mix(mu_v)), r = sigmoid(receptance(mix(mu_r)))
                out = output(r * WKV(time_decay, time_first, k, v))
    ChannelMix: out = sigmoid(receptance(mix(mu_r))) * value(relu(key(mix(mu_k)))^2)

WKV is the per-channel decayed softmax-like average of ``parcae_runner.kernels.wkv4`` (w = -exp(time_decay)).
Block parameter names are HF's (``attention.time_decay``, ``feed_forward.key``, ...) so
``parcae_runner.models.rwkv4.hf`` is a rename; ``ln0`` is HF's ``blocks.0.pre_ln``, ``lm_head`` HF's ``head``.

Init, from BlinkDL ``RWKV-v4neo/src/model.py`` (``RWKV_TimeMix``/``RWKV_ChannelMix`` + ``generate_init_weight``),
with r0 = l / (L - 1) and r1 = 1 - l / L for layer l of L, and ramp_i = i / d:

* time_decay_h = -5 + 8 (h / (d - 1))^(0.7 + 1.3 r0); time_first_h = ln 0.3 + 0.5 ((h + 1) mod 3 - 1) (zigzag);
* time-mix mu_k = ramp^r1, mu_v = ramp^r1 + 0.3 r0, mu_r = ramp^(0.5 r1); channel-mix mu_k = mu_r = ramp^r1;
* zero: attention key / receptance / output, feed_forward receptance / value;
  orthogonal: attention value (gain 1), feed_forward key (gain sqrt(ffn / d)), head (gain 0.5 sqrt(V / d));
* embedding U(+-1e-4) (BlinkDL's "small init embedding"; v4neo's code uses U(+-lr_init)); LayerNorms 1 / 0.

HF's ``_init_weights`` differs (every Linear orthogonal, time_first = 1, embedding orthogonal), so Parc's
randomly initialised RWKV models did not start from this init. BlinkDL's L2Wrap logit penalty is a loss term,
not part of the model, and is not used here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parcae_runner.kernels.wkv4 import wkv4
from parcae_runner.models.layers.init import init_norm
from parcae_runner.models.layers.lm import LanguageModel


@dataclass
class RWKV4HParams:
    name: str = "rwkv4"
    # channel-mix hidden width = ffn_mult * d_model
    ffn_mult: int = 4
    norm_eps: float = 1e-5
    # fp16 inference trick of HF/ChatRWKV: halve the residual stream after every `rescale_every` blocks, block
    # l's outputs scaled by 2^-(l // rescale_every) to match (the same function up to LayerNorm eps); 0 = off.
    # Exported as RwkvConfig.rescale_every, which HF applies in eval mode only; train with 0.
    rescale_every: int = 0
    # WKV implementation: "auto" (Triton on CUDA, else reference), "triton" or "reference"
    kernel_impl: str = "auto"
    tie_embeddings: bool = False


EMBED_INIT = 1e-4


def time_shift(x: Tensor) -> Tensor:
    """``[B, T, C]`` -> the previous token's ``[B, T, C]``, zeros at t = 0."""
    return F.pad(x, (0, 0, 1, -1))


class RWKV4TimeMix(nn.Module):
    """RWKV-4 time mixing ("attention" in HF): ``[B, T, d] -> [B, T, d]``."""

    def __init__(self, d_model: int, kernel_impl: str) -> None:
        super().__init__()
        self.kernel_impl = kernel_impl
        self.time_decay = nn.Parameter(torch.empty(d_model))
        self.time_first = nn.Parameter(torch.empty(d_model))
        # [1, 1, d] as HF, so they broadcast over [B, T, d] and export without reshaping
        self.time_mix_key = nn.Parameter(torch.empty(1, 1, d_model))
        self.time_mix_value = nn.Parameter(torch.empty(1, 1, d_model))
        self.time_mix_receptance = nn.Parameter(torch.empty(1, 1, d_model))
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.receptance = nn.Linear(d_model, d_model, bias=False)
        self.output = nn.Linear(d_model, d_model, bias=False)

    @torch.no_grad()
    def init_weights(self, layer_id: int, n_layers: int) -> None:
        d = self.time_decay.shape[0]
        r0 = layer_id / max(n_layers - 1, 1)  # 0 -> 1 over depth
        r1 = 1.0 - layer_id / n_layers  # 1 -> ~0 over depth
        h = torch.arange(d, dtype=torch.float32, device=self.time_decay.device)
        self.time_decay.copy_(-5 + 8 * (h / max(d - 1, 1)) ** (0.7 + 1.3 * r0))
        zigzag = ((h + 1) % 3 - 1) * 0.5
        self.time_first.copy_(math.log(0.3) + zigzag)
        ramp = (h / d).view(1, 1, d)
        self.time_mix_key.copy_(ramp**r1)
        self.time_mix_value.copy_(ramp**r1 + 0.3 * r0)
        self.time_mix_receptance.copy_(ramp ** (0.5 * r1))
        for linear in (self.key, self.receptance, self.output):
            nn.init.zeros_(linear.weight)
        nn.init.orthogonal_(self.value.weight)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[B, T, d]`` (already ln1-normed) -> ``[B, T, d]``."""
        prev = time_shift(x)
        key = self.key(x * self.time_mix_key + prev * (1 - self.time_mix_key))
        value = self.value(x * self.time_mix_value + prev * (1 - self.time_mix_value))
        receptance = torch.sigmoid(
            self.receptance(x * self.time_mix_receptance + prev * (1 - self.time_mix_receptance))
        )
        wkv = wkv4(self.time_decay, self.time_first, key, value, impl=self.kernel_impl)  # [B, T, d]
        return self.output(receptance * wkv)


class RWKV4ChannelMix(nn.Module):
    """RWKV-4 channel mixing ("feed_forward" in HF): ``[B, T, d] -> [B, T, d]``."""

    def __init__(self, d_model: int, d_ffn: int) -> None:
        super().__init__()
        self.time_mix_key = nn.Parameter(torch.empty(1, 1, d_model))
        self.time_mix_receptance = nn.Parameter(torch.empty(1, 1, d_model))
        self.key = nn.Linear(d_model, d_ffn, bias=False)
        self.receptance = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_ffn, d_model, bias=False)

    @torch.no_grad()
    def init_weights(self, layer_id: int, n_layers: int) -> None:
        d, d_ffn = self.key.in_features, self.key.out_features
        r1 = 1.0 - layer_id / n_layers
        ramp = (torch.arange(d, dtype=torch.float32, device=self.time_mix_key.device) / d).view(1, 1, d)
        self.time_mix_key.copy_(ramp**r1)
        self.time_mix_receptance.copy_(ramp**r1)
        nn.init.orthogonal_(self.key.weight, gain=math.sqrt(max(d_ffn / d, 1.0)))
        nn.init.zeros_(self.receptance.weight)
        nn.init.zeros_(self.value.weight)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[B, T, d]`` (already ln2-normed) -> ``[B, T, d]``."""
        prev = time_shift(x)
        key = torch.square(torch.relu(self.key(x * self.time_mix_key + prev * (1 - self.time_mix_key))))
        receptance = torch.sigmoid(
            self.receptance(x * self.time_mix_receptance + prev * (1 - self.time_mix_receptance))
        )
        return receptance * self.value(key)


class RWKV4Block(nn.Module):
    def __init__(self, hp: RWKV4HParams, d_model: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model, eps=hp.norm_eps)
        self.ln2 = nn.LayerNorm(d_model, eps=hp.norm_eps)
        self.attention = RWKV4TimeMix(d_model, hp.kernel_impl)
        self.feed_forward = RWKV4ChannelMix(d_model, hp.ffn_mult * d_model)

    def forward(self, x: Tensor, out_scale: float = 1.0) -> Tensor:
        """x: ``[B, T, d]`` -> ``[B, T, d]``; ``out_scale`` multiplies both branch outputs (see rescale_every)."""
        if out_scale == 1.0:  # the training path: no extra elementwise ops
            x = x + self.attention(self.ln1(x))
            return x + self.feed_forward(self.ln2(x))
        x = x + self.attention(self.ln1(x)) * out_scale
        return x + self.feed_forward(self.ln2(x)) * out_scale


class RWKV4Model(LanguageModel):
    """RWKV-4 LM: ``input_ids [B, T] -> logits [B, T, V]``."""

    def __init__(self, hparams: RWKV4HParams, dims: Mapping[str, int], vocab_size: int) -> None:
        if hparams.rescale_every < 0:
            raise ValueError(f"arch.rescale_every={hparams.rescale_every} must be >= 0 (0 = off)")
        super().__init__(hparams, dims, vocab_size)
        d_model, n_layers = dims["d_model"], dims["n_layers"]
        # BlinkDL and HF keep this LayerNorm in block 0 (ln0 / pre_ln); it runs once, on the embeddings
        self.ln0 = nn.LayerNorm(d_model, eps=hparams.norm_eps)
        self.blocks = nn.ModuleList(RWKV4Block(hparams, d_model) for _ in range(n_layers))
        self.ln_out = nn.LayerNorm(d_model, eps=hparams.norm_eps)
        self.finish_init()

    @torch.no_grad()
    def init_weights(self) -> None:
        n_layers = self.dims["n_layers"]
        self.tie_head()
        nn.init.uniform_(self.embed.weight, -EMBED_INIT, EMBED_INIT)
        init_norm(self.ln0)
        for layer_id, block in enumerate(cast(Iterable[RWKV4Block], self.blocks)):
            init_norm(block.ln1)
            init_norm(block.ln2)
            block.attention.init_weights(layer_id, n_layers)
            block.feed_forward.init_weights(layer_id, n_layers)
        init_norm(self.ln_out)
        if not self.hparams.tie_embeddings:
            gain = math.sqrt(max(self.vocab_size / self.dims["d_model"], 1.0))
            nn.init.orthogonal_(self.lm_head.weight, gain=0.5 * gain)

    def no_weight_decay(self) -> set[str]:
        """The time-mix vectors and WKV decays: BlinkDL decays only matrices, and the ``[1, 1, d]`` time_mix
        parameters would otherwise look like matrices to the optimizer's ``ndim < 2`` rule."""
        names = ("time_decay", "time_first", "time_mix_key", "time_mix_value", "time_mix_receptance")
        return {name for name, _ in self.named_parameters() if name.rsplit(".", 1)[-1] in names}

    def forward(self, input_ids: Tensor) -> Tensor:
        """input_ids: ``[B, T]`` int64 -> logits ``[B, T, V]``."""
        every = self.hparams.rescale_every
        x = self.ln0(self.embed(input_ids))  # [B, T, d]
        for layer_id, block in enumerate(self.blocks):
            x = block(x, out_scale=0.5 ** (layer_id // every) if every else 1.0)
            if every and (layer_id + 1) % every == 0:
                x = x / 2
        return self.lm_head(self.ln_out(x))  # [B, T, V]
