"""Plan a sweep before launching it: expand the grid, validate every point, estimate its cost.

Nothing is submitted unless every point is valid. The estimate per run is::

    tokens     = train.max_steps * train.batch_size * data.seq_len
    FLOPs      = tokens * training_flops_per_token(model, seq_len)      (models/flops.py)
    GPU-hours  = FLOPs / (peak FLOP/s x MFU of cluster.gpu_type in the run's precision) / 3600
    kWh        = GPU-hours * device power (W) / 1000 * cluster.pue
    kg CO2     = kWh * cluster.carbon_intensity_kg_per_kwh, or codecarbon's figure for cluster.country_iso_code

The precision is fp32, tf32 (``train.tf32``) or bf16 (any mixed/half precision); MFU is ``cluster.mfu`` or, when
null, the measured figure of ``config/hardware.py`` for that device and precision (each with its source).

Peaks and powers are in ``config/hardware.py``; ``mfu`` and ``pue`` are profile keys. Beside the cost, each run's
data: the training tokens its corpus offers (exact once prepared, ``~`` an estimate from the input's size) and the
epochs it would make; above one epoch ``plan`` warns, above ``data.max_epochs`` it refuses (``data/budget.py``).

Every point passes :func:`parcae_runner.train.preflight.preflight`: at stage ``plan`` for ``parcae-runner plan``
(a ``plan``-only size is costed and marked as one that cannot be trained), at stage ``submit`` for ``sweep`` and
``resubmit`` (it is refused, with everything else ``train`` would refuse on the node). Both refuse a run whose memory
plan does not fit ``cluster.gpu_memory_gb``; the table shows each run's GB per GPU and, on a GPU profile, below it
the memory plan, term by term, of the largest distinct plans (``train/memory_fit.py``; docs/memory.md). A corpus
this machine has no copy of is planned on its published size where ``data/published.py`` knows it, and says so.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from omegaconf import DictConfig

from parcae_runner.config.compose import compose_many
from parcae_runner.config.errors import ConfigError, ConfigErrors
from parcae_runner.config.hardware import HARDWARE, grid_intensity, precision_kind
from parcae_runner.config.schema import Precision
from parcae_runner.config.validate import tasks_per_node
from parcae_runner.data.budget import Availability, check_epochs
from parcae_runner.launch.sweep_file import Point, Sweep, name_point
from parcae_runner.models.flops import budget_source, flops_convention, model_costs
from parcae_runner.models.memory import GB
from parcae_runner.runs import RunDirectory, RunStatus
from parcae_runner.train.memory_fit import MemoryFit, memory_fit
from parcae_runner.train.preflight import Stage, preflight


@dataclass
class PlannedRun:
    point: Point
    cfg: DictConfig
    params: int
    params_non_embedding: int
    tokens: int
    flops: float
    gpu_hours: float
    kwh: float
    co2_kg: float
    status: str  # of an existing run directory: new | done | failed | running | ...
    data_tokens: int = 0  # training tokens the data offers (an estimate until prepared)
    epochs: float = 0.0
    data_estimated: bool = False
    trainable: bool = True  # False: a plan-only size, costed but refused by sweep and train
    memory: MemoryFit | None = None  # the memory plan per GPU at the run's strategy and world size
    data_published: str | None = None  # the data is not here: its published size (data/published.py), and whence

    @property
    def run_dir(self) -> RunDirectory:
        return RunDirectory.for_config(self.cfg)


class InvalidPoint(ConfigError):
    """A grid point that cannot run; names the point, then the key, value and what is allowed."""

    def __init__(self, point: str, error: ConfigError):
        self.point = point
        super().__init__(error.key, error.value, error.allowed)
        self.args = (f"point {point}: {error}",)

    def __str__(self) -> str:
        return self.args[0]


@cache
def slurm_cluster_name() -> str | None:
    """ClusterName of the Slurm that answers here, or None."""
    if shutil.which("scontrol") is None:
        return None
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return None
    for line in out.stdout.splitlines():
        if line.startswith("ClusterName"):
            return line.split("=", 1)[1].strip()
    return None


@cache
def partition_limits(partition: str) -> dict | None:
    """CPUs, memory (MB), GPUs per node and time limit (min) of a Slurm partition, or None
    when no Slurm answers here (planning for a remote cluster from a laptop)."""
    if shutil.which("sinfo") is None:
        return None
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-p", partition, "-o", "%c|%m|%G|%l"], capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        return None
    rows = [r.split("|") for r in out.stdout.split() if r.strip()]
    if not rows:
        return {"exists": False}
    cpus, mem, gres, limit = rows[0]
    gpus = sum(int(g.split(":")[-1].split("(")[0]) for g in gres.split(",") if g.startswith("gpu"))
    return {
        "exists": True,
        "cpus": int(cpus.rstrip("+")),
        "mem_mb": int(mem.rstrip("+")),
        "gpus": gpus,
        "time_limit": limit,
    }


def check_cluster_fits(cfg: DictConfig) -> list[ConfigError]:
    """The profile must ask for no more than a node of its partition has."""
    c = cfg.cluster
    if c.launcher != "slurm" or c.partition is None:
        return []
    if c.cluster_name is not None and c.cluster_name != slurm_cluster_name():
        return []  # planning for another cluster than the one answering here
    limits = partition_limits(c.partition)
    if limits is None:
        return []
    if not limits["exists"]:
        return [ConfigError("cluster.partition", c.partition, "no such partition on this Slurm cluster (see sinfo)")]
    errors = []
    tasks = tasks_per_node(c)
    if c.cpus_per_task * tasks > limits["cpus"]:
        errors.append(
            ConfigError(
                "cluster.cpus_per_task",
                c.cpus_per_task,
                f"x {tasks} tasks exceeds the {limits['cpus']} CPUs of a {c.partition} node",
            )
        )
    if c.mem_gb * 1024 > limits["mem_mb"]:
        errors.append(
            ConfigError(
                "cluster.mem_gb", c.mem_gb, f"exceeds the {limits['mem_mb'] / 1024:.1f} GB of a {c.partition} node"
            )
        )
    if c.gpus_per_node > limits["gpus"]:
        errors.append(
            ConfigError("cluster.gpus_per_node", c.gpus_per_node, f"a {c.partition} node has {limits['gpus']} GPUs")
        )
    return errors


def throughput_assumption(cfg: DictConfig) -> tuple[float, float, str]:
    """Peak FLOP/s and MFU a run is planned at on its cluster's device, and what they are (kind and source)."""
    precision = str(cfg.train.precision) if cfg.train.precision != Precision.AUTO else Precision.BF16_MIXED
    kind = precision_kind(precision, bool(cfg.train.get("tf32", False)))
    t = HARDWARE[cfg.cluster.gpu_type].at(kind)
    if cfg.cluster.mfu is not None:
        return t.peak_flops, float(cfg.cluster.mfu), f"{kind}, mfu from cluster.mfu"
    return t.peak_flops, t.mfu, f"{kind}, mfu {t.source}"


