"""TokenChunks, the global sample order and the per-rank step sampler."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from parcae_runner.data import StepSampler, TokenChunks, sample_order, validation_indices


def test_token_chunks_are_shifted_pairs() -> None:
    tokens = np.arange(1000, dtype=np.uint16)
    ds = TokenChunks(tokens, seq_len=16)
    assert len(ds) == 999 // 16
    x, y = ds[3]
    assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (16,)
    assert x.tolist() == list(range(48, 64))
    assert y.tolist() == list(range(49, 65))
    # the last chunk reads its final target from the stream's last usable token
    x, y = ds[len(ds) - 1]
    assert y[-1].item() == len(ds) * 16
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert len(TokenChunks(np.arange(16, dtype=np.uint16), 16)) == 0
    assert len(TokenChunks(np.arange(17, dtype=np.uint16), 16)) == 1


def test_token_chunks_pickle_a_memmap_by_path(tmp_path: Path) -> None:
    path = tmp_path / "tokens.bin"
    np.arange(100_000, dtype=np.uint16).tofile(path)
    ds = TokenChunks(np.memmap(path, dtype=np.uint16, mode="r"), seq_len=64)
    blob = pickle.dumps(ds)
    assert len(blob) < 2_000
    copy = pickle.loads(blob)
    assert isinstance(copy.tokens, np.memmap) and isinstance(copy.shards[0], np.memmap)
    assert all(torch.equal(a, b) for a, b in zip(copy[7], ds[7], strict=True))
    # a slice of a memmap is sent as data: reopening it by path would read the wrong tokens
    part = TokenChunks(np.memmap(path, dtype=np.uint16, mode="r")[10:500], seq_len=64)
    assert torch.equal(pickle.loads(pickle.dumps(part))[0][0], part[0][0])


def test_sample_order_is_a_permutation_per_epoch() -> None:
    n = 37
    epoch0 = sample_order(7, n, 0, n)
    epoch1 = sample_order(7, n, n, n)
    assert epoch0.dtype == np.int64
    assert sorted(epoch0.tolist()) == list(range(n)) == sorted(epoch1.tolist())
    assert not np.array_equal(epoch0, epoch1)
    # any window is the same slice of the concatenated epochs, across the boundary included
    whole = np.concatenate([epoch0, epoch1, sample_order(7, n, 2 * n, n)])
    assert np.array_equal(sample_order(7, n, 30, 50), whole[30:80])
    assert np.array_equal(sample_order(7, n, 5, 0), np.empty(0, dtype=np.int64))
    # the documented recipe, spelled out in plain Python integers
    assert epoch1.tolist() == [_feistel_reference(7, 1, n, i) for i in range(n)]
    assert sample_order(7, n, n, n, shuffle=False).tolist() == list(range(n))


M64 = (1 << 64) - 1


def _splitmix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def _feistel_reference(seed: int, epoch: int, n: int, i: int) -> int:
    """order.py's docstring as a loop: 4 Feistel rounds over 2h bits, splitmix64 round function, cycle walking."""
    key = _splitmix(_splitmix(seed) ^ epoch)
    keys = []
    for r in range(4):
        key = _splitmix(key ^ r)
        keys.append(key)
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    mask = (1 << half) - 1
    x = i
    while True:
        left, right = x >> half, x & mask
        for k in keys:
            left, right = right, left ^ (_splitmix(right ^ k) & mask)
        x = (left << half) | right
        if x < n:
            return x


