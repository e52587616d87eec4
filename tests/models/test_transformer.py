"""The configurable transformer family: sliding window, ALiBi, GQA/MQA, block options and config checks."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from parcae_runner.config import ConfigErrors, compose_run_config
from parcae_runner.config.validate import validate_run_config
from parcae_runner.models import build_model
from parcae_runner.models.transformer.attention import alibi_slopes

FAMILY = ("gpt2", "llama", "mistral", "bloom")


def _perturbed(cfg: dict, size: str = "debug", vocab: int = 61) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(cfg, size, vocab).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("position", ["rope", "alibi", "learned", "none"])
def test_sliding_window_gradient_reaches_only_the_window(position):
    """d logits[t] / d embedding[s] is zero exactly when s <= t - window (one layer: the receptive field is the
    window; two layers would widen it to 2 * (window - 1))."""
    window, t_len = 4, 12
    cfg = {"name": "mistral", "sliding_window": window, "position": position}
    model = _perturbed(cfg)
    model.blocks = model.blocks[:1]
    tokens = torch.randint(0, 61, (1, t_len))
    emb = model.embed(tokens).detach().requires_grad_(True)
    model.embed = _Fixed(emb)
    logits = model(tokens)  # [1, T, V]
    for t in range(t_len):
        (grad,) = torch.autograd.grad(logits[0, t].sum(), emb, retain_graph=True)
        reach = grad[0].abs().sum(-1)  # [T]
        for s in range(t_len):
            inside = t - window < s <= t
            assert (reach[s] > 0) == inside, f"position {t} and token {s}: window {window}"


class _Fixed(torch.nn.Module):
    """An embedding that returns a given tensor (so the test can take gradients w.r.t. it)."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.value


def _paper_slopes(n: int) -> list[float]:
    """Press et al. (2022), section 3: for n heads, a power of two, the slopes are 2^(-8/n), 2^(-16/n), ...,
    2^(-8); otherwise the 2^floor(log2 n) slopes of the nearest power of two, then the odd-numbered slopes
    (1st, 3rd, ...) of 2 * that power, until n."""
    if math.log2(n).is_integer():
        return [2 ** (-8 * (i + 1) / n) for i in range(n)]
    p = 2 ** int(math.log2(n))
    doubled = [2 ** (-8 * (i + 1) / (2 * p)) for i in range(2 * p)]
    return [2 ** (-8 * (i + 1) / p) for i in range(p)] + doubled[::2][: n - p]


@pytest.mark.parametrize("n", [8, 12, 16])
def test_alibi_slopes_are_the_papers(n):
    torch.testing.assert_close(alibi_slopes(n), torch.tensor(_paper_slopes(n)), rtol=1e-6, atol=0)
    if n == 8:  # the paper's worked example: 1/2, 1/4, ..., 1/256
        assert alibi_slopes(8).tolist() == [2.0**-k for k in range(1, 9)]


def test_gqa_with_one_kv_head_is_multi_query_attention():
    """n_kv_heads=1 equals MHA whose every head reads the same key/value projection (Shazeer, 2019)."""
    mqa = _perturbed({"name": "llama", "n_kv_heads": 1})
    mha = build_model({"name": "llama", "n_kv_heads": 4}, "debug", 61).eval()
    state = mqa.state_dict()
    for name, value in list(state.items()):
        if ".attn.k." in name or ".attn.v." in name:
            state[name] = value.repeat(4, *[1] * (value.dim() - 1))  # one head's rows, for each of 4 heads
    mha.load_state_dict(state)
    tokens = torch.randint(0, 61, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(mqa(tokens), mha(tokens), rtol=0, atol=1e-6)
    assert mqa.blocks[0].attn.k.out_features == 16 and mha.blocks[0].attn.k.out_features == 64


@pytest.mark.parametrize(
    "options",
    [
        {"residual": "parallel", "position": "rope", "rotary_fraction": 0.25},
        {"norm": "rmsnorm", "mlp": "relu2", "bias": False, "tie_embeddings": False},
        {"norm_position": "post", "position": "none", "mlp": "gelu"},
        {"embed_norm": True, "position": "alibi", "mlp": "swiglu", "n_kv_heads": 2},
    ],
)
def test_block_options_build_and_are_causal(options, assert_causal):
    assert_causal(_perturbed({"name": "gpt2", **options}, vocab=101), 101)


def test_parallel_residual_differs_from_serial():
    tokens = torch.randint(0, 61, (1, 9))
    serial, parallel = _perturbed({"name": "gpt2"}), _perturbed({"name": "gpt2", "residual": "parallel"})
    with torch.no_grad():
        assert (serial(tokens) - parallel(tokens)).abs().max() > 1e-3


def _errors(*overrides: str) -> list[str]:
    with pytest.raises(ConfigErrors) as err:
        validate_run_config(compose_run_config(list(overrides)))
    return [str(e) for e in err.value.errors]


def test_config_errors_name_the_key():
    assert _errors("arch=llama", "size=debug", "arch.n_kv_heads=3") == [
        "arch.n_kv_heads=3: a divisor of n_heads=4 (n_heads = MHA, 1 = MQA)"
    ]
    assert "ALiBi and RoPE do not combine" in _errors("arch=bloom", "size=debug", "arch.position=alibi+rope")[0]
    assert _errors("arch=gpt2", "size=debug", "arch.norm=batchnorm")[0].startswith("arch.norm=batchnorm: choose one")
    assert _errors("arch=gpt2", "size=debug", "arch.mlp=geglu")[0].startswith("arch.mlp=geglu: choose one of")
    assert _errors("arch=gpt2", "size=debug", "data.seq_len=2048")[0].startswith("arch.max_positions=1024")


def test_a_window_wider_than_the_context_is_a_warning(capfd):
    validate_run_config(compose_run_config(["arch=mistral", "size=debug", "data.seq_len=64", "arch.sliding_window=64"]))
    assert (
        "arch.sliding_window=64 is not smaller than data.seq_len=64: the window has no effect" in capfd.readouterr().err
    )


@pytest.mark.parametrize("override", ["arch.n_kv_heads=3", "arch.position=alibi+rope", "arch.mlp=geglu"])
def test_bad_block_config_exits_2_with_one_line_and_writes_nothing(override, tmp_path):
    cmd = [sys.executable, "-m", "parcae_runner.cli", "train", "arch=llama", "size=debug", override]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and override.split("=")[0] in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", FAMILY)
def test_every_family_member_is_a_transformer_model(name):
    from parcae_runner.models.transformer import TransformerModel

    assert isinstance(build_model({"name": name}, "debug", 61), TransformerModel)


def test_plan_only_sizes_plan_but_do_not_train():
    from parcae_runner.config import ConfigError
    from parcae_runner.train.preflight import check_trainable

    cfg = compose_run_config(["arch=llama", "size=llama-7b"])
    validate_run_config(cfg)  # plan validates it
    with pytest.raises(ConfigError, match="size=llama-7b: plan-only for llama"):
        check_trainable(cfg)
    check_trainable(compose_run_config(["arch=llama", "size=debug"]))


def test_backpack_positions_must_cover_the_context():
    assert _errors("arch=backpack", "size=debug", "data.seq_len=1024") == [
        "arch.max_positions=512: at least data.seq_len=1024"
    ]
