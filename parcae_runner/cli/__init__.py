"""``parcae-runner``: the command line. Exit codes: 0 ok, 2 bad input, 1 failure.

The commands live in groups: :mod:`~parcae_runner.cli.runs` (train, launch, plan, sweep, ...),
:mod:`~parcae_runner.cli.analysis` (collect, fit, report, ...) and :mod:`~parcae_runner.cli.checkpoints`
(export, senses, eval); distill and the lm-eval pass-through are here.
"""

from __future__ import annotations

import argparse
import os
import sys

from parcae_runner.cli.analysis import add_analysis_commands
from parcae_runner.cli.checkpoints import add_checkpoint_commands
from parcae_runner.cli.runs import add_run_commands
from parcae_runner.config.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK
from parcae_runner.eval.lm_eval_cli import COMMAND as LM_EVAL
from parcae_runner.eval.lm_eval_cli import run_lm_eval


def cmd_distill(args: argparse.Namespace) -> int:
    if args.sweep:
        from parcae_runner.distill.sweep import run_sweep

        print(run_sweep(args.sweep, args.variant, args.overrides))
        return EXIT_OK
    from parcae_runner.distill.config import load_config
    from parcae_runner.distill.pipeline import distill

    print(distill(load_config(args.overrides)))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parcae-runner",
        description="Train and compare language-model architectures.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run_commands(sub)
    add_analysis_commands(sub)
    add_checkpoint_commands(sub)
    p = sub.add_parser("distill", help="distil a GQA transformer teacher into an RWKV-7 TimeMix student (cxa076)")
    p.add_argument("--sweep", help="a sweep file (sweeps/distill.yaml): run its grid, then the report")
    p.add_argument("--variant", help="a variant of the sweep file (demo)")
    p.add_argument("overrides", nargs="*", help="distill overrides, e.g. teacher=<hf folder> norm=none seed=1")
    p.set_defaults(func=cmd_distill)
    sub.add_parser(LM_EVAL, add_help=False, help="lm-eval's own CLI with the parcae model and this package's tasks")
    return parser


def main(argv: list[str] | None = None) -> int:
    from parcae_runner.config.errors import ClusterRefused, ConfigError, ConfigErrors, RunStopped
    from parcae_runner.data import DataError

    if not sys.stderr.isatty():
        # in a log file (Slurm, a local sweep) lm-eval's carriage-return bars are noise: our own progress
        # is one plain line per event. tqdm reads this when it is first imported, which is later.
        os.environ.setdefault("TQDM_DISABLE", "1")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [LM_EVAL]:
        return run_lm_eval(argv[1:])
    parser = build_parser()
    # overrides may come before or after options (`sweep sweeps/x.yaml cluster=slurm_local --hold`)
    args, rest = parser.parse_known_args(argv)
    if rest:
        if not hasattr(args, "overrides") or any(r.startswith("-") for r in rest):
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        args.overrides = [*args.overrides, *rest]
    try:
        return args.func(args)
    except (ConfigError, ConfigErrors, DataError) as exc:
        print(f"parcae-runner: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunStopped as exc:
        print(f"parcae-runner: run stopped: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except ClusterRefused as exc:
        print(f"parcae-runner: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("parcae-runner: interrupted", file=sys.stderr)
        return EXIT_FAILURE
