from parcae_runner.runs import list_checkpoints
from parcae_runner.train.checkpointing import checkpoint_steps, pythia_steps


def test_pythia_schedule_is_log_spaced_then_every_n():
    steps = pythia_steps(143000, 1000)
    assert steps[:11] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert steps[11:13] == [1000, 2000] and steps[-1] == 143000
    assert len(steps) == 154  # Pythia's 154 checkpoints per model


def test_schedules_and_last_step():
    assert checkpoint_steps("interval", 25, 10, [], save_last=True) == [0, 10, 20, 25]
    assert checkpoint_steps("list", 25, 10, [3, 7, 99], save_last=False) == [3, 7]
    assert checkpoint_steps("none", 25, 10, [], save_last=True) == [25]
    assert checkpoint_steps("pythia", 6, 1000, [], save_last=False) == [0, 1, 2, 4]


def test_only_complete_checkpoints_are_listed(tmp_path):
    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "checkpoint-5" / "meta.json").write_text("{}")
    (tmp_path / "checkpoint-9").mkdir()  # no meta.json: never completed
    (tmp_path / ".tmp-checkpoint-12").mkdir()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [5]
