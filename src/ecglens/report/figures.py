"""The report's figures as inline SVG on ECG paper (and explanation drawers as inline PNG).

Every SVG is drawn in millimetres of paper (``width``/``height`` in mm, a
``viewBox`` in mm), so a printed page is at true size: ``speed`` mm/s and
``gain`` mm/mV, on a 1 mm / 5 mm grid drawn with one SVG pattern. Traces are
paths in 0.01 mm steps written as relative moves, which keeps a 10-s, 500-Hz
printout near 150 kB. Nothing here reads a model.
"""
from __future__ import annotations

import base64
import itertools
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path

import numpy as np

SPEED_MM_S = 25.0
GAIN_MM_MV = 10.0
ZOOM_SPEED_MM_S = 50.0  # median beats and matched windows are short: drawn at double speed
CLINICAL_COLUMNS = (("I", "II", "III"), ("aVR", "aVL", "aVF"), ("V1", "V2", "V3"), ("V4", "V5", "V6"))
RHYTHM_LEAD = "II"
LABEL_MM = 8.0  # room at the left of each row for the calibration pulse
PAD_MM = 2.0
BEAT_RANGE_MV = 5.0  # beat panels span at most -5..+5 mV; larger deflections are clipped at the panel's edge
MAX_COLUMN_MM = 90.0  # a matched window wider than this at the zoomed speed is drawn at 25 mm/s
GRID_MINOR, GRID_MAJOR, PAPER, TRACE = "#f5c6c6", "#e08a8a", "#fff8f8", "#111"
SHADE_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _grid_defs(uid: str) -> str:
    return (f'<defs><pattern id="g{uid}" width="5" height="5" patternUnits="userSpaceOnUse">'
            f'<rect width="5" height="5" fill="{PAPER}"/>'
            f'<path d="M1 0V5M2 0V5M3 0V5M4 0V5M0 1H5M0 2H5M0 3H5M0 4H5" stroke="{GRID_MINOR}" stroke-width="0.08"/>'
            f'<path d="M0 0V5M0 0H5" stroke="{GRID_MAJOR}" stroke-width="0.18"/></pattern></defs>')


class Paper:
    """One SVG sheet of ECG paper, ``width`` x ``height`` mm; ``add_*`` draw onto it, ``svg()`` closes it."""

    _ids = itertools.count()

    def __init__(self, width: float, height: float, title: str = "", role: str = "ecg"):
        self.uid = str(next(Paper._ids))
        self.width, self.height = _ceil5(width), _ceil5(height)
        self.parts: list[str] = [f'<rect width="{self.width:g}" height="{self.height:g}" fill="url(#g{self.uid})"/>']
        self.title, self.role = title, role

    def trace(self, x0: float, baseline: float, values: np.ndarray, rate: float, speed: float, gain: float,
              color: str = TRACE, width: float = 0.25, opacity: float = 1.0,
              clip: tuple[float, float] | None = None) -> None:
        """A signal in mV starting at ``x0`` mm, zero at ``baseline`` mm from the top, clipped to ``clip``
        (top, bottom in mm; by default the sheet) as a paper printout clips a trace at its edge."""
        v = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(v)
        if not finite.any():
            return
        v = np.where(finite, v, 0.0)
        xs = np.round((x0 + np.arange(len(v)) / float(rate) * speed) * 100).astype(np.int64)
        top, bottom = clip or (0.0, self.height)
        ys = np.round(np.clip(baseline - v * gain, top, bottom) * 100).astype(np.int64)
        steps = np.column_stack([np.diff(xs), np.diff(ys)]).ravel()
        d = f"M{xs[0]} {ys[0]}l" + " ".join(map(str, steps.tolist()))
        extra = f' stroke-opacity="{opacity:g}"' if opacity < 1 else ""
        self.parts.append(f'<path d="{d}" transform="scale(0.01)" fill="none" stroke="{color}" '
                          f'stroke-width="{width * 100:g}" stroke-linejoin="round"{extra}/>')

    def pulse(self, x0: float, baseline: float, gain: float, speed: float) -> None:
        """The 1 mV x 200 ms calibration pulse."""
        w = 0.2 * speed
        self.parts.append(f'<path d="M{x0:.2f} {baseline:.2f}h1v{-gain:.2f}h{w:.2f}v{gain:.2f}h1" fill="none" '
                          f'stroke="{TRACE}" stroke-width="0.3"/>')

    def text(self, x: float, y: float, text: str, size: float = 3.0, color: str = TRACE, anchor: str = "start",
             bold: bool = False) -> None:
        weight = ' font-weight="bold"' if bold else ""
        self.parts.append(f'<text x="{x:.2f}" y="{y:.2f}" font-size="{size:g}" fill="{color}" '
                          f'text-anchor="{anchor}"{weight}>{escape(text)}</text>')

    def shade(self, x0: float, x1: float, y0: float, y1: float, color: str, label: str = "") -> None:
        self.parts.append(f'<rect x="{x0:.2f}" y="{y0:.2f}" width="{max(x1 - x0, 0.1):.2f}" height="{y1 - y0:.2f}" '
                          f'fill="{color}" fill-opacity="0.18"/>')
        if label:
            self.text(x0 + 0.5, y0 + 3, label, 2.4, color)

    def vline(self, x: float, y0: float, y1: float, color: str, label: str = "", lift: float = 0.0) -> None:
        self.parts.append(f'<path d="M{x:.2f} {y0:.2f}V{y1:.2f}" stroke="{color}" stroke-width="0.3" '
                          f'stroke-dasharray="1 0.6"/>')
        if label:
            self.text(x, y0 - 0.6 - lift, label, 2.2, color, "middle")

    def svg(self, caption: str = "") -> str:
        label = escape(caption or self.title, quote=True)
        return (f'<svg xmlns="http://www.w3.org/2000/svg" class="paper" data-role="{self.role}" '
                f'width="{self.width:g}mm" height="{self.height:g}mm" viewBox="0 0 {self.width:g} {self.height:g}" '
                f'role="img" aria-label="{label}" font-family="sans-serif">{_grid_defs(self.uid)}'
                + "".join(self.parts) + "</svg>")


