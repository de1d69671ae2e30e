"""Reliability diagrams: observed rate against mean predicted probability, per probability bin.

Drawn from the ``calibration`` section of an evaluation report
(``metrics.calibration_report``: per bin the mean predicted probability, the
observed rate of positives and the count). One panel for the pool of every
(record, statement) pair, then one per statement asked for. Figures are plain
``matplotlib.figure.Figure`` objects with an Agg canvas (save them with
``viz.save_figure``); nothing touches pyplot's global state.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import ECGError

PANEL_IN = 3.2  # width and height of one panel in inches
COLUMNS = 4


def plot_reliability(calibration: Mapping, statements: Sequence[str] = (),
                     descriptions: Mapping[str, str] | None = None, title: str | None = None) -> Figure:
    """A reliability diagram per panel: the pool of all statements, then each of ``statements``.

    Each panel plots the observed rate against the mean predicted probability of
    every non-empty bin (the diagonal is perfect calibration), with the share of
    records per bin as bars below, and names its ECE. Panel titles give each
    statement's plain-language description (``descriptions``: code -> text,
    default ``ecglens.statements``; ``{}`` for bare codes).
    """
    reliability = calibration.get("reliability") if isinstance(calibration, Mapping) else None
    if reliability is None:
        raise ECGError(None, "not a calibration report: no 'reliability' section (see metrics.calibration_report)")
    unknown = [s for s in statements if s not in reliability["per_label"]]
    if unknown:
        raise ECGError(None, f"statement(s) {unknown} are not in the calibration report")
    panels = [("all statements (pooled)", reliability["pooled"], calibration.get("ece_mean"), "mean ECE")]
    panels += [(_title(s, descriptions), reliability["per_label"][s], calibration["per_label"][s]["ece"], "ECE")
               for s in statements]
    cols = min(COLUMNS, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(PANEL_IN * cols, PANEL_IN * 1.25 * rows + (0.4 if title else 0)))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[4, 1] * rows, hspace=0.15, wspace=0.3)
    edges = calibration["bin_edges"]
    width = edges[1] - edges[0]
    for i, (name, bins, ece, ece_name) in enumerate(panels):
        r, c = divmod(i, cols)
        ax = fig.add_subplot(grid[2 * r, c])
        hist = fig.add_subplot(grid[2 * r + 1, c], sharex=ax)
        shown = [(m, o) for m, o in zip(bins["mean_predicted"], bins["observed"]) if m is not None]
        ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1)
        if shown:
            ax.plot(*zip(*shown), marker="o", color="tab:blue", linewidth=1.5, markersize=4)
        ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed rate")
        ax.set_title(f"{name}\n{ece_name} {ece:.3f}" if ece is not None else name, fontsize=9)
        ax.tick_params(labelbottom=False)
        total = max(sum(bins["count"]), 1)
        hist.bar(edges[:-1], [n / total for n in bins["count"]], width=width, align="edge", color="0.7",
                 edgecolor="white")
        hist.set(xlabel="mean predicted probability", ylabel="share")
    if title:
        fig.suptitle(title)
    return fig


def _title(code: str, descriptions: Mapping[str, str] | None) -> str:
    if descriptions is None:
        from ..statements import descriptions as shipped

        descriptions = shipped()
    text = descriptions.get(code, "")
    return f"{code}: {text}" if text else code
