"""Read a wandb offline run file (``run-<id>.wandb``) without uploading it.

wandb keeps an offline run's history, config, group, job type and tags only in this binary
file, written in LevelDB's log format: 32 KiB blocks of records, each with a 7-byte header
(crc32c, length, type) and chunked across blocks (FULL / FIRST / MIDDLE / LAST). The file
begins with a 7-byte wandb header (``:W&B``, magic, version). Payloads are
``wandb_internal_pb2.Record`` messages. Current wandb ships no Python reader for it, hence this.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from parcae_runner.runs.layout import WANDB_DIR

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> Iterator[bytes]:
    if data[:4] != b":W&B":
        raise ValueError("not a wandb run file (missing ':W&B' header)")
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block trailer: zero padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""
        elif kind == 0 and length == 0:  # zero-filled tail of a file still being written
            break


def read_records(path: str | Path) -> Iterator[Any]:
    """Yield the ``Record`` protobuf messages of an offline run file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    for payload in _payloads(Path(path).read_bytes()):
        record = pb.Record()  # type: ignore[attr-defined]  # generated protobuf module, no stubs
        record.ParseFromString(payload)
        yield record


def read_offline_run(path: str | Path) -> dict[str, Any]:
    """The run's identity, config and history: ``{"id", "group", "job_type", "tags", "name",
    "config": {...}, "history": [{"_step": ..., key: value}, ...], "summary": {key: value}}`` (the summary as last
    written)."""
    out: dict[str, Any] = {"config": {}, "history": [], "summary": {}}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.update(
                id=run.run_id,
                group=run.run_group,
                job_type=run.job_type,
                tags=list(run.tags),
                name=run.display_name,
                project=run.project,
            )
            for item in run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            row = {}
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            out["history"].append(row)
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out


def find_run_files(run_dir: str | Path) -> list[Path]:
    """All offline run files under a run directory, oldest attempt first."""
    return sorted(Path(run_dir).glob(f"{WANDB_DIR}/offline-run-*/run-*.wandb"))


def is_complete(path: str | Path) -> bool:
    """Whether an offline run file ends with its ``exit`` record (the run was finished and its file written out).
    A file still being written can end in a partial record: that is "not yet", not an error."""
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]  # protobuf ships no stubs here

    try:
        last = None
        for record in read_records(path):
            last = record
        return last is not None and last.WhichOneof("record_type") == "exit"
    except (OSError, ValueError, DecodeError):
        return False


def finish_run(run: Any, exit_code: int = 0, timeout_s: float = 60.0) -> None:
    """``run.finish()``, then wait until an offline run's file is written out: wandb's service writes it on its own
    schedule, after ``finish`` returns, and a reader (a test, ``collect``, ``wandb sync``) must find it whole."""
    offline = bool(getattr(run.settings, "_offline", False)) or run.settings.mode in ("offline", "dryrun")
    sync_file = getattr(run.settings, "sync_file", None)
    run.finish(exit_code=exit_code)
    if not (offline and sync_file):
        return
    deadline = time.monotonic() + timeout_s
    while not is_complete(sync_file) and time.monotonic() < deadline:
        time.sleep(0.05)
