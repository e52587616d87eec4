"""Energy and carbon metering with codecarbon's offline tracker.

One tracker per node (local rank 0): codecarbon measures the whole machine, so a tracker per
rank would count a node's energy once per GPU. Node 0 writes ``emissions.csv``, node N writes
``emissions-node<N>.csv``; the per-node totals are summed across nodes at the end.

Energy that survives a kill: every ``logger.energy_flush_secs`` the tracker is flushed (a row in the CSV) and the
attempt's energy so far is written to ``energy/attempt-<A>-node<N>.json`` (atomically). A SIGKILLed attempt writes
no final record, so the next attempt finds its file and counts it (:func:`unrecorded_attempts`): at most one
interval of energy is lost.

Carbon: codecarbon's grid figure for the profile's country, unless ``cluster.carbon_intensity_kg_per_kwh`` gives
one (a data centre's own): then CO2 = metered energy x that figure in the attempt files and run.json, which name
the figure and its source (codecarbon's ``emissions.csv`` keeps its own country figure).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import torch

from parcae_runner.util.files import atomic_write_json

if TYPE_CHECKING:
    from codecarbon import OfflineEmissionsTracker

ENERGY_DIR = "energy"


@dataclass
class EnergyReading:
    energy_kwh: float = 0.0
    co2_kg: float = 0.0
    duration_s: float = 0.0
    # grid carbon intensity actually used, kg CO2 per kWh (emissions / energy), and where that figure comes from
    intensity_kg_per_kwh: float | None = None
    intensity_source: str | None = None
    cpu_model: str | None = None
    gpu_model: str | None = None
    country: str | None = None
    region: str | None = None
    # whether energy_kwh/co2_kg hold every node's meter (summed across ranks), or this node's alone so far
    all_nodes: bool = False


class EnergyMeter(L.Callback):
    """Starts codecarbon when training starts and stops it when training ends (or fails)."""

    def __init__(
        self,
        run_dir: Path,
        country_iso_code: str,
        region: str | None,
        measure_power_secs: float,
        project_name: str,
        attempt: int = 1,
        flush_secs: float = 60.0,
        intensity_kg_per_kwh: float | None = None,
        intensity_source: str | None = None,
    ):
        """``intensity_kg_per_kwh``: a grid figure of one's own (``cluster.carbon_intensity_kg_per_kwh``, e.g. a data
        centre's) that replaces codecarbon's country figure: CO2 = metered energy x that figure."""
        self.run_dir = run_dir
        self.intensity = intensity_kg_per_kwh
        self.intensity_source = intensity_source
        self.attempt = attempt
        self.flush_secs = flush_secs
        self._last_flush = 0.0
        self._node = self._start_step = self._step = 0
        self.country_iso_code = country_iso_code
        self.region = region
        self.measure_power_secs = measure_power_secs
        self.project_name = project_name
        self.tracker: OfflineEmissionsTracker | None = None
        self.reading = EnergyReading()
        self._flushed = (0.0, 0.0)

    def _output_file(self, trainer: L.Trainer) -> str:
        return "emissions.csv" if trainer.node_rank == 0 else f"emissions-node{trainer.node_rank}.csv"

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1:
            # rank 0 counted the attempt in run.json; every node's file must carry that number
            self.attempt = trainer.strategy.broadcast(self.attempt, src=0)
        if trainer.local_rank != 0:
            return
        from codecarbon import OfflineEmissionsTracker

        # codecarbon logs a banner per measurement at INFO; keep the training output readable
        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        tracker = OfflineEmissionsTracker(
            country_iso_code=self.country_iso_code,
            region=self.region,
            output_dir=str(self.run_dir),
            output_file=self._output_file(trainer),
            project_name=self.project_name,
            measure_power_secs=self.measure_power_secs,
            log_level="error",
            save_to_file=True,
            tracking_mode="machine",
            gpu_ids=os.environ.get("CUDA_VISIBLE_DEVICES"),
        )
        self.tracker = tracker
        tracker.start()
        self._node = trainer.node_rank
        self._start_step = self._step = trainer.global_step
        self._last_flush = time.monotonic()
        # the attempt is on record from its first moment, even if it is killed before the first flush
        self._record(0.0, 0.0, final=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._step = trainer.global_step
        if self.tracker is not None and time.monotonic() - self._last_flush >= self.flush_secs:
            self.flush()

    def _co2(self, energy_kwh: float, codecarbon_kg: float) -> float:
        return energy_kwh * self.intensity if self.intensity is not None else codecarbon_kg

    def _file(self) -> Path:
        return energy_file(self.run_dir, self.attempt, self._node)

    def flush(self) -> None:
        """Write the attempt's energy so far (codecarbon's CSV row, and our per-attempt file)."""
        tracker = self.tracker
        assert tracker is not None, "flush() runs only while metering: between on_fit_start and stop"
        self._last_flush = time.monotonic()
        tracker.flush()
        try:
            data = tracker._prepare_emissions_data()  # the totals flush() just wrote; no public getter
        except Exception:  # a codecarbon without it: the CSV row is still there
            return
        energy = float(data.energy_consumed)
        self._flushed = (energy, self._co2(energy, float(data.emissions)))
        self._record(*self._flushed, final=False)

    def so_far(self) -> tuple[float, float]:
        """This attempt's energy (kWh) and CO2 (kg) so far on this node: codecarbon's running totals (measured by its
        own scheduler every ``measure_power_secs``) plus the power it last measured times the time since, so the
        figure is current between measurements. Nothing is measured here: reading it costs well under a millisecond.
        """
        tracker = self.tracker
        if tracker is None:
            return self.reading.energy_kwh, self.reading.co2_kg
        try:
            data = tracker._prepare_emissions_data()  # the running totals; no public getter
            kwh, co2 = float(data.energy_consumed), float(data.emissions)
            watts = sum(p.W for p in (tracker._cpu_power, tracker._gpu_power, tracker._ram_power))
            since_s = max(time.perf_counter() - tracker._last_measured_time, 0.0)
        except Exception:  # a codecarbon without these: the last flushed record
            return self._flushed
        extra = watts * since_s / 3.6e6
        if self.intensity is not None:  # cluster.carbon_intensity_kg_per_kwh replaces codecarbon's figure
            return kwh + extra, (kwh + extra) * self.intensity
        # CO2 at the intensity measured so far (none before the first measurement, when the power is still 0 too)
        return kwh + extra, co2 + (extra * co2 / kwh if kwh > 0 else 0.0)

    def _record(self, energy_kwh: float, co2_kg: float, final: bool) -> None:
        atomic_write_json(
            self._file(),
            {
                "attempt": self.attempt,
                "node": self._node,
                "start_step": self._start_step,
                "step": self._step,
                "energy_kwh": energy_kwh,
                "co2_kg": co2_kg,
                "time": time.time(),
                "final": final,
            },
        )

    def stop(self, trainer: L.Trainer | None = None) -> EnergyReading:
        """Stop metering (idempotent) and return this attempt's totals: summed over nodes when given the trainer (every
        rank calls this at the end of fit), else this node's (see :meth:`add_other_nodes`)."""
        if self.tracker is not None:
            self.tracker.stop()
            data = self.tracker.final_emissions_data
            self.tracker = None
            if data is not None:
                energy = float(data.energy_consumed)
                co2 = self._co2(energy, float(data.emissions))
                self._record(energy, co2, final=True)
                self.reading = EnergyReading(
                    energy_kwh=energy,
                    co2_kg=co2,
                    duration_s=float(data.duration),
                    cpu_model=data.cpu_model,
                    gpu_model=data.gpu_model or None,
                    country=data.country_name,
                    region=data.region or None,
                )
        if trainer is not None and trainer.world_size > 1:
            totals = torch.tensor(
                [self.reading.energy_kwh, self.reading.co2_kg], dtype=torch.float64, device=trainer.strategy.root_device
            )
            totals = trainer.strategy.reduce(totals, reduce_op="sum")
            self.reading.energy_kwh, self.reading.co2_kg = totals.tolist()
            self.reading.all_nodes = True
        if self.intensity is not None:
            self.reading.intensity_kg_per_kwh = self.intensity
            self.reading.intensity_source = self.intensity_source or "cluster.carbon_intensity_kg_per_kwh"
        else:
            if self.reading.energy_kwh > 0:
                self.reading.intensity_kg_per_kwh = self.reading.co2_kg / self.reading.energy_kwh
            where = self.reading.country or self.country_iso_code
            self.reading.intensity_source = f"codecarbon's {where} energy mix" + (
                f" ({self.reading.region})" if self.reading.region else ""
            )
        return self.reading

    def add_other_nodes(self, num_nodes: int) -> EnergyReading:
        """Node 0's reading plus the other nodes' last flushed energy (their attempt files), where the attempt ended
        without the sum across ranks (a rank lost or failed): a node killed outright loses at most one interval."""
        if num_nodes > 1 and not self.reading.all_nodes:
            for node in range(1, num_nodes):
                rec = read_energy_file(energy_file(self.run_dir, self.attempt, node))
                if rec is None:
                    continue
                self.reading.energy_kwh += float(rec["energy_kwh"])
                self.reading.co2_kg += float(rec["co2_kg"])
            self.reading.all_nodes = True
        return self.reading

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stop(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.stop()


def energy_file(run_dir: Path, attempt: int, node: int) -> Path:
    """One node's energy record of one attempt, rewritten at every flush and at the end."""
    return Path(run_dir) / ENERGY_DIR / f"attempt-{attempt}-node{node}.json"


def read_energy_file(path: Path) -> dict | None:
    """The record, or None where it is missing or unreadable (a node killed before its first flush)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def unrecorded_attempts(run_dir: Path, recorded: set[int]) -> list[dict]:
    """Attempts with energy files but no entry in ``run.json`` (killed before they could write one), as history
    entries: their last flushed energy summed over nodes, status ``killed``."""
    totals: dict[int, dict] = {}
    for path in sorted((Path(run_dir) / ENERGY_DIR).glob("attempt-*-node*.json")):
        rec = read_energy_file(path)
        if rec is None:
            continue
        attempt = int(rec["attempt"])
        if attempt in recorded:
            continue
        entry = totals.setdefault(
            attempt,
            {
                "attempt": attempt,
                "status": "killed",
                "start_step": rec.get("start_step"),
                "energy_kwh": 0.0,
                "co2_kg": 0.0,
            },
        )
        entry["end_step"] = rec.get("step")
        entry["energy_kwh"] += float(rec["energy_kwh"])
        entry["co2_kg"] += float(rec["co2_kg"])
        entry["ended_at"] = max(entry.get("ended_at", 0.0), float(rec.get("time", 0.0)))
        # wall time of a killed attempt is unknown (its start was not recorded with it): counted as 0
        entry["duration_s"] = 0.0
    return [totals[a] for a in sorted(totals)]