def estimate(
    point: Point, cfg: DictConfig, data: Availability, epochs: float | None = None, memory: MemoryFit | None = None
) -> PlannedRun:
    """Cost of one run. ``epochs`` and ``memory``: as the preflight found them; when not given they are made here
    (``DataError`` when the run would repeat its data more than ``data.max_epochs`` times)."""
    params, non_emb, fpt = model_costs(cfg, data.model_vocab_size)
    tokens = cfg.train.max_steps * cfg.train.batch_size * cfg.data.seq_len
    if epochs is None:
        epochs = check_epochs(point.name, tokens, data.tokens, float(cfg.data.max_epochs), data.estimate)
    flops = tokens * fpt
    hw = HARDWARE[cfg.cluster.gpu_type]
    peak, mfu, _ = throughput_assumption(cfg)
    gpu_hours = flops / (peak * mfu) / 3600
    kwh = gpu_hours * hw.power_w / 1000 * cfg.cluster.pue
    co2 = kwh * grid_intensity(cfg.cluster)[0]
    status = RunDirectory.for_config(cfg).read_run().status or RunStatus.NEW
    if memory is None:
        memory = memory_fit(cfg, data.model_vocab_size)
    return PlannedRun(
        point,
        cfg,
        params,
        non_emb,
        tokens,
        flops,
        gpu_hours,
        kwh,
        co2,
        status,
        data.tokens,
        epochs,
        data.estimate,
        memory=memory,
        data_published=data.published,
    )


