import dataclasses

import pytest
import torch
from torch import nn

from parcae_runner.models import (
    ARCHITECTURES,
    Architecture,
    UnknownArchitecture,
    UnknownSize,
    build_model,
    count_parameters,
    get_architecture,
    register,
)

ARCH_SIZES = [(name, size) for name, arch in ARCHITECTURES.items() for size in arch.sizes]


def test_pythia_is_registered():
    assert "pythia" in ARCHITECTURES
    assert get_architecture("pythia").name == "pythia"


def test_unknown_architecture_names_value_and_allowed():
    with pytest.raises(UnknownArchitecture) as err:
        get_architecture("pythai")
    assert isinstance(err.value, KeyError)
    msg = str(err.value)
    assert "'pythai'" in msg and "arch.name" in msg
    for name in ARCHITECTURES:
        assert name in msg
    with pytest.raises(UnknownArchitecture):
        build_model({"name": "pythai"}, "debug", 128)


def test_unknown_size_names_key_value_and_sizes():
    with pytest.raises(UnknownSize) as err:
        build_model({"name": "pythia"}, "7b", 128)
    assert isinstance(err.value, KeyError)
    msg = str(err.value)
    assert "size" in msg and "'7b'" in msg and "pythia" in msg
    for size in ARCHITECTURES["pythia"].sizes:
        assert size in msg


def test_unknown_hparam_names_key_and_allowed():
    with pytest.raises(ValueError) as err:
        build_model({"name": "pythia", "rotary_pc": 0.5}, "debug", 128)
    msg = str(err.value)
    assert "arch.rotary_pc" in msg
    for field in dataclasses.fields(ARCHITECTURES["pythia"].hparams_cls):
        assert field.name in msg


def test_missing_name():
    with pytest.raises(ValueError, match="arch.name"):
        build_model({"rotary_pct": 0.5}, "debug", 128)


def test_hparams_reach_the_model():
    hp_cls = ARCHITECTURES["pythia"].hparams_cls
    from_mapping = build_model({"name": "pythia", "rotary_pct": 0.5}, "debug", 128)
    from_dataclass = build_model(hp_cls(rotary_pct=0.5), "debug", 128)
    for model in (from_mapping, from_dataclass):
        assert model.hparams.rotary_pct == 0.5
        assert model.rotary.dim == 8  # head_dim 16 * 0.5


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_hparams_schema(name):
    fields = dataclasses.fields(ARCHITECTURES[name].hparams_cls)
    assert fields[0].name == "name" and fields[0].default == name
    ARCHITECTURES[name].hparams_cls()  # every field has a default


@pytest.mark.parametrize("name,size", ARCH_SIZES)
def test_every_size_builds_on_meta(name, size):
    with torch.device("meta"):
        model = build_model({"name": name}, size, 50304)
    assert all(p.is_meta for p in model.parameters())
    assert count_parameters(model) > count_parameters(model, non_embedding=True) > 0


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_debug_forward_shape(name):
    torch.manual_seed(0)
    model = build_model({"name": name}, "debug", 97)
    logits = model(torch.randint(0, 97, (2, 11)))
    assert logits.shape == (2, 11, 97)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


@dataclasses.dataclass
class _ToyHParams:
    name: str = "toy"


class _Toy(nn.Module):
    def __init__(self, hparams, dims, vocab_size):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dims["d"])
        self.body = nn.Linear(dims["d"], dims["d"])
        self.lm_head = nn.Linear(dims["d"], vocab_size, bias=False)


def test_register_and_count(monkeypatch):
    monkeypatch.setattr("parcae_runner.models.registry.ARCHITECTURES", dict(ARCHITECTURES))
    register(Architecture("toy", _ToyHParams, {"s": {"d": 4}}, _Toy))
    model = build_model({"name": "toy"}, "s", 10)
    assert count_parameters(model) == 10 * 4 + 4 * 4 + 4 + 4 * 10
    assert count_parameters(model, non_embedding=True) == 4 * 4 + 4
    model.lm_head.weight = model.embed.weight  # tied: counted once
    assert count_parameters(model) == 10 * 4 + 4 * 4 + 4


def test_register_rejects_bad_hparams(monkeypatch):
    monkeypatch.setattr("parcae_runner.models.registry.ARCHITECTURES", dict(ARCHITECTURES))
    with pytest.raises(TypeError, match="first hparams field"):
        register(Architecture("other", _ToyHParams, {"s": {"d": 4}}, _Toy))
    with pytest.raises(ValueError, match="already registered"):
        register(Architecture("pythia", ARCHITECTURES["pythia"].hparams_cls, {"s": {"d": 4}}, _Toy))
