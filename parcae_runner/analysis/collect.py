"""Collect a sweep's run directories into one table: ``results/<sweep>/results.parquet`` (and ``.csv``).

One row per run and evaluated checkpoint step: every step with a ``val/loss`` (or ``eval/...``)
record in ``metrics.jsonl``, plus the run's final step. Columns:

- identity: ``sweep, run, arch, size, params, params_non_embedding, seed, data_seed`` and one
  column per swept key of ``sweep.json`` ``params`` (named as the key, e.g. ``train.lr``; the
  value is read from the run's ``config.yaml``; a config group such as ``arch`` gives its name);
- per step: ``step, tokens`` (step x tokens_per_step), ``flops`` (tokens x training FLOPs per
  token, see ``models/flops.py``), ``train_loss`` (nearest train record at or before the step),
  ``val_loss, val_bpb``, every ``eval/<task>/<metric>`` key found, ``is_final``;
- per run: ``status, attempts, duration_s, gpu_hours, cpu_hours, energy_kwh, co2_kg, hardware``.

The run directory is the source of truth, so this table can always be rebuilt; collecting is
incremental because a study of thousands of runs is collected again after every few finished
runs: ``.collect-cache.json`` remembers the size and mtime of each run's files, and a run whose
files did not change keeps its rows from the previous ``results.parquet`` without being read.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from parcae_runner.eval.results import read_results as read_eval_results
from parcae_runner.runs import RunDirectory, RunRecord, RunStatus, SweepRecord
from parcae_runner.runs.layout import CONFIG_FILE
from parcae_runner.runs.metrics import METRICS_FILE
from parcae_runner.runs.record import RUN_FILE
from parcae_runner.util.files import atomic_write

RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
CACHE_FILE = ".collect-cache.json"
# bump when the columns or their meaning change: an older cache then forces a full re-read
CACHE_VERSION = 1
# the files whose change means a run must be read again
WATCHED = (RUN_FILE, METRICS_FILE, CONFIG_FILE)

BASE_COLUMNS = (
    "sweep",
    "run",
    "arch",
    "size",
    "params",
    "params_non_embedding",
    "seed",
    "data_seed",
)
STEP_COLUMNS = ("step", "tokens", "flops", "train_loss", "val_loss", "val_bpb", "is_final")
RUN_COLUMNS = (
    "status",
    "attempts",
    "duration_s",
    "gpu_hours",
    "cpu_hours",
    "energy_kwh",
    "co2_kg",
    "hardware",
)

# libyaml's loader is ~10x faster than the pure-Python one; config.yaml is plain YAML either way
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def swept_keys(sweep_root: Path) -> list[str]:
    """The swept keys of ``sweep_root/sweep.json`` (``params``), in file order; none without the file."""
    return list(SweepRecord.read(sweep_root).params)


def _config_key(key: str) -> str:
    # Hydra override prefixes (+key, ++key, ~key) are not part of the config path
    return key.lstrip("+~")


def select(config: dict[str, Any] | None, key: str) -> Any:
    """``OmegaConf.select(config, key)`` on the plain dict of a resolved config.yaml (None if absent).

    A config group (a mapping with a ``name``, e.g. ``arch``) gives its name; any other mapping
    or list gives its JSON text, so the column holds one scalar per run.
    """
    node: Any = config
    for part in _config_key(key).split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, dict) and "name" in node:
        return node["name"]
    if isinstance(node, (dict, list)):
        return json.dumps(node, sort_keys=True)
    return node


# the (arch, size) pairs whose FLOPs could not be computed, warned about once per process
_NO_FLOPS: set[str] = set()


def flops_per_token(arch_cfg: dict[str, Any], size: str | dict[str, Any], vocab_size: int, seq_len: int) -> float:
    """Training FLOPs per token of one model, NaN (with one warning) for a model this version cannot build.

    The meta-device build is cached per distinct (arch config, size, vocab, seq_len) by ``models.flops``:
    a sweep has few, runs have many.
    """
    # deferred: a cached collect never needs torch
    from parcae_runner.models.flops import arch_costs

    try:
        return arch_costs(arch_cfg, size, int(vocab_size), int(seq_len))[2]
    except Exception as exc:  # an architecture this version no longer knows must not stop collecting
        key = f"{json.dumps(arch_cfg, sort_keys=True)} {size}"
        if key not in _NO_FLOPS:
            _NO_FLOPS.add(key)
            warnings.warn(f"no FLOPs for arch={json.dumps(arch_cfg, sort_keys=True)} size={size}: {exc}", stacklevel=2)
        return math.nan


def _hours(hardware: dict[str, Any], duration_s: float | None) -> tuple[float, float]:
    """(GPU-hours, CPU-hours): wall time x devices (the world size) on the accelerator used."""
    if not duration_s:
        return 0.0, 0.0
    hours = float(duration_s) * float(hardware.get("devices") or 1) / 3600
    return (hours, 0.0) if hardware.get("accelerator") == "gpu" else (0.0, hours)


def _num(value: Any) -> float:
    return math.nan if value is None else value


def _merged_steps(run_dir: Path, records: list[dict[str, Any]]) -> tuple[dict[int, dict[str, Any]], list]:
    """``({step: merged record}, [(step, train loss)] sorted by step)`` of one run."""
    # records of one step (train, val, eval) are separate lines: merge them, later lines winning
    by_step: dict[int, dict[str, Any]] = {}
    train: list[tuple[int, float]] = []
    for rec in records:
        step = int(rec.get("step", 0))
        by_step.setdefault(step, {}).update(rec)
        if "train/loss" in rec:
            train.append((step, rec["train/loss"]))
    # results of `parcae-runner eval` (and of evaluation during training) live in eval/checkpoint-N/;
    # every write there also rewrites run.json, so the cache signature sees them
    for step, metrics in read_eval_results(run_dir).items():
        by_step.setdefault(step, {}).update(metrics)
    train.sort(key=lambda t: t[0])  # stable: of two records of one step, the later one is nearest
    return by_step, train


def _final_step(run: RunRecord, by_step: dict[int, dict[str, Any]]) -> int:
    if run.status == RunStatus.DONE and run.step is not None:
        return int(run.step or 0)
    # an attempt in progress has truncated metrics.jsonl to its resume step: that, not the
    # previous attempt's end step in run.json, is how far the run now is
    return max(by_step) if by_step else int(run.step or 0)


def _run_flops_per_token(run: RunRecord, config: dict[str, Any] | None) -> float:
    if config is None:
        return math.nan
    vocab = (
        run.data_info.get("model_vocab_size")
        or run.data_info.get("vocab_size")
        or (config.get("data") or {}).get("vocab_size")
    )
    seq_len = (config.get("data") or {}).get("seq_len")
    if vocab and seq_len and isinstance(config.get("arch"), dict):
        # the size config, not only its name: a run may override dims (size.d_model=192)
        size = config["size"] if isinstance(config.get("size"), dict) else str(run.size)
        return flops_per_token(config["arch"], size, vocab, seq_len)
    return math.nan


def _run_columns(run: RunRecord) -> dict[str, Any]:
    gpu_hours, cpu_hours = _hours(run.hardware, run.duration_s)
    return {
        # as written in run.json (absent stays absent: a plain string or None in the table)
        "status": run.get("status"),
        "attempts": run.get("attempts"),
        "duration_s": _num(run.duration_s),
        "gpu_hours": gpu_hours,
        "cpu_hours": cpu_hours,
        "energy_kwh": _num(run.energy_kwh),
        "co2_kg": _num(run.co2_kg),
        "hardware": run.hardware.get("device_name"),
    }


def read_run_rows(run_dir: Path, swept: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The rows of one run directory (see the module docstring for the columns)."""
    run_dir = Path(run_dir)
    rd = RunDirectory(run_dir)
    run = RunRecord.read(run_dir)
    config = yaml.load(rd.config_file.read_text(), Loader=_YAML_LOADER) if rd.config_file.exists() else None
    by_step, train = _merged_steps(run_dir, rd.read_metrics())
    train_steps = [s for s, _ in train]
    evaluated = {s for s, rec in by_step.items() if "val/loss" in rec or any(k.startswith("eval/") for k in rec)}
    final = _final_step(run, by_step)
    tokens_per_step = run.tokens_per_step
    fpt = _run_flops_per_token(run, config)

    base = {
        "sweep": run.sweep or run_dir.parent.name,
        # the directory name, not run.json's run_name: it is what identifies the run in this folder
        "run": run_dir.name,
        "arch": run.arch,
        "size": run.size,
        "params": run.params,
        "params_non_embedding": run.params_non_embedding,
        "seed": run.seed,
        "data_seed": run.data_seed,
    }
    for key in swept:
        if key not in base:  # arch, size, seed: already columns, with the same values
            base[key] = select(config, key)
    run_level = _run_columns(run)

    rows = []
    for step in sorted(evaluated | {final}):
        rec = by_step.get(step, {})
        i = bisect.bisect_right(train_steps, step)
        tokens = step * tokens_per_step if tokens_per_step is not None else None
        row = {
            **base,
            "step": step,
            "tokens": tokens,
            "flops": tokens * fpt if tokens is not None else math.nan,
            "train_loss": train[i - 1][1] if i else math.nan,
            "val_loss": _num(rec.get("val/loss")),
            "val_bpb": _num(rec.get("val/bpb")),
            "is_final": step == final,
        }
        row.update((k, v) for k, v in rec.items() if k.startswith("eval/"))
        row.update(run_level)
        rows.append(row)
    return rows


