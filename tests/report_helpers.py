"""One ``Reporter`` with every shipped model, shared by the report, viewer and browser tests (loaded once)."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

RECORD = 172  # CRBBB + LAFB: ProtoECGNet, FactorECG and qLST all have something to show


@lru_cache(maxsize=1)
def _reporter():
    from ecglens.report import Reporter

    return Reporter()


def shared_reporter(workdir: Path):
    """The shared reporter, drawing its temporary figures inside ``workdir`` (a test's temporary directory)."""
    reporter = _reporter()
    reporter.workdir = Path(workdir)
    return reporter


def record_files(ecg_id: int = RECORD) -> tuple[Path, Path]:
    """A bundled record's WFDB header and signal file."""
    from ecglens.samples import sample_path

    base = Path(sample_path(ecg_id))
    return base.with_suffix(".hea"), base.with_suffix(".dat")


def small_gallery(folder: Path) -> None:
    """A two-prototype gallery in ``write_gallery``'s layout (drawing the shipped model's 219 takes a minute)."""
    from matplotlib.figure import Figure

    folder.mkdir(parents=True)
    items = []
    for i, statement in enumerate(("CRBBB", "AFIB")):
        image = f"morphology_{i:03d}.png"
        Figure(figsize=(1, 1)).savefig(folder / image)
        items.append({"prototype": f"morphology/{i}", "branch": "morphology", "index": i, "statement": statement,
                      "source_record": "17743", "source_labels": [statement], "image": image})
    (folder / "gallery.json").write_text(json.dumps(items))
