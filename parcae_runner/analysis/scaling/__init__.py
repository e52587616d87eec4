"""Scaling-law fits on a sweep's results: Chinchilla's approaches 2 and 3, and the optimal
recurrence of looped models.

- **Approach 2** (isoFLOP profiles, Hoffmann et al. 2022 §3.2): for each FLOP budget C, fit a
  parabola of the final loss against log N; its minimum is N_opt(C), and D_opt(C) = C / (6 N_opt).
  Then log N_opt = a log C + const and log D_opt = b log C + const. (``isoflop.py``)
- **Approach 3** (parametric loss, §3.3): L(N, D) = E + A / N^alpha + B / D^beta, fitted by
  minimising the Huber loss (delta 1e-3) of log L against
  LSE(a - alpha log N, b - beta log D, e), with A = exp(a), B = exp(b), E = exp(e), by L-BFGS-B from
  the best points of Hoffmann's grid of starts. Implies a = beta / (alpha + beta), b = alpha / (alpha + beta).
  (``parametric.py``)
- **Recurrence**: approach 2 with the recurrence R of a looped model in place of N: R_opt(C) and
  its exponent in C. (``recurrence.py``)

Both profile fits share ``profiles.py`` (budgets, parabolas, bootstrap); ``sweep.py`` runs every fit
that applies to a sweep and writes ``fits.json``; ``numerics.py`` holds the small shared pieces.

Confidence intervals come from a seeded bootstrap over runs (within each budget for the isoFLOP
fits). Too few points raise :class:`FitError` naming what is missing: a fit of five parameters
to four points gives numbers, not evidence.
"""

from parcae_runner.analysis.scaling.isoflop import fit_isoflop
from parcae_runner.analysis.scaling.numerics import FitError
from parcae_runner.analysis.scaling.parametric import BOUNDS, HOFFMANN_GRID, fit_parametric
from parcae_runner.analysis.scaling.profiles import group_budgets
from parcae_runner.analysis.scaling.recurrence import fit_recurrence
from parcae_runner.analysis.scaling.sweep import FITS_FILE, RECURRENCE_COLUMNS, fit_sweep, recurrence_column

__all__ = [
    "BOUNDS",
    "FITS_FILE",
    "HOFFMANN_GRID",
    "RECURRENCE_COLUMNS",
    "FitError",
    "fit_isoflop",
    "fit_parametric",
    "fit_recurrence",
    "fit_sweep",
    "group_budgets",
    "recurrence_column",
]
