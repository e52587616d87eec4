"""Configuration: typed schemas, composition from launch_configs/, validation."""

from typing import TYPE_CHECKING, Any

from parcae_runner.config.errors import ConfigError, ConfigErrors
from parcae_runner.config.schema import (
    CheckpointConfig,
    ClusterConfig,
    DataConfig,
    LoggerConfig,
    RunConfig,
    SizeConfig,
    TrainConfig,
)

if TYPE_CHECKING:
    from parcae_runner.config.compose import GROUPS, compose_run_config, config_dir, group_options

# composition pulls in Hydra (about 60 ms): loaded on first use, so that importing ConfigError (every
# command's error path) or the schemas stays cheap
_COMPOSE = ("GROUPS", "compose_run_config", "config_dir", "group_options")


def __getattr__(name: str) -> Any:
    if name in _COMPOSE:
        from parcae_runner.config import compose

        return getattr(compose, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GROUPS",
    "CheckpointConfig",
    "ClusterConfig",
    "ConfigError",
    "ConfigErrors",
    "DataConfig",
    "LoggerConfig",
    "RunConfig",
    "SizeConfig",
    "TrainConfig",
    "compose_run_config",
    "config_dir",
    "group_options",
]
