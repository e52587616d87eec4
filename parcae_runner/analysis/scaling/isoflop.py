"""Chinchilla approach 2: the compute-optimal model size N_opt(C) and tokens D_opt(C) from isoFLOP
profiles, their exponents in C, and bootstrap intervals for them."""

from __future__ import annotations

import math
from typing import Any, Unpack

import numpy as np
import pandas as pd

from parcae_runner.analysis.scaling.numerics import (
    FitError,
    bootstrap_fields,
    confidence_interval,
    power_law,
    single_threaded_blas,
)
from parcae_runner.analysis.scaling.profiles import (
    Profile,
    ProfileOptions,
    bootstrap_profiles,
    isoflop_profiles,
    optimum_summary,
    with_defaults,
)


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


def _exponents(
    budget_cs: list[float], profiles: list[Profile], params_col: str, tokens_col: str | None
) -> dict[str, Any]:
    """a and b (N_opt ~ C^a, D_opt ~ C^b) with their coefficients, from one (rows, parabola) per budget."""
    log_c = np.log(budget_cs)
    log_n = np.array([fit[0] for _, fit in profiles])
    log_d = np.log(
        [_d_opt(rows, c, fit[0], params_col, tokens_col) for c, (rows, fit) in zip(budget_cs, profiles, strict=True)]
    )
    a, n_coef = power_law(log_c, log_n)
    b, d_coef = power_law(log_c, log_d)
    return {"a": a, "b": b, "n_coefficient": n_coef, "d_coefficient": d_coef, "log_d": log_d}


@single_threaded_blas
def fit_isoflop(
    df: pd.DataFrame,
    flops_col: str = "flops",
    params_col: str = "params",
    loss_col: str = "val_loss",
    *,
    tokens_col: str | None = None,
    min_sizes: int = 3,
    **options: Unpack[ProfileOptions],
) -> dict[str, Any]:
    """Chinchilla approach 2: N_opt(C) and D_opt(C) from isoFLOP profiles, and their exponents.

    ``df`` holds one row per run (final losses). Budgets are ``budget_col`` if given, else runs
    grouped by FLOPs within ``budget_tol`` (see :func:`group_budgets`; ``options`` are
    :class:`ProfileOptions`, the settings shared with the recurrence fit). D_opt = C / (6 N_opt), or,
    with ``tokens_col``, log D read off the budget's runs at N_opt (use it when C is not 6 N D).

    Returns ``a``, ``b`` (N_opt ~ C^a, D_opt ~ C^b), ``n_coefficient``, ``d_coefficient``,
    ``budgets`` (C, N_opt, D_opt, L_min, curvature, n_runs, extrapolated per budget), and ``ci``
    with bootstrap intervals for a and b (runs resampled within each budget, ``n_boot`` times,
    seeded). Raises :class:`FitError` with fewer than ``min_budgets`` budgets of ``min_sizes`` sizes.
    """
    if tokens_col is not None and tokens_col not in df.columns:
        raise FitError(f"approach 2: no column {tokens_col!r} for tokens")
    o = with_defaults(options)
    budgets = isoflop_profiles(df, flops_col, params_col, loss_col, "approach 2", "model size", min_sizes, o)
    cs = [b["C"] for b in budgets]
    point = _exponents(cs, [(b["rows"], b["fit"]) for b in budgets], params_col, tokens_col)
    replicates, failed = bootstrap_profiles(budgets, params_col, loss_col, min_sizes, o["n_boot"], o["seed"])
    boots = [_exponents(cs, profiles, params_col, tokens_col) for profiles in replicates]
    per_budget = [
        optimum_summary(
            b, params_col, "N_opt", {"D_opt": math.exp(log_d)}, {"n_sizes": int(b["rows"][params_col].nunique())}
        )
        for b, log_d in zip(budgets, point["log_d"], strict=True)
    ]
    intervals = {k: confidence_interval([est[k] for est in boots], o["ci"]) for k in ("a", "b")}
    return {
        "approach": 2,
        **{k: point[k] for k in ("a", "b", "n_coefficient", "d_coefficient")},
        "d_opt_from": tokens_col or "C / (6 N_opt)",
        "budgets": per_budget,
        **bootstrap_fields(intervals, o["ci"], o["n_boot"], failed, o["seed"]),
    }
