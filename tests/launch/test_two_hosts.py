"""Multi-node training on the two-host test cluster (slurm/local_cluster/two_hosts.py): each host is a network
namespace of this machine with its own slurmd, address and host name, so a job's ranks meet over a network, as on a
cluster. DDP over gloo on CPU: 2 hosts x 1 rank ends where 1 host x 2 ranks does and where 1 rank with gradient
accumulation does; one energy meter per host, summed in run.json; a rank SIGKILLed on the second host ends in a
requeued job that resumes from its checkpoint and ends at the uninterrupted loss; a sweep array trains on both hosts.
Sharded (FSDP2 over gloo): 2 hosts x 1 rank, each host writing its shards of every checkpoint, ends where 1 host x 2
ranks does.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from parcae_runner.runs import RunDirectory, load_model
from parcae_runner.runs.checkpoints import PREFIX, SHARDED_WEIGHTS_DIR, verify_checkpoint
from tests.launch.conftest import cancel_jobs_left, load_by_path, queued_jobs, rank_pids
from tests.launch.test_sweeps import REPO, cli, wait_for, write_sweep

pytestmark = pytest.mark.slow

TWO_HOSTS_PY = REPO / "slurm" / "local_cluster" / "two_hosts.py"
PROFILE = "cluster=slurm_local_two_hosts"


two_hosts = load_by_path("two_hosts", TWO_HOSTS_PY)


@pytest.fixture(scope="module")
def two_host_cluster():
    """Started once; left running, like the one-node cluster (``two_hosts.py stop`` removes it)."""
    if os.geteuid() != 0:
        pytest.skip("the two-host cluster needs root (network namespaces, /etc/slurm-two-hosts, daemons)")
    return two_hosts.start()


@pytest.fixture
def on_two_hosts(two_host_cluster, monkeypatch):
    """Every Slurm command of the test (and the jobs it submits) talks to the two-host cluster."""
    monkeypatch.setenv("SLURM_CONF", two_host_cluster.conf)
    before = queued_jobs()
    yield two_host_cluster
    cancel_jobs_left(before)


@pytest.fixture
def overrides(tmp_path, data_cache) -> list[str]:
    """A debug pythia, global batch 8 of 32 tokens: micro-batches of 4 on each of 2 ranks, or 2 accumulated on 1."""
    values = {
        "results_dir": tmp_path / "results",
        "data.cache_dir": data_cache,
        "data.vocab_size": 512,
        "data.seq_len": 32,
        "train.batch_size": 8,
        "train.micro_batch_size": 4,
        "train.max_steps": 60,
        "train.val_interval": 20,
        "train.val_batches": 2,
        "train.log_interval": 5,
        "train.checkpoint.schedule": "interval",
        "train.checkpoint.every": 20,
        "logger.wandb": "false",
        "logger.measure_power_secs": 1,
        "logger.energy_flush_secs": 1,
    }
    return [f"{k}={v}" for k, v in values.items()]


def launch(name: str, overrides: list[str], *extra: str) -> str:
    out = cli("launch", "--config", "pythia-debug", PROFILE, *overrides, *extra, f"run_name={name}")
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split("submitted Slurm job ")[1].split(";")[0].split()[0]


def finished(tmp_path: Path, name: str, timeout: float = 420) -> dict:
    run_dir = RunDirectory(tmp_path / "results" / "single" / name)
    wait_for(lambda: run_dir.read_run().get("status") == "done", timeout, f"run {name} to finish", poll=2)
    return run_dir.read_run()


def losses(run_dir: Path) -> dict[int, float]:
    """Training loss at each logged step."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def node_energy(run_dir: Path, attempt: int) -> list[float]:
    files = sorted((run_dir / "energy").glob(f"attempt-{attempt}-node*.json"))
    return [json.loads(p.read_text())["energy_kwh"] for p in files]


