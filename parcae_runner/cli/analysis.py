"""The analysis commands: collect, fit, report, wandb-sync, card."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from parcae_runner.cli.runs import sweep_name_args
from parcae_runner.config.errors import EXIT_OK
from parcae_runner.runs.layout import sweep_file
from parcae_runner.runs.record import RUN_FILE
from parcae_runner.util.log import log


def cmd_collect(args: argparse.Namespace) -> int:
    from parcae_runner.analysis.collect import collect

    root = _results_folder(args.sweep, args.results)
    df = collect(root)
    print(
        f"[parcae-runner] {len(df)} rows from {df['run'].nunique() if len(df) else 0} runs -> "
        f"{root / 'results.parquet'} (and .csv)",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_fit(args: argparse.Namespace) -> int:
    from parcae_runner.analysis.scaling import fit_sweep

    root = _results_folder(args.sweep, args.results)
    fits = fit_sweep(root, n_boot=args.n_boot)
    print(json.dumps(fits, indent=2, default=str))
    log(f"wrote {root / 'fits.json'}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from parcae_runner.analysis.collect import collect
    from parcae_runner.analysis.report import build_report
    from parcae_runner.distill.report import collect as distill_runs
    from parcae_runner.distill.report import write_report

    root = _results_folder(args.sweep, args.results)
    if distill_runs(root):  # a distillation sweep: held-out KL against step per norm
        log(f"report: {(write_report(root) / 'distill.md').resolve()}")
        return EXIT_OK
    index = build_report(root, collect(root))
    log(f"report: {index.resolve()}")
    return EXIT_OK


def cmd_wandb_sync(args: argparse.Namespace) -> int:
    from parcae_runner.analysis.wandb_sync import sync_sweep

    root = _results_folder(args.sweep, args.results)
    sync_sweep(root, dry_run=args.dry_run)
    if args.workspace:
        from parcae_runner.analysis.wandb_workspace import save_workspace

        save_workspace(root, root.name, dry_run=args.dry_run)
    return EXIT_OK


def cmd_card(args: argparse.Namespace) -> int:
    from parcae_runner.analysis.card import write_card

    log(f"wrote {write_card(Path(args.run_dir))}")
    return EXIT_OK


def _results_folder(name: str, results: str) -> Path:
    """A sweep's results folder (with sweep.json) or any folder of run directories."""
    from parcae_runner.config.errors import ConfigError

    for candidate in (Path(name), Path(results) / name):
        if candidate.is_dir() and (any(candidate.glob(f"*/{RUN_FILE}")) or sweep_file(candidate).exists()):
            return candidate
    raise ConfigError("sweep", name, f"no run directories in {name} or {Path(results) / name}")


def add_analysis_commands(sub: argparse._SubParsersAction) -> None:
    """collect, fit, report, wandb-sync, card."""
    sweep_name_args(
        sub.add_parser("collect", help="gather a sweep's run directories into results.parquet/.csv")
    ).set_defaults(func=cmd_collect)
    p = sweep_name_args(
        sub.add_parser("fit", help="scaling-law fits (Chinchilla approaches 2 and 3, recurrence) -> fits.json")
    )
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples for confidence intervals")
    p.set_defaults(func=cmd_fit)

    sweep_name_args(
        sub.add_parser("report", help="HTML comparison report with plots -> results/<sweep>/report/index.html")
    ).set_defaults(func=cmd_report)
    p = sweep_name_args(sub.add_parser("wandb-sync", help="upload a sweep's offline wandb runs (skips those uploaded)"))
    p.add_argument("--dry-run", action="store_true", help="say what would be uploaded, upload nothing")
    p.add_argument(
        "--workspace",
        action="store_true",
        help="also save the sweep's dashboard (needs wandb-workspaces); offline or --dry-run: write its "
        "specification, <sweep>/wandb-workspace.json",
    )
    p.set_defaults(func=cmd_wandb_sync)
    p = sub.add_parser("card", help="(re)write a run's model card, card.md")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_card)
