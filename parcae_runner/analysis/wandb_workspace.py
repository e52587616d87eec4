"""A saved wandb dashboard (workspace) per sweep: the comparison views, set up once, for every run of the sweep.

``parcae-runner wandb-sync <sweep> --workspace`` writes ``<sweep>/wandb-workspace.json``, the specification below, and
(online, with ``WANDB_API_KEY`` and the optional ``wandb-workspaces`` package) saves it as a wandb workspace. With
``--dry-run``, offline or without the package it writes the specification only.

The specification is built from the sweep's own offline wandb runs (their history, summary and config, as wandb
will hold them once uploaded): a panel is included only when the metrics it plots exist in at least one run, so
every panel names keys that exist. Panels group runs by architecture (seed bands: the mean line with its min-max
range over seeds):

- loss against step, tokens and FLOPs (training and validation);
- final validation loss by architecture x size (a bar per ``arch_size``, seeds averaged with their range);
- energy and CO2 per run (summary bars) and energy against step;
- evaluation metrics against step (``eval/<task>/<metric>``, from ``parcae-runner eval`` or evaluation during training);
- the live telemetry: FLOP/s, MFU, peak memory, gradient norm, learning rate.

Spec format (plain JSON, one to one with ``wandb_workspaces``): ``{"entity", "project", "name", "runset": {"group",
"groupby"}, "sections": [{"name", "panels": [panel]}]}``; a panel is ``{"type": "line", "title", "x", "y": [...],
"groupby", "aggfunc", "rangefunc"}`` (``x``, ``y``: history keys) or ``{"type": "bar", "title", "metrics": [...],
"groupby"}`` (``metrics``: summary keys; ``groupby`` a config key, or null for a bar per run).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from parcae_runner.config.errors import ConfigError
from parcae_runner.runs.record import RUN_FILE
from parcae_runner.runs.wandb_offline import find_run_files, read_offline_run
from parcae_runner.util.files import atomic_write_json
from parcae_runner.util.log import log

SPEC_FILE = "wandb-workspace.json"
STEP = "trainer/global_step"
GROUP = "architecture"
ARCH_SIZE = "arch_size"
BAND = {"aggfunc": "mean", "rangefunc": "minmax"}

LOSS_CURVES = (("train/loss", "training loss"), ("val/loss", "validation loss"), ("val/bpb", "validation bits/byte"))
AXES = ((STEP, "step"), ("train/tokens", "tokens"), ("train/flops", "FLOPs"))
TELEMETRY = (
    ("train/flops_per_s", "achieved FLOP/s"),
    ("train/mfu", "MFU"),
    ("train/peak_memory_gib", "peak memory (GiB)"),
    ("train/grad_norm", "gradient norm (before clipping)"),
    ("train/lr", "learning rate"),
    ("train/tokens_per_s", "tokens/s"),
)


def sweep_keys(sweep_root: Path) -> dict[str, Any]:
    """What the sweep's offline wandb runs hold: ``{"runs": [name], "history": set, "summary": set, "config": set,
    "project", "entity"}`` (union over runs and over each run's files: training and post-hoc evaluation)."""
    out: dict[str, Any] = {"runs": [], "history": set(), "summary": set(), "config": set(), "project": None}
    out["entity"] = None
    for run_dir in sorted(p.parent for p in sweep_root.glob(f"*/{RUN_FILE}")):
        files = find_run_files(run_dir)
        if not files:
            continue
        out["runs"].append(run_dir.name)
        for path in files:
            wb = read_offline_run(path)
            for row in wb["history"]:
                out["history"].update(k for k in row if not k.startswith("_"))
            out["summary"].update(k for k in wb["summary"] if not k.startswith("_"))
            out["config"].update(wb["config"])
            out["project"] = out["project"] or wb.get("project")
            out["entity"] = out["entity"] or wb["config"].get("logger", {}).get("entity")
    return out


def _line(title: str, x: str, y: list[str]) -> dict[str, Any]:
    return {"type": "line", "title": title, "x": x, "y": y, "groupby": GROUP, **BAND}


def _bar(title: str, metrics: list[str], groupby: str | None) -> dict[str, Any]:
    return {"type": "bar", "title": title, "metrics": metrics, "groupby": groupby, **(BAND if groupby else {})}


def workspace_spec(sweep_root: Path, sweep: str) -> dict[str, Any]:
    """The workspace specification of a sweep, from its offline wandb runs (see the module docstring)."""
    keys = sweep_keys(sweep_root)
    if not keys["runs"]:
        raise ConfigError("sweep", sweep, f"no run under {sweep_root} has an offline wandb run (train with logger=...)")
    history, summary, config = keys["history"], keys["summary"], keys["config"]
    loss = [
        _line(f"{label} vs {axis}", x, [y])
        for y, label in LOSS_CURVES
        for x, axis in AXES
        if y in history and (x == STEP or x in history)
    ]
    finals = [k for k in ("final_val_loss", "final_val_bpb", "best_val_loss", "final_train_loss") if k in summary]
    by = ARCH_SIZE if ARCH_SIZE in config else GROUP
    final = [_bar(f"{k} by architecture x size", [k], by) for k in finals]
    if "params" in summary:
        final.append(_bar("parameters by architecture x size", ["params"], by))
    energy = [_bar(f"{k} per run", [k], None) for k in ("energy_kwh", "co2_kg", "gpu_hours", "flops") if k in summary]
    energy += [_line(f"{k} so far vs step", STEP, [k]) for k in ("train/energy_kwh", "train/co2_kg") if k in history]
    evals = sorted(k for k in history if k.startswith("eval/") and not k.endswith("_stderr"))
    evaluation = [_line(f"{k[5:]} vs step", STEP, [k]) for k in evals]
    telemetry = [_line(f"{label} vs step", STEP, [k]) for k, label in TELEMETRY if k in history]
    sections = [
        ("Loss", loss),
        ("Final loss", final),
        ("Energy and carbon", energy),
        ("Evaluation", evaluation),
        ("Telemetry", telemetry),
    ]
    return {
        "entity": keys["entity"],
        "project": keys["project"],
        "name": f"{sweep} (parcae-runner)",
        "runset": {"group": sweep, "groupby": [GROUP]},
        "runs": keys["runs"],
        "sections": [{"name": name, "panels": panels} for name, panels in sections if panels],
    }


def to_workspace(spec: dict[str, Any]) -> Any:
    """The ``wandb_workspaces`` Workspace of a specification (needs the optional ``wandb-workspaces`` package)."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces import expr

    def panel(p: dict[str, Any]) -> Any:
        aggfunc, rangefunc = p.get("aggfunc"), p.get("rangefunc")
        if p["type"] == "line":
            x = "Step" if p["x"] == STEP else p["x"]
            return wr.LinePlot(
                title=p["title"],
                x=x,
                y=list(p["y"]),
                groupby=p["groupby"],
                groupby_aggfunc=aggfunc,
                groupby_rangefunc=rangefunc,
            )
        groupby = wr.Config(p["groupby"]) if p["groupby"] else None
        # ungrouped bars have nothing to aggregate: the band is left at its default
        return wr.BarPlot(
            title=p["title"],
            metrics=[wr.SummaryMetric(m) for m in p["metrics"]],
            groupby=groupby,
            groupby_aggfunc=aggfunc if groupby else None,
            groupby_rangefunc=rangefunc if groupby else None,
        )

    return ws.Workspace(
        entity=spec["entity"] or "",
        project=spec["project"] or "",
        name=spec["name"],
        sections=[
            ws.Section(name=s["name"], panels=[panel(p) for p in s["panels"]], is_open=True) for s in spec["sections"]
        ],
        runset_settings=ws.RunsetSettings(
            filters=[expr.Metric("Group") == spec["runset"]["group"]],
            groupby=[expr.Config(k) for k in spec["runset"]["groupby"]],
        ),
    )


def save_workspace(sweep_root: Path, sweep: str, dry_run: bool = False) -> Path:
    """Write the specification beside the sweep; save it to wandb when online with a key and the package."""
    spec = workspace_spec(sweep_root, sweep)
    path = sweep_root / SPEC_FILE
    atomic_write_json(path, spec)
    panels = sum(len(s["panels"]) for s in spec["sections"])
    log(f"workspace specification: {panels} panels over {len(spec['runs'])} runs -> {path}")
    reason = None
    if dry_run:
        reason = "dry run"
    elif not os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        reason = "offline (WANDB_API_KEY is not set)"
    else:
        try:
            workspace = to_workspace(spec)
        except ImportError:
            reason = "the optional package wandb-workspaces is not installed (pip install wandb-workspaces)"
        else:
            if not workspace.entity:
                import wandb

                workspace.entity = wandb.Api().default_entity
            saved = workspace.save()
            log(f"workspace saved: {getattr(saved, 'url', spec['name'])}")
            return path
    log(f"workspace not saved ({reason}); its specification is {path}")
    return path


def read_spec(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
