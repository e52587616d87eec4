"""The sizes of `rwkv7`: dims per size name."""

from parcae_runner.models.registry import dims_table

# (n_layers, d_model, head_size): Pythia's shapes with BlinkDL's head size 64 (16 at debug). A block has 12 d^2
# weights in its projections plus the LoRA factors (a few % at 160m), so every size is within +10% of Pythia's
# total at vocab 50304 (tests/models/test_architectures.py).
SIZES = dims_table(
    ("n_layers", "d_model", "head_size"),
    {
        "debug": (2, 64, 16),
        "14m": (6, 128, 64),
        "31m": (6, 256, 64),
        "70m": (6, 512, 64),
        "160m": (12, 768, 64),
        "410m": (24, 1024, 64),
        "1b": (16, 2048, 64),
        "1.4b": (24, 2048, 64),
    },
)
