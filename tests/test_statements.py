"""Statement descriptions: the shipped table, its regeneration from PTB-XL, and their display in predict's
table, its JSON and ``Prediction.to_dict``."""
from __future__ import annotations

import json
from importlib.resources import files

import pytest

from ecglens.cli import main
from ecglens.errors import ECGError
from ecglens.models.prediction import Prediction
from ecglens.samples import sample_path
from ecglens.statements import TABLE, describe, descriptions, statement_groups, write_descriptions


def test_describe_known_and_unknown_codes():
    assert describe("AFIB") == "atrial fibrillation"
    assert describe("LAO/LAE") == "left atrial overload/enlargement"
    assert describe("PRC(S)") == "premature complex(es)"
    assert describe("MI") == "myocardial infarction" and describe("_AVB") == "AV block"  # label-set groups
    assert describe("NOT_A_CODE") == ""
    table = descriptions()
    assert len(table) == 71 + 8 and all(table.values())


def test_statement_groups_from_the_table():
    classes, subclasses = statement_groups("diagnostic_class"), statement_groups("diagnostic_subclass")
    assert classes["PMI"] == classes["IMI"] == "MI" and classes["LVH"] == "HYP" and classes["NORM"] == "NORM"
    assert subclasses["IMI"] == "IMI" and subclasses["ISCAL"] == "ISCA"
    assert "AFIB" not in classes and "MI" not in classes  # rhythm statements and the groups themselves
    assert len(classes) == 44
    with pytest.raises(ECGError, match="no statement grouping 'kind'"):
        statement_groups("kind")


def test_attribution_names_source_and_licence():
    text = files("ecglens").joinpath("data/ATTRIBUTION.md").read_text()
    assert "scp_descriptions.csv" in text and "CC BY 4.0" in text and "10.13026/kfzx-aw45" in text


def test_table_regenerates_from_ptbxl_and_covers_every_label_set(ptbxl_dir, tmp_path):
    from ecglens.datasets import PTBXL
    from ecglens.datasets.ptbxl import LABEL_SETS

    out = write_descriptions(ptbxl_dir / "scp_statements.csv", tmp_path / "scp_descriptions.csv")
    assert out.read_text() == files("ecglens").joinpath(TABLE).read_text()
    ds = PTBXL(ptbxl_dir)
    for label_set in LABEL_SETS:
        missing = [n for n in ds.label_names(label_set) if not describe(n)]
        assert not missing, f"{label_set}: {missing}"


def test_bad_statements_file_names_it(tmp_path):
    bad = tmp_path / "scp_statements.csv"
    bad.write_text("code,description\nAFIB,atrial fibrillation\n")
    with pytest.raises(ECGError, match="scp_statements.csv: not PTB-XL's"):
        write_descriptions(bad, tmp_path / "out.csv")


def test_prediction_dict_carries_descriptions():
    doc = Prediction(["a"], ["AFIB", "XYZ"], [[0.9, 0.1]], [0.5, 0.5]).to_dict()
    assert doc["descriptions"] == {"AFIB": "atrial fibrillation", "XYZ": ""}


def test_predict_table_and_json_show_descriptions(tmp_path, capsys):
    record = sample_path(172)
    assert main(["predict", "baseline", str(record), "--no-progress", "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:4]
    assert all(describe(line.split()[0]) and line.endswith(describe(line.split()[0])) for line in lines)
    out = tmp_path / "p.json"
    assert main(["predict", "baseline", str(record), "--no-progress", "-o", str(out)]) == 0
    preds = json.loads(out.read_text())["records"][0]["predictions"]
    assert all(p["description"] == describe(p["statement"]) for p in preds)
    assert any(p["description"] == "sinus rhythm" for p in preds)


def test_beyond_one_beat_holds_the_rhythm_statements_and_ectopy():
    from ecglens.statements import beyond_one_beat

    found = beyond_one_beat()
    assert {"SR", "AFIB", "STACH", "SBRAD", "BIGU", "TRIGU", "PVC", "PAC", "3AVB"} <= found
    assert not {"NORM", "CRBBB", "1AVB", "LVH", "IMI"} & found
