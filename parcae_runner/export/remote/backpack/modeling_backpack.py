"""A parcae-runner Backpack LM for transformers (``trust_remote_code=True``). Self-contained: torch + transformers.

Backpack Language Models (Hewitt, Thickstun, Manning, Liang, ACL 2023); layout of the HF remote code of
stanfordnlp/backpack-gpt2 and Levanter's backpack.py, output divided by the number of senses as in Levanter:
senses ``C(x) [k, d]`` from the embedding alone, weights ``alpha [k, T, T]`` from a GPT-2 body,
``o_i = sum_l sum_j alpha_lij C(x_j)_l / k``, ``logits = E o``. Parameter names are parcae-runner's.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from .configuration_backpack import ParcaeBackpackConfig


class Attention(nn.Module):
    def __init__(self, d: int, n_heads: int, scale: float) -> None:
        super().__init__()
        self.n_heads, self.scale = n_heads, scale
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (f(x).view(B, T, self.n_heads, -1).transpose(1, 2) for f in (self.q, self.k, self.v))  # [B,H,T,D]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.o(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x), approximate="tanh"))


class Block(nn.Module):
    """GPT-2's pre-norm block."""

    def __init__(self, d: int, n_heads: int, eps: float, scale: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.attn, self.mlp = Attention(d, n_heads, scale), MLP(d, 4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class SenseNetwork(nn.Module):
    """Embeddings ``[B, T, d]`` -> senses ``[B, k, T, d]``."""

    def __init__(self, d: int, k: int, scale: int, eps: float) -> None:
        super().__init__()
        self.k = k
        self.ln, self.ln1, self.ln2 = (nn.LayerNorm(d, eps=eps) for _ in range(3))
        self.mlp, self.final = MLP(d, 4 * d, d), MLP(d, scale * d, k * d)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        B, T, d = emb.shape
        r = self.ln(emb) + emb
        r = r + self.mlp(self.ln1(r))
        return self.final(self.ln2(r)).view(B, T, self.k, d).transpose(1, 2)


class WeightNetwork(nn.Module):
    """Hidden states ``[B, T, d]`` -> ``alpha [B, k, T, T]``."""

    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.k, self.per_sense = k, d // k
        self.c_attn = nn.Linear(d, 2 * k * self.per_sense)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, T, _ = h.shape
        q, k = self.c_attn(h).view(B, T, 2, self.k, self.per_sense).unbind(dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(self.per_sense)
        causal = torch.ones(T, T, dtype=torch.bool, device=h.device).tril()
        return scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)


class ParcaeBackpackForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = ParcaeBackpackConfig
    base_model_prefix = "backpack"
    _tied_weights_keys = {"lm_head.weight": "embed.weight"}
    _supports_sdpa = True

    def __init__(self, config: ParcaeBackpackConfig) -> None:
        super().__init__(config)
        d, h, eps = config.d_model, config.n_heads, config.norm_eps
        self.embed = nn.Embedding(config.vocab_size, d)
        self.pos_embed = nn.Embedding(config.max_positions, d)
        head_scale = 1.0 / math.sqrt(d // h)
        scales = [
            head_scale / (i + 1) if config.scale_attn_by_inverse_layer_idx else None for i in range(config.n_layers)
        ]
        self.blocks = nn.ModuleList(Block(d, h, eps, s) for s in scales)
        self.norm = nn.LayerNorm(d, eps=eps)
        self.sense = SenseNetwork(d, config.n_senses, config.sense_scale, eps)
        self.weight = WeightNetwork(d, config.n_senses)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def sense_vectors(self, input_ids: torch.LongTensor) -> torch.Tensor:
        return self.sense(self.embed(input_ids))

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs) -> CausalLMOutput:
        T = input_ids.shape[1]
        emb = self.embed(input_ids)
        h = emb + self.pos_embed(torch.arange(T, device=input_ids.device))
        for block in self.blocks:
            h = block(h)
        alpha = self.weight(self.norm(h))  # [B, k, T, T]
        o = (alpha @ self.sense(emb)).sum(dim=1) / self.config.n_senses  # [B, T, d]
        logits = self.lm_head(o)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        # no key/value cache: every step reads the whole prefix
        return {"input_ids": input_ids}
