"""Parcae: stable injection, truncated backprop, reproducible depth draws, FLOP model, sizes, basic properties."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from parcae_runner.models import build_model
from parcae_runner.models.layers.injection import DiagonalInjection
from parcae_runner.models.parcae.model import depth_seed, expected_depth
from parcae_runner.train.optim import parameter_groups


def _randomise(model: torch.nn.Module, std: float = 0.2, seed: int = 0) -> None:
    """Every matrix random, including the zero-initialised output projections (else the blocks are identities
    and most gradients vanish); norm gains near 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif "norm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))


# ------------------------------------------------------------------------------------ 1. stable injection


def test_a_bar_strictly_inside_unit_interval_for_any_parameters():
    extremes = torch.tensor([-1e30, -1e4, -100.0, -30.0, -16.0, -15.0, -5.0, -1.0, 0.0, 1.0, 5.0, 15.0, 30.0, 100.0])
    extremes = torch.cat((extremes, -extremes.flip(0)[:-1], torch.tensor([1e4, 1e30])))
    grid_a, grid_dt = torch.meshgrid(extremes, extremes, indexing="ij")
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([0.01, 1.0, 10.0, 1e3]).repeat_interleave(256)
    a_log = torch.cat((grid_a.flatten(), torch.randn(scales.numel(), generator=g) * scales))
    dt_bias = torch.cat((grid_dt.flatten(), torch.randn(scales.numel(), generator=g) * scales))

    inj = DiagonalInjection(a_log.numel())
    with torch.no_grad():
        inj.A_log.copy_(a_log)
        inj.dt_bias.copy_(dt_bias)
    a_bar, delta = inj.discretise()
    assert a_bar.dtype == torch.float32
    assert bool((a_bar > 0).all()) and bool((a_bar < 1).all()), (a_bar.min().item(), a_bar.max().item())
    assert bool((delta >= 0).all()) and bool(torch.isfinite(delta).all())
    # and the gradients stay finite at the extremes (log-space, clamped: no inf * 0)
    (a_bar.sum() + a_bar.log().sum()).backward()
    assert torch.isfinite(inj.A_log.grad).all() and torch.isfinite(inj.dt_bias.grad).all()


def test_init_is_parcae():
    model = build_model({"name": "parcae"}, "debug", 97)
    a_bar, delta = model.injection.discretise()
    torch.testing.assert_close(a_bar, torch.full_like(a_bar, math.sqrt(1 / 5)))
    torch.testing.assert_close(delta, torch.full_like(delta, math.log(5) / 2))
    torch.testing.assert_close(model.injection.B.weight, torch.eye(64))
    for block in (*model.prelude, *model.core, *model.coda):
        assert torch.all(block.attn.proj.weight == 0) and torch.all(block.mlp.down.weight == 0)


def _block_output_bound(block, d: int) -> float:
    """A bound on ``||block(x) - x||`` per token for ANY input, from the weights alone.

    Pre-norm: ``||RMSNorm(x)|| <= max|g| sqrt(d)``. Attention: each head's output is a convex combination of
    its values, so ``||y|| <= sqrt(H) ||W_v|| max|g1| sqrt(d)``, then ``||W_o||``. MLP:
    ``||relu(z)^2|| <= ||z||^2``. Operator 2-norms throughout; the debug core has no value embedding.
    """
    assert not block.has_value_embedding
    op = lambda w: torch.linalg.matrix_norm(w.detach().double(), ord=2).item()
    H, D = block.attn.n_heads, block.attn.head_dim
    w_v = block.attn.qkv.weight.view(H, 3, D, d)[:, 2].reshape(d, d)
    g1, g2 = block.norm1.weight.abs().max().item(), block.norm2.weight.abs().max().item()
    attn = op(block.attn.proj.weight) * math.sqrt(H) * op(w_v) * g1 * math.sqrt(d)
    mlp = op(block.mlp.down.weight) * (op(block.mlp.up.weight) * g2 * math.sqrt(d)) ** 2
    return attn + mlp


