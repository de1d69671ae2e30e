"""Prototype projection ("push") and the gallery of real ECGs the prototypes became.

After joint training every prototype is replaced by the latent patch of a real training
record that carries the prototype's statement and matches it best, so each prototype *is*
a window of a known ECG. Two prototypes of one statement never take the same source:
each takes the best-matching positive record not yet used by its class; only when a class
has fewer positive records than prototypes may a record serve twice, then with a window
that does not overlap the first (``shared`` marks it), and only when even that is
impossible a prototype lands on a taken window (``duplicate``). Statements without any
positive training record keep their learned prototype (``projected: false``).

Projection moves every similarity, so the similarity normalisation is refitted on the
projected training set (the same statistics ``ProtoECGNet.calibrate`` computes).

The :class:`Gallery` stores, beside the checkpoint, one row per prototype (source ecg_id,
its statements, latent window, input span in samples, similarity) and the whole 10-s
source records in mV (float16, band-passed for display, not standardised), so
explanations can draw real ECG paper without the training data.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from ...errors import ECGError
from .model import ProtoECGNet
from .prototypes import cosine_similarity_map

GALLERY_WEIGHTS = "gallery.safetensors"
GALLERY_TABLE = "gallery.json"


@torch.no_grad()
def collect_latents(model: ProtoECGNet, signals: np.ndarray, batch_size: int = 128,
                    branches: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Eval-mode latent maps of every record for every branch (or ``branches``): ``{branch: (N, D, W)}``."""
    names = list(model.branch_names if branches is None else branches)
    modules = [model.branches[n] for n in names] + ([model.trunk] if model.trunk is not None else [])
    states = [m.training for m in modules]
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    device = next(model.parameters()).device
    try:
        for m in modules:
            m.eval()
        for i in range(0, len(signals), batch_size):
            h = model.encode(torch.from_numpy(np.array(signals[i:i + batch_size], dtype=np.float32)).to(device))
            for n in names:
                parts[n].append(model.branches[n].latent(h).cpu())
    finally:
        for m, state in zip(modules, states):
            m.train(state)
    return {n: torch.cat(p) for n, p in parts.items()}


@torch.no_grad()
def sync_prototypes(model: ProtoECGNet, signals: np.ndarray, sources: Sequence[tuple[str, int, int, int]]) -> int:
    """Set prototypes back onto their source windows under the current weights.

    ``sources``: ``(branch, prototype index in branch, record row in signals, window start)``.
    After the backbone has moved, a projected prototype is no longer exactly the latent
    patch of its source; this makes it so again. Returns the number of records encoded.
    """
    rows = sorted({rec for _, _, rec, _ in sources})
    if not rows:
        return 0
    names = list(dict.fromkeys(b for b, _, _, _ in sources))
    latents = collect_latents(model, signals[rows], branches=names)
    position = {rec: i for i, rec in enumerate(rows)}
    for branch, index, rec, window in sources:
        layer = model.branches[branch].prototype_layer
        patch = latents[branch][position[rec], :, window:window + layer.length]
        layer.prototypes.data[index] = patch.to(layer.prototypes.device)
    return len(rows)


def _overlaps(window: int, taken: Sequence[int], length: int) -> bool:
    return any(abs(window - t) < length for t in taken)


