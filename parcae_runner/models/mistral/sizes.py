"""The sizes of `mistral`: the project's ladder (GQA with a quarter as many kv heads), Mistral 7B (plan only)."""

from parcae_runner.models.registry import dims_table

SIZES = dims_table(
    ("n_layers", "d_model", "n_heads", "n_kv_heads"),
    {
        "debug": (2, 64, 4, 2),
        "14m": (6, 128, 4, 1),
        "31m": (6, 256, 8, 2),
        "70m": (6, 512, 8, 2),
        "160m": (12, 768, 12, 3),
        "410m": (22, 1024, 16, 4),
        "1b": (16, 2048, 16, 4),
        "1.4b": (22, 2048, 16, 4),
        # Mistral 7B (Jiang et al. 2023, Table 1): 32 layers, d 4096, 32 heads, 8 kv heads, vocab 32,000
        "mistral-7b": (32, 4096, 32, 8),
    },
)
PUBLISHED = {"mistral-7b": (7.24e9, 32000)}
PLAN_ONLY = ("mistral-7b",)
