"""Checkpoint listing and load_model: only complete folders count, and the weights are the trained ones."""

import pytest
import torch
from safetensors.torch import load_file

from parcae_runner import runs
from parcae_runner.config import ConfigError, compose_run_config
from parcae_runner.train.runner import train


def _checkpoint(root, name, meta=True, resume=False):
    folder = root / name
    folder.mkdir(parents=True)
    if meta:
        (folder / "meta.json").write_text('{"step": 0}')
    if resume:
        (folder / runs.RESUME_FILE).write_bytes(b"")
    return folder


def test_listing_ignores_incomplete_and_foreign_folders(tmp_path):
    _checkpoint(tmp_path, "checkpoint-10", resume=True)
    _checkpoint(tmp_path, "checkpoint-2")
    _checkpoint(tmp_path, "checkpoint-20", meta=False)  # still being written
    _checkpoint(tmp_path, ".tmp-checkpoint-30")
    _checkpoint(tmp_path, "checkpoint-best")
    assert [s for s, _ in runs.list_checkpoints(tmp_path)] == [2, 10]
    assert runs.latest_resumable(tmp_path) == (10, tmp_path / "checkpoint-10")
    assert runs.read_meta(tmp_path / "checkpoint-2") == {"step": 0}
    assert runs.list_checkpoints(tmp_path / "absent") == [] and runs.latest_resumable(tmp_path / "absent") is None


def test_load_model_loads_the_trained_weights(fast_overrides):
    run_dir = train(compose_run_config([*fast_overrides, "train.max_steps=4", "train.val_batches=0"]))
    rd, _, record = runs.open_run(run_dir.path)
    step, path = runs.checkpoint_path(rd, None)
    assert step == 4 and record.status == "done"
    saved = load_file(str(path / runs.WEIGHTS_FILE))
    for run in (run_dir, run_dir.path, str(run_dir.path)):
        state = runs.load_model(run).state_dict()
        for key, value in saved.items():
            assert torch.equal(state[key], value), key
    first = runs.load_model(run_dir, step=0).state_dict()
    assert any(not torch.equal(first[k], v) for k, v in saved.items())
    with pytest.raises(ConfigError, match="no such checkpoint"):
        runs.load_model(run_dir, step=3)


def test_open_run_refuses_a_folder_without_config(tmp_path):
    with pytest.raises(ConfigError, match="not a run directory"):
        runs.open_run(tmp_path)
