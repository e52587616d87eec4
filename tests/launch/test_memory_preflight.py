"""The memory plan at the command line (issue 26). `plan` prints it per GPU and refuses a run that does not fit
`cluster.gpu_memory_gb`, naming the smallest change that fits; `train`, `launch` and `sweep` refuse it too, before
anything is written or submitted (a recording `sbatch` first on PATH). A plan-only size trains under FSDP on the GPU
count the plan names. `plan` of a corpus this machine has no copy of uses its published size and says so, while
`launch` still needs the data. Sharding an architecture without sharding units, or a batch that the FSDP world does
not divide, is bad input: exit 2, one line."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from parcae_runner.cli import main
from tests.launch.test_sweeps import cli, write_sweep

ERROR = "parcae-runner: error: "
# acceptance 5: the debug preset's batch (two micro-batches of 8 x 128 tokens) on LLaMA 7B on the A100 profile
LLAMA_7B = ["arch=llama", "size=llama-7b", "cluster=slurm_a100"]
TOY = Path(__file__).resolve().parents[1] / "models" / "toy_arch"


@pytest.fixture
def where(tmp_path, data_cache) -> list[str]:
    return [f"results_dir={tmp_path / 'results'}", f"data.cache_dir={data_cache}"]


@pytest.fixture
def sbatch_calls(tmp_path, monkeypatch) -> Path:
    """An `sbatch` first on PATH that notes its call and fails: nothing reaches a queue, whatever happens."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "sbatch-calls"
    bin_dir.mkdir()
    shim = bin_dir / "sbatch"
    shim.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(ERROR)]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def test_plan_refuses_ddp_for_llama_7b_naming_fsdp_and_the_gpu_count_then_plans_it_there(tmp_path, where):
    refused = cli("plan", "launch_configs/pythia-debug.yaml", *LLAMA_7B, "train.strategy=ddp", *where)
    assert refused.returncode == 2, refused.stderr[-3000:]
    message = one_error_line(refused.stderr)
    found = re.search(
        r"smallest change that fits: train\.strategy=fsdp cluster\.gpus_per_node=(\d+) \(([\d.]+) GB", message
    )
    assert found, message
    gpus, gb = int(found[1]), float(found[2])
    assert gpus > 1 and gb <= 80 and "above cluster.gpu_memory_gb=80" in message

    planned = cli(
        "plan",
        "launch_configs/pythia-debug.yaml",
        *LLAMA_7B,
        "train.strategy=fsdp",
        f"cluster.gpus_per_node={gpus}",
        *where,
    )
    assert planned.returncode == 0, planned.stderr[-3000:]
    out = planned.stdout
    header = next(line for line in out.splitlines() if line.startswith("run "))
    row = next(line for line in out.splitlines() if line.startswith("llama-llama-7b-s0 "))
    assert header.split()[-2:] == ["GB/GPU", "status"]
    # the plan-only size is trainable there: its status is that of a new run
    assert float(row.split()[-2]) == gb and row.split()[-1] == "new", row
    assert f"strategy          fsdp, {gpus} GPU(s), shards over {gpus}" in out
    for term in ("parameters", "gradients", "optimizer states", "activations", "total per GPU"):
        assert re.search(rf"^  {term} +[\d.]+ GB$", out, re.M), term
    assert "GPU memory        80 GB (cluster.gpu_memory_gb): fits" in out
    assert not (tmp_path / "results").exists()


def test_plan_shows_the_largest_distinct_plans_in_full_and_one_line_on_a_cpu_profile(tmp_path, where, capsys):
    sweep = write_sweep(tmp_path / "ladder.yaml", {"size": "debug,14m,31m,70m", "seed": "0,1"}, {"arch": "pythia"})
    assert main(["plan", str(sweep), "cluster=slurm_a100", *where]) == 0
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if line.startswith("memory per GPU of ")]
    assert heads == [f"memory per GPU of pythia-{s}-s0, pythia-{s}-s1 (docs/memory.md):" for s in ("70m", "31m", "14m")]
    assert out.count("GPU memory        80 GB (cluster.gpu_memory_gb): fits") == 3
    assert out.splitlines()[-1] == "1 smaller memory plan: see the GB/GPU column"
    assert main(["plan", str(sweep), *where]) == 0
    out = capsys.readouterr().out
    assert "memory per GPU of" not in out
    assert out.splitlines()[-1].startswith("memory: the GB/GPU column, per rank; not checked, cluster.gpu_memory_gb")


