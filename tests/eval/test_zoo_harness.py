"""lm-eval's own `hf` model on zoo exports scores like our `parcae` lm-eval model on the run: a stock class
(GPT-2, LLaMA, Mistral, BLOOM) and trust-remote-code folders (the Backpack; looped Parcae at its eval depth)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model

from parcae_runner.config import compose_run_config
from parcae_runner.train.runner import train
from tests.eval.conftest import eval_overrides

pytestmark = pytest.mark.slow
STEPS = 8
PAIRS = [
    ("The parser reads a file and returns", " a tree"),
    ("Each node keeps", " its children"),
    ("", "An empty context is conditioned on the end-of-text token."),
    ("x = 1\n", "y = 2\n"),
]


# parcae with state_init=zero: eval-mode like-init noise is drawn for the whole [B, T, d] batch, so its scores
# depend on how a harness batches and pads requests (ours and lm-eval's hf batch differently)
ARCHS = [
    ("gpt2", False, []),
    ("llama", False, []),
    ("mistral", False, ["arch.sliding_window=16"]),
    ("bloom", False, []),
    ("backpack", True, []),
    ("parcae", True, ["arch.state_init=zero"]),
]


@pytest.mark.parametrize("arch,remote,extra", ARCHS, ids=[a[0] for a in ARCHS])
def test_hf_model_on_the_export_scores_like_the_run(arch, remote, extra, data_cache, tmp_path):
    overrides = [o for o in eval_overrides(data_cache, tmp_path) if not o.startswith(("arch=", "train.max_steps"))]
    run = train(compose_run_config([*overrides, f"arch={arch}", f"train.max_steps={STEPS}", *extra])).path
    cmd = [sys.executable, "-m", "parcae_runner.cli", "export", str(run), "--out", str(tmp_path / "hf")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]

    ours = get_model("parcae").create_from_arg_string(f"run={run},batch_size=2")
    args = f"pretrained={tmp_path / 'hf'},batch_size=3,device=cpu,dtype=float32"
    hf = get_model("hf").create_from_arg_string(args + (",trust_remote_code=True" if remote else ""))
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(PAIRS)]
    a = ours.loglikelihood(requests, disable_tqdm=True)
    b = hf.loglikelihood(requests, disable_tqdm=True)
    assert max(abs(x[0] - y[0]) for x, y in zip(a, b, strict=True)) < 1e-4
    assert [x[1] for x in a] == [y[1] for y in b]
    gen = [Instance("generate_until", {}, ("The value of", {"until": ["."], "max_gen_toks": 6}), 0)]
    assert ours.generate_until(gen, disable_tqdm=True) == hf.generate_until(gen, disable_tqdm=True)
