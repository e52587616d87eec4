"""parcae-runner's `parcae_baseline` for transformers (``trust_remote_code=True``); torch + transformers only.

Parcae's non-looped baseline (arXiv 2604.12946, ``SandyResearch/parcae``; nanochat lineage): pre-norm RMSNorm
blocks, fused per-head QKV with RMSNorm on q and k, full RoPE, ReLU^2 MLP, no biases, value embeddings on
alternate layers (a per-layer token table added to v, gated per head by ``2 sigmoid(W_g x[:32])``), tied head.
Parameter names are parcae-runner's.
"""

import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from .configuration_parcae_baseline import ParcaeBaselineConfig
from .qk_norm_blocks import Block, has_value_embedding, rope


class ParcaeBaselineForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = ParcaeBaselineConfig
    base_model_prefix = "parcae_baseline"
    _supports_sdpa = True

    def __init__(self, config: ParcaeBaselineConfig) -> None:
        super().__init__(config)
        if config.tie_word_embeddings:
            self._tied_weights_keys = {"lm_head.weight": "embed.weight"}
        d, L = config.d_model, config.n_layers
        has_ve = [config.value_embeddings and has_value_embedding(i, L) for i in range(L)]
        self.embed = nn.Embedding(config.vocab_size, d)
        self.value_embeds = nn.ModuleDict({str(i): nn.Embedding(config.vocab_size, d) for i in range(L) if has_ve[i]})
        self.blocks = nn.ModuleList(
            Block(d, config.n_heads, config.norm_eps, config.mlp_ratio, has_ve[i]) for i in range(L)
        )
        self.norm = nn.RMSNorm(d, eps=config.norm_eps)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs) -> CausalLMOutput:
        T = input_ids.shape[1]
        x = self.embed(input_ids)
        cos, sin = rope(T, self.config.d_model // self.config.n_heads, self.config.rope_base, x.device)
        for i, block in enumerate(self.blocks):
            ve = self.value_embeds[str(i)](input_ids) if str(i) in self.value_embeds else None
            x = block(x, cos, sin, ve)
        logits = self.lm_head(self.norm(x))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        # no key/value cache: every step reads the whole prefix
        return {"input_ids": input_ids}
