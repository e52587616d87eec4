"""The run commands: train, prepare, show, launch, plan, sweep, status, resubmit, cancel.

``train``, ``launch``, ``sweep`` and ``resubmit`` run the preflight (:mod:`parcae_runner.train.preflight`) before
anything is trained, written or submitted: a run ``train`` would refuse is refused here, exit 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from parcae_runner.config.errors import EXIT_FAILURE, EXIT_OK, ConfigError
from parcae_runner.config.presets import resolve_config_arg
from parcae_runner.runs.layout import sweep_file
from parcae_runner.runs.record import RunStatus
from parcae_runner.util.log import log

if TYPE_CHECKING:
    from parcae_runner.train.preflight import Stage


def _compose(args: argparse.Namespace):
    from parcae_runner.config import compose_run_config

    return compose_run_config(args.overrides, config_name=resolve_config_arg(args.config_name))


def cmd_train(args: argparse.Namespace) -> int:
    from parcae_runner.train.preflight import preflight

    cfg = _compose(args)
    # bad values and sizes are refused before the trainer is imported (Lightning alone takes seconds to import);
    # train() runs the whole "train" stage, for callers that come in another way too
    preflight(cfg, "job")
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
    if cfg.cluster.get("gpu_memory_gb") is not None:
        print(f"# memory: {_memory_line(cfg)}")
    return EXIT_OK


def _memory_line(cfg) -> str:
    """``show``'s one comment line on a GPU profile: the total per GPU and whether it fits (``plan`` prints every
    term, and refuses what does not fit; ``show`` shows the config as it is)."""
    from parcae_runner.data.published import tokenizer_vocab
    from parcae_runner.train.memory_fit import memory_fit

    vocab = tokenizer_vocab(OmegaConf.to_object(cfg.data))  # type: ignore[arg-type]
    if vocab is None:
        return f"per GPU once data.tokenizer={cfg.data.tokenizer} is in the cache (or data.vocab_size is set)"
    return memory_fit(cfg, vocab).summary()


def cmd_launch(args: argparse.Namespace) -> int:
    import shlex

    from parcae_runner.launch.resources import submit
    from parcae_runner.runs import RunDirectory
    from parcae_runner.train.preflight import preflight

    cfg = _compose(args)
    # what the node would refuse is refused here, before sbatch: not after a day in the queue
    preflight(cfg, "submit")
    cmd, job = submit(cfg, args.config_name, args.overrides)
    print(f"CONFIG={shlex.quote(args.config_name)} {shlex.join(cmd)}")
    print(f"[parcae-runner] submitted Slurm job {job}; run directory {RunDirectory.for_config(cfg).path}")
    return EXIT_OK


def _plan(args: argparse.Namespace, stage: Stage = "plan"):
    from parcae_runner.launch.plan import format_plan, plan_sweep
    from parcae_runner.launch.sweep_file import load_sweep

    sweep = load_sweep(args.sweep_file, args.variant)
    planned = plan_sweep(sweep, args.overrides, stage=stage)
    print(format_plan(sweep, planned))
    return sweep, planned


def cmd_plan(args: argparse.Namespace) -> int:
    _plan(args)
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    from parcae_runner.launch.submit import job_step, launch_sweep

    sweep, planned = _plan(args, stage="submit")
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
    if record.file_path is None:
        raise ConfigError("SWEEP", root.name, "a sweep directory whose sweep.json names its sweep file")
    sweep = load_sweep(record.file_path, record.variant)
    launch_sweep(sweep, plan_sweep(sweep, extra, stage="submit"), extra, only=only, job=job_step)
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    from parcae_runner.launch.status import cancel

    ids = cancel(_sweep_root(args.sweep, args.results))
    print(f"[parcae-runner] cancelled {len(ids)} jobs: {' '.join(ids)}" if ids else "[parcae-runner] no queued jobs")
    return EXIT_OK


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


def sweep_name_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("sweep", help="sweep name (results/<name>) or its results folder")
    p.add_argument("--results", default="results", help="results root (default: results)")
    return p


def add_run_commands(sub: argparse._SubParsersAction) -> None:
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

    p = sweep_name_args(sub.add_parser("status", help="one table of a sweep's runs: Slurm state, step, loss, ETA, kWh"))
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_status)
    p = sweep_name_args(sub.add_parser("resubmit", help="submit a sweep's runs again (they resume)"))
    p.add_argument("--failed", action="store_true", help="only runs that failed, were cancelled or were lost")
    p.add_argument("overrides", nargs="*", help="extra overrides")
    p.set_defaults(func=cmd_resubmit)
    sweep_name_args(sub.add_parser("cancel", help="scancel every queued job of a sweep")).set_defaults(func=cmd_cancel)
