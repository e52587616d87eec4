"""Model architectures. Importing this package registers every architecture."""

# importing registers "gpt", "mamba", "parcae", "pythia", "rwkv4"
from parcae_runner.models import gpt, mamba, parcae, pythia, rwkv4  # noqa: F401
from parcae_runner.models.registry import (
    ARCHITECTURES,
    Architecture,
    UnknownArchitecture,
    UnknownSize,
    build_model,
    count_parameters,
    get_architecture,
    register,
)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "UnknownArchitecture",
    "UnknownSize",
    "build_model",
    "count_parameters",
    "get_architecture",
    "register",
]
