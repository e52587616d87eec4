"""Evaluation results on disk: ``<run_dir>/eval/checkpoint-N/<key>.json`` plus a summary in ``run.json``.

``<key>`` is the task name, or ``<task>@R<r>`` for a looped model evaluated at recurrence ``r``. Each
file holds ``{"task", "step", "checkpoint", "metrics": {name: value}, ...}``; the flat form
``eval/<key>/<metric>`` is what ``collect`` makes columns of and what training logs to wandb.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from parcae_runner.runs import PREFIX, RunDirectory
from parcae_runner.runs.layout import EVAL_DIR
from parcae_runner.util.files import atomic_write_json


def result_key(task: str, recurrence: int | None) -> str:
    return task if recurrence is None else f"{task}@R{recurrence}"


def flat_metrics(records: dict[str, dict[str, Any]]) -> dict[str, float]:
    """``{"eval/<key>/<metric>": value}``: the columns of ``collect`` and the keys logged to wandb."""
    return {f"eval/{key}/{m}": v for key, rec in records.items() for m, v in rec["metrics"].items()}


def write_results(rd: RunDirectory, step: int, records: dict[str, dict[str, Any]]) -> list[Path]:
    """One JSON file per result under ``eval/checkpoint-N/`` and the metrics in ``run.json``."""
    folder = rd.eval_dir / f"{PREFIX}{step}"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for key, record in records.items():
        path = folder / f"{key}.json"
        atomic_write_json(path, {**record, "time": time.time()})
        written.append(path)
    # merged under run.json's lock: a live training run or another eval may write it at the same moment
    rd.read_run().merge("eval", {f"{PREFIX}{step}": {k: r["metrics"] for k, r in records.items()}})
    return written


def read_results(run_dir: Path) -> dict[int, dict[str, float]]:
    """``{step: {"eval/<key>/<metric>": value}}`` from a run directory's ``eval/`` folder."""
    out: dict[int, dict[str, float]] = {}
    for path in sorted((Path(run_dir) / EVAL_DIR).glob(f"{PREFIX}*/*.json")):
        try:
            step = int(path.parent.name.split("-", 1)[1])
            record = json.loads(path.read_text())
        except (ValueError, json.JSONDecodeError):
            continue  # a stray file is not a result
        out.setdefault(step, {}).update(flat_metrics({path.stem: record}))
    return out
