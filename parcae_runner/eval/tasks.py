"""Which evaluation tasks exist, and whether their data is here: checked before anything is evaluated.

Task names: ``bpb`` (bits per byte on the run's held-out split, computed here), this package's
lm-eval tasks in ``parcae_runner/eval/task_configs/`` (``lambada_embedded``, the ``parcae_core`` group), and
every task lm-eval knows (``lambada_openai``, ``hellaswag``, ``arc_easy``, ``piqa``, ...). lm-eval's
tasks read the Hugging Face ``datasets`` cache; evaluation is offline unless a download is asked for,
so a missing dataset is an immediate, explained error instead of a hang on the network.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from parcae_runner.config.errors import ConfigError

BPB = "bpb"
TASKS_DIR = Path(__file__).resolve().parent / "task_configs"


class _IgnoreTags(yaml.SafeLoader):
    """Reads lm-eval task YAMLs for their names only: ``!function`` tags are left unresolved."""


_IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)


@functools.lru_cache(maxsize=1)
def own_tasks() -> dict[str, bool]:
    """``{name: is_group}`` of the task definitions shipped in ``TASKS_DIR``."""
    out = {}
    for path in sorted(TASKS_DIR.glob("*.yaml")):
        spec = yaml.load(path.read_text(), Loader=_IgnoreTags) or {}
        if "group" in spec:
            out[str(spec["group"])] = True
        elif "task" in spec:
            out[str(spec["task"])] = False
    return out


def parse_tasks(spec: str | Sequence[str]) -> list[str]:
    """``"bpb,lambada_embedded"`` (or a list) -> unique names in order."""
    items = spec.split(",") if isinstance(spec, str) else [str(s) for s in spec]
    names = list(dict.fromkeys(s.strip() for s in items if s and s.strip()))
    if not names:
        raise ConfigError("--tasks", spec, f"name at least one task, e.g. {BPB},lambada_embedded")
    return names


def go_offline(download: bool) -> None:
    """Keep lm-eval's dataset loading off the network unless ``download``: set before ``datasets`` is imported."""
    if not download:
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def task_metadata(cfg: Any) -> dict[str, Any]:
    """What our tasks need to know of a run: its data (``lambada_embedded`` reads that data's held-out split)."""
    return {"source": str(cfg.data.source), "path": cfg.data.path, "val_fraction": float(cfg.data.val_fraction)}


def _needs_lm_eval_tasks(names: list[str]) -> bool:
    ours = own_tasks()
    # our groups name lm-eval's own tasks; anything not ours is lm-eval's
    return any(n != BPB and (n not in ours or ours[n]) for n in names)


@functools.lru_cache(maxsize=4)
def _task_manager(with_defaults: bool, metadata_items: tuple[tuple[str, Any], ...]) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=with_defaults, metadata=dict(metadata_items))


def task_manager(names: list[str], metadata: dict[str, Any] | None = None) -> Any:
    """lm-eval's task index with our tasks; lm-eval's own ~15k tasks are indexed (a few seconds) only when named."""
    items = tuple(sorted((metadata or {}).items()))
    return _task_manager(_needs_lm_eval_tasks(names), items)


def check_task_names(names: list[str]) -> None:
    """Unknown names -> one :class:`ConfigError` naming the closest known tasks."""
    lm_names = [n for n in names if n != BPB]
    if not lm_names:
        return
    known = set(task_manager(lm_names).all_tasks)
    for name in lm_names:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known | {BPB}), n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(
                "--tasks",
                name,
                f"unknown task; {hint}ours: {', '.join([BPB, *own_tasks()])}; lm-eval's: `lm_eval ls tasks`",
            )


def check_task_data(names: list[str], metadata: dict[str, Any]) -> None:
    """Load every lm-eval task's data once, so a missing dataset fails before any model is evaluated."""
    tm = task_manager(names, metadata)
    for name in (n for n in names if n != BPB):
        try:
            tm.load([name])
        except Exception as exc:  # datasets raises many types for "not here": report them all the same way
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            home = os.environ.get("HF_HOME", "~/.cache/huggingface")
            raise ConfigError(
                "--tasks",
                name,
                f"its data could not be loaded ({type(exc).__name__}: {reason}). lm-eval reads it from the "
                f"Hugging Face datasets cache (HF_HOME={home}); evaluation does not download unless asked. Get it with "
                f"`parcae-runner eval <run_dir> --tasks {name} --download` on a machine with internet "
                "(then copy HF_HOME here), or use the offline task lambada_embedded",
            ) from None
