"""Only what pyproject.toml cannot say: install ``parcae_runner_lm_eval.pth`` next to the package,
which registers the ``parcae`` model with lm-eval at interpreter start (see parcae_runner_lm_eval_hook.py)."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "parcae_runner_lm_eval.pth"


class BuildPyWithPth(build_py):
    def run(self) -> None:
        super().run()
        self.copy_file(PTH, str(Path(self.build_lib) / PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH)]

    def get_output_mapping(self) -> dict[str, str]:
        return {**super().get_output_mapping(), str(Path(self.build_lib) / PTH): PTH}


setup(cmdclass={"build_py": BuildPyWithPth})
