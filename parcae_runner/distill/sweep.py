"""``parcae-runner distill --sweep sweeps/distill.yaml [--variant demo]``: the norm x seed grid, run one after the
other into ``<results_dir>/<sweep>/``, then the report: held-out KL against step per norm, mean with the seed range.

The sweep file has the layout of the training sweeps (``name``, ``params`` as ``a,b`` or ``range(a,b)``, ``fixed``,
``variants.<name>.{params,fixed}``), with ``distill.*`` keys.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import yaml

from parcae_runner.config.errors import ConfigError
from parcae_runner.distill.config import load_config
from parcae_runner.runs import RunDirectory, RunStatus


def _values(key: str, spec: Any) -> list[str]:
    text = str(spec)
    match = re.fullmatch(r"range\((\d+),\s*(\d+)\)", text)
    if match:
        return [str(i) for i in range(int(match[1]), int(match[2]))]
    return [v.strip() for v in text.split(",") if v.strip()]


def expand(path: str | Path, variant: str | None) -> tuple[str, list[list[str]]]:
    """(sweep name, one override list per grid point)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("--sweep", str(path), "no such sweep file")
    spec = yaml.safe_load(path.read_text()) or {}
    params, fixed = dict(spec.get("params") or {}), dict(spec.get("fixed") or {})
    if variant is not None:
        variants = spec.get("variants") or {}
        if variant not in variants:
            raise ConfigError("--variant", variant, f"choose one of: {', '.join(variants) or '(none)'}")
        params |= variants[variant].get("params") or {}
        fixed |= variants[variant].get("fixed") or {}
    name = str(spec.get("name", path.stem)) + (f"-{variant}" if variant else "")
    keys = list(params)
    grid = itertools.product(*(_values(k, params[k]) for k in keys))
    base = [f"{k}={v}" for k, v in fixed.items()] + [f"sweep={name}"]
    return name, [base + [f"{k}={v}" for k, v in zip(keys, point, strict=True)] for point in grid]


def run_sweep(path: str | Path, variant: str | None, extra: list[str]) -> Path:
    """Run every point not already done; write the report; return the sweep folder."""
    from parcae_runner.distill.pipeline import distill
    from parcae_runner.distill.report import write_report

    _, points = expand(path, variant)
    configs = [load_config(p + extra) for p in points]  # every point checked before any runs
    for cfg in configs:
        rd = RunDirectory(Path(cfg.results_dir) / cfg.sweep / (cfg.run_name or f"{cfg.norm}-s{cfg.seed}"))
        if rd.run_file.exists() and rd.read_run().status == RunStatus.DONE:
            continue
        distill(cfg)
    root = Path(configs[0].results_dir) / configs[0].sweep
    write_report(root)
    return root