@pytest.mark.parametrize("command", ["train", "launch", "sweep"])
def test_train_launch_and_sweep_refuse_what_does_not_fit_before_anything_is_written(
    command, tmp_path, where, sbatch_calls, capsys
):
    values = [*LLAMA_7B, "train.strategy=ddp", *where]
    if command == "sweep":
        fixed = dict(v.split("=", 1) for v in values)
        args = [str(write_sweep(tmp_path / "big.yaml", {"seed": "0,1"}, {**fixed, "train.batch_size": 16}))]
    else:
        args = ["--config", "pythia-debug", *values, "run_name=big"]
    assert main([command, *args]) == 2
    message = one_error_line(capsys.readouterr().err)
    assert "train.strategy=ddp: the run (" in message and "train.strategy=fsdp cluster.gpus_per_node=" in message
    assert not sbatch_calls.exists()
    assert not (tmp_path / "results").exists()


def test_show_ends_with_the_memory_line_on_a_gpu_profile(capsys):
    assert main(["show", "--config", "pythia-debug", *LLAMA_7B]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("# memory: ") and " GB per GPU under ddp on 1 GPU (train.strategy=auto) of 80 GB: " in last
    assert "does not fit; smallest change that fits: train.strategy=fsdp cluster.gpus_per_node=" in last
    assert main(["show", "--config", "pythia-debug", *LLAMA_7B, "cluster.gpus_per_node=2"]) == 0
    assert "under fsdp on 2 GPUs (train.strategy=auto) of 80 GB: fits" in capsys.readouterr().out.splitlines()[-1]
    # a CPU profile has no GPU memory to fit: show stays the config and its budget line
    assert main(["show", "--config", "pythia-debug"]) == 0
    assert "# memory" not in capsys.readouterr().out


def test_plan_prices_a_corpus_it_has_no_copy_of_on_its_published_size_and_launch_still_needs_it(tmp_path, sbatch_calls):
    # an empty Hugging Face cache: neither OpenWebText nor the GPT-NeoX tokenizer is here
    env = {"HF_HOME": str(tmp_path / "hf"), "PATH": os.environ["PATH"]}
    where = [f"results_dir={tmp_path / 'results'}", f"data.cache_dir={tmp_path / 'cache'}", "cluster=slurm_a100"]
    planned = cli("plan", "launch_configs/parc-pythia.yaml", *where, env=env)
    assert planned.returncode == 0, planned.stderr[-3000:]
    row = next(line for line in planned.stdout.splitlines() if line.startswith("pythia-parc-s0 "))
    assert row.split()[3] == "~9.04G", row
    note = planned.stdout.splitlines()[-1]
    assert note.startswith("data of pythia-parc-s0: not in this machine's cache, planned on its published size")
    assert "OpenWebText: 9,040,017,095 gpt2 tokens, approximate for data.tokenizer=EleutherAI/gpt-neox-20b" in note
    assert "nanoGPT" in note and "train needs the data itself" in note

    launched = cli("launch", "--config", "parc-pythia", *where, env=env)
    assert launched.returncode == 2
    assert "data.dataset='Skylion007/openwebtext' cannot be loaded" in one_error_line(launched.stderr)
    assert not sbatch_calls.exists() and not (tmp_path / "results").exists()


def test_fsdp_without_sharding_units_is_bad_input(tmp_path):
    env = {
        "PARCAE_EXTRA_ARCHS": TOY.name,
        "PYTHONPATH": os.pathsep.join([str(TOY.parent), os.environ.get("PYTHONPATH", "")]),
    }
    out = cli("show", "arch=toy", "train.strategy=fsdp", f"results_dir={tmp_path}", env=env)
    assert out.returncode == 2
    assert one_error_line(out.stderr) == (
        f"{ERROR}train.strategy=fsdp: arch=toy names no sharding units (its spec's shard_units: the block classes "
        "FSDP wraps); train it with train.strategy=ddp, or name its blocks in its registration"
    )
    assert cli("show", "arch=toy", "train.strategy=ddp", env=env).returncode == 0


def test_fsdp_with_a_world_the_batch_does_not_divide_is_bad_input(capsys):
    two = ["train.strategy=fsdp", "train.devices=2", "train.micro_batch_size=2"]
    assert main(["show", *two, "train.batch_size=6"]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"{ERROR}train.batch_size=6: the effective batch must be a multiple of train.micro_batch_size (2) x the world "
        "size train.strategy=fsdp shards over (2 = 1 node(s) x 2 rank(s)) = 4: e.g. train.batch_size=8"
    )
    assert main(["show", *two, "train.batch_size=8"]) == 0
