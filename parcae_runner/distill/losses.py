"""Distillation losses and metrics (OpenMOSE RWKVInside ``train_functions.py`` / ``hybrid_model.py``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def attention_l2(student_out: Tensor, teacher_out: Tensor) -> Tensor:
    """Stage 1, one layer: mean over tokens of ``||y_teacher - y_student||_2 / sqrt(d)`` (``get_attn_loss``).

    student_out, teacher_out: ``[B, T, d]`` -> scalar.
    """
    d = teacher_out.shape[-1]
    return torch.linalg.vector_norm(student_out - teacher_out.to(student_out.dtype), dim=-1).mean() / math.sqrt(d)


def kl_teacher_student(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)), summed over the vocabulary, mean over tokens.

    ``[B, T, V]`` each -> scalar. At T = 1 (cxa076's default) this is the plain KL; no T^2 factor, as cxa076.
    """
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean()


def top1_agreement(student_logits: Tensor, teacher_logits: Tensor) -> float:
    """Fraction of tokens where the student's argmax is the teacher's."""
    return (student_logits.argmax(-1) == teacher_logits.argmax(-1)).float().mean().item()