def _ceil5(mm: float) -> float:
    return 5.0 * math.ceil(mm / 5.0 - 1e-9)


def ecg_paper_svg(signal: np.ndarray, rate: float, leads: Sequence[str], *, speed: float = SPEED_MM_S,
                  gain: float = GAIN_MM_MV, row_mm: float = 30.0, units: str = "mV") -> str:
    """The clinical printout: four 2.5-s columns (I-III, aVR-aVF, V1-V3, V4-V6) and a lead II rhythm strip
    of the whole record when the record has the 12 standard leads; otherwise one row per lead."""
    x = np.asarray(signal, dtype=np.float64)
    leads = list(leads)
    duration = x.shape[1] / float(rate)
    standard = all(lead in leads for col in CLINICAL_COLUMNS for lead in col)
    if standard:
        col_s = min(2.5, duration / 4)
        rows = [[(CLINICAL_COLUMNS[c][r], c * col_s, (c + 1) * col_s) for c in range(4)] for r in range(3)]
        rows.append([(RHYTHM_LEAD, 0.0, 4 * col_s if duration <= 10.5 else duration)])
    else:
        rows = [[(lead, 0.0, duration)] for lead in leads]
    shown = max(cells[-1][2] for cells in rows)
    paper = Paper(LABEL_MM + shown * speed + PAD_MM, len(rows) * row_mm + 6,
                  f"12-lead ECG, {speed:g} mm/s, {gain:g} mm/{units}", "ecg")
    for r, cells in enumerate(rows):
        base = r * row_mm + row_mm * 0.6
        paper.pulse(1.0, base, gain, speed)
        for c, (lead, t0, t1) in enumerate(cells):
            i0, i1 = int(round(t0 * rate)), min(x.shape[1], int(round(t1 * rate)) + 1)
            x0 = LABEL_MM + t0 * speed
            paper.trace(x0, base, x[leads.index(lead), i0:i1], rate, speed, gain)
            paper.text(x0 + 1, r * row_mm + 4, lead, 3.2, bold=True)
            if c:
                paper.parts.append(f'<path d="M{x0:.2f} {base - 2:.2f}v4" stroke="{TRACE}" stroke-width="0.3"/>')
    paper.text(LABEL_MM, paper.height - 1.5, f"{speed:g} mm/s   {gain:g} mm/{units}   {rate:g} Hz"
               + ("   rhythm strip: lead II" if standard else ""), 2.6, "#444")
    return paper.svg()


