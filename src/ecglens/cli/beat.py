"""``ecglens beat``: the median beat of one record (any lead set), its quality report and its measurements."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ECGError
from . import COMMANDS
from .read import add_leads_argument

FIGURE_SUFFIXES = (".png", ".pdf", ".svg")
BEFORE_S, AFTER_S = 0.4, 0.8


def register(subparsers) -> None:
    p = subparsers.add_parser("beat", help=COMMANDS["beat"],
                              description="Detect R peaks, build the outlier-free median beat (1.2 s: 0.4 s before R) "
                                          "and measure intervals, axis and amplitudes on it.")
    p.add_argument("file", metavar="FILE", help="ECG file (.hea/.dat/.mat/.edf/.csv/.npy)")
    p.add_argument("--rate", type=float, default=None, metavar="HZ", help="sampling rate in Hz (required for .csv/.npy)")
    p.add_argument("-o", "--output", default=None, metavar="OUT",
                   help="also draw the median beat over the individual beats (.png, .pdf or .svg)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_leads_argument(p)
    p.set_defaults(func=run)


def beat_report(ecg) -> tuple[dict, np.ndarray, dict]:
    """(report, median beat, median-beat info) for one record; the report is JSON-ready."""
    from ..beats import ecg_measure, median_beat

    median, info = median_beat(ecg, before=BEFORE_S, after=AFTER_S)
    rr = np.asarray(info["rr"], dtype=float)
    rr_med = 60.0 / info["heart_rate"] if info["heart_rate"] else None
    measures = ecg_measure(median, info["sampling_rate"], info["r_index"], rr=rr_med, leads=info["leads"])
    quality = {
        "beats_found": info["beats_found"],
        "beats_kept": info["beats_kept"],
        "rejected": info["rejected"],
        "rr_mean_s": float(rr.mean()) if len(rr) else None,
        "rr_sd_s": float(rr.std(ddof=1)) if len(rr) > 1 else None,
        "heart_rate_bpm": info["heart_rate"],
        "r_peak_method": info["method"],
    }
    report = {"source": ecg.source, "sampling_rate": float(ecg.sampling_rate), "quality": quality, "measurements": measures}
    return report, median, info


def _num(v, fmt: str, unit: str = "") -> str:
    return "-" if v is None else f"{v:{fmt}}{unit}"


def format_report(report: dict) -> str:
    """The report as aligned text, for people."""
    q, m = report["quality"], report["measurements"]
    lines = [str(report["source"]),
             f"  beats      found {q['beats_found']}, kept {q['beats_kept']}, rejected {len(q['rejected'])}"]
    lines += [f"             beat {r['index']} (sample {r['sample']}): {r['reason']}" for r in q["rejected"]]
    lines += [
        f"  rhythm     RR mean {_num(q['rr_mean_s'], '.3f', ' s')}, SD {_num(q['rr_sd_s'], '.3f', ' s')}; "
        f"heart rate {_num(q['heart_rate_bpm'], '.1f', ' bpm')} (median RR); R peaks by {q['r_peak_method']}",
        f"  intervals  PR {_num(m['pr_interval_ms'], '.0f', ' ms')}, QRS {_num(m['qrs_duration_ms'], '.0f', ' ms')}, "
        f"QT {_num(m['qt_ms'], '.0f', ' ms')}, QTc {_num(m['qtc_ms'], '.0f', ' ms')} (Bazett)",
        f"  axis       {_num(m['axis_deg'], '.0f', ' deg')} (frontal QRS)",
        "  lead        R mV    S mV  ST60 mV    T mV",
    ]
    for lead in m["r_amplitude_mv"]:
        lines.append(f"  {lead:<6} {_num(m['r_amplitude_mv'][lead], '8.2f')} {_num(m['s_amplitude_mv'][lead], '7.2f')} "
                     f"{_num(m['st_mv'][lead], '8.2f')} {_num(m['t_amplitude_mv'][lead], '7.2f')}")
    return "\n".join(lines)


def run(args) -> int:
    from .read import read_record, to_jsonable

    out = Path(args.output) if args.output else None
    if out is not None and out.suffix.lower() not in FIGURE_SUFFIXES:
        raise ECGError(out, f"unsupported figure type {out.suffix or '(no suffix)'!r}; use {', '.join(FIGURE_SUFFIXES)}")
    ecg = read_record(args.file, args.rate, leads=args.leads)
    report, median, info = beat_report(ecg)
    if out is not None:
        from ..viz import plot_beats

        out.parent.mkdir(parents=True, exist_ok=True)
        title = f"{Path(str(ecg.source or args.file)).name}: median of {info['beats_kept']} beats"
        plot_beats(median, info["sampling_rate"], info["leads"], beats=info["beats"], path=out, title=title,
                   start_s=-info["r_index"] / info["sampling_rate"])
        report["figure"] = str(out)
    if args.json:
        print(json.dumps(to_jsonable(report), indent=2, allow_nan=False))
    else:
        print(format_report(report))
        if out is not None:
            print(f"  figure     {out}")
    return 0
