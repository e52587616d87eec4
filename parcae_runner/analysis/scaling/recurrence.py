"""The optimal recurrence of a looped model per FLOP budget: approach 2 with the recurrence R in place
of the model size, R_opt(C) = coefficient x C^exponent, and a bootstrap interval for the exponent."""

from __future__ import annotations

from typing import Any, Unpack

import numpy as np
import pandas as pd

from parcae_runner.analysis.scaling.numerics import (
    bootstrap_fields,
    confidence_interval,
    power_law,
    single_threaded_blas,
)
from parcae_runner.analysis.scaling.profiles import (
    ProfileOptions,
    bootstrap_profiles,
    isoflop_profiles,
    optimum_summary,
    with_defaults,
)


@single_threaded_blas
def fit_recurrence(
    df: pd.DataFrame,
    flops_col: str = "flops",
    recurrence_col: str = "arch.mean_recurrence",
    loss_col: str = "val_loss",
    *,
    min_values: int = 3,
    **options: Unpack[ProfileOptions],
) -> dict[str, Any]:
    """Optimal recurrence of a looped model per FLOP budget: a parabola of loss against log R per
    budget gives R_opt(C); then R_opt = coefficient x C^exponent.

    Returns ``exponent``, ``coefficient``, ``budgets`` (C, R_opt, L_min, curvature, n_runs,
    extrapolated) and ``ci`` for the exponent (runs resampled within each budget). ``options`` are
    :class:`ProfileOptions` (budgets, bootstrap, minimum budgets), as for :func:`fit_isoflop`.
    """
    o = with_defaults(options)
    budgets = isoflop_profiles(
        df, flops_col, recurrence_col, loss_col, "recurrence fit", "recurrence value", min_values, o
    )
    log_c = np.log([b["C"] for b in budgets])
    exponent, coefficient = power_law(log_c, np.array([b["fit"][0] for b in budgets]))
    replicates, failed = bootstrap_profiles(budgets, recurrence_col, loss_col, min_values, o["n_boot"], o["seed"])
    boots = [power_law(log_c, np.array([fit[0] for _, fit in profiles]))[0] for profiles in replicates]
    return {
        "recurrence_col": recurrence_col,
        "exponent": exponent,
        "coefficient": coefficient,
        "budgets": [optimum_summary(b, recurrence_col, "R_opt", {}, {}) for b in budgets],
        **bootstrap_fields({"exponent": confidence_interval(boots, o["ci"])}, o["ci"], o["n_boot"], failed, o["seed"]),
    }
