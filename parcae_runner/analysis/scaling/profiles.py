"""IsoFLOP profiles, shared by approach 2 and the recurrence fit: runs grouped into FLOP budgets, a
parabola of the loss in log x per budget (x: parameters or recurrence), and the bootstrap over runs
within each budget."""

from __future__ import annotations

import math
import warnings
from typing import Any, TypedDict

import numpy as np
import pandas as pd

from parcae_runner.analysis.scaling.numerics import FitError, count, parabola_min, short

# a budget: {"C": median FLOPs, "rows": its runs, "fit": (log x at the minimum, loss there, curvature)}
Budget = dict[str, Any]
# one budget's runs (or a resample of them) and their parabola
Profile = tuple[pd.DataFrame, tuple[float, float, float]]


class ProfileOptions(TypedDict, total=False):
    """The keyword settings approach 2 and the recurrence fit share (defaults in ``PROFILE_DEFAULTS``).

    ``budget_col``: the budget of each run, else runs are grouped by FLOPs within ``budget_tol`` (see
    :func:`group_budgets`); ``n_boot`` bootstrap replicates drawn with ``seed`` give ``ci``-level intervals;
    a fit needs ``min_budgets`` budgets.
    """

    budget_col: str | None
    budget_tol: float
    n_boot: int
    seed: int
    ci: float
    min_budgets: int


PROFILE_DEFAULTS: ProfileOptions = {
    "budget_col": None,
    "budget_tol": 0.1,
    "n_boot": 200,
    "seed": 0,
    "ci": 0.95,
    "min_budgets": 3,
}


def with_defaults(options: ProfileOptions) -> dict[str, Any]:
    """``options`` over ``PROFILE_DEFAULTS``; a TypeError names a keyword neither fit takes, as Python would."""
    unknown = sorted(set(options) - set(PROFILE_DEFAULTS))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(unknown)}")
    return {**PROFILE_DEFAULTS, **options}


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


def _usable_rows(df: pd.DataFrame, flops_col: str, x_col: str, loss_col: str, what: str, budget_col: str | None):
    """The rows with finite, positive FLOPs and x and a finite loss; FitError if a column is missing."""
    missing = [c for c in (flops_col, x_col, loss_col, budget_col) if c is not None and c not in df.columns]
    if missing:
        raise FitError(f"{what} needs the column(s) {', '.join(missing)}; the table has: {', '.join(df.columns)}")
    data = df.copy()
    for col in (flops_col, x_col, loss_col):
        data[col] = pd.to_numeric(data[col], errors="coerce")
    data = data[np.isfinite(data[[flops_col, x_col, loss_col]]).all(axis=1)]
    return data[(data[flops_col] > 0) & (data[x_col] > 0)]


def isoflop_profiles(
    df: pd.DataFrame,
    flops_col: str,
    x_col: str,
    loss_col: str,
    what: str,
    x_name: str,
    min_points: int,
    options: dict[str, Any],
) -> list[Budget]:
    """Per budget (``options``' budgets, each with ``min_points`` distinct x): C, the rows, and the log-x
    parabola; raises FitError on too little data."""
    budget_col, min_budgets = options["budget_col"], options["min_budgets"]
    data = _usable_rows(df, flops_col, x_col, loss_col, what, budget_col)
    labels = (
        data[budget_col].to_numpy() if budget_col else group_budgets(data[flops_col].to_numpy(), options["budget_tol"])
    )

    budgets, too_few = [], []
    for label in pd.unique(labels):
        group = data[labels == label]
        n_x = group[x_col].nunique()
        if n_x < min_points:
            too_few.append(n_x)
            continue
        budgets.append({"C": float(np.median(group[flops_col])), "rows": group.reset_index(drop=True)})
    if len(budgets) < min_budgets:
        got = f"got {count(len(budgets), 'budget')}"
        if too_few:
            counts = ", ".join(map(str, sorted(too_few)))
            noun = x_name if max(too_few) == 1 else f"{x_name}s"
            got += f" (and {count(len(too_few), 'budget')} with only {counts} {noun})"
        raise FitError(
            f"{what} needs at least {min_budgets} FLOP budgets with at least {min_points} {x_name}s each; {got}"
        )
    budgets.sort(key=lambda b: b["C"])
    for b in budgets:
        b["fit"] = _profile_fit(b["rows"], x_col, loss_col)
    return _convex_only(budgets, what, x_name, min_budgets)


