"""Configuration of a parcae-runner `parcae_baseline` export (Parcae's non-looped baseline). transformers only."""

from transformers import PretrainedConfig


class ParcaeBaselineConfig(PretrainedConfig):
    model_type = "parcae_baseline"

    def __init__(
        self,
        vocab_size: int = 32768,
        n_layers: int = 6,
        d_model: int = 768,
        n_heads: int = 6,
        norm_eps: float = 1e-6,
        rope_base: float = 50000.0,
        mlp_ratio: int = 4,
        value_embeddings: bool = True,
        max_position_embeddings: int = 1024,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        self.vocab_size, self.n_layers, self.d_model, self.n_heads = vocab_size, n_layers, d_model, n_heads
        self.norm_eps, self.rope_base, self.mlp_ratio = norm_eps, rope_base, mlp_ratio
        self.value_embeddings, self.initializer_range = value_embeddings, initializer_range
        self.hidden_size, self.num_hidden_layers, self.num_attention_heads = d_model, n_layers, n_heads
        self.max_position_embeddings = max_position_embeddings
        kwargs.setdefault("use_cache", False)
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
