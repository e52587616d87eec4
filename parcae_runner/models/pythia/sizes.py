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
        # the Parc study's Pythia-160m (Michaelov et al., NeurIPS 2025; same dims as 160m): `parc` is the study's
        # shape of each of its architectures (pythia-160m, mamba-130m, rwkv-4-169m), so one name picks all three
        "parc": (12, 768, 12),
        "410m": (24, 1024, 16),
        "1b": (16, 2048, 8),
        "1.4b": (24, 2048, 16),
    },
)
