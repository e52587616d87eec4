"""RWKV-4: the `rwkv4` architecture (model, sizes, Hugging Face mapping)."""

from parcae_runner.models.registry import Architecture, register
from parcae_runner.models.rwkv4 import hf
from parcae_runner.models.rwkv4.model import RWKV4Block, RWKV4HParams, RWKV4Model
from parcae_runner.models.rwkv4.sizes import SIZES

CITATION = """@inproceedings{peng2023rwkv,
  title = {{RWKV}: Reinventing {RNN}s for the Transformer Era},
  author = {Peng, Bo and Alcaide, Eric and Anthony, Quentin and others},
  booktitle = {Findings of the Association for Computational Linguistics: EMNLP 2023},
  year = {2023},
  eprint = {2305.13048},
  archivePrefix = {arXiv}
}"""

DESCRIPTION = "RWKV-4 (time-mix WKV + squared-ReLU channel-mix, token shift), untied embeddings"

ARCH = register(
    Architecture(
        "rwkv4",
        RWKV4HParams,
        SIZES,
        RWKV4Model,
        DESCRIPTION,
        hf=hf,
        hf_model_type="rwkv",
        citation=CITATION,
        shard_units=(RWKV4Block,),
    )
)
