"""``parcae-runner eval``: evaluate a run's checkpoints on tasks; results land in the run directory.

    parcae-runner eval results/parc-demo/pythia-debug-s0 --all-checkpoints --tasks bpb,lambada_embedded

writes ``<run_dir>/eval/checkpoint-N/<task>.json`` (``<task>@R<r>.json`` for a looped model evaluated at
recurrence ``r``) and the metrics under ``run.json``'s ``eval`` key; ``collect`` reads them as columns
``eval/<task>/<metric>`` at step N, and ``report`` draws them against training steps.

Everything that can be wrong with the request (the run, the checkpoints, the task names, the tasks'
data, the tokenizer) is checked before the first checkpoint is evaluated, and a result file is only
written, atomically, once its task has finished: a failed evaluation leaves the run directory as it was.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from parcae_runner.config.errors import ConfigError
from parcae_runner.eval.results import flat_metrics, result_key, write_results
from parcae_runner.eval.tasks import (
    BPB,
    check_task_data,
    check_task_names,
    go_offline,
    parse_tasks,
    task_manager,
    task_metadata,
)
from parcae_runner.runs import checkpoint_path, list_checkpoints
from parcae_runner.runs.checkpoints import load_checkpoint_model
from parcae_runner.runs.layout import open_run
from parcae_runner.util.log import log

# bootstrap resamples for the standard errors of metrics that have no closed form (perplexity):
# lm-eval's default of 100,000 takes longer than the evaluation of a small model
BOOTSTRAP_ITERS = 1000


def _metric_name(key: str) -> str:
    """lm-eval's ``"acc,none"`` -> ``acc``; ``"exact_match,flexible-extract"`` -> ``exact_match_flexible-extract``."""
    metric, _, filt = key.partition(",")
    return metric if filt in ("", "none") else f"{metric}_{filt}"


