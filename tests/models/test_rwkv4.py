import math

import pytest
import torch

from parcae_runner.models import build_model, count_parameters
from parcae_runner.models.rwkv4.model import RWKV4Model
from parcae_runner.train.optim import parameter_groups

transformers = pytest.importorskip("transformers")

from parcae_runner.models.rwkv4.hf import to_hf_config, to_hf_state_dict  # noqa: E402

PARC_VOCAB = 50277
REF = {"name": "rwkv4", "kernel_impl": "reference"}


def test_parc_count_matches_hf():
    config = transformers.RwkvConfig(
        vocab_size=PARC_VOCAB, hidden_size=768, num_hidden_layers=12, intermediate_size=3072, context_length=1024
    )
    with torch.device("meta"):
        ours = build_model({"name": "rwkv4"}, "parc", PARC_VOCAB)
        hf = transformers.RwkvForCausalLM(config)
    n_hf = sum(p.numel() for p in hf.parameters())
    assert count_parameters(ours) == n_hf == 169_342_464


def _randomise(model, scale=0.1):
    """Perturb every parameter, so zero-initialised matrices and default norms take part."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model


def test_blinkdl_init():
    model = build_model(REF, "debug", 97)
    d, n_layers = 64, 2
    ramp = torch.arange(d) / d
    for layer_id, block in enumerate(model.blocks):
        att, ffn = block.attention, block.feed_forward
        r0, r1 = layer_id / (n_layers - 1), 1 - layer_id / n_layers
        assert att.time_decay[0].item() == pytest.approx(-5) and att.time_decay[-1].item() == pytest.approx(3)
        assert att.time_first[:3].tolist() == pytest.approx([math.log(0.3) + z for z in (0, 0.5, -0.5)])
        torch.testing.assert_close(att.time_mix_key.flatten(), ramp**r1)
        torch.testing.assert_close(att.time_mix_value.flatten(), ramp**r1 + 0.3 * r0)
        torch.testing.assert_close(att.time_mix_receptance.flatten(), ramp ** (0.5 * r1))
        torch.testing.assert_close(ffn.time_mix_key.flatten(), ramp**r1)
        for w in (att.key.weight, att.receptance.weight, att.output.weight, ffn.receptance.weight, ffn.value.weight):
            assert torch.all(w == 0)
        torch.testing.assert_close(att.value.weight @ att.value.weight.T, torch.eye(d), atol=1e-5, rtol=0)
    assert model.embed.weight.abs().max() <= 1e-4
    assert model.lm_head.weight is not model.embed.weight
    assert torch.all(model.ln0.weight == 1) and torch.all(model.ln_out.bias == 0)


def test_no_weight_decay_covers_the_time_parameters():
    model = build_model(REF, "debug", 97)
    opt_out = model.no_weight_decay()
    assert opt_out <= set(dict(model.named_parameters()))
    assert "blocks.1.attention.time_mix_value" in opt_out and "blocks.0.feed_forward.time_mix_key" in opt_out
    assert "blocks.0.attention.time_decay" in opt_out
    assert not any(name.endswith("key.weight") for name in opt_out)
    decayed = {id(p) for p in parameter_groups(model, 0.1, [])[0]["params"]}
    att = model.blocks[0].attention
    assert id(att.time_mix_key) not in decayed and id(att.key.weight) in decayed


def test_rescale_every_matches_hf_eval_and_is_nearly_a_no_op():
    torch.manual_seed(0)
    plain = _randomise(build_model(REF, "debug", 97)).eval()
    rescaled = build_model({**REF, "rescale_every": 1}, "debug", 97).eval()
    rescaled.load_state_dict(plain.state_dict())
    tokens = torch.randint(0, 97, (2, 19))
    hf = transformers.RwkvForCausalLM(to_hf_config(rescaled)).eval()
    hf.load_state_dict(to_hf_state_dict(rescaled), strict=True)
    with torch.no_grad():
        ours, theirs, ref = rescaled(tokens), hf(input_ids=tokens).logits, plain(tokens)
    assert hf.config.rescale_every == 1
    assert (ours - theirs).abs().max().item() < 1e-4
    # halving the residual stream only moves the LayerNorms' eps
    assert (ours - ref).abs().max().item() < 1e-2


def test_export_refuses_an_eps_hf_cannot_express():
    model = build_model({**REF, "norm_eps": 1e-6}, "debug", 97)
    with pytest.raises(ValueError, match="ln_out"):
        to_hf_config(model)


def test_meta_then_materialise_and_tied():
    with torch.device("meta"):
        model = build_model({**REF, "tie_embeddings": True}, "debug", 64)
    assert isinstance(model, RWKV4Model)
    model.to_empty(device="cpu")
    model.init_weights()
    assert model.lm_head.weight is model.embed.weight
    untied = build_model(REF, "debug", 64)
    assert count_parameters(untied) - count_parameters(model) == 64 * 64
    assert torch.isfinite(model(torch.randint(0, 64, (1, 8)))).all()
