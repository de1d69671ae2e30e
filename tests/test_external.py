"""External validation: ``evaluate_records`` and ``ecglens evaluate MODEL --records DIR`` on a synthetic
challenge-format directory (SNOMED ``#Dx``), a labels CSV and a tiny PTB-XL layout; ``predict -o`` output read
back by ``evaluate --predictions``."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from test_io_challenge import write_challenge

from ecglens.cli import main
from ecglens.errors import ECGError
from ecglens.io import read_ecg
from ecglens.metrics import macro_auroc
from ecglens.samples import load_sample, samples_dir
from ecglens.scoring import evaluate_records

AFIB, SR, CRBBB, LAD, LVHV = "164889003", "426783006", "59118001", "39732003", "55827005"  # LAD: unmapped
DX = {"A0001": AFIB, "A0002": SR, "A0003": f"{SR},{CRBBB}", "A0004": f"{AFIB},{LAD}", "A0005": SR,
      "A0006": f"{LAD},{LVHV}", "A0007": AFIB, "A0008": CRBBB}
TRUTH = {"A0001": [1, 0, 0], "A0002": [0, 1, 0], "A0003": [0, 1, 1], "A0004": [1, 0, 0], "A0005": [0, 1, 0],
         "A0006": [0, 0, 0], "A0007": [1, 0, 0], "A0008": [0, 0, 1]}  # AFIB, SR, CRBBB
SAMPLES = (3, 138, 172, 219, 267, 286, 310, 351, 418, 449)


class _Fake:
    """A stand-in classifier: probabilities are fixed functions of lead II's peak-to-peak amplitude; records
    named NOBEAT cannot be judged (as a beat model's records without a usable beat)."""

    def __init__(self):
        self.labels = ["AFIB", "SR", "CRBBB", "NORM"]  # NORM: no SNOMED code maps to it
        self.config = {"label_set": "all"}
        self.thresholds = np.array([0.6, 0.7, 0.8, 0.5])
        self.assessable = np.array([True, True, False, True])

    def preprocess(self, ecg):
        if ecg.metadata.get("record_name") == "NOBEAT":
            raise ECGError(ecg.source, "no usable median beat")
        return ecg.signal

    def predict_inputs(self, inputs):
        amp = np.array([np.ptp(x[1]) for x in inputs])[:, None]
        return 1 / (1 + np.exp(-(amp - np.array([0.8, 1.0, 1.2, 1.4]))))

    def predict_batch(self, signals, sampling_rate):
        return self.predict_inputs(list(signals))


@pytest.fixture(scope="module")
def challenge_dir(tmp_path_factory):
    """Eight labelled challenge records (bundled samples, 100 Hz) with known SNOMED codes."""
    d = tmp_path_factory.mktemp("challenge")
    for (name, dx), ecg_id in zip(DX.items(), SAMPLES):
        write_challenge(d, name, load_sample(ecg_id), dx=dx)
    return d


@pytest.fixture
def messy_dir(challenge_dir, tmp_path):
    """The eight records plus one without #Dx, one the model cannot judge and one unreadable header."""
    d = tmp_path / "messy"
    shutil.copytree(challenge_dir, d)
    write_challenge(d, "NODX", load_sample(SAMPLES[8]), dx=None)
    write_challenge(d, "NOBEAT", load_sample(SAMPLES[9]), dx=AFIB)
    (d / "BROKEN.hea").write_text("not a header\n")
    return d


def test_challenge_labels_through_the_snomed_map(messy_dir):
    fake = _Fake()
    ev = evaluate_records(fake, messy_dir, n_resamples=200)
    assert ev.labels == ["AFIB", "SR", "CRBBB"] and ev.records == sorted(TRUTH)
    np.testing.assert_array_equal(ev.y_true, [TRUTH[r] for r in ev.records])
    expected = fake.predict_inputs([read_ecg(messy_dir / f"{r}.hea").signal for r in ev.records])[:, :3]
    np.testing.assert_allclose(ev.y_score, expected)
    assert ev.macro_auroc == pytest.approx(macro_auroc(ev.y_true, expected)[0], abs=1e-12)
    src = ev.source
    assert src["n_listed"] == 11 and src["model_only_statements"] == ["NORM"]
    assert [r["record"] for r in src["unreadable"]["records"]] == ["BROKEN"]
    assert src["unlabelled"]["count"] == 1 and src["unlabelled"]["records"][0]["record"] == "NODX"
    assert "no challenge #Dx line" in src["unlabelled"]["records"][0]["problem"]
    assert src["unscored"]["records"][0]["record"] == "NOBEAT" and src["unscored"]["count"] == 1
    # LVHV maps to VCLVH, which this model does not score; LAD has no PTB-XL statement
    assert src["unmapped_snomed"] == {"count": 1, "codes": [{"code": LAD, "n_records": 2}]}
    assert src["n_without_shared_statement"] == 1  # A0006 carries only unmapped codes
    report = ev.report
    assert report["bootstrap"]["n_resamples"] == 200 and report["bootstrap"]["n_incomplete"] == 0
    assert report["bootstrap"]["low"] <= report["macro_auroc"] <= report["bootstrap"]["high"]
    assert report["calibration"]["n_bins"] == 10
    calls = report["at_thresholds"]  # the classifier's thresholds and assessable mask, for the shared columns
    assert calls["per_label"]["SR"]["threshold"] == 0.7 and calls["per_label"]["CRBBB"]["n_called"] == 0
    assert calls["assessable"]["n_labels"] == 2


def test_labels_csv_and_missing_or_unlabelled_records(challenge_dir, tmp_path):
    rows = {r: TRUTH[r][:1] + [int(r == "A0002")] for r in TRUTH}  # AFIB, and NORM only for A0002
    frame = pd.DataFrame([[r, *v] for r, v in rows.items()] + [["GHOST", 1, 0]], columns=["record", "AFIB", "NORM"])
    labels = tmp_path / "labels.csv"
    frame.iloc[1:].to_csv(labels, index=False)  # A0001 has no row; GHOST has no record
    ev = evaluate_records(_Fake(), challenge_dir, labels=labels, n_resamples=0)
    assert ev.labels == ["AFIB", "NORM"] and ev.records == sorted(TRUTH)[1:]
    np.testing.assert_array_equal(ev.y_true, [rows[r] for r in ev.records])
    assert ev.report["bootstrap"] is None
    assert ev.source["unreadable"]["records"][0]["record"] == "GHOST"
    assert ev.source["unlabelled"]["records"][0]["record"] == "A0001"
    other = tmp_path / "other.csv"
    pd.DataFrame([["A0001", 0]], columns=["record", "WPW"]).to_csv(other, index=False)
    with pytest.raises(ECGError, match="share none"):
        evaluate_records(_Fake(), challenge_dir, labels=other)


def test_ptbxl_layout_labels_from_the_database(ptbxl_dir, tmp_path):
    """A PTB-XL layout in miniature: the bundled records, their database rows, and one listed record whose
    files are absent."""
    root = tmp_path / "ptbxl"
    shutil.copytree(samples_dir() / "records100", root / "records100")
    shutil.copy(ptbxl_dir / "scp_statements.csv", root)
    index = pd.read_csv(samples_dir() / "index.csv")
    absent = {"ecg_id": 99999, "scp_codes": "{'AFIB': 100.0}", "strat_fold": 10,
              "filename_lr": "records100/99000/99999_lr", "filename_hr": "records500/99000/99999_hr"}
    pd.concat([index, pd.DataFrame([absent])]).to_csv(root / "ptbxl_database.csv", index=False)
    ev = evaluate_records(_Fake(), root, n_resamples=100)
    assert ev.labels == _Fake().labels and len(ev.records) == len(index)
    assert ev.records == sorted(ev.records, key=int) and ev.source["unreadable"]["records"][0]["record"] == "99999"
    norm = [("'NORM'" in codes) for codes in index.set_index("ecg_id").loc[[int(r) for r in ev.records], "scp_codes"]]
    np.testing.assert_array_equal(ev.y_true[:, 3], norm)
    assert "ptbxl_database.csv" in ev.source["labels_from"]


def test_cli_records_then_predict_output_read_back(challenge_dir, tmp_path, capsys):
    report_path = tmp_path / "external.json"
    assert main(["evaluate", "baseline", "--records", str(challenge_dir), "--n-resamples", "100",
                 "--out", str(report_path), "--table"]) == 0
    table = capsys.readouterr().out
    assert "atrial fibrillation" in table and "ECE" in table
    report = json.loads(report_path.read_text())
    assert report["source"]["mode"] == "records" and report["n_records"] == 8
    assert report["source"]["shared_statements"][:3] and "AFIB" in report["per_label"]
    # predict -o writes long rows (and JSON); evaluate --predictions reads them as written, its paths matched
    # to the labels' record names.
    labels = tmp_path / "labels.csv"
    shared = list(report["per_label"])
    from ecglens.io.snomed import map_snomed

    truth = [[r, *[int(s in map_snomed(DX[r].split(","))[0]) for s in shared]] for r in DX]
    pd.DataFrame(truth, columns=["record", *shared]).to_csv(labels, index=False)
    for suffix in ("csv", "json"):
        out = tmp_path / f"pred.{suffix}"
        assert main(["predict", "baseline", str(challenge_dir), "-o", str(out), "--no-progress"]) == 0
        wide = tmp_path / f"labels_all_{suffix}.csv"
        _all_statements(labels, out, wide)
        capsys.readouterr()
        assert main(["evaluate", "--predictions", str(out), "--labels", str(wide)]) == 0
        again = json.loads(capsys.readouterr().out)
        assert again["n_records"] == 8 and again["at_thresholds"] is not None
        for s in shared:
            assert again["per_label"][s]["auroc"] == pytest.approx(report["per_label"][s]["auroc"], abs=1e-6)
            assert again["at_thresholds"]["per_label"][s]["threshold"] == pytest.approx(
                report["at_thresholds"]["per_label"][s]["threshold"], abs=1e-6)


def _all_statements(labels, predictions, out) -> None:
    """The labels widened to every statement the predictions hold (0 where the vocabulary has no code)."""
    from ecglens.scoring import read_table

    names = read_table(predictions).names
    frame = pd.read_csv(labels, dtype={"record": str})
    for n in names:
        if n not in frame.columns:
            frame[n] = 0
    frame[["record", *names]].to_csv(out, index=False)
