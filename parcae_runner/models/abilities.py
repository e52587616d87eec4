"""Optional abilities a model may have, as protocols: callers ask ``isinstance(model, SampledDepth)`` instead of
probing attribute names, so an ability has one declared shape that type checkers and readers can find."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class SampledDepth(Protocol):
    """A model that runs some blocks a drawn number of times (a looped core), its depth drawn per step."""

    def set_depth_context(self, seed: int, step: int, rank: int, peers: Sequence[int] = ()) -> None:
        """Re-seed the depth draws from (model seed, optimizer step, slice of the global batch), so a resumed run,
        and a run on another number of ranks, draws the same depths; ``peers``: the other ranks' slices of the same
        micro step, whose deepest draw the loop runs to (every rank runs the same number of iterations)."""
        ...

    def validation_depths(self) -> list[int]:
        """The fixed depths validation also reports (``val/loss@R4``, ...)."""
        ...


@runtime_checkable
class SenseVectors(Protocol):
    """A Backpack-style model: each token has ``k`` sense vectors, read out through the token embedding."""

    embed: nn.Embedding

    def sense_vectors(self, input_ids: Tensor) -> Tensor:
        """``[B, T]`` token ids -> sense vectors ``[B, k, T, d]``."""
        ...


@runtime_checkable
class OwnFlopCount(Protocol):
    """A model whose training FLOPs per token are not ``6 N`` + attention (recurrent mixers, looped cores)."""

    def flops_per_token(self, seq_len: int) -> float:
        """Forward + backward FLOPs of one training token at context ``seq_len``."""
        ...
