"""Mistral: the `mistral` architecture (LLaMA's block + GQA + sliding-window attention; HF MistralForCausalLM)."""

from parcae_runner.models.mistral import hf
from parcae_runner.models.mistral.model import MistralHParams
from parcae_runner.models.mistral.sizes import PLAN_ONLY, PUBLISHED, SIZES
from parcae_runner.models.transformer import register_family

CITATION = """@article{jiang2023mistral,
  title = {Mistral 7B},
  author = {Jiang, Albert Q. and Sablayrolles, Alexandre and Mensch, Arthur and others},
  journal = {arXiv preprint arXiv:2310.06825},
  year = {2023}
}"""

DESCRIPTION = "Mistral: LLaMA's block with grouped-query attention and sliding-window attention"

ARCH = register_family(MistralHParams, SIZES, DESCRIPTION, hf, "mistral", CITATION, PUBLISHED, PLAN_ONLY)
