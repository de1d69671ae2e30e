"""Classifier sliding windows and the ``ecglens predict`` command on the bundled samples."""
from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from ecglens.cli import predict, train
from ecglens.errors import ECGError
from ecglens.io import ECG, STANDARD_LEADS, find_records
from ecglens.models import Classifier, make_windows, window_starts
from ecglens.models.baseline import BaselineConfig, XResNet1d, XResNetConfig
from ecglens.preprocess import Pipeline, Resample
from ecglens.samples import samples_dir
from ecglens.training import save_checkpoint

LABELS = ["CD", "HYP", "MI", "NORM", "STTC"]




class MeanOfLeadI(nn.Module):
    """Logits (mean of lead I over the window, its negative); remembers how many windows it saw."""

    def __init__(self):
        super().__init__()
        self.seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        m = x[:, 0, :].mean(dim=-1)
        return torch.stack([m, -m], dim=1)


def ramp_ecg(seconds: float, rate: float = 100.0) -> ECG:
    n = int(seconds * rate)
    signal = np.zeros((12, n), dtype=np.float32)
    signal[0] = np.arange(n) / n  # lead I rises from 0 to 1
    return ECG(signal, rate, STANDARD_LEADS, source="ramp")


def test_window_starts():
    assert window_starts(2500, 250, 125).tolist() == list(range(0, 2251, 125))  # 25 s: 19 windows
    assert len(window_starts(1000, 250, 125)) == 7  # 10 s: the benchmark's 7
    assert window_starts(1100, 250, 125).tolist() == [0, 125, 250, 375, 500, 625, 750, 850]  # tail window
    assert window_starts(1000, 1000, 500).tolist() == [0]
    assert window_starts(150, 250, 125).tolist() == [0]
    x = torch.arange(150.0).expand(1, 12, 150)
    padded = make_windows(x, 250, 125)
    assert padded.shape == (1, 1, 12, 250) and padded[0, 0, 0, 149] == 149 and padded[0, 0, 0, 150:].abs().sum() == 0


@pytest.mark.parametrize("aggregate", ["max", "mean"])
def test_sliding_windows_on_a_25_s_record(aggregate):
    model = MeanOfLeadI()
    clf = Classifier(model, ["up", "down"], Pipeline((Resample(100),)), 100.0, window_s=2.5, stride_s=1.25,
                     aggregate=aggregate, device="cpu")
    p = clf.predict_proba(ramp_ecg(25.0))
    assert model.seen == 19
    ramp = np.arange(2500) / 2500
    means = np.array([ramp[s:s + 250].mean() for s in range(0, 2251, 125)])
    up, down = 1 / (1 + np.exp(-means)), 1 / (1 + np.exp(means))
    expected = [up.max(), down.max()] if aggregate == "max" else [up.mean(), down.mean()]
    np.testing.assert_allclose(p, expected, rtol=1e-6)


