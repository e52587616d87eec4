"""How a looped model feeds its input embedding ``e`` back into the recurrent state ``x`` at every iteration.

Each injection splits its work in two: ``prepare(e)`` once per forward pass (whatever does not depend on ``x``),
then ``step(x, prepared)`` at every iteration.

* ``diagonal`` (Parcae): ``x <- A_bar * x + Delta * (B e)`` with ``Delta = softplus(dt_bias)`` and
  ``A_bar = exp(-Delta * exp(A_log))``, per channel: the zero-order-hold discretisation of the stable diagonal
  system ``x' = -exp(A_log) x + B e``. ``A_bar`` lies strictly in (0, 1) for *any* parameter values (computed
  in log space and clamped so that neither end is reached in float32), so the injection is a contraction in x.
* ``linear`` (Huginn / "recurrent depth"): ``x <- W [x, e]``, ``W: 2d -> d``; nothing bounds its gain.
* ``add``: ``x <- x + e``; the state grows by ``e`` every iteration unless the core undoes it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parcae_runner.models.layers.init import small_init_std

# log(Delta * exp(A_log)) is clamped to this range: exp(-exp(-15)) = 1 - 3.1e-7 is still below 1 in float32
# (spacing 6e-8 there) and exp(-exp(4)) = 1.9e-24 is still a normal float32 above 0
LOG_RATE_MIN, LOG_RATE_MAX = -15.0, 4.0
# below this, log(softplus(x)) = x to float32 precision (softplus(x) = log1p(e^x) ~ e^x)
_LOG_SOFTPLUS_LINEAR_BELOW = -15.0
# Parcae's init: A_log = 0 and Delta such that A_bar = sqrt(1/5), i.e. Delta = ln(5) / 2
A_BAR_INIT = math.sqrt(1 / 5)


def log_softplus(x: Tensor) -> Tensor:
    """``log(softplus(x))`` without the ``log(0)`` of float32 softplus underflow, and with finite gradients."""
    # the clamp keeps the unused branch finite: torch.where would otherwise send 0 * inf = nan back through it
    safe = torch.log(F.softplus(x.clamp(min=_LOG_SOFTPLUS_LINEAR_BELOW)))
    return torch.where(x < _LOG_SOFTPLUS_LINEAR_BELOW, x, safe)


def inverse_softplus(y: float) -> float:
    return math.log(math.expm1(y))


class Injection(nn.Module):
    """How the loop state takes in the prelude's output ``e`` at each iteration: ``prepare(e)`` once per forward,
    then ``step(x, prepared)`` per iteration; what ``prepare`` returns is the subclass's own."""

    def init_weights(self) -> None:
        raise NotImplementedError

    def prepare(self, e: Tensor) -> Any:
        raise NotImplementedError

    def step(self, x: Tensor, prepared: Any) -> Tensor:
        raise NotImplementedError


class DiagonalInjection(Injection):
    """``x <- A_bar * x + Delta * (B e)``; ``A_log``, ``dt_bias``: ``[d]``, ``B``: ``[d, d]``."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.A_log = nn.Parameter(torch.empty(d_model))
        self.dt_bias = nn.Parameter(torch.empty(d_model))
        self.B = nn.Linear(d_model, d_model, bias=False)

    @torch.no_grad()
    def init_weights(self) -> None:
        """``A_log = 0``, ``Delta = ln(5)/2`` (so ``A_bar = sqrt(1/5)``), ``B = I``: Parcae's init."""
        nn.init.zeros_(self.A_log)
        self.dt_bias.fill_(inverse_softplus(-math.log(A_BAR_INIT)))
        nn.init.eye_(self.B.weight)

    def discretise(self) -> tuple[Tensor, Tensor]:
        """``(A_bar, Delta)``, both ``[d]`` float32; ``0 < A_bar < 1`` elementwise for any parameter values."""
        dt_bias, a_log = self.dt_bias.float(), self.A_log.float()
        delta = F.softplus(dt_bias)
        # log(Delta * exp(A_log)) = log(Delta) + A_log: the product itself can overflow (or Delta underflow to 0)
        log_rate = (log_softplus(dt_bias) + a_log).clamp(LOG_RATE_MIN, LOG_RATE_MAX)
        return torch.exp(-torch.exp(log_rate)), delta

    def prepare(self, e: Tensor) -> tuple[Tensor, Tensor]:
        """e: ``[B, T, d]`` -> ``(A_bar [d], Delta * B e [B, T, d])``; ``B e`` is computed once per forward."""
        a_bar, delta = self.discretise()
        return a_bar, delta * self.B(e)

    def step(self, x: Tensor, prepared: tuple[Tensor, Tensor]) -> Tensor:
        a_bar, u = prepared
        return (a_bar * x + u).to(x.dtype)


class LinearInjection(Injection):
    """``x <- W [x, e]``; ``W``: ``[d, 2d]``, applied at every iteration."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * d_model, d_model, bias=False)

    @torch.no_grad()
    def init_weights(self) -> None:
        nn.init.normal_(self.proj.weight, std=small_init_std(self.proj.out_features))

    def prepare(self, e: Tensor) -> Tensor:
        return e

    def step(self, x: Tensor, e: Tensor) -> Tensor:
        return self.proj(torch.cat((x, e.to(x.dtype)), dim=-1))


class AddInjection(Injection):
    """``x <- x + e``; no parameters."""

    def __init__(self, d_model: int) -> None:
        super().__init__()

    def init_weights(self) -> None:
        pass

    def prepare(self, e: Tensor) -> Tensor:
        return e

    def step(self, x: Tensor, e: Tensor) -> Tensor:
        return x + e


INJECTIONS: dict[str, type[Injection]] = {
    "diagonal": DiagonalInjection,
    "linear": LinearInjection,
    "add": AddInjection,
}