def test_two_hosts_train_as_one_host_with_two_ranks_and_as_one_rank_accumulating(on_two_hosts, tmp_path, overrides):
    jobs = {
        "2x1": launch("2x1", overrides),
        "1x2": launch("1x2", overrides, "cluster.nodes=1", "cluster.tasks_per_node=2"),
        "1x1": launch("1x1", overrides, "cluster.nodes=1"),
    }
    runs = {name: finished(tmp_path, name) for name in jobs}
    root = tmp_path / "results" / "single"
    assert [(runs[n]["hardware"]["num_nodes"], runs[n]["hardware"]["devices"]) for n in jobs] == [
        (2, 2),
        (1, 2),
        (1, 1),
    ]
    step_log = (root / "2x1" / "logs" / f"slurm-{jobs['2x1']}.out").read_text()
    assert "rank 0/2 (node pr-node1, local rank 0)" in step_log and "rank 1/2 (node pr-node2, local rank 0)" in step_log

    two_hosts_losses, one_host, accumulated = (losses(root / n) for n in ("2x1", "1x2", "1x1"))
    assert sorted(two_hosts_losses) == sorted(one_host) == sorted(accumulated) and max(two_hosts_losses) == 60
    for step, loss in two_hosts_losses.items():
        assert loss == pytest.approx(one_host[step], abs=1e-5), step
        assert loss == pytest.approx(accumulated[step], abs=1e-4), step
    assert runs["2x1"]["final_val_loss"] == pytest.approx(runs["1x2"]["final_val_loss"], abs=1e-5)
    assert runs["2x1"]["final_val_loss"] == pytest.approx(runs["1x1"]["final_val_loss"], abs=1e-4)

    # one meter per host, each with its own emissions file; run.json holds their sum
    per_node = node_energy(root / "2x1", 1)
    assert len(per_node) == 2 and all(e > 0 for e in per_node), per_node
    assert (root / "2x1" / "emissions.csv").exists() and (root / "2x1" / "emissions-node1.csv").exists()
    assert runs["2x1"]["energy_kwh"] == pytest.approx(sum(per_node), rel=1e-9)
    assert len(node_energy(root / "1x2", 1)) == 1, "two ranks on one host share one meter"


def test_a_sharded_run_on_two_hosts_ends_where_two_ranks_on_one_host_do(on_two_hosts, tmp_path, overrides):
    """``launch`` (``sbatch <the profile's flags> launch_job.slurm``) of an FSDP run on both hosts, and with hybrid
    sharding (replicated across the hosts, sharded within each), against FSDP with two ranks on one host."""
    sharded = [*overrides, "train.strategy=fsdp", "train.log_interval=1"]
    jobs = {
        "fsdp-2x1": launch("fsdp-2x1", sharded),
        "fsdp-1x2": launch("fsdp-1x2", sharded, "cluster.nodes=1", "cluster.tasks_per_node=2"),
        "hybrid-2x1": launch("hybrid-2x1", sharded, "train.fsdp.hybrid=true"),
    }
    runs = {name: finished(tmp_path, name) for name in jobs}
    root = tmp_path / "results" / "single"
    hardware = [(runs[n]["hardware"]["num_nodes"], runs[n]["hardware"]["devices"]) for n in jobs]
    assert hardware == [(2, 2), (1, 2), (2, 2)]
    step_log = (root / "fsdp-2x1" / "logs" / f"slurm-{jobs['fsdp-2x1']}.out").read_text()
    assert "rank 1/2 (node pr-node2, local rank 0)" in step_log, step_log[-3000:]
    assert "root sharded over 2 ranks" in step_log, "the run was sharded"

    one_host = losses(root / "fsdp-1x2")
    assert sorted(one_host) == list(range(1, 61))
    worst = {}
    for name in ("fsdp-2x1", "hybrid-2x1"):
        got = losses(root / name)
        assert sorted(got) == sorted(one_host), name
        worst[name] = max(abs(loss - one_host[step]) for step, loss in got.items())
        assert worst[name] < 1e-5, f"{name}: largest training loss difference {worst[name]:.2e}"
        assert runs[name]["final_val_loss"] == pytest.approx(runs["fsdp-1x2"]["final_val_loss"], abs=1e-5), name
    digests = {runs[n]["attempt_history"][-1]["batch_digest"] for n in jobs}
    assert len(digests) == 1, digests

    # each host wrote its shards of every checkpoint into one DCP folder, which reads back as the one-host weights
    checkpoints = sorted((root / "fsdp-2x1" / "checkpoints").glob(f"{PREFIX}*"))
    assert [p.name for p in checkpoints] == [f"{PREFIX}{s}" for s in (0, 20, 40, 60)]
    assert all((p / SHARDED_WEIGHTS_DIR).is_dir() and verify_checkpoint(p) is None for p in checkpoints)
    got, expected = (load_model(root / n).state_dict() for n in ("fsdp-2x1", "fsdp-1x2"))
    weights = max(float((got[k] - tensor).abs().max()) for k, tensor in expected.items())
    assert weights < 1e-5, f"largest weight difference {weights:.2e}"
    print(f"\ntwo hosts (fsdp): losses within {worst}, weights within {weights:.1e} of one host's two ranks")


