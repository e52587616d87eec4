"""Semantic checks on a composed run config, before anything is written or trained.

Types and key names are already checked by the schema; this module checks values and the
relations between them. All problems are collected so one run of the command shows them all.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from parcae_runner.config.errors import ConfigError, ConfigErrors
from parcae_runner.config.hardware import HARDWARE, known_countries
from parcae_runner.config.schema import (
    CheckpointSchedule,
    Container,
    DataOrder,
    DataSource,
    Launcher,
    NsCoefficients,
    NsDtype,
    Optimizer,
    Precision,
    Schedule,
    Strategy,
    TokenizerRecipe,
    WandbMode,
)
from parcae_runner.util.log import log


def choices(kind: type[enum.StrEnum]) -> tuple[str, ...]:
    return tuple(m.value for m in kind)


def _positive(errors: list[ConfigError], cfg: DictConfig, key: str, allow_zero: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None or value < 0 or (value == 0 and not allow_zero):
        errors.append(ConfigError(key, value, "must be " + ("zero or more" if allow_zero else "a positive number")))


def _one_of(errors: list[ConfigError], cfg: DictConfig, key: str, allowed: tuple[str, ...]) -> None:
    value = OmegaConf.select(cfg, key)
    if str(value) not in allowed:
        errors.append(ConfigError(key, value, f"choose one of: {', '.join(allowed)}"))


def tasks_per_node(c: DictConfig) -> int:
    """Training ranks per node of a cluster profile: ``tasks_per_node``, else one per GPU, at least one (Lightning's
    DDP: tasks per node = devices)."""
    if c.get("tasks_per_node"):
        return int(c.tasks_per_node)
    return max(1, int(c.gpus_per_node))


def world_size(cfg: DictConfig) -> int:
    """Data-parallel ranks the run will use (devices x nodes); 1 unless devices is an integer."""
    devices = cfg.train.devices
    return (devices if isinstance(devices, int) and devices > 0 else 1) * cfg.train.num_nodes


def gradient_accumulation(cfg: DictConfig) -> int:
    """Micro-batches per optimizer step on each rank, so that the effective batch is ``train.batch_size``."""
    return cfg.train.batch_size // (cfg.train.micro_batch_size * world_size(cfg))


def _shard_errors(cfg: DictConfig) -> list[ConfigError]:
    """``train.strategy=fsdp`` needs the architecture's sharding units (``Architecture.shard_units``); an unknown
    architecture is :func:`validate_run_config`'s to report."""
    from parcae_runner.models.registry import ARCHITECTURES

    if str(cfg.train.strategy) != Strategy.FSDP:
        return []
    errors = []
    if cfg.train.eval.tasks:
        errors.append(
            ConfigError(
                "train.eval.tasks",
                list(cfg.train.eval.tasks),
                "evaluations during training need the whole model in one process; with train.strategy=fsdp leave "
                "them out and run `parcae-runner eval` on the checkpoints",
            )
        )
    arch = ARCHITECTURES.get(str(cfg.arch.name))
    if arch is not None and not arch.shard_units:
        errors.append(
            ConfigError(
                "train.strategy",
                cfg.train.strategy,
                f"arch={arch.name} names no sharding units (its spec's shard_units: the block classes FSDP wraps); "
                "train it with train.strategy=ddp, or name its blocks in its registration",
            )
        )
    return errors