def test_sample_order_scales_to_a_1e11_token_corpus() -> None:
    # about 4.9e7 windows of 2,048 tokens: one step's samples are drawn without any table of the corpus
    n = 10**11 // 2048
    step = sample_order(3, n, 10**9, 512)
    assert step.min() >= 0 and step.max() < n and len(set(step.tolist())) == 512
    assert step.tolist()[:4] == [_feistel_reference(3, 10**9 // n, n, (10**9 + i) % n) for i in range(4)]


def test_token_chunks_over_shards_never_cross_a_shard() -> None:
    shards = [np.arange(0, 50, dtype=np.uint16), np.arange(100, 109, dtype=np.uint16), np.arange(200, 233)]
    ds = TokenChunks(shards, seq_len=8)
    # 49 // 8 = 6 windows, 8 // 8 = 1, 32 // 8 = 4
    assert len(ds) == 11
    assert ds[5][1].tolist() == list(range(41, 49))
    assert ds[6][0].tolist() == list(range(100, 108)) and ds[6][1].tolist() == list(range(101, 109))
    assert ds[7][0].tolist() == list(range(200, 208))
    # disjoint windows of seq_len + 1 (GPT-NeoX samples): 50 // 9 = 5, 9 // 9 = 1, 33 // 9 = 3
    disjoint = TokenChunks(shards, seq_len=8, overlap=False)
    assert len(disjoint) == 9
    assert disjoint[1][0].tolist() == list(range(9, 17)) and disjoint[5][1].tolist() == list(range(101, 109))


def test_different_data_seed_gives_a_different_order() -> None:
    assert not np.array_equal(sample_order(1, 1000, 0, 1000), sample_order(2, 1000, 0, 1000))
    a = list(StepSampler(1000, 1, 4, 2, 1, 0, 0, 10))
    b = list(StepSampler(1000, 2, 4, 2, 1, 0, 0, 10))
    assert a != b


def _steps(sampler: StepSampler) -> list[list[int]]:
    """The sampler's indices grouped per optimizer step."""
    indices = list(sampler)
    per_step = sampler.accumulate * sampler.micro_batch_size
    return [indices[i : i + per_step] for i in range(0, len(indices), per_step)]


def test_step_sampler_resume_is_the_exact_tail() -> None:
    full = list(StepSampler(50, 3, 4, 3, 2, 1, 0, 20))
    assert len(full) == len(StepSampler(50, 3, 4, 3, 2, 1, 0, 20)) == 20 * 3 * 4
    for k in (0, 1, 4, 7, 19, 20):
        resumed = list(StepSampler(50, 3, 4, 3, 2, 1, k, 20))
        assert resumed == full[k * 3 * 4 :]


def test_ranks_together_cover_the_single_device_step() -> None:
    # 30 chunks, 8 samples a step: steps cross epoch boundaries too
    single = _steps(StepSampler(30, 5, 4, 2, 1, 0, 0, 12))
    rank0 = _steps(StepSampler(30, 5, 2, 2, 2, 0, 0, 12))
    rank1 = _steps(StepSampler(30, 5, 2, 2, 2, 1, 0, 12))
    also = _steps(StepSampler(30, 5, 4, 1, 2, 0, 0, 12)), _steps(StepSampler(30, 5, 4, 1, 2, 1, 0, 12))
    for s in range(12):
        assert sorted(rank0[s] + rank1[s]) == sorted(single[s])
        assert sorted(also[0][s] + also[1][s]) == sorted(single[s])
        assert sorted(single[s]) == sorted(sample_order(5, 30, s * 8, 8).tolist())
    # the layout: micro-batch a of rank r is slice [a*B/accumulate + r*mbs, ... + mbs) of the step
    step3 = sample_order(5, 30, 3 * 8, 8).tolist()
    assert rank1[3] == step3[2:4] + step3[6:8]


def test_order_ignores_the_global_rngs() -> None:
    def batches(torch_seed: int) -> list[list[int]]:
        torch.manual_seed(torch_seed)
        np.random.seed(torch_seed)
        ds = TokenChunks(np.arange(5000, dtype=np.uint16), seq_len=10)
        loader = DataLoader(ds, batch_size=4, sampler=StepSampler(len(ds), 11, 4, 2, 1, 0, 3, 9))
        return [x[:, 0].tolist() for x, _ in loader]

    first = batches(0)
    assert len(first) == (9 - 3) * 2 and all(len(b) == 4 for b in first)
    assert batches(1) == first == batches(12345)


def test_step_sampler_validates_arguments() -> None:
    with pytest.raises(ValueError, match="rank"):
        StepSampler(10, 0, 2, 1, 2, 2, 0, 5)
    with pytest.raises(ValueError, match="start_step"):
        StepSampler(10, 0, 2, 1, 1, 0, 6, 5)
    with pytest.raises(ValueError, match="num_chunks"):
        sample_order(0, 0, 0, 5)


def test_validation_indices() -> None:
    assert validation_indices(100, 8) == list(range(8))
    assert validation_indices(5, 8) == list(range(5))
    assert validation_indices(0, 8) == []
