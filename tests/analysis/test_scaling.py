"""Scaling-law fits recover known laws from synthetic losses, and refuse too little data."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from parcae_runner.analysis import scaling
from parcae_runner.analysis.scaling import FitError, fit_isoflop, fit_parametric, fit_recurrence, fit_sweep

# Hoffmann et al. (2022), approach 3's fit
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
TRUE_A, TRUE_B = BETA / (ALPHA + BETA), ALPHA / (ALPHA + BETA)
# N_opt(C) = G (C/6)^a for L = E + A/N^alpha + B/D^beta under D = C/(6N)
G = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
BUDGETS = (1e18, 3e18, 1e19, 3e19, 1e20, 3e20)
NOISE = 0.002  # multiplicative, log-normal: seed-to-seed spread of a well-run sweep


def chinchilla_loss(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    return E + A / n**ALPHA + B / d**BETA


def isoflop_grid(budgets=BUDGETS, sizes_per_budget: int = 7, seed: int = 0) -> pd.DataFrame:
    """Per budget, model sizes spread x4.5 either side of the true optimum, D = C / (6N)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n_opt = G * (c / 6) ** TRUE_A
        for x in np.linspace(-1.5, 1.5, sizes_per_budget):
            n = n_opt * math.exp(x)
            d = c / (6 * n)
            loss = chinchilla_loss(n, d) * math.exp(rng.normal(0, NOISE))
            rows.append({"flops": c, "params": n, "tokens": d, "val_loss": loss})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def grid() -> pd.DataFrame:
    return isoflop_grid()


def contains(interval: list[float], value: float) -> bool:
    return interval[0] <= value <= interval[1]


def test_approach2_recovers_exponents(grid):
    fit = fit_isoflop(grid, "flops", "params", "val_loss", n_boot=200, seed=0)
    assert abs(fit["a"] - TRUE_A) < 0.03, (fit["a"], TRUE_A)
    assert abs(fit["b"] - TRUE_B) < 0.03, (fit["b"], TRUE_B)
    assert contains(fit["ci"]["a"], TRUE_A) and contains(fit["ci"]["b"], TRUE_B), fit["ci"]
    assert [b["C"] for b in fit["budgets"]] == list(BUDGETS)
    for b in fit["budgets"]:
        n_opt = G * (b["C"] / 6) ** TRUE_A
        assert b["N_opt"] == pytest.approx(n_opt, rel=0.15) and not b["extrapolated"]
        assert b["D_opt"] == pytest.approx(b["C"] / (6 * b["N_opt"]))
    print(f"approach 2: a {fit['a']:.4f} (true {TRUE_A:.4f}), b {fit['b']:.4f} (true {TRUE_B:.4f}), CI {fit['ci']}")


def test_approach2_groups_budgets_that_are_a_few_percent_apart(grid):
    """Real runs of one budget end at slightly different FLOPs (whole steps); they are one budget."""
    jittered = grid.assign(flops=grid["flops"] * np.random.default_rng(1).uniform(0.97, 1.03, len(grid)))
    fit = fit_isoflop(jittered, n_boot=0)
    assert len(fit["budgets"]) == len(BUDGETS) and abs(fit["a"] - TRUE_A) < 0.03


def test_approach2_too_few_budgets():
    two = isoflop_grid(budgets=BUDGETS[:2])
    with pytest.raises(FitError, match=r"approach 2 needs at least 3 FLOP budgets with at least 3 model sizes each; "
                       r"got 2 budgets$"):  # fmt: skip
        fit_isoflop(two)
    # a third budget with only two sizes does not count, and the message says so
    thin = pd.concat([two, isoflop_grid(budgets=BUDGETS[2:3], sizes_per_budget=2)])
    with pytest.raises(FitError, match=r"got 2 budgets \(and 1 budget with only 2 model sizes\)"):
        fit_isoflop(thin)


def test_approach3_recovers_exponents(grid):
    fit = fit_parametric(grid["params"], grid["tokens"], grid["val_loss"], n_boot=200, seed=0)
    assert abs(fit["alpha"] - ALPHA) < 0.02, fit
    assert abs(fit["beta"] - BETA) < 0.02, fit
    assert fit["a"] == pytest.approx(fit["beta"] / (fit["alpha"] + fit["beta"]))
    assert abs(fit["E"] - E) < 0.1
    for key, truth in (("alpha", ALPHA), ("beta", BETA), ("a", TRUE_A), ("b", TRUE_B)):
        assert contains(fit["ci"][key], truth), (key, fit["ci"][key], truth)
    print(f"approach 3: alpha {fit['alpha']:.4f} (true {ALPHA}), beta {fit['beta']:.4f} (true {BETA}), CI {fit['ci']}")


