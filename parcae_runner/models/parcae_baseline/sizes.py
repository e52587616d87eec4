"""The sizes of `parcae_baseline`: dims per size name."""

from parcae_runner.models.registry import dims_table

# (n_layers, d_model, n_heads); the named sizes are Parcae's non-looped baselines, named as Parcae's table names
# them: total parameters at vocab 32,768, value-embedding tables included (not the ladder's vocab 50,304)
SIZES = dims_table(
    ("n_layers", "d_model", "n_heads"),
    {
        "debug": (3, 64, 4),
        "140m": (6, 768, 6),
        "370m": (12, 1024, 8),
        "770m": (18, 1280, 10),
        "1.3b": (24, 1536, 12),
    },
)
