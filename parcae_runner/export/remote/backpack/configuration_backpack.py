"""Configuration of a parcae-runner Backpack LM export (Hewitt et al., 2023). Self-contained: transformers only."""

from transformers import PretrainedConfig


class ParcaeBackpackConfig(PretrainedConfig):
    model_type = "parcae_backpack"

    def __init__(
        self,
        vocab_size: int = 50264,
        n_layers: int = 12,
        d_model: int = 768,
        n_heads: int = 12,
        n_senses: int = 16,
        sense_scale: int = 4,
        max_positions: int = 512,
        norm_eps: float = 1e-5,
        scale_attn_by_inverse_layer_idx: bool = True,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        self.vocab_size, self.n_layers, self.d_model, self.n_heads = vocab_size, n_layers, d_model, n_heads
        self.n_senses, self.sense_scale, self.max_positions = n_senses, sense_scale, max_positions
        self.norm_eps, self.scale_attn_by_inverse_layer_idx = norm_eps, scale_attn_by_inverse_layer_idx
        self.initializer_range = initializer_range
        # what generic tools (lm-eval, generate) look for
        self.hidden_size, self.num_hidden_layers, self.num_attention_heads = d_model, n_layers, n_heads
        self.max_position_embeddings = max_positions
        kwargs.setdefault("use_cache", False)
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
