"""Energy and carbon metering with codecarbon's offline tracker.

One tracker per node (local rank 0): codecarbon measures the whole machine, so a tracker per
rank would count a node's energy once per GPU. Node 0 writes ``emissions.csv``, node N writes
``emissions-node<N>.csv``; the per-node totals are summed across nodes at the end.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch


@dataclass
class EnergyReading:
    energy_kwh: float = 0.0
    co2_kg: float = 0.0
    duration_s: float = 0.0
    # grid carbon intensity actually used, kg CO2 per kWh (emissions / energy)
    intensity_kg_per_kwh: float | None = None
    cpu_model: str | None = None
    gpu_model: str | None = None
    country: str | None = None
    region: str | None = None


class EnergyMeter(L.Callback):
    """Starts codecarbon when training starts and stops it when training ends (or fails)."""

    def __init__(
        self, run_dir: Path, country_iso_code: str, region: str | None, measure_power_secs: float, project_name: str
    ):
        self.run_dir = run_dir
        self.country_iso_code = country_iso_code
        self.region = region
        self.measure_power_secs = measure_power_secs
        self.project_name = project_name
        self.tracker = None
        self.reading = EnergyReading()

    def _output_file(self, trainer: L.Trainer) -> str:
        return "emissions.csv" if trainer.node_rank == 0 else f"emissions-node{trainer.node_rank}.csv"

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.local_rank != 0:
            return
        from codecarbon import OfflineEmissionsTracker

        # codecarbon logs a banner per measurement at INFO; keep the training output readable
        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        self.tracker = OfflineEmissionsTracker(
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
        self.tracker.start()

    def stop(self, trainer: L.Trainer | None = None) -> EnergyReading:
        """Stop metering (idempotent) and return this attempt's totals, summed over nodes."""
        if self.tracker is not None:
            self.tracker.stop()
            data = self.tracker.final_emissions_data
            self.tracker = None
            if data is not None:
                self.reading = EnergyReading(
                    energy_kwh=float(data.energy_consumed),
                    co2_kg=float(data.emissions),
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
        if self.reading.energy_kwh > 0:
            self.reading.intensity_kg_per_kwh = self.reading.co2_kg / self.reading.energy_kwh
        return self.reading

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stop(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.stop()
