"""The LightningModule that wraps any registered architecture as a causal language model."""

from __future__ import annotations

import hashlib
import math

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


class BatchDigest:
    """A digest of the global batches a run trained on, step by step: two runs saw the same tokens in the same order
    up to step ``s`` exactly when their digests at ``s`` agree, whatever their numbers of ranks, micro batches or
    attempts. Chained (``d[s+1] = blake2b(d[s] + tokens of step s)``, over every sample of the global batch in the
    sampler's global order), so a resumed run continues from the value its checkpoint stored."""

    def __init__(self, start_step: int = 0, start: str = "") -> None:
        self.at: dict[int, str] = {start_step: start}

    def restart(self, step: int, value: str) -> None:
        self.at = {step: value}

    def add_step(self, step: int, samples: list[torch.Tensor]) -> None:
        h = hashlib.blake2b(self.at.get(step, "?").encode(), digest_size=16)
        for sample in samples:
            h.update(sample.numpy().tobytes())
        self.at[step + 1] = h.hexdigest()
        self.at.pop(step - 2, None)  # the loader runs at most a batch ahead of the trainer: keep a few

    def value(self, step: int) -> str | None:
        return self.at.get(step) or None


class ResumableLoader(DataLoader):
    """A DataLoader whose position is owned by its :class:`StepSampler`.

    The sampler starts at the restored global step and reports the whole run's length, so
    Lightning's batch counters line up with an uninterrupted run. ``state_dict`` is what marks
    it resumable for Lightning; the state itself is the global step, restored before this loader
    is built, so nothing else needs saving.
    """

    def __init__(self, *args, digest: BatchDigest | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # rank zero alone reads the whole global batch for the digest (the one run.json records)
        self.digest = digest

    def __iter__(self):
        sampler = self.sampler
        assert isinstance(sampler, StepSampler)
        for n, batch in enumerate(super().__iter__()):
            if self.digest is not None and n % sampler.accumulate == 0:
                step = sampler.start_step + n // sampler.accumulate
                self.digest.add_step(step, [self.dataset[i][0] for i in sampler.global_indices(step)])
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


ACCUMULATE_KEY = "parcae_runner_accumulate"
DIGEST_KEY = "parcae_runner_batch_digest"


def rescale_batch_progress(checkpoint: dict, saved: int, now: int) -> None:
    """Rescale the fit loop's micro-batch counters of a checkpoint written with ``saved`` micro batches per optimizer
    step to ``now``: a checkpoint is written at a step boundary, so ``ready`` is a whole number of steps; every
    counter keeps its distance from ``ready``."""
    progress = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]
    for part in ("total", "current"):
        counters = progress[part]
        ready = counters["ready"]
        shift = ready // saved * now - ready
        for name in counters:
            counters[name] += shift


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
        # the clipping norm of this step's gradients, set by the divergence guard (train/divergence.py) when it
        # measures them, used once by configure_gradient_clipping
        self.clip_norm: torch.Tensor | None = None
        self.sharded = False  # set once configure_model has sharded the model (train.strategy=fsdp)
        self.digest = BatchDigest()
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

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # what one optimizer step was in micro batches on each rank, for a resume on another number of ranks
        checkpoint[ACCUMULATE_KEY] = self.accumulate
        checkpoint[DIGEST_KEY] = self.digest.value(self.trainer.global_step)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resume on another number of ranks (elastic resume): the global batch and its sample order do not change
        (StepSampler), but each rank's micro batches per step do; Lightning's batch counters are per rank, so they
        are rescaled to the same optimizer step in the new accumulation."""
        self.digest.restart(checkpoint["global_step"], checkpoint.get(DIGEST_KEY) or "")
        saved = checkpoint.get(ACCUMULATE_KEY, self.accumulate)
        if saved != self.accumulate:
            rescale_batch_progress(checkpoint, saved, self.accumulate)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)  # [B, T, V]
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch  # [B, T], [B, T]
        # models with a sampled depth (looped cores) draw it per slice of the global batch, so that a resumed run and
        # a run on another number of ranks draw the same depths for the same samples (StepSampler: micro batch a of
        # a step is global slice a * world + rank). Sharded, every rank must run the looped blocks as often as the
        # others (each run is a collective), so the loop runs to the deepest draw of the micro step's slices; the
        # results are the same either way (a finished sequence is frozen), so DDP saves those iterations
        if isinstance(self.model, SampledDepth):
            world, micro = self.trainer.world_size, batch_idx % self.accumulate
            first = micro * world
            peers = range(first, first + world) if self.sharded else ()
            self.model.set_depth_context(
                self.cfg.seed, self.trainer.global_step, first + self.trainer.global_rank, peers
            )
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
        digest = self.digest if self.trainer.is_global_zero else None
        self.train_loader = ResumableLoader(
            dataset, batch_size=t.micro_batch_size, sampler=sampler, num_workers=t.num_workers, digest=digest
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
        every = validation_indices(len(dataset), max_batches * self.cfg.train.micro_batch_size)
        indices = every[rank::world]
        # sharded, every rank runs as many forwards as the rank with the most chunks
        batches = math.ceil(math.ceil(len(every) / world) / self.cfg.train.micro_batch_size) if self.sharded else 0
        was_training = self.model.training
        self.model.eval()
        token_bytes = self.token_bytes
        assert isinstance(token_bytes, torch.Tensor)  # a buffer (register_buffer in __init__)
        totals = score_chunks(
            self.model, dataset, indices, self.cfg.train.micro_batch_size, token_bytes, forward_kwargs, batches
        )
        self.model.train(was_training)
        return loss_and_bpb(self.trainer.strategy.reduce(totals, reduce_op="sum"))
