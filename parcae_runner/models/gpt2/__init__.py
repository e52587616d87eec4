"""GPT-2 / GPT-3: the `gpt2` architecture (the transformer family with GPT-2's defaults; HF GPT2LMHeadModel)."""

from parcae_runner.models.gpt2 import hf
from parcae_runner.models.gpt2.model import GPT2HParams
from parcae_runner.models.gpt2.sizes import PUBLISHED, SIZES
from parcae_runner.models.transformer import register_family

CITATION = """@techreport{radford2019language,
  title = {Language Models are Unsupervised Multitask Learners},
  author = {Radford, Alec and Wu, Jeffrey and Child, Rewon and Luan, David and Amodei, Dario and Sutskever, Ilya},
  institution = {OpenAI},
  year = {2019}
}"""

DESCRIPTION = "GPT-2/GPT-3: pre-norm LayerNorm, learned positions, tanh-GELU MLP, biases, tied embeddings"

ARCH = register_family(GPT2HParams, SIZES, DESCRIPTION, hf, "gpt2", CITATION, PUBLISHED)