def _iterate(model, tokens: torch.Tensor, n: int) -> list[float]:
    """Max per-token state norm after each of ``n`` iterations from x0 = 0 (the model's own pieces)."""
    inputs = model.loop_inputs(tokens)
    e = model.encode(tokens, inputs)
    x = torch.zeros_like(e)
    prepared = model.injection.prepare(e)
    norms = []
    for _ in range(n):
        x = model.core_step(x, prepared, inputs)
        norms.append(x.norm(dim=-1).max().item())
    return norms


@pytest.mark.parametrize("spread", [1.0, 4.0])
@torch.no_grad()
def test_diagonal_state_bounded_from_random_parameters(spread):
    """Random everything (core blocks included); ``spread`` 4 puts some channels' A_bar within 1e-3 of 1, where
    the state still climbs towards its (larger) bound after 64 iterations."""
    torch.manual_seed(0)
    model = build_model({"name": "parcae", "injection": "diagonal", "state_init": "zero"}, "debug", 97).eval()
    _randomise(model, std=0.3)
    g = torch.Generator().manual_seed(1)
    model.injection.A_log.copy_(torch.empty(64).uniform_(-spread, spread, generator=g))
    model.injection.dt_bias.copy_(torch.empty(64).uniform_(-1.5 * spread, 1.5 * spread, generator=g))
    tokens = torch.randint(0, 97, (2, 32))

    norms = _iterate(model, tokens, 64)
    # x_{t+1} = core(A_bar x_t + u):  ||x_{t+1}|| <= a_max ||x_t|| + max||u|| + C  =>  bounded by a geometric series
    a_bar, delta = model.injection.discretise()
    a_max = a_bar.max().item()
    e = model.encode(tokens, model.loop_inputs(tokens))
    u_max = (delta * model.injection.B(e)).norm(dim=-1).max().item()
    c = sum(_block_output_bound(block, 64) for block in model.core)
    bound, limit = 0.0, (u_max + c) / (1 - a_max)
    print(f"\ndiagonal, random weights, spread {spread}: a_max={a_max:.4f}, per-token norm bound {limit:.3g}")
    print("  iteration: " + "  ".join(f"{t}:{norms[t - 1]:.3g}" for t in (1, 2, 4, 8, 16, 32, 48, 64)))
    for t, norm in enumerate(norms, start=1):
        bound = a_max * bound + u_max + c
        assert math.isfinite(norm) and norm <= bound * (1 + 1e-6), (t, norm, bound)
    assert math.isfinite(limit) and max(norms) <= limit
    if a_max < 0.95:  # fast channels only: the norm has levelled off well inside 64 iterations
        assert max(norms[32:]) <= 1.1 * max(norms[:32])


@torch.no_grad()
def test_add_diverges_where_diagonal_converges():
    """Constructed case: identity core (the init: zero output projections), x0 = 0. ``add`` gives x_t = t e, which
    grows without bound; ``diagonal`` converges to Delta B e / (1 - A_bar)."""
    norms = {}
    for injection in ("add", "diagonal"):
        torch.manual_seed(0)
        model = build_model({"name": "parcae", "injection": injection, "state_init": "zero"}, "debug", 97).eval()
        norms[injection] = _iterate(model, torch.randint(0, 97, (2, 16)), 64)
    add, diag = norms["add"], norms["diagonal"]
    print(
        f"\nmax per-token state norm at t = 1, 32, 64: add {add[0]:.3g}, {add[31]:.3g}, {add[63]:.3g}; "
        f"diagonal {diag[0]:.3g}, {diag[31]:.3g}, {diag[63]:.3g}"
    )
    assert add[63] == pytest.approx(64 * add[0], rel=1e-4)  # linear growth: diverges as t -> inf
    assert add[63] / add[31] == pytest.approx(2.0, rel=1e-4)
    limit = diag[0] / (1 - math.sqrt(1 / 5))  # x_1 = u, so the fixed point is |u| / (1 - A_bar)
    assert diag[63] == pytest.approx(limit, rel=1e-4) and diag[63] == pytest.approx(diag[31], rel=1e-4)


