"""Data-layer benchmark: tokenisation throughput against ``datasets.map``, memory of ``prepare`` as the corpus grows,
loader throughput at sequence length 2,048, and the sample order's cost for a 10^11-token corpus.

    python bench/data.py --out bench/out/data.json [--small-mb 100 --large-mb 1000 --peer-mb 200]

The corpus is synthetic but text-like: sentences of the embedded corpus (Python's own documentation) drawn with a
fixed seed into documents of 1-40 sentences, written as JSON lines. One tokenizer (a 32,768-token byte-level BPE
trained on the embedded corpus) serves both sides of the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_report  # noqa: E402

CORES = os.cpu_count() or 1


def _sentences() -> list[str]:
    from parcae_runner.data import embedded_documents

    out = []
    for doc in embedded_documents():
        out.extend(s.strip() + "." for s in doc.replace("\n", " ").split(". ") if len(s.strip()) > 20)
    return out


def write_corpus(path: Path, megabytes: float, seed: int = 0) -> int:
    """JSON lines of synthetic documents until ``megabytes`` of text; returns the number of documents."""
    sentences, rng = _sentences(), random.Random(seed)
    target, written, docs = megabytes * 1e6, 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            text = " ".join(rng.choice(sentences) for _ in range(rng.randint(1, 40)))
            f.write(json.dumps({"text": text}) + "\n")
            written += len(text.encode("utf-8"))
            docs += 1
    return docs


def _prepare_in_child(corpus: Path, tokenizer: Path, cache: Path) -> dict:
    """``prepare`` in a fresh process: its wall time and its own peak RSS (not this benchmark's)."""
    code = (
        "import json, resource, sys, time\n"
        "from parcae_runner.config.schema import DataConfig\n"
        "from parcae_runner.data import prepare_data\n"
        "t = time.perf_counter()\n"
        f"d = prepare_data(DataConfig(source='jsonl', path={str(corpus)!r}, tokenizer={str(tokenizer)!r}, "
        f"vocab_size=None, val_fraction=0.001, cache_dir={str(cache)!r}), progress=False)\n"
        "s = time.perf_counter() - t\n"
        "print(json.dumps({'seconds': s, 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
        " 'tokens': d.train.tokens + d.val.tokens, 'dir': str(d.dir)}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def peer_map(corpus: Path, tokenizer: Path, cache: Path) -> dict:
    """``datasets``: load the JSON lines (Arrow conversion), then ``map(batched=True, num_proc=cores)``."""
    import datasets
    from tokenizers import Tokenizer

    datasets.disable_progress_bars()
    t = time.perf_counter()
    ds = datasets.load_dataset("json", data_files=str(corpus), split="train", cache_dir=str(cache))
    loaded = time.perf_counter() - t

    def tokenize(batch: dict) -> dict:
        tok = Tokenizer.from_file(str(tokenizer))
        return {"ids": [e.ids for e in tok.encode_batch_fast(batch["text"], add_special_tokens=False)]}

    t = time.perf_counter()
    out = ds.map(tokenize, batched=True, num_proc=CORES, remove_columns=["text"])
    mapped = time.perf_counter() - t
    tokens = sum(len(x) for x in out.with_format("numpy")["ids"])
    return {"load_s": loaded, "map_s": mapped, "tokens": int(tokens)}


def loader_throughput(prepared: str, seq_len: int = 2048, micro_batch: int = 8, steps: int = 200) -> dict:
    """Batches through the training path (TokenChunks, StepSampler, DataLoader) in one process."""
    from torch.utils.data import DataLoader

    from parcae_runner.data import StepSampler, TokenChunks, load_prepared

    data = load_prepared(prepared)
    ds = TokenChunks(data.train, seq_len)
    sampler = StepSampler(len(ds), 1234, micro_batch, 4, 1, 0, 0, steps)
    loader = DataLoader(ds, batch_size=micro_batch, sampler=sampler)
    t = time.perf_counter()
    tokens = sum(x.numel() for x, _ in loader)
    seconds = time.perf_counter() - t
    return {"seq_len": seq_len, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def sampler_cost(tokens: int = 10**11, seq_len: int = 2048, batch: int = 512, steps: int = 2000) -> dict:
    """Time and traced memory per optimizer step of the sample order at ``tokens`` tokens."""
    from parcae_runner.data import sample_order

    chunks = tokens // seq_len
    tracemalloc.start()
    t = time.perf_counter()
    for step in range(10**6, 10**6 + steps):
        sample_order(1234, chunks, step * batch, batch)
    seconds = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "corpus_tokens": tokens,
        "chunks": chunks,
        "batch": batch,
        "ms_per_step": seconds / steps * 1e3,
        "peak_traced_mb": peak / 1e6,
    }


def tokenize_part(root: Path, tokenizer: Path, megabytes: float) -> dict:
    corpus = root / "peer.jsonl"
    docs = write_corpus(corpus, megabytes)
    ours = _prepare_in_child(corpus, tokenizer, root / "cache-peer")
    peer = peer_map(corpus, tokenizer, root / "hf-cache")
    corpus.unlink()
    out = {
        "corpus_mb": megabytes,
        "corpus_docs": docs,
        "ours_prepare_s": ours["seconds"],
        "ours_tokens": ours["tokens"],
        "ours_mb_per_s": megabytes / ours["seconds"],
        "peer": peer,
        "peer_mb_per_s_map_only": megabytes / peer["map_s"],
        "ratio_vs_map_only": peer["map_s"] / ours["seconds"],
        "ratio_vs_load_and_map": (peer["load_s"] + peer["map_s"]) / ours["seconds"],
    }
    print(
        f"tokenise {megabytes:.0f} MB: ours {ours['seconds']:.1f}s, datasets.map {peer['map_s']:.1f}s "
        f"(+{peer['load_s']:.1f}s load), ratio {out['ratio_vs_map_only']:.2f}",
        flush=True,
    )
    return out


def memory_part(root: Path, tokenizer: Path, sizes: dict[str, float]) -> dict:
    memory: dict = {}
    for label, mb in sizes.items():
        corpus = root / f"{label}.jsonl"
        write_corpus(corpus, mb, seed=1)
        memory[label] = {"input_mb": mb, **_prepare_in_child(corpus, tokenizer, root / f"cache-{label}")}
        print(f"prepare {mb:.0f} MB: {memory[label]['seconds']:.1f}s, peak RSS {memory[label]['peak_rss_mb']:.0f} MB")
        corpus.unlink()
    memory["rss_ratio_large_over_small"] = memory["large"]["peak_rss_mb"] / memory["small"]["peak_rss_mb"]
    return memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/data.json"))
    parser.add_argument("--peer-mb", type=float, default=200)
    parser.add_argument("--small-mb", type=float, default=100)
    parser.add_argument("--large-mb", type=float, default=1000)
    parser.add_argument("--parts", default="tokenize,memory,loader,sampler", help="comma-separated subset to run")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    from parcae_runner.data import embedded_documents, train_tokenizer

    report: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": CORES}}
    with tempfile.TemporaryDirectory(prefix="parcae-bench-data-") as tmp:
        root = Path(tmp)
        tokenizer = root / "tokenizer.json"
        train_tokenizer(embedded_documents(), 32768).save(str(tokenizer))
        if "tokenize" in parts:
            report["tokenize"] = tokenize_part(root, tokenizer, args.peer_mb)
        prepared = None
        if "memory" in parts:
            report["prepare_memory"] = memory_part(root, tokenizer, {"small": args.small_mb, "large": args.large_mb})
            prepared = report["prepare_memory"]["large"]["dir"]
        if "loader" in parts:
            if prepared is None:  # enough windows for the loader's 200 steps of 32 x 2,049 tokens
                prepared = memory_part(root, tokenizer, {"small": 60, "large": 80})["large"]["dir"]
            report["loader"] = loader_throughput(prepared)
            print(f"loader: {report['loader']['tokens_per_s'] / 1e6:.1f} M tokens/s at seq 2048", flush=True)
    if "sampler" in parts:
        report["sampler"] = sampler_cost()
        s = report["sampler"]
        print(f"sampler at 1e11 tokens: {s['ms_per_step']:.3f} ms/step, {s['peak_traced_mb']:.2f} MB")
    report["targets"] = {
        "tokenize_ratio_vs_map_only": ">= 1.0",
        "rss_ratio_large_over_small": "<= 1.2",
        "loader_tokens_per_s": ">= 5e6",
        "sampler_ms_per_step": "<= 1",
        "sampler_peak_traced_mb": "<= 100",
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
