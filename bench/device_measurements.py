"""ecglens's ECG measurements against the devices' own, on every hospital sample (issue 21 item 4).

Samples: pydicom's 12-lead DICOM ECG (Mortara ELI 250) and every Philips and GE MUSE XML file under
``../shared/data/formats``. Each is read with ``read_ecg``; its median beat (as ``ecglens beat`` makes it:
0.4 s before R, 0.8 s after) is measured with ``ecg_measure`` as it is now ("after") and as it was at
revision ``BEFORE_REV`` ("before", loaded from git), and compared with ``metadata["device_measurements"]``:

* PR and QRS within 10 ms, QT within 25 ms (IEC 60601-2-25 style tolerances);
* QTc: ecglens's QTc (Bazett on its QT and its median RR) against the device's; and, to separate the QT
  from the RR each side used, ecglens's QT corrected with the device's RR (the device's RR interval, else
  60 / its heart rate) within 25 ms / sqrt(RR);
* the frontal QRS axis (reported, no tolerance);
* after the fix, also each record resampled to 100 Hz (PTB-XL's lower rate) before its median beat.

Where a file carries the device's median beat and the device's fiducials on it (the DICOM waveform
annotations; the Philips 1.04 ``qonset``/``qrsdur``/``print``/``qtint`` of the representative beats),
ecglens also measures that very beat, so that fiducial errors (P onset, QRS onset, QRS end, T end) are
free of median-beat differences; the spatial velocity at the device's QRS end, as a fraction of its peak,
is what sets the QRS-end limit in ``beats/measure.py``, and lead II's level in the PR segment (the 20 ms
before the device's QRS onset) less its level before the P wave (20-60 ms before the device's P onset) is
why the P onset is sought on a velocity rather than on a level. Philips 1.03 files state the device's global
fiducials in the rhythm (``measurements/globalmeasurements``: ``pon``, ``qrson``, ``qrsoff``, ``toff`` in ms);
they are listed with the QRS duration they imply.

Usage: ``python bench/device_measurements.py [--formats DIR] [--out bench/results]``.
Writes ``device_measurements.json`` and ``device_measurements.md``.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ecglens.atomic import write_json_atomic, write_text_atomic  # noqa: E402
from ecglens.beats import measure as measure_now  # noqa: E402
from ecglens.beats import ecg_medianbeat, median_beat  # noqa: E402
from ecglens.io import read_ecg  # noqa: E402
from ecglens.io._hospital import parse_xml  # noqa: E402
from ecglens.preprocess import resample_signal  # noqa: E402

BEFORE_REV = "2c04f27"  # the last revision of beats/measure.py before the QRS-end and P-onset fixes
TOLERANCE_MS = {"pr_interval_ms": 10.0, "qrs_duration_ms": 10.0, "qt_ms": 25.0}
GRID_HZ = 100.0
MEASURES = ("pr_interval_ms", "qrs_duration_ms", "qt_ms", "qtc_ms", "axis_deg")
FIDUCIALS = ("p_onset_ms", "qrs_onset_ms", "qrs_offset_ms", "t_end_ms")


def load_before():
    """``beats/measure.py`` at ``BEFORE_REV`` as a module of the ``ecglens.beats`` package, or None without git."""
    try:
        source = subprocess.run(["git", "show", f"{BEFORE_REV}:src/ecglens/beats/measure.py"], cwd=REPO,
                                check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader("ecglens.beats._measure_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "ecglens.beats"
    exec(compile(source, f"{BEFORE_REV}:measure.py", "exec"), module.__dict__)
    return module


def samples(formats: Path) -> list[Path]:
    """The DICOM ECG inside pydicom, then every XML file under ``formats`` (sorted)."""
    import pydicom.data

    found = sorted(p for p in formats.rglob("*") if p.suffix.lower() == ".xml") if formats.is_dir() else []
    return [Path(pydicom.data.get_testdata_file("waveform_ecg.dcm")), *found]


def device_rr_s(device: dict) -> float | None:
    """The device's RR in s: its stated RR interval, else 60 / its heart rate."""
    if device.get("rr_ms"):
        return device["rr_ms"] / 1e3
    return 60.0 / device["heart_rate"] if device.get("heart_rate") else None


