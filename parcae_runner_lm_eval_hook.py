"""Registers the ``parcae`` model with lm-eval-harness, so that ``lm_eval --model parcae`` works.

lm-eval has no plugin entry point for models, so the installed ``parcae_runner_lm_eval.pth`` imports
this module at interpreter start. It must cost nothing there: it only adds an import hook that, once
some program imports ``lm_eval.models`` (where lm-eval registers its own models), registers
``parcae`` as a lazy reference to ``parcae_runner.eval.harness:ParcaeLM``. Nothing is imported
until lm-eval asks for the model.

A wheel install (``pip install .``) puts the ``.pth`` in place (setup.py); an editable install cannot
carry it, so ``make setup`` runs ``python -m parcae_runner_lm_eval_hook``, which writes it.
"""

import sys
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import PathFinder

WATCHED = "lm_eval.models"
MODEL_NAME = "parcae"
TARGET = "parcae_runner.eval.harness:ParcaeLM"


def register() -> None:
    try:
        from lm_eval.api.registry import model_registry

        if MODEL_NAME not in model_registry:
            model_registry.register(MODEL_NAME, target=TARGET)
    except (ImportError, AttributeError, TypeError):
        # an lm-eval without lazy registration: importing the class registers it
        import parcae_runner.eval.harness  # noqa: F401


class _RegisterAfter(Loader):
    def __init__(self, loader: Loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        register()


class _Hook(MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != WATCHED:
            return None
        sys.meta_path.remove(self)  # once is enough
        spec = PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisterAfter(spec.loader)
        return spec


def install() -> None:
    if WATCHED in sys.modules:
        register()
    elif not any(isinstance(f, _Hook) for f in sys.meta_path):
        sys.meta_path.insert(0, _Hook())


def write_pth() -> str:
    """Write ``parcae_runner_lm_eval.pth`` into this interpreter's site-packages (idempotent)."""
    import sysconfig
    from pathlib import Path

    path = Path(sysconfig.get_paths()["purelib"]) / "parcae_runner_lm_eval.pth"
    line = "import parcae_runner_lm_eval_hook\n"
    if not path.exists() or path.read_text() != line:
        path.write_text(line)
    return str(path)


if __name__ == "__main__":
    print(f"lm-eval model 'parcae' registered through {write_pth()}")
else:
    install()
