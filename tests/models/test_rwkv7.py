"""rwkv7: init recipe details, and logit parity with BlinkDL's ``rwkv`` package through the ``.pth`` export."""

from __future__ import annotations

import importlib
import os
import sys

import pytest
import torch
import torch.nn.functional as F

from parcae_runner.models import build_model, count_parameters
from parcae_runner.models.rwkv7.blinkdl import init_from_pth, load_pth, save_pth, to_blinkdl_state_dict
from parcae_runner.models.rwkv7.model import RWKV7HParams, RWKV7Model, lora_rank

REF = {"name": "rwkv7", "kernel_impl": "reference"}
# the package is built for head size 64 (its CUDA kernel's _N_; the CPU path reads it from att.r_k)
PARITY_DIMS = {"n_layers": 2, "d_model": 128, "head_size": 64}
PARITY_VOCAB = 300


def rwkv_package_model_class():
    """``rwkv.model.RWKV`` as RWKV-7: RWKV_V7_ON=1 must be set when the module is first executed, and
    RWKV_CUDA_ON=0 keeps it off its CUDA extension (RWKV_JIT_ON is irrelevant for x070: it always scripts)."""
    pytest.importorskip("rwkv")
    os.environ["RWKV_V7_ON"] = "1"
    os.environ["RWKV_CUDA_ON"] = "0"
    module = sys.modules.get("rwkv.model")
    module = importlib.reload(module) if module is not None else importlib.import_module("rwkv.model")
    assert module.RWKV is module.RWKV_x070
    return module.RWKV


def test_lora_ranks_follow_blinkdl() -> None:
    # rwkv7-g1 0.1B (C = 768): w1/a1 64, v1 32, g1 128
    assert (lora_rank(1.8, 768), lora_rank(1.3, 768), lora_rank(0.6, 768, 0.8)) == (64, 32, 128)


def test_init_is_identity_blocks_and_value_residual_only_after_layer_0() -> None:
    model = build_model(REF, "debug", 97)
    assert not hasattr(model.blocks[0].att, "v0") and hasattr(model.blocks[1].att, "v0")
    # output and ffn.value start at zero (BlinkDL): every block adds nothing
    assert all((b.att.output.weight == 0).all() and (b.ffn.value.weight == 0).all() for b in model.blocks)
    decay_floor = torch.exp(-torch.exp(torch.tensor(-0.5)))
    w = model.blocks[0].att.w0
    decay = torch.exp(-torch.exp(-F.softplus(-w) - 0.5))
    assert (decay > decay_floor).all() and (decay < 1).all()
    assert count_parameters(model) > 0


def test_no_weight_decay_lists_everything_but_linear_weights() -> None:
    model = build_model(REF, "debug", 97)
    names = model.no_weight_decay()
    assert "blocks.0.att.w1" in names and "blocks.1.att.v0" in names and "blocks.0.ffn.x_k" in names
    assert not any(n.endswith(".weight") for n in names)


def _random_model() -> RWKV7Model:
    torch.manual_seed(0)
    model = RWKV7Model(RWKV7HParams(kernel_impl="reference"), PARITY_DIMS, PARITY_VOCAB)
    with torch.no_grad():  # the init's zero projections would make the blocks identities and hide mistakes
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _trained_model() -> RWKV7Model:
    torch.manual_seed(1)
    model = RWKV7Model(RWKV7HParams(kernel_impl="reference"), PARITY_DIMS, PARITY_VOCAB)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    tokens = torch.randint(0, PARITY_VOCAB, (4, 17))
    for _ in range(4):
        loss = F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (model.blocks[0].att.output.weight != 0).any()
    return model


@pytest.mark.parametrize("make", [_random_model, _trained_model], ids=["random", "trained"])
def test_logits_match_the_rwkv_package(make, tmp_path) -> None:
    package_rwkv = rwkv_package_model_class()
    model = make().eval()
    path = save_pth(model, tmp_path / "rwkv7-test")
    tokens = torch.randint(0, PARITY_VOCAB, (23,), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = model(tokens[None])[0]  # [T, V]
    theirs, _ = package_rwkv(model=str(path)[: -len(".pth")], strategy="cpu fp32").forward(
        tokens.tolist(), None, full_output=True
    )
    assert theirs.shape == ours.shape
    diff = (theirs.float() - ours).abs().max().item()
    print(f"\nmax |logit difference| = {diff:.2e} (logits up to {ours.abs().max().item():.2f})")
    assert diff < 1e-4


def test_pth_round_trip_and_init_from(tmp_path) -> None:
    model = _trained_model()
    path = save_pth(model, tmp_path / "m.pth")
    state = torch.load(path, weights_only=True)
    assert "blocks.0.ln0.weight" in state and "emb.weight" in state and "head.weight" in state
    assert state["blocks.0.att.r_k"].shape == (2, 64)
    loaded = load_pth(path)
    tokens = torch.randint(0, PARITY_VOCAB, (2, 9))
    torch.testing.assert_close(loaded.eval()(tokens), model.eval()(tokens), rtol=0, atol=0)
    fresh = RWKV7Model(RWKV7HParams(kernel_impl="reference"), PARITY_DIMS, PARITY_VOCAB)
    init_from_pth(fresh, path)
    torch.testing.assert_close(fresh.eval()(tokens), model(tokens), rtol=0, atol=0)
    other = RWKV7Model(RWKV7HParams(), {**PARITY_DIMS, "n_layers": 3}, PARITY_VOCAB)
    with pytest.raises(ValueError, match="holds dims"):
        init_from_pth(other, path)


def test_export_refuses_other_norm_eps() -> None:
    model = RWKV7Model(RWKV7HParams(norm_eps=1e-6), {"n_layers": 1, "d_model": 32, "head_size": 16}, 50)
    with pytest.raises(ValueError, match="norm_eps"):
        to_blinkdl_state_dict(model)
