"""What a 100-Hz median beat loses against a 500-Hz one (PTB-XL records that exist at both rates).

For every record with a ``records500`` file the median beat (1.2 s: 0.4 s
before R, 0.8 s after) is computed from the 500-Hz and from the 100-Hz
version, and compared on the 500-Hz grid:

(a) the 100-Hz beat upsampled to 500 Hz vs the 500-Hz beat, MAE/RMSE in uV
    over the whole beat and over the QRS (onset to offset measured on the
    500-Hz beat); also after the best shift within +-10 ms, which separates
    R-peak timing (alignment) from shape;
(b) the 500-Hz beat taken down to 100 Hz and back up: the information limit
    of a 100-Hz grid, with no alignment effects;
(c) the 100-Hz record upsampled to 500 Hz *before* beat extraction (beats
    aligned on a 2-ms grid), vs the 500-Hz beat: what better alignment buys;
(d) measurement differences 100 Hz minus 500 Hz: QRS duration, R amplitude
    in lead II, QT, heart rate.

Usage: ``python bench/beat_resolution.py [DATA_DIR] [--out bench/results] [--limit N]``
(DATA_DIR defaults to ``../shared/data/ptb-xl`` relative to the repository).
Writes ``beat_resolution.json`` and ``beat_resolution.md`` into ``--out``.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ecglens.beats import ecg_measure, median_beat, resample_beat  # noqa: E402
from ecglens.errors import ECGError  # noqa: E402
from ecglens.io import read_ecg  # noqa: E402
from ecglens.preprocess import resample_signal  # noqa: E402

HI, LO = 500.0, 100.0
MAX_SHIFT = 5  # samples at 500 Hz (+-10 ms)


def _errors(a: np.ndarray, b: np.ndarray, window: slice) -> dict[str, float]:
    """MAE and RMSE in uV of a - b (mV), over everything and over ``window``."""
    d = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) * 1e3
    q = d[:, window]
    return {"mae_uv": float(np.mean(np.abs(d))), "rmse_uv": float(np.sqrt(np.mean(d ** 2))),
            "qrs_mae_uv": float(np.mean(np.abs(q))), "qrs_rmse_uv": float(np.sqrt(np.mean(q ** 2)))}


def _best_shift(a: np.ndarray, b: np.ndarray, window: slice) -> tuple[int, dict[str, float]]:
    """The shift of ``a`` (samples, +-MAX_SHIFT) that minimises the RMSE against ``b`` away from the edges."""
    inner = slice(MAX_SHIFT, a.shape[-1] - MAX_SHIFT)
    best = None
    for s in range(-MAX_SHIFT, MAX_SHIFT + 1):
        shifted = np.roll(a, s, axis=-1)
        rmse = float(np.sqrt(np.mean((shifted[:, inner] - b[:, inner]) ** 2)))
        if best is None or rmse < best[0]:
            best = (rmse, s, shifted)
    _, s, shifted = best
    err = _errors(shifted[:, inner], b[:, inner], slice(window.start - MAX_SHIFT, window.stop - MAX_SHIFT))
    return s, err


def _measures(beat: np.ndarray, info: dict) -> dict:
    rr = 60.0 / info["heart_rate"] if info["heart_rate"] else None
    m = ecg_measure(beat, info["sampling_rate"], info["r_index"], rr=rr, leads=info["leads"])
    return {"qrs_ms": m["qrs_duration_ms"], "r_ii_mv": m["r_amplitude_mv"].get("II"), "qt_ms": m["qt_ms"],
            "hr_bpm": info["heart_rate"], "qrs_onset_ms": m["qrs_onset_ms"], "qrs_offset_ms": m["qrs_offset_ms"]}


def compare_record(data: Path, row: dict) -> dict:
    """All comparisons for one PTB-XL record (raises ECGError when a beat cannot be made)."""
    e500 = read_ecg(data / row["filename_hr"])
    e100 = read_ecg(data / row["filename_lr"])
    b500, i500 = median_beat(e500)
    b100, i100 = median_beat(e100)
    up100 = resample_beat(b100, LO, HI)
    down_up = resample_beat(resample_beat(b500, HI, LO), LO, HI)
    pre = e100.with_signal(resample_signal(e100.signal, LO, HI), HI)
    b_pre, i_pre = median_beat(pre)

    m500, m100 = _measures(b500, i500), _measures(b100, i100)
    r = i500["r_index"]
    if m500["qrs_onset_ms"] is not None and m500["qrs_offset_ms"] is not None:
        qrs = slice(r + int(round(m500["qrs_onset_ms"] * HI / 1e3)), r + int(round(m500["qrs_offset_ms"] * HI / 1e3)) + 1)
    else:
        qrs = slice(r - int(0.05 * HI), r + int(0.05 * HI) + 1)
    shift, aligned = _best_shift(up100, b500, qrs)
    # On the 100-Hz grid: the reference is the 500-Hz beat taken down to 100 Hz.
    ref100 = resample_beat(b500, HI, LO)
    r100 = i100["r_index"]
    k = int(HI // LO)
    qrs100 = slice(r100 + (qrs.start - r) // k, r100 - (-(qrs.stop - r) // k))
    return {
        "ecg_id": int(row["ecg_id"]),
        "upsampled_100": _errors(up100, b500, qrs),
        "upsampled_100_aligned": aligned,
        "shift_ms": shift * 1e3 / HI,
        "down_up_500": _errors(down_up, b500, qrs),
        "record_upsampled_100": _errors(b_pre, b500, qrs),
        "grid100_plain": _errors(b100, ref100, qrs100),
        "grid100_record_upsampled": _errors(resample_beat(b_pre, HI, LO), ref100, qrs100),
        "measures_500": m500,
        "measures_100": m100,
        "measures_100_record_upsampled": _measures(b_pre, i_pre),
        "beats_kept": {"500": i500["beats_kept"], "100": i100["beats_kept"]},
    }


def _compact(rec: dict) -> dict:
    """One record's row for the JSON file: RMSEs (all, QRS) per comparison and the measurements."""
    row = {"ecg_id": rec["ecg_id"], "shift_ms": rec["shift_ms"], "beats_kept": rec["beats_kept"]}
    for key, val in rec.items():
        if isinstance(val, dict) and "rmse_uv" in val:
            row[key] = [val["rmse_uv"], val["qrs_rmse_uv"]]
        elif key.startswith("measures"):
            row[key] = [val["qrs_ms"], val["r_ii_mv"], val["qt_ms"], val["hr_bpm"]]
    return row


