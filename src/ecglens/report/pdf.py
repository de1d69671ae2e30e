"""Print a report page to PDF through headless Chromium (its profile kept in a temporary folder beside the PDF)."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import ECGError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 120


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable: ``$ECGLENS_CHROMIUM`` or the first of ``BROWSERS`` on the PATH."""
    env = os.environ.get("ECGLENS_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def html_to_pdf(html: str | os.PathLike, pdf: str | os.PathLike) -> Path:
    """Print the page ``html`` to ``pdf`` (A4, backgrounds kept so the ECG paper shows)."""
    html, pdf = Path(html).resolve(), Path(pdf)
    browser = find_chromium()
    if browser is None:
        raise ECGError(pdf, "--pdf needs Chromium: install it (Debian: apt-get install chromium) or set "
                            "ECGLENS_CHROMIUM to its executable")
    with tempfile.TemporaryDirectory(dir=pdf.parent, prefix=".chromium-") as profile:
        tmp = Path(profile) / "page.pdf"
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-pdf-header-footer",
               f"--user-data-dir={profile}", f"--crash-dumps-dir={profile}", f"--print-to-pdf={tmp}", html.as_uri()]
        env = {**os.environ, "HOME": profile, "XDG_CONFIG_HOME": profile, "XDG_CACHE_HOME": profile}
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            raise ECGError(pdf, f"Chromium did not print the page within {TIMEOUT_S} s") from None
        if run.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            tail = (run.stderr or "").strip().splitlines()[-3:]
            raise ECGError(pdf, f"Chromium could not print the page (exit {run.returncode}): {' | '.join(tail)}")
        os.replace(tmp, pdf)
    return pdf