def dicom_fiducials(path: Path) -> tuple[np.ndarray, float, int, dict] | None:
    """(median beat in mV, rate, R sample, device fiducials in ms from R) from the DICOM annotations (R: their fiducial point)."""
    import pydicom

    ds = pydicom.dcmread(path)
    names = {"P Onset": "p_onset_ms", "QRS Onset": "qrs_onset_ms", "QRS Offset": "qrs_offset_ms",
             "T Offset": "t_end_ms", "Fiducial Point": "r"}
    groups = [str(g.get("MultiplexGroupLabel", "")).upper() for g in ds.WaveformSequence]
    if "MEDIAN BEAT" not in groups:
        return None
    length = int(ds.WaveformSequence[groups.index("MEDIAN BEAT")].NumberOfWaveformSamples)
    # Mortara writes the median beat's points as one annotation group and each rhythm beat's as another, all
    # referencing the same channels: take the lowest-numbered group that places all five points inside the beat.
    by_group: dict[int, dict[str, int]] = {}
    for item in ds.get("WaveformAnnotationSequence") or []:
        concept = (item.get("ConceptNameCodeSequence") or [None])[0]
        key = None if concept is None else names.get(str(concept.get("CodeMeaning", "")))
        if key and item.get("ReferencedSamplePositions") is not None:
            by_group.setdefault(int(item.AnnotationGroupNumber), {})[key] = int(item.ReferencedSamplePositions) - 1
    complete = [g for g, pts in sorted(by_group.items())
                if set(pts) == set(names.values()) and all(0 <= v < length for v in pts.values())]
    if not complete:
        return None
    points = by_group[complete[0]]
    ecg = read_ecg(path)
    beats = ecg.metadata["median_beats"]
    fs = beats["sampling_rate"]
    return (np.asarray(beats["signal"]), fs, points["r"],
            {k: (v - points["r"]) / fs * 1e3 for k, v in points.items() if k != "r"})


def philips_fiducials(ecg) -> tuple[np.ndarray, float, int, dict] | None:
    """(representative beats, rate, R sample, device fiducials in ms from R) from a Philips 1.04 file.

    The global ``qonset`` (ms into the beat), ``qrsdur``, ``print`` and ``qtint`` place QRS onset and end, P
    onset and T end; R is the largest spatial magnitude within the device's QRS.
    """
    raw, beats = ecg.metadata.get("device_measurements_raw", {}), ecg.metadata.get("median_beats")
    try:
        q, d, pr, qt = (float(raw[k]) for k in ("qonset", "qrsdur", "print", "qtint"))
    except (KeyError, ValueError):
        return None
    if beats is None:
        return None
    x, fs = np.asarray(beats["signal"]), beats["sampling_rate"]
    a, b = int(round(q * fs / 1e3)), int(round((q + d) * fs / 1e3))
    r = a + int(np.argmax(np.sqrt(np.mean(x[:, a:b] ** 2, axis=0))))
    r_ms = r / fs * 1e3
    return x, fs, r, {"p_onset_ms": q - pr - r_ms, "qrs_onset_ms": q - r_ms, "qrs_offset_ms": q + d - r_ms,
                   "t_end_ms": q + qt - r_ms}


def philips_global_fiducials(path: Path) -> dict | None:
    """Philips 1.03 ``measurements/globalmeasurements`` fiducials (ms into the rhythm), with the QRS and QT they imply."""
    if path.suffix.lower() != ".xml":
        return None
    root = parse_xml(path)
    block = root.find("measurements/globalmeasurements") if root.tag == "restingecgdata" else None
    if block is None:
        return None
    out = {}
    for tag in ("pon", "qrson", "qrsoff", "ton", "toff"):
        elem = block.find(tag)
        try:
            out[tag] = float(elem.text)
        except (AttributeError, TypeError, ValueError):
            return None
    out.update(qrs_duration_ms=out["qrsoff"] - out["qrson"], pr_interval_ms=out["qrson"] - out["pon"],
               qt_ms=out["toff"] - out["qrson"])
    per_lead = {}
    for lead in root.iter("leadmeasurement"):
        try:
            per_lead[lead.get("leadname")] = float(lead.findtext("qrsdur"))
        except (TypeError, ValueError):
            continue
    out["per_lead_qrs_duration_ms"] = per_lead
    return out


