"""parcae-runner's looped `parcae` model for transformers (``trust_remote_code=True``); torch + transformers only.

Parcae (arXiv 2604.12946, ``SandyResearch/parcae``): ``e = RMSNorm(prelude(embed(x)))``; a state ``x_0`` (like-init
noise from a fixed seed in eval, zeros, or ``e``); ``R`` iterations of ``x <- core(inject(x, e))``; logits
``head(RMSNorm(coda(C x_R)))`` with the readout ``C`` (d x d; absent when ``readout`` is false). This file runs
the eval forward: ``R = eval_recurrence`` (default: the training mean), or ``num_steps=`` per call.
Injections: diagonal ``x <- A_bar x + Delta B e`` with
``A_bar = exp(-Delta exp(A_log))``, ``Delta = softplus(dt_bias)``; linear ``x <- W [x, e]``; add ``x <- x + e``.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from .configuration_parcae import ParcaeConfig
from .qk_norm_blocks import Block, has_value_embedding, rope

# parcae-runner's eval-mode like-init seed and its clamp of log(Delta exp(A_log))
EVAL_NOISE_SEED, LOG_RATE_MIN, LOG_RATE_MAX = 0, -15.0, 4.0


class Injection(nn.Module):
    def __init__(self, kind: str, d: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "diagonal":
            self.A_log, self.dt_bias = nn.Parameter(torch.zeros(d)), nn.Parameter(torch.zeros(d))
            self.B = nn.Linear(d, d, bias=False)
        elif kind == "linear":
            self.proj = nn.Linear(2 * d, d, bias=False)

    def prepare(self, e: torch.Tensor):
        if self.kind != "diagonal":
            return e
        dt_bias = self.dt_bias.float()
        safe = torch.log(F.softplus(dt_bias.clamp(min=-15.0)))
        log_rate = (torch.where(dt_bias < -15.0, dt_bias, safe) + self.A_log.float()).clamp(LOG_RATE_MIN, LOG_RATE_MAX)
        return torch.exp(-torch.exp(log_rate)), F.softplus(dt_bias) * self.B(e)

    def step(self, x: torch.Tensor, prepared) -> torch.Tensor:
        if self.kind == "diagonal":
            a_bar, u = prepared
            return (a_bar * x + u).to(x.dtype)
        if self.kind == "linear":
            return self.proj(torch.cat((x, prepared.to(x.dtype)), dim=-1))
        return x + prepared


class ParcaeForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = ParcaeConfig
    base_model_prefix = "parcae"
    _supports_sdpa = True

    def __init__(self, config: ParcaeConfig) -> None:
        super().__init__(config)
        if config.tie_word_embeddings:
            self._tied_weights_keys = {"lm_head.weight": "embed.weight"}
        d, c = config.d_model, config
        n = c.n_prelude + c.n_core + c.n_coda
        has_ve = [c.value_embeddings and has_value_embedding(i, n) for i in range(n)]
        self.embed = nn.Embedding(c.vocab_size, d)
        self.value_embeds = nn.ModuleDict({str(i): nn.Embedding(c.vocab_size, d) for i in range(n) if has_ve[i]})

        def blocks(first: int, count: int) -> nn.ModuleList:
            return nn.ModuleList(Block(d, c.n_heads, c.norm_eps, c.mlp_ratio, has_ve[first + i]) for i in range(count))

        self.prelude = blocks(0, c.n_prelude)
        self.prelude_norm = nn.RMSNorm(d, eps=c.norm_eps)
        self.injection = Injection(c.injection, d)
        self.core = blocks(c.n_prelude, c.n_core)
        self.readout = nn.Linear(d, d, bias=False) if getattr(c, "readout", False) else None
        self.coda = blocks(c.n_prelude + c.n_core, c.n_coda)
        self.norm = nn.RMSNorm(d, eps=c.norm_eps)
        self.lm_head = nn.Linear(d, c.vocab_size, bias=False)
        self._offsets = {"prelude": 0, "core": c.n_prelude, "coda": c.n_prelude + c.n_core}
        self.post_init()

    def get_input_embeddings(self):
        return self.embed

    def get_output_embeddings(self):
        return self.lm_head

    def _run(self, part: str, x, cos, sin, ves):
        for i, block in enumerate(getattr(self, part)):
            x = block(x, cos, sin, ves.get(str(self._offsets[part] + i)))
        return x

    def _initial_state(self, e: torch.Tensor) -> torch.Tensor:
        if self.config.state_init == "zero":
            return torch.zeros_like(e)
        if self.config.state_init == "embed":
            return e
        generator = torch.Generator(device=e.device)
        generator.manual_seed(EVAL_NOISE_SEED)
        std = math.sqrt(2.0 / (5.0 * self.config.d_model))
        x = torch.empty(e.shape, dtype=torch.float32, device=e.device)
        nn.init.trunc_normal_(x, mean=0.0, std=std, a=-3 * std, b=3 * std, generator=generator)
        return x.to(e.dtype)

    def forward(self, input_ids=None, attention_mask=None, labels=None, num_steps=None, **kwargs) -> CausalLMOutput:
        c = self.config
        if num_steps is None:
            num_steps = c.mean_recurrence if c.eval_recurrence is None else c.eval_recurrence
        cos, sin = rope(input_ids.shape[1], c.d_model // c.n_heads, c.rope_base, input_ids.device)
        ves = {i: table(input_ids) for i, table in self.value_embeds.items()}
        e = self.prelude_norm(self._run("prelude", self.embed(input_ids), cos, sin, ves))  # [B, T, d]
        x, prepared = self._initial_state(e), self.injection.prepare(e)
        for _ in range(num_steps):
            x = self._run("core", self.injection.step(x, prepared), cos, sin, ves)
        if self.readout is not None:
            x = self.readout(x)
        logits = self.lm_head(self.norm(self._run("coda", x, cos, sin, ves)))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        # no key/value cache: every step reads the whole prefix
        return {"input_ids": input_ids}
