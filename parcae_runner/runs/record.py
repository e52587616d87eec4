"""Typed views of ``run.json`` (one run) and ``sweep.json`` (one sweep).

The files stay plain JSON with the keys they always had: a record wraps the parsed object, gives
the known keys as attributes, keeps unknown keys untouched, and is written back atomically.
Statuses are :class:`RunStatus` members, which serialise as their string value.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from parcae_runner.util.files import atomic_write_json, exclusive_lock

RUN_FILE = "run.json"
SWEEP_FILE = "sweep.json"

T = TypeVar("T")


class RunStatus(enum.StrEnum):
    """``run.json`` ``status`` (and the states ``plan``/``status`` derive for runs without one)."""

    NEW = "new"  # planned, no run directory yet (plan)
    PENDING = "pending"  # submitted, not started (status)
    RUNNING = "running"
    REQUEUED = "requeued"  # checkpointed at the time-limit signal; Slurm runs it again
    REQUEUE_LIMIT = "requeue-limit"  # as requeued, but cluster.max_requeues is used up
    STOPPED = "stopped"  # checkpointed at the signal outside Slurm: rerun the command to continue
    INTERRUPTED = "interrupted"
    TERMINATED = "terminated"  # SIGTERM: scancel, or the time limit without the warning signal
    FAILED = "failed"
    DIVERGED = "diverged"  # non-finite steps in a row or the loss guardrail: see train/divergence.py
    LOST = "lost"  # its job left the queue without writing a final status (status)
    DONE = "done"


# a run in one of these states has a checkpoint to resume from, or nothing yet; submitting it again is safe
NEEDS_RESUBMIT = (
    RunStatus.FAILED,
    RunStatus.TERMINATED,
    RunStatus.REQUEUE_LIMIT,
    RunStatus.INTERRUPTED,
    RunStatus.STOPPED,
)
# a run in one of these states is (or will be) worked on by a job
ACTIVE = (RunStatus.RUNNING, RunStatus.REQUEUED, RunStatus.PENDING)


def as_status(value: Any) -> RunStatus | str | None:
    """A status string as its enum member (an unknown string is returned as it is)."""
    if value is None:
        return None
    try:
        return RunStatus(value)
    except ValueError:
        return str(value)


class Field(Generic[T]):
    """One known key of a record, read as an attribute (``default`` when absent)."""

    def __init__(self, default: Any = None, convert: Any = None):
        # a mutable default is copied on every read, so no record shares it
        self.default = default
        self.convert = convert

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    @overload
    def __get__(self, obj: None, owner: type) -> Field[T]: ...
    @overload
    def __get__(self, obj: JsonRecord, owner: type) -> T: ...
    def __get__(self, obj: JsonRecord | None, owner: type) -> Any:
        if obj is None:
            return self
        value = obj.data.get(self.key)
        if value is None:
            return type(self.default)(self.default) if isinstance(self.default, list | dict) else self.default
        return self.convert(value) if self.convert else value


def _deep_merge(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


class JsonRecord(Mapping[str, Any]):
    """A JSON object file read as a mapping; unknown keys are kept as they are."""

    FILE = ""

    def __init__(self, data: Mapping[str, Any] | None = None, path: Path | None = None):
        self.data: dict[str, Any] = dict(data or {})
        self.path = path

    @classmethod
    def file(cls, folder: Path) -> Path:
        return Path(folder) / cls.FILE

    @classmethod
    def read(cls, folder: Path) -> JsonRecord:
        """The record in ``folder`` (empty when the file does not exist yet)."""
        path = cls.file(folder)
        return cls(json.loads(path.read_text()) if path.exists() else {}, path)

    def write(self) -> None:
        assert self.path is not None, "a record read from a folder knows where it is written"
        atomic_write_json(self.path, self.data)

    def update(self, **fields: Any) -> JsonRecord:
        """Merge ``fields`` into the record on disk and write it (atomically); returns it, now equal to the file.

        Read-modify-write under an exclusive lock (``.<file>.lock`` beside it), re-reading the file inside it: a
        writer holding an older copy (training) and another process (``eval`` beside a live run) never lose each
        other's fields."""
        assert self.path is not None, "a record read from a folder knows where it is written"
        with exclusive_lock(
            self.path.with_name(f".{self.path.name}.lock"), f"updating {self.path.name}", announce_after=2.0
        ):
            on_disk = json.loads(self.path.read_text()) if self.path.exists() else {}
            # the file wins over this copy for keys another writer changed; keys only this copy has are kept
            self.data = {**self.data, **on_disk, **fields}
            self.write()
        return self

    def merge(self, key: str, value: Mapping[str, Any]) -> JsonRecord:
        """Merge the mapping ``value`` into the record's ``key`` recursively (nested mappings merged, not replaced),
        reading what is on disk inside the same lock as :meth:`update`: two ``eval`` processes writing results of
        different checkpoints or tasks into ``run.json``'s ``eval`` keep both."""
        assert self.path is not None, "a record read from a folder knows where it is written"
        with exclusive_lock(
            self.path.with_name(f".{self.path.name}.lock"), f"updating {self.path.name}", announce_after=2.0
        ):
            on_disk = json.loads(self.path.read_text()) if self.path.exists() else {}
            self.data = {**self.data, **on_disk}
            self.data[key] = _deep_merge(self.data.get(key) or {}, value)
            self.write()
        return self

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.data!r})"


