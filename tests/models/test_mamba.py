import math

import pytest
import torch
import torch.nn.functional as F

from parcae_runner.models import build_model, count_parameters
from parcae_runner.train.optim import parameter_groups

transformers = pytest.importorskip("transformers")

PARC_VOCAB = 50277  # len(EleutherAI/pythia-160m tokenizer), the Parc models' vocab
REF = {"name": "mamba", "kernel_impl": "reference"}


def test_parc_count_matches_hf():
    config = transformers.MambaConfig(
        vocab_size=PARC_VOCAB, hidden_size=768, num_hidden_layers=24, state_size=16, expand=2, time_step_rank=48
    )
    with torch.device("meta"):
        ours = build_model({"name": "mamba"}, "parc", PARC_VOCAB)
        hf = transformers.MambaForCausalLM(config)
    n_hf = sum(p.numel() for p in hf.parameters())  # parameters() lists the tied head once
    assert count_parameters(ours) == n_hf == 129_133_056


def test_init():
    torch.manual_seed(0)
    model = build_model(REF, "debug", 97)
    n_layers, d_inner, n_state, dt_rank = 2, 128, 16, 4  # d 64: E = 2 d, dt_rank = ceil(64 / 16)
    mixer = model.blocks[0].mixer
    assert mixer.A_log.shape == (d_inner, n_state) and mixer.dt_proj.in_features == dt_rank
    assert torch.equal(mixer.A_log, torch.log(torch.arange(1, n_state + 1.0)).expand(d_inner, -1))  # A = -(1..N)
    assert torch.all(mixer.D == 1)
    dt = F.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 1e-1 * 1.001
    assert mixer.dt_proj.weight.abs().max() <= dt_rank**-0.5
    # out_proj: PyTorch's default U(+-1/sqrt(fan_in)) divided by sqrt(n_layers)
    bound = 1 / math.sqrt(d_inner) / math.sqrt(n_layers)
    assert mixer.out_proj.weight.abs().max() <= bound
    assert mixer.out_proj.weight.abs().max() > 0.9 * bound
    assert model.embed.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert model.lm_head.weight is model.embed.weight
    assert torch.all(model.norm_f.weight == 1)


def test_no_weight_decay():
    model = build_model(REF, "debug", 97)
    names = dict(model.named_parameters())
    opt_out = model.no_weight_decay()
    assert opt_out <= set(names)
    assert opt_out == {f"blocks.{i}.mixer.{p}" for i in range(2) for p in ("A_log", "D", "dt_proj.bias")}
    decayed = {id(p) for p in parameter_groups(model, 0.1, [])[0]["params"]}
    assert id(model.blocks[0].mixer.A_log) not in decayed and id(model.blocks[0].mixer.in_proj.weight) in decayed
    hf_recipe = build_model({**REF, "decay_ssm_params": True}, "debug", 97)
    assert hf_recipe.no_weight_decay() == set()
    # A_log is then decayed; D and the dt bias still are not, by the optimizer's own ndim < 2 rule
    assert id(hf_recipe.blocks[0].mixer.A_log) in {id(p) for p in parameter_groups(hf_recipe, 0.1, [])[0]["params"]}


def test_dt_rank_override_and_untied():
    model = build_model({**REF, "dt_rank": 7, "tie_embeddings": False}, "debug", 97)
    assert model.blocks[0].mixer.dt_proj.in_features == 7
    assert model.lm_head.weight is not model.embed.weight
    assert model(torch.randint(0, 97, (1, 5))).shape == (1, 5, 97)
