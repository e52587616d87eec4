"""``parcae-runner``: the command line. Exit codes: 0 ok, 2 bad input, 1 failure."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from omegaconf import OmegaConf

from parcae_runner.config.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK
from parcae_runner.config.presets import resolve_config_arg
from parcae_runner.runs.layout import sweep_file
from parcae_runner.runs.record import RUN_FILE, RunStatus
from parcae_runner.util.log import log


def _compose(args: argparse.Namespace):
    from parcae_runner.config import compose_run_config

    return compose_run_config(args.overrides, config_name=resolve_config_arg(args.config_name))


def cmd_train(args: argparse.Namespace) -> int:
    from parcae_runner.train.preflight import check_trainable, validate

    cfg = _compose(args)
    # bad values are refused before the trainer is imported (Lightning alone takes seconds to import);
    # train() checks them again, for callers that come in another way
    validate(cfg)
    check_trainable(cfg)
    from parcae_runner.jobs import train_run

    train_run(cfg)
    return EXIT_OK


def cmd_prepare(args: argparse.Namespace) -> int:
    from parcae_runner.launch.prepare_job import prepare_command
    from parcae_runner.train.preflight import validate

    cfg = _compose(args)
    validate(cfg)
    print(prepare_command(cfg))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from parcae_runner.models.flops import budget_source
    from parcae_runner.train.preflight import validate

    cfg = _compose(args)
    validate(cfg)
    print(OmegaConf.to_yaml(cfg, resolve=True), end="")
    print(f"# {budget_source(cfg)}")
    return EXIT_OK


def cmd_launch(args: argparse.Namespace) -> int:
    import shlex

    from parcae_runner.launch.resources import submit
    from parcae_runner.runs import RunDirectory
    from parcae_runner.train.preflight import validate

    cfg = _compose(args)
    validate(cfg)
    cmd, job = submit(cfg, args.config_name, args.overrides)
    print(f"CONFIG={shlex.quote(args.config_name)} {shlex.join(cmd)}")
    print(f"[parcae-runner] submitted Slurm job {job}; run directory {RunDirectory.for_config(cfg).path}")
    return EXIT_OK


def _plan(args: argparse.Namespace):
    from parcae_runner.launch.plan import format_plan, plan_sweep
    from parcae_runner.launch.sweep_file import load_sweep

    sweep = load_sweep(args.sweep_file, args.variant)
    planned = plan_sweep(sweep, args.overrides)
    print(format_plan(sweep, planned))
    return sweep, planned


def cmd_plan(args: argparse.Namespace) -> int:
    _plan(args)
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    from parcae_runner.launch.submit import job_step, launch_sweep

    sweep, planned = _plan(args)
    launch_sweep(sweep, planned, args.overrides, hold=args.hold, job=job_step)
    if args.wait:
        from parcae_runner.launch.plan import results_root

        return _wait_and_summarize(results_root(planned))
    return EXIT_OK


def _wait_and_summarize(root: Path, poll_s: float = 10.0) -> int:
    """Poll the sweep until no run is queued or running; print the status and the study's table."""
    import time

    from parcae_runner.analysis.summary import format_sweep_table
    from parcae_runner.launch.status import format_rows, run_rows
    from parcae_runner.runs.record import ACTIVE

    last = None
    while True:
        rows = run_rows(root)
        busy = [r for r in rows if r["in_queue"] or r["status"] in ACTIVE]
        progress = f"{sum(r['status'] == RunStatus.DONE for r in rows)}/{len(rows)} done, {len(busy)} queued or running"
        if progress != last:
            log(f"{root.name}: {progress}")
            last = progress
        if not busy:
            break
        time.sleep(poll_s)
    print(format_rows(root.name, rows))
    print(format_sweep_table(root))
    return EXIT_OK if all(r["status"] == RunStatus.DONE for r in rows) else EXIT_FAILURE


