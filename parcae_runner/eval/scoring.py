"""Validation loss and bits per byte over token chunks: the one definition, in training and in ``eval``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from parcae_runner.data import TokenChunks


@torch.no_grad()
def score_chunks(
    model: nn.Module,
    dataset: TokenChunks,
    indices: list[int],
    batch_size: int,
    token_bytes: torch.Tensor,
    forward_kwargs: dict | None = None,
    min_batches: int = 0,
) -> torch.Tensor:
    """``[nats, tokens, bytes]`` (float64, on ``token_bytes``' device) summed over the chunks ``indices``
    of ``dataset``: the one definition of validation loss and bits per byte, in training and in ``eval``.

    ``min_batches``: run at least this many forwards, the extra ones on the first chunk and not counted; a sharded
    model (FSDP) needs every rank to run as many forwards as the others, each being collective."""
    device = token_bytes.device
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    for start in range(0, len(indices), batch_size):
        xs, ys = zip(*(dataset[i] for i in indices[start : start + batch_size]), strict=True)
        x, y = torch.stack(xs).to(device), torch.stack(ys).to(device)
        logits = model(x, **(forward_kwargs or {}))
        nats = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1), reduction="sum")
        count = torch.tensor(y.numel(), device=device).double()
        totals += torch.stack([nats.double(), count, token_bytes[y].sum()])
    for _ in range(min_batches - math.ceil(len(indices) / batch_size)):
        model(dataset[0][0][None].to(device), **(forward_kwargs or {}))
    return totals


def loss_and_bpb(totals: torch.Tensor) -> dict[str, float]:
    """``val/loss`` (nats/token), ``val/bpb`` and ``val/tokens`` from :func:`score_chunks`' sums."""
    nats, tokens, nbytes = totals.tolist()
    if tokens == 0:
        return {}
    return {"val/loss": nats / tokens, "val/bpb": nats / (math.log(2) * nbytes), "val/tokens": tokens}
