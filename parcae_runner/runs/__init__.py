"""The run-directory and sweep-record contract: every reader and writer of a run goes through it.

- :mod:`~parcae_runner.runs.layout`: the paths of a run directory, the one ``run_name``;
- :mod:`~parcae_runner.runs.record`: ``RunRecord`` (run.json), ``SweepRecord`` (sweep.json), ``RunStatus``;
- :mod:`~parcae_runner.runs.checkpoints`: listing checkpoints, ``load_model(run, step)``;
- :mod:`~parcae_runner.runs.metrics`: reading ``metrics.jsonl``;
- :mod:`~parcae_runner.runs.provenance`: hardware, container image, git commit.

Atomic writes are :mod:`parcae_runner.util.files` (below every package, so ``data`` can use them too).
"""

from parcae_runner.runs.checkpoints import (
    PREFIX,
    RESUME_FILE,
    WEIGHTS_FILE,
    checkpoint_path,
    latest_resumable,
    list_checkpoints,
    load_model,
    read_meta,
)
from parcae_runner.runs.layout import RunDirectory, open_run, run_name, sweep_file, sweep_root
from parcae_runner.runs.metrics import read_metrics
from parcae_runner.runs.record import RunRecord, RunStatus, SweepRecord

__all__ = [
    "PREFIX",
    "RESUME_FILE",
    "WEIGHTS_FILE",
    "RunDirectory",
    "RunRecord",
    "RunStatus",
    "SweepRecord",
    "checkpoint_path",
    "latest_resumable",
    "list_checkpoints",
    "load_model",
    "open_run",
    "read_meta",
    "read_metrics",
    "run_name",
    "sweep_file",
    "sweep_root",
]
