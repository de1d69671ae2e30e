"""Explanations: one module per explainable checkpoint kind, each turning (model, record) into an ``Explanation``.

The module that explains a kind is named by its family declaration
(``CheckpointKind.explainer``); it defines ``explain(model, directory, ecg,
options) -> Explanation``, where ``model`` is the loaded checkpoint, and may
define ``add_arguments(group)`` for its own CLI options (a module that is
cheap to import: torch only inside functions). An explanation writes nothing
until ``save`` is called: its figures are drawn then.
"""
from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ECGError

EXPLANATION_FILE = "explanation.json"
DEFAULT_TOP = 3  # evidence items per statement
DEFAULT_LIMIT = 4  # statements explained per record


@dataclass
class ExplainOptions:
    """Options every explainer understands; ``extra`` holds a family's own options.

    ``threshold`` None explains the statements called at the model's stored
    thresholds; a number overrides them for every statement. At most ``limit``
    statements are explained (None: no limit): those asked for in ``statements``
    always, then the most probable called ones. Figures are drawn for the called and
    the asked-for statements only, unless ``all_figures``.
    """

    top: int = DEFAULT_TOP
    threshold: float | None = None
    statements: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    limit: int | None = DEFAULT_LIMIT
    all_figures: bool = False

    def __post_init__(self):
        if self.top < 1:
            raise ECGError(None, f"top must be at least 1, got {self.top}")
        if self.limit is not None and self.limit < 1:
            raise ECGError(None, f"limit must be at least 1 (or None for no limit), got {self.limit}")


@dataclass
class Explanation:
    """Why a model said what it said about one record.

    ``data`` is the JSON document (its ``figure`` entries name the files that
    ``save`` draws); ``figures`` maps each such file name to the function that
    draws it to a path; ``text`` is a short human-readable summary.
    """

    kind: str
    record: str
    data: dict[str, Any]
    figures: dict[str, Callable[[Path], None]] = field(default_factory=dict)
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.data, indent=indent, default=str)

    def save(self, directory, figures: bool = True, progress: bool = False) -> Path:
        """Write ``explanation.json`` (and, with ``figures``, every figure) into ``directory``; returns the JSON path.
        Every file is written under a temporary name and renamed when complete, the JSON last.

        The figures an earlier explanation saved there (listed in its JSON's ``files``) are removed
        first, so a reused directory never mixes two records' figures.
        """
        from ..atomic import write_text_atomic

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / EXPLANATION_FILE
        if path.is_file():
            try:
                earlier = json.loads(path.read_text()).get("files", [])
            except (OSError, ValueError, AttributeError):
                earlier = []
            for name in earlier:
                if isinstance(name, str) and Path(name).name == name:
                    (directory / name).unlink(missing_ok=True)
        self.data["files"] = sorted(self.figures) if figures else []
        if figures:
            from tqdm import tqdm

            for name, draw in tqdm(self.figures.items(), desc="figures", unit="fig", disable=not progress,
                                   total=len(self.figures)):
                # drawn under a temporary name that keeps the suffix (the plot format), renamed when complete
                tmp = directory / f".{Path(name).stem}.tmp-{os.getpid()}{Path(name).suffix}"
                try:
                    draw(tmp)
                    os.replace(tmp, directory / name)
                finally:
                    tmp.unlink(missing_ok=True)
        write_text_atomic(path, self.to_json() + "\n")
        return path

    def __str__(self) -> str:
        return self.text or self.to_json()


def called_statements(clf, calibrated, options: ExplainOptions):
    """(k,) bool: the statements the model calls (assessable and at or above the stored threshold), or those at or
    above ``options.threshold`` when it is given."""
    import numpy as np

    calibrated = np.asarray(calibrated)
    if options.threshold is not None:
        return calibrated >= options.threshold
    return (calibrated >= clf.thresholds) & clf.assessable


