"""Every shipped YAML and every registry option composes and validates; bad overrides become ConfigErrors naming
the key. One case per option, so the first failure does not hide the rest."""

import dataclasses

import pytest
from omegaconf import OmegaConf
from torch import nn

from parcae_runner.config import GROUPS, ConfigError, compose_run_config, config_dir, group_options
from parcae_runner.config.validate import validate_run_config
from parcae_runner.models import ARCHITECTURES, Architecture

OPTIONS = [(group, option) for group in GROUPS for option in group_options(group)]
ARCH_SIZES = [(name, size) for name, arch in ARCHITECTURES.items() for size in arch.sizes]
PRESETS = sorted(p.stem for p in config_dir().glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_has_options(group):
    assert group_options(group), f"the {group} group has no options"


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes(group, option):
    overrides = [f"{group}={option}"]
    # the options with a required value (???) get one, so the rest of the option is what is validated
    if group == "data" and option in ("text_files", "jsonl", "parquet", "pretokenized"):
        overrides.append(f"data.path={config_dir()}")
    if group == "data" and option == "hf":
        overrides.append("data.dataset=some/dataset")
    if group == "data" and option == "pretokenized":
        overrides.append("data.tokenizer=EleutherAI/gpt-neox-20b")
    if group == "cluster":
        # a profile's GPUs are its data-parallel ranks: the default batch of 16 must split over up to 8
        overrides.append("train.micro_batch_size=2")
    if group == "size":
        # a size is validated with an architecture that has it (the default, pythia, has not all)
        overrides.append("arch=" + next(name for name, arch in ARCHITECTURES.items() if option in arch.sizes))
    cfg = compose_run_config(overrides)
    if group == "size":
        assert OmegaConf.to_container(cfg.size) == {"name": option}
    validate_run_config(cfg)


@pytest.mark.parametrize(("arch", "size"), ARCH_SIZES, ids=[f"{a}-{s}" for a, s in ARCH_SIZES])
def test_every_size_of_every_architecture_validates(arch, size):
    validate_run_config(compose_run_config([f"arch={arch}", f"size={size}"]))


def test_sizes_are_the_registry_s_with_no_yaml():
    assert not list(config_dir().glob("size/*.yaml"))
    assert set(group_options("size")) == set().union(*(a.sizes for a in ARCHITECTURES.values()))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes(preset):
    validate_run_config(compose_run_config([], config_name=preset))


@dataclasses.dataclass
class _NoYamlHParams:
    name: str = "noyaml"
    width_factor: int = 3


class _NoYaml(nn.Module):
    def __init__(self, hparams, dims, vocab_size):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dims["d_model"])
        self.lm_head = nn.Linear(dims["d_model"], vocab_size, bias=False)


def test_an_architecture_without_yaml_composes(monkeypatch):
    monkeypatch.setattr("parcae_runner.models.registry.ARCHITECTURES", dict(ARCHITECTURES))
    from parcae_runner.models.registry import register

    register(Architecture("noyaml", _NoYamlHParams, {"debug": {"d_model": 8}, "tiny": {"d_model": 4}}, _NoYaml))
    assert not (config_dir() / "arch" / "noyaml.yaml").exists()
    assert "noyaml" in group_options("arch") and "tiny" in group_options("size")
    cfg = compose_run_config(["arch=noyaml", "size=tiny", "arch.width_factor=5", "size.d_model=6"])
    assert OmegaConf.to_container(cfg.arch) == {"name": "noyaml", "width_factor": 5}
    assert OmegaConf.to_container(cfg.size) == {"name": "tiny", "d_model": 6}
    validate_run_config(cfg)


@pytest.mark.parametrize(
    ("override", "key", "hint"),
    [
        ("arch=foo", "arch", "choose one of: " + ", ".join(group_options("arch"))),
        ("size=13b", "size", "choose one of"),
        ("foo=bar", "foo", "not a config group or key"),
        ("train.max_stepz=3", "train.max_stepz", "allowed keys of train: max_steps"),
        ("arch.rotary_pt=0.3", "arch.rotary_pt", "allowed keys of arch"),
        ("train.max_steps=abc", "train.max_steps", "wrong type"),
    ],
)
def test_bad_override_names_key_and_allowed(override, key, hint):
    with pytest.raises(ConfigError) as err:
        compose_run_config([override])
    assert err.value.key == key
    assert hint in str(err.value)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset"):
        compose_run_config([], config_name="no-such-preset")
