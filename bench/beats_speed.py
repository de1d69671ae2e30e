"""Benchmark: median beats, the per-record implementation (pinned revision) against the batch ones, on PTB-XL fold 10.

Three paths on the same records: **old** (per record, pinned revision), **today**
(batch, ``BeatSettings(subsample=False)``: the setting the median-beat models shipped
with before, the 100-Hz record interpolated to 500 Hz as a whole) and **new** (batch,
``BeatSettings()``: cut on the record's grid, aligned to R peaks on the 500-Hz
grid by interpolating each beat window only; the shipped models' setting since issue 26).

The old implementation is the package's beats code as of ``OLD_REV`` (R peaks
through neurokit2, per-beat loops, every record resampled to 500 Hz first),
read from git with ``git show`` and loaded beside the package for this run
only. On the same records, in one run:

* time per record (median of ``--repeats`` alternating runs, wall and CPU) of
  the FactorECG beat (``ecg_factorbeat``) on the 370 test-fold records at
  100 Hz (old vs today, old vs new), of the same on the fold's 500-Hz records
  (there today and new are one path: nothing is interpolated), and of
  ``ecg_findpeaks`` (what the record quality check runs on every record); the
  batch path with ``extract_rate=100`` (beats aligned on the 100-Hz grid only)
  is timed for reference;
* how far the beats moved: records with identical beats, beat MAE and
  largest difference (uV), R peaks (ms), kept beats (old vs today, today vs
  new), the probabilities of the shipped FactorECG and median-beat black box
  on the fold and on the bundled samples (read at their highest rate, as the
  golden test does), and, on the fold's records that exist at 500 Hz, each
  100-Hz path's beat against the 500-Hz record's beat (the beat the 100-Hz
  grid should carry); the tolerance the new path is held to is ``NEW_TOLERANCE``;
* with ``--same-as REV``: the batch code of a revision (``rpeaks``, ``median``,
  ``measure`` at REV, e.g. the commit before a speed-up) against the working
  tree's on the fold at 100 Hz (both settings) and 500 Hz: time per record and
  whether beats, R peaks, kept beats and errors are the same (largest beat
  difference under ``SAME_UV``);
* ``ecglens predict`` wall time over the fold (start-up included) for
  ``baseline``, ``factorecg`` (its stored setting: today's path),
  ``factorecg`` with its beat setting switched to the new path (a temporary
  copy of the shipped checkpoint; timing only) and ``factorecg`` with the old
  beats and R peaks patched in.

Usage: ``python bench/beats_speed.py [DATA_DIR] [--repeats 3] [--predict-repeats 5] [--out bench/results]``
(DATA_DIR defaults to ``../shared/data/ptb-xl``). Needs git and neurokit2 (for
the old path). Writes ``beats_speed.json`` and ``beats_speed.md``. A quick check:
``--limit 100 --repeats 1 --predict-repeats 0 --out /tmp/beats`` (100 records, no ``predict`` timing).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ecglens.errors import ECGError  # noqa: E402

OLD_REV = "1c1df5e62929031a85fdf5430848e0100c32e6a3"  # last revision of the per-record beats implementation
OLD_MODULES = (  # (module name, path, (old import, replacement)...): the old code imports its old siblings
    ("ecglens.beats._bench_old_rpeaks", "src/ecglens/beats/rpeaks.py", ()),
    ("ecglens.beats._bench_old_median", "src/ecglens/beats/median.py",
     (("from .rpeaks import", "from ._bench_old_rpeaks import"),)),
    ("ecglens.models.factorecg._bench_old_data", "src/ecglens/models/factorecg/data.py",
     (("from ...beats import ecg_medianbeat", "from ...beats._bench_old_median import ecg_medianbeat"),)),
)
SAME_UV = 1e-3  # beats whose largest difference is under this many uV count as identical (float rounding)
# The new path against today's on 100-Hz records (uV): median record MAE, and its MAE against the 500-Hz beat at
# most this much above today's (pooled over the records that exist at 500 Hz).
NEW_TOLERANCE = {"median_record_mae_uv": 10.0, "vs_500hz_excess_mae_uv": 2.0}
MODELS = ("factorecg", "beat-blackbox")


REV_MODULES = (  # the batch beats code of a revision, for --same-as (its own siblings, the tree's other modules)
    ("ecglens.beats._bench_rev_measure", "src/ecglens/beats/measure.py", ()),
    ("ecglens.beats._bench_rev_rpeaks", "src/ecglens/beats/rpeaks.py", ()),
    ("ecglens.beats._bench_rev_median", "src/ecglens/beats/median.py",
     (("from .rpeaks import", "from ._bench_rev_rpeaks import"),
      ("from .measure import", "from ._bench_rev_measure import"))),
)


def load_modules(rev: str, modules) -> dict:
    """The modules ``(name, path, rewrites)`` as of revision ``rev`` (read with ``git show``; nothing is written)."""
    mods = {}
    for name, path, rewrites in modules:
        source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{path}"], capture_output=True, text=True,
                                check=True).stdout
        for old, new in rewrites:
            if old not in source:
                raise RuntimeError(f"{rev[:7]}:{path} has no {old!r}")
            source = source.replace(old, new)
        module = types.ModuleType(name)
        module.__package__ = name.rsplit(".", 1)[0]
        sys.modules[name] = module
        exec(compile(source, f"{rev[:7]}:{path}", "exec"), module.__dict__)
        mods[path] = module
    return mods


def rev_factorbeat(median_module, signals: np.ndarray, rate: float, settings) -> tuple[np.ndarray, list]:
    """``ecg_factorbeat_batch`` with a revision's ``ecg_medianbeat_batch``."""
    return median_module.ecg_medianbeat_batch(
        np.asarray(signals, dtype=np.float32), rate, before=settings.before, after=settings.after,
        min_beats=settings.min_beats, corr_threshold=settings.corr_threshold, align_rate=settings.extract_rate,
        out_rate=settings.beat_rate, subsample=settings.subsample)


