"""Atomic file writes: a reader sees the old file or the new one, never a mix, and a killed
process leaves no half-written record behind (temp file beside the target, fsync, rename, fsync dir)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[str], Any], sync: bool = True) -> None:
    """Write ``path`` through ``write(temp_path)``, then rename the temp file into place.

    ``sync=False`` skips the fsyncs (tables that can always be rebuilt)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would have
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        if sync:
            fsync_file(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented, key-sorted JSON (values JSON cannot hold are written as their ``str``)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def exclusive_lock(path: Path, what: str, announce_after: float = 0.0) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if absent, never deleted: deleting a lock file races).

    Blocks while another process holds it, saying so once on stderr when the wait passes ``announce_after``
    seconds (short waits for a brief holder, such as another ``run.json`` writer, are not news); the kernel releases
    the lock if the holder dies."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        deadline = time.monotonic() + announce_after
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    print(f"waiting for another process {what} ({path})", file=sys.stderr, flush=True)
                    fcntl.flock(f, fcntl.LOCK_EX)
                    break
                time.sleep(0.005)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
