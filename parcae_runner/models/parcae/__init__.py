"""Parcae, the looped transformer: the `parcae` architecture (model and sizes; no Hugging Face export)."""

from parcae_runner.models.layers.qk_norm_block import QKNormBlock
from parcae_runner.models.parcae.model import ParcaeHParams, ParcaeModel
from parcae_runner.models.parcae.sizes import SIZES
from parcae_runner.models.registry import Architecture, register
from parcae_runner.models.remote import RemoteCode

DESCRIPTION = (
    "Looped transformer: prelude, core repeated T ~ Poisson times with a stable diagonal "
    "injection and truncated backprop, coda; tied embeddings"
)

ARCH = register(
    Architecture(
        "parcae",
        ParcaeHParams,
        SIZES,
        ParcaeModel,
        DESCRIPTION,
        remote_code=RemoteCode("parcae", "Parcae"),
        # truncated backprop: each core block keeps its activations for the last mean_backprop_depth iterations
        activation_passes=lambda hparams: {"core": hparams.mean_backprop_depth},
        # the core's blocks are units like the others; each runs R times in one forward, so under FSDP it is
        # gathered and its gradient reduced once per iteration with gradients (train/sharding.py)
        shard_units=(QKNormBlock,),
    )
)
