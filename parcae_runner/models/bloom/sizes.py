"""The sizes of `bloom`: the project's ladder, BLOOM's table (560M ... 7.1B) and a debug size."""

from parcae_runner.models.registry import dims_table

SIZES = dims_table(
    ("n_layers", "d_model", "n_heads"),
    {
        "debug": (2, 64, 4),
        # the ladder: Pythia's totals at vocab 50,304, tied embeddings
        "14m": (10, 192, 6),
        "31m": (6, 384, 6),
        "70m": (14, 512, 8),
        "160m": (12, 896, 14),
        "410m": (28, 1024, 16),
        "1b": (18, 2048, 16),
        "1.4b": (26, 2048, 16),
        # BLOOM (BigScience 2022, Table 3; HF bigscience/bloom-* configs), vocab 250,880
        "bloom-560m": (24, 1024, 16),
        "bloom-1b1": (24, 1536, 16),
        "bloom-1b7": (24, 2048, 16),
        "bloom-3b": (30, 2560, 32),
        "bloom-7b1": (30, 4096, 32),
    },
)
PUBLISHED = {
    "bloom-560m": (559e6, 250880),
    "bloom-1b1": (1065e6, 250880),
    "bloom-1b7": (1722e6, 250880),
    "bloom-3b": (3003e6, 250880),
    "bloom-7b1": (7069e6, 250880),
}
PLAN_ONLY = ("bloom-3b", "bloom-7b1")
