"""HTML rendering of reports, the index of several reports and the viewer's pages (Jinja2 templates, autoescaped)."""
from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from typing import Any

from ..errors import ECGError

# No page may reach the network: images are data URIs, styles and scripts are inline.
CSP = ("default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "form-action 'self'; base-uri 'none'")


@lru_cache(maxsize=1)
def environment():
    """The Jinja2 environment over ``ecglens/report/templates`` (``ECGError`` with the install hint if absent)."""
    try:
        import jinja2
        from markupsafe import Markup
    except ImportError:
        raise ECGError(None, "reports need Jinja2: pip install 'ecglens[report]'") from None
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(files("ecglens.report").joinpath("templates"))),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["num"] = _num
    env.filters["svg"] = lambda markup: Markup(markup) if markup else ""  # only figures drawn by report.figures
    env.globals["CSP"] = CSP
    return env


def _num(value: Any, fmt: str = ".0f", unit: str = "") -> str:
    """A number for the page ("-" when missing)."""
    if value is None:
        return "-"
    try:
        return f"{float(value):{fmt}}{unit}"
    except (TypeError, ValueError):
        return str(value)


def render(template: str, **context: Any) -> str:
    """Render one of the templates with ``context``."""
    return environment().get_template(template).render(csp=CSP, **context)


def render_report(data: dict, figures: dict, options, back: str | None = None) -> str:
    """A record's self-contained page: ``figures`` hold inline SVG markup drawn by ``report.figures``."""
    return render("report.html", data=data, figures=figures, options=options, back=back)


def render_index(rows: list[dict], title: str = "ECG reports", skipped: list[dict] = ()) -> str:
    """The index of several reports (``rows`` from ``summary_row`` plus their ``page``), sortable by any
    statement's probability (the highest over the models); ``skipped`` lists records without a page."""
    from ..statements import describe

    statements = sorted({s for r in rows for s in r["probabilities"]},
                        key=lambda s: (-sum(s in r["called"] for r in rows), s))
    return render("index.html", rows=rows, statements=[(s, describe(s)) for s in statements], title=title,
                  skipped=list(skipped))
