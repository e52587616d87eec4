"""Naming the preset to compose: by name (``parc-pythia``) or by file (``launch_configs/parc-pythia.yaml``)."""

from __future__ import annotations

import os
from pathlib import Path

from parcae_runner.config.compose import CONFIG_DIR_ENV, config_dir
from parcae_runner.config.errors import ConfigError


def resolve_config_arg(value: str) -> str:
    """A preset given by name (``parc-pythia``) or by file (``launch_configs/parc-pythia.yaml``).

    A file outside the default tree makes its folder the config tree (it must hold config.yaml)."""
    if not (value.endswith(".yaml") or "/" in value):
        return value
    path = Path(value).resolve()
    if not path.is_file():
        raise ConfigError("CONFIG", value, "no such preset file (e.g. launch_configs/parc-pythia.yaml)")
    if not (path.parent / "config.yaml").is_file():
        raise ConfigError("CONFIG", value, "a preset must sit in a config tree beside its config.yaml")
    if path.parent != config_dir():
        os.environ[CONFIG_DIR_ENV] = str(path.parent)
    return path.stem
