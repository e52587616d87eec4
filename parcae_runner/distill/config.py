"""``distill.*``: the configuration of one distillation run, set as ``key=value`` overrides (Hydra syntax)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from parcae_runner.config.errors import ConfigError
from parcae_runner.models.students import student_recipe

STAGES = ("1", "2", "both")
TOKENIZERS = ("data", "teacher")
WANDB_MODES = ("disabled", "offline", "online")
# the teacher the CPU demo trains first (a small Qwen2-style GQA model)
DEMO_TEACHER = "demo"


@dataclass
class DistillConfig:
    # a Hugging Face folder of a Qwen2 / Qwen3 / Llama / Mistral causal LM, a run directory of this project (its
    # newest HF export), or "demo"
    teacher: str = DEMO_TEACHER
    # "data": the project's tokenizer of data.* (the demo); "teacher": the teacher folder's own tokenizer
    tokenizer: str = "data"
    # GroupNorm (cxa073 ln_x) or NoNorm (cxa076: y * N^-1/2)
    norm: str = "groupnorm"
    # per-head RMSNorm on r and k (cxa076r; inherits Qwen3's q_norm / k_norm)
    rk_norm: bool = False
    seed: int = 0
    # "1", "2" or "both"; stage 2 alone continues the student of a finished stage-1 run (stage1_from)
    stage: str = "both"
    stage1_from: str | None = None
    stage1_steps: int = 60
    stage2_steps: int = 60
    stage1_lr: float = 3e-3
    stage2_lr: float = 1e-3
    batch_size: int = 8
    temperature: float = 1.0
    ce_weight: float = 0.0
    eval_every: int = 10
    eval_batches: int = 4
    # the student's shape is the teacher's; set these only to assert it (a different value is an error)
    student_layers: int | None = None
    student_d_model: int | None = None
    kernel_impl: str = "auto"
    # demo teacher: training steps on the data before distillation
    demo_teacher_steps: int = 200
    # wandb: "disabled", "offline" (under <run_dir>/wandb; `wandb sync` later) or "online" (needs WANDB_API_KEY)
    wandb: str = "disabled"
    wandb_project: str = "parcae-runner"
    results_dir: str = "results"
    sweep: str = "distill"
    run_name: str | None = None
    # run-config overrides for the token data (data.vocab_size, data.seq_len, data.cache_dir, ...)
    data: dict[str, Any] = field(default_factory=lambda: {"vocab_size": 2048, "seq_len": 64})


def load_config(overrides: list[str]) -> DistillConfig:
    """``["norm=none", "seed=1", "data.seq_len=32", ...]`` (a leading ``distill.`` is allowed) -> checked config."""
    base = OmegaConf.structured(DistillConfig)
    items = [o.removeprefix("distill.") for o in overrides]
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(items))
    except OmegaConfBaseException as e:
        raise ConfigError("distill", " ".join(overrides), f"not a valid override ({type(e).__name__}: {e})") from None
    cfg: DistillConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    check(cfg)
    return cfg


def check(cfg: DistillConfig) -> None:
    norms = student_recipe().norms
    if cfg.norm not in norms:
        raise ConfigError("distill.norm", cfg.norm, f"choose one of: {', '.join(norms)}")
    if cfg.tokenizer not in TOKENIZERS or (cfg.tokenizer == "teacher" and cfg.teacher == DEMO_TEACHER):
        raise ConfigError("distill.tokenizer", cfg.tokenizer, "choose data, or teacher with a teacher folder")
    if str(cfg.stage) not in STAGES:
        raise ConfigError("distill.stage", cfg.stage, f"choose one of: {', '.join(STAGES)}")
    for key in ("stage1_steps", "stage2_steps", "batch_size", "eval_every", "eval_batches"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"distill.{key}", getattr(cfg, key), "must be >= 1")
    if cfg.wandb not in WANDB_MODES:
        raise ConfigError("distill.wandb", cfg.wandb, f"choose one of: {', '.join(WANDB_MODES)}")
    if cfg.temperature <= 0:
        raise ConfigError("distill.temperature", cfg.temperature, "must be > 0")
    if str(cfg.stage) == "2":
        done = cfg.stage1_from and (Path(cfg.stage1_from) / "student" / "stage1.pt").is_file()
        if not done:
            raise ConfigError(
                "distill.stage1_from", cfg.stage1_from, "stage 2 needs the run directory of a finished stage 1"
            )


def run_name(cfg: DistillConfig) -> str:
    return cfg.run_name or f"{cfg.norm}-s{cfg.seed}"