def _assign(sims: np.ndarray, length: int) -> list[tuple[int, int, float, str]]:
    """Greedy unique assignment for one class.

    sims: (n_pos, n_protos, W') similarities of the class's prototypes with its positive
    records. Prototypes choose in order of their best similarity; each returns
    ``(record row, window, similarity, how)`` with how in {"unique", "shared", "duplicate"}.
    """
    n_pos, n_protos, n_win = sims.shape
    order = np.argsort(-sims.reshape(n_pos, n_protos, n_win).max(axis=(0, 2)), kind="stable")
    used: dict[int, list[int]] = {}
    chosen: list[tuple[int, int, float, str] | None] = [None] * n_protos
    for p in order:
        flat = sims[:, p, :].reshape(-1)
        ranked = np.argsort(-flat, kind="stable")
        pick = next(((int(i), "unique") for i in ranked if int(i) // n_win not in used), None)
        if pick is None:
            pick = next(((int(i), "shared") for i in ranked
                         if not _overlaps(int(i) % n_win, used[int(i) // n_win], length)), None)
        if pick is None:
            pick = (int(ranked[0]), "duplicate")
        i, how = pick
        r, w = divmod(i, n_win)
        used.setdefault(r, []).append(w)
        chosen[p] = (r, w, float(flat[i]), how)
    return chosen  # type: ignore[return-value]


@torch.no_grad()
def project_prototypes(model: ProtoECGNet, latents: dict[str, torch.Tensor], y: np.ndarray,
                       ecg_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Replace every prototype by its best real training patch; return one row per prototype.

    ``latents`` from :func:`collect_latents` on the training records ``ecg_ids`` with
    labels ``y`` (N, k) in ``model.labels`` order. Rows (fusion order) hold: id, branch,
    index, label, projected, ecg_id, record (row in ``ecg_ids``), window (latent start),
    start/end (input samples, footprint), similarity (cosine of the old prototype with
    its new patch) and how (unique / shared / duplicate).
    """
    y = np.asarray(y) > 0
    if y.shape != (len(ecg_ids), len(model.labels)):
        raise ECGError(None, f"labels shaped {y.shape}, expected ({len(ecg_ids)}, {len(model.labels)})")
    table = model.prototype_table()
    offset = 0
    for name in model.branch_names:
        branch = model.branches[name]
        z = latents[name]
        if z.shape[0] != len(ecg_ids):
            raise ECGError(None, f"branch {name}: {z.shape[0]} latents for {len(ecg_ids)} records")
        protos = branch.prototype_layer.prototypes
        length = branch.prototype_layer.length
        spans = branch.span_table()
        cls_of = branch.prototype_class.tolist()
        for c, label_pos in enumerate(model.class_index(name).tolist()):
            members = [p for p, pc in enumerate(cls_of) if pc == c]
            positives = np.flatnonzero(y[:, label_pos])
            if not len(positives):
                for p in members:
                    table[offset + p].update(projected=False, ecg_id=None, record=None, window=None, start=None,
                                             end=None, similarity=None, how=None)
                continue
            sims = cosine_similarity_map(z[torch.from_numpy(positives)], protos[members]).numpy()
            for p, (r, w, s, how) in zip(members, _assign(sims, length)):
                rec = int(positives[r])
                protos.data[p] = z[rec, :, w:w + length]
                start, end = spans[w].tolist()
                table[offset + p].update(projected=True, ecg_id=int(ecg_ids[rec]), record=rec, window=int(w),
                                         start=int(start), end=int(end), similarity=s, how=how)
        offset += branch.n_prototypes
    return table


@torch.no_grad()
def calibrate_from_latents(model: ProtoECGNet, latents: dict[str, torch.Tensor], batch_size: int = 512) -> int:
    """Refit every branch's similarity normalisation on precomputed eval-mode latents
    (what ``ProtoECGNet.calibrate`` does, without a second pass through the backbones)."""
    n = 0
    for name, z in latents.items():
        layer = model.branches[name].prototype_layer
        sims = torch.cat([layer(z[i:i + batch_size])[0] for i in range(0, len(z), batch_size)])
        model.branches[name].norm.fit(sims)
        n = len(sims)
    return n


def projection_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts: prototypes, projected, unique sources, and per-how counts (per branch and in all)."""
    def count(rs):
        done = [r for r in rs if r["projected"]]
        return {"prototypes": len(rs), "projected": len(done), "unprojected": len(rs) - len(done),
                "unique_sources": len({r["ecg_id"] for r in done}),
                "unique_within_class": sum(r["how"] == "unique" for r in done),
                "shared_record": sum(r["how"] == "shared" for r in done),
                "duplicate_window": sum(r["how"] == "duplicate" for r in done),
                "mean_similarity": float(np.mean([r["similarity"] for r in done])) if done else None}
    branches = sorted({r["branch"] for r in rows}, key=[r["branch"] for r in rows].index)
    return {**count(rows), "branches": {b: count([r for r in rows if r["branch"] == b]) for b in branches},
            "unprojected_labels": sorted({r["label"] for r in rows if not r["projected"]})}


def project_onto_training(model: ProtoECGNet, signals: np.ndarray, y: np.ndarray,
                          ecg_ids: Sequence[int]) -> tuple[list[dict[str, Any]], int]:
    """Every prototype onto its best patch of the training ``signals`` (labels ``y``, records ``ecg_ids``) and the
    similarity normalisation refitted on the same latents: :func:`project_prototypes`' rows and the number of
    records the normalisation saw."""
    latents = collect_latents(model, signals)
    rows = project_prototypes(model, latents, y, list(ecg_ids))
    return rows, calibrate_from_latents(model, latents)


@dataclass
class Gallery:
    """The real ECGs behind the prototypes.

    prototypes: one row per prototype (see :func:`project_prototypes`), each with
        ``source`` (row in ``signals`` or None) and ``source_labels``.
    ecg_ids: (n,) source records; signals: (n, 12, T) float16 in mV at ``sampling_rate``.
    """

    prototypes: list[dict[str, Any]]
    ecg_ids: np.ndarray
    signals: np.ndarray
    sampling_rate: float
    units: str = "mV"

    @classmethod
    def build(cls, rows: list[dict[str, Any]], display: Callable[[int], np.ndarray],
              labels_of: Callable[[int], list[str]], sampling_rate: float) -> Gallery:
        """Gallery of the projected rows: ``display(ecg_id)`` gives the (12, T) mV record to
        store, ``labels_of(ecg_id)`` its statements."""
        ids = list(dict.fromkeys(r["ecg_id"] for r in rows if r["projected"]))
        signals = np.stack([np.asarray(display(i), dtype=np.float32) for i in ids]) if ids else \
            np.zeros((0, 12, 0), dtype=np.float32)
        position = {e: i for i, e in enumerate(ids)}
        out = []
        for r in rows:
            row = {k: v for k, v in r.items() if k != "record"}
            row["source"] = position.get(r["ecg_id"]) if r["projected"] else None
            row["source_labels"] = labels_of(r["ecg_id"]) if r["projected"] else []
            out.append(row)
        return cls(out, np.asarray(ids, dtype=np.int64), signals.astype(np.float16), float(sampling_rate))

    def sources(self, ecg_ids: Sequence[int], branches: Sequence[str] | None = None) -> list[tuple[str, int, int, int]]:
        """The projected prototypes (of ``branches``; default all) as :func:`sync_prototypes` takes them:
        ``(branch, index, row of its source record in ecg_ids, window)``."""
        row_of = {int(e): i for i, e in enumerate(ecg_ids)}
        return [(p["branch"], p["index"], row_of[int(p["ecg_id"])], p["window"]) for p in self.prototypes
                if p["projected"] and (branches is None or p["branch"] in branches)]

    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        save_file({"signals": np.ascontiguousarray(self.signals), "ecg_ids": self.ecg_ids},
                  str(directory / GALLERY_WEIGHTS))
        (directory / GALLERY_TABLE).write_text(json.dumps(
            {"sampling_rate": self.sampling_rate, "units": self.units, "prototypes": self.prototypes}, indent=1))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(directory / GALLERY_WEIGHTS, 0o666 & ~umask)  # safetensors writes owner-only files

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Gallery:
        directory = Path(directory)
        try:
            arrays = load_file(str(directory / GALLERY_WEIGHTS))
            meta = json.loads((directory / GALLERY_TABLE).read_text())
        except (OSError, ValueError) as exc:
            raise ECGError(directory, f"ProtoECGNet gallery missing or unreadable ({exc})") from exc
        return cls(meta["prototypes"], arrays["ecg_ids"], arrays["signals"], float(meta["sampling_rate"]),
                   meta.get("units", "mV"))

    def source(self, prototype_id: int) -> tuple[dict[str, Any], np.ndarray | None]:
        """A prototype's row and its whole source record (float32, mV), or None if unprojected."""
        row = self.prototypes[prototype_id]
        if row.get("source") is None:
            return row, None
        return row, self.signals[row["source"]].astype(np.float32)
