"""ECG paper figures at true physical size: 25 mm/s, 10 mm/mV on a pink millimetre grid.

Every figure is built from millimetres: its size in inches is the paper size in
mm / 25.4, and its axes sit at exact mm offsets, so 1 mm of paper is 1 mm of
figure at any dpi. Figures are plain ``matplotlib.figure.Figure`` objects with an
Agg canvas; nothing touches pyplot's global state.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..io.record import ECG

MM_PER_INCH = 25.4
SPEED_MM_S = 25.0  # paper speed of the standard 12-lead printout
GAIN_MM_MV = 10.0  # amplitude scale: 1 mV is 10 mm
BEAT_SPEED_MM_S = 50.0  # beat panels are short, so they are drawn at double speed
CAL_MM = 10.0  # lead-in at the start of each row holding the calibration pulse
CAL_PULSE_S = 0.2  # the pulse is 1 mV high and 200 ms wide
MARGIN_LEFT_MM, MARGIN_RIGHT_MM, MARGIN_TOP_MM, MARGIN_BOTTOM_MM = 5.0, 5.0, 14.0, 8.0
PANEL_GAP_MM = 5.0
COLORBAR_MM = 28.0  # right-hand room for the overlay colour bar and its label
ROW_MM = {"12x1": 25.0, "3x4": 40.0}
COLUMN_S = 2.5  # each column of the 3x4 layout shows 2.5 s
CLINICAL_COLUMNS = (("I", "II", "III"), ("aVR", "aVL", "aVF"), ("V1", "V2", "V3"), ("V4", "V5", "V6"))
RHYTHM_LEAD = "II"
SAVE_FORMATS = (".png", ".pdf", ".svg")

PAPER_COLOR = "#fff7f7"
GRID_MINOR_COLOR = "#f7c3c3"
GRID_MAJOR_COLOR = "#e07b7b"
TRACE_COLOR = "black"

def _ceil5(mm: float) -> float:
    """Round a length in mm up to whole 5 mm squares (so the grid closes on a major line)."""
    return 5.0 * math.ceil(mm / 5.0 - 1e-9)


def paper_size_mm(duration_s: float, layout: str = "12x1", n_leads: int = 12, row_mm: float | None = None) -> tuple[float, float]:
    """Width and height in mm of the figure ``plot_ecg`` draws for a record of this length."""
    if layout not in ROW_MM:
        raise ValueError(f"unknown layout {layout!r}; expected one of {sorted(ROW_MM)}")
    row = ROW_MM[layout] if row_mm is None else float(row_mm)
    shown_s = duration_s if layout == "12x1" else 4 * min(COLUMN_S, duration_s / 4)
    n_rows = n_leads if layout == "12x1" else 4
    grid_w = _ceil5(CAL_MM + shown_s * SPEED_MM_S)
    return MARGIN_LEFT_MM + grid_w + MARGIN_RIGHT_MM, MARGIN_TOP_MM + n_rows * row + MARGIN_BOTTOM_MM


def _new_figure(width_mm: float, height_mm: float) -> Figure:
    fig = Figure(figsize=(width_mm / MM_PER_INCH, height_mm / MM_PER_INCH), facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _add_axes_mm(fig: Figure, left_mm: float, bottom_mm: float, width_mm: float, height_mm: float):
    """An axes placed in mm from the figure's bottom-left corner, with no ticks or spines."""
    fw, fh = (s * MM_PER_INCH for s in fig.get_size_inches())
    ax = fig.add_axes((left_mm / fw, bottom_mm / fh, width_mm / fw, height_mm / fh))
    ax.set_axis_off()
    return ax


