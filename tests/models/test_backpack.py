"""Backpack LM: the output is the sense-weighted sum the paper defines, and the sizes match their sources."""

from __future__ import annotations

import pytest
import torch

from parcae_runner.models import build_model, count_parameters
from parcae_runner.models.backpack.sizes import CARD_PARAMS, CARD_VOCAB


def test_output_is_the_explicit_double_sum_over_senses_and_positions():
    """o_i = sum_l sum_{j<=i} alpha_{l,i,j} C(x_j)_l / k, logits = E o_i, written as loops."""
    torch.manual_seed(0)
    model = build_model({"name": "backpack"}, "debug", 53).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tokens = torch.randint(0, 53, (2, 7))
    with torch.no_grad():
        logits = model(tokens)
        senses = model.sense_vectors(tokens)  # [B, k, T, d]
        alpha = model.contextualization(tokens)  # [B, k, T, T]
    k, d = model.dims["n_senses"], model.dims["d_model"]
    for b in range(2):
        for i in range(7):
            o = torch.zeros(d)
            for sense in range(k):
                for j in range(i + 1):
                    o += alpha[b, sense, i, j] * senses[b, sense, j]
            o /= k
            torch.testing.assert_close(logits[b, i], model.embed.weight @ o, rtol=1e-5, atol=1e-5)
    # causal weights: rows sum to one and never look ahead
    torch.testing.assert_close(alpha.sum(-1), torch.ones(2, k, 7))
    assert alpha.triu(1).abs().max() == 0


def test_senses_are_context_free():
    model = build_model({"name": "backpack"}, "debug", 53).eval()
    a, b = torch.tensor([[5, 6, 7]]), torch.tensor([[9, 6, 1]])
    with torch.no_grad():
        torch.testing.assert_close(model.sense_vectors(a)[:, :, 1], model.sense_vectors(b)[:, :, 1])


def test_1_4b_matches_the_levanter_card():
    """1.42B as the card counts it (the checkpoint also stores the token and position tables a second time)."""
    with torch.device("meta"):
        model = build_model({"name": "backpack"}, "1.4b", CARD_VOCAB)
    unique = count_parameters(model)
    as_card = unique + model.embed.weight.numel() + model.pos_embed.weight.numel()
    print(f"\nbackpack 1.4b: {unique:,} unique, {as_card:,} as the card counts")
    assert abs(as_card / CARD_PARAMS - 1) <= 0.01
    assert model.dims["n_senses"] == 48 and model.hparams.max_positions == 512


@pytest.mark.parametrize("size,senses,layers", [("small", 16, 12), ("1.4b", 48, 36)])
def test_named_sizes(size, senses, layers):
    with torch.device("meta"):
        model = build_model({"name": "backpack"}, size, CARD_VOCAB)
    assert (model.dims["n_senses"], len(model.blocks)) == (senses, layers)
