"""A size is a registry row whose dims can be overridden key by key (``size.d_model=192``): the override reaches
the model, its parameter count and the FLOP estimates, shows in the composed config only when set, and a bad one
is refused naming the key, the value and what is allowed (exit 2)."""

from __future__ import annotations

import contextlib
import io

import pytest
from omegaconf import OmegaConf, open_dict

from parcae_runner.cli import main
from parcae_runner.config import ConfigError, ConfigErrors, compose_run_config
from parcae_runner.config.compose import compose_many
from parcae_runner.config.validate import validate_run_config
from parcae_runner.models import ARCHITECTURES, build_model, count_parameters
from parcae_runner.models.flops import model_costs

VOCAB = 512
SHAPE = ["size.n_layers=3", "size.d_model=192", "size.n_heads=6"]


def _show(*overrides: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["show", *overrides])
    return rc, out.getvalue(), err.getvalue()


def _params(arch: str, dims: dict[str, int]) -> int:
    spec = ARCHITECTURES[arch]
    return count_parameters(spec.model_cls(spec.hparams_cls(), dims, VOCAB))


def test_overridden_dims_reach_the_model_and_its_counts():
    cfg = compose_run_config(["arch=pythia", "size=14m", "data.vocab_size=512", *SHAPE])
    assert OmegaConf.to_container(cfg.size) == {"name": "14m", "n_layers": 3, "d_model": 192, "n_heads": 6}
    validate_run_config(cfg)
    want = _params("pythia", {"n_layers": 3, "d_model": 192, "n_heads": 6})
    assert want != _params("pythia", ARCHITECTURES["pythia"].sizes["14m"])
    assert count_parameters(build_model(cfg.arch, cfg.size, VOCAB)) == want
    # what plan and the FLOP budgets estimate is the same model
    assert model_costs(cfg, VOCAB)[0] == want


def test_a_flop_budget_buys_the_overridden_model_s_steps():
    base = ["arch=pythia", "size=debug", "data.vocab_size=512", "train.max_flops=1e13"]
    default, wider = compose_run_config(base), compose_run_config([*base, "size.d_model=256"])
    assert wider.train.max_steps < default.train.max_steps


def test_one_dim_overrides_the_rest_of_the_row():
    cfg = compose_run_config(["arch=mamba", "size=160m", "size.n_layers=2"])
    assert OmegaConf.to_container(cfg.size) == {"name": "160m", "n_layers": 2}
    assert model_costs(cfg, VOCAB)[0] == _params("mamba", {"n_layers": 2, "d_model": 768})


def test_the_printed_config_holds_an_override_only_when_set():
    rc, plain, _ = _show("arch=pythia", "size=debug")
    assert rc == 0 and "size:\n  name: debug\ndata:" in plain
    rc, shown, _ = _show("arch=pythia", "size=debug", "size.n_layers=3")
    assert rc == 0 and "size:\n  name: debug\n  n_layers: 3\ndata:" in shown
    assert shown.replace("  n_layers: 3\n", "", 1) == plain


def test_sweeps_and_plan_compose_overrides_too():
    cfgs = compose_many([["arch=pythia", "size=14m", *SHAPE], ["arch=pythia", "size=14m"]])
    assert [c.size.get("d_model") for c in cfgs] == [192, None]
    with pytest.raises(ConfigError, match=r"size.d_model=190: a multiple of size.n_heads=6"):
        compose_many([["arch=pythia", "size=14m", "size.n_heads=6", "size.d_model=190"]])


REFUSED = [
    (["arch=pythia", "size.d_kv=3"], "size.d_kv", 3, "not a dimension of pythia; its dimensions: n_layers, d_model"),
    (["arch=mamba", "size.n_heads=4"], "size.n_heads", 4, "not a dimension of mamba; its dimensions: n_layers"),
    (["arch=pythia", "size.n_layers=0"], "size.n_layers", 0, "must be a positive integer"),
    (["arch=pythia", "size.d_model=-64"], "size.d_model", -64, "must be a positive integer"),
    (["arch=pythia", "size.n_layers=1.5"], "size.n_layers", 1.5, "must be a positive integer"),
    (["arch=pythia", "size.n_layers=abc"], "size.n_layers", "abc", "must be a positive integer"),
    (["arch=pythia", "size.n_layers=true"], "size.n_layers", True, "must be a positive integer"),
    (["arch=pythia", "size.d_model=66"], "size.d_model", 66, "a multiple of size.n_heads=4"),
    (["arch=pythia", "size.n_heads=5"], "size.n_heads", 5, "a divisor of size.d_model=64"),
    (["arch=pythia", "size.n_heads=6", "size.d_model=190"], "size.d_model", 190, "a multiple of size.n_heads=6"),
    (["arch=rwkv7", "size.head_size=48"], "size.head_size", 48, "a divisor of size.d_model=64"),
    (["arch=mistral", "size.n_kv_heads=3"], "size.n_kv_heads", 3, "a divisor of size.n_heads=4"),
]


@pytest.mark.parametrize(("overrides", "key", "value", "allowed"), REFUSED, ids=[" ".join(r[0]) for r in REFUSED])
def test_a_bad_override_is_refused(overrides, key, value, allowed):
    with pytest.raises(ConfigError) as err:
        compose_run_config(["size=debug", *overrides])
    assert (err.value.key, err.value.value) == (key, value)
    assert allowed in err.value.allowed
    rc, out, stderr = _show("size=debug", *overrides)
    assert (rc, out) == (2, "")
    assert f"parcae-runner: error: {key}=" in stderr


def test_validation_refuses_a_bad_size_that_came_another_way():
    cfg = compose_run_config(["arch=pythia", "size=debug"])
    with open_dict(cfg.size):
        cfg.size.n_layers = 0
        cfg.size.d_kv = 3
    with pytest.raises(ConfigErrors) as err:
        validate_run_config(cfg)
    assert {e.key for e in err.value.errors} >= {"size.n_layers", "size.d_kv"}


@pytest.mark.slow
def test_a_run_trains_the_overridden_shape_and_records_it(fast_overrides):
    from parcae_runner.jobs import train_run

    overrides = [*fast_overrides, "size.d_model=32", "size.n_heads=2", "train.max_steps=2", "train.val_batches=0"]
    run_dir = train_run(compose_run_config(overrides))
    record = run_dir.read_run()
    dims = {**ARCHITECTURES["pythia"].sizes["debug"], "d_model": 32, "n_heads": 2}
    spec = ARCHITECTURES["pythia"]
    model = spec.model_cls(spec.hparams_cls(), dims, record.data_info["model_vocab_size"])
    assert record.params == count_parameters(model)
    saved = OmegaConf.load(run_dir.path / "config.yaml")
    assert OmegaConf.to_container(saved.size) == {"name": "debug", "d_model": 32, "n_heads": 2}
