"""The LightningModule that wraps any registered architecture as a causal language model."""

from __future__ import annotations

import hashlib

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader

from parcae_runner.config.schema import DataOrder
from parcae_runner.config.validate import gradient_accumulation
from parcae_runner.data import PreparedData, StepSampler, TokenChunks, validation_indices
from parcae_runner.eval.scoring import loss_and_bpb, score_chunks
from parcae_runner.models.abilities import SampledDepth
from parcae_runner.train.optim import build_optimizer
from parcae_runner.train.sharding import shard_model, shard_unit_classes


class ResumableLoader(DataLoader):
    """A DataLoader whose position is owned by its :class:`StepSampler`.

    The sampler starts at the restored global step and reports the whole run's length, so
    Lightning's batch counters line up with an uninterrupted run. ``state_dict`` is what marks
    it resumable for Lightning; the state itself is the global step, restored before this loader
    is built, so nothing else needs saving.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # a digest of every input batch handed out, in order: two runs saw the same tokens in the
        # same order exactly when their digests agree (checked in the main process, no device sync)
        self.digest = hashlib.blake2b(digest_size=16)

    def __iter__(self):
        for batch in super().__iter__():
            self.digest.update(batch[0].numpy().tobytes())
            yield batch

    def __len__(self) -> int:
        # micro-batches of the whole run, not of what is left: Lightning's restored batch counter
        # continues from the checkpoint, and a shorter length would end the epoch early and
        # replay the sampler from the start
        sampler = self.sampler
        assert isinstance(sampler, StepSampler), "built with a StepSampler (make_train_loader)"
        return sampler.end_step * sampler.accumulate

    def state_dict(self) -> dict:
        sampler = self.sampler
        assert isinstance(sampler, StepSampler)
        return {"start_step": sampler.start_step}

    def load_state_dict(self, state: dict) -> None:
        pass


class LanguageModelModule(L.LightningModule):
    """Next-token prediction for any registered architecture.

    Args:
        model: maps ``input_ids [B, T]`` to ``logits [B, T, V]``.
        cfg: the resolved run config.
        data: the prepared token shards and per-token byte counts (for bits per byte).
    """

    def __init__(self, model: nn.Module, cfg: DictConfig, data: PreparedData):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.data = data
        self.accumulate = gradient_accumulation(cfg)
        self.train_loader: ResumableLoader | None = None
        self._depth_step = -1
        # the clipping norm of this step's gradients, set by the divergence guard (train/divergence.py) when it
        # measures them, used once by configure_gradient_clipping
        self.clip_norm: torch.Tensor | None = None
        self.sharded = False  # set once configure_model has sharded the model (train.strategy=fsdp)
        self.register_buffer("token_bytes", torch.as_tensor(data.token_bytes, dtype=torch.float64), persistent=False)

    def configure_model(self) -> None:
        """Under ``train.strategy=fsdp`` (Lightning's ModelParallelStrategy), shard the model over the device mesh
        once the processes exist: train/sharding.py. Under DDP there is nothing to do."""
        from lightning.pytorch.strategies import ModelParallelStrategy

        if not isinstance(self.trainer.strategy, ModelParallelStrategy) or self.sharded:
            return
        units = shard_unit_classes(self.cfg.arch.name)
        shard_model(self.model, units, self.device_mesh, self.cfg)
        self.sharded = True

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)  # [B, T, V]
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch  # [B, T], [B, T]
        # models with a sampled depth (looped cores) draw it from (seed, step, rank): re-seed once per
        # optimizer step, so a resumed run draws the same depths as an uninterrupted one
        if isinstance(self.model, SampledDepth) and self._depth_step != self.trainer.global_step:
            self.model.set_depth_context(self.cfg.seed, self.trainer.global_step, self.trainer.global_rank)
            self._depth_step = self.trainer.global_step
        return self.loss(x, y)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip by norm with the norm the divergence guard already computed for this step (the same one
        ``clip_grad_norm_`` would compute, train/divergence.py ``grad_norms``): Lightning's own clipping would read
        every gradient a second time. Without that norm (no guard), or for another algorithm, Lightning clips."""
        norm, self.clip_norm = self.clip_norm, None
        if gradient_clip_val and norm is not None and gradient_clip_algorithm in (None, "norm"):
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grads_with_norm_(params, gradient_clip_val, norm)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        opt, sched = build_optimizer(self.model, self.cfg.train, self.device.type)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def train_dataloader(self) -> DataLoader:
        t = self.cfg.train
        dataset = TokenChunks(self.data.train, self.cfg.data.seq_len, self.cfg.data.chunk_overlap)
        sampler = StepSampler(
            num_chunks=len(dataset),
            data_seed=self.cfg.data.seed,
            micro_batch_size=t.micro_batch_size,
            accumulate=self.accumulate,
            world_size=self.trainer.world_size,
            rank=self.trainer.global_rank,
            start_step=self.trainer.global_step,
            end_step=t.max_steps,
            shuffle=self.cfg.data.order == DataOrder.SHUFFLED,
        )
        self.train_loader = ResumableLoader(
            dataset, batch_size=t.micro_batch_size, sampler=sampler, num_workers=t.num_workers
        )
        return self.train_loader

    @torch.no_grad()
    def evaluate(self, max_batches: int) -> dict[str, float]:
        """Mean loss (nats/token) and bits per byte over the fixed validation chunks; for models
        with a sampled depth, also at each of ``model.validation_depths()`` (``val/loss@R4``, ...)."""
        out = self._evaluate_at(max_batches, {})
        depths = self.model.validation_depths() if isinstance(self.model, SampledDepth) else []
        for depth in depths:
            at = self._evaluate_at(max_batches, {"num_steps": depth})
            out.update({f"{k}@R{depth}": v for k, v in at.items() if k != "val/tokens"})
        return out

    def _evaluate_at(self, max_batches: int, forward_kwargs: dict) -> dict[str, float]:
        """Every rank takes its share of the chunks; sums are reduced across ranks so the result
        does not depend on the number of devices."""
        dataset = TokenChunks(self.data.val, self.cfg.data.seq_len, self.cfg.data.chunk_overlap)
        world, rank = self.trainer.world_size, self.trainer.global_rank
        indices = validation_indices(len(dataset), max_batches * self.cfg.train.micro_batch_size)[rank::world]
        was_training = self.model.training
        self.model.eval()
        token_bytes = self.token_bytes
        assert isinstance(token_bytes, torch.Tensor)  # a buffer (register_buffer in __init__)
        totals = score_chunks(
            self.model, dataset, indices, self.cfg.train.micro_batch_size, token_bytes, forward_kwargs
        )
        self.model.train(was_training)
        return loss_and_bpb(self.trainer.strategy.reduce(totals, reduce_op="sum"))