# ---------------------------------------------------------------------------------- 2. truncated backprop


def _prelude_grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.prelude.parameters()]


def _hand_rolled_loss(model, tokens: torch.Tensor, n_steps: int, n_grad: int) -> torch.Tensor:
    """The loop written out in the test: T - k iterations under no_grad, k with grad, diagonal injection by hand."""
    inputs = model.loop_inputs(tokens)
    e = model.prelude_norm(_blocks(model.prelude, model.embed(tokens), inputs, 0))
    a_bar = torch.exp(-F.softplus(model.injection.dt_bias) * torch.exp(model.injection.A_log))
    u = F.softplus(model.injection.dt_bias) * (e @ model.injection.B.weight.T)
    x = e if model.hparams.state_init == "embed" else torch.zeros_like(e)

    def step(x):
        return _blocks(model.core, a_bar * x + u, inputs, len(model.prelude))

    with torch.no_grad():
        for _ in range(n_steps - n_grad):
            x = step(x)
    for _ in range(n_grad):
        x = step(x)
    x = x @ model.readout.weight.T  # the readout C
    logits = model.lm_head(model.norm(_blocks(model.coda, x, inputs, len(model.prelude) + len(model.core))))
    return F.cross_entropy(logits.flatten(0, 1), tokens.flatten())


def _blocks(blocks, x, inputs, first: int):
    for i, block in enumerate(blocks):
        x = block(x, inputs.cos, inputs.sin, inputs.value_embeds.get(first + i))
    return x