def end_velocity_fraction(x: np.ndarray, fs: float, r_index: int, qrs_end_ms: float) -> float:
    """Spatial velocity (as ``ecg_measure`` computes it) at ``qrs_end_ms`` from R, as a fraction of its peak near R."""
    m = measure_now
    x = x - m.beat_baseline(x, fs, r_index)
    fine, up = m._upsample(np.asarray(x, dtype=np.float64), fs)
    ff = fs * up
    fine = m._gauss_smooth(fine, ff)
    vel = m._smooth(np.sqrt(np.mean(np.gradient(fine, axis=-1) ** 2, axis=0)) * ff, int(round(m.VELOCITY_SMOOTH_S * ff)))
    r = r_index * up
    peak = float(vel[r - int(0.1 * ff):r + int(0.1 * ff) + 1].max())
    return float(vel[int(round(r + qrs_end_ms / 1e3 * ff))] / peak)


def pr_shift_ii(x: np.ndarray, fs: float, r_index: int, leads, truth: dict) -> float:
    """Lead II's median level in the 20 ms before the device's QRS onset less that 20-60 ms before its P onset (mV)."""
    ii = np.asarray(x, dtype=np.float64)[list(leads).index("II")]

    def level(t0_ms: float, t1_ms: float) -> float:
        a, b = (r_index + int(round(t / 1e3 * fs)) for t in (t0_ms, t1_ms))
        return float(np.median(ii[max(0, a):max(1, b)]))

    return level(truth["qrs_onset_ms"] - 20, truth["qrs_onset_ms"]) - level(truth["p_onset_ms"] - 60, truth["p_onset_ms"] - 20)


def pick(m: dict) -> dict:
    return {k: None if m.get(k) is None else round(float(m[k]), 1) for k in (*MEASURES, *FIDUCIALS, "rr_ms")}


def compare(ours: dict, device: dict) -> dict:
    """Per-measure error (ecglens - device) and whether it is within tolerance; QTc also with the device's RR."""
    out = {}
    for key in MEASURES:
        if ours.get(key) is None or device.get(key) is None:
            continue
        err = ours[key] - device[key]
        if key == "axis_deg":
            err = (err + 180.0) % 360.0 - 180.0
        out[key] = {"error": round(err, 1)}
        if key in TOLERANCE_MS:
            out[key]["within"] = abs(err) <= TOLERANCE_MS[key]
    rr = device_rr_s(device)
    if "qtc_ms" in out and ours.get("qt_ms") is not None and rr:
        err = ours["qt_ms"] / math.sqrt(rr) - device["qtc_ms"]
        out["qtc_ms"].update(within=abs(out["qtc_ms"]["error"]) <= TOLERANCE_MS["qt_ms"] / math.sqrt(rr),
                             error_device_rr=round(err, 1), within_device_rr=abs(err) <= TOLERANCE_MS["qt_ms"] / math.sqrt(rr))
    return out


