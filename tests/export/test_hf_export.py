"""export_hf / import_hf: HF loads what we write and computes the same logits; the way back is exact."""

import dataclasses
import json

import pytest
import torch

from parcae_runner.data import EOT, EOT_ID, train_tokenizer
from parcae_runner.models import ARCHITECTURES, build_model

transformers = pytest.importorskip("transformers")

from parcae_runner.export.hf import export_hf  # noqa: E402
from parcae_runner.models.hf import (  # noqa: E402
    InitMismatch,
    exporter_for,
    hf_mappings,
    hf_model_type,
    import_hf,
    init_from_hf,
    load_hf,
)  # noqa: E402

VOCAB = 50304
DOCS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "def f(x):\n    return x ** 2  # squares\n",
    "Language models trained on the same data in the same order.",
    "naïve café, 日本語, emoji 🎉",
] * 4
TEXT = "The lazy fox returns x ** 2 , naïve 🎉 ."


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(DOCS, 300).save(str(path))
    return path


def _random_model(name, size, vocab):
    """Every parameter perturbed: zero-init matrices, unit norms and default decays would hide misplaced weights."""
    torch.manual_seed(0)
    model = build_model({"name": name, "kernel_impl": "reference"} if name != "pythia" else {"name": name}, size, vocab)
    with torch.no_grad():
        for p in model.parameters():
            p.add_((0.1 if p.ndim < 2 else 0.02) * torch.randn_like(p))
    return model.eval()


def test_the_parc_architectures_have_exporters():
    # the Parc models are shared as transformers checkpoints; gpt/parcae have no stock HF class
    assert set(hf_mappings()) <= set(ARCHITECTURES)
    assert {name: hf_model_type(name) for name in hf_mappings()} == {
        "pythia": "gpt_neox",
        "mamba": "mamba",
        "rwkv4": "rwkv",
        "gpt2": "gpt2",
        "llama": "llama",
        "mistral": "mistral",
        "bloom": "bloom",
    }


@pytest.mark.parametrize("name", sorted(hf_mappings()))
def test_registered_model_type_is_the_mappings_own(name):
    # the spec's hf_model_type is what the mapping's config says (the import side matches folders by it)
    model = build_model({"name": name}, "debug", 64)
    assert ARCHITECTURES[name].hf.to_hf_config(model).model_type == hf_model_type(name)


def test_architectures_without_hf_mapping_have_no_stock_exporter():
    # they export through their shipped modeling file instead (tests/export/test_remote_code.py)
    with pytest.raises(ValueError, match="no HF exporter for architecture 'parcae_baseline'"):
        exporter_for(build_model({"name": "parcae_baseline"}, "debug", 64))


@pytest.mark.parametrize("name", ["pythia", "mamba", "rwkv4"])
# the 14m models with the full vocabulary take seconds each on a CPU: slow; debug keeps the check in the quick run
@pytest.mark.parametrize("size,vocab", [("debug", 256), pytest.param("14m", VOCAB, marks=pytest.mark.slow)])
def test_export_logits_and_round_trip(name, size, vocab, tmp_path, tokenizer_path):
    model = _random_model(name, size, vocab)
    with_tokenizer = size == "debug"
    out = export_hf(
        model,
        tmp_path / "hf",
        tokenizer_path=tokenizer_path if with_tokenizer else None,
        card_text=f"# {name}-{size}\n",
    )
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == hf_model_type(name)
    assert config["bos_token_id"] == config["eos_token_id"] == EOT_ID
    assert (out / "model.safetensors").exists() and (out / "README.md").read_text() == f"# {name}-{size}\n"

    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    tokens = torch.randint(0, vocab, (2, 17))
    with torch.no_grad():
        ours, theirs = model(tokens), hf(input_ids=tokens).logits
    assert ours.shape == theirs.shape == (2, 17, vocab)
    assert (ours - theirs).abs().max().item() < 1e-4

    # the way back: the same architecture, hparams, dims and bit-identical weights
    arch_name, hparams, dims, state = import_hf(out)
    assert arch_name == name and dims == model.dims
    for field in dataclasses.fields(hparams):
        if field.name not in ("kernel_impl", "init", "decay_ssm_params"):  # training-only, not in an HF config
            assert getattr(hparams, field.name) == getattr(model.hparams, field.name), field.name
    assert state.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value), key
    fresh = load_hf(out)
    if getattr(fresh.hparams, "tie_embeddings", False):
        assert fresh.lm_head.weight is fresh.embed.weight
    if size == "debug":  # the weights are bit-identical; one forward shows the model is wired as well
        with torch.no_grad():
            torch.testing.assert_close(fresh.eval()(tokens), ours, rtol=0, atol=0)

    if with_tokenizer:
        tok = transformers.AutoTokenizer.from_pretrained(out)
        ids = tok(TEXT)["input_ids"]
        assert tok.decode(ids) == TEXT
        assert tok.eos_token == tok.bos_token == EOT and tok.eos_token_id == EOT_ID


def test_untied_mamba_and_overrides(tmp_path):
    model = build_model({"name": "mamba", "kernel_impl": "reference", "tie_embeddings": False}, "debug", 128)
    out = export_hf(model, tmp_path / "m")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert not hf.config.tie_word_embeddings
    assert hf.lm_head.weight.data_ptr() != hf.backbone.embeddings.weight.data_ptr()
    torch.testing.assert_close(hf.lm_head.weight, model.lm_head.weight, rtol=0, atol=0)

    rwkv = build_model({"name": "rwkv4", "kernel_impl": "reference"}, "debug", 128)
    out = export_hf(rwkv, tmp_path / "r", context_length=2048)
    config = json.loads((out / "config.json").read_text())
    assert config["context_length"] == 2048 and config["rescale_every"] == 0


def test_import_rejects_unknown_model_types(tmp_path):
    transformers.OPTConfig(num_hidden_layers=1, hidden_size=8, num_attention_heads=2, vocab_size=16).save_pretrained(
        tmp_path
    )
    with pytest.raises(ValueError, match="'opt'"):
        import_hf(tmp_path)


def test_init_from_hf_loads_matching_weights_and_refuses_others(tmp_path):
    source = _random_model("pythia", "debug", 128)
    out = export_hf(source, tmp_path / "p")
    target = build_model({"name": "pythia"}, "debug", 128)
    init_from_hf(target, out)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    with pytest.raises(InitMismatch, match=r"^train.init_from=.*holds pythia with dims .*this run builds mamba"):
        init_from_hf(build_model({"name": "mamba", "kernel_impl": "reference"}, "debug", 128), out)
