"""`make bench-gpu`: on a machine without CUDA it says it needs a GPU and exits 0; its measuring and reporting path
runs here on a CPU with a tiny model (the debug size, a short sequence, a few steps), the FSDP measurement of the 1B
LLaMA included (at debug size, over gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
    path = os.pathsep.join([str(BENCH.parent), os.environ.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        # no GPU visible, whatever the machine has
        env={
            **os.environ,
            "CUDA_VISIBLE_DEVICES": "",
            "PYTHONPATH": path,
        },
    )
    assert out.returncode == 0, out.stderr
    assert "needs a CUDA GPU" in out.stdout and not list(tmp_path.iterdir())


def test_measuring_and_reporting_run_on_a_cpu_with_a_tiny_model(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import gpu

    assert gpu.nearest_size("parcae", "160m") == "140m" and gpu.nearest_size("pythia", "160m") == "160m"
    args = ["--allow-cpu", "--out-dir", str(tmp_path), "--archs", "pythia,mamba", "--size", "debug"]
    args += ["--dtype", "float32", "--batch", "2", "--seq-len", "32", "--vocab", "256", "--warmup", "1", "--steps", "2"]
    args += ["--compile", "off", "--kernels", "wkv4", "--fsdp-arch", "llama", "--fsdp-size", "debug"]
    report = gpu.main(args)
    (written,) = [p for p in tmp_path.glob("gpu-*.json") if "kernels" not in p.name]
    assert json.loads(written.read_text()) == json.loads(json.dumps(report))
    assert report["device_type"] == "cpu" and not report["errors"]
    measured = [(m["arch"], m["compile"], m["strategy"]) for m in report["models"]]
    assert measured == [("pythia", False, "single"), ("mamba", False, "single"), ("llama", False, "fsdp")]
    for m in report["models"]:
        assert m["tokens_per_s"] > 0 and m["mfu"] is None  # a CPU has no peak to divide by
        assert m["flops_per_s"] == pytest.approx(m["tokens_per_s"] * m["flops_per_token"])
        assert m["peak_memory_gib"] > 0 and m["params"] > 0
    # the 1B LLaMA's FSDP path at debug size: sharded as training shards it, in a process group of its own
    (fsdp,) = [m for m in report["models"] if m["strategy"] == "fsdp"]
    assert fsdp["world_size"] == 1
    assert fsdp["params"] == gpu.count_parameters(gpu.build_model({"name": "llama"}, "debug", 256))
    assert report["fsdp_mfu_goal"] == 0.40 and not torch.distributed.is_initialized()
    assert report["kernels"]["kernels"]["wkv4"]["by_dtype"]["float32"]["results"]["triton"] == {"skipped": "needs CUDA"}
