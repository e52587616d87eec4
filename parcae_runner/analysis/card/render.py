"""A whole card: the front matter, then the sections in order; and writing it beside the run."""

from __future__ import annotations

from pathlib import Path

import yaml

from parcae_runner.analysis.card import sections
from parcae_runner.analysis.card.facts import load_facts
from parcae_runner.analysis.card.metadata import front_matter
from parcae_runner.analysis.card.usage import how_to_use
from parcae_runner.util.files import atomic_write_text

CARD_FILE = "card.md"
SECTIONS = (
    sections.description,
    sections.architecture,
    sections.training_data,
    sections.training_procedure,
    sections.evaluation,
    sections.environmental_impact,
    how_to_use,
    sections.citation,
)


def render_card(run_dir: Path) -> str:
    """The model card of the run in ``run_dir`` as Markdown with YAML front matter."""
    facts = load_facts(run_dir)
    meta = front_matter(facts.cfg, facts.run, facts.records)
    parts = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", ""]
    for section in SECTIONS:
        parts += section(facts)
    return "\n".join(parts)


def write_card(run_dir: Path) -> Path:
    """Render the card of ``run_dir`` and write it (atomically) as ``<run_dir>/card.md``."""
    path = Path(run_dir) / CARD_FILE
    atomic_write_text(path, render_card(Path(run_dir)))
    return path