def _signature(run_dir: Path) -> list[list[int]]:
    out = []
    for name in WATCHED:
        try:
            st = os.stat(run_dir / name)
            out.append([st.st_mtime_ns, st.st_size])
        except FileNotFoundError:
            out.append([0, -1])
    return out


def _run_dirs(sweep_root: Path) -> dict[str, Path]:
    """Every subfolder holding a run.json: the run directories are the record, not sweep.json's list."""
    found = {}
    with os.scandir(sweep_root) as entries:
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith(".") and os.path.exists(os.path.join(entry.path, RUN_FILE)):
                found[entry.name] = Path(entry.path)
    return dict(sorted(found.items()))


def _load_cache(sweep_root: Path, swept: list[str]) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """The previous signatures and table, or nothing when they cannot be trusted."""
    cache_file, parquet = sweep_root / CACHE_FILE, sweep_root / RESULTS_PARQUET
    if not (cache_file.exists() and parquet.exists()):
        return {}, None
    try:
        cache = json.loads(cache_file.read_text())
        if cache.get("version") != CACHE_VERSION or cache.get("swept") != swept:
            return {}, None
        return cache.get("runs", {}), pd.read_parquet(parquet)
    except (OSError, ValueError) as exc:  # a damaged cache costs a full re-read, never a wrong table
        warnings.warn(f"ignoring the collect cache in {sweep_root}: {exc}", stacklevel=3)
        return {}, None