def measure_record(path: Path, versions: dict) -> dict:
    ecg = read_ecg(path)
    device = ecg.metadata.get("device_measurements", {})
    row = {"file": path.name, "format": ecg.metadata.get("format"), "sampling_rate": float(ecg.sampling_rate),
           "device": device, "device_rr_ms": None if device_rr_s(device) is None else round(device_rr_s(device) * 1e3, 1)}
    median, info = median_beat(ecg, before=0.4, after=0.8)
    rr = 60.0 / info["heart_rate"] if info["heart_rate"] else None
    row["beats_kept"] = f"{info['beats_kept']}/{info['beats_found']}"
    for name, module in versions.items():
        m = pick(module.ecg_measure(median, info["sampling_rate"], info["r_index"], rr=rr, leads=info["leads"]))
        row[name] = {"measured": m, "vs_device": compare(m, device)}
    if ecg.sampling_rate > GRID_HZ:  # the grid question: the same record taken down to PTB-XL's 100 Hz
        coarse = resample_signal(ecg.signal, ecg.sampling_rate, GRID_HZ)
        median, info = ecg_medianbeat(coarse, GRID_HZ, before=0.4, after=0.8)
        m = pick(measure_now.ecg_measure(median, info["sampling_rate"], info["r_index"], rr=60.0 / info["heart_rate"],
                                         leads=ecg.leads))
        row[f"after_{GRID_HZ:g}hz"] = {"measured": m, "vs_device": compare(m, device)}
    fid = philips_global_fiducials(path)
    if fid:
        row["device_global_fiducials"] = fid
    beat = dicom_fiducials(path) if path.suffix.lower() == ".dcm" else philips_fiducials(ecg)
    if beat is not None:
        x, fs, r_index, truth = beat
        dev = {"device": {k: round(v, 1) for k, v in truth.items()},
               "velocity_at_device_qrs_end": round(end_velocity_fraction(x, fs, r_index, truth["qrs_offset_ms"]), 4),
               "pr_shift_ii_mv": round(pr_shift_ii(x, fs, r_index, ecg.leads, truth), 3)}
        for name, module in versions.items():
            m = module.ecg_measure(x, fs, r_index, rr=device_rr_s(device))
            dev[name] = {k: None if m[k] is None else round(m[k] - truth[k], 1) for k in FIDUCIALS}
        row["device_beat"] = dev
    return row


def summary(rows: list[dict], versions) -> dict:
    """Per version and measure: how many samples with a device value are within tolerance ("k/n")."""
    out = {}
    for name in versions:
        counts = {}
        for key in ("pr_interval_ms", "qrs_duration_ms", "qt_ms", "qtc_ms"):
            hits = [r[name]["vs_device"][key] for r in rows if key in r[name]["vs_device"]]
            counts[key] = f"{sum(h['within'] for h in hits)}/{len(hits)}"
            if key == "qtc_ms":
                counts["qtc_ms_device_rr"] = f"{sum(h['within_device_rr'] for h in hits)}/{len(hits)}"
        out[name] = counts
    return out


def _cell(v, err=None, tol=None) -> str:
    if v is None:
        return "-"
    text = f"{v:.0f}"
    if err is not None:
        text += f" ({err:+.0f}{'' if tol is None or abs(err) <= tol else ' !'})"
    return text


