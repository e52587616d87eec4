"""The model zoo against the stock transformers classes: GPT2LMHeadModel, LlamaForCausalLM, MistralForCausalLM,
BloomForCausalLM load what we export and compute the same logits (fp32, < 1e-4), random and trained weights, at
``debug`` and a ladder size; importing the folder back gives our model exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from parcae_runner.models import build_model

transformers = pytest.importorskip("transformers")

from parcae_runner.export.hf import export_hf  # noqa: E402
from parcae_runner.models.hf import load_hf  # noqa: E402

VOCAB = 384
STOCK = {
    "gpt2": "GPT2LMHeadModel",
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "bloom": "BloomForCausalLM",
}
# a window shorter than the test sequences, so that the window is part of what is compared
OPTIONS = {"mistral": {"sliding_window": 7}}


def _random(name: str, size: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model({"name": name, **OPTIONS.get(name, {})}, size, VOCAB)
    with torch.no_grad():
        for p in model.parameters():
            p.add_((0.1 if p.ndim < 2 else 0.02) * torch.randn_like(p))
    return model.eval()


def _trained(name: str, size: str, steps: int = 3) -> torch.nn.Module:
    """A few AdamW steps on random tokens: weights no initialiser would produce."""
    torch.manual_seed(1)
    model = build_model({"name": name, **OPTIONS.get(name, {})}, size, VOCAB).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        tokens = torch.randint(0, VOCAB, (2, 17))
        loss = F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("weights", ["random", "trained"])
# 14m (trained, or just built) takes seconds a model on a CPU: slow; debug keeps the check in the quick run
@pytest.mark.parametrize("size", ["debug", pytest.param("14m", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", sorted(STOCK))
def test_stock_class_matches_and_imports_back(name, size, weights, tmp_path):
    model = _random(name, size) if weights == "random" else _trained(name, size)
    export_hf(model, tmp_path, max_position_embeddings=64) if name in ("llama", "mistral") else export_hf(
        model, tmp_path
    )
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert type(hf).__name__ == STOCK[name]
    tokens = torch.randint(0, VOCAB, (2, 19))
    with torch.no_grad():
        ours, theirs = model(tokens), hf(tokens).logits
        back = load_hf(tmp_path).eval()(tokens)
    assert (ours - theirs).abs().max().item() < 1e-4
    torch.testing.assert_close(back, ours, rtol=0, atol=0)


def test_generate_runs_on_a_stock_export(tmp_path):
    export_hf(_random("llama", "debug"), tmp_path, max_position_embeddings=64)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    out = hf.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 8)


@pytest.mark.parametrize(
    "name,options,needs",
    [
        ("gpt2", {"position": "rope"}, "position"),
        ("bloom", {"mlp": "swiglu"}, "mlp"),
        ("llama", {"norm": "layernorm"}, "norm"),
    ],
)
def test_a_block_the_stock_class_cannot_express_is_refused(name, options, needs, tmp_path):
    model = build_model({"name": name, **options}, "debug", VOCAB)
    with pytest.raises(ValueError, match=f"arch.{needs}=.*cannot express"):
        export_hf(model, tmp_path)
