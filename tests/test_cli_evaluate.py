"""``ecglens evaluate``: predictions/labels files (CSV, NPZ, ``predict -o`` rows) and, with local PTB-XL, a model
on fold 10."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from ecglens.cli import evaluate as cli_evaluate
from ecglens.errors import ECGError
from ecglens.metrics import bootstrap_macro_auroc, fmax, macro_auroc

NAMES = ["AFIB", "IMI", "NORM", "STTC", "WPW"]


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ecglens")
    cli_evaluate.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["evaluate", *argv])
    return args.func(args)


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, len(NAMES))) < [0.1, 0.2, 0.5, 0.3, 0.0]).astype(int)  # WPW: no positives
    s = np.round(np.clip(0.25 * y + rng.random(y.shape) * 0.75, 0, 1), 3)
    records = [str(1000 + 7 * i) for i in range(n)]
    return records, y, s


def _write_csv(path, records, names, values):
    frame = pd.DataFrame(values, columns=names)
    frame.insert(0, "record", records)
    frame.to_csv(path, index=False)


def test_csv_pair_report_and_table(tmp_path, capsys):
    records, y, s = _data()
    # Labels in another row and column order than the predictions: matched by id and name.
    perm, cols = np.random.default_rng(1).permutation(len(records)), [2, 0, 4, 1, 3]
    _write_csv(tmp_path / "preds.csv", records, NAMES, s)
    _write_csv(tmp_path / "labels.csv", [records[i] for i in perm], [NAMES[c] for c in cols], y[perm][:, cols])
    _write_csv(tmp_path / "train.csv", records[:30], NAMES, y[:30])
    out, boot = tmp_path / "out" / "report.json", tmp_path / "boot.npy"
    argv = ["--predictions", str(tmp_path / "preds.csv"), "--labels", str(tmp_path / "labels.csv"),
            "--train-labels", str(tmp_path / "train.csv"), "--bootstrap", str(boot), "--n-resamples", "200",
            "--out", str(out), "--table"]
    assert _run(argv) == 0
    report = json.loads(out.read_text())
    auc, n_scored = macro_auroc(y, s)
    assert report["macro_auroc"] == pytest.approx(auc, abs=1e-12)
    assert report["n_scored"] == n_scored == 4 and report["n_records"] == 60
    assert report["excluded"] == {"count": 1, "labels": [{"label": "WPW", "reason": "no positive records"}]}
    assert report["fmax"]["value"] == pytest.approx(fmax(y, s)[0], abs=1e-12)
    assert report["source"]["mode"] == "predictions"
    assert report["prevalence_baseline"]["macro_auroc"] == 0.5
    indices = np.load(boot)
    assert indices.shape == (200, 60)
    # Rows were sorted by id, which here is the order written: the interval is reproducible from the file.
    expected = bootstrap_macro_auroc(y, s, indices)
    assert report["bootstrap"]["low"] == pytest.approx(expected["low"], abs=1e-12)
    assert report["bootstrap"]["high"] == pytest.approx(expected["high"], abs=1e-12)
    table = capsys.readouterr().out
    assert f"{report['macro_auroc']:.4f}" in table and "WPW" in table
    # A second run reuses the same resamples file.
    mtime = boot.stat().st_mtime_ns
    assert _run(argv) == 0
    assert boot.stat().st_mtime_ns == mtime
    assert json.loads(out.read_text())["bootstrap"] == report["bootstrap"]


def test_npz_matches_csv(tmp_path, capsys):
    records, y, s = _data(seed=4)
    _write_csv(tmp_path / "preds.csv", records, NAMES, s)
    np.savez(tmp_path / "labels.npz", record=np.array(records), label_names=np.array(NAMES), values=y)
    assert _run(["--predictions", str(tmp_path / "preds.csv"), "--labels", str(tmp_path / "labels.npz")]) == 0
    report = json.loads(capsys.readouterr().out)  # no --out, no --table: the JSON on stdout
    assert report["macro_auroc"] == pytest.approx(macro_auroc(y, s)[0], abs=1e-12)
    assert report["bootstrap"] is None and report["prevalence_baseline"] is None


def test_bad_files(tmp_path):
    records, y, s = _data()
    _write_csv(tmp_path / "preds.csv", records, NAMES, s)
    _write_csv(tmp_path / "labels.csv", records, NAMES, y)
    _write_csv(tmp_path / "short.csv", records[:-1], NAMES, y[:-1])
    _write_csv(tmp_path / "fewer.csv", records, NAMES[:4], y[:, :4])
    pd.DataFrame(y, columns=NAMES).to_csv(tmp_path / "noid.csv", index=False)
    preds = ["--predictions", str(tmp_path / "preds.csv")]
    with pytest.raises(ECGError, match="records differ"):
        _run(preds + ["--labels", str(tmp_path / "short.csv")])
    with pytest.raises(ECGError, match="statements differ"):
        _run(preds + ["--labels", str(tmp_path / "fewer.csv")])
    with pytest.raises(ECGError, match="'record'"):
        _run(preds + ["--labels", str(tmp_path / "noid.csv")])
    with pytest.raises(ECGError, match="needs --labels"):
        _run(preds)
    with pytest.raises(ECGError, match="nothing to evaluate"):
        _run([])
    np.save(tmp_path / "boot.npy", np.zeros((10, 59), dtype=np.int32))
    with pytest.raises(ECGError, match="59"):
        _run(preds + ["--labels", str(tmp_path / "labels.csv"), "--bootstrap", str(tmp_path / "boot.npy")])
    with pytest.raises(ECGError, match="0 or 1"):
        _run(preds + ["--labels", str(tmp_path / "preds.csv")])


def _write_long(path, records, names, values, thresholds):
    """Rows as ``ecglens predict -o out.csv`` writes them: record, statement, probability, threshold, positive."""
    rows = [(r, n, f"{v:.6f}", f"{t:.6f}", int(v >= t))
            for r, vals in zip(records, values) for n, v, t in zip(names, vals, thresholds)]
    pd.DataFrame(rows, columns=["record", "statement", "probability", "threshold", "positive"]).to_csv(path, index=False)


def test_predict_long_rows_are_pivoted_with_their_thresholds(tmp_path, capsys):
    records, y, s = _data(seed=2)
    thresholds = [0.3, 0.5, 0.6, 0.4, 0.9]
    paths = [f"data/{r}.hea" for r in records]  # predict writes the paths it was given
    _write_long(tmp_path / "long.csv", paths, NAMES, s, thresholds)
    _write_csv(tmp_path / "labels.csv", records, NAMES, y)
    assert _run(["--predictions", str(tmp_path / "long.csv"), "--labels", str(tmp_path / "labels.csv")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["macro_auroc"] == pytest.approx(macro_auroc(y, s)[0], abs=1e-12)
    assert [report["at_thresholds"]["per_label"][n]["threshold"] for n in NAMES] == thresholds
    called = (s >= np.array(thresholds)).sum(axis=1).mean()
    assert report["at_thresholds"]["all"]["called_per_record"] == pytest.approx(called)
    # predict -o --top N writes only some statements per record: no silent gaps
    pd.read_csv(tmp_path / "long.csv").iloc[:-3].to_csv(tmp_path / "top.csv", index=False)
    with pytest.raises(ECGError, match="without --top"):
        _run(["--predictions", str(tmp_path / "top.csv"), "--labels", str(tmp_path / "labels.csv")])
    mixed = pd.read_csv(tmp_path / "long.csv")
    mixed.loc[0, "threshold"] = 0.99
    mixed.to_csv(tmp_path / "mixed.csv", index=False)
    with pytest.raises(ECGError, match="more than one threshold"):
        _run(["--predictions", str(tmp_path / "mixed.csv"), "--labels", str(tmp_path / "labels.csv")])


def test_model_needs_exactly_one_source(tmp_path):
    with pytest.raises(ECGError, match="one of --data DIR"):
        _run(["baseline"])
    with pytest.raises(ECGError, match="one of --data DIR"):
        _run(["baseline", "--data", str(tmp_path), "--records", str(tmp_path)])
    with pytest.raises(ECGError, match="--labels with MODEL needs --records"):
        _run(["baseline", "--data", str(tmp_path), "--labels", "x.csv"])


class _FakeClassifier:
    """A stand-in model: scores from lead II amplitude plus noise, on a reversed label order."""

    def __init__(self, labels, pipeline):
        self.labels = labels
        self.pipeline = pipeline
        self.config = {"kind": "fake", "label_set": "all"}

    def predict_batch(self, signals, sampling_rate):
        rng = np.random.default_rng(len(signals))
        amp = np.ptp(signals[:, 1], axis=-1)[:, None]
        return 1 / (1 + np.exp(-(amp - 1.0))) * rng.random((len(signals), len(self.labels)))


@pytest.mark.ptbxl
@pytest.mark.slow
def test_model_on_fold10(ptbxl_dir, tmp_path, monkeypatch, capsys):
    import ecglens.api
    from ecglens.datasets import PTBXL
    from ecglens.preprocess import Pipeline

    labels = PTBXL(ptbxl_dir).label_names("all")[::-1]
    ckpt = tmp_path / "ckpt"
    monkeypatch.setattr(ecglens.api, "load_model", lambda path: _FakeClassifier(labels, Pipeline()))
    out, preds = tmp_path / "report.json", tmp_path / "preds.csv"
    assert _run([str(ckpt), "--data", str(ptbxl_dir), "--fold", "10", "--cache", str(tmp_path / "cache"),
                 "--out", str(out), "--save-predictions", str(preds), "--batch-size", "100"]) == 0
    report = json.loads(out.read_text())
    assert report["n_records"] == 370 and report["n_labels"] == 71
    assert report["n_scored"] == 59 and report["excluded"]["count"] == 12
    assert list(report["per_label"]) == labels
    assert report["source"]["label_set"] == "all" and report["source"]["skipped"]["count"] == 0
    assert report["prevalence_baseline"]["macro_auroc"] == 0.5
    # The saved predictions, scored against labels written from the dataset, give the same report.
    table = PTBXL(ptbxl_dir).labels("all", 10)
    _write_csv(tmp_path / "labels.csv", [str(i) for i in table.ecg_ids], table.names, table.y)
    capsys.readouterr()
    assert _run(["--predictions", str(preds), "--labels", str(tmp_path / "labels.csv")]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["macro_auroc"] == pytest.approx(report["macro_auroc"], abs=1e-12)
    assert again["per_label"] == report["per_label"]
