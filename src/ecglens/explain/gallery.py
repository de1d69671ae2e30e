"""The prototype gallery for clinician review: every ProtoECGNet prototype's source snippet on ECG paper.

``write_gallery(model, directory)`` draws one PNG per prototype: the real training ECG the
prototype was projected onto, with that record's PTB-XL statements, the prototype's statement
and branch, on ECG paper (25 mm/s, 10 mm/mV). A sliding (morphology) prototype is drawn over its
window's receptive field (every input sample that can move its score; limb and chest leads side
by side); a whole-record prototype (rhythm, global) over the whole 10-s record. Beside the images it
writes ``gallery.json`` (the :class:`GalleryItem` list), a blank rating sheet ``ratings.csv`` in
the schema of :mod:`ecglens.explain.ratings` (one row per prototype) and ``index.html`` showing
the images with their captions. ``read_gallery`` reads the items back.
"""
from __future__ import annotations

import html
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path

from ..errors import ECGError

ITEMS_FILE = "gallery.json"
RATINGS_FILE = "ratings.csv"
INDEX_FILE = "index.html"


@dataclass
class GalleryItem:
    """One prototype of the gallery. ``prototype`` is ``"<branch>/<index>"`` (the rating sheet's id);
    ``source_record`` the PTB-XL ecg_id it was projected onto ("" when unprojected); ``image`` the
    PNG's file name inside the gallery directory."""

    prototype: str
    branch: str
    index: int
    statement: str
    source_record: str
    source_labels: list[str]
    image: str


ITEM_FIELDS = tuple(f.name for f in fields(GalleryItem))


