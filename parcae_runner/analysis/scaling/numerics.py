"""The small numerical pieces every fit shares: the error a fit raises, single-threaded BLAS, a
parabola's minimum, a power law in log-log, a bootstrap interval, and the words of a message."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np


class FitError(ValueError):
    """The data cannot support the fit asked for (too few budgets, sizes or points)."""


def single_threaded_blas(fit: Callable) -> Callable:
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


def confidence_interval(samples: list[float] | np.ndarray, level: float) -> list[float] | None:
    """The central ``level`` percentile interval of the finite ``samples``; None from fewer than two."""
    values = np.asarray(samples, dtype=float)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return [float(lo), float(hi)]


def bootstrap_fields(intervals: dict[str, Any], level: float, n_boot: int, failed: int, seed: int) -> dict[str, Any]:
    """The bootstrap's part of a profile fit's result, in the order ``fits.json`` lists it."""
    return {"ci": intervals, "ci_level": level, "n_boot": n_boot, "n_boot_failed": failed, "seed": seed}


def parabola_min(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float] | None:
    """(x at the minimum, loss there, curvature) of the least-squares parabola y(x); None if concave."""
    x0 = x.mean()  # centred: the normal equations stay well conditioned for log-FLOPs around 40
    c2, c1, c0 = np.polyfit(x - x0, y, 2)
    if not c2 > 0:
        return None
    xm = -c1 / (2 * c2)
    return float(xm + x0), float(c0 - c1 * c1 / (4 * c2)), float(c2)


def power_law(log_c: np.ndarray, log_y: np.ndarray) -> tuple[float, float]:
    """(exponent, coefficient) of y = coefficient x C^exponent, by least squares in log-log; NaN from
    fewer than two budgets (a caller may lower ``min_budgets`` to 1 for the per-budget optima alone)."""
    if len(np.unique(log_c)) < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(log_c, log_y, 1)
    return float(slope), float(math.exp(intercept))


def short(x: float) -> str:
    """A number in a message: three significant digits."""
    return f"{x:.3g}"


def count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is one."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
