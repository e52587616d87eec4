"""Chinchilla approach 3: the parametric loss L(N, D) = E + A / N^alpha + B / D^beta, fitted with
Hoffmann et al.'s Huber loss on log L by L-BFGS-B from the best points of their grid of starts."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy.optimize import minimize

from parcae_runner.analysis.scaling.numerics import FitError, confidence_interval, count, single_threaded_blas


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


def _minimise(starts: Iterable[np.ndarray], log_n, log_d, log_l, delta: float) -> tuple[np.ndarray, float]:
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


def _usable_points(
    N: np.ndarray, D: np.ndarray, L: np.ndarray, min_points: int, min_distinct: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The finite, positive (N, D, L) points as flat float arrays; FitError when too few remain."""
    N, D, L = (np.asarray(v, dtype=float).ravel() for v in (N, D, L))
    if not (len(N) == len(D) == len(L)):
        raise FitError(f"approach 3: N, D and L differ in length ({len(N)}, {len(D)}, {len(L)})")
    ok = np.isfinite(N) & np.isfinite(D) & np.isfinite(L) & (N > 0) & (D > 0) & (L > 0)
    N, D, L = N[ok], D[ok], L[ok]
    n_sizes, n_tokens = len(np.unique(N)), len(np.unique(D))
    if len(N) < min_points or n_sizes < min_distinct or n_tokens < min_distinct:
        raise FitError(
            f"approach 3 needs at least {min_points} finite (N, D, L) points spanning at least {min_distinct} "
            f"model sizes and {min_distinct} token counts (5 parameters are fitted); got {count(len(N), 'point')}, "
            f"{count(n_sizes, 'model size')}, {count(n_tokens, 'token count')}"
            + (f" ({int((~ok).sum())} rows dropped as missing or non-positive)" if (~ok).any() else "")
        )
    return N, D, L


def _best_starts(log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float, n_starts: int) -> np.ndarray:
    """The ``n_starts`` points of Hoffmann's grid with the lowest objective, best first."""
    grid = np.array(
        [
            (a, b, e, alpha, beta)
            for alpha, beta, e, a, b in itertools.product(*(HOFFMANN_GRID[k] for k in ("alpha", "beta", "e", "a", "b")))
        ]
    )
    return grid[np.argsort(_grid_values(grid, log_n, log_d, log_l, delta))[:n_starts]]


def _bootstrap(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float, n_boot: int, seed: int
) -> dict[str, list[float]]:
    """Every parameter's estimates over ``n_boot`` resamples of the points (seeded), each restarted from ``theta``;
    a resample the optimiser cannot fit gives none."""
    rng = np.random.default_rng(seed)
    boots: dict[str, list[float]] = {k: [] for k in ("E", "A", "B", "alpha", "beta", "a", "b")}
    for _ in range(n_boot):
        idx = rng.integers(0, len(log_n), len(log_n))
        try:
            theta_b, _ = _minimise([theta], log_n[idx], log_d[idx], log_l[idx], delta)
        except FitError:
            continue
        for k, v in _parametric_result(theta_b).items():
            boots[k].append(v)
    return boots


@single_threaded_blas
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
    N, D, L = _usable_points(N, D, L, min_points, min_distinct)
    log_n, log_d, log_l = np.log(N), np.log(D), np.log(L)
    starts = _best_starts(log_n, log_d, log_l, delta, n_starts)
    theta, value = _minimise(starts, log_n, log_d, log_l, delta)

    boots = _bootstrap(theta, log_n, log_d, log_l, delta, n_boot, seed)
    return {
        "approach": 3,
        **_parametric_result(theta),
        "huber_loss": value,
        "delta": delta,
        "n_points": len(N),
        "ci": {k: confidence_interval(v, ci) for k, v in boots.items()},
        "ci_level": ci,
        "n_boot": n_boot,
        "seed": seed,
    }