def same_as_revision(rev: str, x100: np.ndarray, x500: np.ndarray, repeats: int) -> dict:
    """The working tree's batch beats against those of ``rev``: timing (new setting, 100 Hz) and sameness."""
    from ecglens.beats import ecg_findpeaks_batch
    from ecglens.models.factorecg.data import BeatSettings, ecg_factorbeat_batch

    mods = load_modules(rev, REV_MODULES)
    median_rev, rpeaks_rev = mods[REV_MODULES[2][1]], mods[REV_MODULES[1][1]]
    out = {"revision": rev, "cases": {}}
    for name, settings, x, rate in (("new setting, 100 Hz", BeatSettings(), x100, 100),
                                    ("today's setting, 100 Hz", BeatSettings(subsample=False), x100, 100),
                                    ("500 Hz", BeatSettings(subsample=False), x500, 500)):
        row, a, b = compare_timing(
            lambda x=x, rate=rate, settings=settings: rev_factorbeat(median_rev, x, rate, settings),
            lambda x=x, rate=rate, settings=settings: ecg_factorbeat_batch(x, rate, settings), len(x), repeats)
        d = beat_differences(a, b)
        d.pop("rows")
        out["cases"][name] = {"timing": row, "differences": d,
                              "same": d["identical_beats"] == d["both_ok"] and d["same_r_peaks"] == d["both_ok"]
                              and d["same_kept"] == d["both_ok"] and not d["failed_differently"]}
    row, a, b = compare_timing(lambda: rpeaks_rev.ecg_findpeaks_batch(x100, 100),
                               lambda: ecg_findpeaks_batch(x100, 100), len(x100), repeats)
    same = sum(str(u) == str(v) if isinstance(u, ECGError) or isinstance(v, ECGError)
               else np.array_equal(u[0], v[0]) and u[1] == v[1] for u, v in zip(a, b))
    out["cases"]["findpeaks, 100 Hz"] = {"timing": row, "same": same == len(x100), "same_records": same}
    return out


