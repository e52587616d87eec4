"""The RWKV-7 distillation student (PRWKV): a GQA transformer teacher with every attention replaced by a cxa076
TimeMix, the x070 attention replacement for a GQA transformer layer.

The student is a deep copy of the teacher (a ``transformers`` Qwen2 / Qwen3 / Llama / Mistral causal LM) whose
``model.layers[i].self_attn`` is a :class:`StudentAttention`; MLPs, norms and embeddings stay the teacher's (copied).
r, k, v, o (and their biases) are copied from the teacher's q, k, v, o (OpenMOSE ``train_hybrid_deepspeed.py``:
q_proj -> receptance, k_proj -> key, v_proj -> value, o_proj -> output), as are Qwen3's q_norm / k_norm into the
optional per-head r / k norms.

After OpenMOSE ``RWKVInside`` ``rwkv_inside/TimeMixer.py::RWKV_Tmix_x070_Mose_cxa076`` and ``RWKV-Infer``
``rwkvengine/prwkv7.py`` (the PRWKV / cxa076 model cards): no token shift (every branch reads x directly), key/value
shaped like the teacher's GQA k/v and repeated per query group (RepeatKV, as HF ``repeat_kv``), kk = L2norm(k) per
head, k <- k (1 - w~ + a), the x070 WKV with (-kk, kk a), then either GroupNorm (``norm="groupnorm"``, the older
cxa073's ln_x) or NoNorm (``norm="none"``: y N^-1/2), the bonus sum(r k r_k) v and out = o(y g). Optional per-head
RMSNorm on r and k (cxa076r, inheriting Qwen3's q_norm / k_norm). r, k, v, o have the teacher's q, k, v, o shapes
(and biases) so they inherit them by copy.
"""

from __future__ import annotations

import copy
import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parcae_runner.kernels.wkv7 import wkv7
from parcae_runner.models.rwkv7.model import LN_X_EPS, lora_rank
from parcae_runner.models.students import StudentRecipe, decoder_layers

NORMS = ("groupnorm", "none")
# HF model types whose decoder layers have self_attn.{q,k,v,o}_proj and GQA head counts in the config
DECODERS = ("qwen2", "qwen3", "llama", "mistral")