def _profile_fit(rows: pd.DataFrame, x_col: str, loss_col: str) -> tuple[float, float, float] | None:
    return parabola_min(np.log(rows[x_col].to_numpy(float)), rows[loss_col].to_numpy(float))


def _convex_only(budgets: list[Budget], what: str, x_name: str, min_budgets: int) -> list[Budget]:
    """The budgets whose parabola has a minimum (a warning for each left out); FitError if too few remain."""
    concave = [b for b in budgets if b["fit"] is None]
    budgets = [b for b in budgets if b["fit"] is not None]
    if len(budgets) < min_budgets:
        raise FitError(
            f"{what} needs at least {min_budgets} FLOP budgets whose loss has a minimum in log {x_name}; "
            f"{len(budgets)} do, {len(concave)} have a loss that is not convex in log {x_name} "
            f"(C = {', '.join(short(b['C']) for b in concave)}): widen those budgets' {x_name} range"
        )
    for b in concave:
        # the frame the warning names is the one it named when this check was part of isoflop_profiles
        warnings.warn(f"{what}: budget C={short(b['C'])} has no minimum in log {x_name}; left out", stacklevel=4)
    return budgets


def _resample(rows: pd.DataFrame, x_col: str, min_points: int, rng: np.random.Generator) -> pd.DataFrame:
    """Runs of one budget drawn with replacement, redrawn until at least ``min_points`` distinct x
    remain (a parabola through fewer is not defined)."""
    for _ in range(100):
        sample = rows.iloc[rng.integers(0, len(rows), len(rows))]
        if sample[x_col].nunique() >= min_points:
            return sample
    return rows


def bootstrap_profiles(
    budgets: list[Budget], x_col: str, loss_col: str, min_points: int, n_boot: int, seed: int
) -> tuple[list[list[Profile]], int]:
    """``n_boot`` replicates of every budget's runs (resampled within the budget, seeded), each as the list of
    (resampled rows, parabola) per budget; and how many replicates were dropped because one of their
    profiles lost its minimum (no estimate comes from those)."""
    rng = np.random.default_rng(seed)
    replicates, failed = [], 0
    for _ in range(n_boot):
        profiles = []
        for b in budgets:
            rows = _resample(b["rows"], x_col, min_points, rng)
            fit = _profile_fit(rows, x_col, loss_col)
            if fit is None:
                break
            profiles.append((rows, fit))
        else:
            replicates.append(profiles)
            continue
        failed += 1
    return replicates, failed


def optimum_summary(
    budget: Budget, x_col: str, key: str, after_optimum: dict[str, Any], before_flag: dict[str, Any]
) -> dict[str, Any]:
    """One budget's line of a fit's ``budgets``: C, x at the minimum as ``key`` (then ``after_optimum``), the
    loss there, curvature, runs (then ``before_flag``) and whether the minimum lies outside the x trained."""
    x = budget["rows"][x_col]
    log_x_opt, l_min, curvature = budget["fit"]
    x_opt = math.exp(log_x_opt)
    return {
        "C": budget["C"],
        key: x_opt,
        **after_optimum,
        "L_min": l_min,
        "curvature": curvature,
        "n_runs": len(budget["rows"]),
        **before_flag,
        # a minimum outside the values trained is an extrapolation, not a measurement
        "extrapolated": not (x.min() <= x_opt <= x.max()),
    }
