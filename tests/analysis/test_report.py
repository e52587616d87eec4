"""The sweep report: a self-contained folder whose page renders in a real browser without errors, whose
images all load, and whose table numbers are the results table's, exactly."""

from __future__ import annotations

import json
import math
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from parcae_runner.analysis.report import SELF_CHECK_JS, build_report, final_runs

# headless, and nothing that reaches the network or leaves state behind (a fresh profile per call)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# ------------------------------------------------------------------------------------------------- helpers


class Page(HTMLParser):
    """The parts of a report page a test checks: <body> attributes, images, links and tables.

    ``tables[id]`` is a list of rows; a row maps ``data-col`` to ``(data-value or None, cell text)``.
    """

    def __init__(self, text: str):
        super().__init__()
        self.body: dict[str, str] = {}
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.tables: dict[str, list[dict[str, tuple[str | None, str]]]] = {}
        self._table: str | None = None
        self._row: dict | None = None
        self._cell: tuple[str, str | None] | None = None
        self._text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        elif tag == "img":
            self.images.append(a)
        elif tag in ("a", "link", "script") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src"))
        elif tag == "table":
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = {}
        elif tag == "td" and self._row is not None:
            self._cell = (a["data-col"], a.get("data-value"))
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._cell:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell:
            self._row[self._cell[0]] = (self._cell[1], "".join(self._text))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row:  # header rows have no <td>
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def value(cell: tuple[str | None, str]) -> float:
    return float(cell[0])


def same(a: float, b: float) -> bool:
    """Exactly equal, NaN equal to NaN."""
    return (math.isnan(a) and math.isnan(b)) or a == b


def check_static(report: Path) -> Page:
    """Checks that need no browser: every image is a file in the folder with its true size and alt text,
    nothing points outside the folder, and every numeric cell shows its own data-value."""
    page = Page((report / "index.html").read_text())
    assert page.images, "the report has no plots"
    assert sorted(i["src"] for i in page.images) == sorted(p.name for p in report.glob("*.png"))
    for img in page.images:
        assert "/" not in img["src"] and img["alt"].strip()
        assert png_size(report / img["src"]) == (int(img["width"]), int(img["height"]))
    assert all(link.startswith("#") for link in page.links), page.links  # offline: no CDN, no other folder
    for rows in page.tables.values():
        for row in rows:
            for raw, text in row.values():
                if raw is None or not math.isfinite(float(raw)):
                    continue
                shown = float(text.replace(",", ""))
                assert math.isclose(shown, float(raw), rel_tol=1e-3, abs_tol=5e-5), (text, raw)
    return page


