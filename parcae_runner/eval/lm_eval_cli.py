"""``parcae-runner lm-eval ...``: lm-eval's own command line, with the ``parcae`` model and this package's tasks.

    parcae-runner lm-eval --model parcae --model_args run=results/parc-demo/pythia-debug-s0 --tasks lambada_embedded

lm-eval finds models in its registry, and has no plugin entry point that would fill it from an installed package.
Rather than run code at every interpreter start (a ``.pth`` file), this command registers ``parcae`` (lazily: the
model's module, and with it torch, is imported only when lm-eval asks for the model), adds ``--include_path`` of
``parcae_runner/eval/task_configs/`` unless one is given, and hands the remaining arguments to lm-eval's CLI
unchanged, so every lm-eval subcommand and flag works as documented by lm-eval. In Python, importing
``parcae_runner.eval.harness`` registers the model too.
"""

from __future__ import annotations

import sys

from parcae_runner.eval.tasks import TASKS_DIR

COMMAND = "lm-eval"
MODEL_NAME = "parcae"
MODEL_TARGET = "parcae_runner.eval.harness:ParcaeLM"
INCLUDE_PATH = "--include_path"


def register_parcae_model() -> None:
    """Register ``parcae`` in lm-eval's model registry (idempotent; a lazy ``module:Class`` reference)."""
    # lm-eval fills its registry with its own models only while the registry is empty: let it, before ours
    import lm_eval.models  # noqa: F401
    from lm_eval.api.registry import model_registry

    # a second registration of another object under the same name raises, so look first
    if MODEL_NAME not in model_registry:
        model_registry.register(MODEL_NAME, target=MODEL_TARGET)


def lm_eval_argv(args: list[str]) -> list[str]:
    """The arguments for lm-eval's CLI: ``args`` plus our task folder, unless help or an include path is asked."""
    asks_help = not args or "-h" in args or "--help" in args
    if asks_help or any(a == INCLUDE_PATH or a.startswith(f"{INCLUDE_PATH}=") for a in args):
        return list(args)
    return [*args, INCLUDE_PATH, str(TASKS_DIR)]


def run_lm_eval(args: list[str]) -> int:
    """Run lm-eval's CLI on ``args`` in this process with ``parcae`` registered; returns its exit code."""
    register_parcae_model()
    from lm_eval.__main__ import cli_evaluate

    # lm-eval's CLI parses sys.argv itself (and inserts its default `run` subcommand there)
    saved = sys.argv
    sys.argv = [COMMAND, *lm_eval_argv(args)]
    try:
        cli_evaluate()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    finally:
        sys.argv = saved
    return 0
