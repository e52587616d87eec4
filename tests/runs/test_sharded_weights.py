"""Consolidating a sharded checkpoint (``model/``, a DCP folder) on the CPU holds the model once: the weights land in
the model's own storages, and the load's peak resident memory grows by about one tensor, not by the model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from parcae_runner.models import build_model
from parcae_runner.runs.sharded_weights import load_sharded_weights, save_sharded_weights

# a 50M-parameter LLaMA (about 200 MB in fp32) whose largest tensor (an MLP matrix, about 11 MB) is a small part of it,
# so that a second copy of the model, or of a large part of it, cannot hide in the slack
SIZE = {"name": "debug", "d_model": 1024, "n_heads": 8, "n_layers": 4}
VOCAB = 512
MiB = 2**20


def _kib(field: str) -> int:
    """A ``/proc/self/status`` field in bytes (VmRSS: resident now; VmHWM: the resident peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> None:
    """Set the resident peak (VmHWM) to what is resident now (Linux >= 4.0: clear_refs, value 5)."""
    Path("/proc/self/clear_refs").write_text("5")


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")  # a save with no process group: intended
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="not applicable: reads Linux's /proc peak RSS")
def test_loading_fills_the_models_own_storage_and_peaks_at_about_one_tensor(tmp_path):
    torch.manual_seed(0)
    source = build_model({"name": "llama"}, SIZE, VOCAB)
    save_sharded_weights(source, tmp_path / "model")
    expected = {k: v.clone() for k, v in source.state_dict().items()}
    model_bytes = sum(v.nbytes for v in expected.values())
    largest = max(v.nbytes for v in expected.values())
    del source

    torch.manual_seed(1)  # other weights: the load must replace every one
    model = build_model({"name": "llama"}, SIZE, VOCAB)
    storages = {k: v.untyped_storage().data_ptr() for k, v in model.state_dict().items()}
    before = _kib("VmRSS")
    _reset_peak()
    load_sharded_weights(model, tmp_path / "model")
    grew = _kib("VmHWM") - before

    assert {k: v.untyped_storage().data_ptr() for k, v in model.state_dict().items()} == storages
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    # one tensor's chunk as read, as deserialised and the reader's own buffers; a second model would be 200 MB
    assert grew <= 3 * largest + 16 * MiB < model_bytes / 2, (grew / MiB, largest / MiB, model_bytes / MiB)