def test_classifier_adapts_rate_and_checks_input():
    model = MeanOfLeadI()
    clf = Classifier(model, ["up", "down"], Pipeline((Resample(100),)), 100.0, window_s=10.0, stride_s=5.0, device="cpu")
    at_500 = clf.predict_proba(ramp_ecg(10.0, rate=500.0))
    at_100 = clf.predict_proba(ramp_ecg(10.0, rate=100.0))
    np.testing.assert_allclose(at_500, at_100, atol=2e-3)
    short = clf.predict_proba(ramp_ecg(4.0))  # padded with zeros to 10 s
    np.testing.assert_allclose(short[0], 1 / (1 + np.exp(-(np.arange(400) / 400).sum() / 1000)), rtol=1e-6)
    with pytest.raises(ECGError, match="500"):
        clf.predict_batch(np.zeros((1, 12, 1000), dtype=np.float32), 500.0)
    with pytest.raises(ECGError, match="12"):
        clf.predict_batch(np.zeros((1, 3, 1000), dtype=np.float32), 100.0)
    many = clf.predict_ecgs([ramp_ecg(10.0), ramp_ecg(25.0), ramp_ecg(10.0, 500.0)])
    np.testing.assert_allclose(many[0], at_100)
    np.testing.assert_allclose(many[2], at_500)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A baseline checkpoint with random weights (the command does not care how good it is)."""
    torch.manual_seed(0)
    cfg = BaselineConfig(model=XResNetConfig(layers=(1, 1), expansion=1, widths=(8, 16), stem=(8, 8, 8), head_hidden=None))
    model = XResNet1d(len(LABELS), cfg.model)
    config = {"kind": "baseline", "model": cfg.model.to_dict(), "recipe": cfg.to_dict(),
              "pipeline": cfg.base_pipeline().to_dict(), "labels": LABELS, "label_set": "superdiagnostic"}
    return save_checkpoint(tmp_path_factory.mktemp("predict") / "model", model, config)


def cli(argv):
    parser = argparse.ArgumentParser(prog="ecglens")
    sub = parser.add_subparsers(dest="command", required=True)
    predict.register(sub)
    train.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_csv_on_samples_with_a_bad_file(model_dir, tmp_path, capsys):
    bad = tmp_path / "broken.hea"
    bad.write_text("this is not a WFDB header\n")
    out = tmp_path / "pred.csv"
    rc = cli(["predict", str(model_dir), str(samples_dir()), str(bad), str(tmp_path / "absent.edf"),
              "-o", str(out), "--no-progress", "--batch-size", "5"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "2 of" in err and "broken.hea" in err and "absent.edf" in err

    records = [str(p) for p in find_records(samples_dir())]
    rows = read_rows(out)
    assert len(records) >= 10 and len(rows) == len(records) * len(LABELS)
    assert sorted({r["record"] for r in rows}) == sorted(records)
    probs = np.array([float(r["probability"]) for r in rows])
    assert np.all((probs >= 0) & (probs <= 1)) and probs.std() > 0
    assert all(r["positive"] == str(int(float(r["probability"]) >= 0.5)) for r in rows)
    # the same recording at 500 Hz and at 100 Hz: the stored pipeline resamples, so scores agree closely
    by = {(r["record"], r["statement"]): float(r["probability"]) for r in rows}
    hr = [r for r in records if r.endswith("00003_hr.hea")][0]
    lr = [r for r in records if r.endswith("00003_lr.hea")][0]
    assert max(abs(by[(hr, s)] - by[(lr, s)]) for s in LABELS) < 0.05


def test_predict_json_top_and_table(model_dir, tmp_path, capsys):
    one = samples_dir() / "records100" / "00000" / "00003_lr.hea"
    out = tmp_path / "pred.json"
    assert cli(["predict", str(model_dir), str(one), str(one.with_suffix("")), "-o", str(out), "--top", "2",
                "--threshold", "0.3", "--no-progress"]) == 0
    doc = json.loads(out.read_text())
    assert doc["kind"] == "baseline" and doc["skipped"]["count"] == 0
    assert set(doc["thresholds"].values()) == {0.3}
    assert len(doc["records"]) == 2  # a path to the .hea and the bare record name
    preds = doc["records"][0]["predictions"]
    assert len(preds) == 2 and preds[0]["probability"] >= preds[1]["probability"]
    assert all(p["positive"] == (p["probability"] >= 0.3) for p in preds)
    assert doc["records"][0]["predictions"] == doc["records"][1]["predictions"]

    capsys.readouterr()
    assert cli(["predict", str(model_dir), str(one), "--no-progress"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == str(one) and len(table) == 1 + len(LABELS) + 1  # top 5 of 5 and the legend
    assert table[-1].startswith("(* called")


def test_predict_reports_rateless_files_and_bad_arguments(model_dir, tmp_path, capsys):
    table = tmp_path / "ecg.csv"
    rng = np.random.default_rng(0)
    with open(table, "w") as fh:
        fh.write(",".join(STANDARD_LEADS) + "\n")
        for row in rng.normal(size=(1000, 12)):
            fh.write(",".join(f"{v:.4f}" for v in row) + "\n")
    assert cli(["predict", str(model_dir), str(table), "--no-progress"]) == 2
    assert "--rate" in capsys.readouterr().err
    out = tmp_path / "p.csv"
    assert cli(["predict", str(model_dir), str(table), "--rate", "250", "-o", str(out), "--no-progress"]) == 0
    assert len(read_rows(out)) == len(LABELS)
    with pytest.raises(ECGError, match=r"\.csv or \.json"):
        cli(["predict", str(model_dir), str(table), "-o", str(tmp_path / "p.txt")])
    with pytest.raises(ECGError, match="checkpoint"):
        cli(["predict", str(tmp_path), str(table)])


def test_train_command_registers_model_subcommands():
    parser = argparse.ArgumentParser(prog="ecglens")
    train.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "baseline", "--data", "D", "--out", "R", "--labels", "superdiagnostic",
                              "--recipe", "ptbxl-benchmark", "--epochs", "3", "--seed", "2", "--resume"])
    assert (args.model, args.labels, args.recipe, args.epochs, args.seed, args.resume, args.rate) == (
        "baseline", "superdiagnostic", "ptbxl-benchmark", 3, 2, True, 100)
    assert callable(args.func)
