import math

import pytest
import torch

from parcae_runner.models import ARCHITECTURES, build_model, count_parameters
from parcae_runner.models.pythia.model import PythiaModel

transformers = pytest.importorskip("transformers")

from parcae_runner.models.pythia.hf import to_hf_config, to_hf_state_dict  # noqa: E402

PYTHIA_SIZES = list(ARCHITECTURES["pythia"].sizes)
VOCAB = 50304

# published totals of the EleutherAI/pythia-* checkpoints (vocab 50304)
PUBLISHED = {
    "14m": 14_067_712,
    "31m": 30_494_720,
    "70m": 70_426_624,
    "160m": 162_322_944,
    "410m": 405_334_016,
    "1b": 1_011_781_632,
    "1.4b": 1_414_647_808,
}


def _hf_model(config):
    return transformers.GPTNeoXForCausalLM(config)


@pytest.mark.parametrize("size", PYTHIA_SIZES)
def test_parameter_count_matches_hf(size):
    dims = ARCHITECTURES["pythia"].sizes[size]
    config = transformers.GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=dims["d_model"],
        num_hidden_layers=dims["n_layers"],
        num_attention_heads=dims["n_heads"],
        intermediate_size=4 * dims["d_model"],
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
        use_parallel_residual=True,
        tie_word_embeddings=False,
    )
    with torch.device("meta"):
        ours = build_model({"name": "pythia"}, size, VOCAB)
        hf = _hf_model(config)
    n_hf = sum(p.numel() for p in hf.parameters())
    assert count_parameters(ours) == n_hf
    if size in PUBLISHED:
        assert n_hf == PUBLISHED[size]


def test_non_embedding_count_matches_pythia_paper():
    with torch.device("meta"):
        model = build_model({"name": "pythia"}, "70m", VOCAB)
    assert count_parameters(model, non_embedding=True) == 18_915_328


@pytest.mark.parametrize("size,vocab", [("debug", 256), ("14m", VOCAB)])
def test_logits_match_hf(size, vocab):
    torch.manual_seed(0)
    model = build_model({"name": "pythia", "init": "pythia"}, size, vocab).eval()
    # non-trivial norms and biases, so a misplaced one would show
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    hf = _hf_model(to_hf_config(model, attn_implementation="eager")).eval()
    hf.load_state_dict(to_hf_state_dict(model), strict=True)
    tokens = torch.randint(0, vocab, (2, 37))
    with torch.no_grad():
        ours = model(tokens)
        theirs = hf(input_ids=tokens).logits
    assert ours.shape == theirs.shape == (2, 37, vocab)
    assert (ours - theirs).abs().max().item() < 1e-4


def test_hf_config_fields():
    model = build_model({"name": "pythia", "rotary_pct": 0.5, "rotary_base": 500, "norm_eps": 1e-6}, "debug", 64)
    config = to_hf_config(model)
    assert config.rope_parameters["partial_rotary_factor"] == 0.5
    assert config.rope_parameters["rope_theta"] == 500.0
    assert config.layer_norm_eps == 1e-6
    assert config.use_parallel_residual and not config.tie_word_embeddings
    assert config.hidden_dropout == 0 and config.attention_dropout == 0
    assert config.intermediate_size == 4 * 64


def _std(t):
    return t.float().std().item()


def test_pythia_init_stds():
    torch.manual_seed(0)
    model = build_model({"name": "pythia", "init": "pythia"}, "70m", 4096)
    d, n_layers = 512, 6
    small, wang = math.sqrt(2 / (5 * d)), 2 / (n_layers * math.sqrt(d))
    block = model.blocks[0]
    for weight, want in [
        (model.embed.weight, small),
        (model.lm_head.weight, small),
        (block.attn.qkv.weight, small),
        (block.mlp.up.weight, small),
        (block.attn.proj.weight, wang),
        (block.mlp.down.weight, wang),
    ]:
        assert _std(weight) == pytest.approx(want, rel=0.1)
    assert torch.all(block.attn.qkv.bias == 0) and torch.all(block.mlp.down.bias == 0)
    assert torch.all(block.ln1.weight == 1) and torch.all(block.ln1.bias == 0)
    assert torch.all(model.norm.weight == 1)


def test_normal_init_std():
    torch.manual_seed(0)
    model = build_model({"name": "pythia", "init": "normal", "init_std": 0.05}, "70m", 4096)
    block = model.blocks[-1]
    for weight in (model.embed.weight, model.lm_head.weight, block.attn.qkv.weight, block.mlp.down.weight):
        assert _std(weight) == pytest.approx(0.05, rel=0.1)


def test_unknown_init():
    with pytest.raises(ValueError, match="arch.init"):
        build_model({"name": "pythia", "init": "xavier"}, "debug", 64)


def test_rotary_cache_grows_and_is_not_saved():
    model = build_model({"name": "pythia"}, "debug", 64)
    model(torch.zeros(1, 5, dtype=torch.long))
    assert model.rotary.cos.shape[0] == 5
    model(torch.zeros(1, 40, dtype=torch.long))
    assert model.rotary.cos.shape[0] == 40
    assert not any("rotary" in k for k in model.state_dict())


def test_tied_embeddings():
    model = build_model({"name": "pythia", "tie_embeddings": True}, "debug", 64)
    assert model.lm_head.weight is model.embed.weight
    assert isinstance(model, PythiaModel)
    untied = build_model({"name": "pythia"}, "debug", 64)
    assert count_parameters(untied) - count_parameters(model) == 64 * 64
