"""Trust-remote-code export (Backpack, Parcae, ...): transformers loads the package's own model module shipped in the
folder, logits equal ours < 1e-4, ``generate`` runs, and the shipped files never import parcae_runner."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys

import pytest
import torch

from parcae_runner.export.bundle import flat_name
from parcae_runner.export.remote_code import remote_code_architectures
from parcae_runner.models import ARCHITECTURES, build_model

transformers = pytest.importorskip("transformers")

from parcae_runner.export.hf import export_hf  # noqa: E402


def _backpack(size: str = "debug", vocab: int = 97, name: str = "backpack", **options) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model({"name": name, **options}, size, vocab).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


CLASSES = {
    "backpack": "ParcaeBackpackForCausalLM",
    "parcae_baseline": "ParcaeBaselineForCausalLM",
    "parcae": "ParcaeForCausalLM",
}


@pytest.mark.parametrize(
    "name,size", [("backpack", "debug"), ("backpack", "14m"), ("parcae_baseline", "debug"), ("parcae", "debug")]
)
def test_loads_with_trust_remote_code_and_matches(name, size, tmp_path):
    model = _backpack(size, name=name)
    export_hf(model, tmp_path, bos_token_id=0, eos_token_id=0)
    assert {p.name for p in tmp_path.iterdir()} >= {"config.json", "model.safetensors", f"modeling_{name}.py"}
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, trust_remote_code=True).eval()
    assert type(hf).__name__ == CLASSES[name]
    tokens = torch.randint(0, 97, (2, 13))
    with torch.no_grad():
        assert (model(tokens) - hf(tokens).logits).abs().max().item() < 1e-4
        out = hf.generate(tokens[:1, :4], max_new_tokens=5, do_sample=False)
        # greedy decoding by hand with our model gives the same tokens
        seq = tokens[:1, :4]
        for _ in range(5):
            seq = torch.cat([seq, model(seq)[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(out, seq)


@pytest.mark.parametrize(
    "options",
    [
        {"injection": "linear", "state_init": "zero", "eval_recurrence": 3},
        {"injection": "add", "state_init": "embed", "value_embeddings": False, "tie_embeddings": False},
        {"readout": False, "depth_sampling": "per-batch"},
    ],
)
def test_parcae_variants_match_at_their_eval_depth(options, tmp_path):
    model = _backpack(name="parcae", **options)
    export_hf(model, tmp_path, bos_token_id=0, eos_token_id=0)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, trust_remote_code=True).eval()
    tokens = torch.randint(0, 97, (2, 11))
    with torch.no_grad():
        assert (model(tokens) - hf(tokens).logits).abs().max().item() < 1e-4
        # another depth, asked per call on both sides
        assert (model(tokens, num_steps=5) - hf(tokens, num_steps=5).logits).abs().max().item() < 1e-4


@pytest.mark.parametrize("name", remote_code_architectures())
def test_shipped_files_import_only_the_standard_library_torch_and_transformers(name, tmp_path):
    """The folder holds the package's own model module (bundled, imports relative), not a copy of it."""
    arch = ARCHITECTURES[name]
    export_hf(build_model({"name": name}, "debug", 64), tmp_path, bos_token_id=0, eos_token_id=0)
    files = sorted(tmp_path.glob("*.py"))
    assert f"{flat_name(arch.model_cls.__module__)}.py" in {p.name for p in files}
    allowed = set(sys.stdlib_module_names) | {"torch", "transformers"}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]} if node.level == 0 else set()
            else:
                continue
            assert roots <= allowed, (path.name, roots)
    # the model module is shipped as the package has it, but for its imports
    shipped = (tmp_path / f"{flat_name(arch.model_cls.__module__)}.py").read_text()
    source = inspect.getsource(inspect.getmodule(arch.model_cls))
    assert _without_package_imports(shipped) == _without_package_imports(source)


def _without_package_imports(text: str) -> list[str]:
    """The module's statements, as ASTs, less the imports a bundle rewrites (the package's and relative ones)."""
    body = ast.parse(text).body
    rewritten = [n for n in body if isinstance(n, ast.ImportFrom) and (n.level or n.module.startswith("parcae_runner"))]
    kept = [n for n in body if n not in rewritten]
    return [ast.dump(n) for n in kept]


def test_loads_in_a_process_without_parcae_runner(tmp_path):
    """A fresh interpreter that cannot import parcae_runner loads the folder (what a user on the Hub gets)."""
    export_hf(_backpack(), tmp_path / "out", bos_token_id=0, eos_token_id=0)
    code = (
        "import sys, builtins; real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    assert not name.startswith('parcae_runner'), name\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        "import torch, transformers\n"
        f"m = transformers.AutoModelForCausalLM.from_pretrained({str(tmp_path / 'out')!r}, trust_remote_code=True)\n"
        "print(m(torch.tensor([[1, 2, 3]])).logits.shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "torch.Size([1, 3, 97])" in proc.stdout


def _trained_run(fast_overrides: list[str], arch: str) -> str:
    from parcae_runner.config import compose_run_config
    from parcae_runner.train.runner import train

    overrides = [o for o in fast_overrides if not o.startswith("arch=")] + [
        f"arch={arch}",
        "train.max_steps=3",
        "train.batch_size=4",
        "train.micro_batch_size=4",
        "train.val_batches=1",
        "train.val_interval=3",
    ]
    return str(train(compose_run_config(overrides)).path)


def _export(run_dir: str, out) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "parcae_runner.cli", "export", run_dir, "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_export_command_on_trained_backpack_and_parcae_runs(fast_overrides, tmp_path):
    from parcae_runner.runs import load_model

    run_dir = _trained_run(fast_overrides, "backpack")
    proc = _export(run_dir, tmp_path / "bp")
    assert proc.returncode == 0, proc.stderr[-2000:]
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "bp", trust_remote_code=True).eval()
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "bp")("the cat").input_ids
    ours = load_model(run_dir)
    tokens = torch.randint(0, ours.vocab_size, (1, 16))
    with torch.no_grad():
        assert (ours(tokens) - hf(tokens).logits).abs().max().item() < 1e-4

    looped = _trained_run(fast_overrides, "parcae")
    proc = _export(looped, tmp_path / "pc")
    assert proc.returncode == 0, proc.stderr[-2000:]
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "pc", trust_remote_code=True).eval()
    ours = load_model(looped)
    with torch.no_grad():
        assert (ours(tokens) - hf(tokens).logits).abs().max().item() < 1e-4


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_exports_and_loads(name, tmp_path):
    """No architecture leaves ``export`` with an error: a stock class or our shipped modeling file."""
    from tests.models.conftest import reference_config

    model = build_model(reference_config(name), "debug", 64).eval()
    export_hf(model, tmp_path, bos_token_id=0, eos_token_id=0)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, trust_remote_code=True).eval()
    tokens = torch.randint(0, 64, (1, 9))
    with torch.no_grad():
        assert (model(tokens) - hf(tokens).logits).abs().max().item() < 1e-4
