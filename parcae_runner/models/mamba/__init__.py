"""Mamba-1: the `mamba` architecture (model, sizes, Hugging Face mapping)."""

from parcae_runner.models.mamba import hf
from parcae_runner.models.mamba.model import MambaBlock, MambaHParams, MambaModel
from parcae_runner.models.mamba.sizes import SIZES
from parcae_runner.models.registry import Architecture, register

CITATION = """@article{gu2023mamba,
  title = {Mamba: Linear-Time Sequence Modeling with Selective State Spaces},
  author = {Gu, Albert and Dao, Tri},
  journal = {arXiv preprint arXiv:2312.00752},
  year = {2023}
}"""

DESCRIPTION = "Mamba-1 selective SSM blocks (RMSNorm pre-norm, conv + selective scan), tied embeddings"

ARCH = register(
    Architecture(
        "mamba",
        MambaHParams,
        SIZES,
        MambaModel,
        DESCRIPTION,
        hf=hf,
        hf_model_type="mamba",
        citation=CITATION,
        shard_units=(MambaBlock,),
    )
)