class RunRecord(JsonRecord):
    """``run.json``: status, identity, attempts and the summary of one run."""

    FILE = RUN_FILE

    status: Field[RunStatus | str | None] = Field(convert=as_status)
    run_name: Field[str | None] = Field()
    sweep: Field[str | None] = Field()
    arch: Field[str | None] = Field()
    size: Field[str | None] = Field()
    seed: Field[int | None] = Field()
    data_seed: Field[int | None] = Field()
    attempts: Field[int] = Field(0, int)
    attempt_history: Field[list[dict[str, Any]]] = Field([])
    wandb_id: Field[str | None] = Field()
    max_steps: Field[int | None] = Field()
    step: Field[int | None] = Field()
    tokens_per_step: Field[int | None] = Field()
    tokens_per_s: Field[float | None] = Field()
    params: Field[int | None] = Field()
    params_non_embedding: Field[int | None] = Field()
    # training FLOPs per token (models/flops.py), and in all: step x tokens_per_step x flops_per_token
    flops_per_token: Field[float | None] = Field()
    flops: Field[float | None] = Field()
    # wall time x GPUs over every attempt (0 on a CPU)
    gpu_hours: Field[float | None] = Field()
    hardware: Field[dict[str, Any]] = Field({})
    started_at: Field[float | None] = Field()
    finished_at: Field[float | None] = Field()
    duration_s: Field[float | None] = Field()
    energy_kwh: Field[float | None] = Field()
    co2_kg: Field[float | None] = Field()
    error: Field[str | None] = Field()
    # "checkpoint-N" -> {result key: metrics}: what `parcae-runner eval` and evaluation during training wrote
    eval: Field[dict[str, dict[str, Any]]] = Field({})
    # summary of metrics.jsonl at the end of each attempt (looped models add final_*@R<r> keys)
    final_val_loss: Field[float | None] = Field()
    final_val_bpb: Field[float | None] = Field()
    best_val_loss: Field[float | None] = Field()
    final_train_loss: Field[float | None] = Field()

    @property
    def data_info(self) -> dict[str, Any]:
        """The prepared data: dir, vocab_size (the tokenizer's), model_vocab_size (the embedding's, padded), eos_id,
        source, tokenizer_sha256, hash, train_tokens, val_tokens (``"data"`` on disk;
        the attribute ``data`` is the whole record)."""
        return self.data.get("data") or {}

    @classmethod
    def read(cls, folder: Path) -> RunRecord:
        return super().read(folder)  # type: ignore[return-value]

    def update(self, **fields: Any) -> RunRecord:
        return super().update(**fields)  # type: ignore[return-value]


class SweepRecord(JsonRecord):
    """``results/<sweep>/sweep.json``: the grid of a sweep, its submissions and their job ids."""

    FILE = SWEEP_FILE

    name: Field[str | None] = Field()
    variant: Field[str | None] = Field()
    question: Field[str | None] = Field()
    preset: Field[str | None] = Field()
    params: Field[dict[str, Any]] = Field({})
    fixed: Field[dict[str, str]] = Field({})
    cluster: Field[str | None] = Field()
    launcher: Field[str | None] = Field()
    overrides: Field[list[str]] = Field([])
    runs: Field[list[str]] = Field([])
    jobs: Field[dict[str, str]] = Field({})
    submissions: Field[list[dict[str, Any]]] = Field([])

    @property
    def file_path(self) -> str | None:
        """The sweep file (``"file"`` on disk; ``file()`` locates the record itself)."""
        return self.data.get("file")

    @classmethod
    def read(cls, folder: Path) -> SweepRecord:
        return super().read(folder)  # type: ignore[return-value]

    def update(self, **fields: Any) -> SweepRecord:
        return super().update(**fields)  # type: ignore[return-value]


# run.json fields that make the wandb run's summary: what a dashboard's run table shows for the whole run
SUMMARY_FIELDS = (
    "status",
    "attempts",
    "step",
    "tokens",
    "flops",
    "params",
    "params_non_embedding",
    "final_train_loss",
    "final_val_loss",
    "final_val_bpb",
    "best_val_loss",
    "duration_s",
    "gpu_hours",
    "energy_kwh",
    "co2_kg",
    "tokens_per_s",
)


def wandb_summary(run: Mapping[str, Any]) -> dict[str, Any]:
    """The wandb summary of a run, from its run.json: final and best losses, bpb, size, tokens, FLOPs, GPU-hours,
    energy, CO2, attempts and status (and a looped model's per-depth final losses)."""
    out = {k: run[k] for k in SUMMARY_FIELDS if run.get(k) is not None}
    out.update({k: v for k, v in run.items() if k.startswith("final_") and "@R" in k})
    return json.loads(json.dumps(out))  # plain JSON values: a status is its string, as in run.json
