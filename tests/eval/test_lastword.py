"""The offline LAMBADA-style task: held-out passages whose last word occurs earlier in them."""

from __future__ import annotations

from parcae_runner.config.schema import DataConfig
from parcae_runner.data import load_documents
from parcae_runner.data.prepare import split_documents
from parcae_runner.eval.lastword import MIN_CONTEXT_WORDS, held_out_documents, lastword_examples, task_dataset


def test_examples_come_from_held_out_documents_and_need_their_context():
    held_out = held_out_documents()
    train_docs, val_docs = split_documents(load_documents(DataConfig()), DataConfig().val_fraction)
    assert held_out == val_docs
    examples = lastword_examples(held_out, max_examples=10_000)
    assert len(examples) >= 100  # about 220 on CPython 3.11
    train_text = "\n".join(train_docs)
    for ex in examples:
        *context, target = ex["text"].split(" ")
        assert len(context) >= MIN_CONTEXT_WORDS
        assert target.isalpha() and len(target) >= 3
        assert target.lower() in {w.strip(".,;:!?()[]{}\"'`").lower() for w in context}
    # passages are cut from validation documents only (a passage may of course quote a common phrase,
    # so check the long ones)
    long = [ex["text"] for ex in examples if len(ex["text"]) > 400]
    assert long and not any(text in train_text for text in long)


def test_examples_are_deterministic_and_capped():
    docs = held_out_documents()
    assert lastword_examples(docs, 50) == lastword_examples(docs, 50)
    assert len(lastword_examples(docs, 7)) == 7
    dataset = task_dataset(max_examples=5, version=1.0)["test"]
    assert dataset.num_rows == 5 and dataset.column_names == ["text"]


def test_a_paragraph_of_code_gives_no_examples():
    code = "    for item in items:\n        total = total + item.value if item.value else total.\n" * 20
    prose = (
        "The parser reads a file and returns a tree. Each node of the tree keeps its children in order, "
        "and the walker visits every node of the tree."
    )
    assert lastword_examples([code]) == []
    assert lastword_examples([prose]) == [{"text": prose.rstrip(".").rsplit(" tree", 1)[0] + " tree"}]
