"""Parcae: a looped (recurrent-depth) transformer with a stable diagonal injection (arXiv 2604.12946,
``SandyResearch/parcae``, ``parcae_lm/models/parcae``).

::

    e = RMSNorm(prelude(embed(ids)))                       # [B, T, d], once
    x = state_init(e)                                      # like-init noise | zero | e
    repeat T times:                                        # the first T - k without grad, the last k with grad
        x = inject(x, e)                                   # diagonal: A_bar * x + Delta * (B e), 0 < A_bar < 1
        x = core(x)                                        # the same core blocks every iteration
    logits = tied_head(RMSNorm(coda(C x)))                 # C: the readout, d x d

Blocks are :class:`~parcae_runner.models.layers.qk_norm_block.QKNormBlock` (pre-norm RMSNorm, QK-norm, RoPE,
ReLU^2 MLP, no biases, zero-initialised output projections), with value embeddings on alternate layers of
the prelude + core + coda stack (the core's tables are looked up once and reused by every iteration).
Injections are in :mod:`parcae_runner.models.layers.injection`.

Depth in training and in eval: :mod:`parcae_runner.models.parcae.hparams`.

How the size names count parameters: as for :mod:`parcae_runner.models.parcae_baseline`, the names are total
parameters at vocabulary 32,768 with the tied embedding counted once and the value-embedding tables counted (they
are most of the count); the core is counted once, not once per iteration.

The readout ``C`` (``readout``, d x d, no bias) maps the final state into the coda, as in Parcae; it starts as
the identity (as ``B`` does), so an initialised model computes what it computed without it.
Not taken from Parcae: logit soft-capping (if any) and the KV cache. Parcae's MuonAdamW is ``train.optimizer=muon``
(:meth:`ParcaeModel.no_muon` keeps the injection on AdamW).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from parcae_runner.models.layers.init import init_norm, small_init_std
from parcae_runner.models.layers.injection import INJECTIONS
from parcae_runner.models.layers.lm import LanguageModel
from parcae_runner.models.layers.qk_norm_block import (
    QKNormBlock,
    finish_qk_norm_init,
    init_qk_norm_embeddings,
    value_embedding_tables,
)
from parcae_runner.models.layers.rotary import RotaryEmbedding

# the hyperparameters and depth helpers live beside the model; imported from here as they always were
from parcae_runner.models.parcae.depth import DepthDraws
from parcae_runner.models.parcae.hparams import (
    EVAL_NOISE_SEED,
    ParcaeHParams,
    depth_seed,
    expected_depth,
    validate_hparams,
)

__all__ = ["LoopInputs", "ParcaeHParams", "ParcaeModel", "depth_seed", "expected_depth"]


def _num_params(modules: Iterable[nn.Module]) -> int:
    params = {id(p): p for m in modules for p in m.parameters()}
    return sum(p.numel() for p in params.values())


class LoopInputs(NamedTuple):
    """What every block needs besides its input: rotary tables ``[T, D]`` and value embeddings ``[B, T, d]``."""

    cos: Tensor
    sin: Tensor
    value_embeds: dict[int, Tensor]


class ParcaeModel(DepthDraws, LanguageModel):
    """Looped LM: ``input_ids [B, T] -> logits [B, T, V]``.

    After every forward, :attr:`last_telemetry` describes the recurrence (see there).
    """

    def __init__(self, hparams: ParcaeHParams, dims: Mapping[str, int], vocab_size: int) -> None:
        validate_hparams(hparams)
        super().__init__(hparams, dims, vocab_size)
        d, n_heads = dims["d_model"], dims["n_heads"]
        n_prelude, n_core, n_coda = dims["n_prelude"], dims["n_core"], dims["n_coda"]
        n_layers = n_prelude + n_core + n_coda

        # keyed by the index in the prelude + core + coda stack
        self.value_embeds, has_ve = value_embedding_tables(vocab_size, d, n_layers, hparams.value_embeddings)
        self.rotary = RotaryEmbedding(d // n_heads, 1.0, hparams.rope_base)

        def blocks(first: int, count: int) -> nn.ModuleList:
            return nn.ModuleList(
                QKNormBlock(d, n_heads, hparams.norm_eps, hparams.mlp_ratio, has_ve[first + i]) for i in range(count)
            )

        self.prelude = blocks(0, n_prelude)
        self.prelude_norm = nn.RMSNorm(d, eps=hparams.norm_eps)
        self.injection = INJECTIONS[hparams.injection](d)
        self.core = blocks(n_prelude, n_core)
        self.readout = nn.Linear(d, d, bias=False) if hparams.readout else None
        self.coda = blocks(n_prelude + n_core, n_coda)
        self.norm = nn.RMSNorm(d, eps=hparams.norm_eps)
        # stack index of the first block of each part, for the value-embedding lookup
        self._offsets = {"prelude": 0, "core": n_prelude, "coda": n_prelude + n_core}

        self._depth_generator = torch.Generator(device="cpu")
        self.set_depth_context(0, 0, 0)  # deterministic even if the trainer never calls it
        self._telemetry: tuple[float, float, int, Tensor] | None = None
        self._telemetry_floats: dict[str, float] | None = None
        self.finish_init()

    # ----------------------------------------------------------------------------------------- init

    @torch.no_grad()
    def init_weights(self) -> None:
        self.tie_head()
        std = init_qk_norm_embeddings(self)
        for block in (*self.prelude, *self.core, *self.coda):
            block.init_weights()
        init_norm(self.prelude_norm)
        init_norm(self.norm)
        self.injection.init_weights()
        if self.readout is not None:
            nn.init.eye_(self.readout.weight)
        finish_qk_norm_init(self, std)

    def no_weight_decay(self) -> set[str]:
        """The injection's ``A_log`` and ``dt_bias`` (norm gains are 1-D: the trainer's ndim rule skips them)."""
        return {name for name, _ in self.named_parameters() if name in ("injection.A_log", "injection.dt_bias")}

    def no_muon(self) -> set[str]:
        """Kept on AdamW under ``train.optimizer=muon``, as Parcae's MuonAdamW does: the injection (``A_log``,
        ``dt_bias``, ``B``) and the readout ``C``."""
        return {name for name, _ in self.named_parameters() if name.startswith(("injection.", "readout."))}

    # ------------------------------------------------------------------------------------------ depth

    def resolve_depth(self, num_steps: int | None, num_grad_steps: int | None) -> tuple[int, int]:
        """``(T, k)`` for one forward: sampled in training when ``num_steps`` is None, else as given.

        ``num_grad_steps`` None means ``min(T, mean_backprop_depth)`` in training and ``T`` in eval (no
        truncation; an eval forward normally runs under ``torch.no_grad`` anyway).
        """
        if num_steps is None:
            if self.training:
                sampled = self.sample_depth()
                return sampled if num_grad_steps is None else (sampled[0], min(sampled[0], num_grad_steps))
            eval_steps = self.hparams.eval_recurrence
            num_steps = self.hparams.mean_recurrence if eval_steps is None else eval_steps
        if num_grad_steps is None:
            num_grad_steps = min(num_steps, self.hparams.mean_backprop_depth) if self.training else num_steps
        if num_steps < 0 or not 0 <= num_grad_steps <= num_steps:
            raise ValueError(f"need 0 <= num_grad_steps <= num_steps, got num_steps={num_steps}, {num_grad_steps=}")
        return num_steps, num_grad_steps

    def validation_depths(self) -> list[int]:
        """The depths to validate at, for ``forward(..., num_steps=R)``: 1, 2, 4, the mean and twice the mean
        (Parcae logs ``val_loss_{1,2,4,8}`` at mean 8); sorted, without repeats."""
        mean = self.hparams.mean_recurrence
        return sorted({1, 2, 4, mean, 2 * mean})

    # ---------------------------------------------------------------------------------------- pieces

    def loop_inputs(self, input_ids: Tensor) -> LoopInputs:
        """Rotary tables and every value-embedding lookup, once per forward."""
        cos, sin = self.rotary(input_ids.shape[1], input_ids.device)
        return LoopInputs(cos, sin, {int(i): table(input_ids) for i, table in self.value_embeds.items()})

    def _run(self, part: str, x: Tensor, inputs: LoopInputs) -> Tensor:
        for i, block in enumerate(getattr(self, part)):
            x = block(x, inputs.cos, inputs.sin, inputs.value_embeds.get(self._offsets[part] + i))
        return x

    def encode(self, input_ids: Tensor, inputs: LoopInputs) -> Tensor:
        """``e = RMSNorm(prelude(embed(ids)))``: ``[B, T] -> [B, T, d]``."""
        return self.prelude_norm(self._run("prelude", self.embed(input_ids), inputs))

    def initial_state(self, e: Tensor) -> Tensor:
        """``x0`` ``[B, T, d]`` per ``state_init``; like-init noise is drawn from the depth generator in training
        and from a fixed seed in eval."""
        init = self.hparams.state_init
        if init == "zero":
            return torch.zeros_like(e)
        if init == "embed":
            return e
        if e.device.type == "meta":
            return torch.empty_like(e)
        if self.training:
            seed = int(torch.randint(0, 2**62, (), generator=self._depth_generator, device="cpu").item())
            shape = tuple(e.shape)
        else:
            # one draw shared by every sequence: a sequence's evaluation does not depend on the batch it is in, so
            # validation gives the same numbers on any number of ranks and at any batch size
            seed, shape = EVAL_NOISE_SEED, (1, *e.shape[1:])
        # a generator on e's device: drawing on the CPU and copying would cost a [B, T, d] transfer per step
        generator = torch.Generator(device=e.device)
        generator.manual_seed(seed)
        std = small_init_std(self.dims["d_model"])
        x = torch.empty(shape, dtype=torch.float32, device=e.device)
        nn.init.trunc_normal_(x, mean=0.0, std=std, a=-3 * std, b=3 * std, generator=generator)
        return x.to(e.dtype).expand(e.shape)

    def core_step(self, x: Tensor, prepared: object, inputs: LoopInputs) -> Tensor:
        """One iteration: inject, then the core blocks. ``[B, T, d] -> [B, T, d]``."""
        return self._run("core", self.injection.step(x, prepared), inputs)

    def decode(self, x: Tensor, inputs: LoopInputs) -> Tensor:
        """``tied_head(RMSNorm(coda(C x)))``: ``[B, T, d] -> [B, T, V]``."""
        if self.readout is not None:
            x = self.readout(x)
        return self.lm_head(self.norm(self._run("coda", x, inputs)))

    # --------------------------------------------------------------------------------------- forward

    def forward(
        self, input_ids: Tensor, num_steps: int | Tensor | None = None, num_grad_steps: int | Tensor | None = None
    ) -> Tensor:
        """input_ids: ``[B, T]`` int64 -> logits ``[B, T, V]``.

        Runs ``num_steps`` iterations of the core, the first ``num_steps - num_grad_steps`` under
        ``torch.no_grad()``: the prelude, injection and core get gradients through the last ``num_grad_steps``
        only (truncated backprop). Both default as :meth:`resolve_depth` says; in training with
        ``depth_sampling: per-sequence`` each sequence draws its own. Either may also be given per sequence, as
        int tensors ``[B]`` (``num_grad_steps`` None: ``min(T, mean_backprop_depth)`` in training, ``T`` in eval).
        """
        batch = input_ids.shape[0]
        # the peers' depths bound the loop only when this forward draws its own (training, num_steps not given)
        loop_to = self.peer_depth(batch) if num_steps is None and self.training else (0, 0)
        if num_steps is None and self.training and self.hparams.depth_sampling == "per-sequence":
            steps, grads = self.sample_depths(batch)
            if num_grad_steps is not None:
                grads = torch.minimum(steps, torch.as_tensor(num_grad_steps).long())
        elif isinstance(num_steps, Tensor):
            steps = num_steps.detach().long().cpu().reshape(-1).expand(batch)
            if num_grad_steps is None:
                cap = self.hparams.mean_backprop_depth if self.training else None
                grads = steps if cap is None else steps.clamp(max=cap)
            else:
                grads = torch.as_tensor(num_grad_steps).detach().long().cpu().reshape(-1).expand(batch)
            if bool((steps < 0).any()) or bool((grads < 0).any()) or bool((grads > steps).any()):
                raise ValueError(f"need 0 <= num_grad_steps <= num_steps, got {steps.tolist()}, {grads.tolist()}")
        else:
            # a tensor num_grad_steps beside a scalar num_steps is one count for the whole batch
            n_grad_given = None if num_grad_steps is None else int(num_grad_steps)
            n_steps, n_grad = self.resolve_depth(num_steps, n_grad_given)
            steps = torch.full((batch,), n_steps, dtype=torch.long)
            grads = torch.full((batch,), n_grad, dtype=torch.long)
        return self._loop(input_ids, steps, grads, loop_to)

    def _loop(self, input_ids: Tensor, steps: Tensor, grads: Tensor, loop_to: tuple[int, int] = (0, 0)) -> Tensor:
        """The forward for per-sequence depths ``steps``, ``grads`` (CPU int64 ``[B]``).

        End-aligned: sequence ``b`` runs at loop iterations ``t_max - steps[b] .. t_max - 1`` and is frozen before;
        its grad iterations are its last ``grads[b]``. Only the loop's last ``max(grads)`` iterations run under
        autograd, and in them a sequence still in its no-grad part (never the case for sampled depths, whose
        ``k = min(T, mean_backprop_depth)``) is detached. ``loop_to``: at least this many iterations, of which at
        least this many with autograd (the peers' deepest draw, :meth:`peer_depth`).
        """
        t_max = max(int(steps.max()) if steps.numel() else 0, loop_to[0])
        uniform = bool((steps == t_max).all()) and bool((grads == grads[0]).all()) if steps.numel() else True
        k_max = max(int(grads.max()) if steps.numel() else 0, loop_to[1])
        uniform = uniform and k_max == int(grads[0]) if steps.numel() else uniform
        inputs = self.loop_inputs(input_ids)
        e = self.encode(input_ids, inputs)  # [B, T, d]
        x = self.initial_state(e)  # [B, T, d]
        prepared = self.injection.prepare(e)
        device = x.device
        start = (t_max - steps).to(device)  # [B]: the first iteration sequence b runs
        grad_start = (t_max - grads).to(device)  # [B]: its first iteration with grad
        stats = [_state_stats(x, None)]

        def advance(i: int, x: Tensor) -> Tensor:
            new = self.core_step(x, prepared, inputs)
            if uniform:
                return new
            active = (start <= i).view(-1, 1, 1)
            if torch.is_grad_enabled():
                new = torch.where((grad_start <= i).view(-1, 1, 1), new, new.detach())
            return torch.where(active, new, x)

        with torch.no_grad():
            for i in range(t_max - k_max):
                x_prev, x = x, advance(i, x)
                stats.append(_state_stats(x, x_prev))
        for i in range(t_max - k_max, t_max):
            x_prev, x = x, advance(i, x)
            stats.append(_state_stats(x, x_prev))
        self._telemetry = (steps.float().mean().item(), grads.float().mean().item(), t_max, torch.stack(stats))
        self._telemetry_floats = None
        return self.decode(x, inputs)

    @property
    def last_telemetry(self) -> dict[str, float]:
        """The recurrence of the last forward, as floats (one device sync, on first access only).

        * ``recurrence/num_steps``, ``recurrence/num_grad_steps``: T and k (means over the batch's sequences);
          ``recurrence/num_steps_max``: the largest T, which the batch's loop ran to;
        * ``recurrence/state_norm/{i}``: RMS of the state ``x_i`` over batch, tokens and channels, ``i = 0..T``
          (``x_0`` the initial state, ``x_i`` after iteration ``i``); ``recurrence/state_norm`` = the last one;
        * ``recurrence/rel_change/{i}``: ``||x_i - x_{i-1}|| / ||x_{i-1}||`` (Frobenius over the batch),
          ``i = 1..T``; ``recurrence/rel_change`` = the last one, the loop's convergence residual.
        """
        if self._telemetry is None:
            return {}
        if self._telemetry_floats is None:
            mean_steps, mean_grad, n_steps, stats = self._telemetry
            rms, rel = stats.double().cpu().unbind(-1)
            out: dict[str, float] = {
                "recurrence/num_steps": float(mean_steps),
                "recurrence/num_grad_steps": float(mean_grad),
                "recurrence/num_steps_max": float(n_steps),
            }
            out |= {f"recurrence/state_norm/{i}": v for i, v in enumerate(rms.tolist())}
            out |= {f"recurrence/rel_change/{i}": v for i, v in enumerate(rel.tolist()) if i > 0}
            out["recurrence/state_norm"] = out[f"recurrence/state_norm/{n_steps}"]
            if n_steps > 0:
                out["recurrence/rel_change"] = out[f"recurrence/rel_change/{n_steps}"]
            self._telemetry_floats = out
        return dict(self._telemetry_floats)

    # ----------------------------------------------------------------------------------------- FLOPs

    def flops_per_token(
        self, seq_len: int, num_steps: float | None = None, num_grad_steps: float | None = None
    ) -> float:
        """Training (forward + backward) FLOPs per token at context ``seq_len``.

        The repository's convention (``parcae_runner.models.flops``: 2 FLOPs per weight forward, 4 backward,
        lookups free, norms and activations left out; attention ``2 * seq_len * d`` forward and twice that
        backward per layer, the causal half of the score and value products), applied to the loop::

            6 (N_pre + N_post) + (2 R + 4 k) N_loop + 6 (n_prelude + n_coda) seq_len d + (2 R + 4 k) n_core seq_len d

        * ``N_pre``: prelude blocks and norm and, for ``diagonal``, the injection (``B e`` is computed once per
          forward); ``N_post``: the readout ``C``, coda blocks, final norm and the head (``vocab x d``: the tied
          matrix multiplies once, at the output). The embedding and value-embedding tables are
          lookups and count nothing;
        * ``N_loop``: core blocks, plus the ``linear`` injection's ``2d x d`` (applied every iteration);
        * R iterations forward, k of them backward. ``num_steps`` / ``num_grad_steps`` fix R and k; by
          default they are the expectations under the training sampler, ``R = E[max(1, Poisson(mean))] =
          mean + e^-mean`` and ``k = E[min(T, mean_backprop_depth)]`` (:func:`expected_depth`). Parcae's
          ``scripts/cost.py`` uses the nominal ``mean_recurrence`` and ``mean_backprop_depth`` instead and
          counts the value-embedding tables as compute; it leaves the head out: that is
          ``train.flops_convention=parcae`` (:func:`parcae_runner.models.flops.parcae_flops_per_token`).
        * With per-sequence depths the batch runs to its largest T; the frozen sequences' extra iterations are
          wasted work, not counted here (nor by Parcae).
        * ``k = 0 < R`` (all iterations without grad, never sampled in training): nothing reaches the prelude,
          which then costs 2 per parameter and ``2 seq_len d`` per attention layer instead of 6.

        Exact against ``torch.utils.flop_counter`` up to norms and the tiny value-embedding gates' elementwise
        work (``tests/models/test_parcae.py``), once its dense attention count is halved for causality.
        """
        if num_steps is None:
            num_steps, expected_k = expected_depth(self.hparams.mean_recurrence, self.hparams.mean_backprop_depth)
            num_grad_steps = expected_k if num_grad_steps is None else num_grad_steps
        elif num_grad_steps is None:
            num_grad_steps = min(num_steps, self.hparams.mean_backprop_depth)
        per_iter = self.injection if self.hparams.injection == "linear" else None
        # the prelude side (and B e) gets a backward pass only through the k grad iterations, or, with no
        # iterations at all, through x0 = e; with k = 0 < T it only runs forward
        prelude_backward = num_grad_steps > 0 or (num_steps == 0 and self.hparams.state_init == "embed")
        pre_passes = 6 if prelude_backward else 2
        pre = [*self.prelude, self.prelude_norm] + ([self.injection] if per_iter is None else [])
        n_pre = _num_params(pre)
        n_post = _num_params([*self.coda, self.norm, self.lm_head] + ([self.readout] if self.readout else []))
        n_loop = _num_params([*self.core] + ([per_iter] if per_iter is not None else []))
        d, n_core = self.dims["d_model"], self.dims["n_core"]
        loop_passes = 2 * num_steps + 4 * num_grad_steps
        attention: float = (pre_passes * self.dims["n_prelude"] + 6 * self.dims["n_coda"]) * seq_len * d
        attention += loop_passes * n_core * seq_len * d
        return float(pre_passes * n_pre + 6 * n_post + loop_passes * n_loop + attention)


def _state_stats(x: Tensor, x_prev: Tensor | None) -> Tensor:
    """``[RMS(x), ||x - x_prev|| / ||x_prev||]`` float32, detached (0 for the relative change when no x_prev)."""
    x = x.detach()
    norm = torch.linalg.vector_norm(x, dtype=torch.float32)
    rms = norm / math.sqrt(max(1, x.numel()))
    if x_prev is None:
        return torch.stack((rms, torch.zeros_like(rms)))
    prev = torch.linalg.vector_norm(x_prev.detach(), dtype=torch.float32)
    change = torch.linalg.vector_norm(x - x_prev.detach(), dtype=torch.float32)
    return torch.stack((rms, change / prev.clamp_min(torch.finfo(torch.float32).tiny)))