def _numeric_metrics(raw: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in raw.items():
        if key in ("alias", "name", "sample_len") or isinstance(value, bool):
            continue
        if isinstance(value, int | float) and math.isfinite(value):
            out[_metric_name(key)] = float(value)
    return out


def bpb_metrics(
    model: nn.Module,
    data: Any,
    seq_len: int,
    chunks: int | None,
    batch_size: int,
    forward_kwargs: dict[str, Any],
) -> tuple[dict[str, float], int]:
    """``({bpb, loss}, tokens scored)``: bits per byte (and nats per token) on the held-out split.

    The training validation's own computation, on the same chunks when ``chunks`` is the run's
    ``val_batches x micro_batch_size``; ``None`` scores every chunk of the split."""
    from parcae_runner.data import TokenChunks, validation_indices
    from parcae_runner.eval.scoring import loss_and_bpb, score_chunks

    dataset = TokenChunks(data.val, seq_len)
    indices = list(range(len(dataset))) if chunks is None else validation_indices(len(dataset), chunks)
    device = next(model.parameters()).device
    token_bytes = torch.as_tensor(data.token_bytes, dtype=torch.float64, device=device)
    totals = score_chunks(model, dataset, indices, batch_size, token_bytes, forward_kwargs)
    result = loss_and_bpb(totals)
    if not result:
        raise ConfigError("--tasks", BPB, f"the held-out split has no chunk of {seq_len} tokens to score")
    return {"bpb": result["val/bpb"], "loss": result["val/loss"]}, int(result["val/tokens"])


def resolve_bpb_chunks(spec: int | str | None, cfg: Any) -> int | None:
    """``"run"`` -> the training validation's chunk count, ``"all"``/``None`` -> ``None`` (every chunk), or N."""
    if spec is None or str(spec) == "all":
        return None
    if str(spec) == "run":
        return int(cfg.train.val_batches) * int(cfg.train.micro_batch_size)
    try:
        value = int(spec)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError("--bpb-chunks", spec, "run (the chunks training validated on), all, or a positive count")
    return value


def evaluate_model(
    model: nn.Module,
    tokenizer: Any,
    data: Any,
    cfg: Any,
    step: int,
    tasks: Sequence[str],
    *,
    recurrence: int | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    bpb_chunks: int | str | None = "run",
    metadata: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{result_key: record}`` for one model (one checkpoint): ``bpb`` computed here, the rest by lm-eval.

    ``bpb_chunks``: ``"run"`` = the training validation's chunks, ``"all"`` = the whole split, or a count.
    """
    from parcae_runner.eval.harness import ParcaeLM

    batch_size = batch_size or int(cfg.train.micro_batch_size)
    lm = ParcaeLM(
        model=model,
        tokenizer=tokenizer,
        max_length=int(cfg.data.seq_len),
        checkpoint=step,
        recurrence=recurrence,
        batch_size=batch_size,
        device=str(next(model.parameters()).device),
    )
    common = {"step": step, "checkpoint": f"checkpoint-{step}", "recurrence": recurrence, "limit": limit}
    records: dict[str, dict[str, Any]] = {}
    if BPB in tasks:
        started = time.perf_counter()
        chunks = resolve_bpb_chunks(bpb_chunks, cfg)
        metrics, tokens = bpb_metrics(lm.model, data, int(cfg.data.seq_len), chunks, batch_size, lm.forward_kwargs)
        records[result_key(BPB, recurrence)] = {
            "task": BPB,
            **common,
            "metrics": metrics,
            "chunks": "all" if chunks is None else chunks,
            "tokens": tokens,
            "duration_s": time.perf_counter() - started,
        }
    lm_tasks = [t for t in tasks if t != BPB]
    if lm_tasks:
        import lm_eval
        from lm_eval.evaluator import simple_evaluate

        started = time.perf_counter()
        # lm-eval logs every setting it applies at INFO/WARNING; our progress lines say what matters
        lm_logger = logging.getLogger("lm_eval")
        level = lm_logger.level
        lm_logger.setLevel(logging.ERROR)
        # lm-eval bootstraps standard errors in a forked multiprocessing pool; a fork of a process whose
        # torch/OpenMP threads hold locks (a training process, always) deadlocks: bootstrap in-process
        os.environ.setdefault("DISABLE_MULTIPROC", "1")
        try:
            out = simple_evaluate(
                model=lm,
                tasks=lm_tasks,
                task_manager=task_manager(lm_tasks, metadata),
                limit=limit,
                bootstrap_iters=BOOTSTRAP_ITERS,
                log_samples=False,
            )
        finally:
            lm_logger.setLevel(level)
        took = time.perf_counter() - started
        for name, raw in out["results"].items():
            records[result_key(name, recurrence)] = {
                "task": name,
                **common,
                "metrics": _numeric_metrics(raw),
                "samples": (out.get("n-samples") or {}).get(name),
                "version": (out.get("versions") or {}).get(name),
                "lm_eval_version": lm_eval.__version__,
                "duration_s": took,
            }
    return records


def _recurrences(spec: str | int | None, model: nn.Module) -> list[int | None]:
    if spec is None or spec == "":
        return [None]
    try:
        values = [int(s) for s in str(spec).split(",") if s.strip()]
    except ValueError:
        raise ConfigError("--recurrence", spec, "a positive integer or a comma-separated list, e.g. 1,2,4,8") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError("--recurrence", spec, "a positive integer or a comma-separated list, e.g. 1,2,4,8")
    from parcae_runner.eval.harness import takes_recurrence

    if not takes_recurrence(model):
        name = type(model).__name__
        raise ConfigError("--recurrence", spec, f"only looped models take a recurrence; this run is {name}")
    return list(values)


def evaluate_run(
    run_dir: str | Path,
    tasks: str | Sequence[str],
    checkpoint: int | None = None,
    all_checkpoints: bool = False,
    limit: int | None = None,
    recurrence: str | int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    bpb_chunks: int | str | None = "run",
    download: bool = False,
    wandb: str | None = None,
) -> list[Path]:
    """Evaluate checkpoints of a run (the newest, ``checkpoint``, or all) on ``tasks``; returns the files written.

    ``wandb``: auto (default: offline when the run logged to wandb), offline, online or off; the results are logged
    into the run's own wandb run at each checkpoint's step (eval/wandb_log.py)."""
    from parcae_runner.eval.harness import run_data
    from parcae_runner.eval.wandb_log import EvalLogger, resolve_mode

    rd, cfg, record = open_run(run_dir)
    if all_checkpoints and checkpoint is not None:
        raise ConfigError("--checkpoint", checkpoint, "give --checkpoint N or --all-checkpoints, not both")
    steps = [s for s, _ in list_checkpoints(rd.checkpoints)] if all_checkpoints else []
    steps = steps or [checkpoint_path(rd, checkpoint)[0]]  # raises for a missing or absent checkpoint
    names = parse_tasks(tasks)
    resolve_bpb_chunks(bpb_chunks, cfg)
    if limit is not None and limit < 1:
        raise ConfigError("--limit", limit, "must be a positive number of examples per task")
    wandb_mode = resolve_mode(wandb, cfg)
    go_offline(download)
    check_task_names(names)
    metadata = task_metadata(cfg)
    check_task_data(names, metadata)
    data = run_data(record)
    tokenizer = data.load_tokenizer()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    written: list[Path] = []
    log(f"{rd.path.name}: {len(steps)} checkpoint(s) x {', '.join(names)}", "eval")
    wandb_run = EvalLogger(rd, cfg, record, wandb_mode) if wandb_mode else None
    ok = False
    try:
        for i, step in enumerate(steps, 1):
            started = time.perf_counter()
            model = load_checkpoint_model(rd, cfg, record, checkpoint_path(rd, step)[1]).to(device)
            records: dict[str, dict[str, Any]] = {}
            for r in _recurrences(recurrence, model):
                records |= evaluate_model(
                    model,
                    tokenizer,
                    data,
                    cfg,
                    step,
                    names,
                    recurrence=r,
                    limit=limit,
                    batch_size=batch_size,
                    bpb_chunks=bpb_chunks,
                    metadata=metadata,
                )
            written += write_results(rd, step, records)
            if wandb_run is not None:
                wandb_run.log(step, records)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in flat_metrics(records).items() if "stderr" not in k)
            log(f"checkpoint-{step} ({i}/{len(steps)}, {time.perf_counter() - started:.1f}s): {shown}", "eval")
        ok = True
    finally:
        if wandb_run is not None:
            wandb_run.finish(ok)
    return written
