"""Backpack LM: the `backpack` architecture (sense vectors x contextual weights from a GPT-2 body)."""

from parcae_runner.models.backpack.model import BackpackHParams, BackpackModel
from parcae_runner.models.backpack.sizes import PUBLISHED, SIZES
from parcae_runner.models.registry import Architecture, register
from parcae_runner.models.remote import RemoteCode
from parcae_runner.models.transformer.block import Block

CITATION = """@inproceedings{hewitt2023backpack,
  title = {Backpack Language Models},
  author = {Hewitt, John and Thickstun, John and Manning, Christopher D. and Liang, Percy},
  booktitle = {Proceedings of the 61st Annual Meeting of the Association for Computational Linguistics (ACL)},
  year = {2023},
  eprint = {2305.16765},
  archivePrefix = {arXiv}
}"""


def check(hp: BackpackHParams, dims: dict[str, int], seq_len: int | None = None) -> tuple[list, list[str]]:
    """The GPT-2 body's learned positions must cover the context."""
    if seq_len is not None and seq_len > hp.max_positions:
        return [("arch.max_positions", hp.max_positions, f"at least data.seq_len={seq_len}")], []
    return [], []


DESCRIPTION = "Backpack LM: k context-free sense vectors per token, weighted by a GPT-2 body, tied head"

ARCH = register(
    Architecture(
        "backpack",
        BackpackHParams,
        SIZES,
        BackpackModel,
        DESCRIPTION,
        citation=CITATION,
        check=check,
        published=PUBLISHED,
        remote_code=RemoteCode("parcae_backpack", "ParcaeBackpack"),
        shard_units=(Block,),
    )
)
