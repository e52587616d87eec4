"""`parcae-runner lm-eval`: lm-eval's own CLI runs the `parcae` model and this package's tasks, with nothing run at
interpreter start (no `.pth`): the child processes here start with `python -S`, so no site `.pth` file is read."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

from parcae_runner.eval.lm_eval_cli import lm_eval_argv
from parcae_runner.eval.tasks import TASKS_DIR
from tests.eval.conftest import STEPS

REPO = Path(__file__).resolve().parents[2]
# the package and the environment's site-packages on the path, without site's processing of .pth files
PATHS = [str(REPO), *site.getsitepackages()]
OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


def _bare_python(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {PATHS!r}; {code}", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **OFFLINE},
        cwd=cwd,
    )


def test_lm_eval_alone_does_not_know_parcae():
    out = _bare_python(
        "import lm_eval.models; from lm_eval.api.registry import model_registry; print('parcae' in model_registry)"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_lm_eval_cli_runs_the_parcae_model_on_the_offline_task(trained_run, tmp_path):
    args = ["lm-eval", "--model", "parcae", "--model_args", f"run={trained_run},checkpoint={STEPS}"]
    args += ["--tasks", "lambada_embedded", "--limit", "40", "--batch_size", "8"]
    args += ["--output_path", str(tmp_path / "out")]
    out = _bare_python("from parcae_runner.cli import main; sys.exit(main(sys.argv[1:]))", *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    task = results["results"]["lambada_embedded"]
    assert 0.0 <= task["acc,none"] <= 1.0 and task["perplexity,none"] > 1
    assert results["n-samples"]["lambada_embedded"]["effective"] == 40


def test_lm_eval_cli_errors_keep_lm_eval_exit_code(tmp_path):
    out = _bare_python("from parcae_runner.cli import main; sys.exit(main(sys.argv[1:]))", "lm-eval", "--no-such-flag")
    assert out.returncode == 2
    assert "--no-such-flag" in out.stderr


def test_our_task_folder_is_added_unless_an_include_path_or_help_is_given():
    run = ["--model", "parcae", "--tasks", "bpb"]
    assert lm_eval_argv(run) == [*run, "--include_path", str(TASKS_DIR)]
    assert lm_eval_argv([*run, "--include_path", "mine"]) == [*run, "--include_path", "mine"]
    assert lm_eval_argv([*run, "--include_path=mine"]) == [*run, "--include_path=mine"]
    assert lm_eval_argv(["run", "--help"]) == ["run", "--help"]
    assert lm_eval_argv([]) == []