def load_old() -> types.SimpleNamespace:
    """The old ``ecg_findpeaks`` and ``ecg_factorbeat``, from ``OLD_REV`` (read with ``git show``; nothing is written)."""
    import ecglens.beats  # noqa: F401  (the parent packages of the old modules)
    import ecglens.models.factorecg  # noqa: F401

    mods = load_modules(OLD_REV, OLD_MODULES)
    return types.SimpleNamespace(findpeaks=mods[OLD_MODULES[0][1]].ecg_findpeaks,
                                 factorbeat=mods[OLD_MODULES[2][1]].ecg_factorbeat)


def old_beats(factorbeat, signals: np.ndarray, rate: float, settings) -> tuple[np.ndarray, list]:
    """The old path, one record at a time: (beats (n, 12, m) with NaN rows, infos or ECGErrors)."""
    out = np.full((len(signals), 12, settings.beat_samples), np.nan, dtype=np.float32)
    infos: list = []
    for i, x in enumerate(signals):
        try:
            out[i], info = factorbeat(x, rate, settings)
            infos.append(info)
        except ECGError as exc:
            infos.append(exc)
    return out, infos


def timed(fn) -> tuple[float, float, object]:
    """(wall s, CPU s, result) of one ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - w, time.process_time() - c, result


def compare_timing(old_fn, new_fn, n: int, repeats: int) -> tuple[dict, object, object]:
    """Old and new alternating ``repeats`` times: per-record medians in ms, speed-ups, and each one's result."""
    old_t, new_t = {"walls": [], "cpus": []}, {"walls": [], "cpus": []}
    for _ in range(repeats):
        for fn, acc in ((old_fn, old_t), (new_fn, new_t)):
            wall, cpu, acc["result"] = timed(fn)
            acc["walls"].append(wall)
            acc["cpus"].append(cpu)
    row = {"records": n}
    for name, acc in (("old", old_t), ("new", new_t)):
        row[f"{name}_wall_ms"] = 1e3 * statistics.median(acc["walls"]) / n
        row[f"{name}_cpu_ms"] = 1e3 * statistics.median(acc["cpus"]) / n
    row["speedup_wall"] = row["old_wall_ms"] / row["new_wall_ms"]
    row["speedup_cpu"] = row["old_cpu_ms"] / row["new_cpu_ms"]
    return row, old_t["result"], new_t["result"]


def beat_differences(old: tuple, new: tuple) -> dict:
    """How far the new beats, R peaks and kept beats are from the old ones."""
    (ob, oi), (nb, ni) = old, new
    ok = [i for i in range(len(oi)) if not isinstance(oi[i], ECGError) and not isinstance(ni[i], ECGError)]
    fail_old = {i for i, v in enumerate(oi) if isinstance(v, ECGError)}
    fail_new = {i for i, v in enumerate(ni) if isinstance(v, ECGError)}
    diff = np.abs(ob[ok].astype(np.float64) - nb[ok]) * 1e3  # uV
    largest, mae = diff.max(axis=(1, 2)), diff.mean(axis=(1, 2))
    rate = oi[ok[0]]["record_sampling_rate"] if ok else 1.0
    shifts, unmatched, same_peaks = [], 0, 0
    for i in ok:
        a, b = np.asarray(oi[i]["r_peaks"]), np.asarray(ni[i]["r_peaks"])
        same_peaks += bool(np.array_equal(a, b))
        if len(a) and len(b):
            d = np.abs(a[:, None] - b[None, :])
            near = d.min(axis=1) <= 0.05 * rate
            shifts += list(d.min(axis=1)[near] / rate * 1e3)
            unmatched += int((~near).sum()) + int((d.min(axis=0) > 0.05 * rate).sum())
    shifts = np.asarray(shifts)
    return {
        "records": len(oi), "both_ok": len(ok), "old_failed": len(fail_old), "new_failed": len(fail_new),
        "failed_differently": sorted(fail_old ^ fail_new),
        "identical_beats": int((largest < SAME_UV).sum()),
        "largest_uv": {"median": float(np.median(largest)), "p99": float(np.percentile(largest, 99)),
                       "max": float(largest.max())},
        "mae_uv": {"mean": float(mae.mean()), "median": float(np.median(mae)), "p99": float(np.percentile(mae, 99)),
                   "max": float(mae.max())},
        "largest_uv_of_identical": float(largest[largest < SAME_UV].max(initial=0.0)),
        "same_r_peaks": same_peaks, "same_kept": int(sum(oi[i]["kept"] == ni[i]["kept"] for i in ok)),
        "r_peak_shift_ms": {"matched": int(len(shifts)), "moved": int((shifts > 0).sum()),
                            "max": float(shifts.max(initial=0.0))},
        "r_peaks_unmatched": unmatched,
        "changed_records": [int(ok[j]) for j in np.flatnonzero(largest >= SAME_UV)],
        "rows": ok,
    }


