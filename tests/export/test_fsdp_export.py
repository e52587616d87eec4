"""A sharded run (``train.strategy=fsdp``, 2 ranks over gloo) is read like any other: its ``model/`` DCP folder is
consolidated on the CPU (runs/sharded_weights.py) by ``export``, ``eval`` and ``runs.load_model`` alike, and the
export loads in stock transformers with the logits of the same run trained in one process. A checkpoint whose shapes
are not the model's is refused in one line naming both shapes, for the sharded folder and for ``model.safetensors``.

One 2-rank training run for the module (``fsdp_two_rank_run``: marked ``multiprocess`` by tests/conftest.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM

from parcae_runner import runs
from parcae_runner.cli import main
from parcae_runner.config import compose_run_config
from parcae_runner.models import ARCHITECTURES
from parcae_runner.runs.checkpoints import SHARDED_WEIGHTS_DIR
from parcae_runner.train.runner import train
from tests.conftest import debug_overrides

STEPS = 4
# 2 ranks x micro batch 2 x 2 accumulation steps: the global batch of 8 the one-process run takes in 4 micro steps
SETTINGS = [
    f"train.max_steps={STEPS}",
    "train.batch_size=8",
    "train.micro_batch_size=2",
    "train.val_batches=1",
    "train.checkpoint.schedule=none",
]
LOGITS_ATOL = 1e-5


@pytest.fixture(scope="module")
def fsdp_two_rank_run(data_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same debug Pythia trained in one process and by 2 FSDP ranks on the CPU: their run directories."""
    results = tmp_path_factory.mktemp("fsdp-export")
    base = [*debug_overrides(data_cache, results), *SETTINGS]
    # in this process first: it prepares the data cache the ranks then read
    one = train(compose_run_config([*base, "run_name=one"])).path
    # the ranks are processes Lightning launches by re-running the command line: the CLI in a subprocess
    ranks = ["train.strategy=fsdp", "train.devices=2", "train.accelerator=cpu", "run_name=fsdp"]
    out = subprocess.run(
        [sys.executable, "-m", "parcae_runner.cli", "train", *base, *ranks],
        capture_output=True,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return {"one": one, "fsdp": results / "single" / "fsdp"}


def _logits(model, vocab: int) -> torch.Tensor:
    tokens = torch.randint(0, vocab, (2, 33), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(tokens)
    return getattr(out, "logits", out)


def test_export_of_a_sharded_run_gives_the_one_process_logits_in_transformers(fsdp_two_rank_run, capsys):
    run = fsdp_two_rank_run["fsdp"]
    checkpoint = run / "checkpoints" / f"checkpoint-{STEPS}"
    # the sharded layout, so the readers below cannot have read a consolidated file
    assert (checkpoint / SHARDED_WEIGHTS_DIR).is_dir() and not (checkpoint / runs.WEIGHTS_FILE).exists()
    assert main(["export", str(run)]) == 0, capsys.readouterr().err[-2000:]

    vocab = json.loads((run / "run.json").read_text())["data"]["vocab_size"]
    hf = AutoModelForCausalLM.from_pretrained(run / "hf" / f"checkpoint-{STEPS}", dtype=torch.float32).eval()
    exported = _logits(hf, vocab)
    one_process = _logits(runs.load_model(fsdp_two_rank_run["one"]), vocab)
    assert (exported - one_process).abs().max().item() < LOGITS_ATOL
    # runs.load_model consolidates the weights the export wrote (transformers' GPT-NeoX computes them its own way)
    assert (exported - _logits(runs.load_model(run), vocab)).abs().max().item() < LOGITS_ATOL


def test_eval_of_a_sharded_run_gives_the_bpb_its_training_validated(fsdp_two_rank_run, capsys):
    run = fsdp_two_rank_run["fsdp"]
    assert main(["eval", str(run), "--tasks", "bpb", "--wandb", "off", "--device", "cpu"]) == 0, capsys.readouterr()
    ours = json.loads((run / "eval" / f"checkpoint-{STEPS}" / "bpb.json").read_text())["metrics"]["bpb"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    validated = [m["val/bpb"] for m in metrics if m.get("step") == STEPS and "val/bpb" in m][-1]
    assert ours == pytest.approx(validated, rel=1e-5)


def _tree(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("layout", ["fsdp", "one"])
def test_a_checkpoint_of_another_size_exits_2_naming_both_shapes(fsdp_two_rank_run, layout, tmp_path, capsys):
    """The run's recorded size edited to a wider model: the sharded folder (``fsdp``) and ``model.safetensors``
    (``one``) are both refused before any weight is read, and nothing is written."""
    run = shutil.copytree(fsdp_two_rank_run[layout], tmp_path / layout, ignore=shutil.ignore_patterns("hf", "eval"))
    cfg = OmegaConf.load(run / "config.yaml")
    d_model = ARCHITECTURES["pythia"].sizes["debug"]["d_model"]
    cfg.size.d_model = 2 * d_model
    OmegaConf.save(cfg, run / "config.yaml")
    before = _tree(tmp_path)
    capsys.readouterr()

    assert main(["export", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    (line,) = err.splitlines()
    weights = SHARDED_WEIGHTS_DIR if layout == "fsdp" else runs.WEIGHTS_FILE
    assert line.startswith(f"parcae-runner: error: checkpoint={run / 'checkpoints' / f'checkpoint-{STEPS}' / weights}")
    assert f"{d_model}] there and [" in line and f"{2 * d_model}] in the model" in line, line
    assert _tree(tmp_path) == before