def chromium_run(chromium: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    return subprocess.run(
        [str(chromium), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def browser_check(chromium: Path, tmp_path: Path, index: Path) -> tuple[Page, list[str]]:
    """Load ``index`` in headless Chromium; returns the DOM after the load event and the console lines.

    Two independent channels, because neither sees everything:
    - the page's own self-check script (``SELF_CHECK_JS``) records uncaught errors and failed resource loads
      (an <img> error does not reach the console log) and, after the load event, whether every image decoded,
      as data-* attributes of <body>; ``--dump-dom`` prints the DOM after the load event;
    - ``--enable-logging=stderr --v=0`` makes Chromium log every console message (this build logs them all,
      errors included, as ``INFO:CONSOLE``); the report logs nothing, so any console line is a failure.
    """
    # --virtual-time-budget: Chromium runs the page's pending work (decoding, timers) before it dumps the DOM
    logging = ["--enable-logging=stderr", "--v=0"]
    out = chromium_run(chromium, tmp_path, *logging, "--virtual-time-budget=5000", "--dump-dom", index.as_uri())
    assert out.returncode == 0, out.stderr[-3000:]
    console = [line for line in out.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return Page(out.stdout), console


# --------------------------------------------------------------------------------------------------- tests


def test_browser_check_catches_errors_and_broken_images(chromium, tmp_path):
    """The negative control: the detection above flags a script error and a missing image on this Chromium."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "index.html").write_text(
        f"<!DOCTYPE html><html><head><script>{SELF_CHECK_JS}</script></head><body>"
        '<img src="missing.png" width="10" height="10" alt="x"><script>undefinedFunction();</script></body></html>'
    )
    page, console = browser_check(chromium, tmp_path, bad / "index.html")
    assert page.body["data-images-ok"] == "false"
    assert json.loads(page.body["data-images-bad"]) == ["missing.png"]
    errors = json.loads(page.body["data-errors"])
    assert any("undefinedFunction" in e for e in errors) and any("missing.png" in e for e in errors)
    assert any("undefinedFunction" in line for line in console)


def train_demo_sweep(fast_overrides: list[str]) -> Path:
    """The demo sweep: 2 architectures x 2 seeds, metered, evaluated every 5 steps; returns its folder."""
    from parcae_runner.config import compose_run_config
    from parcae_runner.train.runner import train

    base = [o for o in fast_overrides if not o.startswith("arch=")]
    base += [
        "sweep=demo",
        "train.max_steps=10",
        "train.val_interval=5",
        "train.val_batches=2",
        "logger.codecarbon=true",
    ]
    for arch in ("pythia", "mamba"):
        for seed in (0, 1):
            train(compose_run_config([*base, f"arch={arch}", f"seed={seed}"]))
    return Path(next(o for o in fast_overrides if o.startswith("results_dir=")).split("=", 1)[1]) / "demo"


def check_screenshot(chromium: Path, tmp_path: Path, index: Path) -> None:
    """A screenshot of the whole page is not blank."""
    from matplotlib.image import imread

    shot = tmp_path / "report.png"
    out = chromium_run(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", index.as_uri())
    assert out.returncode == 0 and shot.exists(), out.stderr[-3000:]
    assert png_size(shot) == (1280, 4000)
    pixels = imread(shot)[..., :3]
    assert (pixels < 0.9).any(axis=-1).mean() > 0.02, "the screenshot is (almost) all white"
    assert len(np.unique(pixels.reshape(-1, 3)[::97], axis=0)) > 50, "the screenshot has hardly any colours"


def check_run_rows(page: Page, finals: pd.DataFrame, runs: dict[str, dict]) -> None:
    """The per-run energy table holds every run with the results table's numbers, which are run.json's."""
    rows = page.tables["energy-runs"]
    assert sorted(r["run"][1] for r in rows) == sorted(runs)
    for row in rows:
        name = row["run"][1]
        expected = finals.loc[name]
        for col in ("seed", "step", "tokens", "duration_s", "energy_kwh", "co2_kg", "tokens_per_kwh", "val_loss"):
            assert same(value(row[col]), float(expected[col])), (name, col)
        # and the table is the run directory's: run.json is the source of truth
        run = runs[name]
        assert value(row["val_loss"]) == run["final_val_loss"]
        assert value(row["energy_kwh"]) == run["energy_kwh"] > 0
        assert value(row["co2_kg"]) == run["co2_kg"]
        assert value(row["tokens_per_kwh"]) == run["tokens"] / run["energy_kwh"]


def check_group_rows(page: Page, finals: pd.DataFrame, runs: dict[str, dict]) -> None:
    """The per-architecture tables (final loss, seed variance, energy) are the results table's groups."""
    groups = finals.groupby(["arch", "size"])
    rows = page.tables["final-loss"]
    assert sorted((r["arch"][1], r["size"][1]) for r in rows) == [("mamba", "debug"), ("pythia", "debug")]
    for row in rows:
        key = (row["arch"][1], row["size"][1])
        losses = groups.get_group(key)["val_loss"]
        from_runs = [r["final_val_loss"] for r in runs.values() if (r["arch"], r["size"]) == key]
        assert value(row["n"]) == len(losses) == 2
        assert value(row["min"]) == losses.min() == min(from_runs)
        assert value(row["max"]) == losses.max() == max(from_runs)
        assert value(row["mean"]) == losses.mean() == pytest.approx(np.mean(from_runs), rel=1e-12)
        assert value(row["std"]) == losses.std() == pytest.approx(np.std(from_runs, ddof=1), rel=1e-9)
        assert value(row["params"]) == groups.get_group(key)["params"].median()
    for row in page.tables["seed-variance"]:
        losses = groups.get_group((row["arch"][1], row["size"][1]))["val_loss"]
        assert value(row["variance"]) == losses.std() ** 2 == pytest.approx(losses.var(), rel=1e-12)
        assert value(row["range"]) == losses.max() - losses.min()
    for row in page.tables["energy-arch"]:
        g = groups.get_group((row["arch"][1], row["size"][1]))
        assert value(row["runs"]) == len(g)
        assert value(row["energy_kwh_total"]) == g["energy_kwh"].sum()
        assert value(row["co2_kg_total"]) == g["co2_kg"].sum()
        assert value(row["tokens_per_kwh"]) == g["tokens"].sum() / g["energy_kwh"].sum()


@pytest.mark.slow
def test_report_of_a_trained_sweep_renders_with_the_tables_numbers(chromium, fast_overrides, tmp_path):
    from parcae_runner.analysis.collect import collect

    sweep_root = train_demo_sweep(fast_overrides)
    index = build_report(sweep_root)
    assert index == sweep_root / "report" / "index.html"
    report = index.parent
    assert not list(sweep_root.glob(".report*")), "the build left its temporary folder"
    static = check_static(report)
    assert {"loss_vs_step.png", "loss_vs_tokens.png", "loss_vs_flops.png", "final_loss.png", "energy.png"} <= {
        i["src"] for i in static.images
    }

    # in the browser: no script error, no console message, every image decoded
    page, console = browser_check(chromium, tmp_path, index)
    assert console == []
    assert json.loads(page.body["data-errors"]) == []
    assert page.body["data-images-ok"] == "true", page.body.get("data-images-bad")
    assert int(page.body["data-images-total"]) == len(static.images)
    check_screenshot(chromium, tmp_path, index)

    # the numbers in the rendered page are the results table's, exactly
    df = collect(sweep_root)  # the table build_report used (the collector's cache returns the same rows)
    finals = final_runs(df).set_index("run")
    runs = {r.name: json.loads((r / "run.json").read_text()) for r in sweep_root.iterdir() if (r / "run.json").exists()}
    assert len(runs) == 4
    check_run_rows(page, finals, runs)
    check_group_rows(page, finals, runs)


def synthetic_sweep() -> pd.DataFrame:
    """A results table with what the demo sweep lacks: a recurrence swept at two FLOP budgets over three sizes
    (isoFLOP), a benchmark metric, and a run name that needs escaping. No training, no browser."""
    rng = np.random.default_rng(0)
    rows = []
    for arch, recurrences in (("looped", (1, 2, 4)), ("pythia", (None,))):
        for budget in (1e15, 1e16):
            for size, n in (("s", 1e6), ("m", 3e6), ("l", 1e7)):
                for r in recurrences:
                    for seed in (0, 1):
                        fpt = 6 * n * (r or 1)
                        best = np.log(3e6) + 0.5 * np.log(budget / 1e15)
                        final = 3 + 0.1 * (np.log(n) - best) ** 2 - 0.02 * (r or 1) + rng.normal(0, 0.01)
                        for frac in (0.0, 0.5, 1.0):
                            tokens = int(budget / fpt * frac)
                            rows.append(
                                {
                                    "run": f"{arch}<{size}>&R{r}-{budget:.0e}-s{seed}",
                                    "arch": arch,
                                    "size": size,
                                    "seed": seed,
                                    "step": int(100 * frac),
                                    "tokens": tokens,
                                    "flops": tokens * fpt * (1 + rng.uniform(0, 0.03)),
                                    "train_loss": final + 1.05 - frac,
                                    "val_loss": final + 1 - frac,
                                    "val_bpb": (final + 1 - frac) / 2.2,
                                    "is_final": frac == 1.0,
                                    "energy_kwh": 1e-3 * n / 1e6,
                                    "co2_kg": 4e-4 * n / 1e6,
                                    "params": int(n),
                                    "train.max_steps": int(budget / 1e13),
                                    "arch.mean_recurrence": r,
                                    "eval/lambada/acc": 0.2 + 0.1 * frac + rng.normal(0, 0.01),
                                }
                            )
    return pd.DataFrame(rows)


# the fits and a dozen figures of a synthetic grid: 8 s on a 2-core box
@pytest.mark.slow
def test_report_sections_for_recurrence_isoflop_and_evals(tmp_path):
    df = synthetic_sweep()
    index = build_report(tmp_path / "synthetic", df)
    page = check_static(index.parent)
    pngs = {i["src"] for i in page.images}
    assert {"recurrence.png", "isoflop.png", "eval_0.png", "seed_spread.png"} <= pngs
    assert {"recurrence-0", "isoflop", "eval-final"} <= set(page.tables)
    assert "looped&lt;m&gt;&amp;R2" in index.read_text()  # escaped, not markup

    # a configuration is architecture x size x swept settings: seeds are its only replicates
    rows = page.tables["final-loss"]
    assert len(rows) == 3 * 3 * 2 + 3 * 2
    assert all(value(r["n"]) == 2 for r in rows)
    finals = final_runs(df)
    for row in rows:
        sel = (finals["arch"] == row["arch"][1]) & (finals["size"] == row["size"][1])
        sel &= finals["train.max_steps"] == value(row["train.max_steps"])
        r = value(row["arch.mean_recurrence"])
        sel &= finals["arch.mean_recurrence"].isna() if math.isnan(r) else finals["arch.mean_recurrence"] == r
        assert value(row["mean"]) == finals.loc[sel, "val_loss"].mean()

    # the isoFLOP minimum of every series lies near the synthetic optimum 3e6 * sqrt(C / 1e15), and the frontier's
    # exponent near its 0.5
    rows = page.tables["isoflop"]
    assert len(rows) == 4 * 2  # 3 recurrences of looped + pythia, 2 budgets each
    for row in rows:
        budget, n_opt = value(row["budget"]), value(row["n_opt"])
        assert n_opt == pytest.approx(3e6 * math.sqrt(budget / 1e15), rel=0.25)
        assert value(row["exponent"]) == pytest.approx(0.5, abs=0.1)
    assert "scaling.fit_isoflop" in index.read_text()


def test_recurrence_is_compared_at_matched_flops_when_every_r_trains_the_same_steps():
    from parcae_runner.analysis.report import budget_bins, recurrence_table

    # R=4 costs twice the FLOPs per step of R=2: after the same steps no budget holds both
    curves = {("a", 2): ([0, 5e9, 1e10], [7.0, 6.0, 5.0]), ("b", 4): ([0, 1e10, 2e10], [7.0, 6.5, 4.5])}
    df = pd.DataFrame(
        [
            {"run": run, "arch": "looped", "size": "s", "seed": 0, "step": 5 * i, "flops": f, "val_loss": loss}
            | {"arch.mean_recurrence": r}
            for (run, r), (flops, losses) in curves.items()
            for i, (f, loss) in enumerate(zip(flops, losses, strict=True))
        ]
    )
    finals = final_runs(df)
    finals["budget"] = budget_bins(finals["flops"])
    table, matched = recurrence_table(finals, df, "arch.mean_recurrence")
    assert matched
    got = {(row.budget, row.R): row.mean for row in table.itertuples()}
    # at 1e10 FLOPs: R=2's final loss and R=4's evaluation there; R=2 never reached 2e10
    assert got == {(1e10, 2.0): 5.0, (1e10, 4.0): 6.5, (2e10, 4.0): 4.5}
