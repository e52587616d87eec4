"""The one start-up check that every entry point runs: ``preflight(cfg, stage)``.

Nothing may be queued that the node would refuse, and nothing may be written before bad input is refused: a job that
waits a day in the queue, gets its GPUs and then exits 2 costs its user that day. So ``train``, ``launch``,
``sweep``, ``plan`` and the Slurm job script all ask this module, each at its stage:

- ``"plan"`` (``parcae-runner plan``): every value (:func:`validate`) and the data: the source opens, the
  tokenizer loads, and the run does not repeat its data more than ``data.max_epochs`` times (exact once prepared, an
  estimate before). A ``plan``-only size (e.g. LLaMA 7B) is costed, not refused: planning it is what plan is for;
  the result says it cannot be trained.
- ``"submit"`` (``launch``, ``sweep``, ``resubmit``): all of ``"plan"``, and what ``train`` would refuse on the
  node: a ``plan``-only size, absent data of ``train.eval.tasks``, and a run directory that holds another config.
- ``"job"`` (the Slurm job script, inside the allocation, before ``srun``; ``parcae-runner train`` before it imports
  the trainer): the values and the size, which cost nothing. The data and the run directory are checked by
  ``"train"`` a moment later in the job step, inside the container, where the data is read; ``"submit"`` checked
  them before the job was queued.
- ``"train"`` (``parcae-runner train``, :func:`parcae_runner.train.runner.train`): the values, the size, the run
  directory and the evaluation data, before data is prepared or anything is written. The data budget is then
  checked exactly on the prepared data (:func:`check_data_budget`), before the run directory is touched.

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
from parcae_runner.eval.tasks import check_task_data, check_task_names, go_offline, task_metadata
from parcae_runner.runs import RunDirectory, run_name

Stage = Literal["plan", "submit", "job", "train"]
STAGES: tuple[str, ...] = ("plan", "submit", "job", "train")

# keys that may change between attempts of one run without changing what is trained
RESUME_TOLERATED = ("train.progress", "train.num_workers", "train.eval", "logger", "cluster")


@dataclass
class Checked:
    """What a preflight learnt on the way: whether the size can be trained, and (``plan``/``submit``) the data the
    run would read and the epochs it would make over it."""

    trainable: bool
    data: Availability | None = None
    epochs: float | None = None


def preflight(cfg: DictConfig, stage: Stage, data_seen: dict[str, Availability] | None = None) -> Checked:
    """Refuse ``cfg`` (exit 2) for everything ``stage`` can know of before it starts (see the module docstring).

    ``data_seen`` caches the data availability by data config, for a sweep whose points share one corpus."""
    if stage not in STAGES:
        raise ValueError(f"preflight stage {stage!r}: choose one of {', '.join(STAGES)}")
    validate(cfg)
    trainable = plan_only_reason(cfg) is None
    if stage != "plan":
        check_trainable(cfg)
    if stage in ("submit", "train"):
        check_same_run(RunDirectory.for_config(cfg), cfg)
        check_eval_data(cfg)
    if stage not in ("plan", "submit"):
        return Checked(trainable)
    data = data_availability(cfg, {} if data_seen is None else data_seen)
    tokens = cfg.train.max_steps * cfg.train.batch_size * cfg.data.seq_len
    epochs = check_epochs(run_name(cfg), tokens, data.tokens, float(cfg.data.max_epochs), data.estimate)
    return Checked(trainable, data, epochs)


def validate(cfg: DictConfig) -> None:
    """Raise :class:`~parcae_runner.config.ConfigErrors` listing every bad value in ``cfg``: the config's own checks
    plus the evaluation task names, which ``eval`` knows."""
    validate_run_config(cfg, check_tasks=check_task_names)


def plan_only_reason(cfg: DictConfig) -> str | None:
    """Why ``cfg``'s size cannot be trained (it is ``plan``-only for its architecture), or None."""
    from parcae_runner.models import get_architecture

    arch = get_architecture(cfg.arch.name)
    if cfg.size.name in arch.plan_only:
        return f"plan-only for {arch.name} (parcae-runner plan estimates it; it cannot be trained)"
    return None


def check_trainable(cfg: DictConfig) -> None:
    """A ``plan``-only size (e.g. LLaMA 7B) can be planned and costed but not trained: bad input, exit 2."""
    reason = plan_only_reason(cfg)
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
    import json

    key = json.dumps(OmegaConf.to_container(cfg.data, resolve=True), sort_keys=True)
    if key not in seen:
        seen[key] = availability(OmegaConf.to_object(cfg.data))  # type: ignore[arg-type]
    return seen[key]


def training_tokens(cfg: DictConfig, data: PreparedData) -> tuple[int, int]:
    """``(needed, available)``: tokens the run's steps consume, and tokens its training windows hold."""
    windows = len(TokenChunks(data.train, cfg.data.seq_len, cfg.data.chunk_overlap))
    return cfg.train.max_steps * cfg.train.batch_size * cfg.data.seq_len, windows * cfg.data.seq_len


def check_data_budget(cfg: DictConfig, data: PreparedData) -> float:
    """The ``"train"`` stage's last check, on the prepared data: warn when the run repeats its data, refuse
    (``DataError``, exit 2) above ``data.max_epochs``."""
    needed, available = training_tokens(cfg, data)
    return check_epochs(run_name(cfg), needed, available, float(cfg.data.max_epochs))
