"""The `parcae` lm-eval model scores exactly like lm-eval's own `hf` model on the exported checkpoint."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model

from parcae_runner.config import compose_run_config
from parcae_runner.eval.harness import ParcaeLM
from parcae_runner.eval.lastword import held_out_documents, lastword_examples
from parcae_runner.train.runner import train
from tests.eval.conftest import STEPS, eval_overrides

# the tests score a trained run and its export (about 25 s on a busy 2-core box)
pytestmark = pytest.mark.slow


def _requests(kind: str, args_list: list[tuple]) -> list[Instance]:
    return [Instance(kind, {}, args, i) for i, args in enumerate(args_list)]


@pytest.fixture(scope="module")
def exported(trained_run):
    out = subprocess.run(
        [sys.executable, "-m", "parcae_runner.cli", "export", str(trained_run), "--checkpoint", str(STEPS)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return trained_run / "hf" / f"checkpoint-{STEPS}"


def test_loglikelihoods_equal_lm_eval_hf_model_on_the_export(trained_run, exported):
    ours = get_model("parcae").create_from_arg_string(f"run={trained_run},checkpoint={STEPS},batch_size=5")
    hf = get_model("hf").create_from_arg_string(f"pretrained={exported},batch_size=3,device=cpu,dtype=float32")
    assert isinstance(ours, ParcaeLM) and ours.max_length == hf.max_length == 64

    rng = torch.Generator().manual_seed(0)
    examples = lastword_examples(held_out_documents(), 40)
    pairs = [(" ".join(e["text"].split(" ")[:-1]), " " + e["text"].split(" ")[-1]) for e in examples]
    pairs += [
        ("", "An empty context is conditioned on <|endoftext|>."),
        ("Trailing spaces move to the continuation   ", "like this"),
        ("word " * 200, " longer than the context window: cut from the left"),
        ("x = 1\n", "y = 2\n" * 8),  # a continuation of most of the window
    ]
    # random order of requests: batching (sorted by length, padded) must not change any score
    order = torch.randperm(len(pairs), generator=rng).tolist()
    pairs = [pairs[i] for i in order]
    a = ours.loglikelihood(_requests("loglikelihood", pairs), disable_tqdm=True)
    b = hf.loglikelihood(_requests("loglikelihood", pairs), disable_tqdm=True)
    assert len(a) == len(b) == len(pairs)
    worst = max(abs(x[0] - y[0]) for x, y in zip(a, b, strict=True))
    assert worst < 1e-4, worst
    assert [x[1] for x in a] == [y[1] for y in b]
    assert all(x[0] < 0 for x in a)

    texts = [(" ".join(e["text"] for e in examples[:10]),), ("short text",)]
    rolling_a = ours.loglikelihood_rolling(_requests("loglikelihood_rolling", texts), disable_tqdm=True)
    rolling_b = hf.loglikelihood_rolling(_requests("loglikelihood_rolling", texts), disable_tqdm=True)
    assert max(abs(x - y) for x, y in zip(rolling_a, rolling_b, strict=True)) < 1e-3  # sums of ~1,500 tokens

    gen_args = [
        ("def parse(path):", {"until": ["\n\n"], "max_gen_toks": 12}),
        ("The value of", {"until": ["."], "max_gen_toks": 8}),
        ("Return the", {"until": [], "max_gen_toks": 5}),
    ]
    gen_a = ours.generate_until(_requests("generate_until", gen_args), disable_tqdm=True)
    gen_b = hf.generate_until(_requests("generate_until", gen_args), disable_tqdm=True)
    assert gen_a == gen_b


@pytest.mark.slow
def test_looped_model_takes_a_recurrence(data_cache, tmp_path, trained_run):
    overrides = [o for o in eval_overrides(data_cache, tmp_path) if not o.startswith(("arch=", "train.max_steps"))]
    run = train(compose_run_config([*overrides, "arch=parcae", "train.max_steps=6"])).path
    pairs = [("The parser reads a file and returns", " a tree"), ("Each node keeps", " its children")]
    scores = {}
    for r in (1, 2, 6):
        lm = ParcaeLM(run=str(run), recurrence=r)
        scores[r] = [s for s, _ in lm.loglikelihood(_requests("loglikelihood", pairs), disable_tqdm=True)]
    assert scores[1] != scores[2] != scores[6]  # the depth reaches the scores
    with pytest.raises(ValueError, match="looped models only"):
        ParcaeLM(run=str(trained_run), recurrence=2)
