"""RWKV-7 x070: the `rwkv7` architecture (model, sizes; BlinkDL ``rwkv`` package export in ``blinkdl``)."""

from parcae_runner.models.formats import WeightFormat
from parcae_runner.models.registry import Architecture, register
from parcae_runner.models.remote import RemoteCode
from parcae_runner.models.rwkv7.blinkdl import init_from_pth, save_pth
from parcae_runner.models.rwkv7.model import RWKV7Block, RWKV7HParams, RWKV7Model
from parcae_runner.models.rwkv7.sizes import SIZES
from parcae_runner.models.rwkv7.student import RECIPE as STUDENT

CITATION = """@article{peng2025rwkv7,
  title = {{RWKV-7} "Goose" with Expressive Dynamic State Evolution},
  author = {Peng, Bo and Zhang, Ruichong and Goldstein, Daniel and Alcaide, Eric and others},
  journal = {arXiv preprint arXiv:2503.14456},
  year = {2025}
}"""

DESCRIPTION = "RWKV-7 x070 (generalized delta-rule WKV, value residual, static token shift), untied embeddings"

BLINKDL = WeightFormat(
    name="blinkdl",
    suffix=".pth",
    description="a state dict for BlinkDL's rwkv package",
    import_into=init_from_pth,
    export=save_pth,
)

ARCH = register(
    Architecture(
        "rwkv7",
        RWKV7HParams,
        SIZES,
        RWKV7Model,
        DESCRIPTION,
        citation=CITATION,
        formats=(BLINKDL,),
        student=STUDENT,
        remote_code=RemoteCode("parcae_rwkv7", "ParcaeRWKV7"),
        shard_units=(RWKV7Block,),
    )
)