def plan_sweep(sweep: Sweep, extra: list[str] | None = None, stage: Stage = "plan") -> list[PlannedRun]:
    """Expand every point and run its preflight at ``stage`` (``plan``, or ``submit`` before anything is submitted);
    raise :class:`ConfigErrors` naming each invalid point."""
    points = sweep.points(extra)
    errors: list[ConfigError] = []
    cfgs: list[DictConfig | None] = []
    try:
        cfgs = [*compose_many([p.overrides for p in points], config_name=sweep.preset)]
    except ConfigError:
        # find which points fail, one by one, so the message names them
        for p in points:
            try:
                cfgs.append(compose_many([p.overrides], config_name=sweep.preset)[0])
            except ConfigError as exc:
                errors.append(InvalidPoint(p.name, exc))
                cfgs.append(None)
    planned = []
    seen: dict[str, Availability] = {}
    for point, cfg in zip(points, cfgs, strict=True):
        if cfg is None:
            continue
        if cfg.run_name is None:
            name_point(point, cfg.arch.name, cfg.size.name, cfg.seed)
            cfg.run_name = point.name
        try:
            checked = preflight(cfg, stage, data_seen=seen)
        except ConfigErrors as exc:
            errors.extend(InvalidPoint(point.name, e) for e in exc.errors)
            continue
        except ConfigError as exc:
            errors.append(InvalidPoint(point.name, exc))
            continue
        assert checked.data is not None
        run = estimate(point, cfg, checked.data, checked.epochs, checked.memory)
        run.trainable = checked.trainable
        planned.append(run)
    names = [r.point.name for r in planned]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        errors.append(ConfigError("params", dup, "two grid points get the same run name; sweep distinct values"))
    if planned:
        errors.extend(check_cluster_fits(planned[0].cfg))
    if errors:
        raise ConfigErrors(errors)
    return planned


