"""One run's attempts: the one place that builds ``run.json``'s ``attempt_history`` and the totals over it.

A run is trained by one or more attempts (a requeue, a resubmission, a rerun after a kill). Each attempt that ends
by itself appends one history entry (its status, steps, wall time, energy, batch digest); an attempt killed before
it could (SIGKILL) is recorded by the next one from the energy files it left (``unrecorded``). Totals in ``run.json``
(duration, GPU-hours, energy, CO2) are sums over the history.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parcae_runner.runs.record import RunRecord

# attempts killed before they recorded themselves, as history entries, given the numbers already recorded
Unrecorded = Callable[[set[int]], list[dict[str, Any]]]


@dataclass
class Attempt:
    """One attempt of a run: its number, when and from which step it started, and run.json as it began."""

    record: RunRecord
    number: int
    started: float
    start_step: int
    tokens_per_step: int

    @classmethod
    def next_of(cls, record: RunRecord, start_step: int, tokens_per_step: int) -> Attempt:
        """The attempt after those ``record`` counts, starting now."""
        return cls(record, record.attempts + 1, time.time(), start_step, tokens_per_step)

    def earlier(self) -> list[dict[str, Any]]:
        """The history of the attempts before this one."""
        return [h for h in self.record.attempt_history if h.get("attempt") != self.number]

    def energy_before(self) -> tuple[float, float]:
        """kWh and kg CO2 of the earlier attempts."""
        earlier = self.earlier()
        return sum(h.get("energy_kwh", 0.0) for h in earlier), sum(h.get("co2_kg", 0.0) for h in earlier)


def history_at_start(record: RunRecord, number: int, unrecorded: Unrecorded) -> list[dict[str, Any]]:
    """The history as attempt ``number`` begins: the recorded attempts, then those killed before they could be."""
    recorded = {int(h.get("attempt", 0)) for h in record.attempt_history} | {number}
    return [*record.attempt_history, *unrecorded(recorded)]


@dataclass
class AttemptEnd:
    """How an attempt ended: status, the step reached, and what it measured (``energy``: kWh and kg CO2)."""

    status: str
    step: int
    ended: float
    energy: tuple[float, float] = (0.0, 0.0)
    batch_digest: str | None = None


def history_at_end(attempt: Attempt, end: AttemptEnd) -> list[dict[str, Any]]:
    """The history with this attempt's entry (replacing any it had)."""
    return [
        *attempt.earlier(),
        {
            "attempt": attempt.number,
            "status": end.status,
            "start_step": attempt.start_step,
            "end_step": end.step,
            "started_at": attempt.started,
            "ended_at": end.ended,
            "duration_s": end.ended - attempt.started,
            "energy_kwh": end.energy[0],
            "batch_digest": end.batch_digest,
            "co2_kg": end.energy[1],
        },
    ]


def totals_at_end(attempt: Attempt, end: AttemptEnd, gpus: int) -> dict[str, Any]:
    """``run.json`` fields as the attempt ends: step, tokens, the history and the sums over it.

    ``gpus``: the GPUs this attempt ran on (0 on CPU); an earlier attempt is counted at this one's width."""
    history = history_at_end(attempt, end)
    tokens_per_step = attempt.tokens_per_step
    duration_s = sum(h.get("duration_s", 0.0) for h in history)
    steps_this_attempt = max(0, end.step - attempt.start_step)
    return dict(
        step=end.step,
        tokens=end.step * tokens_per_step,
        attempt_history=history,
        duration_s=duration_s,
        flops=end.step * tokens_per_step * float(attempt.record.get("flops_per_token") or 0.0),
        # wall time x GPUs, summed over attempts (0 for a CPU run)
        gpu_hours=duration_s * gpus / 3600,
        energy_kwh=sum(h["energy_kwh"] for h in history),
        co2_kg=sum(h["co2_kg"] for h in history),
        tokens_per_s=steps_this_attempt * tokens_per_step / max(end.ended - attempt.started, 1e-9),
    )
