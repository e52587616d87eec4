"""One distillation run (PRWKV / cxa076 recipe): stage 1 per-layer attention-output L2, stage 2 logit KL.

Writes a normal run directory ``<results_dir>/<sweep>/<norm>-s<seed>/``: ``config.yaml``, ``run.json``,
``metrics.jsonl`` (``stage``, ``train/l2``, ``train/l2_layerN`` in stage 1, ``train/kl`` in stage 2, and held-out
``val/kl`` / ``val/top1`` in both), the student's weights after each stage under ``student/`` and ``card.md``.
Every input is checked before anything is written (bad input: ConfigError, exit 2).
"""

from __future__ import annotations

import math
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from parcae_runner.distill import student as st
from parcae_runner.distill.config import DistillConfig
from parcae_runner.distill.data import train_batch
from parcae_runner.distill.losses import attention_l2, kl_teacher_student, top1_agreement
from parcae_runner.runs import RunDirectory
from parcae_runner.runs.metrics import format_records


class Recorder:
    """Appends metric records to ``metrics.jsonl`` (and wandb, when on) and keeps them for the summary."""

    def __init__(self, rd: RunDirectory, wandb_run: Any = None) -> None:
        self.rd, self.wandb_run = rd, wandb_run
        self.records: list[dict[str, Any]] = []

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        with open(self.rd.metrics_file, "a") as f:
            f.write(format_records([record]))
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    def close(self, ok: bool) -> None:
        if self.wandb_run is not None:
            from parcae_runner.runs.wandb_offline import finish_run

            # and wait for the offline file to be written out: wandb's service finishes it after finish() returns
            finish_run(self.wandb_run, exit_code=0 if ok else 1)


def start_wandb(rd: RunDirectory, mode: str, project: str, name: str, group: str, config: dict) -> Any:
    """An offline or online wandb run writing under ``<run_dir>/wandb`` (None when disabled)."""
    if mode == "disabled":
        return None
    import wandb

    settings = wandb.Settings(console="off", silent=True)
    # DistillConfig checks mode against WANDB_MODES
    wandb_mode = cast(Literal["online", "offline", "disabled"], mode)
    return wandb.init(
        dir=rd.path, mode=wandb_mode, project=project, name=name, group=group, config=config, settings=settings
    )


@torch.no_grad()
def evaluate(student: nn.Module, teacher: nn.Module, batches: list) -> dict[str, float]:
    """Held-out KL(teacher || student) at T = 1 and top-1 agreement, averaged over ``batches``."""
    student.eval()
    kls, tops = [], []
    for x, _ in batches:
        t_logits, s_logits = teacher(x).logits, student(x).logits
        kls.append(kl_teacher_student(s_logits, t_logits).item())
        tops.append(top1_agreement(s_logits, t_logits))
    student.train()
    return {"val/kl": sum(kls) / len(kls), "val/top1": sum(tops) / len(tops)}


def _cosine(opt: torch.optim.Optimizer, base: float, i: int, total: int) -> None:
    lr = base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * i / total)))
    for group in opt.param_groups:
        group["lr"] = lr


def stage1_losses(student: nn.Module, teacher: nn.Module, tap: st.AttentionTap, x: torch.Tensor) -> list:
    """Per-layer L2 of each TimeMix on the teacher's input to that layer vs the teacher's attention output."""
    tap.clear()
    with torch.no_grad():
        teacher(x)
    losses, v_first = [], None
    for i, tm in enumerate(st.timemixes(student)):
        out, v_first = tm(tap.inputs[i], v_first)
        v_first = v_first.detach()  # layers train independently on the teacher's hidden states
        losses.append(attention_l2(out, tap.outputs[i]))
    return losses


def run_stage1(cfg: DistillConfig, ctx: dict, rec: Recorder) -> int:
    student, teacher, data, seq_len = ctx["student"], ctx["teacher"], ctx["data"], ctx["seq_len"]
    params = st.freeze_all_but_timemix(student)
    opt = torch.optim.AdamW(params, lr=cfg.stage1_lr, weight_decay=0.0)
    tap = st.AttentionTap(teacher)
    try:
        for i in range(cfg.stage1_steps + 1):
            x, _ = train_batch(data, seq_len, cfg.batch_size, cfg.seed, i)
            losses = stage1_losses(student, teacher, tap, x)
            loss = torch.stack(losses).mean()
            record = {"step": i, "stage": 1, "train/l2": loss.item()}
            record |= {f"train/l2_layer{j}": v.item() for j, v in enumerate(losses)}
            if i % cfg.eval_every == 0 or i == cfg.stage1_steps:
                tap.remove()
                record |= evaluate(student, teacher, ctx["heldout"])
                tap = st.AttentionTap(teacher)
            rec.add(record)
            if i == cfg.stage1_steps:
                break
            _cosine(opt, cfg.stage1_lr, i, cfg.stage1_steps)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        tap.remove()
    return cfg.stage1_steps


def run_stage2(cfg: DistillConfig, ctx: dict, rec: Recorder, start: int) -> None:
    student, teacher, data, seq_len = ctx["student"], ctx["teacher"], ctx["data"], ctx["seq_len"]
    for p in student.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.stage2_lr, weight_decay=0.0)
    for i in range(1, cfg.stage2_steps + 1):
        x, y = train_batch(data, seq_len, cfg.batch_size, cfg.seed + 1_000_003, i)
        with torch.no_grad():
            t_logits = teacher(x).logits  # on the fly: no stored teacher logits
        s_logits = student(x).logits
        kl = kl_teacher_student(s_logits, t_logits, cfg.temperature)
        loss = kl + cfg.ce_weight * F.cross_entropy(s_logits.flatten(0, 1), y.flatten()) if cfg.ce_weight else kl
        _cosine(opt, cfg.stage2_lr, i - 1, cfg.stage2_steps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        record = {"step": start + i, "stage": 2, "train/kl": kl.item()}
        if i % cfg.eval_every == 0 or i == cfg.stage2_steps:
            record |= evaluate(student, teacher, ctx["heldout"])
        rec.add(record)