def _batch_errors(cfg: DictConfig) -> list[ConfigError]:
    """Every rank takes whole micro-batches: the effective batch is a multiple of micro batch x ranks. Under FSDP the
    ranks are the world size the model is sharded over, which the message names, with a batch that would do."""
    t, ranks = cfg.train, world_size(cfg)
    per_step = t.micro_batch_size * ranks
    if t.batch_size % per_step == 0:
        return []
    how = f"train.micro_batch_size ({t.micro_batch_size}) x data-parallel ranks ({ranks}) = {per_step}"
    if str(t.strategy) == Strategy.FSDP:
        how = (
            f"train.micro_batch_size ({t.micro_batch_size}) x the world size train.strategy=fsdp shards over "
            f"({ranks} = {t.num_nodes} node(s) x {ranks // max(1, t.num_nodes)} rank(s)) = {per_step}"
        )
    nearest = -(-t.batch_size // per_step) * per_step
    return [
        ConfigError(
            "train.batch_size",
            t.batch_size,
            f"the effective batch must be a multiple of {how}: e.g. train.batch_size={nearest}",
        )
    ]


def _validate_cluster(errors: list[ConfigError], cfg: DictConfig) -> None:
    c = cfg.cluster
    _one_of(errors, cfg, "cluster.launcher", choices(Launcher))
    _one_of(errors, cfg, "cluster.container", choices(Container))
    if c.get("accelerator") not in (None, "gpu", "cpu"):
        errors.append(ConfigError("cluster.accelerator", c.accelerator, "choose one of: gpu, cpu (or null: gpu)"))
    _one_of(errors, cfg, "cluster.gpu_type", tuple(HARDWARE))
    if c.country_iso_code not in known_countries():
        errors.append(
            ConfigError(
                "cluster.country_iso_code",
                c.country_iso_code,
                "an ISO 3166-1 alpha-3 code codecarbon knows (USA, FRA, DEU, GBR, CAN, ...)",
            )
        )
    for key in ("nodes", "cpus_per_task", "mem_gb", "time_min", "array_parallelism", "max_parallel", "pue"):
        _positive(errors, cfg, f"cluster.{key}")
    # null: the hardware table's measured figure (plan); a number overrides it
    for key in ("mfu", "carbon_intensity_kg_per_kwh"):
        if OmegaConf.select(cfg, f"cluster.{key}") is not None:
            _positive(errors, cfg, f"cluster.{key}", allow_zero=key != "mfu")
    for key in ("gpus_per_node", "signal_delay_s", "max_requeues"):
        _positive(errors, cfg, f"cluster.{key}", allow_zero=True)
    if c.get("tasks_per_node") is not None:
        _positive(errors, cfg, "cluster.tasks_per_node")
        if c.gpus_per_node and c.tasks_per_node != c.gpus_per_node:
            errors.append(
                ConfigError("cluster.tasks_per_node", c.tasks_per_node, f"one task per GPU: {c.gpus_per_node} or null")
            )
    if c.container != Container.NONE and not c.image:
        errors.append(ConfigError("cluster.image", c.image, f"cluster.container={c.container} needs an image"))


def _path_exists(path: str, source: str) -> bool:
    """A file or folder; for pretokenized data also a Megatron prefix (``<prefix>.bin`` / ``<prefix>.idx``)."""
    p = Path(path).expanduser()
    if p.exists():
        return True
    return source == DataSource.PRETOKENIZED and any(p.with_name(p.name + s).exists() for s in (".bin", ".idx"))


def _check_init_from(folder: str, arch: str) -> list[ConfigError]:
    """The folder's Hugging Face model type must be the one ``arch`` imports (before any file is written)."""
    import json

    from parcae_runner.models.registry import ARCHITECTURES

    try:
        found = json.loads((Path(folder) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return [ConfigError("train.init_from", folder, "its config.json is not a JSON object")]
    spec = ARCHITECTURES.get(arch)
    expected = spec.hf_model_type if spec is not None else None
    if expected is None:
        return [ConfigError("train.init_from", folder, f"arch={arch} has no Hugging Face import")]
    if found != expected:
        return [ConfigError("train.init_from", folder, f"holds a {found!r} model; arch={arch} imports {expected!r}")]
    return []


def _check_init_source(source: str, arch: str) -> list[ConfigError]:
    """``train.init_from`` is an exported Hugging Face folder of ``arch``'s model type, or a weight file in a format
    that ``arch``'s spec declares (``Architecture.formats``)."""
    from parcae_runner.models.formats import init_file_problem, is_weight_file

    if is_weight_file(source):
        problem = init_file_problem(source, arch)
        return [ConfigError("train.init_from", source, problem)] if problem else []
    if not (Path(source) / "config.json").is_file():
        return [ConfigError("train.init_from", source, "not an exported folder (no config.json) nor a weight file")]
    return _check_init_from(source, arch)


def size_errors(cfg: DictConfig) -> list[ConfigError]:
    """The dims a run's size overrides (``size.d_model=192``), checked against its architecture's: each must be one
    of them and a positive integer, and the heads must still split ``d_model`` (``registry.size_errors``). An unknown
    architecture or size name is :func:`validate_run_config`'s to report."""
    from parcae_runner.models import registry

    arch = registry.ARCHITECTURES.get(str(cfg.arch.name))
    if arch is None:
        return []
    return [ConfigError(key, value, allowed) for key, value, allowed in registry.size_errors(arch, cfg.size)]


def _check_arch(errors: list[ConfigError], cfg: DictConfig, arch: Any) -> None:
    """The architecture's own checks of its hyperparameters against the size and context (``Architecture.check``);
    its warnings are logged (a setting that has no effect is not an error)."""
    from parcae_runner.models.registry import get_dims, make_hparams

    if arch.check is None:
        return
    try:
        _, hparams = make_hparams(OmegaConf.to_container(cfg.arch, resolve=True))
    except (TypeError, ValueError) as exc:
        errors.append(ConfigError("arch", cfg.arch.name, str(exc)))
        return
    dims = get_dims(arch, cfg.size)
    found, warnings = arch.check(hparams, dims, int(cfg.data.seq_len))
    errors.extend(ConfigError(key, value, allowed) for key, value, allowed in found)
    for warning in warnings:
        log(f"warning: {warning}")


def _validate_muon(errors: list[ConfigError], cfg: DictConfig) -> None:
    _one_of(errors, cfg, "train.muon.ns_coefficients", choices(NsCoefficients))
    _one_of(errors, cfg, "train.muon.ns_dtype", choices(NsDtype))
    _positive(errors, cfg, "train.muon.ns_steps")
    for key in ("weight_decay", "momentum_warmup_steps", "momentum", "momentum_start"):
        _positive(errors, cfg, f"train.muon.{key}", allow_zero=True)
    if cfg.train.muon.lr is not None:
        _positive(errors, cfg, "train.muon.lr")
    for key in ("momentum", "momentum_start", "beta2"):
        value = OmegaConf.select(cfg, f"train.muon.{key}")
        if value is not None and not 0 <= value < 1:
            errors.append(ConfigError(f"train.muon.{key}", value, "must be in [0, 1)"))


def validate_run_config(cfg: DictConfig, check_tasks: Callable[[list[str]], None] | None = None) -> None:
    """Raise :class:`ConfigErrors` listing every bad value in ``cfg``.

    ``check_tasks(names)`` raises a :class:`ConfigError` for unknown ``train.eval.tasks``; the task
    registry lives in ``eval``, above this package, so the caller passes it in
    (:func:`parcae_runner.train.preflight.validate`)."""
    from parcae_runner.models import UnknownArchitecture, UnknownSize, get_architecture

    errors: list[ConfigError] = []
    try:
        arch = get_architecture(cfg.arch.name)
        if cfg.size.name not in arch.sizes:
            raise UnknownSize(f"size={cfg.size.name}: {arch.name} has sizes {', '.join(arch.sizes)}")
    except UnknownArchitecture:
        errors.append(ConfigError("arch.name", cfg.arch.name, "unknown architecture"))
    except UnknownSize:
        errors.append(ConfigError("size", cfg.size.name, f"{cfg.arch.name} has sizes: {', '.join(arch.sizes)}"))
    else:
        bad_size = size_errors(cfg)
        errors.extend(bad_size)
        # the architecture's own checks need dims it can build
        if not bad_size:
            _check_arch(errors, cfg, arch)

    t = cfg.train
    for key in ("max_steps", "batch_size", "micro_batch_size", "lr", "log_interval", "val_interval"):
        _positive(errors, cfg, f"train.{key}")
    for key in ("min_lr", "warmup_steps", "weight_decay", "grad_clip", "val_batches", "num_workers"):
        _positive(errors, cfg, f"train.{key}", allow_zero=True)
    if t.batch_size > 0 and t.micro_batch_size > 0:
        errors.extend(_batch_errors(cfg))
    if t.min_lr > t.lr:
        errors.append(ConfigError("train.min_lr", t.min_lr, f"must not exceed train.lr ({t.lr})"))
    _one_of(errors, cfg, "train.schedule", choices(Schedule))
    if not 0 <= t.cooldown_fraction <= 1:
        errors.append(ConfigError("train.cooldown_fraction", t.cooldown_fraction, "must be in [0, 1]"))
    _one_of(errors, cfg, "train.optimizer", choices(Optimizer))
    _validate_muon(errors, cfg)
    _one_of(errors, cfg, "train.precision", choices(Precision))
    _one_of(errors, cfg, "train.strategy", choices(Strategy))
    errors.extend(_shard_errors(cfg))
    _one_of(errors, cfg, "train.checkpoint.schedule", choices(CheckpointSchedule))
    _positive(errors, cfg, "train.checkpoint.every")
    _positive(errors, cfg, "train.checkpoint.keep_resume_state")
    if any(s < 0 for s in t.checkpoint.steps):
        errors.append(ConfigError("train.checkpoint.steps", list(t.checkpoint.steps), "steps must be >= 0"))

    _positive(errors, cfg, "train.eval.every")
    if t.eval.limit is not None and t.eval.limit < 1:
        errors.append(ConfigError("train.eval.limit", t.eval.limit, "must be a positive number of examples, or null"))
    if t.eval.tasks and check_tasks is not None:
        try:
            check_tasks([str(x) for x in t.eval.tasks])
        except ConfigError as exc:
            errors.append(ConfigError("train.eval.tasks", exc.value, exc.allowed))

    if t.init_from is not None:
        errors.extend(_check_init_source(str(t.init_from), str(cfg.arch.name)))
    _positive(errors, cfg, "train.divergence.max_skipped_in_a_row")
    _positive(errors, cfg, "train.divergence.guardrail_after_steps", allow_zero=True)

    d = cfg.data
    _one_of(errors, cfg, "data.source", choices(DataSource))
    _positive(errors, cfg, "data.seq_len")
    _positive(errors, cfg, "data.seed", allow_zero=True)
    _positive(errors, cfg, "seed", allow_zero=True)
    _one_of(errors, cfg, "data.tokenizer_recipe", choices(TokenizerRecipe))
    _one_of(errors, cfg, "data.order", choices(DataOrder))
    _positive(errors, cfg, "data.pad_vocab_multiple")
    _positive(errors, cfg, "data.docs_per_shard")
    _positive(errors, cfg, "data.max_epochs")
    if d.vocab_size is None and d.tokenizer == "train":
        errors.append(ConfigError("data.vocab_size", None, "required with data.tokenizer=train: the size to train"))
    elif d.vocab_size is not None and d.vocab_size < 260:
        errors.append(ConfigError("data.vocab_size", d.vocab_size, "must be at least 260 (256 bytes + specials)"))
    if not 0 <= d.val_fraction < 1:
        errors.append(ConfigError("data.val_fraction", d.val_fraction, "must be in [0, 1)"))
    needs_path = (DataSource.TEXT_FILES, DataSource.JSONL, DataSource.PARQUET, DataSource.PRETOKENIZED)
    if d.source in needs_path and d.path is None:
        errors.append(ConfigError("data.path", d.path, f"required with data.source={d.source}: a file or folder"))
    elif d.source in needs_path and not _path_exists(str(d.path), str(d.source)):
        errors.append(ConfigError("data.path", d.path, "no such file or directory"))
    if d.source == DataSource.HF and not d.dataset:
        errors.append(ConfigError("data.dataset", d.dataset, "required with data.source=hf: a hub name or a folder"))
    if d.source == DataSource.PRETOKENIZED and d.tokenizer == "train":
        errors.append(
            ConfigError("data.tokenizer", d.tokenizer, "pretokenized data needs the tokenizer its ids come from")
        )

    _one_of(errors, cfg, "logger.mode", choices(WandbMode))
    _validate_cluster(errors, cfg)
    if errors:
        raise ConfigErrors(errors)
