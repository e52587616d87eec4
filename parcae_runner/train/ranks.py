"""Each rank says where it runs: one line in the step log, with the GPU Slurm gave it."""

from __future__ import annotations

import os
import socket

import lightning as L

from parcae_runner.util.log import log


def rank_gpu(local_rank: int, env: dict[str, str] | None = None) -> str | None:
    """The host GPU index of this rank: its local rank's entry of the GPUs the step sees (Lightning puts local rank
    ``i`` on the ``i``-th visible device), or the only one when the task was bound to a single GPU; None: no GPU."""
    env = dict(os.environ) if env is None else env
    visible = env.get("SLURM_STEP_GPUS") or env.get("CUDA_VISIBLE_DEVICES") or ""
    gpus = [g for g in visible.split(",") if g]
    if not gpus:
        return None
    return gpus[local_rank] if local_rank < len(gpus) else gpus[0] if len(gpus) == 1 else None


class AnnounceRank(L.Callback):
    """``rank 1/2 (node vm, local rank 1): GPU 1 (CUDA_VISIBLE_DEVICES=0,1 SLURM_STEP_GPUS=0,1), device cpu``."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        gpu = rank_gpu(trainer.local_rank)
        env = " ".join(f"{k}={os.environ[k]}" for k in ("CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS") if k in os.environ)
        node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
        log(
            f"rank {trainer.global_rank}/{trainer.world_size} (node {node}, local rank {trainer.local_rank}): "
            f"GPU {gpu if gpu is not None else 'none'}{f' ({env})' if env else ''}, device {pl_module.device}"
        )
