"""Parcae's non-looped baseline: the `parcae_baseline` architecture (model and sizes).

It was called `gpt` until the model zoo brought GPT-2 itself (`gpt2`); `gpt` stays a deprecated alias
(``registry.ALIASES``, ``launch_configs/arch/gpt.yaml``), so old configs and run directories still load.
"""

from parcae_runner.models.layers.qk_norm_block import QKNormBlock
from parcae_runner.models.parcae_baseline.model import ParcaeBaselineHParams, ParcaeBaselineModel
from parcae_runner.models.parcae_baseline.sizes import SIZES
from parcae_runner.models.registry import Architecture, alias, register
from parcae_runner.models.remote import RemoteCode

DESCRIPTION = "Parcae's non-looped baseline: pre-norm RMSNorm, QK-norm, RoPE, ReLU^2 MLP, value embeddings, tied"

ARCH = register(
    Architecture(
        "parcae_baseline",
        ParcaeBaselineHParams,
        SIZES,
        ParcaeBaselineModel,
        DESCRIPTION,
        remote_code=RemoteCode("parcae_baseline", "ParcaeBaseline"),
        shard_units=(QKNormBlock,),
    )
)
alias("gpt", "parcae_baseline", "arch=gpt is deprecated: it is Parcae's baseline, now arch=parcae_baseline")