class HeadRMSNorm(nn.Module):
    """RMSNorm over the last dim (a head), Qwen3's q_norm / k_norm: ``[..., N] -> [..., N]``."""

    def __init__(self, n: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class Cxa076TimeMix(nn.Module):
    """``[B, T, d] (, v_first [B, T, H*N]) -> [B, T, d], v_first``; H query heads, H_kv key/value heads of size N."""

    def __init__(
        self, d: int, heads: tuple[int, int, int], layer_id: int, norm: str, rk_norm: bool, biases: tuple[bool, bool]
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r}; allowed: {', '.join(NORMS)}")
        h, h_kv, n = heads
        self.h, self.h_kv, self.n, self.layer_id, self.norm = h, h_kv, n, layer_id, norm
        self.kernel_impl = "auto"
        qkv_bias, o_bias = biases
        self.receptance = nn.Linear(d, h * n, bias=qkv_bias)
        self.key = nn.Linear(d, h_kv * n, bias=qkv_bias)
        self.value = nn.Linear(d, h_kv * n, bias=qkv_bias)
        self.output = nn.Linear(h * n, d, bias=o_bias)
        c = h * n
        d_w, d_v, d_g = lora_rank(1.8, d), lora_rank(1.3, d), lora_rank(0.6, d, 0.8)
        self.w0, self.a0 = nn.Parameter(torch.empty(c)), nn.Parameter(torch.empty(c))
        self.w1, self.w2 = nn.Parameter(torch.zeros(d, d_w)), nn.Parameter(torch.empty(d_w, c))
        self.a1, self.a2 = nn.Parameter(torch.zeros(d, d_w)), nn.Parameter(torch.empty(d_w, c))
        if layer_id > 0:
            self.v0 = nn.Parameter(torch.full((c,), 1.0))
            self.v1, self.v2 = nn.Parameter(torch.zeros(d, d_v)), nn.Parameter(torch.empty(d_v, c))
        self.g1, self.g2 = nn.Parameter(torch.zeros(d, d_g)), nn.Parameter(torch.empty(d_g, c))
        self.r_k = nn.Parameter(torch.full((h, n), -0.04))
        self.ln_x = nn.GroupNorm(h, c, eps=LN_X_EPS) if norm == "groupnorm" else None
        self.r_norm = HeadRMSNorm(n) if rk_norm else None
        self.k_norm = HeadRMSNorm(n) if rk_norm else None
        self._init_rwkv_parts(c)

    @torch.no_grad()
    def _init_rwkv_parts(self, c: int) -> None:
        """The x070 init of the parts the teacher has no counterpart for (BlinkDL train_temp, per channel ramp)."""
        i = torch.arange(c, dtype=torch.float32)
        linear = i / max(c - 1, 1) - 0.5
        zigzag = ((i % self.n) - (self.n - 1) / 2) / max((self.n - 1) / 2, 1)
        zigzag = zigzag * zigzag.abs()
        self.w0.copy_(-6 + 6 * (i / max(c - 1, 1)) + 0.5 + zigzag * 2.5)
        self.a0.copy_(-0.19 + zigzag * 0.3 + linear * 0.4)
        for p in (self.w2, self.a2, self.g2) + ((self.v2,) if self.layer_id > 0 else ()):
            nn.init.orthogonal_(p, gain=0.1)
        if self.layer_id > 0:
            self.v0.copy_(0.73 - linear * 0.4)

    def repeat_kv(self, x: Tensor) -> Tensor:
        """``[B, T, H_kv, N] -> [B, T, H, N]``: query head h reads kv head h // (H / H_kv) (HF ``repeat_kv``)."""
        return x.repeat_interleave(self.h // self.h_kv, dim=2)

    def forward(self, x: Tensor, v_first: Tensor | None) -> tuple[Tensor, Tensor]:
        bsz, t, _ = x.shape
        h, n = self.h, self.n
        r = self.receptance(x).view(bsz, t, h, n)
        k = self.repeat_kv(self.key(x).view(bsz, t, self.h_kv, n))
        v = self.repeat_kv(self.value(x).view(bsz, t, self.h_kv, n))
        # r_norm and k_norm are built together (rk_norm)
        if self.r_norm is not None and self.k_norm is not None:
            r, k = self.r_norm(r), self.k_norm(k)
        # fp32 decay under autocast too (decays near 1 compound over the sequence)
        w_tilde = (-F.softplus(-(self.w0 + torch.tanh(x @ self.w1) @ self.w2).float()) - 0.5).view(bsz, t, h, n)
        if v_first is None:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(self.v0 + (x @ self.v1) @ self.v2).view(bsz, t, h, n)
        a = torch.sigmoid(self.a0 + (x @ self.a1) @ self.a2).view(bsz, t, h, n)
        g = torch.sigmoid(x @ self.g1) @ self.g2  # [B, T, H*N]
        kk = F.normalize(k, dim=-1, p=2.0)
        k = k * (1 - w_tilde + a).to(k.dtype)
        # without return_state the kernel returns the output alone
        y = cast(Tensor, wkv7(r, -torch.exp(w_tilde), k, v, -kk, kk * a, impl=self.kernel_impl))  # [B, T, H, N]
        if self.ln_x is not None:
            y = self.ln_x(y.reshape(bsz * t, h * n)).view(bsz, t, h, n)
        else:
            y = y * (1.0 / math.sqrt(n))
        y = y + (r * k * self.r_k).sum(-1, keepdim=True) * v
        return self.output(y.reshape(bsz, t, h * n) * g), v_first


class VFirst:
    """Layer 0's value, shared by the student's attentions within one forward (x070's value residual)."""

    value: Tensor | None = None


class StudentAttention(nn.Module):
    """Stands where the teacher's ``self_attn`` was: ``(hidden_states [B, T, d], **kwargs) -> (out, None)``."""

    def __init__(self, timemix: Cxa076TimeMix, shared: VFirst) -> None:
        super().__init__()
        self.timemix = timemix
        self.shared = shared

    def forward(self, hidden_states: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, None]:
        v_first = None if self.timemix.layer_id == 0 else self.shared.value
        out, v_first = self.timemix(hidden_states, v_first)
        self.shared.value = v_first
        return out, None


@torch.no_grad()
def inherit(timemix: Cxa076TimeMix, attn: nn.Module) -> None:
    """Copy the teacher attention's q, k, v, o (weights and biases) and q/k norms into ``timemix``."""
    pairs = [("q_proj", "receptance"), ("k_proj", "key"), ("v_proj", "value"), ("o_proj", "output")]
    for theirs, ours in pairs:
        src, dst = getattr(attn, theirs), getattr(timemix, ours)
        dst.weight.copy_(src.weight)
        if dst.bias is not None:
            dst.bias.copy_(src.bias)
    if timemix.r_norm is not None and timemix.k_norm is not None and hasattr(attn, "q_norm"):
        for theirs, norm in (("q_norm", timemix.r_norm), ("k_norm", timemix.k_norm)):
            norm.weight.copy_(getattr(attn, theirs).weight)


def student_from_teacher(teacher: nn.Module, norm: str, rk_norm: bool, kernel_impl: str) -> nn.Module:
    """A copy of ``teacher`` whose attentions are cxa076 TimeMixes initialised from them."""
    # a transformers config: which fields it has depends on the teacher's model type
    config: Any = teacher.config
    h = int(config.num_attention_heads)
    h_kv = int(getattr(config, "num_key_value_heads", None) or h)
    n = int(getattr(config, "head_dim", None) or config.hidden_size // h)
    student = copy.deepcopy(teacher)
    shared = VFirst()
    for i, layer in enumerate(decoder_layers(student)):
        attn = cast(nn.Module, layer.self_attn)
        q_proj, o_proj = cast(nn.Linear, attn.q_proj), cast(nn.Linear, attn.o_proj)
        biases = (q_proj.bias is not None, o_proj.bias is not None)
        timemix = Cxa076TimeMix(int(config.hidden_size), (h, h_kv, n), i, norm, rk_norm, biases)
        timemix.kernel_impl = kernel_impl
        inherit(timemix, attn)
        layer.self_attn = StudentAttention(timemix, shared)
    for p in student.parameters():
        p.requires_grad_(True)
    return student.train()


def timemixes(student: nn.Module) -> list[nn.Module]:
    """The student's TimeMixes, in layer order."""
    return [cast(StudentAttention, layer.self_attn).timemix for layer in decoder_layers(student)]


RECIPE = StudentRecipe(teacher_model_types=DECODERS, norms=NORMS, build=student_from_teacher, mixers=timemixes)
