"""The divergence guard: a step with a non-finite loss or gradient is skipped, not applied; a run that keeps
diverging stops with status ``diverged``, naming its last good checkpoint.

- Skip: after the step's backward passes (``on_before_optimizer_step``, before clipping) the gradients are checked
  in one reduction (their global norm before clipping, logged as ``train/grad_norm``); if any is NaN or infinite
  every gradient is dropped (``grad = None``), which the optimizers treat as "no update" (no moment update, no
  weight decay), and the step is counted (``train/skipped_steps``).
  The learning-rate schedule still advances, as in Megatron's and DeepSpeed's loss-scale skips.
  The per-gradient norms of that reduction also give the clipping norm (``train.grad_clip``): the module clips with
  it (``LanguageModelModule.configure_gradient_clipping``) instead of Lightning computing every norm a second time.
- Stop: ``train.divergence.max_skipped_in_a_row`` skipped steps in a row, or (when ``train.divergence.loss_guardrail``
  is set, Parcae's ``loss_guardrail``) a finite training loss above it after ``guardrail_after_steps`` steps, raises
  :class:`Diverged`; the runner records ``diverged`` and the message.
"""

from __future__ import annotations

import math

import lightning as L
import torch

from parcae_runner.config.errors import RunStopped
from parcae_runner.runs.checkpoints import list_checkpoints


class Diverged(RunStopped):
    """The run diverged: the message says how, at which step, and which checkpoint is the last good one."""


def _per_gradient_norms(grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """The L2 norm of each gradient: one ``_foreach_norm`` per (device, dtype) group, in the order
    ``torch.nn.utils.get_total_norm`` (what ``clip_grad_norm_`` calls) stacks them."""
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for g in grads:
        groups.setdefault((g.device, g.dtype), []).append(g)
    return [n for group in groups.values() for n in torch._foreach_norm(group)]


def grad_norms(grads: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(norm, clip_norm)`` of ``grads``, from one pass over them: ``norm`` in float64 (the sum of squares of finite
    float32 norms cannot overflow there, so it is finite exactly when every gradient is: what the guard checks and
    logs); ``clip_norm`` bit for bit what ``torch.nn.utils.clip_grad_norm_`` computes from the same list (what the
    clipping uses, so a run clips exactly as it did when Lightning computed the norm itself)."""
    norms = _per_gradient_norms(grads)
    first = grads[0].device
    clip_norm = torch.linalg.vector_norm(torch.stack([n.to(first) for n in norms]))
    return torch.linalg.vector_norm(torch.stack([n.double() for n in norms])), clip_norm


def grad_norm(module: torch.nn.Module) -> torch.Tensor | None:
    """The global L2 norm of the gradients (before clipping), as a float64 device tensor: NaN or infinite exactly when
    some gradient is. ``None`` when no parameter has a gradient."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return grad_norms(grads)[0] if grads else None


class DivergenceGuard(L.Callback):
    def __init__(self, checkpoints_dir, max_skipped_in_a_row: int, loss_guardrail: float | None, after: int):
        self.checkpoints_dir = checkpoints_dir
        self.max_in_a_row = max_skipped_in_a_row
        self.guardrail = loss_guardrail
        self.after = after
        self.skipped = 0
        self.in_a_row = 0
        self._loss_sum: torch.Tensor | None = None

    def _last_good(self) -> str:
        found = list_checkpoints(self.checkpoints_dir)
        return f"checkpoint-{found[-1][0]} ({found[-1][1]})" if found else "none (no checkpoint was saved)"

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        # the optimizer's parameters in its order: the list (and so the summation order) Lightning's clipping uses
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm, clip_norm = grad_norms(grads) if grads else (None, None)
        # kept on the module for the metrics (train/grad_norm): read back only at log intervals
        pl_module.last_grad_norm = norm
        # and the clipping norm for the clipping that follows this hook (module.configure_gradient_clipping)
        pl_module.clip_norm = clip_norm
        if norm is None or bool(torch.isfinite(norm)):  # one host sync per optimizer step
            self.in_a_row = 0
            return
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None
        self.skipped += 1
        self.in_a_row += 1
        pl_module.skipped_steps = self.skipped
        if self.in_a_row >= self.max_in_a_row:
            raise Diverged(
                f"{self.in_a_row} optimizer steps in a row had a non-finite loss or gradient (the last at step "
                f"{trainer.global_step}, {self.skipped} skipped in all); last good checkpoint: {self._last_good()}"
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.guardrail is None:
            return
        loss = outputs["loss"].detach() if isinstance(outputs, dict) else outputs.detach()
        self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return
        value, self._loss_sum = float(self._loss_sum), None
        step = trainer.global_step
        if step > self.after and math.isfinite(value) and value > self.guardrail:
            raise Diverged(
                f"training loss {value:.4g} at step {step} is above train.divergence.loss_guardrail="
                f"{self.guardrail:g}; last good checkpoint: {self._last_good()}"
            )

    def state_dict(self) -> dict:
        return {"skipped": self.skipped, "in_a_row": self.in_a_row}

    def load_state_dict(self, state: dict) -> None:
        self.skipped, self.in_a_row = int(state["skipped"]), int(state["in_a_row"])
