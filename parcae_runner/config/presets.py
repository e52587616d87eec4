"""Where the config tree is, and naming the preset to compose: by name (``parc-pythia``) or by file
(``launch_configs/parc-pythia.yaml``). No Hydra here: the CLI imports this at start."""

from __future__ import annotations

import os
from pathlib import Path

from parcae_runner.config.errors import ConfigError

CONFIG_DIR_ENV = "PARCAE_CONFIG_DIR"


def config_dir() -> Path:
    """The Hydra config tree: ``$PARCAE_CONFIG_DIR``, else the repository's ``launch_configs/``,
    else ``./launch_configs`` (an installed package run from a checkout)."""
    env = os.environ.get(CONFIG_DIR_ENV)
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "launch_configs", Path.cwd() / "launch_configs"]
    for c in candidates:
        if (c / "config.yaml").is_file():
            return c.resolve()
    raise ConfigError(CONFIG_DIR_ENV, env, "no launch_configs/config.yaml found; set PARCAE_CONFIG_DIR")


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
