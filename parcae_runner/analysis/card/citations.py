"""The BibTeX a card cites: the paper behind each architecture and the tool itself, in one place."""

from __future__ import annotations

# BibTeX of the paper behind each architecture. Papers are reference data, not run data; they are
# looked up on the registry's Architecture first (a ``citation`` attribute, should it grow one), so
# this table is only the fallback for the architectures that exist today.
ARCHITECTURE_CITATIONS: dict[str, str] = {
    "pythia": """@inproceedings{biderman2023pythia,
  title = {Pythia: A Suite for Analyzing Large Language Models Across Training and Scaling},
  author = {Biderman, Stella and Schoelkopf, Hailey and Anthony, Quentin and others},
  booktitle = {Proceedings of the 40th International Conference on Machine Learning (ICML)},
  year = {2023},
  eprint = {2304.01373},
  archivePrefix = {arXiv}
}""",
    "mamba": """@article{gu2023mamba,
  title = {Mamba: Linear-Time Sequence Modeling with Selective State Spaces},
  author = {Gu, Albert and Dao, Tri},
  journal = {arXiv preprint arXiv:2312.00752},
  year = {2023}
}""",
    "rwkv4": """@inproceedings{peng2023rwkv,
  title = {{RWKV}: Reinventing {RNN}s for the Transformer Era},
  author = {Peng, Bo and Alcaide, Eric and Anthony, Quentin and others},
  booktitle = {Findings of the Association for Computational Linguistics: EMNLP 2023},
  year = {2023},
  eprint = {2305.13048},
  archivePrefix = {arXiv}
}""",
}


def citation_for(arch_name: str) -> str:
    """The BibTeX of the paper behind ``arch_name``; empty when there is none.

    Papers are reference data, not run data: the registry's Architecture is asked first (a
    ``citation`` attribute, should it grow one), this table is only the fallback.
    """
    from parcae_runner.models import get_architecture

    try:
        cited = getattr(get_architecture(arch_name), "citation", None)
    except KeyError:
        cited = None
    return cited or ARCHITECTURE_CITATIONS.get(arch_name, "")


def tool_citation(tool: str, summary: str, version: str, year: int) -> list[str]:
    """The ``@misc`` entry of the tool that trained the run, as lines."""
    return [
        f"@misc{{{tool.replace('-', '_')},",
        f"  title = {{{{{tool}}}: {summary.rstrip('.')}}},",
        f"  note = {{Version {version}}},",
        f"  year = {{{year}}}",
        "}",
    ]