@pytest.mark.parametrize("state_init", ["zero", "embed"])
def test_prelude_gets_gradient_through_last_k_iterations_only(state_init):
    torch.manual_seed(0)
    model = build_model({"name": "parcae", "state_init": state_init}, "debug", 97).train()
    _randomise(model, std=0.15)
    tokens = torch.randint(0, 97, (2, 12))
    n_steps, n_grad = 5, 2

    def grads(loss_fn):
        model.zero_grad()
        loss_fn().backward()
        return _prelude_grads(model)

    def model_loss(k):
        return lambda: F.cross_entropy(model(tokens, n_steps, k).flatten(0, 1), tokens.flatten())

    truncated = grads(model_loss(n_grad))
    assert model.last_telemetry["recurrence/num_grad_steps"] == n_grad
    by_hand = grads(lambda: _hand_rolled_loss(model, tokens, n_steps, n_grad))
    full = grads(model_loss(n_steps))
    full_by_hand = grads(lambda: _hand_rolled_loss(model, tokens, n_steps, n_steps))
    for t, h, f, fh in zip(truncated, by_hand, full, full_by_hand, strict=True):
        torch.testing.assert_close(t, h, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(f, fh, rtol=1e-4, atol=1e-7)
    diff = sum((t - f).norm() ** 2 for t, f in zip(truncated, full, strict=True)).sqrt()
    scale = sum(f.norm() ** 2 for f in full).sqrt()
    assert scale > 0 and diff / scale > 1e-2, "truncation should change the prelude's gradient"


def test_depth_draws_repeat_for_the_same_seed_step_rank():
    model = build_model({"name": "parcae", "mean_recurrence": 4, "mean_backprop_depth": 2}, "debug", 97).train()

    def draws(seed, step, rank, n=32):
        model.set_depth_context(seed, step, rank)
        return [model.sample_depth() for _ in range(n)]

    first = draws(7, 100, 3)
    assert draws(7, 100, 3) == first
    assert draws(7, 101, 3) != first and draws(7, 100, 4) != first and draws(8, 100, 3) != first
    assert all(t >= 1 and k == min(t, 2) for t, k in first)
    assert len({depth_seed(s, t, r) for s in range(3) for t in range(200) for r in range(200)}) == 3 * 200 * 200


def test_training_forward_repeats_after_resetting_the_context():
    """Depth and like-init noise both come from the context: a resumed run recomputes the same forward."""
    torch.manual_seed(0)
    model = build_model({"name": "parcae"}, "debug", 97).train()
    tokens = torch.randint(0, 97, (2, 10))
    runs = []
    for _ in range(2):
        model.set_depth_context(1, 5, 0)
        runs.append([(model(tokens), model.last_telemetry["recurrence/num_steps"]) for _ in range(3)])
    for (a, ta), (b, tb) in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert ta == tb
    # successive micro-batches of one step get different draws (here: at least different noise)
    assert not torch.equal(runs[0][0][0], runs[0][1][0])


def test_sampler_mean_matches_expected_depth():
    model = build_model({"name": "parcae", "mean_recurrence": 4, "mean_backprop_depth": 2}, "debug", 97).train()
    model.set_depth_context(0, 0, 0)
    draws = torch.tensor([model.sample_depth() for _ in range(4000)], dtype=torch.float64)
    e_t, e_k = expected_depth(4, 2)
    assert e_t == pytest.approx(4 + math.exp(-4)) and e_k == pytest.approx(2 - 5 * math.exp(-4))
    assert draws[:, 0].mean().item() == pytest.approx(e_t, rel=0.03)
    assert draws[:, 1].mean().item() == pytest.approx(e_k, rel=0.03)


# ------------------------------------------------------------------------------------------- 3. FLOP model


def _measured_flops_per_token(model, tokens: torch.Tensor, **kwargs) -> tuple[float, float]:
    """FlopCounterMode over forward + backward, per token: (as counted, with the attention products halved).

    On CPU the fused SDPA op is not counted at all, so the math backend is forced: its two T x T products are
    bmm's, the only bmm's in these models. They are counted dense; a causal (flash) kernel computes half of them,
    which is what the convention's ``6 * seq_len * d`` per layer assumes.
    """
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        logits = model(tokens, **kwargs)
        F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    counts = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    total, attention = sum(counts.values()), counts.get("aten.bmm", 0)
    return total / tokens.numel(), (total - attention / 2) / tokens.numel()


@pytest.mark.parametrize(
    "hparams,n_steps,n_grad",
    [({}, 5, 2), ({}, 1, 1), ({}, 3, 0), ({"injection": "linear"}, 4, 3), ({"injection": "add"}, 3, 3)],
)
def test_flops_per_token_matches_flop_counter(hparams, n_steps, n_grad):
    torch.manual_seed(0)
    seq_len = 64
    model = build_model({"name": "parcae", **hparams}, "debug", 512).train()
    tokens = torch.randint(0, 512, (2, seq_len))
    raw, causal = _measured_flops_per_token(model, tokens, num_steps=n_steps, num_grad_steps=n_grad)
    predicted = model.flops_per_token(seq_len, n_steps, n_grad)
    print(
        f"\nparcae {hparams} R={n_steps} k={n_grad}: predicted {predicted:,.0f}, measured {raw:,.0f} "
        f"(attention halved: {causal:,.0f}), ratio {predicted / causal:.3f}"
    )
    assert predicted == pytest.approx(causal, rel=0.10)


def test_default_flops_use_expected_depth():
    model = build_model({"name": "parcae", "mean_recurrence": 6, "mean_backprop_depth": 3}, "debug", 97)
    e_t, e_k = expected_depth(6, 3)
    assert model.flops_per_token(128) == model.flops_per_token(128, e_t, e_k)
    # more recurrence costs more; the core is the only part that scales with it
    assert model.flops_per_token(128, 8, 3) > model.flops_per_token(128, 4, 3)


# ---------------------------------------------------------------------------------- 4. sizes and basics


def test_eval_depth_defaults_to_mean_recurrence():
    model = build_model({"name": "parcae"}, "debug", 97).eval()
    with torch.no_grad():
        model(torch.randint(0, 97, (3, 11)))
    assert model.last_telemetry["recurrence/num_steps"] == 8  # eval_recurrence None -> mean_recurrence


def test_eval_depth_from_hparam_or_argument():
    model = build_model({"name": "parcae", "eval_recurrence": 3}, "debug", 97).eval()
    tokens = torch.randint(0, 97, (1, 5))
    with torch.no_grad():
        model(tokens)
        assert model.last_telemetry["recurrence/num_steps"] == 3
        assert model.validation_depths() == [1, 2, 4, 8, 16]  # 1, 2, 4, mean 8, 2 x mean
        for r in (0, *model.validation_depths()):
            logits = model(tokens, num_steps=r)
            assert model.last_telemetry["recurrence/num_steps"] == r and torch.isfinite(logits).all()


@pytest.mark.parametrize("injection", ["diagonal", "linear", "add"])
@pytest.mark.parametrize("state_init", ["like-init", "zero", "embed"])
def test_causal_for_every_injection_and_state_init(injection, state_init, assert_causal):
    torch.manual_seed(0)
    model = build_model({"name": "parcae", "injection": injection, "state_init": state_init}, "debug", 101).eval()
    _randomise(model, std=0.1)
    assert_causal(model, 101)


def test_telemetry():
    model = build_model({"name": "parcae"}, "debug", 97).eval()
    with torch.no_grad():
        model(torch.randint(0, 97, (2, 9)), num_steps=6)
    tel = model.last_telemetry
    assert tel["recurrence/num_steps"] == 6
    assert all(isinstance(v, float) and math.isfinite(v) for v in tel.values())
    assert {f"recurrence/state_norm/{i}" for i in range(7)} <= tel.keys()
    assert {f"recurrence/rel_change/{i}" for i in range(1, 7)} <= tel.keys()
    assert tel["recurrence/rel_change"] == tel["recurrence/rel_change/6"]
    # the identity core at init converges geometrically (A_bar = 0.447): the change shrinks every iteration
    changes = [tel[f"recurrence/rel_change/{i}"] for i in range(2, 7)]
    assert all(b < a for a, b in zip(changes, changes[1:], strict=False))


def test_no_weight_decay_names_exist_and_are_not_decayed():
    model = build_model({"name": "parcae"}, "debug", 97)
    names = model.no_weight_decay()
    assert names == {"injection.A_log", "injection.dt_bias"}
    params = dict(model.named_parameters())
    decayed, kept = parameter_groups(model, 0.1, ["bias", "norm"])
    kept_ids = {id(p) for p in kept["params"]}
    assert all(id(params[n]) in kept_ids for n in names)
    assert id(model.injection.B.weight) in {id(p) for p in decayed["params"]}
    assert build_model({"name": "parcae", "injection": "add"}, "debug", 97).no_weight_decay() == set()


@pytest.mark.parametrize(
    "override,key",
    [
        ({"injection": "gru"}, "arch.injection"),
        ({"state_init": "unit"}, "arch.state_init"),
        ({"depth_sampling": "per-token"}, "arch.depth_sampling"),
        ({"mean_recurrence": 0}, "arch.mean_recurrence"),
        ({"mean_backprop_depth": 0}, "arch.mean_backprop_depth"),
    ],
)
def test_bad_hparams(override, key):
    with pytest.raises(ValueError, match=key):
        build_model({"name": "parcae", **override}, "debug", 97)


def test_bad_depth_arguments():
    model = build_model({"name": "parcae"}, "debug", 97)
    with pytest.raises(ValueError, match="num_grad_steps"):
        model(torch.zeros(1, 4, dtype=torch.long), num_steps=2, num_grad_steps=3)


# ---------------------------------------------------------------------------------- per-sequence depths


def _all_grads(model) -> dict[str, torch.Tensor]:
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


@pytest.mark.parametrize("grad_steps", [None, (1, 4)])
def test_sequences_of_one_batch_with_different_depths_equal_each_run_alone(grad_steps):
    """Two sequences at T = 3 and T = 7 in one batch: the logits of each equal that sequence run alone at its T
    (written out by hand, as above), and the batch's gradient equals the mean of the two alone-gradients, each
    truncated to its own last k (default k = min(T, mean_backprop_depth) = 3 and 4; or as given)."""
    torch.manual_seed(0)
    model = build_model({"name": "parcae", "state_init": "zero", "mean_backprop_depth": 4}, "debug", 97).train()
    _randomise(model, std=0.15)
    tokens = torch.randint(0, 97, (2, 12))
    steps = torch.tensor([3, 7])
    ks = (3, 4) if grad_steps is None else grad_steps
    model.zero_grad()
    grad_arg = None if grad_steps is None else torch.tensor(grad_steps)
    logits = model(tokens, num_steps=steps, num_grad_steps=grad_arg)
    assert model.last_telemetry["recurrence/num_steps_max"] == 7
    F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    batch_grads = _all_grads(model)

    with torch.no_grad():
        for b, t in enumerate(steps.tolist()):
            alone = model(tokens[b : b + 1], num_steps=t, num_grad_steps=ks[b])
            torch.testing.assert_close(logits[b : b + 1], alone, rtol=1e-5, atol=1e-6)
    alone_grads = []
    for b, t in enumerate(steps.tolist()):
        model.zero_grad()
        _hand_rolled_loss(model, tokens[b : b + 1], t, ks[b]).backward()
        alone_grads.append(_all_grads(model))
    for name, g in batch_grads.items():
        expected = (alone_grads[0][name] + alone_grads[1][name]) / 2
        torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-6, msg=name)
    assert sum(g.abs().sum() for n, g in batch_grads.items() if n.startswith("prelude.")) > 0


