"""parcae_baseline (Parcae's baseline, formerly gpt) and the FLOP convention for every non-looped architecture."""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from parcae_runner.models import ARCHITECTURES, build_model
from parcae_runner.models.flops import training_flops_per_token


def test_parcae_baseline_has_as_many_blocks_as_parcae_has_distinct_blocks():
    for size, dims in ARCHITECTURES["parcae_baseline"].sizes.items():
        p = ARCHITECTURES["parcae"].sizes[size]
        assert dims["n_layers"] == p["n_prelude"] + p["n_core"] + p["n_coda"]
        assert (dims["d_model"], dims["n_heads"]) == (p["d_model"], p["n_heads"])


def test_init_and_tying():
    model = build_model({"name": "parcae_baseline"}, "debug", 97)
    assert model.lm_head.weight is model.embed.weight
    assert [b.has_value_embedding for b in model.blocks] == [True, False, True]  # alternate, last included
    assert sorted(model.value_embeds) == ["0", "2"]
    for block in model.blocks:
        assert torch.all(block.attn.proj.weight == 0) and torch.all(block.mlp.down.weight == 0)
        assert all(not isinstance(m, torch.nn.Linear) or m.bias is None for m in block.modules())
    untied = build_model({"name": "parcae_baseline", "tie_embeddings": False}, "debug", 97)
    assert untied.lm_head.weight is not untied.embed.weight


# ---------------------------------------------------------------------------------------------- FLOPs


def _measured_flops_per_token(model, tokens: torch.Tensor) -> dict[str, float]:
    """FlopCounterMode over forward + backward, per token, by op.

    On CPU the fused SDPA op is not counted at all, so the math backend is forced: its two T x T products
    are then ``aten.bmm`` (the only bmm's in these models), counted dense.
    """
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        logits = model(tokens)
        F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    return {str(op): n / tokens.numel() for op, n in counter.get_flop_counts()["Global"].items()}


# How each measurement is made comparable with the convention (6 N + 6 L T d):
# * attention (parcae_baseline, pythia): FlopCounterMode counts the dense T x T score and value products; a causal
#   kernel does half of them, which is what the convention's 6 T d per layer assumes: halve the bmm count.
# * mamba: FlopCounterMode's convolution_backward ignores `groups` and counts the depthwise conv's weight
#   gradient as a dense conv (x d_inner too much); replace it by 2 x the (correctly counted) forward conv.
#   The selective scan itself (~9 d_inner N elementwise FLOPs per token per layer) is counted by neither;
#   6 N counts A_log, D, the conv and the biases as if they were matmul weights (+5% at debug size).
# * rwkv4: the WKV recurrence is elementwise and counted by neither; 6 N counts the time-mix vectors.
CORRECTIONS = {
    "parcae_baseline": lambda c: c.get("aten.bmm", 0) / 2,
    "pythia": lambda c: c.get("aten.bmm", 0) / 2,
    "mamba": lambda c: c.get("aten.convolution_backward", 0) - 2 * c.get("aten.convolution", 0),
    "rwkv4": lambda c: 0.0,
}


@pytest.mark.parametrize("name", list(CORRECTIONS))
def test_convention_matches_flop_counter(name):
    torch.manual_seed(0)
    seq_len = 64
    model = build_model({"name": name}, "debug", 512).train()
    tokens = torch.randint(0, 512, (2, seq_len))
    counts = _measured_flops_per_token(model, tokens)
    raw = sum(counts.values())
    comparable = raw - CORRECTIONS[name](counts)
    predicted = training_flops_per_token(model, seq_len)
    print(
        f"\n{name}: predicted {predicted:,.0f}, measured {raw:,.0f}, corrected {comparable:,.0f}, "
        f"ratio {predicted / comparable:.3f}; by op { ({k: round(v) for k, v in counts.items()}) }"
    )
    assert predicted == pytest.approx(comparable, rel=0.10)


def test_gpt_is_a_deprecated_alias_that_still_loads(capfd, tmp_path):
    """``gpt`` (the old name) builds parcae_baseline, says so, and composes from ``arch=gpt``; a run directory
    whose config.yaml says ``arch.name: gpt`` loads its checkpoint."""
    from omegaconf import OmegaConf
    from safetensors.torch import save_model

    from parcae_runner.config import compose_run_config
    from parcae_runner.config.validate import validate_run_config

    model = build_model({"name": "gpt"}, "debug", 97)
    assert model.hparams.name == "parcae_baseline" and type(model).__name__ == "ParcaeBaselineModel"
    assert "arch=gpt is deprecated" in capfd.readouterr().err
    cfg = compose_run_config(["arch=gpt", "size=debug"])
    validate_run_config(cfg)
    assert cfg.arch.name == "parcae_baseline"
    # an old run's resolved config: name gpt and the hyperparameters as they were written then
    old = OmegaConf.create(
        {
            "arch": {
                "name": "gpt",
                "norm_eps": 1e-6,
                "rope_base": 50000.0,
                "mlp_ratio": 4,
                "value_embeddings": True,
                "tie_embeddings": True,
            }
        }
    )
    save_model(model, str(tmp_path / "model.safetensors"))
    again = build_model(old.arch, "debug", 97)
    from safetensors.torch import load_model

    load_model(again, str(tmp_path / "model.safetensors"))
    tokens = torch.randint(0, 97, (1, 9))
    torch.testing.assert_close(again.eval()(tokens), model.eval()(tokens))
