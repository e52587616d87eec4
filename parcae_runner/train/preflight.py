"""The one start-up check that every entry point runs: ``preflight(cfg, stage)``.

Nothing may be queued that the node would refuse, and nothing may be written before bad input is refused: a job that
waits a day in the queue, gets its GPUs and then exits 2 costs its user that day. So ``train``, ``launch``,
``sweep``, ``plan`` and the Slurm job script all ask this module, each at its stage:

- ``"plan"`` (``parcae-runner plan``): every value (:func:`validate`), the data and the memory. The data: the source
  opens, the tokenizer loads, and the run does not repeat its data more than ``data.max_epochs`` times (exact once
  prepared, an estimate before); a known corpus that is not in this machine's cache is planned on its published size
  (``data/published.py``), and the plan says so. The memory: the run's plan per GPU (``train/memory_fit.py``) must
  fit ``cluster.gpu_memory_gb``. A ``plan``-only size (e.g. LLaMA 7B) is costed, not refused: planning it is what
  plan is for; the result says it cannot be trained, unless it fits under ``train.strategy=fsdp``.
- ``"submit"`` (``launch``, ``sweep``, ``resubmit``): all of ``"plan"`` but the published sizes (the node needs the
  data), and what ``train`` would refuse on the node: a ``plan``-only size, absent data of ``train.eval.tasks``, and
  a run directory that holds another config.
- ``"job"`` (the Slurm job script, inside the allocation, before ``srun``; ``parcae-runner train`` before it imports
  the trainer): the values, the size and the memory, which cost nothing (the model is built on the meta device; the
  memory is checked when the vocabulary is known without the data). The data and the run directory are checked by
  ``"train"`` a moment later in the job step, inside the container, where the data is read; ``"submit"`` checked
  them before the job was queued.
- ``"train"`` (``parcae-runner train``, :func:`parcae_runner.train.runner.train`): the values, the size, the memory,
  the run directory and the evaluation data, before data is prepared or anything is written. The data budget is
  then checked exactly on the prepared data (:func:`check_data_budget`), before the run directory is touched.

Every refusal is bad input: ``ConfigError``/``ConfigErrors``/``DataError``, exit 2, naming the key or run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf

from parcae_runner.config.errors import ConfigError
from parcae_runner.config.validate import validate_run_config
from parcae_runner.data import PreparedData, TokenChunks, check_epochs
from parcae_runner.data.budget import Availability, availability
from parcae_runner.data.errors import DataError
from parcae_runner.data.published import published_availability, tokenizer_vocab
from parcae_runner.eval.tasks import check_task_data, check_task_names, go_offline, task_metadata
from parcae_runner.runs import RunDirectory, run_name
from parcae_runner.train.memory_fit import MemoryFit, check_fits, memory_fit

Stage = Literal["plan", "submit", "job", "train"]
STAGES: tuple[str, ...] = ("plan", "submit", "job", "train")

# keys that may change between attempts of one run without changing what is trained
# where a run runs and how its model is spread over the ranks do not change what it trains: a run resumes on another
# number of ranks or nodes, or sharded (elastic resume, docs/strategies.md); the global batch stays train.batch_size.
# A run directory moved or copied elsewhere (results_dir) is the same run
RESUME_TOLERATED = (
    "results_dir",
    "train.progress",
    "train.num_workers",
    "train.eval",
    "logger",
    "cluster",
    "train.devices",
    "train.num_nodes",
    "train.accelerator",
    "train.strategy",
    "train.fsdp",
)


@dataclass
class Checked:
    """What a preflight learnt on the way: whether the size can be trained, (``plan``/``submit``) the data the run
    would read and the epochs it would make over it, and the memory plan per GPU (when it was made)."""

    trainable: bool
    data: Availability | None = None
    epochs: float | None = None
    memory: MemoryFit | None = None


def preflight(cfg: DictConfig, stage: Stage, data_seen: dict[str, Availability] | None = None) -> Checked:
    """Refuse ``cfg`` (exit 2) for everything ``stage`` can know of before it starts (see the module docstring).

    ``data_seen`` caches the data availability by data config, for a sweep whose points share one corpus."""
    if stage not in STAGES:
        raise ValueError(f"preflight stage {stage!r}: choose one of {', '.join(STAGES)}")
    validate(cfg)
    if stage in ("submit", "train"):
        check_same_run(RunDirectory.for_config(cfg), cfg)
        check_eval_data(cfg)
    data, epochs = None, None
    if stage in ("plan", "submit"):
        data = planning_data(cfg, stage, {} if data_seen is None else data_seen)
        tokens = cfg.train.max_steps * cfg.train.batch_size * cfg.data.seq_len
        epochs = check_epochs(run_name(cfg), tokens, data.tokens, float(cfg.data.max_epochs), data.estimate)
    memory = check_memory(cfg, data)
    trainable = plan_only_reason(cfg, memory) is None
    if stage != "plan":
        check_trainable(cfg, memory)
    return Checked(trainable, data, epochs, memory)


def check_memory(cfg: DictConfig, data: Availability | None) -> MemoryFit | None:
    """The run's memory plan per GPU, refused (exit 2, naming the smallest change that fits) when it does not fit
    ``cluster.gpu_memory_gb``. ``plan`` and ``submit`` always make it (their output shows it); ``job`` and ``train``
    when there is something to check (a GPU memory, a ``plan``-only size) and the vocabulary is known without the
    data (else None: ``submit`` checked it with the data's own)."""
    if data is not None:
        vocab: int | None = data.model_vocab_size
    elif cfg.cluster.get("gpu_memory_gb") is None and plan_only_reason(cfg) is None:
        return None
    else:
        vocab = tokenizer_vocab(OmegaConf.to_object(cfg.data))  # type: ignore[arg-type]
    if vocab is None:
        return None
    fit = memory_fit(cfg, vocab)
    check_fits(fit)
    return fit


def validate(cfg: DictConfig) -> None:
    """Raise :class:`~parcae_runner.config.ConfigErrors` listing every bad value in ``cfg``: the config's own checks
    plus the evaluation task names, which ``eval`` knows."""
    validate_run_config(cfg, check_tasks=check_task_names)


def plan_only_reason(cfg: DictConfig, memory: MemoryFit | None = None) -> str | None:
    """Why ``cfg``'s size cannot be trained, or None. A ``plan``-only size (e.g. LLaMA 7B) trains only sharded: when
    its strategy resolves to fsdp and its memory plan fits the profile's ``cluster.gpu_memory_gb``."""
    from parcae_runner.models import get_architecture

    arch = get_architecture(cfg.arch.name)
    if cfg.size.name not in arch.plan_only:
        return None
    if memory is not None and memory.strategy == "fsdp" and memory.fits:
        return None
    return (
        f"plan-only for {arch.name}: it trains only with train.strategy=fsdp on a cluster profile whose "
        "cluster.gpu_memory_gb its memory plan fits (parcae-runner plan names the GPU count)"
    )


def check_trainable(cfg: DictConfig, memory: MemoryFit | None = None) -> None:
    """A ``plan``-only size that does not train sharded can be planned and costed but not trained: exit 2."""
    reason = plan_only_reason(cfg, memory)
    if reason is not None:
        raise ConfigError("size", cfg.size.name, reason)


def check_eval_data(cfg: DictConfig) -> None:
    """An absent dataset of ``train.eval.tasks`` stops the run here, with its how-to, not at the first checkpoint.

    Offline unless HF_DATASETS_OFFLINE/HF_HUB_OFFLINE say otherwise: no hang on a closed network."""
    if cfg.train.eval.tasks:
        go_offline(download=False)
        check_task_data([str(t) for t in cfg.train.eval.tasks], task_metadata(cfg))


def _training_view(cfg: DictConfig) -> dict[str, Any]:
    tree = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(tree, dict)
    view = {str(k): v for k, v in tree.items()}
    for key in RESUME_TOLERATED:
        *parents, leaf = key.split(".")
        node = view
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return view


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_same_run(run_dir: RunDirectory, cfg: DictConfig) -> None:
    """Refuse to resume a run directory that was made by a different config."""
    old = run_dir.read_config()
    if old is None:
        return
    before, now = _training_view(old), _training_view(cfg)
    if before != now:
        a, b = _flatten(before), _flatten(now)
        diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        raise ConfigError(
            "run_name",
            run_name(cfg),
            f"{run_dir.path} already holds a run with a different config (differs in: {', '.join(diff)}); "
            "pass another run_name=..., or delete that directory to start over",
        )


def data_availability(cfg: DictConfig, seen: dict[str, Availability]) -> Availability:
    """The training tokens ``cfg``'s data offers (``DataError`` when the source or tokenizer is missing), once per
    distinct data config in ``seen``."""
    key = _data_key(cfg)
    if key not in seen:
        seen[key] = availability(OmegaConf.to_object(cfg.data))  # type: ignore[arg-type]
    return seen[key]


def _data_key(cfg: DictConfig) -> str:
    import json

    return json.dumps(OmegaConf.to_container(cfg.data, resolve=True), sort_keys=True)


def planning_data(cfg: DictConfig, stage: Stage, seen: dict[str, Availability]) -> Availability:
    """:func:`data_availability`; at stage ``plan`` a known corpus that this machine cannot read (not in its cache)
    is planned on its published size instead (``data/published.py``), so a study is priced before the download."""
    try:
        return data_availability(cfg, seen)
    except DataError:
        if stage != "plan":
            raise
        published = published_availability(OmegaConf.to_object(cfg.data))  # type: ignore[arg-type]
        if published is None:
            raise
        seen[_data_key(cfg)] = published
        return published


def training_tokens(cfg: DictConfig, data: PreparedData) -> tuple[int, int]:
    """``(needed, available)``: tokens the run's steps consume, and tokens its training windows hold."""
    windows = len(TokenChunks(data.train, cfg.data.seq_len, cfg.data.chunk_overlap))
    return cfg.train.max_steps * cfg.train.batch_size * cfg.data.seq_len, windows * cfg.data.seq_len


def check_data_budget(cfg: DictConfig, data: PreparedData) -> float:
    """The ``"train"`` stage's last check, on the prepared data: warn when the run repeats its data, refuse
    (``DataError``, exit 2) above ``data.max_epochs``."""
    needed, available = training_tokens(cfg, data)
    return check_epochs(run_name(cfg), needed, available, float(cfg.data.max_epochs))
