"""The sizes of `mamba`: dims per size name."""

from parcae_runner.models.registry import dims_table

# (n_layers, d_model). Mamba's convention is 2x the layers of a transformer of the same width; the ladder keeps
# Pythia's width and sets the depth so that the TOTAL count at vocab 50304 is within 10% of Pythia's (tied
# embeddings make Mamba's embedding share half of Pythia's, so the small sizes need many more layers).
# 370m (48 x 1024) and 1.4b (48 x 2048) are the published state-spaces/mamba-* shapes.
SIZES = dims_table(
    ("n_layers", "d_model"),
    {
        "debug": (2, 64),
        "parc": (24, 768),  # state-spaces/mamba-130m(-hf), the Parc model
        "14m": (64, 128),
        "31m": (40, 256),
        "70m": (26, 512),
        "160m": (32, 768),
        "410m": (48, 1024),
        "1b": (32, 2048),
        "1.4b": (48, 2048),
    },
)
