"""Model architectures. Importing this package registers every architecture."""

from parcae_runner.models import pythia  # noqa: F401  (registers "pythia")
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
