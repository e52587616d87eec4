"""Model architectures: one package per architecture (``models/<name>/``), each registered once.

Importing this package registers every built-in architecture, then the modules named in
``$PARCAE_EXTRA_ARCHS`` (see :mod:`parcae_runner.models.registry`).
"""

# importing registers each architecture
from parcae_runner.models import (  # noqa: F401
    backpack,
    bloom,
    gpt2,
    llama,
    mamba,
    mistral,
    parcae,
    parcae_baseline,
    pythia,
    rwkv4,
    rwkv7,
)
from parcae_runner.models.registry import (
    ARCHITECTURES,
    Architecture,
    UnknownArchitecture,
    UnknownSize,
    build_model,
    count_parameters,
    get_architecture,
    import_extra_architectures,
    register,
)

import_extra_architectures()

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
