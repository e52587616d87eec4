"""The sizes of `rwkv4`: dims per size name."""

from parcae_runner.models.registry import dims_table

# (n_layers, d_model): Pythia's shapes, which are also the published RWKV-4 Pile shapes where those exist
# (169m = 12 x 768, 430m = 24 x 1024, 1.5b = 24 x 2048). A block has ~13 d^2 weights against Pythia's 12 d^2,
# so every size is within +8% of Pythia's total at vocab 50304.
SIZES = dims_table(
    ("n_layers", "d_model"),
    {
        "debug": (2, 64),
        "parc": (12, 768),  # RWKV/rwkv-4-169m-pile, the Parc model
        "14m": (6, 128),
        "31m": (6, 256),
        "70m": (6, 512),
        "160m": (12, 768),
        "410m": (24, 1024),
        "1b": (16, 2048),
        "1.4b": (24, 2048),
    },
)
