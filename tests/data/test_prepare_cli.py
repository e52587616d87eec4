"""``parcae-runner prepare`` and ``plan`` on real corpora: resume after SIGKILL, bad input, epochs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from parcae_runner.cli import main
from parcae_runner.config import config_dir
from parcae_runner.data import embedded_documents, train_tokenizer
from parcae_runner.data.pretrained import padded_vocab_size

REPO = config_dir().parent


def _cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "parcae_runner.cli", "prepare", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the embedded text four times over, each copy made distinct: ~6 MB, a few seconds to prepare
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for copy in range(4):
            for doc in embedded_documents():
                f.write(json.dumps({"text": f"[copy {copy}] {doc}"}) + "\n")
    return path


@pytest.mark.slow
def test_sigkill_half_way_then_rerun_is_byte_identical(tmp_path: Path, big_corpus: Path) -> None:
    args = ["data=jsonl", f"data.path={big_corpus}", "data.vocab_size=2048", "data.docs_per_shard=200"]
    whole = _cli(*args, f"data.cache_dir={tmp_path / 'whole'}")
    assert whole.wait(timeout=600) == 0, whole.stderr.read() if whole.stderr else ""
    (done,) = [p for p in (tmp_path / "whole").iterdir() if p.is_dir()]
    shards = len(json.loads((done / "manifest.json").read_text())["shards"])
    assert shards == -(-4 * len(embedded_documents()) // 200) > 20

    killed_cache = tmp_path / "killed"
    victim = _cli(*args, f"data.cache_dir={killed_cache}")
    partial = killed_cache / (done.name + ".partial")
    deadline = time.monotonic() + 300
    while len(list(partial.glob("shard-*.json"))) < shards // 2 and victim.poll() is None:
        assert time.monotonic() < deadline, "preparation never reached half-way"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL
    committed = len(list(partial.glob("shard-*.json")))
    assert 0 < committed < shards and not (killed_cache / done.name).exists()

    rerun = _cli(*args, f"data.cache_dir={killed_cache}")
    assert rerun.wait(timeout=600) == 0
    assert not partial.exists()
    print(f"\nkilled after {committed}/{shards} shards; the rerun resumed and finished")
    assert _tree(killed_cache / done.name) == _tree(done)


def _expect_bad_input(capsys: pytest.CaptureFixture[str], watched: Path, *args: str) -> str:
    before = _tree(watched) if watched.exists() else {}
    assert main(["prepare", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("parcae-runner: error: ") and "Traceback" not in err
    assert (_tree(watched) if watched.exists() else {}) == before
    return err


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cache = tmp_path / "cache"
    docs = embedded_documents()[:50]
    tok = tmp_path / "tokenizer.json"
    train_tokenizer(docs, 1024).save(str(tok))
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    common = [f"data.cache_dir={cache}"]

    err = _expect_bad_input(capsys, tmp_path, "data=hf", "data.dataset=parcae-tests/absent-dataset", *common)
    assert "data.dataset='parcae-tests/absent-dataset'" in err and "data.download=true" in err

    shards = tmp_path / "parquet"
    shards.mkdir()
    pq.write_table(pa.table({"content": docs}), shards / "part-0.parquet")
    err = _expect_bad_input(capsys, tmp_path, "data=parquet", f"data.path={shards}", *common)
    assert "data.text_field='text' is not a column" in err and "content" in err

    not_tokenizer = tmp_path / "not_a_tokenizer.json"
    not_tokenizer.write_text('{"hello": "world"}')
    err = _expect_bad_input(capsys, tmp_path, "data=jsonl", f"data.path={jsonl}", f"data.tokenizer={not_tokenizer}")
    assert "is not a tokenizer.json" in err

    err = _expect_bad_input(
        capsys, tmp_path, "data=jsonl", f"data.path={jsonl}", f"data.tokenizer={tok}", "data.vocab_size=512", *common
    )
    assert "data.vocab_size=512 is smaller than the tokenizer's 1024 tokens" in err

    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "   "}) + "\n\n" + json.dumps({"text": ""}) + "\n")
    err = _expect_bad_input(capsys, tmp_path, "data=jsonl", f"data.path={empty}", *common)
    assert "holds no non-empty documents" in err

    prefix = tmp_path / "mega" / "corpus"
    prefix.parent.mkdir()
    _write_indexed(prefix, [np.arange(1, 40, dtype=np.uint16), np.arange(3, 9, dtype=np.uint16)])
    with open(prefix.with_suffix(".bin"), "r+b") as f:
        f.truncate(50)  # the .bin lost its tail: the .idx no longer matches it
    err = _expect_bad_input(
        capsys, tmp_path, "data=pretokenized", f"data.path={prefix}", f"data.tokenizer={tok}", *common
    )
    assert "does not match corpus.bin" in err


def _write_indexed(prefix: Path, docs: list[np.ndarray]) -> None:
    """A .bin/.idx pair written from the format's description (megatron/core/datasets/indexed_dataset.py)."""
    lengths = np.array([len(d) for d in docs], dtype=np.int32)
    pointers = np.concatenate([[0], np.cumsum(lengths[:-1].astype(np.int64) * 2)]).astype(np.int64)
    np.concatenate(docs).astype(np.uint16).tofile(prefix.with_suffix(".bin"))
    with open(prefix.with_suffix(".idx"), "wb") as f:
        f.write(b"MMIDIDX\x00\x00" + (1).to_bytes(8, "little") + bytes([8]))
        f.write(len(docs).to_bytes(8, "little") + (len(docs) + 1).to_bytes(8, "little"))
        f.write(lengths.tobytes() + pointers.tobytes() + np.arange(len(docs) + 1, dtype=np.int64).tobytes())


