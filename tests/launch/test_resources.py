"""A cluster profile's resources: the sbatch flags `parcae-runner launch` passes, the allocation check of the job
script, and what a profile with GPUs does to the trainer (no silent CPU run)."""

from __future__ import annotations

import pytest

from parcae_runner.config import ConfigError, ConfigErrors, compose_run_config
from parcae_runner.launch.resources import allocation_mismatches, mismatch_message, sbatch_flags
from parcae_runner.train.preflight import validate
from parcae_runner.train.ranks import rank_gpu


def cluster(*overrides: str):
    return compose_run_config(["arch=pythia", "size=debug", *overrides]).cluster


def test_flags_carry_every_resource_of_the_profile():
    c = cluster(
        "cluster=slurm_a100", "cluster.account=proj7", "cluster.qos=high", "+cluster.sbatch_extra.exclusive=true"
    )
    assert sbatch_flags(c) == [
        "--partition=gpu",
        "--account=proj7",
        "--qos=high",
        "--constraint=a100",
        "--nodes=1",
        "--ntasks-per-node=1",
        "--gpus-per-node=1",
        "--cpus-per-task=8",
        "--mem=65536M",
        "--time=1440",
        "--requeue",
        "--signal=USR1@300",
        "--exclusive",
    ]
    h100 = sbatch_flags(cluster("cluster=slurm_h100", "cluster.nodes=2"))
    assert "--nodes=2" in h100 and "--ntasks-per-node=8" in h100 and "--gpus-per-node=8" in h100
    cpu = sbatch_flags(cluster("cluster=slurm_local", "cluster.mem_gb=0.5"))
    assert "--ntasks-per-node=1" in cpu and "--mem=512M" in cpu and not any("gpus" in f for f in cpu)


def test_allocation_check_names_what_differs_and_the_flags():
    c = cluster("cluster=slurm_local_gpu")
    assert allocation_mismatches(c, {}) == [], "outside a Slurm job there is nothing to check"
    plain = {"SLURM_JOB_ID": "7", "SLURM_JOB_NUM_NODES": "1", "SLURM_TASKS_PER_NODE": "1"}
    assert allocation_mismatches(c, plain) == [
        "tasks per node: got 1, the profile wants 2",
        "GPUs on the node: got 0, the profile wants 2",
    ]
    right = {"SLURM_JOB_ID": "7", "SLURM_NNODES": "1", "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_GPUS": "0,1"}
    assert allocation_mismatches(c, right) == []
    two_nodes = {**right, "SLURM_JOB_NUM_NODES": "2", "SLURM_TASKS_PER_NODE": "2(x2)", "SLURM_GPUS_ON_NODE": "2"}
    del two_nodes["SLURM_NNODES"], two_nodes["SLURM_NTASKS_PER_NODE"]
    assert allocation_mismatches(c, two_nodes) == ["nodes: got 2, the profile wants 1"]
    message = mismatch_message(c, allocation_mismatches(c, plain), "pythia-debug", ["cluster=slurm_local_gpu"])
    assert (
        "CONFIG=pythia-debug sbatch --partition=debug --nodes=1 --ntasks-per-node=2 --gpus-per-node=2 "
        "--cpus-per-task=1 --mem=3072M --time=30 --requeue --signal=USR1@60 launch_job.slurm cluster=slurm_local_gpu"
    ) in message
    assert "nothing was trained" in message and "parcae-runner launch --config pythia-debug" in message


def test_a_profile_with_gpus_trains_on_gpus_and_only_a_test_profile_may_say_cpu():
    a100 = compose_run_config(["arch=pythia", "size=debug", "cluster=slurm_a100"])
    assert (a100.train.accelerator, a100.train.devices, a100.train.num_nodes) == ("gpu", 1, 1)
    h100 = compose_run_config(["arch=pythia", "size=debug", "cluster=slurm_h100", "cluster.nodes=2"])
    assert (h100.train.accelerator, h100.train.devices, h100.train.num_nodes) == ("gpu", 8, 2)
    fake = compose_run_config(["arch=pythia", "size=debug", "cluster=slurm_local_gpu"])
    assert (fake.train.accelerator, fake.train.devices) == ("cpu", 2)
    with pytest.raises(ConfigError, match="train.accelerator=cpu: cluster=slurm_a100 has 1 GPUs per node"):
        compose_run_config(["arch=pythia", "size=debug", "cluster=slurm_a100", "train.accelerator=cpu"])
    # CPU profiles and local runs are left as they were
    local = compose_run_config(["arch=pythia", "size=debug", "cluster=slurm_local"])
    assert (local.train.accelerator, local.train.devices) == ("auto", "auto")


def test_a_sweep_point_gets_the_resources_its_own_values_give():
    """A grid point's cluster.nodes / cluster.gpus_per_node reach train.num_nodes / train.devices as in a single
    run (compose_many composes each group choice once and applies the values after)."""
    from parcae_runner.config.compose import compose_many

    points = [["cluster=slurm_h100", "cluster.nodes=2"], ["cluster=slurm_a100", "cluster.gpus_per_node=4"]]
    for overrides, cfg in zip(points, compose_many(points), strict=True):
        single = compose_run_config(overrides)
        assert (cfg.train.devices, cfg.train.num_nodes) == (single.train.devices, single.train.num_nodes)
    assert [(c.train.devices, c.train.num_nodes) for c in compose_many(points)] == [(8, 2), (4, 1)]


def test_cpu_nodes_take_their_ranks_from_the_profile():
    two = compose_run_config(["arch=pythia", "size=debug", "cluster=slurm_local_two_hosts"])
    assert (two.train.accelerator, two.train.devices, two.train.num_nodes) == ("auto", "auto", 2)
    assert "--nodes=2" in sbatch_flags(two.cluster) and "--ntasks-per-node=1" in sbatch_flags(two.cluster)
    one = compose_run_config(
        ["arch=pythia", "size=debug", "cluster=slurm_local_two_hosts", "cluster.nodes=1", "cluster.tasks_per_node=2"]
    )
    assert (one.train.devices, one.train.num_nodes) == (2, 1)
    assert "--ntasks-per-node=2" in sbatch_flags(one.cluster)
    with pytest.raises(ConfigErrors, match="cluster.tasks_per_node=3: one task per GPU: 2 or null"):
        validate(
            compose_run_config(["arch=pythia", "size=debug", "cluster=slurm_local_gpu", "cluster.tasks_per_node=3"])
        )


def test_each_rank_names_its_gpu():
    assert rank_gpu(1, {"CUDA_VISIBLE_DEVICES": "0,1", "SLURM_STEP_GPUS": "2,3"}) == "3"
    assert rank_gpu(0, {"CUDA_VISIBLE_DEVICES": "0,1"}) == "0"
    assert rank_gpu(1, {"CUDA_VISIBLE_DEVICES": "5"}) == "5", "a task bound to one GPU"
    assert rank_gpu(0, {}) is None
