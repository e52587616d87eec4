"""The sizes of `pythia`: dims per size name."""

from parcae_runner.models.registry import dims_table

# (n_layers, d_model, n_heads) of the Pythia suite, plus a tiny debug size
SIZES = dims_table(
    ("n_layers", "d_model", "n_heads"),
    {
        "debug": (2, 64, 4),
        "14m": (6, 128, 4),
        "31m": (6, 256, 8),
        "70m": (6, 512, 8),
        "160m": (12, 768, 12),
        # the Parc study's Pythia-160m (same dims as 160m; the name lines up with mamba/rwkv4 `parc`)
        "parc": (12, 768, 12),
        "410m": (24, 1024, 16),
        "1b": (16, 2048, 8),
        "1.4b": (24, 2048, 16),
    },
)