def write_gallery(model, directory, *, progress: bool = False) -> list[GalleryItem]:
    """Draw every prototype of ``model`` (a name or path as ``load_model`` accepts) into ``directory``;
    write gallery.json, a blank ratings.csv and index.html there. Returns the items in fusion order."""
    from tqdm import tqdm

    from ..atomic import write_json_atomic, write_text_atomic
    from ..models.loading import load_any
    from ..models.protoecgnet.projection import Gallery
    from .ratings import PrototypeRating, write_ratings

    loaded, kind, checkpoint = load_any(model, device="cpu")
    if kind.name != "protoecgnet":
        raise ECGError(checkpoint, f"a {kind.name} model has no prototypes; the gallery needs a ProtoECGNet")
    net = loaded.model.net
    gallery = Gallery.load(checkpoint)
    table = net.prototype_table()
    if len(gallery.prototypes) != len(table):
        raise ECGError(checkpoint, f"the gallery lists {len(gallery.prototypes)} prototypes, the model has {len(table)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    items = []
    for row, info in tqdm(list(zip(table, gallery.prototypes)), desc="prototypes", unit="fig", disable=not progress):
        if (info["branch"], info["index"]) != (row["branch"], row["index"]):
            raise ECGError(checkpoint, f"gallery row {row['id']} describes {info['branch']}/{info['index']}, "
                                       f"the model {row['branch']}/{row['index']}")
        item = GalleryItem(prototype=f"{row['branch']}/{row['index']}", branch=row["branch"], index=row["index"],
                           statement=row["label"], source_record=str(info["ecg_id"]) if info.get("projected") else "",
                           source_labels=list(info.get("source_labels") or []),
                           image=f"{row['branch']}_{row['index']:03d}.png")
        _draw_atomic(directory / item.image, partial(_draw_item, net, gallery, row["id"], item))
        items.append(item)
    write_json_atomic(directory / ITEMS_FILE, [asdict(i) for i in items], indent=1)
    write_ratings(directory / RATINGS_FILE,
                  [PrototypeRating(prototype=i.prototype, branch=i.branch, statement=i.statement) for i in items])
    write_text_atomic(directory / INDEX_FILE, _index_html(items, str(model)))
    return items


def read_gallery(directory) -> list[GalleryItem]:
    """The items of a gallery that ``write_gallery`` wrote (ECGError naming the file when it is not one)."""
    path = Path(directory) / ITEMS_FILE
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ECGError(path, f"not a readable prototype gallery ({exc})") from None
    if not isinstance(rows, list):
        raise ECGError(path, "not a prototype gallery: expected a list of items")
    items = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or set(row) != set(ITEM_FIELDS):
            raise ECGError(path, f"item {i}: expected the fields {', '.join(ITEM_FIELDS)}")
        if not isinstance(row["index"], int) or not isinstance(row["source_labels"], list):
            raise ECGError(path, f"item {i}: index must be an integer and source_labels a list")
        if Path(row["image"]).name != row["image"]:
            raise ECGError(path, f"item {i}: image {row['image']!r} is not a file name inside the gallery")
        items.append(GalleryItem(**row))
    return items


def _draw_atomic(path: Path, draw: Callable[[Path], None]) -> None:
    """Draw to a temporary name that keeps the suffix, then rename (an interrupted run leaves no half image)."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        draw(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def source_span(net, branch: str, window: int) -> tuple[int, int]:
    """Input samples ``[start, end)`` a prototype's source window depends on (its receptive field)."""
    import torch

    start, end = net.branches[branch].input_spans(torch.tensor(int(window)), mode="receptive_field").tolist()
    return int(start), int(end)


def _draw_item(net, gallery, prototype_id: int, item: GalleryItem, path: Path) -> None:
    from ..io.leads import STANDARD_LEADS
    from ..statements import describe
    from . import Panel, panel_figure

    info, signal = gallery.source(prototype_id)
    head = f"prototype {item.prototype} ({item.branch} branch): {item.statement}, {describe(item.statement)}"
    if signal is None:
        _draw_unprojected(path, head)
        return
    rate = gallery.sampling_rate
    start, end = source_span(net, item.branch, info["window"])
    whole = start == 0 and end >= signal.shape[1]
    where = ("window: the whole record (a whole-record prototype)" if whole else
             f"window: {start / rate:.2f}-{end / rate:.2f} s of the record, the receptive field of the prototype's "
             "window (every sample that can change its score)")
    groups = [list(STANDARD_LEADS)] if whole else [list(STANDARD_LEADS[:6]), list(STANDARD_LEADS[6:])]
    panels = [Panel(signal[[STANDARD_LEADS.index(lead) for lead in leads], start:end], rate, leads,
                    "" if whole else ("limb leads" if k == 0 else "chest leads"), start_s=start / rate,
                    units=gallery.units) for k, leads in enumerate(groups)]
    title = [head, f"source: PTB-XL record {item.source_record}; its statements: {', '.join(item.source_labels)}",
             where]
    panel_figure(title, [([], panels)])(path)
def _draw_unprojected(path: Path, head: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from . import PANEL_DPI

    fig = Figure(figsize=(6, 1.2))
    FigureCanvasAgg(fig)
    fig.text(0.02, 0.65, head, fontsize=9, fontweight="bold")
    fig.text(0.02, 0.3, "not projected: no training record carries this statement, so this prototype is a "
                        "learned vector with no source ECG", fontsize=8)
    fig.savefig(path, dpi=PANEL_DPI)


def _index_html(items: list[GalleryItem], model: str) -> str:
    from ..statements import describe

    esc = html.escape
    cards = []
    for i in items:
        source = (f"PTB-XL record {esc(i.source_record)}; its statements: {esc(', '.join(i.source_labels))}"
                  if i.source_record else "not projected (no source record)")
        cards.append(f'<figure id="{esc(i.prototype)}"><a href="{esc(i.image)}"><img src="{esc(i.image)}" '
                     f'alt="prototype {esc(i.prototype)}" loading="lazy"></a>'
                     f"<figcaption><b>{esc(i.prototype)}</b> ({esc(i.branch)} branch): <b>{esc(i.statement)}</b> "
                     f"({esc(describe(i.statement))})<br>{source}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Prototype gallery: {esc(model)}</title><style>"
            "body{font-family:sans-serif;margin:1em}figure{display:inline-block;vertical-align:top;margin:.5em;"
            "max-width:32em}img{max-width:100%;border:1px solid #ccc}figcaption{font-size:.85em}</style></head>"
            f"<body><h1>Prototype gallery: {esc(model)}</h1><p>{len(items)} prototypes. Each image is the real "
            "training ECG a prototype was projected onto (25 mm/s, 10 mm/mV): a sliding prototype over its "
            "window's receptive field, a whole-record prototype over the whole record. Rate each one in "
            f'<a href="{RATINGS_FILE}">{RATINGS_FILE}</a>: representativeness and clarity from 1 to 5, and a '
            "comment.</p>\n" + "\n".join(cards) + "\n</body></html>\n")
