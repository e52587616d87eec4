"""A parcae-runner RWKV-7 "Goose" (x070) LM for transformers (``trust_remote_code=True``). Self-contained: torch +
transformers. The same equations as ``RWKV-LM/RWKV-v7`` and the ``rwkv`` package, with the WKV recurrence run one
step at a time in fp32 (``S_t = S_{t-1} (diag(exp(w_t)) + a_t b_t^T) + v_t k_t^T``, ``y_t = S_t r_t``).
Parameter names are parcae-runner's (the package's names inside each block)."""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from .configuration_rwkv7 import ParcaeRWKV7Config

LN_X_EPS = 64e-5


def _lora_rank(mult: float, c: int, power: float = 0.5) -> int:
    return max(32, int(round(mult * c**power / 32)) * 32)


def _time_shift(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (0, 0, 1, -1))


def _wkv7(r, w, k, v, a, b):
    """``[B, T, H, N]`` each (w: log decay) -> y ``[B, T, H, N]``; state ``[B, H, N_v, N_k]`` in fp32."""
    B, T, H, N = r.shape
    s = torch.zeros(B, H, N, N, dtype=torch.float32, device=r.device)
    r, w, k, v, a, b = (t.float() for t in (r, w, k, v, a, b))
    decay, ys = torch.exp(w), []
    for t in range(T):
        sa = torch.einsum("bhvk,bhk->bhv", s, a[:, t])
        s = s * decay[:, t, :, None, :] + sa[..., None] * b[:, t, :, None, :] + v[:, t, :, :, None] * k[:, t, :, None]
        ys.append(torch.einsum("bhvk,bhk->bhv", s, r[:, t]))
    return torch.stack(ys, 1)


class TimeMix(nn.Module):
    def __init__(self, config: ParcaeRWKV7Config, layer_id: int) -> None:
        super().__init__()
        c, n = config.d_model, config.head_size
        self.n_heads, self.head_size, self.layer_id = c // n, n, layer_id
        for name in ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "w0", "a0", "k_k", "k_a"):
            setattr(self, name, nn.Parameter(torch.zeros(1, 1, c)))
        given = (config.decay_lora, config.iclr_lora, config.value_lora, config.gate_lora)
        rule = (_lora_rank(1.8, c), _lora_rank(1.8, c), _lora_rank(1.3, c), _lora_rank(0.6, c, 0.8))
        d_w, d_a, d_v, d_g = (g if g > 0 else r for g, r in zip(given, rule, strict=True))
        self.w1, self.w2 = nn.Parameter(torch.zeros(c, d_w)), nn.Parameter(torch.zeros(d_w, c))
        self.a1, self.a2 = nn.Parameter(torch.zeros(c, d_a)), nn.Parameter(torch.zeros(d_a, c))
        if layer_id > 0:
            self.v0 = nn.Parameter(torch.zeros(1, 1, c))
            self.v1, self.v2 = nn.Parameter(torch.zeros(c, d_v)), nn.Parameter(torch.zeros(d_v, c))
        self.g1, self.g2 = nn.Parameter(torch.zeros(c, d_g)), nn.Parameter(torch.zeros(d_g, c))
        self.r_k = nn.Parameter(torch.zeros(self.n_heads, n))
        self.receptance, self.key, self.value, self.output = (nn.Linear(c, c, bias=False) for _ in range(4))
        self.ln_x = nn.GroupNorm(self.n_heads, c, eps=LN_X_EPS)

    def forward(self, x, v_first):
        B, T, C = x.shape
        H, N = self.n_heads, self.head_size
        xx = _time_shift(x) - x
        xr, xw, xk, xv, xa, xg = (x + xx * mu for mu in (self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g))
        r, k, v = self.receptance(xr), self.key(xk), self.value(xv)
        log_w = -math.exp(-0.5) * torch.sigmoid((self.w0 + torch.tanh(xw @ self.w1) @ self.w2).float())
        if v_first is None:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)
        a = torch.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)
        g = torch.sigmoid(xg @ self.g1) @ self.g2
        kk = F.normalize((k * self.k_k).view(B, T, H, N), dim=-1, p=2.0).view(B, T, C)
        k = k * (1 + (a - 1) * self.k_a)
        heads = [z.view(B, T, H, N) for z in (r, log_w, k, v, -kk, kk * a)]
        y = _wkv7(*heads).to(x.dtype).view(B * T, C)
        y = self.ln_x(y).view(B, T, C)
        bonus = (r.view(B, T, H, N) * k.view(B, T, H, N) * self.r_k).sum(-1, keepdim=True) * v.view(B, T, H, N)
        return self.output((y + bonus.view(B, T, C)) * g), v_first


class ChannelMix(nn.Module):
    def __init__(self, config: ParcaeRWKV7Config) -> None:
        super().__init__()
        c = config.d_model
        self.x_k = nn.Parameter(torch.zeros(1, 1, c))
        self.key = nn.Linear(c, config.ffn_mult * c, bias=False)
        self.value = nn.Linear(config.ffn_mult * c, c, bias=False)

    def forward(self, x):
        k = x + (_time_shift(x) - x) * self.x_k
        return self.value(torch.relu(self.key(k)) ** 2)


class Block(nn.Module):
    def __init__(self, config: ParcaeRWKV7Config, layer_id: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.ln2 = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.att, self.ffn = TimeMix(config, layer_id), ChannelMix(config)

    def forward(self, x, v_first):
        out, v_first = self.att(self.ln1(x), v_first)
        x = x + out
        return x + self.ffn(self.ln2(x)), v_first


class ParcaeRWKV7ForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = ParcaeRWKV7Config
    base_model_prefix = "rwkv7"
    # tied only when config.tie_word_embeddings (then the file holds embed.weight alone)
    _tied_weights_keys = {"lm_head.weight": "embed.weight"}

    def __init__(self, config: ParcaeRWKV7Config) -> None:
        super().__init__(config)
        d, eps = config.d_model, config.norm_eps
        self.embed = nn.Embedding(config.vocab_size, d)
        self.ln0 = nn.LayerNorm(d, eps=eps)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.ln_out = nn.LayerNorm(d, eps=eps)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs) -> CausalLMOutput:
        x = self.ln0(self.embed(input_ids))
        v_first = None
        for block in self.blocks:
            x, v_first = block(x, v_first)
        logits = self.lm_head(self.ln_out(x))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        # no recurrent-state cache: every step reads the whole prefix
        return {"input_ids": input_ids}
