"""A LAMBADA-style last-word task built from held-out documents, so evaluation needs no download.

LAMBADA (Paperno et al., 2016) asks a model for the last word of a passage, chosen so that the word
can only be guessed from the wider context. The same idea, made from text every install has: each
example is a run of sentences from a *held-out* document (the validation side of the data split, so
no model trained by this tool has seen it) whose last word also occurs earlier in the passage. Such
words are predictable from context, not from the sentence alone, which is what makes the task rise
during training as the model learns to use its context (the behaviour the Parc phase plots track).

Examples are ``{"text": ...}``, the last space-separated word being the target, exactly the format
of ``EleutherAI/lambada_openai``: the lm-eval task reuses LAMBADA's prompt and metrics (``acc``: the
greedy continuation equals the word; ``perplexity`` of the word).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# a passage: at least this many words of context before the target, at most this many in all
MIN_CONTEXT_WORDS = 12
MAX_PASSAGE_WORDS = 120
# targets: plain words, long enough that copying one is not a matter of chance
TARGET_RE = re.compile(r"^[A-Za-z][a-z]{3,}$")
# a word that ends a sentence; a block of text with none is code or a table, not prose
SENTENCE_END_RE = re.compile(r"[a-z][.!?]$")
PROSE_RE = re.compile(r"[a-z][.!?](\s|$)")
DEFAULT_MAX_EXAMPLES = 500
# DataConfig.val_fraction's default: the split of a run that did not change it
DEFAULT_VAL_FRACTION = 0.05


def _paragraphs(document: str) -> Iterator[str]:
    for block in re.split(r"\n\s*\n", document):
        # code and tables are not prose: skip indented blocks and ones with no sentence end
        if block.startswith((" ", "\t", ">>>")) or not PROSE_RE.search(block):
            continue
        yield " ".join(block.split())


def _clean(word: str) -> str:
    return word.strip(".,;:!?()[]{}\"'`").lower()


def _passage_examples(paragraph: str) -> Iterator[str]:
    """At most one example per sentence: the passage up to the sentence's last word that also occurs
    earlier in the paragraph (a sentence-final word when it qualifies, as in LAMBADA)."""
    words = paragraph.split(" ")
    sentence_start = 0
    for i, word in enumerate(words):
        if not (i == len(words) - 1 or SENTENCE_END_RE.search(word)):
            continue
        for j in range(i, sentence_start - 1, -1):
            target = _clean(words[j])
            context = words[max(0, j - MAX_PASSAGE_WORDS + 1) : j]
            if len(context) < MIN_CONTEXT_WORDS:
                break
            if TARGET_RE.match(words[j].rstrip(".,;:!?")) and target in {_clean(w) for w in context}:
                yield " ".join([*context, words[j].rstrip(".,;:!?")])
                break
        sentence_start = i + 1


def lastword_examples(documents: Sequence[str], max_examples: int = DEFAULT_MAX_EXAMPLES) -> list[dict[str, str]]:
    """Up to ``max_examples`` examples, in document order (deterministic for given documents)."""
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for doc in documents:
        for paragraph in _paragraphs(doc):
            for text in _passage_examples(paragraph):
                if text not in seen:
                    seen.add(text)
                    out.append({"text": text})
                    if len(out) >= max_examples:
                        return out
    return out


def held_out_documents(source: str = "embedded", path: str | None = None, val_fraction: float = 0.05) -> list[str]:
    """The validation documents of a data config: the same hash split that ``prepare_data`` makes."""
    from parcae_runner.config.schema import DataConfig
    from parcae_runner.data import load_documents
    from parcae_runner.data.prepare import split_documents

    docs = load_documents(DataConfig(source=source, path=path, val_fraction=val_fraction))
    return split_documents(docs, val_fraction)[1]


def _run_data(run: str) -> dict:
    """The ``data`` section of a run directory's config."""
    from parcae_runner.runs import RunDirectory

    cfg = RunDirectory(Path(run)).read_config()
    if cfg is None:
        raise FileNotFoundError(f"{run!r} is not a run directory (no config.yaml)")
    return {"source": cfg.data.source, "path": cfg.data.path, "val_fraction": float(cfg.data.val_fraction)}


@functools.lru_cache(maxsize=8)
def _examples(source: str, path: str | None, val_fraction: float, max_examples: int) -> tuple[dict[str, str], ...]:
    docs = held_out_documents(source, path, val_fraction)
    examples = lastword_examples(docs, max_examples)
    if not examples:
        raise ValueError(f"no last-word examples in the {len(docs)} held-out documents of data.source={source}")
    return tuple(examples)


def task_dataset(**metadata: Any) -> dict[str, Any]:
    """``custom_dataset`` of the lm-eval task: ``{"test": datasets.Dataset}``.

    lm-eval passes the task's metadata, which includes the model arguments when it builds the model
    from a string (``--model parcae --model_args run=...``): the examples then come from that run's
    held-out split. Otherwise ``source``/``path``/``val_fraction`` (default: the embedded corpus with
    the default split); ``max_examples`` caps the count.
    """
    import datasets

    data = _run_data(str(metadata["run"])) if metadata.get("run") else {}
    examples = _examples(
        str(metadata.get("source") or data.get("source") or "embedded"),
        metadata.get("path") or data.get("path"),
        float(metadata.get("val_fraction") or data.get("val_fraction") or DEFAULT_VAL_FRACTION),
        int(metadata.get("max_examples") or DEFAULT_MAX_EXAMPLES),
    )
    return {"test": datasets.Dataset.from_list(list(examples))}
