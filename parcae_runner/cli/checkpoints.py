"""The commands that read a run's checkpoints: export, senses, eval."""

from __future__ import annotations

import argparse
from pathlib import Path

from parcae_runner.config.errors import EXIT_OK
from parcae_runner.util.log import log


def cmd_export(args: argparse.Namespace) -> int:
    from parcae_runner.export.run_export import export_run

    export_run(args.run_dir, args.checkpoint, args.all_checkpoints, args.out, args.format)
    return EXIT_OK


def cmd_senses(args: argparse.Namespace) -> int:
    from parcae_runner.analysis.senses import sense_table

    print("\n".join(sense_table(args.run_dir, args.words, args.top, args.checkpoint)))
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from parcae_runner.eval.tasks import TASKS_DIR

    if args.tasks_dir:
        print(TASKS_DIR)  # for lm_eval --include_path
        return EXIT_OK
    from parcae_runner.config.errors import ConfigError
    from parcae_runner.eval.run_eval import evaluate_run

    if not args.run_dir or not args.tasks:
        usage = "usage: parcae-runner eval <run_dir> --tasks bpb,lambada_embedded"
        raise ConfigError("eval", args.run_dir or "", usage)
    written = evaluate_run(
        args.run_dir,
        args.tasks,
        checkpoint=args.checkpoint,
        all_checkpoints=args.all_checkpoints,
        limit=args.limit,
        recurrence=args.recurrence,
        batch_size=args.batch_size,
        device=args.device,
        bpb_chunks=args.bpb_chunks,
        download=args.download,
        wandb=args.wandb,
    )
    log(f"wrote {len(written)} result files under {Path(args.run_dir) / 'eval'}")
    return EXIT_OK


def add_checkpoint_commands(sub: argparse._SubParsersAction) -> None:
    """export, eval."""
    p = sub.add_parser("export", help="write a run's checkpoint(s) as Hugging Face folders (transformers loads them)")
    p.add_argument("run_dir")
    p.add_argument("--checkpoint", type=int, help="the step to export (default: the newest)")
    p.add_argument("--all-checkpoints", action="store_true", help="one folder per checkpoint, named checkpoint-N")
    p.add_argument("--format", default="hf", help="hf (default) or a weight format the run's architecture declares")
    p.add_argument("--out", help="output folder (default: <run_dir>/hf/checkpoint-N)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("senses", help="backpack runs: each sense's top predicted tokens for each WORD (k rows a word)")
    p.add_argument("run_dir")
    p.add_argument("words", nargs="+", metavar="WORD")
    p.add_argument("--top", type=int, default=8, help="tokens per sense (default 8)")
    p.add_argument("--checkpoint", type=int, help="the step to read (default: the newest)")
    p.set_defaults(func=cmd_senses)

    p = sub.add_parser("eval", help="evaluate a run's checkpoint(s): bpb, lambada_embedded, any lm-eval task")
    p.add_argument("run_dir", nargs="?")
    p.add_argument("--tasks", help="comma-separated: bpb, lambada_embedded, parcae_core, or lm-eval task names")
    p.add_argument("--checkpoint", type=int, help="the step to evaluate (default: the newest)")
    p.add_argument("--all-checkpoints", action="store_true", help="every checkpoint: metric-vs-step curves")
    p.add_argument("--limit", type=int, help="at most this many examples per task (quick looks, not results)")
    p.add_argument("--recurrence", help="looped models: core iterations, one or a list (1,2,4,8)")
    p.add_argument("--batch-size", type=int, help="sequences per forward (default: the run's micro batch)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--bpb-chunks",
        default="run",
        help="bpb over: run = the chunks training validated on (default), all = the whole held-out split, or N",
    )
    p.add_argument("--download", action="store_true", help="let lm-eval download missing task data")
    p.add_argument(
        "--wandb",
        default="auto",
        help="log results into the run's wandb run at each checkpoint's step: auto (offline when the run logged to "
        "wandb; default), offline, online, off",
    )
    p.add_argument("--tasks-dir", action="store_true", help="print our task YAMLs' folder (lm_eval --include_path)")
    p.set_defaults(func=cmd_eval)
