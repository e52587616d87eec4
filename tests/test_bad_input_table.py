"""Every command, fed bad input: exit code 2, one line naming the problem, no traceback, and not one byte changed
under the results root or the data cache (hashed before and after)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parcae_runner.cli import build_parser, main
from parcae_runner.config import config_dir, group_options

REPO = config_dir().parent


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A results root with one finished debug run and the records a crashed attempt left in the run directory every
    bad ``train`` targets, a prepared data cache, and a few bad files to point at."""
    root = tmp_path_factory.mktemp("bad-input")
    cache, results = root / "cache", root / "results"
    base = ["arch=pythia", "size=debug", "data.vocab_size=512", "data.seq_len=64", f"data.cache_dir={cache}"]
    args = [*base, f"results_dir={results}", "logger=none", "train.max_steps=4", "train.progress=false"]
    assert main(["train", *args]) == 0
    crashed = results / "single" / "bad-input"
    (crashed / "checkpoints" / "checkpoint-7").mkdir(parents=True)
    (crashed / "run.json").write_text('{"status": "failed", "attempts": 1}\n')
    (crashed / "metrics.jsonl").write_text('{"step": 5, "train/loss": 4.2}\n')
    (crashed / "checkpoints" / "checkpoint-7" / "meta.json").write_text('{"step": 7}\n')
    other = root / "llama-folder"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    bad_yaml = root / "bad.yaml"
    bad_yaml.write_text("name: [unclosed\n")
    not_tok = root / "not-a-tokenizer.json"
    not_tok.write_text('{"hello": 1}')
    return {
        "root": root,
        "cache": cache,
        "results": results,
        "run": results / "single" / "pythia-debug-s0",
        "other": other,
        "bad_yaml": bad_yaml,
        "not_tok": not_tok,
    }


