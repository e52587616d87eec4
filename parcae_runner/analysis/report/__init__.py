"""The comparison report of a sweep: ``results/<sweep>/report/index.html`` and its PNG plots.

``build_report(sweep_root)`` collects the sweep (``analysis/collect.py``: one row per run and
evaluated step) unless a table is passed, then writes one self-contained folder that works offline
(no CDN, no JavaScript needed) with:

- validation and training loss against steps, tokens and FLOPs: one colour per architecture, one
  line style per size, the mean over seeds with a min-max band and a +-1 std band;
- final validation loss by architecture x size (table: mean, std, min, max, seeds; bar chart with
  every seed) and the seed-to-seed spread, at the end and along training;
- energy and CO2 per run and per architecture, and tokens per kWh;
- when a ``*recurrence*`` column is present: loss against the recurrence R per FLOP budget (final
  losses for an isoFLOP design, else read off the curves at matched FLOPs);
- when several sizes share a FLOP budget (isoFLOP): loss against parameters per budget, with the
  parabola in log N of ``analysis/scaling`` (Chinchilla approach 2), and the compute-optimal
  frontier;
- every ``eval/...`` metric against steps.

A configuration is architecture x size x the other swept settings (dotted columns such as
``arch.mean_recurrence`` that differ between runs); seeds are its replicates, so a swept setting
never passes for seed noise.

Every number in a table is rendered from the DataFrame by one formatter per kind, and carries its
exact value in ``data-value`` (``repr`` of the float), so a test can compare the page with the
table. The folder is built beside the old one and swapped in, so a reader never sees half a report.

Modules: ``build.py`` (the folder and the order of sections), ``sources.py`` (what is read from the sweep
folder), ``context.py`` (what every section reads), ``tables.py`` (the numbers), ``plots.py`` (figure
drawing), ``markup.py`` and ``page.py`` (HTML), and one module per section: ``overview``, ``curves``,
``final_loss``, ``energy``, ``recurrence``, ``isoflop``, ``evals``.
"""

from parcae_runner.analysis.report.build import INDEX, REPORT_DIR, REQUIRED, build_report, render_sections
from parcae_runner.analysis.report.isoflop import FIT_NAME, isoflop_fits, isoflop_points
from parcae_runner.analysis.report.markup import Col, fmt, html_table, raw
from parcae_runner.analysis.report.page import CSS, SELF_CHECK_JS, render_html
from parcae_runner.analysis.report.plots import DPI, LINESTYLES, MARKERS, Plots
from parcae_runner.analysis.report.recurrence import recurrence_table
from parcae_runner.analysis.report.tables import (
    BUDGET_TOLERANCE,
    add_configs,
    budget_bins,
    energy_summary,
    final_loss_summary,
    final_runs,
    variant_columns,
)

__all__ = [
    "BUDGET_TOLERANCE",
    "CSS",
    "DPI",
    "FIT_NAME",
    "INDEX",
    "LINESTYLES",
    "MARKERS",
    "REPORT_DIR",
    "REQUIRED",
    "SELF_CHECK_JS",
    "Col",
    "Plots",
    "add_configs",
    "budget_bins",
    "build_report",
    "energy_summary",
    "final_loss_summary",
    "final_runs",
    "fmt",
    "html_table",
    "isoflop_fits",
    "isoflop_points",
    "raw",
    "recurrence_table",
    "render_html",
    "render_sections",
    "variant_columns",
]
