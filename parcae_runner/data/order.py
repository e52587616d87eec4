"""The one sample order every run shares: a keyed permutation of the chunks per epoch, in O(1) memory.

Global sample ``g`` is chunk ``permute(g % num_chunks)`` of epoch ``e = g // num_chunks``, where ``permute`` is a
bijection of ``[0, num_chunks)`` keyed by ``(data_seed, e)``. So two architectures with the same data seed see the
same sequences in the same steps, the model seed never moves the data, and resuming at step ``k`` needs only ``k``.

The bijection is a balanced Feistel network over the smallest even-bit domain ``2**(2h) >= num_chunks`` with
``FEISTEL_ROUNDS`` rounds (a splitmix64 round function keyed by ``(data_seed, epoch, round)``), restricted to
``[0, num_chunks)`` by cycle walking: an index that lands outside is encrypted again until it lands inside, which is
still a bijection of the smaller range (Black & Rogaway, "Ciphers with arbitrary finite domains", 2002). It needs no
table: a whole permutation of a 10^11-token corpus (about 5·10^7 chunks of 2,048) would take 400 MB per process and
seconds per epoch to draw; this takes a few keys and microseconds per step (``bench/data.py`` measures it). Because
the domain is at most 4x the range, an index walks about 4 times at worst on average.
"""

from __future__ import annotations

import functools

import numpy as np

# four rounds of a pseudorandom function make a strong pseudorandom permutation (Luby & Rackoff 1988)
FEISTEL_ROUNDS = 4
_M64 = (1 << 64) - 1
# splitmix64 (Steele, Lea & Flood 2014): the finaliser of java.util.SplittableRandom, a strong 64-bit mixer
_GAMMA = 0x9E3779B97F4A7C15
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


def _mix_scalar(x: int) -> int:
    x = (x + _GAMMA) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


_G = np.uint64(_GAMMA)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _mix(x: np.ndarray) -> np.ndarray:
    # uint64 array arithmetic wraps modulo 2**64, as the mixer wants; in place after the first copy (the hot loop)
    x = x + _G
    x ^= x >> _S30
    x *= _MUL1
    x ^= x >> _S27
    x *= _MUL2
    x ^= x >> _S31
    return x


@functools.lru_cache(maxsize=64)
def _round_keys(data_seed: int, epoch: int) -> tuple[int, ...]:
    key = _mix_scalar(_mix_scalar(data_seed) ^ epoch)
    keys = []
    for r in range(FEISTEL_ROUNDS):
        key = _mix_scalar(key ^ r)
        keys.append(key)
    return tuple(keys)


def _half_bits(num_chunks: int) -> int:
    return max(1, ((num_chunks - 1).bit_length() + 1) // 2)


def _encrypt(x: np.ndarray, keys: tuple[int, ...], half: int) -> np.ndarray:
    mask = np.uint64((1 << half) - 1)
    shift = np.uint64(half)
    left, right = x >> shift, x & mask
    for key in keys:
        left, right = right, left ^ (_mix(right ^ np.uint64(key)) & mask)
    return (left << shift) | right


def permute(data_seed: int, epoch: int, num_chunks: int, positions: np.ndarray) -> np.ndarray:
    """Chunk indices at ``positions`` (int64, each in ``[0, num_chunks)``) of epoch ``epoch``'s permutation."""
    keys = _round_keys(data_seed, epoch)
    half = _half_bits(num_chunks)
    out = _encrypt(positions.astype(np.uint64), keys, half)
    outside = out >= np.uint64(num_chunks)
    while outside.any():  # cycle walking: re-encrypt only what fell outside the range
        out[outside] = _encrypt(out[outside], keys, half)
        outside = out >= np.uint64(num_chunks)
    return out.astype(np.int64)


def sample_order(data_seed: int, num_chunks: int, start: int, count: int, shuffle: bool = True) -> np.ndarray:
    """Chunk indices of global samples ``start .. start+count-1``: int64, shape ``[count]``.

    Sample ``g`` is position ``g % num_chunks`` of epoch ``g // num_chunks``'s keyed permutation (see the module
    docstring); ``shuffle=False`` is the identity in every epoch (``data.order=sequential``: a corpus that is
    already in its training order, like Pythia's pre-shuffled Pile). Depends on nothing but its arguments.
    """
    if data_seed < 0:
        raise ValueError(f"data seed must be >= 0, got {data_seed}")
    if num_chunks < 1:
        raise ValueError(f"num_chunks must be >= 1, got {num_chunks} (is the token stream shorter than seq_len + 1?)")
    if start < 0 or count < 0:
        raise ValueError(f"start and count must be >= 0, got start={start}, count={count}")
    samples = np.arange(start, start + count, dtype=np.int64)
    epochs, positions = np.divmod(samples, num_chunks)
    if not shuffle:
        return positions
    if count and epochs[0] == epochs[-1]:  # the usual case: the whole step in one epoch
        return permute(data_seed, int(epochs[0]), num_chunks, positions)
    out = np.empty(count, dtype=np.int64)
    for epoch in np.unique(epochs).tolist():  # a step that spans an epoch boundary
        here = epochs == epoch
        out[here] = permute(data_seed, int(epoch), num_chunks, positions[here])
    return out
