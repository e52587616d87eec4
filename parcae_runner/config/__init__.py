"""Configuration: typed schemas, composition from launch_configs/, validation."""

from parcae_runner.config.compose import GROUPS, compose_run_config, config_dir, group_options
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