def _human(x: float) -> str:
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def format_plan(sweep: Sweep, runs: list[PlannedRun]) -> str:
    """A table, one row per run, and the totals."""
    header = ("run", "params", "tokens", "data", "epochs", "FLOPs", "GPU-h", "kWh", "kg CO2", "GB/GPU", "status")
    rows = [
        (
            r.point.name,
            _human(r.params),
            _human(r.tokens),
            ("~" if r.data_estimated else "") + _human(r.data_tokens),
            f"{r.epochs:.3g}",
            _human(r.flops),
            f"{r.gpu_hours:.3g}",
            f"{r.kwh:.3g}",
            f"{r.co2_kg:.3g}",
            f"{r.memory.plan.total / GB:.1f}" if r.memory is not None else "-",
            r.status if r.trainable else "plan-only",
        )
        for r in runs
    ]
    todo = [r for r in runs if r.status != RunStatus.DONE]
    total = (
        "total (to run)",
        "",
        _human(sum(r.tokens for r in todo)),
        "",
        "",
        _human(sum(r.flops for r in todo)),
        f"{sum(r.gpu_hours for r in todo):.3g}",
        f"{sum(r.kwh for r in todo):.3g}",
        f"{sum(r.co2_kg for r in todo):.3g}",
        "",
        f"{len(todo)}/{len(runs)}",
    )
    widths = [max(len(str(row[i])) for row in [header, *rows, total]) for i in range(len(header))]
    line = lambda row: "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()  # noqa: E731
    c = runs[0].cfg.cluster if runs else None
    out = [f"sweep {sweep.name} ({sweep.path}): {len(runs)} runs"]
    if sweep.question:
        out.append(f"question: {sweep.question}")
    if runs:
        # which budget decides max_steps, and the FLOP convention of the FLOPs column (models/flops.py)
        kinds = sorted({budget_source(r.cfg).split("=")[0].removeprefix("budget: ") for r in runs})
        conventions = ", ".join(sorted({flops_convention(r.cfg) for r in runs}))
        if kinds == ["train.max_steps"]:
            decides = "budget: train.max_steps (no token or FLOP budget set)"
        else:
            decides = f"budget: {', '.join(kinds)} decides train.max_steps"
            if "train.max_flops" in kinds:
                decides += f" (FLOP budgets in the {conventions} convention)"
        out.append(f"{decides}; the FLOPs column: exact convention")
    if c is not None:
        peak, mfu, what = throughput_assumption(runs[0].cfg)
        intensity, source = grid_intensity(c)
        out.append(
            f"cluster {c.name}: {c.gpu_type} at {peak / 1e12:.4g} TFLOP/s x mfu {mfu:.3g} ({what}), pue {c.pue}, "
            f"grid {intensity:.4g} kg CO2/kWh ({source})"
        )
    out += [line(header), line(["-" * w for w in widths]), *map(line, rows), line(total)]
    out += memory_section(runs) + published_data_section(runs)
    plan_only = [r.point.name for r in runs if not r.trainable]
    if plan_only:
        out.append(
            f"plan-only sizes, costed but cannot be trained (sweep and train refuse them): {', '.join(plan_only)}"
        )
    return "\n".join(out)


def results_root(runs: list[PlannedRun]) -> Path:
    return Path(runs[0].cfg.results_dir) / runs[0].cfg.sweep


# the memory plans printed in full below the table: the largest distinct ones (a grid of seeds shares one)
MEMORY_PLANS_SHOWN = 3


def memory_section(runs: list[PlannedRun]) -> list[str]:
    """On a profile with ``cluster.gpu_memory_gb``: the memory plan per GPU, term by term, of the largest distinct
    plans, each headed by the runs it is. Elsewhere (CPU profiles) one line: there is no GPU to fit."""
    plans: dict[str, list[PlannedRun]] = {}
    for r in runs:
        if r.memory is not None and r.memory.gpu_memory_gb is not None:
            plans.setdefault(r.memory.format(), []).append(r)
    if not plans:
        return ["memory: the GB/GPU column, per rank; not checked, cluster.gpu_memory_gb is not set (docs/memory.md)"]
    largest = sorted(plans.items(), key=lambda item: -item[1][0].memory.plan.total)  # type: ignore[union-attr]
    out = []
    for text, same in largest[:MEMORY_PLANS_SHOWN]:
        names = ", ".join(r.point.name for r in same[:3]) + (f" and {len(same) - 3} more" if len(same) > 3 else "")
        out.append(f"memory per GPU of {names} (docs/memory.md):")
        out += [f"  {line}" for line in text.splitlines()]
    if (more := len(largest) - MEMORY_PLANS_SHOWN) > 0:
        out.append(f"{more} smaller memory plan{'s' if more > 1 else ''}: see the GB/GPU column")
    return out


def published_data_section(runs: list[PlannedRun]) -> list[str]:
    """Which runs were planned on a corpus's published size, not on a copy of it: train needs the data itself."""
    notes: dict[str, list[str]] = {}
    for r in runs:
        if r.data_published:
            notes.setdefault(r.data_published, []).append(r.point.name)
    out = []
    for note, names in notes.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        out.append(
            f"data of {shown}: not in this machine's cache, planned on its published size ({note}); "
            "train needs the data itself (parcae-runner prepare ... data.download=true, on a machine with network)"
        )
    return out
