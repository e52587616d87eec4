"""LLaMA: the `llama` architecture (the transformer family with LLaMA's defaults; HF LlamaForCausalLM)."""

from parcae_runner.models.llama import hf
from parcae_runner.models.llama.model import LlamaHParams
from parcae_runner.models.llama.sizes import PLAN_ONLY, PUBLISHED, SIZES
from parcae_runner.models.transformer import register_family

CITATION = """@article{touvron2023llama,
  title = {LLaMA: Open and Efficient Foundation Language Models},
  author = {Touvron, Hugo and Lavril, Thibaut and Izacard, Gautier and others},
  journal = {arXiv preprint arXiv:2302.13971},
  year = {2023}
}"""

DESCRIPTION = "LLaMA: pre-norm RMSNorm, RoPE, SwiGLU MLP, no biases, untied embeddings"

ARCH = register_family(LlamaHParams, SIZES, DESCRIPTION, hf, "llama", CITATION, PUBLISHED, PLAN_ONLY)
