"""Compose a run config from ``launch_configs/`` and command-line overrides.

Hydra's compose API is used (not ``@hydra.main``) so that every failure becomes a
:class:`ConfigError` naming the key, the value and what is allowed, and the CLI can
exit with code 2 before anything runs.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, ValidationError

from parcae_runner.config.errors import ConfigError
from parcae_runner.config.presets import config_dir
from parcae_runner.config.schema import RunConfig
from parcae_runner.config.store import register_configs, size_names

GROUPS = ("arch", "size", "data", "train", "cluster", "logger")


def group_options(group: str) -> list[str]:
    """The option names of a config group: the YAML files in ``launch_configs/<group>/`` (of the tree in use), and
    what the registry provides: every architecture (``arch``), every size of every architecture (``size``)."""
    from parcae_runner.models import registry

    options = {p.stem for p in (config_dir() / group).glob("*.yaml")}
    if group == "arch":
        options |= set(registry.ARCHITECTURES)
    elif group == "size":
        options |= set(size_names())
    return sorted(options)


def _arch_without_yaml(overrides: list[str], cdir: Path) -> list[str]:
    """``arch=<name>`` of a registered architecture with no ``launch_configs/arch/<name>.yaml`` becomes its schema
    node ``arch=<name>_schema`` (the hyperparameters' defaults, ``name: <name>``): a new architecture needs no YAML.

    Why not store ``arch/<name>`` in the ConfigStore: beside a YAML of that name, Hydra would take the stored node
    as the YAML's schema (its deprecated automatic schema matching), and which architectures have a YAML depends on
    the config tree in use, which can change within a process."""
    from parcae_runner.models import registry

    out = []
    for ov in overrides:
        key, sep, value = ov.partition("=")
        registered = sep and key == "arch" and value in registry.ARCHITECTURES
        if registered and not (cdir / "arch" / f"{value}.yaml").is_file():
            ov = f"arch={value}_schema"
        out.append(ov)
    return out


def _check_size(cfg: DictConfig) -> None:
    """Refuse a size override that is not one of the architecture's dims, not a positive integer, or leaves heads
    that do not split ``d_model``, before a model is built from it (a ``max_flops`` budget builds one)."""
    from parcae_runner.config.validate import size_errors

    errors = size_errors(cfg)
    if errors:
        raise errors[0]


def _check_group_overrides(overrides: list[str]) -> None:
    # Hydra's own message for a missing option lists schema nodes too; name only real options.
    for ov in overrides:
        key, sep, value = ov.partition("=")
        key = key.lstrip("+~")
        if sep and key in GROUPS and value not in group_options(key):
            raise ConfigError(key, value, f"unknown {key}; choose one of: {', '.join(group_options(key))}")


def _parent_keys(full_key: str) -> list[str]:
    """The keys allowed next to ``full_key`` in the schema, for an error message."""
    node: Any = RunConfig
    for part in full_key.split(".")[:-1]:
        field = {f.name: f for f in fields(node)}.get(part)
        node = field.default_factory() if field is not None and callable(field.default_factory) else None
        if node is None or not is_dataclass(node):
            return []
    return [f.name for f in fields(node)]


def _default_children(parent: str) -> list[str]:
    """Keys under ``parent`` in the default config (arch keys depend on the architecture's schema)."""
    try:
        node = OmegaConf.select(compose_run_config([]), parent)
    except ConfigError:
        return []
    return [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []


def _as_config_error(exc: BaseException, overrides: list[str]) -> ConfigError:
    cause = exc
    unknown_key = (ConfigKeyError, ConfigAttributeError)
    while cause.__cause__ is not None and not isinstance(cause, (*unknown_key, ValidationError)):
        cause = cause.__cause__
    if isinstance(cause, unknown_key):
        key = getattr(cause, "full_key", None) or "?"
        value = next((o.partition("=")[2] for o in overrides if o.lstrip("+~").startswith(key + "=")), "?")
        parent = key.rpartition(".")[0]
        if not parent:
            return ConfigError(
                key,
                value,
                f"not a config group or key; groups: {', '.join(GROUPS)} (`parcae-runner show` lists all keys)",
            )
        allowed = _parent_keys(key) or _default_children(parent)
        hint = f"allowed keys of {parent}: {', '.join(allowed)}" if allowed else "no such key"
        return ConfigError(key, value, f"unknown config key; {hint}")
    if isinstance(cause, ValidationError):
        key = getattr(cause, "full_key", None) or "?"
        value = next((o.partition("=")[2] for o in overrides if o.startswith(key + "=")), "?")
        return ConfigError(key, value, f"wrong type: {str(cause.msg).splitlines()[0]}")
    text = str(exc).splitlines()[0]
    if "Could not override" in text or "Could not append" in text:
        bad = text.split("'")[1] if "'" in text else "?"
        value = next((o.partition("=")[2] for o in overrides if o.lstrip("+~").startswith(bad + "=")), "?")
        parent = bad.rpartition(".")[0]
        siblings = _default_children(parent) if parent else None
        if siblings:
            return ConfigError(bad, value, f"unknown config key; allowed keys of {parent}: {', '.join(siblings)}")
        return ConfigError(
            bad, value, f"not a config group or key; groups: {', '.join(GROUPS)} (`parcae-runner show` lists all keys)"
        )
    return ConfigError("overrides", " ".join(overrides), text)


def _is_group_override(override: str) -> bool:
    key = override.partition("=")[0]
    return key.startswith(("+", "~")) or key.lstrip("+~") in GROUPS or "@" in key


def compose_many(override_lists: list[list[str]], config_name: str = "config") -> list[DictConfig]:
    """Compose many configs fast: Hydra composes once per distinct choice of config groups
    (~70 ms each) and the remaining ``key=value`` overrides are applied with Hydra's own
    override parser onto a copy of that typed config, so types and keys are checked the same way.
    """
    parser = OverridesParser.create()
    bases: dict[tuple[str, ...], DictConfig] = {}
    out = []
    for overrides in override_lists:
        group_part = tuple(o for o in overrides if _is_group_override(o))
        value_part = [o for o in overrides if not _is_group_override(o)]
        if group_part not in bases:
            # the profile's resources are applied below, after the values: cluster.nodes=2 must reach train.num_nodes
            bases[group_part] = compose_run_config(list(group_part), config_name=config_name, resources=False)
        cfg = bases[group_part].copy()
        try:
            for parsed in parser.parse_overrides(value_part):
                OmegaConf.update(cfg, parsed.key_or_group, parsed.value(), merge=False)
            OmegaConf.resolve(cfg)  # overrides may hold interpolations (${ceil_div:...})
        except OverrideParseException as exc:
            raise ConfigError("overrides", " ".join(overrides), str(exc).splitlines()[0]) from None
        except (ConfigKeyError, ConfigAttributeError, ValidationError) as exc:
            raise _as_config_error(exc, overrides) from None
        _check_size(cfg)
        _apply_budget(cfg)
        _apply_cluster_resources(cfg)
        out.append(cfg)
    return out


def compose_run_config(
    overrides: list[str] | None = None, config_name: str = "config", resources: bool = True
) -> DictConfig:
    """Compose and resolve the run config. Raises :class:`ConfigError` on any bad input. ``resources=False`` leaves
    ``train.devices``/``num_nodes``/``accelerator`` as configured, for a caller that applies more overrides first."""
    overrides = list(overrides or [])
    register_configs()
    _check_group_overrides(overrides)
    cdir = config_dir()
    if not (cdir / f"{config_name}.yaml").is_file():
        presets = sorted(p.stem for p in cdir.glob("*.yaml"))
        raise ConfigError("config", config_name, f"unknown preset; choose one of: {', '.join(presets)}")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(cdir), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=_arch_without_yaml(overrides, cdir))
    except OverrideParseException as exc:
        raise ConfigError("overrides", " ".join(overrides), str(exc).splitlines()[0]) from None
    except MissingConfigException as exc:
        raise ConfigError("config", config_name, str(exc).splitlines()[0]) from None
    except (ConfigCompositionException, ConfigKeyError, ValidationError) as exc:
        raise _as_config_error(exc, overrides) from None
    finally:
        GlobalHydra.instance().clear()
    try:
        OmegaConf.resolve(cfg)
        missing = sorted(OmegaConf.missing_keys(cfg))
    except MissingMandatoryValue as exc:
        missing = [getattr(exc, "full_key", "?")]
    if missing:
        raise ConfigError(missing[0], "???", "a value is required (pass it as an override)")
    _check_size(cfg)
    _apply_budget(cfg)
    if resources:
        _apply_cluster_resources(cfg)
    return cfg


def _apply_cluster_resources(cfg: DictConfig) -> None:
    """Lightning's ranks are a Slurm job's tasks: ``train.num_nodes`` becomes the profile's nodes and
    ``train.devices`` ``auto`` its tasks per node (one per GPU, or ``cluster.tasks_per_node`` on CPU nodes). A
    profile with GPUs trains on them: ``train.accelerator`` ``auto`` becomes ``gpu`` (or the profile's
    ``accelerator``); ``train.accelerator=cpu`` there needs a profile that allows it."""
    from parcae_runner.config.validate import tasks_per_node

    c = cfg.cluster
    if c.launcher != "slurm":
        return
    t = cfg.train
    if t.num_nodes == 1:
        t.num_nodes = int(c.nodes)
    if t.devices == "auto" and (c.gpus_per_node or tasks_per_node(c) > 1):
        t.devices = tasks_per_node(c)
    if not c.gpus_per_node:
        return
    allowed = c.get("accelerator") or "gpu"
    if t.accelerator == "auto":
        t.accelerator = allowed
    elif t.accelerator != allowed and t.accelerator == "cpu":
        raise ConfigError(
            "train.accelerator",
            t.accelerator,
            f"cluster={c.name} has {c.gpus_per_node} GPUs per node: train there on gpu (a CPU run would be "
            "silent and slow); only a profile with accelerator: cpu allows it",
        )


def _apply_budget(cfg: DictConfig) -> None:
    from parcae_runner.models.flops import FLOPS_CONVENTIONS, apply_budget

    if cfg.train.get("max_flops") is not None and cfg.train.get("max_tokens") is not None:
        raise ConfigError(
            "train.max_tokens", cfg.train.max_tokens, "set one budget, train.max_tokens or train.max_flops, not both"
        )
    if cfg.train.get("max_tokens") is not None and cfg.train.max_tokens <= 0:
        raise ConfigError("train.max_tokens", cfg.train.max_tokens, "must be a positive number of tokens")
    if cfg.train.get("flops_convention", "exact") not in FLOPS_CONVENTIONS:
        raise ConfigError(
            "train.flops_convention", cfg.train.flops_convention, f"one of: {', '.join(FLOPS_CONVENTIONS)}"
        )
    if cfg.train.get("max_flops") is not None and cfg.train.max_flops <= 0:
        raise ConfigError("train.max_flops", cfg.train.max_flops, "must be a positive number of FLOPs")
    if cfg.train.get("max_flops") is not None and cfg.data.vocab_size is None:
        raise ConfigError("data.vocab_size", None, "train.max_flops needs the model's vocabulary: set data.vocab_size")
    try:
        apply_budget(cfg)
    except (KeyError, ValueError):
        pass  # an unknown architecture or size: validate_run_config names it
