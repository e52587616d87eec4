"""The published size of the corpora the presets train on, so that ``plan`` can price a study before the data is
fetched (a laptop has no copy of OpenWebText or FineWeb-Edu in its Hugging Face cache).

Each row is one corpus as a ``data.source=hf`` config names it (``data.dataset``, ``data.config_name``), its size in
tokens of the tokenizer its source counted them in, and where that figure comes from. A figure is ``exact`` only when
the source gives the count to the token; a run whose tokenizer is another one (Parc's GPT-NeoX-20B on OpenWebText,
Parcae's own BPE on FineWeb-Edu) gets the same count, marked approximate: no source publishes it for that tokenizer.

Only ``plan`` reads this table (:func:`parcae_runner.train.preflight.preflight`); ``train``, ``launch`` and ``sweep``
need the data itself, and the plan says which figure it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from parcae_runner.data.budget import Availability
from parcae_runner.data.errors import DataError
from parcae_runner.data.pretrained import TRAIN, load_pretrained, padded_vocab_size

if TYPE_CHECKING:
    from parcae_runner.config.schema import DataConfig


@dataclass(frozen=True)
class PublishedCorpus:
    name: str
    dataset: str
    config_name: str | None
    tokens: int
    # the tokenizer the count is in (a Hugging Face name, as data.tokenizer spells it)
    tokenizer: str
    # the source gives the count to the token (else a rounded figure: "around 10B")
    exact: bool
    source: str

    def label(self) -> str:
        return f"{self.name} {self.config_name}" if self.config_name else self.name


_FINEWEB_EDU_CARD = (
    "the HuggingFaceFW/fineweb-edu dataset card: 'a subset randomly sampled from the whole dataset of around {} gpt2 "
    "tokens'"
)
_PYTHIA_README = "the EleutherAI/pythia README"

PUBLISHED: tuple[PublishedCorpus, ...] = (
    PublishedCorpus(
        "OpenWebText",
        "Skylion007/openwebtext",
        None,
        9_040_017_095,
        "gpt2",
        True,
        "nanoGPT's data/openwebtext/readme.md (prepare.py, tiktoken gpt2, one <|endoftext|> per document): "
        "9,035,582,198 train + 4,434,897 val tokens from 8,013,769 documents",
    ),
    *(
        PublishedCorpus(
            "FineWeb-Edu",
            "HuggingFaceFW/fineweb-edu",
            f"sample-{n}BT",
            n * 10**9,
            "gpt2",
            False,
            _FINEWEB_EDU_CARD.format(f"{n}B"),
        )
        for n in (10, 100, 350)
    ),
    PublishedCorpus(
        "The Pile",
        "EleutherAI/pile",
        None,
        300 * 10**9,
        "EleutherAI/gpt-neox-20b",
        False,
        f"{_PYTHIA_README}: Pythia's 299,892,736,000 tokens are 'just under 1 epoch on the Pile'",
    ),
    PublishedCorpus(
        "The Pile (deduplicated)",
        "EleutherAI/the_pile_deduplicated",
        None,
        207 * 10**9,
        "EleutherAI/gpt-neox-20b",
        False,
        f"{_PYTHIA_README}: 'the deduped Pile (which contains 207B tokens in 1 epoch)'",
    ),
)

# tokenizer vocabularies known without loading the tokenizer (the model's vocabulary is this, padded)
TOKENIZER_VOCAB = {
    # GPT-2 (Radford et al. 2019, Sec. 2.2): "The vocabulary is expanded to 50,257"
    "gpt2": 50_257,
    # GPT-NeoX-20B's tokenizer.json, as Pythia and Parc use it (padded to 50,304 at data.pad_vocab_multiple=128)
    "EleutherAI/gpt-neox-20b": 50_277,
}
TOKENIZER_ALIASES = {"openai-community/gpt2": "gpt2"}


def _tokenizer_name(spec: str) -> str:
    return TOKENIZER_ALIASES.get(spec, spec)


def published_corpus(cfg: DataConfig) -> PublishedCorpus | None:
    """The table's row for ``cfg``'s corpus (a Hugging Face dataset with one of the names above), or None."""
    if str(cfg.source) != "hf":
        return None
    for row in PUBLISHED:
        if cfg.dataset == row.dataset and (cfg.config_name or None) == row.config_name:
            return row
    return None


def tokenizer_vocab(cfg: DataConfig) -> int | None:
    """The model's vocabulary before the data is prepared: ``data.vocab_size`` (a trained tokenizer's, padded to
    ``data.pad_vocab_multiple``; a pretrained one's as given), a known tokenizer's, or the tokenizer's own from the
    local cache. None when none of these says (a pretrained tokenizer that is not in the cache)."""
    if cfg.tokenizer == TRAIN:
        return padded_vocab_size(int(cfg.vocab_size), cfg.pad_vocab_multiple) if cfg.vocab_size else None
    if cfg.vocab_size:
        return int(cfg.vocab_size)
    known = TOKENIZER_VOCAB.get(_tokenizer_name(str(cfg.tokenizer)))
    if known is None:
        try:
            known = load_pretrained(str(cfg.tokenizer), cfg.eos_token).tokenizer.get_vocab_size()
        except DataError:
            return None
    return padded_vocab_size(known, cfg.pad_vocab_multiple)


def published_availability(cfg: DataConfig) -> Availability | None:
    """What ``plan`` knows of ``cfg``'s data without a copy of it: the published size (training share, by
    ``data.val_fraction``) and the vocabulary; None when the corpus is not in the table or the vocabulary unknown."""
    row = published_corpus(cfg)
    vocab = tokenizer_vocab(cfg)
    if row is None or vocab is None:
        return None
    same_tokenizer = cfg.tokenizer != TRAIN and _tokenizer_name(str(cfg.tokenizer)) == row.tokenizer
    counted = f"{row.tokens:,} {row.tokenizer} tokens"
    if not same_tokenizer:
        counted += f", approximate for data.tokenizer={cfg.tokenizer} (no count is published for it)"
    elif not row.exact:
        counted += ", approximate (a rounded figure)"
    note = f"{row.label()}: {counted}; source: {row.source}"
    tokens = int(row.tokens * (1 - cfg.val_fraction))
    return Availability(tokens, vocab, True, row.label(), published=note)
