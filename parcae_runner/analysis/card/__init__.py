"""Model cards: a Hugging Face-style ``card.md`` for one run, written from the run directory alone.

``render_card(run_dir)`` reads ``config.yaml``, ``run.json``, ``metrics.jsonl`` (and the sweep's
``sweep.json`` when there is one) and returns Markdown with YAML front matter (license, library,
tags, datasets, ``model-index`` with the validation results, ``co2_eq_emissions``) followed by the
sections of the Hugging Face model-card template: description, architecture, training data,
training procedure, evaluation, environmental impact, how to use, citation.

Every number comes from those files (or from the architecture registry and the package metadata,
which are code, not typing): a card can be regenerated at any time and always agrees with
``run.json``. ``write_card(run_dir)`` writes it as ``<run_dir>/card.md``, which ``parcae-runner
export`` copies into every exported folder as ``README.md``.

Modules: ``facts.py`` reads the run directory and derives what a card states, ``markdown.py`` formats
numbers and tables, ``metadata.py`` builds the Hub's front matter, ``sections.py`` and ``usage.py``
write the sections, ``citations.py`` holds the BibTeX, ``render.py`` puts the card together.
"""

from parcae_runner.analysis.card.citations import citation_for
from parcae_runner.analysis.card.facts import TOOL
from parcae_runner.analysis.card.markdown import count, num
from parcae_runner.analysis.card.metadata import front_matter
from parcae_runner.analysis.card.render import CARD_FILE, render_card, write_card

__all__ = [
    "CARD_FILE",
    "TOOL",
    "citation_for",
    "count",
    "front_matter",
    "num",
    "render_card",
    "write_card",
]