def test_approach3_huber_resists_outliers_that_least_squares_does_not(grid):
    """Why approach 3 uses Huber: a few diverged or mis-logged runs (losses far too high) drag a squared-error fit
    away from the truth; the Huber fit (delta 1e-3, Hoffmann et al.) barely moves. delta=10 makes the same
    objective plain least squares over these residuals (all of them are far below 10)."""
    corrupted = grid["val_loss"].to_numpy().copy()
    rng = np.random.default_rng(3)
    bad = rng.choice(len(corrupted), size=4, replace=False)
    corrupted[bad] += 1.5
    huber = fit_parametric(grid["params"], grid["tokens"], corrupted, n_boot=0, seed=0)
    squares = fit_parametric(grid["params"], grid["tokens"], corrupted, delta=10.0, n_boot=0, seed=0)
    huber_err = abs(huber["alpha"] - ALPHA) + abs(huber["beta"] - BETA)
    squares_err = abs(squares["alpha"] - ALPHA) + abs(squares["beta"] - BETA)
    print(f"alpha+beta error with 4 outliers: huber {huber_err:.4f}, least squares {squares_err:.4f}")
    assert huber_err < 0.04, huber
    assert squares_err > 3 * huber_err and squares_err > 0.05, squares


def test_approach3_too_few_points(grid):
    few = grid.iloc[:6]  # one budget: 6 points, 6 sizes
    with pytest.raises(FitError, match=r"approach 3 needs at least 10 finite \(N, D, L\) points .* got 6 points"):
        fit_parametric(few["params"], few["tokens"], few["val_loss"])
    one_size = grid[grid["params"] == grid["params"].iloc[0]]
    with pytest.raises(FitError, match=r"got 1 point, 1 model size, 1 token count"):
        fit_parametric(one_size["params"], one_size["tokens"], one_size["val_loss"])


def recurrence_grid(exponent: float = 0.25, values=(1, 2, 4, 8, 16, 32), budgets=BUDGETS, seed: int = 0):
    """Loss quadratic in log R around R_opt(C) = 2 (C / 1e18)^exponent, with the same small noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        r_opt = 2 * (c / 1e18) ** exponent
        for r in values:
            loss = (3.0 - 0.1 * math.log10(c / 1e18) + 0.05 * math.log(r / r_opt) ** 2) * math.exp(rng.normal(0, NOISE))
            rows.append({"flops": c, "arch.mean_recurrence": r, "val_loss": loss})
    return pd.DataFrame(rows)


def test_recurrence_recovers_exponent():
    fit = fit_recurrence(recurrence_grid(), n_boot=100)
    assert abs(fit["exponent"] - 0.25) < 0.03 and contains(fit["ci"]["exponent"], 0.25), fit
    with pytest.raises(FitError, match="recurrence fit needs at least 3 FLOP budgets with at least 3 recurrence"):
        fit_recurrence(recurrence_grid(values=(1, 2)))


def test_fit_sweep_writes_fits_per_arch(tmp_path, monkeypatch, grid):
    """fit_sweep takes each finished run's final row, fits per architecture, records refusals."""
    from parcae_runner.analysis import collect as collect_mod

    final = grid.assign(arch="pythia", run=[f"r{i}" for i in range(len(grid))], is_final=True, status="done")
    too_few = final.iloc[:4].assign(arch="mamba")
    unfinished = final.iloc[:5].assign(status="running", val_loss=99.0)
    table = pd.concat([final, too_few, unfinished], ignore_index=True)
    monkeypatch.setattr(collect_mod, "collect", lambda root: table)
    # fit_sweep calls approach 3 through the module it lives in
    monkeypatch.setattr(scaling.sweep, "fit_parametric", _fast(scaling.fit_parametric))

    out = fit_sweep(tmp_path, n_boot=20)
    written = json.loads((tmp_path / "fits.json").read_text(), parse_constant=_no_nan)
    assert written == out
    assert out["runs_used"] == len(final) + len(too_few)
    pythia, mamba = out["by_arch"]["pythia"], out["by_arch"]["mamba"]
    assert abs(pythia["approach2"]["a"] - TRUE_A) < 0.03 and abs(pythia["approach3"]["alpha"] - ALPHA) < 0.02
    assert "recurrence" not in pythia  # no recurrence column
    assert mamba["approach2"]["error"].startswith("approach 2 needs at least 3 FLOP budgets")
    assert mamba["approach3"]["error"].startswith("approach 3 needs at least 10")


def _fast(fit):
    return lambda *args, **kwargs: fit(*args, **{**kwargs, "n_boot": 5})


def _no_nan(token: str):
    raise AssertionError(f"fits.json holds {token}: not plain JSON")