def _tree(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


T = "train"
# (command line with {placeholders}, text the one-line message must hold: the key, the value, what is allowed)
CASES: list[tuple[str, str]] = [
    (f"{T} arch=gpt5", "arch=gpt5: unknown arch; choose one of: " + ", ".join(group_options("arch"))),
    (f"{T} size=13b", "size=13b: unknown size; choose one of: "),
    (f"{T} optimizer=lion", "optimizer=lion: not a config group or key"),
    (f"{T} train.max_stepz=10", "train.max_stepz=10: unknown config key; allowed keys of train: max_steps"),
    (f"{T} train.max_steps=-5", "train.max_steps=-5: must be a positive number"),
    (
        f"{T} train.batch_size=10 train.micro_batch_size=4",
        "train.batch_size=10: the effective batch must be a multiple of train.micro_batch_size",
    ),
    (f"{T} train.precision=fp8", "train.precision=fp8"),
    (f"{T} train.schedule=sawtooth", "train.schedule=sawtooth"),
    (f"{T} data.val_fraction=1.5", "data.val_fraction=1.5"),
    (f"{T} data.seq_len=0", "data.seq_len=0"),
    (f"{T} data=text_files data.path=/no/such/corpus", "data.path=/no/such/corpus: no such file or directory"),
    (f"{T} data=hf data.dataset=parcae-tests/absent-dataset", "data.download=true"),
    (f"{T} data.tokenizer={{not_tok}} data.vocab_size=null", "is not a tokenizer.json"),
    (f"{T} data.tokenizer_recipe=sentencepiece", "data.tokenizer_recipe=sentencepiece"),
    (f"{T} data.order=random", "data.order=random"),
    (f"{T} cluster=nowhere", "cluster=nowhere"),
    (f"{T} logger.mode=loud", "logger.mode=loud"),
    (f"{T} train.eval.tasks=[no_such_task]", "no_such_task"),
    (f"{T} train.init_from=/no/such/folder", "train.init_from=/no/such/folder"),
    (f"{T} train.init_from={{other}}", "train.init_from"),
    # a run that would see the corpus thousands of times: refused, with the numbers
    (f"{T} train.max_steps=100000", "above data.max_epochs=4; use a larger corpus or fewer steps"),
    (f"{T} train.divergence.max_skipped_in_a_row=0", "train.divergence.max_skipped_in_a_row=0"),
    # sharding (issue 26): a batch the FSDP world does not divide; a run that does not fit the profile's GPU
    (
        f"{T} train.strategy=fsdp train.devices=2 train.batch_size=6 train.micro_batch_size=2",
        "train.batch_size=6: the effective batch must be a multiple of train.micro_batch_size (2) x the world size",
    ),
    (
        f"{T} arch=llama size=llama-7b cluster=slurm_a100 train.strategy=ddp",
        "above cluster.gpu_memory_gb=80; smallest change that fits: train.strategy=fsdp cluster.gpus_per_node=",
    ),
    (
        f"{T} train.strategy=fsdp train.eval.tasks=[lambada_openai]",
        "train.eval.tasks=['lambada_openai']: evaluations during training need the whole model in one process",
    ),
    ("launch arch=gpt5", "arch=gpt5"),
    ("show arch=gpt5", "arch=gpt5"),
    ("show data.seq_len=0", "data.seq_len=0"),
    ("prepare data=parquet data.path=/no/such/shards", "data.path=/no/such/shards: no such file"),
    ("prepare data.docs_per_shard=0", "data.docs_per_shard=0"),
    ("prepare data=pretokenized data.path=/no/such/prefix data.tokenizer=gpt2", "data.path=/no/such/prefix"),
    ("plan sweeps/no_such_study.yaml", "no such sweep file"),
    ("plan sweeps/parc.yaml --variant nope", "variant=nope"),
    ("plan sweeps/parc.yaml --variant demo train.batch_size=7", "train.batch_size"),
    ("plan {bad_yaml}", "does not parse as YAML"),
    ("sweep sweeps/parc.yaml --variant nope", "variant=nope"),
    ("sweep sweeps/parc.yaml --variant demo cluster=nowhere", "cluster=nowhere"),
    ("status no-such-sweep --results {results}", "sweep=no-such-sweep"),
    ("resubmit no-such-sweep --results {results}", "sweep=no-such-sweep"),
    ("cancel no-such-sweep --results {results}", "sweep=no-such-sweep"),
    ("collect no-such-sweep --results {results}", "sweep=no-such-sweep"),
    ("report no-such-sweep --results {results}", "sweep=no-such-sweep"),
    ("fit no-such-sweep --results {results}", "sweep=no-such-sweep"),
    ("wandb-sync no-such-sweep --results {results}", "sweep=no-such-sweep"),
    ("card {root}/no-such-run", "not a run directory"),
    ("senses {root}/no-such-run the", "not a run directory"),
    ("distill teacher=/no/such/teacher", "distill.teacher=/no/such/teacher: not a Hugging Face model folder"),
    ("export {root}/no-such-run", "not a run directory"),
    ("export {run} --checkpoint 999", "--checkpoint=999"),
    ("export {run} --format onnx", "--format=onnx"),
    ("eval {run} --tasks no_such_task", "no_such_task"),
    ("eval {root}/no-such-run --tasks bpb", "not a run directory"),
    ("eval {run} --checkpoint 999 --tasks bpb", "--checkpoint=999"),
    ("eval {run} --tasks bpb --recurrence 2", "recurrence"),
    ("eval {run}", "usage: parcae-runner eval"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("line", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(
    world: dict[str, Path], line: str, expected: str, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.chdir(REPO)
    args = line.format(**{k: str(v) for k, v in world.items()}).split()
    if args[0] in ("train", "launch", "show", "prepare"):
        base = [f"data.cache_dir={world['cache']}", f"results_dir={world['results']}", "logger=none"]
        base += ["arch=pythia", "size=debug", "data.vocab_size=512", "data.seq_len=64", "run_name=bad-input"]
        # the case's own values win: they come after the base
        args = [args[0], *base, *args[1:]]
    elif args[0] in ("plan", "sweep"):
        args += [f"data.cache_dir={world['cache']}", f"results_dir={world['results']}"]
    before = _tree(world["results"], world["cache"])
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err[-2000:]
    message = [line for line in err.splitlines() if line.startswith("parcae-runner: error: ")]
    assert len(message) == 1 and expected in message[0], err[-2000:]
    assert "Traceback" not in err
    assert _tree(world["results"], world["cache"]) == before


def _commands() -> set[str]:
    """Every subcommand but ``lm-eval``: a pass-through whose arguments, and so whose errors, are lm-eval's own
    (tests/eval/test_lm_eval_cli.py runs it)."""
    from parcae_runner.eval.lm_eval_cli import COMMAND as LM_EVAL

    (subcommands,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(subcommands.choices) - {LM_EVAL}


def test_every_row_is_distinct_and_every_command_has_one() -> None:
    lines = [line for line, _ in CASES]
    assert len(set(lines)) == len(lines), sorted(line for line in lines if lines.count(line) > 1)
    assert {line.split()[0] for line in lines} == _commands()
    scripts = [(tuple(sorted(env.items())), tuple(overrides)) for env, overrides, _ in SLURM_SCRIPT_CASES]
    assert len(set(scripts)) == len(scripts)


SLURM_SCRIPT_CASES = [
    ({}, ["arch=gpt5"], "arch=gpt5"),
    ({"CONFIG": "launch_configs/no-such-preset.yaml"}, [], "no-such-preset"),
    ({"CONTAINER": "podman"}, [], "podman"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("env", "overrides", "expected"), SLURM_SCRIPT_CASES, ids=[c[2] for c in SLURM_SCRIPT_CASES])
def test_launch_job_slurm_bad_input(world: dict[str, Path], env: dict, overrides: list[str], expected: str) -> None:
    before = _tree(world["results"], world["cache"])
    base = [f"data.cache_dir={world['cache']}", f"results_dir={world['results']}", "logger=none"]
    result = subprocess.run(
        ["bash", "launch_job.slurm", *base, *overrides],
        cwd=REPO,
        env={**os.environ, "PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert _tree(world["results"], world["cache"]) == before
