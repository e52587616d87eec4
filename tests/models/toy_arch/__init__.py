"""A toy architecture outside the package: one folder, registered by naming it in ``$PARCAE_EXTRA_ARCHS``.

``test_toy_architecture.py`` trains it through the CLI to show that a new architecture needs only its folder and
this registration: no YAML (``arch=toy`` composes its hyperparameters' defaults, ``size=debug`` its size).
"""

from parcae_runner.models.registry import Architecture, register

from .model import ToyHParams, ToyModel

ARCH = register(
    Architecture("toy", ToyHParams, {"debug": {"n_layers": 1, "d_model": 32}}, ToyModel, "a causal MLP mixer toy")
)