def _draw_grid(ax, x0: float, x1: float, y0: float, y1: float, x_minor: float, y_minor: float) -> None:
    """Paper background plus minor lines every ``*_minor`` and major lines every fifth, from (x0, y0)."""
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=PAPER_COLOR, edgecolor="none", zorder=0, gid="paper"))
    for major in (False, True):
        segments = []
        for start, stop, step, vertical in ((x0, x1, x_minor, True), (y0, y1, y_minor, False)):
            for k in range(int(round((stop - start) / step)) + 1):
                if (k % 5 == 0) != major:
                    continue
                pos = start + k * step
                segments.append([(pos, y0), (pos, y1)] if vertical else [(x0, pos), (x1, pos)])
        ax.add_collection(LineCollection(
            segments, colors=GRID_MAJOR_COLOR if major else GRID_MINOR_COLOR,
            linewidths=0.6 if major else 0.25, zorder=1, gid="grid-major" if major else "grid-minor"))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def _footer(fig: Figure, left: str, right: str = "") -> None:
    fw, fh = (s * MM_PER_INCH for s in fig.get_size_inches())
    y = (MARGIN_BOTTOM_MM / 2) / fh
    fig.text(MARGIN_LEFT_MM / fw, y, left, ha="left", va="center", fontsize=7, gid="footer")
    if right:
        fig.text(1 - MARGIN_RIGHT_MM / fw, y, right, ha="right", va="center", fontsize=7, gid="footer-source")


def _header(fig: Figure, title: str, info: str = "") -> None:
    fw, fh = (s * MM_PER_INCH for s in fig.get_size_inches())
    y = 1 - (MARGIN_TOP_MM / 2) / fh
    if title:
        fig.text(MARGIN_LEFT_MM / fw, y, title, ha="left", va="center", fontsize=10, fontweight="bold", gid="title")
    if info:
        fig.text(1 - MARGIN_RIGHT_MM / fw, y, info, ha="right", va="center", fontsize=7, gid="info")


def _record_info(ecg: ECG) -> str:
    """Header line with what the record says about itself: labels, age, sex."""
    parts = []
    if ecg.labels is not None:
        parts.append("labels: " + (", ".join(ecg.labels) if ecg.labels else "(none mapped)"))
    for key in ("age", "sex"):
        if ecg.metadata.get(key) not in (None, ""):
            parts.append(f"{key} {ecg.metadata[key]}")
    return "    ".join(parts)


