"""`CONTAINER=docker IMAGE=... parcae-runner sweep ...` on the local Slurm cluster: every array task runs the job
step of launch_job.slurm, so it trains in the image; each run.json names the image id it ran in (equal to
`docker image inspect`'s), and a task signalled with SIGUSR1 is requeued by the job script and ends done."""

from __future__ import annotations

import json
import subprocess

import pytest

from parcae_runner.runs import RunDirectory
from tests.launch.test_sweeps import cli, wait_for, write_sweep

from .conftest import docker

pytestmark = pytest.mark.slow


def test_array_tasks_run_in_the_image_and_survive_a_requeue(slurm_cluster, image, tmp_path, data_cache):
    fixed = {
        "results_dir": str(tmp_path / "results"),
        "data.cache_dir": str(data_cache),
        "data.vocab_size": 512,
        "data.seq_len": 32,
        "train.batch_size": 8,
        "train.micro_batch_size": 8,
        "train.val_interval": 10,
        "train.val_batches": 2,
        "train.log_interval": 5,
        # long enough that the signal lands mid-run on a quiet machine too (a tiny step takes ~7 ms there: the ~370
        # steps after the step it waits for last over 2 s, the signal arrives within a few tenths)
        "train.max_steps": 400,
        "logger.wandb": "false",
        "logger.measure_power_secs": 1,
    }
    sweep = write_sweep(tmp_path / "dock.yaml", {"seed": "0,1"}, fixed)
    out = cli("sweep", str(sweep), "cluster=slurm_local", env={"CONTAINER": "docker", "IMAGE": image.ref})
    assert out.returncode == 0, out.stderr[-3000:]
    root = tmp_path / "results" / "dock"
    record = json.loads((root / "sweep.json").read_text())
    image_id = json.loads(docker("image", "inspect", image.ref).stdout)[0]["Id"]
    assert record["submissions"][-1]["container"] == {"mode": "docker", "image": image.ref, "digest": image_id}
    victim = RunDirectory(root / "pythia-debug-s0")
    in_container = "step 30 in the container"
    wait_for(lambda: any(r.get("step", 0) >= 30 for r in victim.read_metrics()), 300, in_container, poll=0.1)
    job = record["jobs"]["pythia-debug-s0"]
    assert job.endswith("_0")
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    for name in record["jobs"]:
        run_dir = RunDirectory(root / name)
        wait_for(lambda rd=run_dir: rd.read_run().get("status") == "done", 400, f"{name} done")
        container = run_dir.read_run()["hardware"]["container"]
        assert (container["mode"], container["image"], container["digest"]) == ("docker", image.ref, image_id)
    history = victim.read_run()["attempt_history"]
    assert [h["status"] for h in history] == ["requeued", "done"]
    assert history[1]["start_step"] == history[0]["end_step"] > 0
    step_log = "".join(p.read_text() for p in (victim.path / "logs").glob("slurm-*.out"))
    assert step_log.count(f"requeued Slurm job {job} (by the job script, outside)") == 1
