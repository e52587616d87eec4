"""Parcae's depth draws in training: how many times a batch's sequences run the looped core, drawn from a generator
seeded per (seed, optimizer step, slice of the global batch), so a resumed run and a run on another number of ranks
draw the same depths for the same samples. A mixin of :class:`parcae_runner.models.parcae.model.ParcaeModel`, which
owns ``hparams`` and ``_depth_generator``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from parcae_runner.models.parcae.hparams import depth_seed


class DepthDraws:
    hparams: Any
    _depth_generator: torch.Generator
    _peer_seeds: list[int]

    def set_depth_context(self, seed: int, step: int, rank: int, peers: Sequence[int] = ()) -> None:
        """Re-seed the depth sampler; the trainer calls this before every training micro batch.

        ``rank`` is the micro batch's slice of the global batch (micro-batch index x world size + rank), so the
        draws of a sample do not depend on how many ranks share the batch. The next training forward draws (in
        order) its depths and its like-init noise seed from a CPU generator seeded with :func:`depth_seed`
        ``(seed, step, rank)``; a run resumed at ``step`` repeats them exactly. ``peers``: every slice of the same
        micro step on the other ranks; the loop then runs to the deepest of all their draws (a sequence that is
        done is frozen, so its result is the same), and every rank runs the core the same number of times, as
        sharded training (FSDP) needs: each run of a sharded block is a collective.
        """
        self._depth_generator.manual_seed(depth_seed(seed, step, rank))
        self._peer_seeds = [depth_seed(seed, step, p) for p in peers if p != rank]

    def sample_depth(self, generator: torch.Generator | None = None) -> tuple[int, int]:
        """Draw ``(T, k)``: ``T = max(1, Poisson(mean_recurrence))``, ``k = min(T, mean_backprop_depth)``."""
        rate = torch.tensor(float(self.hparams.mean_recurrence), device="cpu")  # even under a meta default device
        num_steps = max(1, int(torch.poisson(rate, generator=generator or self._depth_generator).item()))
        return num_steps, min(num_steps, self.hparams.mean_backprop_depth)

    def sample_depths(self, batch: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Per-sequence draws ``(T [batch], k [batch])`` int64 on the CPU, same law as :meth:`sample_depth`."""
        rate = torch.full((batch,), float(self.hparams.mean_recurrence), device="cpu")
        steps = torch.poisson(rate, generator=generator or self._depth_generator).long().clamp_min(1)
        return steps, steps.clamp(max=self.hparams.mean_backprop_depth)

    def peer_depth(self, batch: int) -> tuple[int, int]:
        """``(max T, max k)`` over the peers' draws of this micro step (``(0, 0)`` without peers): what each of
        them draws first from its own generator, as :meth:`forward` does."""
        deepest = (0, 0)
        for seed in self._peer_seeds:
            generator = torch.Generator(device="cpu")
            generator.manual_seed(seed)
            if self.hparams.depth_sampling == "per-sequence":
                steps, grads = self.sample_depths(batch, generator)
                drawn = (int(steps.max()), int(grads.max()))
            else:
                drawn = self.sample_depth(generator)
            deepest = (max(deepest[0], drawn[0]), max(deepest[1], drawn[1]))
        return deepest
