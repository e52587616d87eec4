"""Model architectures. Importing this package registers every architecture."""

from parcae_runner.models import mamba, pythia, rwkv4  # noqa: F401  (registers "mamba", "pythia", "rwkv4")
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