def rhythm_of(signals: np.ndarray, rate: float, infos: list, rows: list[int]) -> np.ndarray:
    """Rhythm features of the records ``rows`` from one path's infos (NaN where they fail): given to a model
    that judges rhythm with both beats, so that only the beat differs."""
    from ecglens.models.factorecg.data import beat_rhythm

    out = []
    for i in rows:
        try:
            out.append(beat_rhythm(signals[i], rate, infos[i]))
        except ECGError:
            out.append(None)
    width = len(next(r for r in out if r is not None))
    return np.stack([np.full(width, np.nan) if r is None else r for r in out])


def probability_differences(old_beats_: np.ndarray, new_beats_: np.ndarray, rhythm: np.ndarray) -> dict:
    """Per shipped beat model: per-record largest |p_old - p_new| (calibrated and network)."""
    import ecglens

    out = {}
    for name in MODELS:
        clf = ecglens.load_model(name).loaded
        extra = (rhythm,) if getattr(clf, "judges_rhythm", False) else ()
        net_old, net_new = clf.predict_beats(old_beats_, *extra), clf.predict_beats(new_beats_, *extra)
        row = {}
        for kind, (a, b) in {"network": (net_old, net_new),
                             "calibrated": (clf.calibrate(net_old), clf.calibrate(net_new))}.items():
            d = np.abs(a - b).max(axis=1)
            row[kind] = {"median": float(np.median(d)), "p99": float(np.percentile(d, 99)), "max": float(d.max()),
                         "records_over_1e-5": int((d > 1e-5).sum())}
        out[name] = row
    return out


def against_500hz(paths: dict, ids100: list[int], ids500: list[int], x500: np.ndarray, settings) -> dict:
    """Each 100-Hz path's beats (``paths``: name -> (n, 12, m)) against the beat of the same record at 500 Hz
    (``ecg_factorbeat`` of the 500-Hz record, on the same grid): pooled and median-record MAE in uV."""
    from ecglens.models.factorecg.data import ecg_factorbeat_batch

    ref, _ = ecg_factorbeat_batch(x500, 500, settings)
    pos = {i: k for k, i in enumerate(ids100)}
    rows = [(pos[i], k) for k, i in enumerate(ids500) if i in pos]
    a, b = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    ok = np.isfinite(ref[b]).all(axis=(1, 2)) & np.all([np.isfinite(v[a]).all(axis=(1, 2)) for v in paths.values()],
                                                       axis=0)
    out = {"records": int(ok.sum())}
    for name, beats in paths.items():
        d = np.abs(beats[a[ok]].astype(np.float64) - ref[b[ok]]) * 1e3
        out[name] = {"mae_uv": float(d.mean()), "mae_uv_median_record": float(np.median(d.mean(axis=(1, 2))))}
    return out


