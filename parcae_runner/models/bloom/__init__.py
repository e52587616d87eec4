"""BLOOM: the `bloom` architecture (the transformer family with ALiBi and an embedding LayerNorm; HF Bloom)."""

from parcae_runner.models.bloom import hf
from parcae_runner.models.bloom.model import BloomHParams
from parcae_runner.models.bloom.sizes import PLAN_ONLY, PUBLISHED, SIZES
from parcae_runner.models.transformer import register_family

CITATION = """@article{bigscience2022bloom,
  title = {BLOOM: A 176B-Parameter Open-Access Multilingual Language Model},
  author = {{BigScience Workshop}},
  journal = {arXiv preprint arXiv:2211.05100},
  year = {2022}
}"""

DESCRIPTION = "BLOOM: pre-norm LayerNorm + embedding LayerNorm, ALiBi, tanh-GELU MLP, biases, tied embeddings"

ARCH = register_family(BloomHParams, SIZES, DESCRIPTION, hf, "bloom", CITATION, PUBLISHED, PLAN_ONLY)
