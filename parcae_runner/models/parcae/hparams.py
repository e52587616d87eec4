"""Parcae's hyperparameters, their checks, and the depth distribution they define (the model is
:mod:`parcae_runner.models.parcae.model`).

Depth in training. With ``num_steps`` left as None in train mode, ``T = max(1, Poisson(mean_recurrence))`` is
drawn per sequence (``depth_sampling: per-sequence``, Parcae's ``recurrent_iteration_method: per-sequence``) or
once per forward call (``per-batch``), and each sequence backpropagates through its own last
``k = min(T, mean_backprop_depth)`` iterations only. A batch runs to its largest T; a sequence whose T is smaller is
frozen (``torch.where``) while it does not run. Parcae freezes a sequence once it is done; here a sequence with T
below the batch's largest waits, frozen, until its T iterations end where the batch's loop ends. Every sequence
goes through the same T iterations as run alone (the blocks never mix sequences), and all the k-iterations fall in
the batch's last ``max k`` iterations, so only those need autograd. The draws come from a CPU generator that the
trainer re-seeds before every optimizer step with :meth:`ParcaeModel.set_depth_context` (seed, step, rank), so a
resumed run draws exactly the depths (and like-init noise) of an uninterrupted one.
In eval mode the depth is ``eval_recurrence`` (default ``mean_recurrence``) or ``num_steps``, and like-init
noise comes from a fixed seed, so evaluation is deterministic (Parcae redraws it every call, even in eval).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from parcae_runner.models.layers.injection import INJECTIONS


@dataclass
class ParcaeHParams:
    name: str = "parcae"
    # training depth T ~ max(1, Poisson(mean_recurrence)); gradients flow through the last
    # k = min(T, mean_backprop_depth) iterations only. Parcae: mean_recurrence=8, mean_backprop_depth=4 at every
    # size (parcae_lm/configs/parcae/*.py)
    mean_recurrence: int = 8
    mean_backprop_depth: int = 4
    # per-sequence: every sequence of a batch draws its own T; per-batch: one T per forward call.
    # Parcae: recurrent_iteration_method="per-sequence"
    depth_sampling: str = "per-sequence"
    # iterations in eval mode when forward() gets no num_steps; None = mean_recurrence
    eval_recurrence: int | None = None
    # diagonal | linear | add (parcae_runner.models.layers.injection). Parcae: injection_type="diagonal"
    injection: str = "diagonal"
    # like-init (truncated-normal noise, std sqrt(2/(5d))) | zero | embed (x0 = e). Parcae: state_init="like-init"
    state_init: str = "like-init"
    norm_eps: float = 1e-6
    # Parcae: rope_base 50_000 (parcae_lm/models/config.py)
    rope_base: float = 50000.0
    # Parcae: intermediate_size = 4 x n_embd
    mlp_ratio: int = 4
    # nanochat-style value embeddings on alternate layers of prelude + core + coda
    value_embeddings: bool = True
    # Parcae: tie_embeddings=True
    tie_embeddings: bool = True
    # the readout C (d x d) between the loop and the coda, as in Parcae
    readout: bool = True


DEPTH_SAMPLINGS = ("per-sequence", "per-batch")
STATE_INITS = ("like-init", "zero", "embed")


# like-init noise in eval mode comes from this seed, so eval forwards are deterministic
EVAL_NOISE_SEED = 0


def depth_seed(seed: int, step: int, rank: int) -> int:
    """A 63-bit generator seed that is a fixed function of (seed, step, rank), distinct for distinct triples."""
    digest = hashlib.blake2b(f"parcae-depth:{seed}:{step}:{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def expected_depth(mean_recurrence: float, max_grad_steps: int) -> tuple[float, float]:
    """``(E[T], E[min(T, K)])`` for ``T = max(1, Poisson(mean_recurrence))``, ``K = max_grad_steps``."""
    mu = float(mean_recurrence)
    p = [math.exp(-mu) * mu**t / math.factorial(t) for t in range(max_grad_steps)]  # P(Poisson = t), t < K
    e_t = mu + p[0]  # max(1, .) moves only the mass at 0, to 1
    e_k = sum(pt * max(1, t) for t, pt in enumerate(p)) + max_grad_steps * (1.0 - sum(p))
    return e_t, e_k


def validate_hparams(hp: ParcaeHParams) -> None:
    """Raise ``ValueError`` naming the ``arch.`` key of a value the model cannot be built with."""
    if hp.injection not in INJECTIONS:
        raise ValueError(f"arch.injection={hp.injection!r} is not one of: {', '.join(INJECTIONS)}")
    if hp.depth_sampling not in DEPTH_SAMPLINGS:
        raise ValueError(f"arch.depth_sampling={hp.depth_sampling!r} is not one of: {', '.join(DEPTH_SAMPLINGS)}")
    if hp.state_init not in STATE_INITS:
        raise ValueError(f"arch.state_init={hp.state_init!r} is not one of: {', '.join(STATE_INITS)}")
    if hp.mean_recurrence < 1:
        raise ValueError(f"arch.mean_recurrence={hp.mean_recurrence} must be at least 1")
    if hp.mean_backprop_depth < 1:
        raise ValueError(f"arch.mean_backprop_depth={hp.mean_backprop_depth} must be at least 1")
    if hp.eval_recurrence is not None and hp.eval_recurrence < 0:
        raise ValueError(f"arch.eval_recurrence={hp.eval_recurrence} must be at least 0")