def _sweep_root(name: str, results: str) -> Path:
    """A sweep given by name (results/<name>) or by its results folder."""
    from parcae_runner.config.errors import ConfigError

    for candidate in (Path(name), Path(results) / name):
        if sweep_file(candidate).is_file():
            return candidate
    raise ConfigError(
        "sweep",
        name,
        f"no sweep.json in {name} or {Path(results) / name}; launch it with "
        "`parcae-runner sweep sweeps/<study>.yaml` first",
    )


def cmd_status(args: argparse.Namespace) -> int:
    from parcae_runner.launch.status import format_rows, run_rows

    root = _sweep_root(args.sweep, args.results)
    rows = run_rows(root)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_rows(root.name, rows))
        if rows and all(r["status"] == RunStatus.DONE for r in rows):
            from parcae_runner.analysis.summary import format_sweep_table

            print(format_sweep_table(root))
    return EXIT_OK


def cmd_resubmit(args: argparse.Namespace) -> int:
    from parcae_runner.launch.plan import plan_sweep
    from parcae_runner.launch.status import needs_resubmit, run_rows
    from parcae_runner.launch.submit import job_step, launch_sweep
    from parcae_runner.launch.sweep_file import load_sweep
    from parcae_runner.runs import SweepRecord

    root = _sweep_root(args.sweep, args.results)
    record = SweepRecord.read(root)
    rows = run_rows(root)
    only = {r["run"] for r in rows if needs_resubmit(r)} if args.failed else {r["run"] for r in rows}
    if not only:
        log(f"nothing to resubmit in {root.name}")
        return EXIT_OK
    extra = record.overrides + args.overrides
    sweep = load_sweep(record.file_path, record.variant)
    launch_sweep(sweep, plan_sweep(sweep, extra), extra, only=only, job=job_step)
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    from parcae_runner.launch.status import cancel

    ids = cancel(_sweep_root(args.sweep, args.results))
    print(f"[parcae-runner] cancelled {len(ids)} jobs: {' '.join(ids)}" if ids else "[parcae-runner] no queued jobs")
    return EXIT_OK


def cmd_distill(args: argparse.Namespace) -> int:
    if args.sweep:
        from parcae_runner.distill.sweep import run_sweep

        print(run_sweep(args.sweep, args.variant, args.overrides))
        return EXIT_OK
    from parcae_runner.distill.config import load_config
    from parcae_runner.distill.pipeline import distill

    print(distill(load_config(args.overrides)))
    return EXIT_OK


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


