"""A wheel install (what the container image gets) carries the lm-eval registration and the task files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_carries_the_pth_hook_and_task_configs(tmp_path):
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
    assert "parcae_runner_lm_eval.pth" in names  # at the top of site-packages, where .pth files are read
    assert "parcae_runner_lm_eval_hook.py" in names
    assert {"lambada_embedded.yaml", "lambada_embedded_data.py", "parcae_core.yaml"} <= {
        Path(n).name for n in names if "/task_configs/" in n
    }


def test_hook_registers_parcae_only_when_lm_eval_loads_its_models():
    code = (
        "import sys; import parcae_runner_lm_eval_hook as h; "
        "assert 'lm_eval' not in sys.modules and 'torch' not in sys.modules; "
        "from lm_eval.api.registry import get_model; "
        "print(get_model('parcae').__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ParcaeLM"
