"""The one progress logger: ``[<source>] message`` lines on stderr, flushed at once (Slurm logs, pipes)."""

from __future__ import annotations

import sys

PREFIX = "parcae-runner"


def log(message: str, source: str = PREFIX) -> None:
    print(f"[{source}] {message}", file=sys.stderr, flush=True)