def beat_svg(beat: np.ndarray, rate: float, r_index: int, leads: Sequence[str],
             marks: Sequence[tuple[str, float]] = (), *, speed: float = ZOOM_SPEED_MM_S, gain: float = GAIN_MM_MV,
             overlay: np.ndarray | None = None, title: str = "") -> str:
    """A median beat, one panel per lead (three rows, columns of the clinical grouping), with vertical
    ``marks`` (name, ms from R) such as the fiducials; ``overlay`` (k, leads, n) draws beats in grey below it."""
    b = np.asarray(beat, dtype=np.float64)
    every = b if overlay is None or not len(overlay) else np.concatenate([b[None], overlay])
    lo = min(-0.5, max(-BEAT_RANGE_MV, 0.5 * math.floor((np.nanmin(every) - 0.1) / 0.5)))
    hi = max(0.5, min(BEAT_RANGE_MV, 0.5 * math.ceil((np.nanmax(every) + 0.1) / 0.5)))
    panel_w, panel_h = b.shape[1] / float(rate) * speed, (hi - lo) * gain
    n_cols = math.ceil(len(leads) / 3)
    gap, top = 3.0, 7.0
    paper = Paper(n_cols * (panel_w + gap) + PAD_MM, top + min(3, len(leads)) * (panel_h + gap) + 5, title, "beat")
    for i, lead in enumerate(leads):
        r, c = i % 3, i // 3
        x0, y0 = PAD_MM + c * (panel_w + gap), top + r * (panel_h + gap)
        base = y0 + hi * gain
        for k, (name, ms) in enumerate(marks):
            x = x0 + (r_index / rate + ms / 1e3) * speed
            paper.vline(x, y0, y0 + panel_h, SHADE_COLORS[k % len(SHADE_COLORS)], name if r == 0 else "",
                        lift=2.4 * (k % 2))
        box = (y0, y0 + panel_h)
        if overlay is not None:
            for other in overlay:
                paper.trace(x0, base, other[i], rate, speed, gain, "#999", 0.15, 0.6, clip=box)
        paper.trace(x0, base, b[i], rate, speed, gain, width=0.35, clip=box)
        paper.text(x0 + 1, y0 + 3.5, lead, 3.0, bold=True)
    paper.text(PAD_MM, paper.height - 1.5, f"{speed:g} mm/s   {gain:g} mm/mV", 2.6, "#444")
    return paper.svg()


def window_svg(signal: np.ndarray, rate: float, leads: Sequence[str], start_s: float, end_s: float, *,
               context_s: float = 0.25, label: str = "", color: str = SHADE_COLORS[0],
               speed: float = ZOOM_SPEED_MM_S, gain: float = GAIN_MM_MV, row_mm: float = 15.0,
               max_short_s: float = 3.0) -> str:
    """A zoomed window [start_s, end_s] of a record, shaded, with ``context_s`` on each side: every lead in two
    columns (limb, chest) when the window is short, lead II alone when it spans most of a record; at ``speed``
    unless a column would be wider than ``MAX_COLUMN_MM``, then at 25 mm/s."""
    x = np.asarray(signal, dtype=np.float64)
    leads = list(leads)
    duration = x.shape[1] / float(rate)
    long_window = end_s - start_s > max_short_s
    if long_window:
        t0, t1 = max(0.0, start_s), min(duration, end_s)
        columns = [[RHYTHM_LEAD if RHYTHM_LEAD in leads else leads[0]]]
    else:
        t0, t1 = max(0.0, start_s - context_s), min(duration, end_s + context_s)
        half = (len(leads) + 1) // 2
        columns = [leads[:half], leads[half:]] if len(leads) > 1 else [leads]
    if long_window or (t1 - t0) * speed > MAX_COLUMN_MM:
        speed = min(speed, SPEED_MM_S)
    width = (t1 - t0) * speed
    n_rows = max(len(c) for c in columns)
    paper = Paper(len(columns) * (width + 3) + PAD_MM, n_rows * row_mm + 6, label, "window")
    i0, i1 = int(round(t0 * rate)), min(x.shape[1], int(round(t1 * rate)) + 1)
    for c, col in enumerate(columns):
        x0 = PAD_MM + c * (width + 3)
        paper.shade(x0 + (max(start_s, t0) - t0) * speed, x0 + (min(end_s, t1) - t0) * speed, 0,
                    n_rows * row_mm, color)
        for r, lead in enumerate(col):
            base = r * row_mm + row_mm * 0.6
            paper.trace(x0, base, x[leads.index(lead), i0:i1], rate, speed, gain)
            paper.text(x0 + 0.8, r * row_mm + 3.5, lead, 2.8, bold=True)
    paper.text(PAD_MM, paper.height - 1.5, f"{t0:.2f}-{t1:.2f} s   {speed:g} mm/s   {gain:g} mm/mV", 2.4, "#444")
    return paper.svg(label)


