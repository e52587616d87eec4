import dataclasses

import pytest
from torch import nn

from parcae_runner.models import ARCHITECTURES, Architecture, build_model, count_parameters, register
from parcae_runner.models.registry import UnknownArchitecture, UnknownSize, get_architecture, import_extra_architectures


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


def test_extra_architectures_are_imported_from_the_environment(monkeypatch, tmp_path):
    (tmp_path / "extra_arch_plugin.py").write_text(
        "import dataclasses\n"
        "from torch import nn\n"
        "from parcae_runner.models import Architecture, register\n"
        "@dataclasses.dataclass\n"
        "class HP:\n"
        "    name: str = 'plugin'\n"
        "class Model(nn.Linear):\n"
        "    def __init__(self, hparams, dims, vocab_size):\n"
        "        super().__init__(dims['d'], vocab_size)\n"
        "register(Architecture('plugin', HP, {'debug': {'d': 4}}, Model))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("parcae_runner.models.registry.ARCHITECTURES", dict(ARCHITECTURES))
    monkeypatch.setenv("PARCAE_EXTRA_ARCHS", " extra_arch_plugin , ")
    assert import_extra_architectures() == ["extra_arch_plugin"]
    assert get_architecture("plugin").sizes == {"debug": {"d": 4}}
    monkeypatch.delenv("PARCAE_EXTRA_ARCHS")
    assert import_extra_architectures() == []


def test_hf_mapping_and_model_type_go_together(monkeypatch):
    monkeypatch.setattr("parcae_runner.models.registry.ARCHITECTURES", dict(ARCHITECTURES))
    with pytest.raises(TypeError, match="hf and hf_model_type together"):
        register(Architecture("toy", _ToyHParams, {"s": {"d": 4}}, _Toy, hf_model_type="toy"))


def test_citations_and_hf_mappings_are_on_the_specs():
    stock = {"pythia", "mamba", "rwkv4", "gpt2", "llama", "mistral", "bloom"}
    assert {n for n, a in ARCHITECTURES.items() if a.hf is not None} == stock
    assert "biderman2023pythia" in ARCHITECTURES["pythia"].citation
    assert ARCHITECTURES["parcae_baseline"].citation is None


def test_register_rejects_a_description_that_is_not_text(monkeypatch):
    monkeypatch.setattr("parcae_runner.models.registry.ARCHITECTURES", dict(ARCHITECTURES))
    with pytest.raises(TypeError, match="description must be a string, not tuple"):
        register(Architecture("toy", _ToyHParams, {"s": {"d": 4}}, _Toy, description=("a one-tuple",)))
    assert all(isinstance(arch.description, str) and arch.description for arch in ARCHITECTURES.values())
