"""Shared fixtures: one small tokenized corpus for the whole session, and fast run overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# under PARCAE_REQUIRE_SYSTEM_TESTS=1 (CI) a skipped system test fails the run: see tests/require_system.py
pytest_plugins = ["require_system"]

# Triton kernels on CPU run only under the interpreter, and triton.jit reads this when a kernel is
# decorated: it must be set before any test module imports triton (transformers may import it early)
os.environ["TRITON_INTERPRET"] = "1"

# a test never talks to wandb's servers, whatever the environment says
os.environ["WANDB_MODE"] = "offline"
os.environ.pop("WANDB_API_KEY", None)
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data-cache")


def as_overrides(values: dict[str, object]) -> list[str]:
    """Hydra overrides ``key=value``, one per entry of ``values``, in its order."""
    return [f"{key}={value}" for key, value in values.items()]


def debug_overrides(data_cache: Path, results: Path) -> list[str]:
    """A debug Pythia on a small-vocab copy of the embedded corpus, no loggers, results in ``results``."""
    return [
        "arch=pythia",
        "size=debug",
        "data.vocab_size=512",
        "data.seq_len=64",
        f"data.cache_dir={data_cache}",
        f"results_dir={results}",
        "train.progress=false",
        "logger=none",
    ]


@pytest.fixture
def fast_overrides(data_cache: Path, tmp_path: Path) -> list[str]:
    return debug_overrides(data_cache, tmp_path / "results")
