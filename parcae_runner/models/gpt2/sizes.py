"""The sizes of `gpt2`: the project's ladder, GPT-2's and GPT-3's tables, and a debug size."""

from parcae_runner.models.registry import dims_table

KEYS = ("n_layers", "d_model", "n_heads")

# the ladder: Pythia's total parameter counts at vocab 50,304 (tied embeddings make gpt2 deeper or wider)
LADDER = {
    "debug": (2, 64, 4),
    "14m": (10, 192, 6),
    "31m": (6, 384, 6),
    "70m": (14, 512, 8),
    "160m": (12, 896, 14),
    "410m": (28, 1024, 16),
    "1b": (18, 2048, 16),
    "1.4b": (26, 2048, 16),
}

# GPT-2 (Radford et al. 2019, Table 2; HF gpt2, gpt2-medium, gpt2-large, gpt2-xl configs), vocab 50,257.
# The paper's counts (117M, 345M, 762M, 1542M) were later corrected to the checkpoints' 124M ... 1558M.
GPT2 = {
    "gpt2-small": (12, 768, 12),
    "gpt2-medium": (24, 1024, 16),
    "gpt2-large": (36, 1280, 20),
    "gpt2-xl": (48, 1600, 25),
}
# GPT-3 (Brown et al. 2020, Table 2.1), n_ctx 2048. The table's XL row lists 24 heads of 128 dims for
# d_model 2048, which does not divide; 16 heads of 128 keeps the head size.
GPT3 = {
    "gpt3-125m": (12, 768, 12),
    "gpt3-350m": (24, 1024, 16),
    "gpt3-760m": (24, 1536, 16),
    "gpt3-1.3b": (24, 2048, 16),
    "gpt3-2.7b": (32, 2560, 32),
}

SIZES = dims_table(KEYS, {**LADDER, **GPT2, **GPT3})

# size -> (published parameters, the vocabulary they were counted at)
PUBLISHED = {
    "gpt2-small": (124e6, 50257),
    "gpt2-medium": (355e6, 50257),
    "gpt2-large": (774e6, 50257),
    "gpt2-xl": (1558e6, 50257),
    "gpt3-125m": (125e6, 50257),
    "gpt3-350m": (350e6, 50257),
    "gpt3-760m": (760e6, 50257),
    "gpt3-1.3b": (1.3e9, 50257),
    "gpt3-2.7b": (2.7e9, 50257),
}
