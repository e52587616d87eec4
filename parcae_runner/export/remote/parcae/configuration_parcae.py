"""Configuration of a parcae-runner `parcae` export (looped: prelude, core x R, coda). transformers only."""

from transformers import PretrainedConfig


class ParcaeConfig(PretrainedConfig):
    model_type = "parcae"

    def __init__(
        self,
        vocab_size: int = 32768,
        n_prelude: int = 2,
        n_core: int = 2,
        n_coda: int = 2,
        d_model: int = 768,
        n_heads: int = 6,
        mean_recurrence: int = 8,
        mean_backprop_depth: int = 4,
        depth_sampling: str = "per-sequence",
        readout: bool = True,
        eval_recurrence: int | None = None,
        injection: str = "diagonal",
        state_init: str = "like-init",
        norm_eps: float = 1e-6,
        rope_base: float = 50000.0,
        mlp_ratio: int = 4,
        value_embeddings: bool = True,
        max_position_embeddings: int = 1024,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        self.vocab_size, self.d_model, self.n_heads = vocab_size, d_model, n_heads
        self.n_prelude, self.n_core, self.n_coda = n_prelude, n_core, n_coda
        self.mean_recurrence, self.mean_backprop_depth = mean_recurrence, mean_backprop_depth
        # depth_sampling: how training drew depths (kept for the record; this export runs at a fixed depth)
        self.depth_sampling, self.readout = depth_sampling, readout
        self.eval_recurrence, self.injection, self.state_init = eval_recurrence, injection, state_init
        self.norm_eps, self.rope_base, self.mlp_ratio = norm_eps, rope_base, mlp_ratio
        self.value_embeddings, self.initializer_range = value_embeddings, initializer_range
        self.hidden_size, self.num_attention_heads = d_model, n_heads
        self.num_hidden_layers = n_prelude + n_core + n_coda
        self.max_position_embeddings = max_position_embeddings
        kwargs.setdefault("use_cache", False)
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
