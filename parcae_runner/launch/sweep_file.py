"""Sweep files (``sweeps/<study>.yaml``) and their expansion into a grid of runs.

A sweep file states its question in a header comment and holds::

    name: parc                  # results/<name>/ ; a variant appends "-<variant>"
    preset: config              # the launch_configs/ preset every point starts from
    params:                     # the grid, in Hydra's sweep syntax (as hydra.sweeper.params)
      arch: pythia,mamba,rwkv4  #   a,b,c | range(0,6) | choice(...) | a single value
      seed: range(0,6)
    fixed:                      # overrides shared by every point
      train.max_steps: 4000
    variants:                   # named edits of params/fixed, e.g. a CPU-sized demo
      demo: {params: {size: debug}, fixed: {train.max_steps: 100}}

The cartesian product of ``params`` is expanded with Hydra's own override parser, the same
grammar ``--multirun`` accepts, so a grid written for Hydra means the same thing here.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from parcae_runner.config.errors import ConfigError

# run names: <arch>-<size>-s<seed> then the other swept keys, in file order
NAME_KEYS = ("arch", "size", "seed")


@dataclass
class Point:
    """One run of a sweep: its name and the overrides that make its config."""

    name: str
    overrides: list[str]
    swept: dict[str, str] = field(default_factory=dict)


@dataclass
class Sweep:
    name: str
    path: Path
    preset: str
    params: dict[str, str]
    fixed: dict[str, Any]
    question: str
    variant: str | None = None

    def points(self, extra: list[str] | None = None) -> list[Point]:
        """The grid, one :class:`Point` per combination; ``extra`` overrides apply to all."""
        keys = list(self.params)
        axes = [_expand(k, v) for k, v in self.params.items()]
        fixed = [f"{k}={_scalar(v)}" for k, v in self.fixed.items()]
        points = []
        for combo in itertools.product(*axes):
            swept = dict(zip(keys, combo, strict=True))
            overrides = [*fixed, *(f"{k}={v}" for k, v in swept.items()), *(extra or [])]
            # provisional name (for error messages); name_point() sets the final one once composed
            points.append(Point(run_name(swept), [*overrides, f"sweep={self.name}"], swept))
        return points


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str) and "${" in value and not value.startswith(("'", '"')):
        # Hydra's override grammar takes a resolver interpolation (${f:a,b}) only as a quoted string
        return f'"{value}"'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_scalar(v) for v in value) + "]"
    return str(value)


def _expand(key: str, value: Any) -> list[str]:
    """Values of one grid axis, e.g. ``range(0,3)`` -> ["0", "1", "2"]."""
    text = ",".join(_scalar(v) for v in value) if isinstance(value, list) else _scalar(value)
    try:
        (override,) = OverridesParser.create().parse_overrides([f"{key}={text}"])
    except HydraException as exc:
        raise ConfigError(f"params.{key}", text, f"not a Hydra sweep value: {str(exc).splitlines()[0]}") from None
    if override.is_sweep_override():
        return [str(v) for v in override.sweep_string_iterator()]
    return [override.get_value_element_as_str()]


def _slug(text: str) -> str:
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None and (abs(number) >= 1e5 or 0 < abs(number) < 1e-3):
        text = f"{number:.3g}".replace("e+", "e").replace("e0", "e")  # 5e10, not 50000000000.0
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def name_point(point: Point, arch: str, size: str, seed: int) -> None:
    """Give a composed point its final name, ``<arch>-<size>-s<seed>`` plus its other swept keys."""
    point.name = run_name({**point.swept, "arch": arch, "size": size, "seed": str(seed)})
    point.overrides.append(f"run_name={point.name}")


def run_name(swept: dict[str, str]) -> str:
    """``<arch>-<size>-s<seed>`` followed by ``<key><value>`` for every other swept key."""
    parts = []
    if "arch" in swept:
        parts.append(swept["arch"])
    if "size" in swept:
        parts.append(swept["size"])
    if "seed" in swept:
        parts.append(f"s{swept['seed']}")
    for key, value in swept.items():
        if key not in NAME_KEYS:
            parts.append(f"{_slug(key.rsplit('.', 1)[-1])}{_slug(value)}")
    return "-".join(parts) or "run"


def _question(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines).strip()


def preset_as_sweep(path: Path) -> Sweep:
    """A launch_configs/ preset planned as a sweep of one run (``plan launch_configs/<preset>.yaml``)."""
    from parcae_runner.config.presets import resolve_config_arg

    name = resolve_config_arg(str(path))
    return Sweep(
        name=f"preset-{name}",
        path=path,
        preset=name,
        params={"seed": "0"},
        fixed={},
        question=_question(path.read_text()),
    )


def load_sweep(path: str | Path, variant: str | None = None) -> Sweep:
    """Read and check a sweep file (or a preset of the config tree); a bad file raises
    :class:`ConfigError` (exit code 2)."""
    path = Path(path)
    if path.is_file() and (path.parent / "config.yaml").is_file() and variant is None:
        return preset_as_sweep(path)
    if not path.is_file():
        found = sorted(p.name for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        raise ConfigError("sweep", str(path), f"no such sweep file; found: {', '.join(found) or 'none'}")
    text = path.read_text()
    try:
        spec = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError("sweep", str(path), f"does not parse as YAML: {exc}") from None
    if not isinstance(spec, dict):
        raise ConfigError("sweep", str(path), "must be a mapping with name, params and fixed")
    unknown = set(spec) - {"name", "preset", "params", "fixed", "variants"}
    if unknown:
        raise ConfigError(
            f"sweep.{sorted(unknown)[0]}", str(path), "allowed keys: name, preset, params, fixed, variants"
        )
    params = dict(spec.get("params") or {})
    fixed = dict(spec.get("fixed") or {})
    name = spec.get("name") or path.stem
    if variant is not None:
        variants = spec.get("variants") or {}
        if variant not in variants:
            raise ConfigError("variant", variant, f"{path.name} has variants: {', '.join(variants) or 'none'}")
        params.update((variants[variant] or {}).get("params") or {})
        fixed.update((variants[variant] or {}).get("fixed") or {})
        name = f"{name}-{variant}"
    if not params:
        raise ConfigError("sweep.params", str(path), "a sweep needs at least one grid key under params")
    return Sweep(
        name=name,
        path=path,
        preset=spec.get("preset", "config"),
        params=params,
        fixed=fixed,
        question=_question(text),
        variant=variant,
    )
