"""The sizes of `llama`: the project's ladder, LLaMA 7B (plan only) and a debug size."""

from parcae_runner.models.registry import dims_table

# the ladder on Pythia's dims: SwiGLU at 8/3 d has the parameters of a 4d GELU MLP (Shazeer, 2020)
SIZES = dims_table(
    ("n_layers", "d_model", "n_heads"),
    {
        "debug": (2, 64, 4),
        "14m": (6, 128, 4),
        "31m": (6, 256, 8),
        "70m": (6, 512, 8),
        "160m": (12, 768, 12),
        "410m": (24, 1024, 16),
        "1b": (16, 2048, 8),
        "1.4b": (24, 2048, 16),
        # LLaMA (Touvron et al. 2023, Table 2): 6.7B, 32 layers, d 4096, 32 heads, vocab 32,000
        "llama-7b": (32, 4096, 32),
    },
)
PUBLISHED = {"llama-7b": (6.74e9, 32000)}
PLAN_ONLY = ("llama-7b",)
