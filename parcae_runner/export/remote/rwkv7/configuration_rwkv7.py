"""Configuration of a parcae-runner RWKV-7 export (BlinkDL's x070). Self-contained: transformers only."""

from transformers import PretrainedConfig


class ParcaeRWKV7Config(PretrainedConfig):
    model_type = "parcae_rwkv7"

    def __init__(
        self,
        vocab_size: int = 50304,
        n_layers: int = 12,
        d_model: int = 768,
        head_size: int = 64,
        ffn_mult: int = 4,
        norm_eps: float = 1e-5,
        # LoRA ranks of the decay, in-context rate, value residual and gate; 0 = BlinkDL's rule for d_model
        decay_lora: int = 0,
        iclr_lora: int = 0,
        value_lora: int = 0,
        gate_lora: int = 0,
        max_position_embeddings: int = 2048,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = False,
        **kwargs,
    ):
        kwargs.pop("kernel_impl", None)  # the training kernel choice; this file has one (a step-by-step loop)
        self.vocab_size, self.n_layers, self.d_model, self.head_size = vocab_size, n_layers, d_model, head_size
        self.ffn_mult, self.norm_eps = ffn_mult, norm_eps
        self.decay_lora, self.iclr_lora, self.value_lora, self.gate_lora = decay_lora, iclr_lora, value_lora, gate_lora
        self.initializer_range = initializer_range
        # what generic tools (lm-eval, generate) look for; an RNN has no position limit, this is the training context
        self.hidden_size, self.num_hidden_layers = d_model, n_layers
        self.num_attention_heads = d_model // head_size
        self.max_position_embeddings = max_position_embeddings
        kwargs.setdefault("use_cache", False)
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
