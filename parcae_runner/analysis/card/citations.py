"""The BibTeX a card cites: the paper behind the architecture (from its registry entry) and the tool itself."""

from __future__ import annotations


def citation_for(arch_name: str) -> str:
    """The BibTeX of the paper behind ``arch_name`` (its registry entry's ``citation``); empty when there is none."""
    from parcae_runner.models import UnknownArchitecture, get_architecture

    try:
        return get_architecture(arch_name).citation or ""
    except UnknownArchitecture:
        return ""


def tool_citation(tool: str, summary: str, version: str, year: int) -> list[str]:
    """The ``@misc`` entry of the tool that trained the run, as lines."""
    return [
        f"@misc{{{tool.replace('-', '_')},",
        f"  title = {{{{{tool}}}: {summary.rstrip('.')}}},",
        f"  note = {{Version {version}}},",
        f"  year = {{{year}}}",
        "}",
    ]
