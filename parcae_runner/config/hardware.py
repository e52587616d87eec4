"""What a device does per second and per watt: the numbers `plan` turns FLOPs into GPU-hours,
kWh and kg CO2. Documented and overridable: a cluster profile sets ``gpu_type``, ``mfu`` and
``pue``; grid carbon intensity comes from codecarbon's own per-country energy-mix table, the
same source the run-time meter uses, so a plan and a finished run are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from parcae_runner.config.schema import Precision


@dataclass(frozen=True)
class Hardware:
    name: str
    # dense bf16 tensor-core peak (fp32 for cpu), FLOP/s, per device
    peak_flops: float
    # board power under training load, W, per device (what codecarbon's NVML reading approaches)
    power_w: float
    # plain fp32 peak (no TF32): what a `train.precision=32` run gets, as the Parc models were trained
    peak_flops_fp32: float = 0.0

    def peak(self, precision: str) -> float:
        full = precision in (Precision.FP32, Precision.FP32_TRUE) and self.name != "cpu"
        return self.peak_flops_fp32 if full and self.peak_flops_fp32 else self.peak_flops


# Peaks from the vendors' data sheets (dense, no sparsity). The CPU line is a 2-core laptop/CI
# box running fp32 PyTorch: an order of magnitude, enough to say "minutes" or "days".
HARDWARE: dict[str, Hardware] = {
    "cpu": Hardware("cpu", peak_flops=1.0e11, power_w=65.0),
    "v100": Hardware("v100", peak_flops=125e12, power_w=300.0, peak_flops_fp32=15.7e12),
    "a100": Hardware("a100", peak_flops=312e12, power_w=400.0, peak_flops_fp32=19.5e12),
    "a100-40gb": Hardware("a100-40gb", peak_flops=312e12, power_w=400.0, peak_flops_fp32=19.5e12),
    "h100": Hardware("h100", peak_flops=989e12, power_w=700.0, peak_flops_fp32=67e12),
    "h200": Hardware("h200", peak_flops=989e12, power_w=700.0, peak_flops_fp32=67e12),
    "l40s": Hardware("l40s", peak_flops=362e12, power_w=350.0, peak_flops_fp32=91.6e12),
}


def device_peak_flops(device_type: str, device_name: str, gpu_type: str, precision: str) -> float | None:
    """Peak FLOP/s of the device a run trains on, for MFU; ``None`` on a CPU (no meaningful peak) or an unknown GPU.

    The device's own name (``torch.cuda.get_device_name``, e.g. "NVIDIA H100 80GB HBM3") decides when it names a
    known model; otherwise the cluster profile's ``gpu_type``."""
    if device_type != "cuda":
        return None
    name = device_name.lower()
    # longest key first: "a100-40gb" is not matched by a device called "A100-SXM4-80GB", "a100" is
    for key in sorted(HARDWARE, key=len, reverse=True):
        if key != "cpu" and key in name.replace(" ", "-"):
            return HARDWARE[key].peak(precision)
    if gpu_type in HARDWARE and gpu_type != "cpu":
        return HARDWARE[gpu_type].peak(precision)
    return None


@cache
def carbon_intensity_kg_per_kwh(country_iso_code: str) -> float:
    """Grid carbon intensity of a country (kg CO2eq per kWh), from codecarbon's energy-mix data."""
    from codecarbon.input import DataSource

    mix = DataSource().get_global_energy_mix_data()
    if country_iso_code not in mix:
        raise KeyError(country_iso_code)
    return mix[country_iso_code]["carbon_intensity"] / 1000.0


def known_countries() -> list[str]:
    from codecarbon.input import DataSource

    return sorted(DataSource().get_global_energy_mix_data())
