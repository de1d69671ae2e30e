"""Write reports into one directory: a page per record, an index when there are several, PDFs on request."""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ECGError

INDEX = "index.html"


def page_name(record: str, taken: set[str]) -> str:
    """A file name for a record's page, unique among ``taken`` (which it joins)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(record).stem or "record").strip("._") or "record"
    name, k = f"{stem}.html", 2
    while name in taken or name == INDEX:
        name, k = f"{stem}-{k}.html", k + 1
    taken.add(name)
    return name


def write_reports(paths: Sequence[str | os.PathLike], out: str | os.PathLike, reporter, *, pdf: bool = False,
                  sampling_rate: float | None = None, units: str | None = None,
                  progress: bool = False) -> dict[str, Any]:
    """Report every record of ``paths`` into ``out`` (created; nothing is written elsewhere).

    One record's error stops the run when there is one record; with several it is
    listed under ``skipped`` (and on the index page) and the others go on.
    Returns ``{"pages": [...], "index": path or None, "pdfs": [...], "skipped": [...], "rows": [...]}``.
    """
    from tqdm import tqdm

    from ..atomic import write_text_atomic
    from .build import summary_row
    from .render import render_index

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    result: dict[str, Any] = {"pages": [], "index": None, "pdfs": [], "skipped": [], "rows": []}
    for path in tqdm(list(paths), desc="reports", unit="record", disable=not progress):
        try:
            report = reporter.build_file(path, sampling_rate=sampling_rate, units=units)
        except ECGError as exc:
            if len(paths) == 1:
                raise
            result["skipped"].append({"record": str(path), "reason": str(exc)})
            continue
        name = page_name(report.name, taken)
        page = write_text_atomic(out / name, report.html)
        result["pages"].append(page)
        result["rows"].append({**summary_row(report), "page": name, "bytes": len(report.html.encode()),
                               "figures": report.figures})
        if pdf:
            from .pdf import html_to_pdf

            result["pdfs"].append(html_to_pdf(page, page.with_suffix(".pdf")))
    if len(paths) > 1:
        html = render_index(result["rows"], skipped=result["skipped"])
        result["index"] = write_text_atomic(out / INDEX, html)
    return result
