"""Evaluation during training: chosen tasks at checkpoint steps, so a run ends with metric-vs-step curves.

``train.eval.tasks=[bpb,lambada_embedded]`` evaluates at every checkpoint of the schedule
(``train.eval.every=k``: every k-th, and always the final one), before that checkpoint is written,
like the validation loss. Results go where ``parcae-runner eval`` puts them (``eval/checkpoint-N/``,
``run.json``) and into ``metrics.jsonl`` and wandb as ``eval/<task>/<metric>``. Only rank 0
evaluates; the random state is restored afterwards, so training is the same with or without it.
"""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch

from parcae_runner.eval.results import flat_metrics, write_results
from parcae_runner.eval.run_eval import evaluate_model
from parcae_runner.eval.tasks import task_metadata
from parcae_runner.runs import RunDirectory
from parcae_runner.train.metrics import MetricsSink
from parcae_runner.util.log import log


def eval_steps(checkpoint_steps: list[int], every: int) -> set[int]:
    """Every ``every``-th checkpoint step, and the last."""
    steps = sorted(checkpoint_steps)
    return set(steps[::every]) | set(steps[-1:])


class EvalAtCheckpoints(L.Callback):
    def __init__(self, sink: MetricsSink, run_dir: RunDirectory, cfg, checkpoint_steps: list[int]):
        self.sink = sink
        self.run_dir = run_dir
        self.cfg = cfg
        self.tasks = [str(t) for t in cfg.train.eval.tasks]
        self.steps = eval_steps(checkpoint_steps, int(cfg.train.eval.every))
        self._last_step = -1
        self._tokenizer = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_step = trainer.global_step
        if trainer.global_step == 0 and 0 in self.steps:
            self._evaluate(trainer, pl_module, 0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step != self._last_step:
            self._last_step = step
            if step in self.steps:
                self._evaluate(trainer, pl_module, step)

    def _evaluate(self, trainer, pl_module, step: int) -> None:
        if not self.tasks or not trainer.is_global_zero:
            return
        if getattr(pl_module, "sharded", False):
            # train.strategy=auto chose fsdp (an explicit fsdp with tasks is refused by the config validation): a
            # sharded forward on one rank would wait for the others forever
            log("train.eval.tasks skipped: the model is sharded (fsdp); run `parcae-runner eval` on the checkpoints")
            self.tasks = []
            return
        if self._tokenizer is None:
            self._tokenizer = pl_module.data.load_tokenizer()
        model = pl_module.model
        was_training = model.training
        py_state, np_state = random.getstate(), np.random.get_state()
        devices = [model_device.index] if (model_device := next(model.parameters()).device).type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                records = evaluate_model(
                    model,
                    self._tokenizer,
                    pl_module.data,
                    self.cfg,
                    step,
                    self.tasks,
                    limit=self.cfg.train.eval.limit,
                    metadata=task_metadata(self.cfg),
                )
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            model.train(was_training)
        write_results(self.run_dir, step, records)
        self.sink.write(step, flat_metrics(records), trainer, note=" eval")
