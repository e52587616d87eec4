"""run.json and sweep.json through their typed records: same keys and values on disk, statuses as enums."""

import json
import os
from pathlib import Path

import pytest

from parcae_runner.runs import RunDirectory, RunRecord, RunStatus, SweepRecord
from parcae_runner.runs.record import NEEDS_RESUBMIT
from parcae_runner.util.files import atomic_write, atomic_write_json, atomic_write_text

# every status string run.json, plan and status have ever used
STATUSES = (
    "new",
    "diverged",
    "pending",
    "running",
    "requeued",
    "requeue-limit",
    "stopped",
    "interrupted",
    "terminated",
    "failed",
    "lost",
    "done",
)


def test_status_values_are_the_strings_on_disk():
    assert sorted(s.value for s in RunStatus) == sorted(STATUSES)
    assert RunStatus.DONE == "done" and json.dumps({"status": RunStatus.REQUEUE_LIMIT}) == '{"status": "requeue-limit"}'
    assert set(NEEDS_RESUBMIT) == {"failed", "terminated", "requeue-limit", "interrupted", "stopped"}


def test_run_record_round_trip_keeps_unknown_keys(tmp_path):
    on_disk = {"status": "running", "attempts": 2, "data": {"vocab_size": 512, "dir": "/d"}, "final_val_loss@R4": 3.5}
    atomic_write_json(tmp_path / "run.json", on_disk)
    record = RunRecord.read(tmp_path)
    assert record.status is RunStatus.RUNNING and record.attempts == 2 and record.data_info["vocab_size"] == 512
    assert record["final_val_loss@R4"] == 3.5 and record.get("absent") is None
    assert record.step is None and record.attempt_history == []

    record.update(status=RunStatus.DONE, step=7)
    assert json.loads((tmp_path / "run.json").read_text()) == {**on_disk, "status": "done", "step": 7}
    assert RunDirectory(tmp_path).read_run() == {**on_disk, "status": "done", "step": 7}


def test_unknown_status_is_kept_as_its_string(tmp_path):
    atomic_write_json(tmp_path / "run.json", {"status": "paused-by-hand"})
    assert RunRecord.read(tmp_path).status == "paused-by-hand"


def test_absent_records_are_empty(tmp_path):
    assert RunRecord.read(tmp_path).status is None and RunRecord.read(tmp_path).attempts == 0
    sweep = SweepRecord.read(tmp_path)
    assert sweep.runs == [] and sweep.jobs == {} and sweep.params == {} and not (tmp_path / "sweep.json").exists()


def test_mutable_defaults_are_not_shared(tmp_path):
    a, b = SweepRecord.read(tmp_path), SweepRecord.read(tmp_path)
    a.runs.append("x")
    assert b.runs == [] and a.runs == []


def test_sweep_record_round_trip(tmp_path):
    on_disk = {"name": "s", "file": "sweeps/s.yaml", "variant": None, "params": {"seed": "0,1"}, "jobs": {"a": "1_0"}}
    atomic_write_json(tmp_path / "sweep.json", on_disk)
    record = SweepRecord.read(tmp_path)
    assert record.file_path == "sweeps/s.yaml" and record.variant is None and record.jobs == {"a": "1_0"}
    record.update(runs=["a"])
    assert json.loads((tmp_path / "sweep.json").read_text()) == {**on_disk, "runs": ["a"]}


def test_atomic_write_leaves_no_temp_file_and_a_plain_mode(tmp_path):
    target = tmp_path / "sub" / "card.md"
    atomic_write_text(target, "hello\n")
    assert target.read_text() == "hello\n" and os.listdir(target.parent) == ["card.md"]
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_failed_atomic_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "run.json"
    atomic_write_json(target, {"status": "done"})

    def half_written(tmp: str) -> None:
        Path(tmp).write_text('{"status": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_written)
    assert json.loads(target.read_text()) == {"status": "done"} and os.listdir(tmp_path) == ["run.json"]


def test_metrics_reader_drops_cut_lines(tmp_path):
    rd = RunDirectory(tmp_path)
    rd.metrics_file.write_text('{"step": 1, "train/loss": 2.0}\nnot json\n{"step": 2, "train/loss": 1.5}\n{"step": 3')
    assert [r["step"] for r in rd.read_metrics()] == [1, 2]
    rd.truncate_metrics(1)
    assert rd.metrics_file.read_text() == '{"step": 1, "train/loss": 2.0}\n'