def _rounded(obj):
    """Floats to 4 decimals (uV, ms, mV: far below what is measured), recursively, for a compact JSON file."""
    if isinstance(obj, float):
        return round(obj, 4)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return obj


def _summary(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    return {"n": int(len(v)), "mean": float(v.mean()), "median": float(np.median(v)), "p90": float(np.percentile(v, 90))}


def _diff_summary(rows: list[dict], key: str, scale: float = 1.0, which: str = "measures_100") -> dict[str, float]:
    pairs = [(r[which][key], r["measures_500"][key]) for r in rows]
    d = np.array([(a - b) * scale for a, b in pairs if a is not None and b is not None], dtype=float)
    missing = sum(1 for a, b in pairs if a is None or b is None)
    return {"n": int(len(d)), "missing": missing, "bias": float(d.mean()), "sd": float(d.std(ddof=1)),
            "mae": float(np.mean(np.abs(d))), "p90_abs": float(np.percentile(np.abs(d), 90))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(REPO.parent / "shared" / "data" / "ptb-xl"), help="PTB-XL directory")
    parser.add_argument("--out", default=str(REPO / "bench" / "results"), help="directory for the results files")
    parser.add_argument("--limit", type=int, default=None, help="only the first N records (a quick look)")
    args = parser.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    table = data / "ptbxl_database.csv"
    if not table.is_file():
        print(f"no PTB-XL table at {table}", file=sys.stderr)
        return 2
    with open(table, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if (data / (r["filename_hr"] + ".hea")).is_file()]
    rows = rows[:args.limit] if args.limit else rows
    t0 = time.time()
    results, skipped = [], []
    for row in rows:
        try:
            results.append(compare_record(data, row))
        except ECGError as exc:
            skipped.append({"ecg_id": int(row["ecg_id"]), "reason": str(exc)})
    elapsed = time.time() - t0
    if not results:
        print("no record could be compared", file=sys.stderr)
        return 2

    comparisons = {}
    for name in ("upsampled_100", "upsampled_100_aligned", "down_up_500", "record_upsampled_100",
                 "grid100_plain", "grid100_record_upsampled"):
        comparisons[name] = {k: _summary([r[name][k] for r in results]) for k in results[0][name]}
    shifts = np.array([r["shift_ms"] for r in results])
    report = {
        "what": "median beat from the 100-Hz vs the 500-Hz PTB-XL record, compared on the 500-Hz grid",
        "data": str(data),
        "records_with_500hz": len(rows),
        "records_compared": len(results),
        "skipped": skipped,
        "seconds": round(elapsed, 1),
        "machine": platform.platform(),
        "beat": {"before_s": 0.4, "after_s": 0.8, "samples_100hz": 120, "samples_500hz": 600},
        "record_fields": {"comparisons": ["rmse_uv", "qrs_rmse_uv"], "measures": ["qrs_ms", "r_ii_mv", "qt_ms", "hr_bpm"]},
        "comparisons_uv": comparisons,
        "best_shift_ms": {"mean": float(shifts.mean()), "mean_abs": float(np.abs(shifts).mean()),
                          "share_zero": float(np.mean(shifts == 0))},
        "measurement_diff_100_minus_500": {
            "qrs_duration_ms": _diff_summary(results, "qrs_ms"),
            "r_amplitude_ii_uv": _diff_summary(results, "r_ii_mv", 1e3),
            "qt_ms": _diff_summary(results, "qt_ms"),
            "heart_rate_bpm": _diff_summary(results, "hr_bpm"),
        },
        "measurement_diff_100_upsampled_record_minus_500": {
            "qrs_duration_ms": _diff_summary(results, "qrs_ms", which="measures_100_record_upsampled"),
            "r_amplitude_ii_uv": _diff_summary(results, "r_ii_mv", 1e3, which="measures_100_record_upsampled"),
            "qt_ms": _diff_summary(results, "qt_ms", which="measures_100_record_upsampled"),
            "heart_rate_bpm": _diff_summary(results, "hr_bpm", which="measures_100_record_upsampled"),
        },
        "records": [_compact(r) for r in results],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "beat_resolution.json").write_text(json.dumps(_rounded(report), separators=(",", ":")) + "\n")
    (out / "beat_resolution.md").write_text(_markdown(report))
    print((out / "beat_resolution.md").read_text())
    return 0


def _markdown(rep: dict) -> str:
    c = rep["comparisons_uv"]
    grid500 = {
        "upsampled_100": "(a) 100-Hz beat, upsampled",
        "upsampled_100_aligned": "(a') same, best shift within +-10 ms",
        "down_up_500": "(b) 500-Hz beat -> 100 Hz -> 500 Hz (grid limit)",
        "record_upsampled_100": "(c) 100-Hz record upsampled to 500 Hz before beat extraction",
    }
    grid100 = {
        "grid100_plain": "100-Hz beat from the 100-Hz record",
        "grid100_record_upsampled": "(c) beat, taken down to 100 Hz",
    }
    header = ["| comparison | MAE (median) | RMSE (median) | RMSE (p90) "
              "| QRS MAE (median) | QRS RMSE (median) | QRS RMSE (p90) |",
              "|---|---:|---:|---:|---:|---:|---:|"]

    def rows(names: dict) -> list[str]:
        out = []
        for key, label in names.items():
            s = c[key]
            out.append(f"| {label} | {s['mae_uv']['median']:.1f} | {s['rmse_uv']['median']:.1f} | {s['rmse_uv']['p90']:.1f} | "
                       f"{s['qrs_mae_uv']['median']:.1f} | {s['qrs_rmse_uv']['median']:.1f} | {s['qrs_rmse_uv']['p90']:.1f} |")
        return out

    sh = rep["best_shift_ms"]
    lines = [
        "# Median beat: 100 Hz vs 500 Hz (PTB-XL)",
        "",
        f"{rep['records_compared']} of {rep['records_with_500hz']} records with a 500-Hz version compared "
        f"({len(rep['skipped'])} skipped: no usable median beat), {rep['seconds']} s "
        "(`python bench/beat_resolution.py`). Beats are 1.2 s (0.4 s before R). Errors are over all 12 leads, "
        "in uV, medians and 90th percentiles over records; QRS = onset to offset measured on the 500-Hz beat.",
        "",
        "## On the 500-Hz grid (reference: the 500-Hz median beat)",
        "",
        *header, *rows(grid500),
        "",
        f"Best alignment shift of the upsampled 100-Hz beat: mean {sh['mean']:+.2f} ms, mean |shift| "
        f"{sh['mean_abs']:.2f} ms, zero for {100 * sh['share_zero']:.0f} % of records.",
        "",
        "## On the 100-Hz grid (reference: the 500-Hz median beat taken down to 100 Hz)",
        "",
        *header, *rows(grid100),
        "",
        "## Measurements minus those on the 500-Hz beat",
        "",
        "| beat | measurement | n | missing | bias | SD | MAE | p90 abs |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    units = {"qrs_duration_ms": "ms", "r_amplitude_ii_uv": "uV", "qt_ms": "ms", "heart_rate_bpm": "bpm"}
    for block, label in (("measurement_diff_100_minus_500", "100 Hz"),
                         ("measurement_diff_100_upsampled_record_minus_500", "(c) upsampled record")):
        for key, d in rep[block].items():
            u = units[key]
            lines.append(f"| {label} | {key} | {d['n']} | {d['missing']} | {d['bias']:+.1f} {u} | {d['sd']:.1f} {u} | "
                         f"{d['mae']:.1f} {u} | {d['p90_abs']:.1f} {u} |")
    lines += ["", "## Recommendation for the VAE beat grid", "", _recommendation(rep), ""]
    if rep["skipped"]:
        lines += ["## Skipped records", ""] + [f"- {s['ecg_id']}: {s['reason']}" for s in rep["skipped"]] + [""]
    return "\n".join(lines)


def _recommendation(rep: dict) -> str:
    """The grid advice, worded from this run's numbers."""
    c = rep["comparisons_uv"]
    med = {k: c[k]["qrs_rmse_uv"]["median"] for k in c}
    a, b, pre = med["upsampled_100"], med["down_up_500"], med["record_upsampled_100"]
    plain100, pre100 = med["grid100_plain"], med["grid100_record_upsampled"]
    recovered = (a - pre) / (a - b) if a > b else 0.0
    m100 = rep["measurement_diff_100_minus_500"]
    mpre = rep["measurement_diff_100_upsampled_record_minus_500"]
    text = (
        f"Keep the VAE on the 100-Hz grid: 120 samples per 1.2-s beat. Nearly all local PTB-XL records exist only "
        f"at 100 Hz, and a finer grid cannot hold more than they carry: the 500-Hz beat sent through 100 Hz and "
        f"back already differs from itself by {b:.0f} uV RMSE in the QRS (b), so a 500-Hz VAE trained on 100-Hz "
        f"data would spend capacity on interpolation. The 100-Hz beat loses more than that limit ({a:.0f} uV, a); "
        f"{100 * recovered:.0f} % of the excess over the limit comes back when the 100-Hz record is upsampled to "
        f"500 Hz before the beats are cut and aligned (c: {pre:.0f} uV): that part is beats aligned on a 10-ms "
        f"grid smearing the median, not a limit of the grid. "
    )
    if pre100 < plain100:
        text += (
            f"That gain survives on the 100-Hz grid ({plain100:.0f} -> {pre100:.0f} uV QRS RMSE against the 500-Hz "
            f"beat taken down to 100 Hz), so build the VAE's beats as `ecg_medianbeat(resample_signal(x, 100, 500), "
            f"500, out_rate=100)`: the same 120 samples, aligned on a 2-ms grid. "
        )
    else:
        text += (f"On the 100-Hz grid that gain does not survive ({plain100:.0f} vs {pre100:.0f} uV), "
                 f"so plain 100-Hz beats will do. ")
    text += (
        f"Absolute measurements on 100-Hz beats are biased (R amplitude in II {m100['r_amplitude_ii_uv']['bias']:+.0f} uV, "
        f"QRS duration {m100['qrs_duration_ms']['bias']:+.1f} ms; with the upsampled record "
        f"{mpre['r_amplitude_ii_uv']['bias']:+.0f} uV and {mpre['qrs_duration_ms']['bias']:+.1f} ms), which matters for "
        f"clinical read-outs of the factors but not for a model trained and evaluated on one grid."
    )
    return text


if __name__ == "__main__":
    sys.exit(main())
