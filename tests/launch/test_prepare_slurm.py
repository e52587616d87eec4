"""``parcae-runner prepare cluster=slurm_local``: the tokenising runs as one CPU job on the real local cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from parcae_runner.cli import main
from parcae_runner.data import embedded_documents
from tests.launch.conftest import local_cluster

pytestmark = pytest.mark.slow


def test_prepare_as_a_slurm_cpu_job(
    slurm_cluster: local_cluster.ClusterInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in embedded_documents()[:500]))
    cache = tmp_path / "cache"
    args = ["prepare", "cluster=slurm_local", "data=jsonl", f"data.path={corpus}", "data.vocab_size=512"]
    assert main([*args, f"data.cache_dir={cache}"]) == 0
    out, err = capsys.readouterr()
    prepared = Path(out.strip().splitlines()[-1])
    assert prepared.parent == cache and (prepared / "manifest.json").is_file()
    job_id = err.split("as Slurm job ")[1].split()[0]
    # the work happened in the job: its submitit folder holds its log and its result
    job_dir = cache / ".submitit" / job_id
    assert any(job_dir.glob("*_log.out")) and any(job_dir.glob("*_result.pkl"))
    assert json.loads((prepared / "manifest.json").read_text())["train"]["docs"] > 400