def choose_statements(clf, probs, options: ExplainOptions, source=None) -> tuple[list[str], str | None, Any]:
    """Statements to explain, most probable first, their note and the calibrated probabilities (k,).

    ``probs`` are the network's probabilities (the ones the logit decomposition explains); the
    statements asked for are explained, then the called ones (:func:`called_statements`), most
    probable first, up to ``options.limit`` in all; the note names the called ones left out. When
    none is called and none asked for, the most probable one is explained, and the note says so.
    """
    import numpy as np

    labels = list(clf.labels)
    unknown = [s for s in options.statements if s not in labels]
    if unknown:
        raise ECGError(source, f"unknown statement(s) {unknown}; the model knows {labels}")
    calibrated = clf.calibrate(np.asarray(probs, dtype=np.float64)[None])[0]
    called = called_statements(clf, calibrated, options)
    asked = [s for s in labels if s in options.statements]
    rest = sorted((s for s, c in zip(labels, called) if c and s not in asked), key=lambda s: -calibrated[labels.index(s)])
    room = len(rest) if options.limit is None else max(0, options.limit - len(asked))
    chosen, left = asked + rest[:room], rest[room:]
    note = None
    if left:
        note = (f"{len(left)} more called statement(s) not explained (at most {options.limit} per record): "
                f"{', '.join(left)}; ask for them by name or raise the limit")
    if not chosen:
        chosen = [labels[int(np.argmax(calibrated))]]
        note = "no statement reached its threshold; the most probable one is explained"
    chosen.sort(key=lambda s: -calibrated[labels.index(s)])
    return chosen, note, calibrated


def statement_call(clf, calibrated, j: int) -> dict[str, Any]:
    """The calibrated side of one explained statement: probability, threshold, whether it is called."""
    return {"calibrated_probability": float(calibrated[j]), "threshold": float(clf.thresholds[j]),
            "assessable": bool(clf.assessable[j]),
            "called": bool(clf.assessable[j] and calibrated[j] >= clf.thresholds[j])}


def explainer_for(kind: str) -> ModuleType:
    """The explainer module of a checkpoint kind (ECGError naming the explainable kinds when it has none)."""
    from ..models.registry import checkpoint_kinds

    kinds = checkpoint_kinds()
    if kind not in kinds or kinds[kind].explainer is None:
        explainable = sorted(k for k, v in kinds.items() if v.explainer)
        raise ECGError(None, f"no explainer for model kind {kind!r}; explainable: {', '.join(explainable)}")
    return importlib.import_module(kinds[kind].explainer)


def explainer_modules() -> list[ModuleType]:
    """Every explainer module named by a family (for their CLI options)."""
    from ..models.registry import checkpoint_kinds

    names = sorted({k.explainer for k in checkpoint_kinds().values() if k.explainer})
    return [importlib.import_module(n) for n in names]


