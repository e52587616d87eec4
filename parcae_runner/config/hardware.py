"""What a device does per second and per watt: the numbers `plan` turns FLOPs into GPU-hours,
kWh and kg CO2. Documented and overridable: a cluster profile sets ``gpu_type``, ``mfu`` (null: the measured
utilisation below, per precision) and ``pue``; grid carbon intensity comes from codecarbon's own per-country
energy-mix table, the same source the run-time meter uses, unless ``cluster.carbon_intensity_kg_per_kwh`` names
a figure (a data centre's own), which both then use.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from parcae_runner.config.schema import Precision

# What a run's arithmetic runs on: fp32 (CUDA cores), tf32 (fp32 storage, TF32 tensor-core matmuls: train.tf32)
# and bf16 (bf16/fp16 tensor cores: every mixed or half precision)
FP32, TF32, BF16 = "fp32", "tf32", "bf16"
KINDS = (FP32, TF32, BF16)


def precision_kind(precision: str, tf32: bool = False) -> str:
    """The arithmetic a ``train.precision`` (with ``train.tf32``) runs its matmuls in."""
    if precision in (Precision.FP32, Precision.FP32_TRUE):
        return TF32 if tf32 else FP32
    return BF16


@dataclass(frozen=True)
class Throughput:
    """Peak FLOP/s of one device in one precision and the model-FLOP utilisation (MFU) training reaches there."""

    peak_flops: float
    mfu: float
    # where the MFU comes from: a published measurement, or what was assumed and why
    source: str

    @property
    def flops(self) -> float:
        return self.peak_flops * self.mfu


@dataclass(frozen=True)
class Hardware:
    name: str
    # board power under training load, W, per device (what codecarbon's NVML reading approaches)
    power_w: float
    # per precision kind (fp32, tf32, bf16)
    throughput: dict[str, Throughput]

    def at(self, kind: str) -> Throughput:
        return self.throughput[kind]

    @property
    def peak_flops(self) -> float:
        return self.throughput[BF16].peak_flops


# Peaks: the vendors' data sheets, dense (no sparsity). MFU: model FLOPs (models/flops.py) over peak, as measured in
# training runs published with their hardware; where no measurement exists for a kind, the assumption is stated.
# - bf16 A100: MosaicML llm-foundry, scripts/train/benchmarking/README.md, "A100 80GB" table: a 125M GPT at
#   sequence 1,024 on 8 GPUs trains at 43.15% MFU (amp_bf16); 42.56% at 512, 44.8% at 2,048.
# - bf16 H100: the same README, "H100 80GB BF16" table: the smallest model listed (760M) at sequence 1,024 reaches
#   39.76% MFU; small models use a fast GPU less well.
# - fp32 A100: the Parc model cards (Michaelov et al. 2025): Pythia-160m, Mamba-130m and RWKV-169m each trained
#   for 4,000 x 512 x 1,024 tokens in fp32 (HF Trainer, TF32 off, PyTorch's default) in about 42 A100-hours
#   (~31 A100-days for the 18 runs); 1.68e18 model FLOPs / 42 h = 11.1 TFLOP/s = 57% of 19.5 TFLOP/s. In fp32
#   the CUDA-core GEMMs are slow enough that they dominate a step, hence a higher fraction than bf16's.
# - tf32: no published small-model measurement found; assumed 0.35, below bf16's (the same tensor cores at half
#   bf16's rate, and the fp32 activations move twice the bytes through the memory-bound ops).
# - other GPUs: the A100's fractions for the same kind, assumed (no measurement at these sizes).
# The CPU line is a 2-core laptop/CI box running fp32 PyTorch: an order of magnitude, enough to say minutes or days.
_BF16_A100 = "llm-foundry benchmarking README, A100-80GB, 125M at seq 1024: 43% MFU"
_BF16_H100 = "llm-foundry benchmarking README, H100-80GB, 760M at seq 1024: 40% MFU"
_FP32_A100 = "Parc model cards: ~42 A100-hours per 160M fp32 run = 57% of the fp32 peak"
_TF32 = "assumed (no published measurement): below bf16's 43%"


def _gpu(name: str, power_w: float, fp32: float, tf32: float, bf16: float, bf16_mfu=0.43, bf16_src=None) -> Hardware:
    carried = f" ({name}: the A100's fraction, assumed)" if name not in ("a100", "a100-40gb") else ""
    return Hardware(
        name,
        power_w,
        {
            FP32: Throughput(fp32, 0.57, _FP32_A100 + carried),
            TF32: Throughput(tf32, 0.35, _TF32 + carried),
            BF16: Throughput(bf16, bf16_mfu, bf16_src or _BF16_A100 + carried),
        },
    )


HARDWARE: dict[str, Hardware] = {
    "cpu": Hardware("cpu", 65.0, {k: Throughput(1.0e11, 0.4, "a 2-core CPU box, order of magnitude") for k in KINDS}),
    # V100 data sheet (SXM2): fp32 15.7, fp16 tensor 125 TFLOP/s; no TF32 (its tf32 is plain fp32)
    "v100": _gpu("v100", 300.0, fp32=15.7e12, tf32=15.7e12, bf16=125e12),
    # A100 data sheet: fp32 19.5, TF32 156, BF16 312 TFLOP/s (dense)
    "a100": _gpu("a100", 400.0, fp32=19.5e12, tf32=156e12, bf16=312e12),
    "a100-40gb": _gpu("a100-40gb", 400.0, fp32=19.5e12, tf32=156e12, bf16=312e12),
    # H100 SXM data sheet: fp32 67, TF32 494.5, BF16 989 TFLOP/s (dense; the sheet's 989/1979 are with sparsity)
    "h100": _gpu("h100", 700.0, fp32=67e12, tf32=494.5e12, bf16=989e12, bf16_mfu=0.40, bf16_src=_BF16_H100),
    # H200: the H100's compute (data sheet), more and faster memory
    "h200": _gpu("h200", 700.0, fp32=67e12, tf32=494.5e12, bf16=989e12, bf16_mfu=0.40, bf16_src=_BF16_H100),
    # L40S data sheet: fp32 91.6, TF32 183, BF16 362 TFLOP/s (dense)
    "l40s": _gpu("l40s", 350.0, fp32=91.6e12, tf32=183e12, bf16=362e12),
}


def device_peak_flops(
    device_type: str, device_name: str, gpu_type: str, precision: str, tf32: bool = False
) -> float | None:
    """Peak FLOP/s of the device a run trains on, for MFU; ``None`` on a CPU (no meaningful peak) or an unknown GPU.

    The device's own name (``torch.cuda.get_device_name``, e.g. "NVIDIA H100 80GB HBM3") decides when it names a
    known model; otherwise the cluster profile's ``gpu_type``. The peak is that of the arithmetic ``precision`` (and
    ``tf32``: fp32 matmuls on TF32 tensor cores) runs in."""
    if device_type != "cuda":
        return None
    kind = precision_kind(precision, tf32)
    name = device_name.lower()
    # longest key first: "a100-40gb" is not matched by a device called "A100-SXM4-80GB", "a100" is
    for key in sorted(HARDWARE, key=len, reverse=True):
        if key != "cpu" and key in name.replace(" ", "-"):
            return HARDWARE[key].at(kind).peak_flops
    if gpu_type in HARDWARE and gpu_type != "cpu":
        return HARDWARE[gpu_type].at(kind).peak_flops
    return None


@cache
def carbon_intensity_kg_per_kwh(country_iso_code: str) -> float:
    """Grid carbon intensity of a country (kg CO2eq per kWh), from codecarbon's energy-mix data."""
    from codecarbon.input import DataSource

    mix = DataSource().get_global_energy_mix_data()
    if country_iso_code not in mix:
        raise KeyError(country_iso_code)
    return mix[country_iso_code]["carbon_intensity"] / 1000.0


def grid_intensity(cluster) -> tuple[float, str]:
    """The grid carbon intensity a cluster profile implies (kg CO2eq/kWh) and where the figure comes from."""
    if cluster.carbon_intensity_kg_per_kwh is not None:
        source = cluster.carbon_intensity_source or "cluster.carbon_intensity_kg_per_kwh"
        return float(cluster.carbon_intensity_kg_per_kwh), source
    code = cluster.country_iso_code
    return carbon_intensity_kg_per_kwh(code), f"codecarbon's {code} energy mix"


def known_countries() -> list[str]:
    from codecarbon.input import DataSource

    return sorted(DataSource().get_global_energy_mix_data())