def within_tolerance(fidelity: dict) -> dict:
    """The new path against ``NEW_TOLERANCE``."""
    med = fidelity["fold 10, 100 Hz: today vs new"]["mae_uv"]["median"]
    v = fidelity["fold 10, 100 Hz vs 500-Hz beat"]
    excess = v["new"]["mae_uv"] - v["today"]["mae_uv"]
    return {"median_record_mae_uv": med, "vs_500hz_excess_mae_uv": excess,
            "ok": bool(med <= NEW_TOLERANCE["median_record_mae_uv"]
                       and excess <= NEW_TOLERANCE["vs_500hz_excess_mae_uv"])}


def predict_times(files: list[str], repeats: int) -> dict:
    """``ecglens predict`` wall seconds over ``files`` (alternating, median of ``repeats``): the baseline, the
    shipped FactorECG (its stored beat setting) and the same with the old beats code patched in."""
    from ecglens.models.loading import resolve_checkpoint

    patch = ("import runpy, sys; bench = runpy.run_path({bench!r}); old = bench['load_old'](); "
             "import ecglens.models.factorecg.classifier as c, ecglens.quality as q; "
             "c.ecg_factorbeat = old.factorbeat; q.ecg_findpeaks = old.findpeaks; "
             "from ecglens.cli import main; sys.exit(main(sys.argv[1:]))").format(bench=str(Path(__file__).resolve()))
    subsample = json.loads((resolve_checkpoint("factorecg") / "config.json").read_text())["beat"]["subsample"]
    with tempfile.TemporaryDirectory() as tmp:
        commands = {"baseline": ["-m", "ecglens", "predict", "baseline"],
                    "factorecg": ["-m", "ecglens", "predict", "factorecg"],
                    "factorecg, old beats": ["-c", patch, "predict", "factorecg"]}
        walls = {name: [] for name in commands}
        for _ in range(repeats):
            for name, cmd in commands.items():
                t = time.perf_counter()
                done = subprocess.run([sys.executable, *cmd, *files, "-o", str(Path(tmp) / "out.csv"), "--no-progress"],
                                      capture_output=True, text=True, cwd=REPO)
                walls[name].append(time.perf_counter() - t)
                if done.returncode not in (0, 2):  # 2: some records had no usable beat (listed, still scored)
                    raise RuntimeError(f"predict {name} failed ({done.returncode}): {done.stderr[-2000:]}")
    med = {name: statistics.median(w) for name, w in walls.items()}
    return {"records": len(files), "repeats": repeats, "walls_s": walls, "median_s": med,
            "shipped_subsample": subsample, "factorecg_over_baseline": med["factorecg"] / med["baseline"],
            "old_factorecg_over_baseline": med["factorecg, old beats"] / med["baseline"]}


