"""Scaling-law fits on a sweep's results: Chinchilla's approaches 2 and 3, and the optimal
recurrence of looped models.

- **Approach 2** (isoFLOP profiles, Hoffmann et al. 2022 §3.2): for each FLOP budget C, fit a
  parabola of the final loss against log N; its minimum is N_opt(C), and D_opt(C) = C / (6 N_opt).
  Then log N_opt = a log C + const and log D_opt = b log C + const.
- **Approach 3** (parametric loss, §3.3): L(N, D) = E + A / N^alpha + B / D^beta, fitted by
  minimising the Huber loss (delta 1e-3) of log L against
  LSE(a - alpha log N, b - beta log D, e), with A = exp(a), B = exp(b), E = exp(e), by L-BFGS-B from
  the best points of Hoffmann's grid of starts. Implies a = beta / (alpha + beta), b = alpha / (alpha + beta).
- **Recurrence**: approach 2 with the recurrence R of a looped model in place of N: R_opt(C) and
  its exponent in C.

Confidence intervals come from a seeded bootstrap over runs (within each budget for the isoFLOP
fits). Too few points raise :class:`FitError` naming what is missing: a fit of five parameters
to four points gives numbers, not evidence.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

FITS_FILE = "fits.json"
# columns that hold a looped model's recurrence, in order of preference
RECURRENCE_COLUMNS = ("arch.mean_recurrence", "arch.recurrence", "arch.n_recurrence", "mean_recurrence", "recurrence")


class FitError(ValueError):
    """The data cannot support the fit asked for (too few budgets, sizes or points)."""


# ---------------------------------------------------------------- helpers


def _single_threaded_blas(fit: Callable) -> Callable:
    """Run ``fit`` with BLAS/LAPACK on one thread.

    Why: these fits make thousands of LAPACK calls on 5x5 matrices (L-BFGS-B's updates, polyfit);
    a threaded OpenBLAS spends far longer waking and syncing its threads than computing, which
    on a busy 2-core machine made approach 3 twenty times slower (13 s instead of 0.7 s).
    threadpoolctl ships with scikit-learn; without it the fits are only slower.
    """

    @functools.wraps(fit)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            limit = contextlib.nullcontext()
        else:
            limit = threadpool_limits(limits=1, user_api="blas")
        with limit:
            return fit(*args, **kwargs)

    return wrapper


def _ci(samples: list[float] | np.ndarray, level: float) -> list[float] | None:
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if samples.size < 2:
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return [float(lo), float(hi)]


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def group_budgets(flops: np.ndarray, tol: float = 0.1) -> np.ndarray:
    """Label runs by FLOP budget: sorted by FLOPs, a new budget starts where a run has more than
    ``(1 + tol)`` x the first FLOPs of the current one.

    Why not exact equality: runs planned for one budget end a few percent apart (whole steps,
    the attention term of FLOPs/token), while isoFLOP budgets are a factor 2 or more apart.
    """
    flops = np.asarray(flops, dtype=float)
    order = np.argsort(flops)
    labels = np.empty(len(flops), dtype=int)
    label, start = -1, -math.inf
    for i in order:
        if flops[i] > start * (1 + tol):
            label, start = label + 1, flops[i]
        labels[i] = label
    return labels


def _parabola_min(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float] | None:
    """(x at the minimum, loss there, curvature) of the least-squares parabola y(x); None if concave."""
    x0 = x.mean()  # centred: the normal equations stay well conditioned for log-FLOPs around 40
    c2, c1, c0 = np.polyfit(x - x0, y, 2)
    if not c2 > 0:
        return None
    xm = -c1 / (2 * c2)
    return float(xm + x0), float(c0 - c1 * c1 / (4 * c2)), float(c2)


def _power_law(log_c: np.ndarray, log_y: np.ndarray) -> tuple[float, float]:
    """(exponent, coefficient) of y = coefficient x C^exponent, by least squares in log-log; NaN from
    fewer than two budgets (a caller may lower ``min_budgets`` to 1 for the per-budget optima alone)."""
    if len(np.unique(log_c)) < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(log_c, log_y, 1)
    return float(slope), float(math.exp(intercept))


# ---------------------------------------------------------------- approach 2 and recurrence


def _isoflop_profiles(
    df: pd.DataFrame,
    flops_col: str,
    x_col: str,
    loss_col: str,
    what: str,
    x_name: str,
    budget_col: str | None,
    budget_tol: float,
    min_budgets: int,
    min_points: int,
) -> list[dict[str, Any]]:
    """Per budget: C, the rows, and the log-x parabola; raises FitError on too little data."""
    missing = [c for c in (flops_col, x_col, loss_col, budget_col) if c is not None and c not in df.columns]
    if missing:
        raise FitError(f"{what} needs the column(s) {', '.join(missing)}; the table has: {', '.join(df.columns)}")
    data = df.copy()
    for col in (flops_col, x_col, loss_col):
        data[col] = pd.to_numeric(data[col], errors="coerce")
    data = data[np.isfinite(data[[flops_col, x_col, loss_col]]).all(axis=1)]
    data = data[(data[flops_col] > 0) & (data[x_col] > 0)]
    labels = data[budget_col].to_numpy() if budget_col else group_budgets(data[flops_col].to_numpy(), budget_tol)

    budgets, too_few = [], []
    for label in pd.unique(labels):
        group = data[labels == label]
        n_x = group[x_col].nunique()
        if n_x < min_points:
            too_few.append(n_x)
            continue
        budgets.append({"C": float(np.median(group[flops_col])), "rows": group.reset_index(drop=True)})
    if len(budgets) < min_budgets:
        got = f"got {_count(len(budgets), 'budget')}"
        if too_few:
            counts = ", ".join(map(str, sorted(too_few)))
            noun = x_name if max(too_few) == 1 else f"{x_name}s"
            got += f" (and {_count(len(too_few), 'budget')} with only {counts} {noun})"
        raise FitError(
            f"{what} needs at least {min_budgets} FLOP budgets with at least {min_points} {x_name}s each; {got}"
        )
    budgets.sort(key=lambda b: b["C"])
    for b in budgets:
        rows = b["rows"]
        b["fit"] = _parabola_min(np.log(rows[x_col].to_numpy(float)), rows[loss_col].to_numpy(float))
    concave = [b for b in budgets if b["fit"] is None]
    budgets = [b for b in budgets if b["fit"] is not None]
    if len(budgets) < min_budgets:
        raise FitError(
            f"{what} needs at least {min_budgets} FLOP budgets whose loss has a minimum in log {x_name}; "
            f"{len(budgets)} do, {len(concave)} have a loss that is not convex in log {x_name} "
            f"(C = {', '.join(_fmt(b['C']) for b in concave)}): widen those budgets' {x_name} range"
        )
    for b in concave:
        warnings.warn(f"{what}: budget C={_fmt(b['C'])} has no minimum in log {x_name}; left out", stacklevel=3)
    return budgets


def _resample(rows: pd.DataFrame, x_col: str, min_points: int, rng: np.random.Generator) -> pd.DataFrame:
    """Runs of one budget drawn with replacement, redrawn until at least ``min_points`` distinct x
    remain (a parabola through fewer is not defined)."""
    for _ in range(100):
        sample = rows.iloc[rng.integers(0, len(rows), len(rows))]
        if sample[x_col].nunique() >= min_points:
            return sample
    return rows


def _d_opt(rows: pd.DataFrame, c: float, log_n_opt: float, params_col: str, tokens_col: str | None) -> float:
    if tokens_col is None:
        return c / (6 * math.exp(log_n_opt))
    # along an isoFLOP profile log D is (close to) linear in log N: read it off at N_opt, which
    # keeps D_opt right whatever FLOP convention made C
    log_n, log_d = np.log(rows[params_col].to_numpy(float)), np.log(rows[tokens_col].to_numpy(float))
    ok = np.isfinite(log_d)
    if ok.sum() < 2:
        return math.nan
    slope, intercept = np.polyfit(log_n[ok], log_d[ok], 1)
    return float(math.exp(intercept + slope * log_n_opt))


@_single_threaded_blas
def fit_isoflop(
    df: pd.DataFrame,
    flops_col: str = "flops",
    params_col: str = "params",
    loss_col: str = "val_loss",
    *,
    tokens_col: str | None = None,
    budget_col: str | None = None,
    budget_tol: float = 0.1,
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.95,
    min_budgets: int = 3,
    min_sizes: int = 3,
) -> dict[str, Any]:
    """Chinchilla approach 2: N_opt(C) and D_opt(C) from isoFLOP profiles, and their exponents.

    ``df`` holds one row per run (final losses). Budgets are ``budget_col`` if given, else runs
    grouped by FLOPs within ``budget_tol`` (see :func:`group_budgets`). D_opt = C / (6 N_opt), or,
    with ``tokens_col``, log D read off the budget's runs at N_opt (use it when C is not 6 N D).

    Returns ``a``, ``b`` (N_opt ~ C^a, D_opt ~ C^b), ``n_coefficient``, ``d_coefficient``,
    ``budgets`` (C, N_opt, D_opt, L_min, curvature, n_runs, extrapolated per budget), and ``ci``
    with bootstrap intervals for a and b (runs resampled within each budget, ``n_boot`` times,
    seeded). Raises :class:`FitError` with fewer than ``min_budgets`` budgets of ``min_sizes`` sizes.
    """
    if tokens_col is not None and tokens_col not in df.columns:
        raise FitError(f"approach 2: no column {tokens_col!r} for tokens")
    budgets = _isoflop_profiles(
        df, flops_col, params_col, loss_col, "approach 2", "model size", budget_col, budget_tol, min_budgets, min_sizes
    )

    def solve(profiles: list[tuple[float, pd.DataFrame, tuple[float, float, float]]]) -> dict[str, Any]:
        log_c = np.log([c for c, _, _ in profiles])
        log_n = np.array([fit[0] for _, _, fit in profiles])
        log_d = np.log([_d_opt(rows, c, fit[0], params_col, tokens_col) for c, rows, fit in profiles])
        a, n_coef = _power_law(log_c, log_n)
        b, d_coef = _power_law(log_c, log_d)
        return {"a": a, "b": b, "n_coefficient": n_coef, "d_coefficient": d_coef, "log_d": log_d}

    point = solve([(b["C"], b["rows"], b["fit"]) for b in budgets])
    rng = np.random.default_rng(seed)
    boots: dict[str, list[float]] = {"a": [], "b": []}
    failed = 0
    for _ in range(n_boot):
        profiles = []
        for b in budgets:
            rows = _resample(b["rows"], params_col, min_sizes, rng)
            fit = _parabola_min(np.log(rows[params_col].to_numpy(float)), rows[loss_col].to_numpy(float))
            if fit is None:
                break
            profiles.append((b["C"], rows, fit))
        else:
            est = solve(profiles)
            boots["a"].append(est["a"])
            boots["b"].append(est["b"])
            continue
        failed += 1  # a resample whose profile lost its minimum: no estimate from it

    per_budget = []
    for b, log_d in zip(budgets, point["log_d"], strict=True):
        n = b["rows"][params_col]
        log_n_opt, l_min, curvature = b["fit"]
        per_budget.append(
            {
                "C": b["C"],
                "N_opt": math.exp(log_n_opt),
                "D_opt": math.exp(log_d),
                "L_min": l_min,
                "curvature": curvature,
                "n_runs": len(b["rows"]),
                "n_sizes": int(n.nunique()),
                # a minimum outside the sizes trained is an extrapolation, not a measurement
                "extrapolated": not (n.min() <= math.exp(log_n_opt) <= n.max()),
            }
        )
    return {
        "approach": 2,
        "a": point["a"],
        "b": point["b"],
        "n_coefficient": point["n_coefficient"],
        "d_coefficient": point["d_coefficient"],
        "d_opt_from": tokens_col or "C / (6 N_opt)",
        "budgets": per_budget,
        "ci": {k: _ci(v, ci) for k, v in boots.items()},
        "ci_level": ci,
        "n_boot": n_boot,
        "n_boot_failed": failed,
        "seed": seed,
    }


@_single_threaded_blas
def fit_recurrence(
    df: pd.DataFrame,
    flops_col: str = "flops",
    recurrence_col: str = "arch.mean_recurrence",
    loss_col: str = "val_loss",
    *,
    budget_col: str | None = None,
    budget_tol: float = 0.1,
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.95,
    min_budgets: int = 3,
    min_values: int = 3,
) -> dict[str, Any]:
    """Optimal recurrence of a looped model per FLOP budget: a parabola of loss against log R per
    budget gives R_opt(C); then R_opt = coefficient x C^exponent.

    Returns ``exponent``, ``coefficient``, ``budgets`` (C, R_opt, L_min, curvature, n_runs,
    extrapolated) and ``ci`` for the exponent (runs resampled within each budget).
    """
    budgets = _isoflop_profiles(
        df, flops_col, recurrence_col, loss_col, "recurrence fit", "recurrence value", budget_col, budget_tol,
        min_budgets, min_values,
    )  # fmt: skip
    log_c = np.log([b["C"] for b in budgets])
    exponent, coefficient = _power_law(log_c, np.array([b["fit"][0] for b in budgets]))
    rng = np.random.default_rng(seed)
    boots, failed = [], 0
    for _ in range(n_boot):
        log_r = []
        for b in budgets:
            rows = _resample(b["rows"], recurrence_col, min_values, rng)
            fit = _parabola_min(np.log(rows[recurrence_col].to_numpy(float)), rows[loss_col].to_numpy(float))
            if fit is None:
                break
            log_r.append(fit[0])
        else:
            boots.append(_power_law(log_c, np.array(log_r))[0])
            continue
        failed += 1
    per_budget = []
    for b in budgets:
        r = b["rows"][recurrence_col]
        log_r_opt, l_min, curvature = b["fit"]
        per_budget.append(
            {
                "C": b["C"],
                "R_opt": math.exp(log_r_opt),
                "L_min": l_min,
                "curvature": curvature,
                "n_runs": len(b["rows"]),
                "extrapolated": not (r.min() <= math.exp(log_r_opt) <= r.max()),
            }
        )
    return {
        "recurrence_col": recurrence_col,
        "exponent": exponent,
        "coefficient": coefficient,
        "budgets": per_budget,
        "ci": {"exponent": _ci(boots, ci)},
        "ci_level": ci,
        "n_boot": n_boot,
        "n_boot_failed": failed,
        "seed": seed,
    }


# ---------------------------------------------------------------- approach 3


def _huber_objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float):
    """Sum of Huber(LSE(a - alpha log N, b - beta log D, e) - log L) / delta, and its gradient.

    Divided by delta so L-BFGS-B's absolute tolerances see values of order one: the Huber loss
    with delta 1e-3 is ~1e-5 per point, below where the optimiser would otherwise stop.
    """
    a, b, e, alpha, beta = theta
    t = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = t.max(axis=0)
    w = np.exp(t - top)
    total = w.sum(axis=0)
    r = top + np.log(total) - log_l
    w /= total  # softmax: d LSE / d t
    small = np.abs(r) <= delta
    value = np.where(small, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta)).sum() / delta
    dr = np.where(small, r, delta * np.sign(r)) / delta
    grad = np.array(
        [
            (dr * w[0]).sum(),
            (dr * w[1]).sum(),
            (dr * w[2]).sum(),
            -(dr * w[0] * log_n).sum(),
            -(dr * w[1] * log_d).sum(),
        ]
    )
    return value, grad


def _grid_values(grid: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float) -> np.ndarray:
    """Objective at every start of the grid at once (vectorised: thousands of starts, few points)."""
    a, b, e, alpha, beta = (grid[:, i : i + 1] for i in range(5))
    t = np.stack([a - alpha * log_n, b - beta * log_d, np.broadcast_to(e, (len(grid), len(log_n)))])
    r = np.logaddexp(np.logaddexp(t[0], t[1]), t[2]) - log_l
    return np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta)).sum(axis=1)


# Hoffmann et al.'s grid of initialisations (appendix D.2)
HOFFMANN_GRID = {
    "alpha": np.arange(0.0, 2.01, 0.5),
    "beta": np.arange(0.0, 2.01, 0.5),
    "e": np.arange(-1.0, 1.01, 0.5),
    "a": np.arange(0.0, 25.01, 5.0),
    "b": np.arange(0.0, 25.01, 5.0),
}
BOUNDS = [(None, None), (None, None), (None, None), (0.0, 5.0), (0.0, 5.0)]


def _minimise(starts: np.ndarray, log_n, log_d, log_l, delta: float) -> tuple[np.ndarray, float]:
    best_x, best_f = None, math.inf
    for x0 in starts:
        res = minimize(
            _huber_objective,
            x0,
            args=(log_n, log_d, log_l, delta),
            jac=True,
            method="L-BFGS-B",
            bounds=BOUNDS,
            options={"maxiter": 2000, "ftol": 1e-10, "gtol": 1e-6},
        )
        if np.all(np.isfinite(res.x)) and res.fun < best_f:
            best_x, best_f = res.x, float(res.fun)
    if best_x is None:
        raise FitError("approach 3: the optimiser found no finite solution from any start")
    return best_x, best_f


def _parametric_result(theta: np.ndarray) -> dict[str, float]:
    a, b, e, alpha, beta = (float(v) for v in theta)
    total = alpha + beta
    return {
        "E": math.exp(e),
        "A": math.exp(a),
        "B": math.exp(b),
        "alpha": alpha,
        "beta": beta,
        "a": beta / total if total > 0 else math.nan,
        "b": alpha / total if total > 0 else math.nan,
    }


@_single_threaded_blas
def fit_parametric(
    N: np.ndarray,
    D: np.ndarray,
    L: np.ndarray,
    *,
    delta: float = 1e-3,
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.95,
    n_starts: int = 20,
    min_points: int = 10,
    min_distinct: int = 3,
) -> dict[str, Any]:
    """Chinchilla approach 3: fit L(N, D) = E + A / N^alpha + B / D^beta to runs of N parameters
    trained on D tokens reaching loss L.

    Minimises Hoffmann et al.'s Huber loss (``delta``) on log L with L-BFGS-B, started from the
    ``n_starts`` best points of their grid of initialisations (the whole grid is evaluated, only
    the best are optimised); bootstrap replicates (points resampled, ``n_boot``, seeded) restart
    from the full-data optimum. Returns E, A, B, alpha, beta, the implied a = beta/(alpha+beta)
    and b = alpha/(alpha+beta), ``ci`` for each, and ``huber_loss`` (in units of delta).
    Raises :class:`FitError` with fewer than ``min_points`` points or ``min_distinct`` distinct N or D.
    """
    N, D, L = (np.asarray(v, dtype=float).ravel() for v in (N, D, L))
    if not (len(N) == len(D) == len(L)):
        raise FitError(f"approach 3: N, D and L differ in length ({len(N)}, {len(D)}, {len(L)})")
    ok = np.isfinite(N) & np.isfinite(D) & np.isfinite(L) & (N > 0) & (D > 0) & (L > 0)
    N, D, L = N[ok], D[ok], L[ok]
    n_sizes, n_tokens = len(np.unique(N)), len(np.unique(D))
    if len(N) < min_points or n_sizes < min_distinct or n_tokens < min_distinct:
        raise FitError(
            f"approach 3 needs at least {min_points} finite (N, D, L) points spanning at least {min_distinct} "
            f"model sizes and {min_distinct} token counts (5 parameters are fitted); got {_count(len(N), 'point')}, "
            f"{_count(n_sizes, 'model size')}, {_count(n_tokens, 'token count')}"
            + (f" ({int((~ok).sum())} rows dropped as missing or non-positive)" if (~ok).any() else "")
        )
    log_n, log_d, log_l = np.log(N), np.log(D), np.log(L)
    grid = np.array(
        [
            (a, b, e, alpha, beta)
            for alpha, beta, e, a, b in itertools.product(*(HOFFMANN_GRID[k] for k in ("alpha", "beta", "e", "a", "b")))
        ]
    )
    starts = grid[np.argsort(_grid_values(grid, log_n, log_d, log_l, delta))[:n_starts]]
    theta, value = _minimise(starts, log_n, log_d, log_l, delta)

    rng = np.random.default_rng(seed)
    boots: dict[str, list[float]] = {k: [] for k in ("E", "A", "B", "alpha", "beta", "a", "b")}
    for _ in range(n_boot):
        idx = rng.integers(0, len(N), len(N))
        try:
            theta_b, _ = _minimise([theta], log_n[idx], log_d[idx], log_l[idx], delta)
        except FitError:
            continue
        for k, v in _parametric_result(theta_b).items():
            boots[k].append(v)
    return {
        "approach": 3,
        **_parametric_result(theta),
        "huber_loss": value,
        "delta": delta,
        "n_points": len(N),
        "ci": {k: _ci(v, ci) for k, v in boots.items()},
        "ci_level": ci,
        "n_boot": n_boot,
        "seed": seed,
    }


# ---------------------------------------------------------------- a sweep


def _jsonable(obj: Any) -> Any:
    """Plain JSON: numpy scalars to Python, NaN and infinities to null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def recurrence_column(df: pd.DataFrame) -> str | None:
    """The column holding a looped model's recurrence, if the table has one that varies."""
    candidates = [c for c in RECURRENCE_COLUMNS if c in df.columns]
    candidates += [c for c in df.columns if "recurrence" in c.lower() and c not in candidates]
    for col in candidates:
        if pd.to_numeric(df[col], errors="coerce").nunique() > 1:
            return col
    return None


def fit_sweep(sweep_root: Path, n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """Every fit that applies to a sweep, per architecture, written to ``<sweep_root>/fits.json``.

    Collects first (incremental, see :func:`parcae_runner.analysis.collect.collect`), then uses
    the final row of each finished run (``is_final`` and status ``done``, finite ``val_loss``):
    approach 2 on (flops, params, val_loss; D_opt from the runs' tokens), approach 3 on
    (params, tokens, val_loss), and the recurrence fit where a recurrence column varies. A fit the
    data cannot support is recorded as ``{"error": "..."}`` instead of numbers.
    """
    from parcae_runner.analysis.collect import collect
    from parcae_runner.util.files import atomic_write_json

    sweep_root = Path(sweep_root)
    df = collect(sweep_root)
    final = df[df["is_final"].astype(bool) & (df["status"] == "done")] if len(df) else df
    final = final[np.isfinite(pd.to_numeric(final["val_loss"], errors="coerce"))] if len(final) else final

    names = df["sweep"].dropna().unique() if "sweep" in df.columns else []
    out: dict[str, Any] = {
        "sweep": str(names[0]) if len(names) == 1 else sweep_root.name,
        "runs_total": int(df["run"].nunique()) if len(df) else 0,
        "runs_used": int(len(final)),
        "loss": "val_loss",
        "by_arch": {},
    }
    for arch, rows in final.groupby("arch", sort=True) if len(final) else []:
        fits: dict[str, Any] = {"runs": int(len(rows))}
        attempts = {
            "approach2": lambda r=rows: fit_isoflop(
                r, "flops", "params", "val_loss", tokens_col="tokens", n_boot=n_boot, seed=seed
            ),
            "approach3": lambda r=rows: fit_parametric(
                r["params"].to_numpy(float),
                r["tokens"].to_numpy(float),
                r["val_loss"].to_numpy(float),
                n_boot=n_boot,
                seed=seed,
            ),  # fmt: skip
        }
        col = recurrence_column(rows)
        if col is not None:
            attempts["recurrence"] = lambda r=rows, c=col: fit_recurrence(
                r, "flops", c, "val_loss", n_boot=n_boot, seed=seed
            )
        for name, fit in attempts.items():
            try:
                fits[name] = fit()
            except FitError as exc:
                fits[name] = {"error": str(exc)}
        out["by_arch"][str(arch)] = fits
    out = _jsonable(out)
    atomic_write_json(sweep_root / FITS_FILE, out)
    return out
