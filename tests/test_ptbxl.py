"""PTB-XL metadata, label sets, folds and missing-record reporting.

Expected numbers are recomputed here with plain ``csv`` + ``ast`` code, never
through ``ecglens.datasets``.
"""
from __future__ import annotations

import ast
import csv
import logging
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ecglens.datasets import LABEL_SETS, PTBXL, jaccard_cooccurrence
from ecglens.errors import ECGError
from ecglens.preprocess import FixLength, Pipeline

pytestmark = pytest.mark.ptbxl


# ---------------------------------------------------------------- independent reference code
def _statements(root: Path) -> dict[str, dict]:
    with open(root / "scp_statements.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    return {r[0]: dict(zip(header[1:], r[1:])) for r in rows[1:]}


def _reference_labels(root: Path, label_set: str) -> tuple[list[str], dict[int, set]]:
    """(vocabulary, ecg_id -> labels) per the PTB-XL benchmark definitions."""
    st = _statements(root)
    flag = lambda code, col: st[code][col].strip() in ("1", "1.0")  # noqa: E731
    if label_set == "all":
        mapping = {c: c for c in st}
    elif label_set in ("diagnostic", "form", "rhythm"):
        mapping = {c: c for c in st if flag(c, label_set)}
    else:
        column = {"subdiagnostic": "diagnostic_subclass", "superdiagnostic": "diagnostic_class"}[label_set]
        mapping = {c: st[c][column] for c in st if flag(c, "diagnostic") and st[c][column]}
    labels = {}
    with open(root / "ptbxl_database.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            codes = ast.literal_eval(row["scp_codes"])
            labels[int(row["ecg_id"])] = {mapping[c] for c in codes if c in mapping}
    return sorted(set(mapping.values())), labels


def _reference_folds(root: Path) -> dict[int, int]:
    with open(root / "ptbxl_database.csv", newline="") as fh:
        return {int(r["ecg_id"]): int(r["strat_fold"]) for r in csv.DictReader(fh)}


def copy_subset(src: Path, dst: Path, ecg_ids: list[int]) -> Path:
    """A PTB-XL directory holding only ``ecg_ids`` (csv trimmed, both rates where present)."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "scp_statements.csv", dst / "scp_statements.csv")
    with open(src / "ptbxl_database.csv", newline="") as fh, open(dst / "ptbxl_database.csv", "w", newline="") as out:
        reader = csv.DictReader(fh)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames)
        writer.writeheader()
        for row in reader:
            if int(row["ecg_id"]) in ecg_ids:
                writer.writerow(row)
                for column in ("filename_lr", "filename_hr"):
                    for suffix in (".hea", ".dat"):
                        f = src / (row[column] + suffix)
                        if f.is_file():
                            (dst / row[column]).parent.mkdir(parents=True, exist_ok=True)
                            shutil.copy(f, dst / (row[column] + suffix))
    return dst


@pytest.fixture(scope="module")
def ds(ptbxl_dir):
    return PTBXL(ptbxl_dir, sampling_rate=100)


# ---------------------------------------------------------------- label sets and folds
def test_label_set_vocabulary_sizes(ds, ptbxl_dir):
    sizes = {name: len(ds.label_names(name)) for name in LABEL_SETS}
    assert sizes == {"all": 71, "diagnostic": 44, "subdiagnostic": 23, "superdiagnostic": 5, "form": 19, "rhythm": 12}
    assert ds.label_names("superdiagnostic") == ["CD", "HYP", "MI", "NORM", "STTC"]
    for name in LABEL_SETS:
        assert ds.label_names(name) == _reference_labels(ptbxl_dir, name)[0]  # sorted, same vocabulary


def test_local_fold_counts_and_missing_500hz(ds, ptbxl_dir):
    folds = _reference_folds(ptbxl_dir)
    per_fold = Counter(folds.values())
    assert sum(per_fold[f] for f in range(1, 9)) == 2769 and per_fold[9] == 368 and per_fold[10] == 370
    assert len(folds) == 3507
    assert ds.records["fold"].value_counts().to_dict() == dict(per_fold)
    assert ds.missing == [] and len(ds.records) == 3507

    ds500 = PTBXL(ptbxl_dir, sampling_rate=500)
    assert len(ds500.records) == 488 and len(ds500.missing) == 3019
    with open(ptbxl_dir / "ptbxl_database.csv", newline="") as fh:
        absent = sorted(int(r["ecg_id"]) for r in csv.DictReader(fh)
                        if not os.path.isfile(ptbxl_dir / (r["filename_hr"] + ".dat")))
    assert [i for i, _ in ds500.missing] == absent
    assert all(i > 500 for i in absent)
    summary = ds500.summary()
    assert summary["per_rate"] == {100: 3507, 500: 488}
    assert summary["missing"]["count"] == 3019 and summary["missing"]["ecg_ids"] == absent
    with pytest.raises(ECGError, match="missing at 500 Hz"):
        ds500.read(absent[0])


@pytest.mark.parametrize("label_set", LABEL_SETS)
def test_kept_and_dropped_per_fold_match_reference(ds, ptbxl_dir, label_set):
    names, ref = _reference_labels(ptbxl_dir, label_set)
    folds = _reference_folds(ptbxl_dir)
    for fold in range(1, 11):
        table = ds.labels(label_set, folds=fold)
        ids = [i for i in sorted(ref) if folds[i] == fold]
        kept = [i for i in ids if ref[i]]
        assert table.ecg_ids.tolist() == kept
        assert table.dropped == [i for i in ids if not ref[i]]
        assert table.y.dtype == np.float32 and table.y.shape == (len(kept), len(names))
        expected = np.array([[name in ref[i] for name in names] for i in kept], dtype=np.float32)
        np.testing.assert_array_equal(table.y, expected)


def test_known_label_facts(ds):
    table = ds.labels("all")
    col = {n: k for k, n in enumerate(table.names)}
    assert table.y[:, col["AFIB"]].sum() == 1514
    assert table.y[:, col["PRC(S)"]].sum() == 0
    fold10 = ds.labels("all", folds=(10,)).y
    positives = fold10.sum(axis=0)
    assert int(((positives > 0) & (positives < len(fold10))).sum()) == 59


def test_likelihood_zero_statements_count(ds):
    # ecg_id 1: {'NORM': 100.0, 'LVOLT': 0.0, 'SR': 0.0}
    assert ds.records.at[1, "scp"] == {"NORM": 100.0, "LVOLT": 0.0, "SR": 0.0}
    table = ds.labels("all", folds=(ds.records.at[1, "fold"],))
    row = table.y[table.ecg_ids.tolist().index(1)]
    assert [table.names[k] for k in np.flatnonzero(row)] == ["LVOLT", "NORM", "SR"]
    assert ds.record_labels(1, "superdiagnostic") == ["NORM"]
    assert ds.record_labels(1, "rhythm") == ["SR"]


def test_read_attaches_labels_and_metadata(ds):
    ecg = ds.read(1)
    assert ecg.signal.shape == (12, 1000) and ecg.signal.dtype == np.float32
    assert ecg.sampling_rate == 100
    assert ecg.labels == ("LVOLT", "NORM", "SR")
    assert ecg.metadata["ecg_id"] == 1 and ecg.metadata["fold"] == 3
    assert ecg.metadata["age"] == 56 and ecg.metadata["sex"] == "Female"
    with pytest.raises(ECGError, match="no record with ecg_id 999999"):
        ds.read(999999)


# ---------------------------------------------------------------- bad input and missing files
def test_bad_root_and_rate(tmp_path, ptbxl_dir):
    with pytest.raises(ECGError, match="ptbxl_database.csv"):
        PTBXL(tmp_path)
    with pytest.raises(ECGError, match="250"):
        PTBXL(ptbxl_dir, sampling_rate=250)
    root = copy_subset(ptbxl_dir, tmp_path / "p", [1, 2])
    (root / "scp_statements.csv").unlink()
    with pytest.raises(ECGError, match="scp_statements.csv"):
        PTBXL(root)


def test_scp_codes_are_parsed_as_literals_only(tmp_path, ptbxl_dir):
    root = copy_subset(ptbxl_dir, tmp_path / "p", [1, 2])
    text = (root / "ptbxl_database.csv").read_text()
    (root / "ptbxl_database.csv").write_text(text.replace("{'NORM': 80.0, 'SBRAD': 0.0}", "__import__('os').getcwd()"))
    with pytest.raises(ECGError, match="ecg_id 2: scp_codes"):
        PTBXL(root)


def test_missing_record_is_reported_and_excluded(tmp_path, ptbxl_dir, caplog):
    ids = [1, 2, 3, 4, 5, 6]
    root = copy_subset(ptbxl_dir, tmp_path / "p", ids)
    (root / "records100/00000/00003_lr.dat").unlink()
    with caplog.at_level(logging.WARNING, logger="ecglens.datasets.ptbxl"):
        ds = PTBXL(root, sampling_rate=100)
    assert ds.missing == [(3, root / "records100/00000/00003_lr")]
    assert "1 of 6 records" in caplog.text and "ecg_id 3" in caplog.text
    assert ds.records.index.tolist() == [1, 2, 4, 5, 6]
    assert ds.summary()["missing"] == {"count": 1, "ecg_ids": [3]}
    assert 3 not in ds.labels("all").ecg_ids
    with pytest.raises(ECGError, match="00003_lr.hea: listed in ptbxl_database.csv but missing at 100 Hz"):
        ds.read(3)


def test_load_reports_unreadable_records(tmp_path, ptbxl_dir):
    ids = [1, 2, 3, 4, 5, 6]
    root = copy_subset(ptbxl_dir, tmp_path / "p", ids)
    dat = root / "records100/00000/00004_lr.dat"
    dat.write_bytes(dat.read_bytes()[:1000])  # truncated: present but unreadable
    ds = PTBXL(root)
    split = ds.load("all", folds=range(1, 11), pipeline=Pipeline((FixLength(10),)), cache_dir=tmp_path / "c", progress=False)
    assert [i for i, _ in split.skipped] == [4]
    assert "00004_lr" in split.skipped[0][1]
    assert split.ecg_ids.tolist() == [1, 2, 3, 5, 6]
    assert split.signals.shape == (5, 12, 1000) and split.signals.dtype == np.float32
    assert not split.signals.flags.writeable
    assert split.sampling_rate == 100
    full = ds.labels("all", folds=range(1, 11))
    for i, ecg_id in enumerate(split.ecg_ids):
        np.testing.assert_array_equal(split.y[i], full.y[full.ecg_ids.tolist().index(ecg_id)])
        np.testing.assert_allclose(split.signals[i], ds.read(ecg_id).signal, atol=1e-6)


# ---------------------------------------------------------------- co-occurrence
def test_jaccard_cooccurrence_hand_computed():
    y = np.array([
        [1, 1, 0, 0],
        [1, 0, 0, 0],
        [0, 1, 0, 1],
        [1, 1, 0, 0],
    ], dtype=np.float32)
    j = jaccard_cooccurrence(y)
    # label 0 in rows {0,1,3}, label 1 in {0,2,3}, label 2 never, label 3 in {2}
    expected = np.array([
        [1.0, 2 / 4, 0.0, 0.0],
        [2 / 4, 1.0, 0.0, 1 / 3],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 1 / 3, 0.0, 1.0],
    ])
    np.testing.assert_allclose(j, expected)
    np.testing.assert_allclose(j, j.T)


def test_label_cooccurrence_on_dataset(ds):
    j = ds.label_cooccurrence("superdiagnostic", folds=(10,))
    y = ds.labels("superdiagnostic", folds=(10,)).y
    assert j.shape == (5, 5)
    np.testing.assert_allclose(np.diag(j), 1.0)  # every superclass occurs in fold 10
    a, b = y[:, 2] > 0, y[:, 4] > 0  # MI, STTC
    assert j[2, 4] == pytest.approx((a & b).sum() / (a | b).sum())
