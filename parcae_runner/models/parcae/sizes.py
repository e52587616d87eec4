"""The sizes of `parcae`: dims per size name."""

from parcae_runner.models.registry import dims_table

# (d_model, n_heads, n_prelude, n_core, n_coda): Parcae's table (head dim 128), plus a tiny debug size. Parcae's
# names: each counts total parameters at vocab 32,768, value-embedding tables included (not the ladder's vocab 50,304)
SIZES = dims_table(
    ("d_model", "n_heads", "n_prelude", "n_core", "n_coda"),
    {
        "debug": (64, 4, 1, 1, 1),
        "140m": (768, 6, 2, 2, 2),
        "370m": (1024, 8, 4, 4, 4),
        "770m": (1280, 10, 6, 6, 6),
        "1.3b": (1536, 12, 8, 8, 8),
    },
)