def test_gradients_reach_only_the_last_k_iterations_of_each_sequence():
    """Record every iteration's output; after backward, sequence b's rows carry gradient at exactly its last
    k_b iterations (the loop is end-aligned: sequence b runs iterations T_max - T_b .. T_max - 1)."""
    torch.manual_seed(1)
    model = build_model({"name": "parcae", "state_init": "zero", "mean_backprop_depth": 4}, "debug", 97).train()
    _randomise(model, std=0.15)
    tokens = torch.randint(0, 97, (3, 9))
    steps, ks = torch.tensor([2, 9, 6]), torch.tensor([2, 4, 1])
    outputs = []
    core_step = model.core_step

    def recording(x, prepared, inputs):
        out = core_step(x, prepared, inputs)
        if out.requires_grad:
            out.retain_grad()
        outputs.append(out)
        return out

    model.core_step = recording
    model(tokens, num_steps=steps, num_grad_steps=ks).square().mean().backward()
    t_max = int(steps.max())
    assert len(outputs) == t_max
    for i, out in enumerate(outputs):
        for b in range(3):
            local = i - (t_max - int(steps[b]))  # the sequence's own iteration index, negative before it starts
            wanted = local >= int(steps[b] - ks[b])
            has = out.grad is not None and bool(out.grad[b].abs().sum() > 0)
            assert has == wanted, (i, b, local)


