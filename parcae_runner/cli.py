"""``parcae-runner``: the command line. Exit codes: 0 ok, 2 bad input, 1 failure."""

from __future__ import annotations

import argparse
import sys

from omegaconf import OmegaConf

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def _compose(args: argparse.Namespace):
    from parcae_runner.config import compose_run_config

    return compose_run_config(args.overrides, config_name=args.config_name)


def cmd_train(args: argparse.Namespace) -> int:
    from parcae_runner.train.runner import train

    train(_compose(args))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from parcae_runner.config.validate import validate_run_config

    cfg = _compose(args)
    validate_run_config(cfg)
    print(OmegaConf.to_yaml(cfg, resolve=True), end="")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parcae-runner",
        description="Train and compare language-model architectures.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_overrides(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config-name",
            "-c",
            default="config",
            help="a preset in launch_configs/ (file name without .yaml); default: config",
        )
        p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. arch=pythia size=debug train.max_steps=200")
        return p

    with_overrides(sub.add_parser("train", help="train one model (resumes if its run directory has a checkpoint)"))
    sub.choices["train"].set_defaults(func=cmd_train)
    with_overrides(sub.add_parser("show", help="print the composed, validated config and exit"))
    sub.choices["show"].set_defaults(func=cmd_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    from parcae_runner.config.errors import ConfigError, ConfigErrors
    from parcae_runner.data import DataError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ConfigErrors, DataError) as exc:
        print(f"parcae-runner: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("parcae-runner: interrupted", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