def fold_signals(data: Path, rate: int, limit: int | None) -> tuple[list[int], np.ndarray, list[str]]:
    """(ecg ids, (n, 12, t) signals, header paths) of the test fold's records at ``rate``."""
    from ecglens.datasets.ptbxl import PTBXL
    from ecglens.io import read_ecg

    ds = PTBXL(data, rate)
    ids = [int(i) for i in ds.records[ds.records["fold"] == 10].index][:limit]
    paths = [str(ds.header_path(i)) for i in ids]
    return ids, np.stack([read_ecg(p, sampling_rate=rate).signal for p in paths]), paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="?", default=str(REPO.parent / "shared" / "data" / "ptb-xl"))
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each path (default 3)")
    p.add_argument("--predict-repeats", type=int, default=5,
                   help="runs of each predict command (default 2; 0 leaves the predict timing out)")
    p.add_argument("--limit", type=int, default=None, help="use the first N records of the fold (default all)")
    p.add_argument("--same-as", default=None, metavar="REV",
                   help="also compare the batch code with that of revision REV (time and sameness)")
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = p.parse_args(argv)
    from ecglens.beats import ecg_findpeaks_batch
    from ecglens.models.factorecg.data import BeatSettings, ecg_factorbeat_batch
    from ecglens.preprocess import resample_signal
    from ecglens.samples import list_samples, load_sample

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_start = list(os.getloadavg())
    t0 = time.perf_counter()
    old = load_old()
    settings, new = BeatSettings(subsample=False), BeatSettings()
    ids100, x100, paths100 = fold_signals(Path(args.data), 100, args.limit)
    ids500, x500, _ = fold_signals(Path(args.data), 500, args.limit)
    old_beats(old.factorbeat, x100[:2], 100, settings)  # first calls: neurokit2 and scipy imports
    ecg_factorbeat_batch(x100[:2], 100, settings)
    ecg_factorbeat_batch(x100[:2], 100, new)

    timing, fidelity = {}, {}
    row, o, n = compare_timing(lambda: old_beats(old.factorbeat, x100, 100, settings),
                               lambda: ecg_factorbeat_batch(x100, 100, settings), len(x100), args.repeats)
    key = "fold 10, 100 Hz: old vs today"
    timing["today: factorbeat, 100-Hz records"], fidelity[key] = row, beat_differences(o, n)
    fidelity[key]["changed_ecg_ids"] = [ids100[i] for i in fidelity[key]["changed_records"]]
    rows = fidelity[key].pop("rows")
    fidelity[key]["probabilities"] = probability_differences(o[0][rows], n[0][rows], rhythm_of(x100, 100, n[1], rows))
    today100 = n
    row, o, n = compare_timing(lambda: old_beats(old.factorbeat, x100, 100, settings),
                               lambda: ecg_factorbeat_batch(x100, 100, new), len(x100), args.repeats)
    timing["new: factorbeat, 100-Hz records"] = row
    fidelity["fold 10, 100 Hz: today vs new"] = beat_differences(today100, n)
    f = fidelity["fold 10, 100 Hz: today vs new"]
    f["changed_ecg_ids"] = [ids100[i] for i in f["changed_records"]][:20]
    rows = f.pop("rows")
    f["probabilities"] = probability_differences(today100[0][rows], n[0][rows], rhythm_of(x100, 100, n[1], rows))
    fidelity["fold 10, 100 Hz vs 500-Hz beat"] = against_500hz(
        {"old": o[0], "today": today100[0], "new": n[0]}, ids100, ids500, x500, settings)
    row, o, n = compare_timing(lambda: old_beats(old.factorbeat, x500, 500, settings),
                               lambda: ecg_factorbeat_batch(x500, 500, settings), len(x500), args.repeats)
    timing["today = new: factorbeat, 500-Hz records"], fidelity["fold 10, 500 Hz"] = row, beat_differences(o, n)
    fidelity["fold 10, 500 Hz"]["changed_ecg_ids"] = [ids500[i] for i in fidelity["fold 10, 500 Hz"]["changed_records"]]
    fidelity["fold 10, 500 Hz"].pop("rows")

    def old_peaks():
        out = []
        for x in x100:
            try:
                out.append(old.findpeaks(x, 100)[0])
            except ECGError as exc:
                out.append(exc)
        return out

    row, o, n = compare_timing(old_peaks, lambda: ecg_findpeaks_batch(x100, 100), len(x100), args.repeats)
    timing["findpeaks, 100-Hz records"] = row
    fidelity["findpeaks, 100 Hz"] = {"records": len(x100), "same_peaks": int(sum(
        isinstance(a, ECGError) and isinstance(b, ECGError) or
        not isinstance(a, ECGError) and not isinstance(b, ECGError) and np.array_equal(a, b[0]) for a, b in zip(o, n)))}
    native = BeatSettings(extract_rate=100.0, subsample=False)
    walls = [timed(lambda: ecg_factorbeat_batch(x100, 100, native))[0] for _ in range(args.repeats)]
    timing["batch only: factorbeat with extract_rate=100 (for reference)"] = {
        "records": len(x100), "new_wall_ms": 1e3 * statistics.median(walls) / len(x100)}

    samples = [load_sample(s.ecg_id, sampling_rate=max(s.rates)) for s in list_samples()]
    xs = np.stack([resample_signal(e.signal, e.sampling_rate, 100) for e in samples])  # the models' pipeline
    o, n = old_beats(old.factorbeat, xs, 100, settings), ecg_factorbeat_batch(xs, 100, settings)
    fidelity["bundled samples"] = beat_differences(o, n)
    rows = fidelity["bundled samples"].pop("rows")
    fidelity["bundled samples"]["probabilities"] = probability_differences(o[0][rows], n[0][rows],
                                                                           rhythm_of(xs, 100, n[1], rows))
    fidelity["bundled samples"]["changed_ecg_ids"] = [list_samples()[i].ecg_id
                                                      for i in fidelity["bundled samples"]["changed_records"]]

    same = same_as_revision(args.same_as, x100, x500, args.repeats) if args.same_as else None
    predict = predict_times(paths100, args.predict_repeats) if args.predict_repeats > 0 else None
    result = {"old_revision": OLD_REV, "data": str(args.data), "repeats": args.repeats, "timing": timing,
              "tolerance": NEW_TOLERANCE, "within_tolerance": within_tolerance(fidelity),
              "fidelity": fidelity, "same_as": same, "predict": predict, "seconds": time.perf_counter() - t0,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_start": load_start, "load_average_end": list(os.getloadavg()),
                          "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}},
              "started": started}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "beats_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "beats_speed.md").write_text(report(result))
    print(report(result))
    return 0