def test_plan_refuses_a_run_that_repeats_its_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preset = str(REPO / "launch_configs" / "parc-pythia.yaml")
    assert main(["plan", preset, "data=embedded", f"data.cache_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "run pythia-parc-s0 would repeat its data" in err and "times" in err and "data.max_epochs=4" in err
    epochs = float(err.split("repeat its data ")[1].split(" times")[0].replace(",", ""))
    assert 4_000 < epochs < 7_000
    # raising the ceiling lets it plan, with the epochs in the table and a warning
    assert main(["plan", preset, "data=embedded", f"data.cache_dir={tmp_path}", "data.max_epochs=1e6"]) == 0
    out, err = capsys.readouterr()
    header = next(line for line in out.splitlines() if line.startswith("run "))
    assert "epochs" in header.split() and f"{epochs:.3g}" in out
    assert "warning: run pythia-parc-s0 repeats its data" in err


def test_plan_prices_openwebtext_without_its_cache_and_says_how_to_fill_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No copy of the corpus here: plan prices the run on OpenWebText's published size, says so, and says how to
    get the data train needs; nothing is written."""
    assert main(["plan", str(REPO / "launch_configs" / "parc-pythia.yaml"), f"data.cache_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "not in this machine's cache, planned on its published size (OpenWebText: 9,040,017,095" in out
    assert "train needs the data itself (parcae-runner prepare ... data.download=true" in out
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_vocabulary_padding_follows_pythia() -> None:
    assert padded_vocab_size(50_277, 128) == 50_304  # GPT-NeoX-20B's tokenizer -> Pythia's embedding
    assert padded_vocab_size(32_768, 128) == 32_768
    assert padded_vocab_size(50_257, 8) == 50_264  # GPT-2's, padded to a multiple of 8 (the Backpack card)


def test_prepare_progress_and_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", f"data.cache_dir={tmp_path}", "data.vocab_size=512"]) == 0
    out, err = capsys.readouterr()
    folder = Path(out.strip())
    assert folder.parent == tmp_path and (folder / "manifest.json").is_file()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["source"] == "embedded" and manifest["val_rule"].startswith("blake2b-64")
    assert manifest["tokenizer_sha256"] and manifest["train"]["docs"] > 3000
    assert "preparing embedded" in err and "prepared" in err
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert tok.get_vocab_size() == manifest["vocab_size"] == 512


@pytest.mark.slow
def test_hub_name_is_read_from_the_hf_cache(tmp_path: Path) -> None:
    """A hub name resolves through huggingface_hub's cache layout under HF_HOME, with no network."""
    import os

    hf_home = tmp_path / "hf"
    snapshot = hf_home / "hub" / "models--parcae-tests--tiny-tokenizer" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    train_tokenizer(embedded_documents()[:200], 700).save(str(snapshot / "tokenizer.json"))
    (snapshot / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    args = [
        "prepare",
        "data.tokenizer=parcae-tests/tiny-tokenizer",
        "data.vocab_size=null",
        f"data.cache_dir={tmp_path}",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "parcae_runner.cli", *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((Path(result.stdout.strip().splitlines()[-1]) / "manifest.json").read_text())
    assert manifest["vocab_size"] == 700 and manifest["model_vocab_size"] == 768 and manifest["eos_id"] == 0
    # absent from that cache: exit 2 with the download command
    args[1] = "data.tokenizer=parcae-tests/absent-tokenizer"
    result = subprocess.run(
        [sys.executable, "-m", "parcae_runner.cli", *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2 and "hf download parcae-tests/absent-tokenizer" in result.stderr