def test_a_rank_killed_on_the_second_host_requeues_the_job_and_the_run_ends_at_the_uninterrupted_loss(
    on_two_hosts, tmp_path, overrides
):
    clean_job = launch("clean", overrides)
    job = launch("killed", [*overrides, "logger.wandb=true"])
    run_dir = tmp_path / "results" / "single" / "killed"
    wait_for(lambda: (run_dir / "checkpoints" / "checkpoint-20").exists(), 300, "the run to pass a checkpoint")
    pid = rank_pids(job).get(1)
    assert pid is not None, "no rank 1 process of the job"
    assert "SLURMD_NODENAME=pr-node2" in (Path("/proc") / str(pid) / "environ").read_bytes().decode()
    os.kill(pid, signal.SIGKILL)

    killed, clean = finished(tmp_path, "killed"), finished(tmp_path, "clean")
    step_log = (run_dir / "logs" / f"slurm-{job}.out").read_text()
    # srun exits 128 + a signal: 137 (the SIGKILLed rank) or 143 (rank 0, stopped by --kill-on-bad-exit)
    assert re.search(rf"requeued Slurm job {job} \(a rank was lost \(step exit 1(37|43)\), requeue 1 of", step_log), (
        step_log[-3000:]
    )
    assert killed["attempts"] == 2 and killed["attempt_history"][0]["status"] != "done"
    assert killed["attempt_history"][1]["start_step"] >= 20
    assert killed["final_val_loss"] == pytest.approx(clean["final_val_loss"], abs=1e-5)
    final = losses(run_dir)
    assert final[60] == pytest.approx(losses(tmp_path / "results" / "single" / "clean")[60], abs=1e-5)
    # both attempts' energy, every host's, is in run.json; one wandb run (its id kept across the requeue)
    assert killed["energy_kwh"] == pytest.approx(sum(h["energy_kwh"] for h in killed["attempt_history"]))
    assert len(node_energy(run_dir, 1)) == 2 and len(node_energy(run_dir, 2)) == 2
    assert killed["attempt_history"][0]["energy_kwh"] >= node_energy(run_dir, 1)[1] > 0
    offline = [p.name for p in (run_dir / "wandb").glob("offline-run-*")]
    assert len(offline) == 2 and all(name.endswith(killed["wandb_id"]) for name in offline), offline
    assert clean_job != job


def test_a_sweep_array_trains_on_both_hosts(on_two_hosts, tmp_path, overrides):
    fixed = dict(item.split("=", 1) for item in overrides)
    sweep = write_sweep(tmp_path / "hosts.yaml", {"seed": "0"}, {**fixed, "train.max_steps": 20})
    out = cli("sweep", str(sweep), PROFILE)
    assert out.returncode == 0, out.stderr[-3000:]
    root = tmp_path / "results" / "hosts"
    (name,) = json.loads((root / "sweep.json").read_text())["jobs"]
    run_dir = RunDirectory(root / name)
    wait_for(lambda: run_dir.read_run().get("status") == "done", 300, "the array task's run to finish", poll=2)
    run = run_dir.read_run()
    assert (run["hardware"]["num_nodes"], run["hardware"]["devices"]) == (2, 2)
    step_logs = "".join(p.read_text() for p in (run_dir.path / "logs").glob("slurm-*.out"))
    assert "rank 1/2 (node pr-node2, local rank 0)" in step_logs, step_logs[-3000:]


def test_launch_says_in_one_line_when_sbatch_refuses(on_two_hosts, tmp_path, overrides):
    out = cli("launch", "--config", "pythia-debug", PROFILE, "cluster.partition=nosuch", *overrides)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("parcae-runner: error: sbatch refused the job (exit 1): sbatch: error:"), out.stderr
    assert "Traceback" not in out.stderr and "invalid partition" in out.stderr.lower()
    assert not (tmp_path / "results").exists()