def report(r: dict) -> str:
    m = r["machine"]
    lines = ["# Median beats: per-record (old) vs batch (today) vs batch with sub-sample alignment (new)", "",
             f"Old: the beats code at `{r['old_revision'][:10]}` (neurokit2, per-beat loops, records resampled to "
             f"500 Hz first). Today: `ecg_factorbeat_batch` / `ecg_findpeaks_batch` with the setting the "
             f"median-beat models shipped with before (`subsample=False`: 100-Hz records interpolated to 500 Hz as a "
             f"whole). New: `BeatSettings()` (`subsample=True`: beats cut on the record's grid, aligned to R peaks on "
             f"the 500-Hz grid by interpolating each beat window only; the shipped models' setting now). One run on the same records "
             f"(`python bench/beats_speed.py`, {r['seconds']:.0f} s), medians of {r['repeats']} alternating runs; "
             f"load average {m['load_average_start'][0]:.2f} at the start and {m['load_average_end'][0]:.2f} at "
             f"the end on {m['cpus']} CPUs shared with other work, so absolute times are noisy: compare within a row.",
             "", "## Time per record", "",
             "| what | records | old ms (wall) | new ms (wall) | speed-up wall | old ms (CPU) | new ms (CPU) | "
             "speed-up CPU |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, t in r["timing"].items():
        if "old_wall_ms" in t:
            lines.append(f"| {name} | {t['records']} | {t['old_wall_ms']:.2f} | {t['new_wall_ms']:.2f} | "
                         f"{t['speedup_wall']:.1f}x | {t['old_cpu_ms']:.2f} | {t['new_cpu_ms']:.2f} | "
                         f"{t['speedup_cpu']:.1f}x |")
        else:
            lines.append(f"| {name} | {t['records']} | - | {t['new_wall_ms']:.2f} | - | - | - | - |")
    lines += ["", "## How far the beats moved", "",
              "| records | both ok / all | failed old / new | identical beats | same R peaks | same kept beats | "
              "R-peak shift (matched; moved; max ms) | unmatched R peaks | beat MAE uV (mean; p99; max) | "
              "largest diff uV (p99; max) |", "|---|---|---|---:|---:|---:|---|---:|---|---|"]
    for name, f in r["fidelity"].items():
        if "both_ok" not in f:
            continue
        s = f["r_peak_shift_ms"]
        lines.append(f"| {name} | {f['both_ok']} / {f['records']} | {f['old_failed']} / {f['new_failed']} | "
                     f"{f['identical_beats']} | {f['same_r_peaks']} | {f['same_kept']} | {s['matched']}; {s['moved']}; {s['max']:.0f} | {f['r_peaks_unmatched']} | "
                     f"{f['mae_uv']['mean']:.3f}; {f['mae_uv']['p99']:.1f}; {f['mae_uv']['max']:.1f} | "
                     f"{f['largest_uv']['p99']:.1f}; {f['largest_uv']['max']:.1f} |")
    v = r["fidelity"]["fold 10, 100 Hz vs 500-Hz beat"]
    t = r["within_tolerance"]
    lines += ["", f"Against the beat of the same record at 500 Hz ({v['records']} fold-10 records that exist at "
              "500 Hz; the beat the 100-Hz grid should carry), MAE uV pooled / median record: "
              + "; ".join(f"{k} {v[k]['mae_uv']:.2f} / {v[k]['mae_uv_median_record']:.2f}"
                          for k in ("old", "today", "new")) + ".", "",
              f"Tolerance of the new path (against today's): median record MAE at most "
              f"{r['tolerance']['median_record_mae_uv']:g} uV (measured {t['median_record_mae_uv']:.2f}) and MAE "
              f"against the 500-Hz beat at most {r['tolerance']['vs_500hz_excess_mae_uv']:g} uV above today's "
              f"(measured {t['vs_500hz_excess_mae_uv']:+.2f}): {'met' if t['ok'] else 'NOT met'}."]
    fp = r["fidelity"]["findpeaks, 100 Hz"]
    lines += ["", f"Identical: largest difference under {SAME_UV:g} uV (the largest among them: "
              + "; ".join(f"{k} {f['largest_uv_of_identical']:.1e} uV" for k, f in r["fidelity"].items()
                          if "both_ok" in f) + f"). `ecg_findpeaks` at 100 Hz: {fp['same_peaks']} of {fp['records']} "
              "records give the same peaks (or the same error). Records whose beats changed: "
              + "; ".join(f"{k}: {', '.join(map(str, f['changed_ecg_ids'])) or 'none'}" for k, f in r["fidelity"].items()
                          if "changed_ecg_ids" in f) + ".", "",
              "## Probabilities of the shipped beat models (largest |old - new| per record)", "",
              "| records | model | output | median | p99 | max | records over 1e-5 |", "|---|---|---|---:|---:|---:|---:|"]
    for name, f in r["fidelity"].items():
        for model, rows in f.get("probabilities", {}).items():
            for kind, d in rows.items():
                lines.append(f"| {name} | {model} | {kind} | {d['median']:.1e} | {d['p99']:.1e} | {d['max']:.1e} | "
                             f"{d['records_over_1e-5']} |")
    same = r.get("same_as")
    if same:
        lines += ["", f"## The working tree's batch code against `{same['revision']}`'s", "",
                  "| records | time per record rev / tree ms (CPU) | speed-up CPU "
                  "| same beats, R peaks, kept beats, errors |",
                  "|---|---|---:|---|"]
        for name, c in same["cases"].items():
            t = c["timing"]
            extra = "" if "differences" not in c else (
                f" (identical beats {c['differences']['identical_beats']} of {c['differences']['both_ok']}, largest "
                f"difference {c['differences']['largest_uv']['max']:.1e} uV)")
            lines.append(f"| {name} | {t['old_cpu_ms']:.2f} / {t['new_cpu_ms']:.2f} | {t['speedup_cpu']:.2f}x | "
                         f"{'yes' if c['same'] else 'NO'}{extra} |")
    p = r["predict"]
    if p is None:
        return "\n".join(lines) + "\n"
    lines += ["", f"## `ecglens predict` over the {p['records']} fold-10 records (wall s, start-up included, median of "
              f"{p['repeats']})", "", "| command | median s | runs |", "|---|---:|---|"]
    for name, med in p["median_s"].items():
        lines.append(f"| {name} | {med:.1f} | {', '.join(f'{w:.1f}' for w in p['walls_s'][name])} |")
    setting = "new: subsample=True" if p["shipped_subsample"] else "today's: subsample=False"
    lines += ["", f"factorecg / baseline: {p['factorecg_over_baseline']:.2f} with the shipped model's beats ({setting}; "
              f"target at most 1.5); with the old beats and R peaks: {p['old_factorecg_over_baseline']:.2f}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
