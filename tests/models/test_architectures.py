"""What every registered architecture must satisfy, one parametrised test per property.

A new architecture gets these for free by registering; its own test file keeps what is specific to it
(init recipe, HF parity, hyperparameter checks).
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
import torch.nn.functional as F

from parcae_runner.config import compose_run_config
from parcae_runner.config.validate import validate_run_config
from parcae_runner.models import ARCHITECTURES, build_model, count_parameters
from parcae_runner.models.registry import make_hparams

NAMES = sorted(ARCHITECTURES)

# The two parameter ladders. The Pythia ladder: an architecture that has Pythia's size names must match
# Pythia's TOTAL count at vocab 50304 within 10% (`debug` is tiny, `parc` is each study's published model).
LADDER_VOCAB, LADDER_TOLERANCE = 50304, 0.10
NOT_ON_LADDER = ("debug", "parc")
# Parcae's table (parcae_baseline, parcae): the size names are totals at Parcae's tokenizer's vocabulary, counting the
# tied embedding once and the value-embedding tables, within 15%.
NAMED_VOCAB, NAMED_TOLERANCE = 32768, 0.15


def _named_count(size: str) -> float | None:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([mb])", size)
    return float(match[1]) * {"m": 1e6, "b": 1e9}[match[2]] if match else None


def _ladder_cases() -> list[tuple[str, str]]:
    return [
        (name, size)
        for name in NAMES
        for size in ARCHITECTURES[name].sizes
        if size not in NOT_ON_LADDER and size not in ARCHITECTURES[name].published
    ]


# a paper's size table (GPT-2/3, LLaMA, Mistral, BLOOM): the published count at the published vocabulary
PUBLISHED_TOLERANCE = 0.02


def _total(arch_cfg: dict, size: str, vocab: int) -> int:
    with torch.device("meta"):
        return count_parameters(build_model(arch_cfg, size, vocab))


@pytest.mark.parametrize("name", NAMES)
def test_hparams_schema(name):
    fields = dataclasses.fields(ARCHITECTURES[name].hparams_cls)
    assert fields[0].name == "name" and fields[0].default == name
    ARCHITECTURES[name].hparams_cls()  # every field has a default


@pytest.mark.parametrize("name", NAMES)
def test_debug_size_exists_and_its_yaml_composes(name):
    assert "debug" in ARCHITECTURES[name].sizes
    cfg = compose_run_config([f"arch={name}", "size=debug"])
    validate_run_config(cfg)
    arch, hparams = make_hparams(dict(cfg.arch))
    assert arch is ARCHITECTURES[name] and hparams == ARCHITECTURES[name].hparams_cls()


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_and_eval_determinism(name, arch_config):
    torch.manual_seed(0)
    model = build_model(arch_config(name), "debug", 97).eval()
    tokens = torch.randint(0, 97, (3, 11))
    with torch.no_grad():
        a, b = model(tokens), model(tokens)
    assert a.shape == (3, 11, 97) and a.dtype == torch.float32 and torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_causal(name, arch_config, assert_causal):
    torch.manual_seed(0)
    model = build_model(arch_config(name), "debug", 101).eval()
    with torch.no_grad():  # zero-initialised projections would make blocks identities and hide a leak
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    assert_causal(model, 101)


@pytest.mark.parametrize("name", NAMES)
def test_loss_and_gradients_finite(name, arch_config):
    torch.manual_seed(0)
    model = build_model(arch_config(name), "debug", 97).train()
    tokens = torch.randint(0, 97, (2, 16))
    loss = F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(torch.log(torch.tensor(97.0)).item(), rel=0.5)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_meta_then_materialise(name, arch_config):
    """Built on meta (a forward there allocates nothing), ``to_empty`` + ``init_weights`` is a working model."""
    cfg = arch_config(name)
    with torch.device("meta"):
        model = build_model(cfg, "debug", 64)
        model(torch.zeros(1, 8, dtype=torch.long))
    if not hasattr(model, "init_weights"):
        pytest.skip(f"not applicable: {name} has no init_weights")
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    model.init_weights()
    if getattr(model.hparams, "tie_embeddings", False):
        assert model.lm_head.weight is model.embed.weight  # init_weights re-ties what to_empty untied
    ref = build_model(cfg, "debug", 64)
    ref.load_state_dict(model.state_dict())
    model.eval(), ref.eval()
    tokens = torch.randint(0, 64, (1, 8))
    torch.testing.assert_close(model(tokens), ref(tokens))


@pytest.mark.parametrize("name,size", [(n, s) for n in NAMES for s in ARCHITECTURES[n].sizes])
def test_every_size_builds_on_meta(name, size):
    with torch.device("meta"):
        model = build_model({"name": name}, size, LADDER_VOCAB)
    assert all(p.is_meta for p in model.parameters())
    assert count_parameters(model) > count_parameters(model, non_embedding=True) > 0


@pytest.mark.parametrize("name,size", _ladder_cases())
def test_size_matches_its_ladder(name, size):
    """On Pythia's ladder: within 10% of Pythia's total at vocab 50304; else (Parcae's table) within 15% of
    the total the size names at vocab 32768."""
    if size in ARCHITECTURES["pythia"].sizes:
        n = _total({"name": name}, size, LADDER_VOCAB)
        want, tolerance, what = _total({"name": "pythia"}, size, LADDER_VOCAB), LADDER_TOLERANCE, "pythia"
    else:
        want, tolerance, what = _named_count(size), NAMED_TOLERANCE, "its name"
        assert want is not None, f"{name} size {size!r} is on no ladder: name it like 140m or 1.3b"
        n = _total({"name": name}, size, NAMED_VOCAB)
    print(f"\n{name} {size}: {n:,} ({n / want - 1:+.1%} vs {what})")
    assert abs(n / want - 1) <= tolerance, f"{name} {size}: {n:,} vs {what} {want:,.0f}"


@pytest.mark.parametrize("name,size", [(n, s) for n in NAMES for s in ARCHITECTURES[n].published])
def test_size_matches_its_paper(name, size):
    published, vocab = ARCHITECTURES[name].published[size]
    n = _total({"name": name}, size, vocab)
    print(f"\n{name} {size}: {n:,} ({n / published - 1:+.2%} vs published {published:,.0f})")
    assert abs(n / published - 1) <= PUBLISHED_TOLERANCE