def _ordered_columns(columns: Iterable[str], swept: list[str]) -> list[str]:
    columns = list(columns)
    head = [*BASE_COLUMNS, *(k for k in swept if k not in BASE_COLUMNS), *STEP_COLUMNS]
    evals = sorted(c for c in columns if c.startswith("eval/"))
    rest = [c for c in columns if c not in head and c not in evals and c not in RUN_COLUMNS]
    return [c for c in [*head, *evals, *RUN_COLUMNS, *rest] if c in columns]


def _uniform_types(df: pd.DataFrame, columns: Iterable[str]) -> None:
    """A swept key may hold ints in one run and strings in another; parquet needs one type a column."""
    for col in columns:
        if col in df and df[col].dtype == object:
            kinds = {type(v) for v in df[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
            if len(kinds) > 1 and not kinds <= {int, float}:
                df[col] = df[col].map(lambda v: None if v is None else str(v))


def collect(sweep_root: Path) -> pd.DataFrame:
    """Collect every run directory under ``sweep_root`` into a DataFrame and write it as
    ``results.parquet`` and ``results.csv`` in ``sweep_root``.

    Incremental: runs whose ``run.json``, ``metrics.jsonl`` and ``config.yaml`` kept their size
    and mtime since the last call keep their rows from the previous ``results.parquet``; runs
    whose directory is gone are dropped. Calling it twice gives the same table.
    Works without ``sweep.json`` too (a plain folder of run directories; no swept-key columns).
    """
    sweep_root = Path(sweep_root)
    if not sweep_root.is_dir():
        raise FileNotFoundError(f"{sweep_root}: no such sweep folder")
    swept = swept_keys(sweep_root)
    dirs = _run_dirs(sweep_root)
    old_sigs, old_df = _load_cache(sweep_root, swept)
    old_runs = set(old_df["run"].unique()) if old_df is not None and len(old_df) else set()

    sigs: dict[str, list[list[int]]] = {}
    fresh: list[dict[str, Any]] = []
    keep: list[str] = []
    for name, path in dirs.items():
        sig = _signature(path)
        sigs[name] = sig
        if old_sigs.get(name) == sig and name in old_runs:
            keep.append(name)
            continue
        try:
            fresh.extend(read_run_rows(path, swept))
        except (OSError, ValueError, yaml.YAMLError) as exc:
            # one unreadable run (e.g. a run.json hand-edited into invalid JSON) must not hide the others;
            # it is left out of the cache so the next call tries it again
            warnings.warn(f"skipping {path}: {exc}", stacklevel=2)
            del sigs[name]

    unchanged = len(keep) == len(dirs) and old_runs == set(keep)
    parts = []
    if keep and old_df is not None:
        parts.append(old_df[old_df["run"].isin(keep)])
    if fresh:
        parts.append(pd.DataFrame.from_records(fresh))
    parts = [p for p in parts if len(p)]
    df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else (parts[0] if parts else pd.DataFrame())
    if len(df):
        _uniform_types(df, swept)
        df = df[_ordered_columns(df.columns, swept)].sort_values(["run", "step"], kind="stable")
        df = df.reset_index(drop=True)
    else:
        df = pd.DataFrame(columns=[*BASE_COLUMNS, *swept, *STEP_COLUMNS, *RUN_COLUMNS])

    if not unchanged or not (sweep_root / RESULTS_CSV).exists():
        # no fsync: the tables can always be rebuilt from the run directories
        atomic_write(sweep_root / RESULTS_PARQUET, lambda p: df.to_parquet(p, index=False), sync=False)
        atomic_write(sweep_root / RESULTS_CSV, lambda p: df.to_csv(p, index=False), sync=False)
        # written last: the cache never vouches for rows the parquet does not hold
        cache = {"version": CACHE_VERSION, "swept": swept, "runs": sigs}
        atomic_write(sweep_root / CACHE_FILE, lambda p: Path(p).write_text(json.dumps(cache)), sync=False)
    return df
