"""``parcae-runner distill``: check every input, then run stage 1 and/or stage 2 into one run directory."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from parcae_runner.config.errors import ConfigError
from parcae_runner.distill import student as st
from parcae_runner.distill.config import DEMO_TEACHER, DistillConfig, run_name
from parcae_runner.distill.data import heldout_batches, prepare, tokenize_with
from parcae_runner.distill.run import Recorder, run_stage1, run_stage2, start_wandb
from parcae_runner.distill.teacher_demo import ensure_demo_teacher
from parcae_runner.runs import RunDirectory, RunStatus
from parcae_runner.util.log import log

STUDENT_DIR = "student"


def _check_student_shape(cfg: DistillConfig, tconfig: Any) -> None:
    for key, want in (("student_layers", tconfig.num_hidden_layers), ("student_d_model", tconfig.hidden_size)):
        value = getattr(cfg, key)
        if value is not None and int(value) != int(want):
            raise ConfigError(f"distill.{key}", value, f"the student has the teacher's shape: {want}")


def _teacher_folder(cfg: DistillConfig, data: Any, seq_len: int) -> str:
    if cfg.teacher != DEMO_TEACHER:
        st.check_teacher_folder(cfg.teacher)
        return cfg.teacher
    folder = Path(cfg.results_dir) / cfg.sweep / "teacher-demo"
    folder.parent.mkdir(parents=True, exist_ok=True)
    return str(ensure_demo_teacher(folder, data, seq_len, cfg.demo_teacher_steps))


def setup(cfg: DistillConfig) -> dict[str, Any]:
    """Everything a run needs, checked before anything of the run is written."""
    if cfg.teacher != DEMO_TEACHER:
        cfg.teacher = st.resolve_teacher(cfg.teacher)
    if cfg.teacher != DEMO_TEACHER:
        st.check_teacher_folder(cfg.teacher)  # before the data is prepared: a bad folder fails fast
    if cfg.tokenizer == "teacher":
        try:
            data, seq_len = tokenize_with(cfg.teacher, cfg.data)
        except (OSError, ValueError) as e:
            raise ConfigError(
                "distill.tokenizer", "teacher", f"the teacher folder has no usable tokenizer ({e})"
            ) from None
    else:
        data, seq_len = prepare(cfg.data)
    folder = _teacher_folder(cfg, data, seq_len)
    tconfig = st.check_teacher_folder(folder)
    _check_student_shape(cfg, tconfig)
    if int(tconfig.vocab_size) < data.vocab_size:
        raise ConfigError("distill.teacher", folder, f"vocab {tconfig.vocab_size} < the data's {data.vocab_size}")
    teacher = st.load_teacher(folder)
    torch.manual_seed(cfg.seed)
    student = st.build_student(teacher, cfg.norm, cfg.rk_norm, cfg.kernel_impl)
    if str(cfg.stage) == "2":
        # the config check refuses stage 2 without a finished stage 1 to continue
        assert cfg.stage1_from is not None
        state = torch.load(Path(cfg.stage1_from) / STUDENT_DIR / "stage1.pt", weights_only=True)
        try:
            student.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ConfigError("distill.stage1_from", cfg.stage1_from, f"not a stage 1 of this student ({e})") from None
    heldout = heldout_batches(data, seq_len, cfg.batch_size, cfg.eval_batches)
    return {"teacher": teacher, "student": student, "data": data, "seq_len": seq_len, "heldout": heldout,
            "teacher_folder": folder}  # fmt: skip


def distill(cfg: DistillConfig) -> Path:
    """Run one distillation; returns its run directory."""
    ctx = setup(cfg)
    rd = RunDirectory(Path(cfg.results_dir) / cfg.sweep / run_name(cfg))
    rd.create()
    rd.write_config(OmegaConf.create({"distill": asdict(cfg), "teacher_folder": ctx["teacher_folder"]}))
    rd.metrics_file.write_text("")
    rd.update_run(status=RunStatus.RUNNING, kind="distill")
    wandb_run = start_wandb(rd, cfg.wandb, cfg.wandb_project, run_name(cfg), cfg.sweep, asdict(cfg))
    rec = Recorder(rd, wandb_run)
    (rd.path / STUDENT_DIR).mkdir(exist_ok=True)
    try:
        step = 0
        if str(cfg.stage) in ("1", "both"):
            step = run_stage1(cfg, ctx, rec)
            torch.save(ctx["student"].state_dict(), rd.path / STUDENT_DIR / "stage1.pt")
        if str(cfg.stage) in ("2", "both"):
            run_stage2(cfg, ctx, rec, step)
            torch.save(ctx["student"].state_dict(), rd.path / STUDENT_DIR / "stage2.pt")
    except BaseException:
        rd.update_run(status=RunStatus.FAILED)
        rec.close(ok=False)
        raise
    rec.close(ok=True)
    summary = summarize(rec.records)
    rd.update_run(status=RunStatus.DONE, step=rec.records[-1]["step"], metrics=summary)
    rd.card_file.write_text(card_text(cfg, ctx["teacher_folder"], summary))
    log(f"{rd.path}: held-out KL {summary.get('kl_start')} -> {summary.get('kl_final')}", "distill")
    return rd.path


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    evals = [r for r in records if "val/kl" in r]
    out: dict[str, Any] = {"kl_start": evals[0]["val/kl"], "kl_final": evals[-1]["val/kl"]}
    out["top1_final"] = evals[-1]["val/top1"]
    out["kl_reduction"] = out["kl_start"] / max(out["kl_final"], 1e-12)
    return out


def card_text(cfg: DistillConfig, teacher: str, summary: dict[str, Any]) -> str:
    stages = []
    if str(cfg.stage) in ("1", "both"):
        stages.append(
            f"- stage 1: {cfg.stage1_steps} steps, lr {cfg.stage1_lr}, per-layer attention-output L2 "
            "(teacher frozen, TimeMix only)"
        )
    if str(cfg.stage) in ("2", "both"):
        stages.append(
            f"- stage 2: {cfg.stage2_steps} steps, lr {cfg.stage2_lr}, KL(teacher || student) at T = "
            f"{cfg.temperature}, CE weight {cfg.ce_weight} (all parameters)"
        )
    return "\n".join(
        [
            f"# Distilled RWKV-7 (cxa076-style) student: {run_name(cfg)}",
            "",
            f"- teacher: `{teacher}`",
            f"- student: the teacher with every attention replaced by a cxa076 TimeMix, norm `{cfg.norm}`, "
            f"r/k norm {cfg.rk_norm}, seed {cfg.seed}",
            *stages,
            f"- held-out KL(teacher || student): {summary['kl_start']:.4f} at the start of distillation, "
            f"**{summary['kl_final']:.4f} final** (top-1 agreement {summary['top1_final']:.3f})",
            "",
            "Recipe: OpenMOSE PRWKV / cxa076 (RWKVInside); RWKV-7 x070 (BlinkDL RWKV-LM).",
            "",
        ]
    )
