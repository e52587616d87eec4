"""The container modes' commands, what a run and a sweep record of their image, and who requeues: no Docker needed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from parcae_runner.launch import container
from parcae_runner.launch.container import container_command
from parcae_runner.launch.job_script import container_mounts, srun_command

REPO = Path(__file__).resolve().parents[2]
SECRET = "not-a-real-key-0123456789"


@pytest.fixture
def job_env(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
    for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(name, raising=False)


def test_docker_passes_secrets_by_name_signals_devices_and_the_callers_uid(job_env, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_GPUS", "2,3")
    gpus = container.job_gpus()
    cmd = container_command("docker", "sha256:abc", "/srv/checkout", ["arch=pythia"], ["/data/results"], gpus, ["X"])
    assert cmd[:2] == ["docker", "run"] and cmd[-3:] == ["sha256:abc", "train", "arch=pythia"]
    assert SECRET not in " ".join(cmd)
    flags = list(zip(cmd, cmd[1:], strict=False))
    env_names = {b for a, b in flags if a == "-e"}
    assert {"WANDB_API_KEY", "PARCAE_IMAGE", "PARCAE_IMAGE_DIGEST", "PARCAE_REQUEUE", "X"} <= env_names
    assert all("=" not in name for name in env_names)
    assert ("--gpus", '"device=2,3"') in flags
    assert ("--user", f"{os.getuid()}:{os.getgid()}") in flags
    assert {"--init", "--sig-proxy=true", "--rm", "--network=host", "--ipc=host"} <= set(cmd)
    assert ("--label", "parcae.slurm-job=4711") in flags
    assert {b for a, b in flags if a == "-v"} == {"/srv/checkout:/srv/checkout", "/data/results:/data/results"}
    assert "--privileged" not in cmd
    no_gpu = container_command("docker", "img", "/w", [], gpus=None)
    assert "--gpus" not in no_gpu
    all_gpus = container_command("docker", "img", "/w", [], gpus="all")
    assert ("--gpus", "all") in zip(all_gpus, all_gpus[1:], strict=False)


def test_pyxis_and_apptainer_mount_the_same_paths(job_env):
    mounts = ["/w/repo/results", "/scratch/data", "/scratch/data/sub"]
    pyxis = container_command("pyxis", "reg.example.org/team/parcae@sha256:1", "/w/repo", ["x=1"], mounts)
    assert pyxis == [
        "--container-image=reg.example.org#team/parcae@sha256:1",
        "--container-mounts=/scratch/data:/scratch/data,/w/repo:/w/repo",
        "--container-workdir=/w/repo",
        "parcae-runner",
        "train",
        "x=1",
    ]
    for same in ("parcae-runner:latest", "team/parcae", "/images/parcae.sqsh", "nvcr.io#nvidia/pytorch:25.10-py3"):
        assert container.pyxis_image(same) == same
    assert container.pyxis_image("localhost:5000/parcae:abc") == "localhost:5000#parcae:abc"
    apptainer = container_command("apptainer", "parcae.sif", "/w/repo", ["x=1"], mounts)
    assert apptainer[:5] == ["apptainer", "exec", "--nv", "--bind", "/scratch/data:/scratch/data,/w/repo:/w/repo"]
    assert apptainer[-4:] == ["parcae.sif", "parcae-runner", "train", "x=1"]
    with pytest.raises(ValueError, match="needs an image"):
        container_command("docker", None, "/w", [])
    with pytest.raises(ValueError, match="choose one of"):
        container_command("podman", "img", "/w", [])
    with pytest.raises(ValueError, match="cannot be mounted"):
        container.bind_paths(["/a:b"])


def test_srun_mounts_results_data_and_config_tree(job_env, tmp_path, monkeypatch):
    from parcae_runner.config import compose_run_config, config_dir

    monkeypatch.chdir(tmp_path)
    cfg = compose_run_config(
        ["cluster=slurm_local", f"results_dir={tmp_path / 'r'}", "data.cache_dir=/scratch/cache"], "config"
    )
    mounts = container_mounts(cfg, config_dir())
    assert set(mounts) == {str(tmp_path / "r"), "/scratch/cache", str(config_dir())}
    cmd = srun_command(cfg, tmp_path / "r" / "run", ["a=1"], "docker", "sha256:abc", mounts)
    assert cmd[0] == "srun" and "--gpus" not in cmd  # slurm_local has no GPUs
    assert {b for a, b in zip(cmd, cmd[1:], strict=False) if a == "-w"} == {str(tmp_path)}
    assert "SLURM_PROCID" in cmd and "SLURM_CPUS_PER_TASK" in cmd


def test_image_digests_and_what_run_json_records(monkeypatch, tmp_path):
    from parcae_runner.runs import provenance

    assert container.resolve_digest("pyxis", "reg/p@sha256:" + "a" * 64) == "sha256:" + "a" * 64
    assert container.resolve_digest("pyxis", "reg/p:latest") is None
    assert container.resolve_digest("none", "reg/p@sha256:1") is None
    assert container.image_record("none", None) is None
    for name in (provenance.MODE_ENV, provenance.IMAGE_ENV, provenance.DIGEST_ENV, provenance.IMAGE_INFO_ENV):
        monkeypatch.delenv(name, raising=False)
    assert provenance.runtime_info() is None
    info = tmp_path / "image.json"
    info.write_text(json.dumps({"revision": "abc", "lock_sha256": "f00"}))
    monkeypatch.setenv(provenance.IMAGE_INFO_ENV, str(info))
    monkeypatch.setenv(provenance.MODE_ENV, "docker")
    monkeypatch.setenv(provenance.IMAGE_ENV, "parcae-runner:abc")
    monkeypatch.setenv(provenance.DIGEST_ENV, "sha256:123")
    assert provenance.runtime_info() == {
        "mode": "docker",
        "image": "parcae-runner:abc",
        "digest": "sha256:123",
        "build": {"revision": "abc", "lock_sha256": "f00"},
    }


def test_sweep_json_records_the_profiles_image(tmp_path):
    from parcae_runner.launch.plan import plan_sweep
    from parcae_runner.launch.submit import record_submission
    from parcae_runner.launch.sweep_file import load_sweep

    pinned = "registry.example.org/team/parcae-runner@sha256:" + "b" * 64
    sweep = load_sweep(REPO / "launch_configs" / "pythia-debug.yaml")
    overrides = ["cluster.container=pyxis", f"cluster.image={pinned}", f"results_dir={tmp_path}"]
    planned = plan_sweep(sweep, overrides)
    record = record_submission(sweep, planned, tmp_path, {}, False, "slurm", [])
    assert record["submissions"][-1]["container"] == {"mode": "pyxis", "image": pinned, "digest": "sha256:" + "b" * 64}
    assert json.loads((tmp_path / "sweep.json").read_text())["submissions"][-1]["container"]["image"] == pinned


def test_in_a_container_the_job_script_requeues(monkeypatch, capsys):
    from parcae_runner.train.requeue import requeue_job

    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    monkeypatch.setenv("PARCAE_REQUEUE", "job-script")
    monkeypatch.setenv("PATH", "/nonexistent")  # no scontrol, as in the image
    assert requeue_job() is True
    assert "the job script requeues Slurm job 4711" in capsys.readouterr().err


def test_docs_document_each_container_mode():
    section = (REPO / "docs" / "containers.md").read_text()
    for text in (
        "CONTAINER=pyxis",
        "CONTAINER=apptainer",
        "CONTAINER=docker",
        "CONTAINER=none",
        "make lock",
        "make docker-build",
        "make docker-push REGISTRY=",
        "docker/launch_interactive.sh",
        "tests/docker",
    ):
        assert text in section, text