def test_training_draws_a_depth_per_sequence_reproducibly():
    torch.manual_seed(0)
    model = build_model({"name": "parcae", "state_init": "zero"}, "debug", 97).train()
    _randomise(model, std=0.15)
    tokens = torch.randint(0, 97, (16, 6))
    model.set_depth_context(3, 11, 0)
    logits = model(tokens)
    telemetry = model.last_telemetry
    model.set_depth_context(3, 11, 0)
    steps, ks = model.sample_depths(16)
    assert len(set(steps.tolist())) > 1 and bool((steps >= 1).all()) and torch.equal(ks, steps.clamp(max=4))
    assert telemetry["recurrence/num_steps"] == pytest.approx(steps.float().mean().item())
    assert telemetry["recurrence/num_steps_max"] == steps.max().item()
    torch.testing.assert_close(logits, model(tokens, num_steps=steps), rtol=0, atol=0)
    model.set_depth_context(3, 11, 0)
    torch.testing.assert_close(logits, model(tokens), rtol=0, atol=0)  # a resume at step 11 repeats it
    # per-batch: one draw for all
    model = build_model({"name": "parcae", "depth_sampling": "per-batch"}, "debug", 97).train()
    model.set_depth_context(3, 11, 0)
    model(tokens)
    assert model.last_telemetry["recurrence/num_steps"] == model.last_telemetry["recurrence/num_steps_max"]
