"""The Parc/Pythia principle: the model seed changes the initialisation only; the data seed
alone fixes which tokens every step sees."""

from __future__ import annotations

import hashlib

import pytest
from safetensors.torch import load_file

from parcae_runner.config import compose_run_config
from parcae_runner.train.module import LanguageModelModule
from parcae_runner.train.runner import train

ORIGINAL_STEP = LanguageModelModule.training_step


def batches_seen(monkeypatch, overrides: list[str]) -> tuple[list[str], dict]:
    seen: list[str] = []

    def recording_step(self, batch, batch_idx):
        seen.append(hashlib.sha1(batch[0].numpy().tobytes() + batch[1].numpy().tobytes()).hexdigest())
        return ORIGINAL_STEP(self, batch, batch_idx)

    monkeypatch.setattr(LanguageModelModule, "training_step", recording_step)
    run_dir = train(compose_run_config(overrides))
    return seen, load_file(run_dir.checkpoints / "checkpoint-0" / "model.safetensors")


@pytest.mark.slow
def test_model_seed_keeps_batches_data_seed_changes_them(monkeypatch, fast_overrides):
    base = fast_overrides + [
        "train.max_steps=6",
        "train.batch_size=8",
        "train.micro_batch_size=4",
        "train.checkpoint.schedule=list",
        "train.checkpoint.steps=[0]",
        "train.val_batches=0",
    ]
    seed0, init0 = batches_seen(monkeypatch, base + ["seed=0"])
    seed1, init1 = batches_seen(monkeypatch, base + ["seed=1"])
    data7, _ = batches_seen(monkeypatch, base + ["seed=0", "data.seed=7", "run_name=data7"])

    assert len(seed0) == 12  # 6 steps x 2 micro-batches
    assert seed0 == seed1
    assert all(a != b for a, b in zip(seed0, data7, strict=True))
    # ...and the model seed does change the initial weights
    assert any((init0[k] != init1[k]).any() for k in init0)
