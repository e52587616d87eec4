"""`show` prints the same composed config for every architecture x size and every preset as it did before the
structure change (tests/config/golden/show.json, written by the code at 65b5c7a). A difference here is a change of
what a run trains: if it is meant, regenerate the file with ``python tests/config/test_show_golden.py --write`` and
say why in the commit."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden" / "show.json"


def _show(argv: list[str]) -> dict:
    from parcae_runner.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    return {"rc": rc, "stdout": out.getvalue()}


def _golden() -> dict:
    return json.loads(GOLDEN.read_text())


CASES = sorted(_golden())


@pytest.mark.parametrize("case", CASES)
def test_show_matches_golden(case: str) -> None:
    expected = _golden()[case]
    got = _show(["show", *case.split()])
    assert got["rc"] == expected["rc"] == 0
    assert got["stdout"] == expected["stdout"]


def test_golden_covers_every_architecture_size_and_preset() -> None:
    from parcae_runner.config.presets import config_dir
    from parcae_runner.models.registry import ARCHITECTURES

    want = {f"arch={name} size={size}" for name, arch in ARCHITECTURES.items() for size in arch.sizes}
    want |= {f"--config {p.stem}" for p in config_dir().glob("*.yaml") if p.stem != "config"}
    assert want == set(CASES)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    from parcae_runner.config.presets import config_dir
    from parcae_runner.models.registry import ARCHITECTURES

    cases = [f"arch={n} size={s}" for n, a in ARCHITECTURES.items() for s in a.sizes]
    cases += [f"--config {p.stem}" for p in config_dir().glob("*.yaml") if p.stem != "config"]
    GOLDEN.write_text(json.dumps({c: _show(["show", *c.split()]) for c in sorted(cases)}, indent=1, sort_keys=True))