def save_figure(fig: Figure, path: str | os.PathLike, dpi: float = 150) -> Path:
    """Write ``fig`` to a .png/.pdf/.svg file at its physical size (parent folder created)."""
    out = Path(path)
    if out.suffix.lower() not in SAVE_FORMATS:
        raise ValueError(f"{out}: unsupported figure type {out.suffix or '(no suffix)'!r}; use one of {', '.join(SAVE_FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, facecolor=fig.get_facecolor())
    return out


def _layout_rows(ecg: ECG, layout: str) -> tuple[list[list[tuple[str, float, float]]], float]:
    """Rows of (lead, start_s, end_s) cells, and the seconds of record shown per row."""
    if layout == "12x1":
        return [[(lead, 0.0, ecg.duration)] for lead in ecg.leads], ecg.duration
    col_s = min(COLUMN_S, ecg.duration / 4)
    rows = [[(CLINICAL_COLUMNS[c][r], c * col_s, (c + 1) * col_s) for c in range(4)] for r in range(3)]
    rows.append([(RHYTHM_LEAD, 0.0, 4 * col_s)])
    return rows, 4 * col_s


def _check_shade(shade: Sequence, leads: Sequence[str], duration: float) -> tuple[str | None, float, float, str, object]:
    if len(shade) != 5:
        raise ValueError(f"shade {shade!r}: expected (lead or None, start_s, end_s, label, color)")
    lead, start, end, label, color = shade
    if lead is not None and lead not in leads:
        raise ValueError(f"shade {shade!r}: unknown lead {lead!r}; leads are {list(leads)}")
    start, end = float(start), float(end)
    if not end > start:
        raise ValueError(f"shade {shade!r}: end_s must be after start_s")
    if end <= 0 or start >= duration:
        raise ValueError(f"shade {shade!r}: window lies outside the record (0-{duration:g} s)")
    return lead, start, end, "" if label is None else str(label), color


def plot_ecg(
    ecg: ECG,
    path: str | os.PathLike | None = None,
    *,
    layout: str = "12x1",
    title: str | None = None,
    shade: Sequence[tuple] | None = None,
    row_mm: float | None = None,
    dpi: float = 150,
) -> Figure:
    """Draw an ECG on standard paper (25 mm/s, 10 mm/mV) at true size; save it when ``path`` is given.

    ``layout="12x1"`` gives one row per lead of the record, whatever its leads, for
    the whole record; ``"3x4"`` is the clinical printout of ``ecg.standard12()`` (missing
    limb leads derived; an ECGError names other missing leads): four 2.5-s columns
    (I-III, aVR-aVF, V1-V3, V4-V6) of the same 10 s plus a lead II rhythm strip. Each row starts with a 1 mV x 200 ms
    calibration pulse. Signals not in mV are drawn at 10 mm per unit and the
    footer says "a.u.". ``shade`` highlights windows ``(lead or None, start_s,
    end_s, label, color)``; ``None`` shades every lead. The drawing coordinates
    are mm of paper: a trace is ``baseline + signal * 10`` at ``x = 10 + t * 25``.
    """
    if layout not in ROW_MM:
        raise ValueError(f"unknown layout {layout!r}; expected one of {sorted(ROW_MM)}")
    row_h = ROW_MM[layout] if row_mm is None else float(row_mm)
    if layout == "3x4":
        ecg = ecg.standard12()
    rows, shown_s = _layout_rows(ecg, layout)
    shades = [_check_shade(s, ecg.leads, ecg.duration) for s in (shade or ())]
    in_mv = ecg.units.strip().lower() == "mv"
    unit = "mV" if in_mv else "a.u."
    fs = float(ecg.sampling_rate)
    signal = np.asarray(ecg.signal, dtype=np.float64)

    width_mm, height_mm = paper_size_mm(ecg.duration, layout, len(rows) if layout == "12x1" else 12, row_h)
    grid_w = width_mm - MARGIN_LEFT_MM - MARGIN_RIGHT_MM
    grid_h = len(rows) * row_h
    fig = _new_figure(width_mm, height_mm)
    ax = _add_axes_mm(fig, MARGIN_LEFT_MM, MARGIN_BOTTOM_MM, grid_w, grid_h)
    _draw_grid(ax, 0.0, grid_w, 0.0, grid_h, 1.0, 1.0)

    baseline_off = _ceil5(0.4 * row_h - 2.5)  # a major line a little below the row's middle
    cal_w = CAL_PULSE_S * SPEED_MM_S
    cal_x0 = (CAL_MM - cal_w) / 2
    for r, cells in enumerate(rows):
        bottom = grid_h - (r + 1) * row_h
        base = bottom + baseline_off
        ax.plot([0, cal_x0, cal_x0, cal_x0 + cal_w, cal_x0 + cal_w, CAL_MM],
                [base, base, base + GAIN_MM_MV, base + GAIN_MM_MV, base, base],
                color=TRACE_COLOR, linewidth=0.9, solid_joinstyle="miter", zorder=3, gid=f"calibration:{r}")
        is_rhythm = layout == "3x4" and r == len(rows) - 1
        for c, (lead, t0, t1) in enumerate(cells):
            i0 = int(round(t0 * fs))
            i1 = ecg.n_samples if t1 >= ecg.duration else int(round(t1 * fs))
            idx = np.arange(i0, i1)
            x = CAL_MM + idx / fs * SPEED_MM_S
            y = base + signal[ecg.leads.index(lead), i0:i1] * GAIN_MM_MV
            ax.plot(x, y, color=TRACE_COLOR, linewidth=0.7, zorder=3,
                    gid=f"{'rhythm' if is_rhythm else 'lead'}:{lead}")
            x_start = CAL_MM + t0 * SPEED_MM_S
            ax.text(x_start + 1.0, bottom + row_h - 1.0, lead, ha="left", va="top", fontsize=9,
                    fontweight="bold", zorder=4, gid=f"label:{lead}",
                    bbox=dict(boxstyle="square,pad=0.1", facecolor=PAPER_COLOR, edgecolor="none", alpha=0.8))
            if c > 0:  # the small bar that marks where one lead's column ends and the next begins
                ax.plot([x_start, x_start], [base - 2.5, base + 2.5], color=TRACE_COLOR, linewidth=0.9,
                        zorder=3, gid="separator")

    for lead, start, end, label, color in shades:
        _draw_shade(ax, rows, row_h, grid_h, layout, ecg.duration, shown_s, lead, start, end, label, color)

    notes = f"{SPEED_MM_S:g} mm/s  {GAIN_MM_MV:g} mm/{unit}  {fs:g} Hz"
    if not in_mv:
        notes += f"  (signal units {ecg.units!r}, not mV)"
    if shown_s < ecg.duration - 0.5 / fs:
        notes += f"  (first {shown_s:g} s of {ecg.duration:g} s shown)"
    source_name = Path(ecg.source).name if ecg.source else ""
    _footer(fig, notes, source_name)
    _header(fig, source_name if title is None else title, _record_info(ecg))
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig


def _draw_shade(ax, rows, row_h, grid_h, layout, duration, shown_s, lead, start, end, label, color) -> None:
    """Translucent spans over the cells where ``lead`` (or every lead) is drawn during [start, end]."""
    spans = []  # (bottom, top, t0, t1) in mm / s
    for r, cells in enumerate(rows):
        bottom = grid_h - (r + 1) * row_h
        for cell_lead, t0, t1 in cells:
            if lead is not None and cell_lead != lead:
                continue
            lo, hi = max(start, t0), min(end, t1)
            if hi > lo:
                spans.append((bottom, bottom + row_h, lo, hi))
    if not spans:
        where = [f"{t0:g}-{t1:g} s" for cells in rows for cl, t0, t1 in cells if cl == lead]
        raise ValueError(f"shade ({lead!r}, {start:g}, {end:g}) is not visible in the {layout} layout "
                         f"({lead} shows {', '.join(where)}); use layout='12x1'")
    for i, (bottom, top, lo, hi) in enumerate(spans):
        x0 = CAL_MM + lo * SPEED_MM_S
        ax.add_patch(Rectangle((x0, bottom), (hi - lo) * SPEED_MM_S, top - bottom, facecolor=color,
                               edgecolor="none", alpha=0.25, zorder=2, gid=f"shade:{lead or '*'}"))
        if label and i == 0:
            ax.text(x0 + 0.5, top - 1.0, label, ha="left", va="top", fontsize=6, color=color,
                    zorder=4, gid="shade-label")


def _panel_positions(n_leads: int) -> tuple[int, int, list[tuple[int, int]]]:
    """Rows, columns and (row, column) of each lead: three rows filled column by column (the clinical grouping)."""
    n_rows = min(3, n_leads)
    n_cols = math.ceil(n_leads / 3)
    return n_rows, n_cols, [(i % 3, i // 3) for i in range(n_leads)]


def _beat_panels(n_leads: int, n_samples: int, sampling_rate: float, lo: float, hi: float,
                 speed: float, extra_right_mm: float, start_s: float):
    """A figure of lead panels on paper (seconds x mV data coordinates at physical scale) and their axes."""
    n_rows, n_cols, where = _panel_positions(n_leads)
    y_lo = 0.5 * math.floor((lo - 0.05) / 0.5)
    y_hi = 0.5 * math.ceil((hi + 0.05) / 0.5)
    panel_w = _ceil5(n_samples / sampling_rate * speed)
    panel_h = (y_hi - y_lo) * GAIN_MM_MV
    grid_w = n_cols * panel_w + (n_cols - 1) * PANEL_GAP_MM
    grid_h = n_rows * panel_h + (n_rows - 1) * PANEL_GAP_MM
    fig = _new_figure(MARGIN_LEFT_MM + grid_w + MARGIN_RIGHT_MM + extra_right_mm,
                      MARGIN_TOP_MM + grid_h + MARGIN_BOTTOM_MM)
    axes = []
    for r, c in where:
        left = MARGIN_LEFT_MM + c * (panel_w + PANEL_GAP_MM)
        bottom = MARGIN_BOTTOM_MM + (n_rows - 1 - r) * (panel_h + PANEL_GAP_MM)
        ax = _add_axes_mm(fig, left, bottom, panel_w, panel_h)
        _draw_grid(ax, start_s, start_s + panel_w / speed, y_lo, y_hi, 1.0 / speed, 1.0 / GAIN_MM_MV)
        axes.append(ax)
    return fig, axes, (MARGIN_LEFT_MM + grid_w, MARGIN_BOTTOM_MM, grid_h)


def _check_leads(array: np.ndarray, leads: Sequence[str], what: str, axis: int) -> None:
    if array.shape[axis] != len(leads):
        raise ValueError(f"{what} has {array.shape[axis]} leads (shape {array.shape}) but {len(leads)} lead names were given")


def plot_beats(
    median_beat: np.ndarray,
    sampling_rate: float,
    leads: Sequence[str],
    beats: np.ndarray | None = None,
    path: str | os.PathLike | None = None,
    title: str | None = None,
    *,
    start_s: float = 0.0,
    speed_mm_s: float = BEAT_SPEED_MM_S,
    dpi: float = 150,
) -> Figure:
    """One paper panel per lead: individual ``beats`` (k, leads, n) in light grey, the median beat (leads, n) on top.

    Panels share one mV scale (10 mm/mV) and are drawn at ``speed_mm_s``
    (50 mm/s by default: a beat is short); ``start_s`` is the time of the first
    sample (e.g. negative when the window starts before the R peak).
    """
    median = np.asarray(median_beat, dtype=np.float64)
    if median.ndim != 2:
        raise ValueError(f"median_beat must be (leads, samples), got shape {median.shape}")
    _check_leads(median, leads, "median_beat", 0)
    stack = None
    if beats is not None:
        stack = np.asarray(beats, dtype=np.float64)
        if stack.ndim != 3 or stack.shape[1:] != median.shape:
            raise ValueError(f"beats must be (k, {median.shape[0]}, {median.shape[1]}) like the median, got shape {stack.shape}")
    fs = float(sampling_rate)
    every = median if stack is None or len(stack) == 0 else np.concatenate([median[None], stack])
    fig, axes, _ = _beat_panels(len(leads), median.shape[1], fs, float(np.nanmin(every)), float(np.nanmax(every)),
                                speed_mm_s, 0.0, start_s)
    t = start_s + np.arange(median.shape[1]) / fs
    for i, (ax, lead) in enumerate(zip(axes, leads)):
        if stack is not None and len(stack):
            ax.add_collection(LineCollection([np.column_stack([t, b[i]]) for b in stack], colors="#9a9a9a",
                                             linewidths=0.5, alpha=0.6, zorder=2, gid="beats"))
        ax.plot(t, median[i], color=TRACE_COLOR, linewidth=1.0, zorder=3, gid=f"median:{lead}")
        ax.text(0.02, 0.97, lead, transform=ax.transAxes, ha="left", va="top", fontsize=9, fontweight="bold", zorder=4)
    n_beats = 0 if stack is None else len(stack)
    notes = f"{speed_mm_s:g} mm/s  {GAIN_MM_MV:g} mm/mV  {fs:g} Hz"
    notes += f"  median beat (black) over {n_beats} beats (grey)" if n_beats else "  median beat"
    _footer(fig, notes)
    _header(fig, title or "")
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig


def plot_overlay(
    beats_sequence: np.ndarray,
    sampling_rate: float,
    leads: Sequence[str],
    values: Sequence[float],
    cmap: str = "viridis",
    colorbar_label: str = "",
    path: str | os.PathLike | None = None,
    title: str | None = None,
    segments: Sequence[tuple[str, float, float]] | None = None,
    *,
    start_s: float = 0.0,
    speed_mm_s: float = BEAT_SPEED_MM_S,
    dpi: float = 150,
) -> Figure:
    """Overlay a sequence of beats (m, leads, n), beat j coloured by ``values[j]``, one paper panel per lead.

    Used to show how a beat changes along a factor traversal or a score sweep.
    ``segments`` shades named time windows ``(name, start_s, end_s)`` (e.g. QRS, ST) in every panel.
    """
    seq = np.asarray(beats_sequence, dtype=np.float64)
    vals = np.asarray(values, dtype=np.float64).ravel()
    if seq.ndim != 3:
        raise ValueError(f"beats_sequence must be (m, leads, samples), got shape {seq.shape}")
    _check_leads(seq, leads, "beats_sequence", 1)
    if len(vals) != len(seq):
        raise ValueError(f"{len(vals)} values for {len(seq)} beats; need one value per beat")
    if len(seq) == 0:
        raise ValueError("beats_sequence holds no beats")
    segs = [(str(n), float(a), float(b)) for n, a, b in (segments or ())]
    for name, a, b in segs:
        if not b > a:
            raise ValueError(f"segment {name!r}: end_s must be after start_s")
    fs = float(sampling_rate)
    fig, axes, (grid_right, grid_bottom, grid_h) = _beat_panels(
        len(leads), seq.shape[2], fs, float(np.nanmin(seq)), float(np.nanmax(seq)), speed_mm_s, COLORBAR_MM, start_s)
    lo, hi = float(vals.min()), float(vals.max())
    norm = Normalize(vmin=lo - 0.5, vmax=hi + 0.5) if lo == hi else Normalize(vmin=lo, vmax=hi)
    colormap = colormaps[cmap]
    colors = colormap(norm(vals))
    t = start_s + np.arange(seq.shape[2]) / fs
    seg_colors = colormaps["tab10"].colors
    for i, (ax, lead) in enumerate(zip(axes, leads)):
        for k, (name, a, b) in enumerate(segs):
            ax.axvspan(a, b, facecolor=seg_colors[k % len(seg_colors)], alpha=0.15, zorder=1.5, gid=f"segment:{name}")
            if i % 3 == 0:  # names once per column, on the top panel
                ax.text((a + b) / 2, 0.03, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                        fontsize=6, color=seg_colors[k % len(seg_colors)], zorder=4)
        ax.add_collection(LineCollection([np.column_stack([t, beat[i]]) for beat in seq], colors=colors,
                                         linewidths=0.9, zorder=3, gid=f"overlay:{lead}"))
        ax.text(0.02, 0.97, lead, transform=ax.transAxes, ha="left", va="top", fontsize=9, fontweight="bold", zorder=4)
    cax = _add_axes_mm(fig, grid_right + 6.0, grid_bottom, 4.0, grid_h)
    cax.set_axis_on()
    fig.colorbar(ScalarMappable(norm=norm, cmap=colormap), cax=cax, label=colorbar_label)
    cax.tick_params(labelsize=7)
    cax.yaxis.label.set_size(8)
    _footer(fig, f"{speed_mm_s:g} mm/s  {GAIN_MM_MV:g} mm/mV  {fs:g} Hz  {len(seq)} beats")
    _header(fig, title or "")
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig
