"""Data of the ``lambada_embedded`` task (lm-eval loads this file by path from the task's YAML)."""

from parcae_runner.eval.lastword import task_dataset as dataset

__all__ = ["dataset"]
