"""The clinician report: everything about one ECG on one self-contained HTML page, and the local viewer.

``Reporter`` (models loaded once) turns records into ``Report`` pages
(``build.py``: data collection; ``figures.py``: inline SVG on ECG paper;
``render.py``: Jinja2 templates); ``write_reports`` writes pages, an index and
optionally PDFs (``pdf.py``, headless Chromium) into one directory;
``server.py`` is ``ecglens serve``'s FastAPI application.
"""
from .build import Report, ReportOptions, Reporter, summary_row
from .write import write_reports

__all__ = ["Report", "ReportOptions", "Reporter", "summary_row", "write_reports"]
