"""A wheel install (what the container image gets) carries the task files and runs nothing at interpreter start."""

from __future__ import annotations

import site
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PATHS = [str(REPO), *site.getsitepackages()]


def test_wheel_carries_the_task_configs_and_no_start_up_code(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("parcae_runner-*.whl"))).namelist()
    # the top of site-packages holds only the package and its metadata: no .pth, no module beside it
    assert {n.split("/")[0] for n in names} == {"parcae_runner", "parcae_runner-0.1.0.dist-info"}
    assert {"lambada_embedded.yaml", "lambada_embedded_data.py", "parcae_core.yaml"} <= {
        Path(n).name for n in names if "/task_configs/" in n
    }


def test_the_command_line_registers_parcae_lazily():
    code = (
        "import sys; from parcae_runner.eval.lm_eval_cli import register_parcae_model; "
        "assert 'lm_eval' not in sys.modules; register_parcae_model(); register_parcae_model(); "
        "assert 'torch' not in sys.modules; "
        "from lm_eval.api.registry import get_model; "
        "print(get_model('parcae').__name__, get_model('hf').__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {PATHS!r}; {code}"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ParcaeLM HFLM"  # lm-eval's own models are still there
