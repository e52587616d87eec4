"""Every shipped YAML composes and validates; bad overrides become ConfigErrors naming the key."""

import pytest

from parcae_runner.config import GROUPS, ConfigError, compose_run_config, config_dir, group_options
from parcae_runner.config.validate import validate_run_config
from parcae_runner.models import ARCHITECTURES


def test_every_group_option_composes():
    for group in GROUPS:
        assert group_options(group), f"launch_configs/{group}/ is empty"
        for option in group_options(group):
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
            cfg = compose_run_config(overrides)
            if group != "size":
                validate_run_config(cfg)


def test_every_size_of_every_architecture_validates():
    for name, arch in ARCHITECTURES.items():
        for size in arch.sizes:
            validate_run_config(compose_run_config([f"arch={name}", f"size={size}"]))


def test_every_size_file_is_a_known_size():
    known = set().union(*(a.sizes for a in ARCHITECTURES.values()))
    assert set(group_options("size")) <= known


def test_every_preset_composes():
    for preset in sorted(p.stem for p in config_dir().glob("*.yaml")):
        validate_run_config(compose_run_config([], config_name=preset))


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
