"""Pythia (GPT-NeoX): the `pythia` architecture (model, sizes, Hugging Face mapping)."""

from parcae_runner.models.pythia import hf
from parcae_runner.models.pythia.model import PythiaBlock, PythiaHParams, PythiaModel
from parcae_runner.models.pythia.sizes import SIZES
from parcae_runner.models.registry import Architecture, register

CITATION = """@inproceedings{biderman2023pythia,
  title = {Pythia: A Suite for Analyzing Large Language Models Across Training and Scaling},
  author = {Biderman, Stella and Schoelkopf, Hailey and Anthony, Quentin and others},
  booktitle = {Proceedings of the 40th International Conference on Machine Learning (ICML)},
  year = {2023},
  eprint = {2304.01373},
  archivePrefix = {arXiv}
}"""

DESCRIPTION = "GPT-NeoX decoder as in the Pythia suite: parallel residual, partial rotary, GELU MLP, untied"

ARCH = register(
    Architecture(
        "pythia",
        PythiaHParams,
        SIZES,
        PythiaModel,
        DESCRIPTION,
        hf=hf,
        hf_model_type="gpt_neox",
        citation=CITATION,
        shard_units=(PythiaBlock,),
    )
)
