"""The published corpus sizes (data/published.py) that ``plan`` prices a study on before the data is fetched: every
preset's corpus has a row with its source, a count in another tokenizer than the run's is marked approximate, and
the vocabulary comes without loading the tokenizer."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from parcae_runner.config import compose_run_config
from parcae_runner.config.presets import config_dir
from parcae_runner.data.published import PUBLISHED, published_availability, published_corpus, tokenizer_vocab


def data_config(*overrides: str, preset: str = "config"):
    return OmegaConf.to_object(compose_run_config(list(overrides), config_name=preset).data)


def test_every_row_names_its_source_and_tokenizer():
    assert len({(r.dataset, r.config_name) for r in PUBLISHED}) == len(PUBLISHED)
    for row in PUBLISHED:
        assert row.tokens > 10**9 and row.tokenizer and row.source, row


def test_the_presets_corpora_are_in_the_table():
    hf_presets = [p.stem for p in config_dir().glob("*.yaml") if "data: openwebtext" in p.read_text()]
    assert hf_presets, "a preset trains on OpenWebText"
    for preset in hf_presets:
        assert published_corpus(data_config(preset=preset)).name == "OpenWebText"
    for sample in ("sample-10BT", "sample-100BT", "sample-350BT"):
        row = published_corpus(data_config("data=fineweb_edu", f"data.config_name={sample}"))
        assert row is not None and row.tokens == int(sample.removeprefix("sample-").removesuffix("BT")) * 10**9
    assert published_corpus(data_config("data=hf", "data.dataset=EleutherAI/pile")).name == "The Pile"
    assert published_corpus(data_config("data=hf", "data.dataset=someone/else")) is None
    assert published_corpus(data_config()) is None  # the embedded corpus is here already


def test_openwebtext_in_gpt2_tokens_is_nanogpts_count():
    cfg = data_config("data=openwebtext", "data.tokenizer=gpt2", "data.val_fraction=0")
    found = published_availability(cfg)
    assert found is not None and found.estimate
    assert found.tokens == 9_035_582_198 + 4_434_897
    assert "approximate" not in found.published and "8,013,769 documents" in found.published
    # GPT-2's 50,257 padded to data.pad_vocab_multiple=128, without loading the tokenizer
    assert found.model_vocab_size == 50_304


@pytest.mark.parametrize(
    ("overrides", "approximate"),
    [
        (["data=openwebtext"], "approximate for data.tokenizer=EleutherAI/gpt-neox-20b"),  # Parc's tokenizer
        (["data=fineweb_edu"], "approximate for data.tokenizer=train"),  # Parcae's own BPE
        (["data=fineweb_edu", "data.tokenizer=gpt2", "data.vocab_size=null"], "approximate (a rounded figure)"),
    ],
)
def test_a_count_in_another_tokenizer_or_a_rounded_one_is_approximate(overrides, approximate):
    found = published_availability(data_config(*overrides))
    assert found is not None and approximate in found.published


def test_the_vocabulary_is_known_without_the_tokenizer():
    assert tokenizer_vocab(data_config("data=openwebtext")) == 50_304  # GPT-NeoX-20B's 50,277, padded
    assert tokenizer_vocab(data_config("data=fineweb_edu")) == 32_768  # a trained tokenizer: data.vocab_size
    assert tokenizer_vocab(data_config("data=openwebtext", "data.tokenizer=no-org/no-such-tokenizer")) is None
