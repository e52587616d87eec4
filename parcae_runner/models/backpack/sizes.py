"""The sizes of `backpack`: debug, the paper's small model, the Levanter 1.4B card, and the project's ladder."""

from parcae_runner.models.registry import dims_table

KEYS = ("n_layers", "d_model", "n_heads", "n_senses", "sense_scale")

SIZES = dims_table(
    KEYS,
    {
        "debug": (2, 64, 4, 4, 2),
        # Hewitt et al. (2023) Backpack-Small / HF stanfordnlp/backpack-gpt2: a GPT-2 small body, 16 senses, 170M
        "small": (12, 768, 12, 16, 4),
        # the ladder: Pythia's totals at vocab 50,304 (tied; 8 senses below 70m, where senses would dominate)
        "14m": (6, 192, 3, 8, 4),
        "31m": (8, 320, 5, 8, 4),
        "70m": (8, 512, 8, 16, 4),
        "160m": (12, 768, 12, 16, 4),
        "410m": (22, 1024, 16, 16, 4),
        "1b": (26, 1536, 24, 16, 4),
        # stanford-crfm/levanter-backpack-1b card (1.42B parameters, vocab 50,264, seq 512); dims of Levanter's
        # config/backpack_gpt2_large.yaml: d 1280, 36 layers, 20 heads, 48 senses, sense_intermediate_scale 7
        "1.4b": (36, 1280, 20, 48, 7),
    },
)

PUBLISHED = {"small": (170e6, 50264)}

# the card's vocabulary and its count: the published checkpoint stores the token and position embeddings twice
# (``word_embeddings`` / ``position_embeddings`` beside the GPT-2 body's ``wte`` / ``wpe``), and its 1.42B counts both
CARD_VOCAB, CARD_PARAMS = 50264, 1.42e9