def _with_overrides(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument(
        "--config-name",
        "-c",
        default="config",
        help="a preset in launch_configs/ (file name without .yaml); default: config",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. arch=pythia size=debug train.max_steps=200")
    return p


def _sweep_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("sweep_file", help="a sweep file, e.g. sweeps/parc.yaml")
    p.add_argument("--variant", help="a variant of the sweep file, e.g. demo")
    p.add_argument("overrides", nargs="*", help="overrides for every point, e.g. cluster=slurm_local")
    return p


def _sweep_name(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("sweep", help="sweep name (results/<name>) or its results folder")
    p.add_argument("--results", default="results", help="results root (default: results)")
    return p


def _add_run_commands(sub: argparse._SubParsersAction) -> None:
    """train, show, plan, sweep, status, resubmit, cancel."""
    _with_overrides(sub.add_parser("train", help="train one model (resumes if its run directory has a checkpoint)"))
    sub.choices["train"].set_defaults(func=cmd_train)
    _with_overrides(
        sub.add_parser("prepare", help="tokenise the data of a config once (cluster=slurm_*: as a CPU job)")
    ).set_defaults(func=cmd_prepare)
    _with_overrides(sub.add_parser("show", help="print the composed, validated config and exit"))
    sub.choices["show"].set_defaults(func=cmd_show)
    p = sub.add_parser("launch", help="sbatch launch_job.slurm with the cluster profile's resources (one run)")
    p.add_argument("--config", "--config-name", "-c", dest="config_name", default="config", help="a preset or its file")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. cluster=slurm_a100 train.max_steps=200")
    p.set_defaults(func=cmd_launch)

    _sweep_args(sub.add_parser("plan", help="expand and validate a sweep, estimate its cost; submit nothing"))
    sub.choices["plan"].set_defaults(func=cmd_plan)
    p = _sweep_args(sub.add_parser("sweep", help="plan, then submit the sweep (one Slurm job array, or local runs)"))
    p.add_argument("--hold", action="store_true", help="submit the array held (release with scontrol release)")
    p.add_argument("--wait", action="store_true", help="wait for the runs, then print the status and result tables")
    p.set_defaults(func=cmd_sweep)

    p = _sweep_name(sub.add_parser("status", help="one table of a sweep's runs: Slurm state, step, loss, ETA, kWh"))
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_status)
    p = _sweep_name(sub.add_parser("resubmit", help="submit a sweep's runs again (they resume)"))
    p.add_argument("--failed", action="store_true", help="only runs that failed, were cancelled or were lost")
    p.add_argument("overrides", nargs="*", help="extra overrides")
    p.set_defaults(func=cmd_resubmit)
    _sweep_name(sub.add_parser("cancel", help="scancel every queued job of a sweep")).set_defaults(func=cmd_cancel)


def _add_analysis_commands(sub: argparse._SubParsersAction) -> None:
    """collect, fit, report, wandb-sync, card."""
    _sweep_name(
        sub.add_parser("collect", help="gather a sweep's run directories into results.parquet/.csv")
    ).set_defaults(func=cmd_collect)
    p = _sweep_name(
        sub.add_parser("fit", help="scaling-law fits (Chinchilla approaches 2 and 3, recurrence) -> fits.json")
    )
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples for confidence intervals")
    p.set_defaults(func=cmd_fit)

    _sweep_name(
        sub.add_parser("report", help="HTML comparison report with plots -> results/<sweep>/report/index.html")
    ).set_defaults(func=cmd_report)
    p = _sweep_name(sub.add_parser("wandb-sync", help="upload a sweep's offline wandb runs (skips those uploaded)"))
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


def _add_checkpoint_commands(sub: argparse._SubParsersAction) -> None:
    """export, eval."""
    p = sub.add_parser("export", help="write a run's checkpoint(s) as Hugging Face folders (transformers loads them)")
    p.add_argument("run_dir")
    p.add_argument("--checkpoint", type=int, help="the step to export (default: the newest)")
    p.add_argument("--all-checkpoints", action="store_true", help="one folder per checkpoint, named checkpoint-N")
    p.add_argument("--format", default="hf", help="hf (default) or blinkdl (rwkv7: a .pth for the rwkv package)")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parcae-runner",
        description="Train and compare language-model architectures.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_commands(sub)
    _add_analysis_commands(sub)
    _add_checkpoint_commands(sub)
    p = sub.add_parser("distill", help="distil a GQA transformer teacher into an RWKV-7 TimeMix student (cxa076)")
    p.add_argument("--sweep", help="a sweep file (sweeps/distill.yaml): run its grid, then the report")
    p.add_argument("--variant", help="a variant of the sweep file (demo)")
    p.add_argument("overrides", nargs="*", help="distill overrides, e.g. teacher=<hf folder> norm=none seed=1")
    p.set_defaults(func=cmd_distill)
    return parser


def main(argv: list[str] | None = None) -> int:
    from parcae_runner.config.errors import ClusterRefused, ConfigError, ConfigErrors, RunStopped
    from parcae_runner.data import DataError

    if not sys.stderr.isatty():
        # in a log file (Slurm, a local sweep) lm-eval's carriage-return bars are noise: our own progress
        # is one plain line per event. tqdm reads this when it is first imported, which is later.
        os.environ.setdefault("TQDM_DISABLE", "1")
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


if __name__ == "__main__":
    sys.exit(main())