def record_window_svg(signal: np.ndarray, rate: float, leads: Sequence[str], start_s: float, end_s: float,
                      marks: Sequence[tuple[float, float, str, str]] = (), *, gain: float = GAIN_MM_MV,
                      max_width_mm: float = 250.0, row_mm: float = 22.0, label: str = "") -> str:
    """Lead II of a whole (long) record with one window [start_s, end_s] outlined (the window a statement was
    decided by) and ``marks`` (start_s, end_s, colour, label) shaded inside it; at 25 mm/s, or slower so that
    the strip is at most ``max_width_mm`` wide (the speed is printed below it)."""
    x = np.asarray(signal, dtype=np.float64)
    leads = list(leads)
    lead = RHYTHM_LEAD if RHYTHM_LEAD in leads else leads[0]
    duration = x.shape[1] / float(rate)
    speed = min(SPEED_MM_S, max_width_mm / max(duration, 1e-9))
    top = 5.0
    paper = Paper(LABEL_MM + duration * speed + PAD_MM, top + row_mm + 6, label, "record-window")
    base = top + row_mm * 0.6
    x0 = LABEL_MM
    w0, w1 = x0 + max(0.0, start_s) * speed, x0 + min(duration, end_s) * speed
    paper.parts.append(f'<rect x="{w0:.2f}" y="{top:.2f}" width="{max(w1 - w0, 0.1):.2f}" height="{row_mm:.2f}" '
                       f'fill="none" stroke="{TRACE}" stroke-width="0.5" stroke-dasharray="1.5 0.8"/>')
    paper.text(w0 + 0.5, top - 1.2, f"deciding window {start_s:.2f}-{end_s:.2f} s", 2.4)
    for k, (m0, m1, color, name) in enumerate(marks):
        y = top + 0.6 + (k % 3) * 1.2
        paper.shade(x0 + max(0.0, m0) * speed, x0 + min(duration, m1) * speed, top, top + row_mm, color)
        paper.parts.append(f'<path d="M{x0 + max(0.0, m0) * speed:.2f} {y:.2f}H{x0 + min(duration, m1) * speed:.2f}" '
                           f'stroke="{color}" stroke-width="0.8"/>')
        if name:
            paper.text(x0 + max(0.0, m0) * speed + 0.5, y + 2.6, name, 2.2, color)
    paper.pulse(1.0, base, gain, speed)
    paper.trace(x0, base, x[leads.index(lead)], rate, speed, gain, clip=(top, top + row_mm))
    paper.text(x0 + 1, top + row_mm - 1.5, lead, 3.0, bold=True)
    paper.text(LABEL_MM, paper.height - 1.5, f"0-{duration:.1f} s   {speed:.3g} mm/s   {gain:g} mm/mV   lead {lead}",
               2.4, "#444")
    return paper.svg(label)


def percentile_svg(rows: Sequence[tuple[str, float, bool]], width: float = 120.0) -> str:
    """One line per factor (label, percentile 0-100, highlighted): the population from 0 to 100 with its
    median marked, and this record as a dot."""
    h = 5.0
    left = 22.0
    total_h = len(rows) * h + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="percentiles" width="{left + width + 14:g}mm" '
             f'height="{total_h:g}mm" viewBox="0 0 {left + width + 14:g} {total_h:g}" role="img" '
             f'aria-label="factor percentiles of this record" font-family="sans-serif">']
    for i, (label, pct, hot) in enumerate(rows):
        y = 4 + i * h + h / 2
        color, weight = ("#c62828", ' font-weight="bold"') if hot else ("#1f4e79", "")
        parts.append(f'<text x="{left - 1:g}" y="{y + 1:.2f}" font-size="2.8" text-anchor="end"{weight}>'
                     f'{escape(label)}</text>'
                     f'<path d="M{left:g} {y:.2f}h{width:g}" stroke="#bbb" stroke-width="0.6"/>'
                     f'<path d="M{left + width / 2:g} {y - 1.5:.2f}v3" stroke="#777" stroke-width="0.3"/>'
                     f'<circle cx="{left + width * pct / 100:.2f}" cy="{y:.2f}" r="1.3" fill="{color}"/>'
                     f'<text x="{left + width + 2:g}" y="{y + 1:.2f}" font-size="2.6">P{pct:.0f}</text>')
    parts.append(f'<text x="{left:g}" y="{total_h - 0.8:g}" font-size="2.4" fill="#444">0</text>'
                 f'<text x="{left + width / 2:g}" y="{total_h - 0.8:g}" font-size="2.4" fill="#444" '
                 f'text-anchor="middle">population median</text>'
                 f'<text x="{left + width:g}" y="{total_h - 0.8:g}" font-size="2.4" fill="#444" '
                 f'text-anchor="end">100th percentile</text></svg>')
    return "".join(parts)


def drawn_png(draw: Callable[[Path], None], workdir: str | os.PathLike) -> str:
    """Run an explanation's figure drawer into a temporary PNG inside ``workdir`` and return it as a data URI."""
    with tempfile.TemporaryDirectory(dir=workdir, prefix=".figure-") as tmp:
        path = Path(tmp) / "figure.png"
        draw(path)
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