def safe_name(name: str) -> str:
    """A statement or record name usable in a file name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def overlay_figure(beats, rate: float, values, label: str, title: str, r_index: int, cmap: str = "viridis",
                   segments=None) -> Callable[[Path], None]:
    """A figure drawer: beats overlaid per lead, coloured by ``values`` (time in s from the R peak)."""
    def draw(path: Path) -> None:
        import matplotlib.pyplot as plt
        import numpy as np

        from ..io.leads import STANDARD_LEADS
        from ..viz import plot_overlay

        fig = plot_overlay(np.asarray(beats), rate, STANDARD_LEADS, values, cmap=cmap, colorbar_label=label,
                           path=path, title=title, segments=segments, start_s=-r_index / rate)
        plt.close(fig)

    return draw


PANEL_STRIP_MM = 20.0  # height of one lead strip in the panel figures
PANEL_GUTTER_MM = 16.0  # room left of a panel's strips for the lead names
PANEL_GAP_MM = 8.0
PANEL_LINE_MM = 4.5  # one line of caption text
PANEL_MARGIN_MM = 5.0
PANEL_DPI = 100


@dataclass
class Panel:
    """Some leads of a stretch of ECG, drawn on ECG paper by :func:`panel_figure`.

    ``signal`` (leads, samples) in ``units`` at ``sampling_rate``; ``start_s`` is the record time of its
    first sample (for the time labels); ``marked`` leads are drawn with their names in colour and
    ``notes`` beside the names; ``bars`` are windows ``(start_s, end_s, label, colour)`` in record time,
    each drawn as a shaded span over the strips and a labelled bar in its own lane above them.
    """

    signal: Any
    sampling_rate: float
    leads: list[str]
    heading: str
    start_s: float = 0.0
    units: str = "mV"
    marked: tuple[str, ...] = ()
    notes: dict[str, str] = field(default_factory=dict)
    bars: list[tuple[float, float, str, str]] = field(default_factory=list)

    @property
    def width_mm(self) -> float:
        from ..viz import SPEED_MM_S

        return PANEL_GUTTER_MM + self.signal.shape[1] / self.sampling_rate * SPEED_MM_S

    @property
    def heading_lines(self) -> list[str]:
        import textwrap

        return textwrap.wrap(self.heading, max(20, int(self.width_mm / 1.6))) or [""]

    @property
    def height_mm(self) -> float:
        return (PANEL_LINE_MM * (len(self.heading_lines) + 0.6 * len(self.bars)) + len(self.leads) * PANEL_STRIP_MM
                + PANEL_LINE_MM)


def panel_figure(title: list[str], rows: list[tuple[list[str], list[Panel]]],
                 footer: str = "") -> Callable[[Path], None]:
    """A figure drawer: title lines (the first in bold), then rows of (caption lines, panels side by side).

    Every panel is drawn at 25 mm/s and 10 mm/mV on a millimetre grid, so a query window and a prototype
    snippet beside it compare by eye; text is wrapped to the figure's width and sits in its own lines and
    gutters, never over a trace.
    """
    def draw(path: Path) -> None:
        import textwrap

        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from ..viz.paper import MM_PER_INCH

        width = 2 * PANEL_MARGIN_MM + max(
            [sum(p.width_mm for p in panels) + PANEL_GAP_MM * (len(panels) - 1) for _, panels in rows] + [150.0])

        def wrap(lines: list[str], mm_per_char: float) -> list[str]:
            return [w for line in lines for w in textwrap.wrap(line, int((width - 2 * PANEL_MARGIN_MM) / mm_per_char))]

        heading = wrap(title[:1], 2.3) + wrap(title[1:], 1.6)
        bold = len(wrap(title[:1], 2.3))
        captions = [wrap(caption, 1.6) for caption, _ in rows]

        def extra(panels: list[Panel]) -> list[int]:  # heading lines to add so a row's grids start level
            most = max([len(p.heading_lines) for p in panels] + [0])
            return [most - len(p.heading_lines) for p in panels]

        def row_height(panels: list[Panel]) -> float:
            return max([p.height_mm + PANEL_LINE_MM * e for p, e in zip(panels, extra(panels))] + [0.0])

        height = 2 * PANEL_MARGIN_MM + PANEL_LINE_MM * (len(heading) + (1 if footer else 0)) + sum(
            PANEL_LINE_MM * len(caption) + row_height(panels) + PANEL_GAP_MM
            for caption, (_, panels) in zip(captions, rows))
        fig = Figure(figsize=(width / MM_PER_INCH, height / MM_PER_INCH), facecolor="white")
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)  # y grows downwards, in mm from the top
        y = PANEL_MARGIN_MM
        for i, line in enumerate(heading):
            ax.text(PANEL_MARGIN_MM, y + PANEL_LINE_MM / 2, line, va="center", fontsize=10 if i < bold else 8,
                    fontweight="bold" if i < bold else "normal")
            y += PANEL_LINE_MM
        for caption, (_, panels) in zip(captions, rows):
            for line in caption:
                ax.text(PANEL_MARGIN_MM, y + PANEL_LINE_MM / 2, line, va="center", fontsize=8)
                y += PANEL_LINE_MM
            x = PANEL_MARGIN_MM
            for panel, pad in zip(panels, extra(panels)):
                _draw_panel(ax, panel, x, y, pad)
                x += panel.width_mm + PANEL_GAP_MM
            y += row_height(panels) + PANEL_GAP_MM
        if footer:
            ax.text(PANEL_MARGIN_MM, y + PANEL_LINE_MM / 2, footer, va="center", fontsize=7, color="0.3")
        fig.savefig(path, dpi=PANEL_DPI, facecolor="white")

    return draw


def _draw_panel(ax, panel: Panel, x0: float, y0: float, pad: int = 0) -> None:
    """One panel with its top-left corner at (x0, y0) mm: heading (and ``pad`` empty lines), window bars,
    grid, traces, lead names."""
    import numpy as np
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Rectangle

    from ..viz.paper import GAIN_MM_MV as gain
    from ..viz.paper import GRID_MAJOR_COLOR as major
    from ..viz.paper import GRID_MINOR_COLOR as minor
    from ..viz.paper import PAPER_COLOR as paper
    from ..viz.paper import SPEED_MM_S as speed
    from ..viz.paper import TRACE_COLOR as trace

    rate = float(panel.sampling_rate)
    n = panel.signal.shape[1]
    gx0, gx1 = x0 + PANEL_GUTTER_MM, x0 + panel.width_mm
    for k, line in enumerate(panel.heading_lines):
        ax.text(x0, y0 + PANEL_LINE_MM * (k + 0.5), line, va="center", fontsize=7, fontweight="bold")
    y = y0 + PANEL_LINE_MM * (len(panel.heading_lines) + pad)
    lane = 0.6 * PANEL_LINE_MM
    top = y + lane * len(panel.bars)
    bottom = top + len(panel.leads) * PANEL_STRIP_MM

    def to_x(t: float) -> float:
        return gx0 + (t - panel.start_s) * speed

    for k, (start, end, label, color) in enumerate(panel.bars):
        a, b = max(to_x(start), gx0), min(to_x(end), gx1)
        ly = y + lane * (k + 0.5)
        ax.plot([a, b], [ly, ly], color=color, linewidth=3, solid_capstyle="butt")
        ax.text(x0 + PANEL_GUTTER_MM - 1, ly, label, ha="right", va="center", fontsize=6, color=color)
        ax.add_patch(Rectangle((a, top), b - a, bottom - top, facecolor=color, edgecolor="none", alpha=0.12, zorder=2))
    grid = ax.add_patch(Rectangle((gx0, top), gx1 - gx0, bottom - top, facecolor=paper, edgecolor="none", zorder=0))
    for is_major in (False, True):
        step = 5.0 if is_major else 1.0
        xs = np.arange(gx0, gx1 + 1e-6, step)
        ys = np.arange(top, bottom + 1e-6, step)
        segments = [[(v, top), (v, bottom)] for v in xs] + [[(gx0, v), (gx1, v)] for v in ys]
        ax.add_collection(LineCollection(segments, colors=major if is_major else minor,
                                         linewidths=0.5 if is_major else 0.2, zorder=1))
    t = np.arange(n) / rate * speed + gx0
    signal = np.asarray(panel.signal, dtype=np.float64)
    for r, lead in enumerate(panel.leads):
        base = top + (r + 0.6) * PANEL_STRIP_MM
        ax.plot(t, base - signal[r] * gain, color=trace, linewidth=0.6, zorder=3, clip_path=grid)  # never over text
        marked = lead in panel.marked
        ax.text(gx0 - 1.5, base - 2, lead, ha="right", va="center", fontsize=8, fontweight="bold",
                color="tab:red" if marked else "black")
        if lead in panel.notes:
            ax.text(gx0 - 1.5, base + 2.5, panel.notes[lead], ha="right", va="center", fontsize=6,
                    color="tab:red" if marked else "0.3")
    end_s = panel.start_s + n / rate
    unit = "mV" if panel.units.strip().lower() == "mv" else "a.u."
    ax.text(gx0, bottom + PANEL_LINE_MM / 2, f"{panel.start_s:.2f} s", va="center", fontsize=6)
    ax.text(gx1, bottom + PANEL_LINE_MM / 2, f"{end_s:.2f} s", va="center", ha="right", fontsize=6)
    ax.text((gx0 + gx1) / 2, bottom + PANEL_LINE_MM / 2, f"{speed:g} mm/s, {gain:g} mm/{unit}", va="center", ha="center",
            fontsize=6, color="0.3")