def markdown(result: dict) -> str:
    versions = result["versions"]
    lines = ["# ecglens measurements against the devices' own", "",
             f"Revision before the fix: `{result['before_revision']}` (`before`); `after`: the working tree. "
             "Tolerances: PR and QRS 10 ms, QT 25 ms, QTc 25 ms / sqrt(RR) (IEC 60601-2-25 style). "
             "Cells: ecglens value (error against the device; `!` outside tolerance). "
             "QTc: ecglens's own (Bazett on its QT and median RR); `QTc(dev RR)` corrects ecglens's QT with the device's RR.",
             "", "## Within tolerance", "", "| measure | " + " | ".join(versions) + " |",
             "|---|" + "---|" * len(versions)]
    for key in ("pr_interval_ms", "qrs_duration_ms", "qt_ms", "qtc_ms", "qtc_ms_device_rr"):
        lines.append(f"| {key} | " + " | ".join(result["within_tolerance"][v][key] for v in versions) + " |")
    lines += ["", "## Per sample", "",
              "| file | version | RR ms (dev) | PR (dev) | QRS (dev) | QT (dev) | QTc (dev) | QTc(dev RR) | QRS axis (dev) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in result["records"]:
        d = r["device"]
        if not d:
            lines.append(f"| {r['file']} | - | the file states no device measurements | | | | | | |")
            continue
        for v in versions:
            m, c = r[v]["measured"], r[v]["vs_device"]
            qtc_dev = c.get("qtc_ms", {}).get("error_device_rr")
            lines.append(f"| {r['file']} | {v} | {_cell(m['rr_ms'])} ({_cell(r['device_rr_ms'])}) | "
                         f"{_cell(m['pr_interval_ms'], c.get('pr_interval_ms', {}).get('error'), 10)} ({_cell(d.get('pr_interval_ms'))}) | "
                         f"{_cell(m['qrs_duration_ms'], c.get('qrs_duration_ms', {}).get('error'), 10)} ({_cell(d.get('qrs_duration_ms'))}) | "
                         f"{_cell(m['qt_ms'], c.get('qt_ms', {}).get('error'), 25)} ({_cell(d.get('qt_ms'))}) | "
                         f"{_cell(m['qtc_ms'], c.get('qtc_ms', {}).get('error'))} ({_cell(d.get('qtc_ms'))}) | "
                         f"{'-' if qtc_dev is None else f'{qtc_dev:+.0f}'} | "
                         f"{_cell(m['axis_deg'], c.get('axis_deg', {}).get('error'))} ({_cell(d.get('axis_deg'))}) |")
    key = f"after_{GRID_HZ:g}hz"
    grid = [r for r in result["records"] if key in r and r["device"]]
    if grid:
        lines += ["", f"## After the fix, each record taken down to {GRID_HZ:g} Hz first", "",
                  "| file | PR (err) | QRS (err) | QT (err) |", "|---|---|---|---|"]
        for r in grid:
            m, c = r[key]["measured"], r[key]["vs_device"]
            lines.append(f"| {r['file']} | " + " | ".join(
                _cell(m[k], c.get(k, {}).get("error"), TOLERANCE_MS[k]) for k in TOLERANCE_MS) + " |")
    beats = [r for r in result["records"] if "device_beat" in r]
    if beats:
        lines += ["", "## On the device's own median beat", "",
                  "ecglens's fiducials minus the device's (ms), measured on the beat the device measured; "
                  "`v(end)`: spatial velocity at the device's QRS end as a fraction of its peak; `PR-P (II)`: lead II's "
                  "level in the PR segment less its level before the P wave (mV).", "",
                  "| file | v(end) | PR-P (II) | version | P onset | QRS onset | QRS end | T end |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in beats:
            b = r["device_beat"]
            for v in versions:
                e = b[v]
                lines.append(f"| {r['file']} | {b['velocity_at_device_qrs_end']:.3f} | {b['pr_shift_ii_mv']:+.3f} | {v} | "
                             + " | ".join("-" if e[k] is None else f"{e[k]:+.0f}" for k in FIDUCIALS) + " |")
    fids = [r for r in result["records"] if "device_global_fiducials" in r]
    if fids:
        lines += ["", "## Philips 1.03 global fiducials (ms into the rhythm)", "",
                  "| file | P on | QRS on | QRS off | T off | QRS they imply | PR | QT | device's printed QRS | "
                  "per-lead QRS |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in fids:
            f = r["device_global_fiducials"]
            leads = ", ".join(f"{k} {v:.0f}" for k, v in f["per_lead_qrs_duration_ms"].items())
            lines.append(f"| {r['file']} | {f['pon']:.0f} | {f['qrson']:.0f} | {f['qrsoff']:.0f} | {f['toff']:.0f} | "
                         f"{f['qrs_duration_ms']:.0f} | {f['pr_interval_ms']:.0f} | {f['qt_ms']:.0f} | "
                         f"{_cell(r['device'].get('qrs_duration_ms'))} | {leads} |")
    lines += ["", f"Machine: {result['machine']}; {result['seconds']:.1f} s.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--formats", type=Path, default=REPO.parent / "shared" / "data" / "formats")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args(argv)
    versions = {"after": measure_now}
    before = load_before()
    if before is not None:
        versions = {"before": before, **versions}
    start = time.perf_counter()
    rows = [measure_record(path, versions) for path in samples(args.formats)]
    result = {"before_revision": BEFORE_REV if before is not None else None, "versions": list(versions),
              "tolerances_ms": TOLERANCE_MS, "within_tolerance": summary(rows, versions), "records": rows,
              "machine": f"{platform.machine()}, python {platform.python_version()}",
              "seconds": time.perf_counter() - start}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "device_measurements.json", result, indent=1)
    write_text_atomic(args.out / "device_measurements.md", markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
