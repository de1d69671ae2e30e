"""ONNX export of every shipped classifier and the onnxruntime path (probabilities within 1e-4 of torch)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'ecglens[onnx]')")
pytest.importorskip("onnx", reason="onnx is not installed (pip install 'ecglens[onnx]')")

import ecglens
from ecglens.cli import COMMANDS, main
from ecglens.errors import ECGError
from ecglens.models.classifier import Classifier
from ecglens.models.export import export_onnx
from ecglens.models.onnx_runtime import use_onnx
from ecglens.samples import list_samples, load_sample

CLASSIFIERS = ["baseline", "protoecgnet", "factorecg", "beat-blackbox"]


@pytest.fixture(scope="module")
def ecgs():
    return [load_sample(s.ecg_id) for s in list_samples()]


def test_every_shipped_classifier_is_covered():
    shipped = {n for n in ecglens.list_models() if isinstance(ecglens.load_model(n, device="cpu").loaded, Classifier)}
    assert shipped == set(CLASSIFIERS)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_onnx_matches_torch(name, ecgs, tmp_path):
    torch_model = ecglens.load_model(name, device="cpu")
    path = export_onnx(torch_model, tmp_path / f"{name}.onnx")
    onnx_model = ecglens.load_model(name, device="cpu")
    use_onnx(onnx_model.loaded, path, threads=1)
    expected = torch_model.predict(ecgs, quality=False).probabilities
    got = onnx_model.predict(ecgs, quality=False).probabilities
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    batch = np.stack([onnx_model.loaded.preprocess(e) for e in ecgs[:3]])
    assert onnx_model.loaded.predict_inputs(list(batch)).shape == (3, len(onnx_model.labels))


def test_exported_file_records_the_labels(tmp_path):
    import json

    import onnx

    path = export_onnx(ecglens.load_model("baseline", device="cpu"), tmp_path / "baseline.onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["ecglens_labels"]) == ecglens.load_model("baseline", device="cpu").labels


def test_qlst_is_refused(tmp_path):
    with pytest.raises(ECGError, match="only classifiers"):
        export_onnx(ecglens.load_model("qlst", device="cpu"), tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.skipif("export" not in COMMANDS, reason="the export subcommand is not listed in ecglens.cli.COMMANDS")
def test_cli_export(tmp_path, capsys):
    assert main(["export", "beat-blackbox", "-o", str(tmp_path / "b.onnx")]) == 0
    assert (tmp_path / "b.onnx").stat().st_size > 0
    assert main(["export", "qlst", "-o", str(tmp_path / "q.onnx")]) == 2
    assert "only classifiers" in capsys.readouterr().err


def test_mismatched_onnx_file_is_refused(tmp_path):
    path = export_onnx(ecglens.load_model("beat-blackbox", device="cpu"), tmp_path / "blackbox.onnx")
    with pytest.raises(ECGError, match="needs"):
        use_onnx(ecglens.load_model("baseline", device="cpu").loaded, path, source=path)


def test_predict_runtime_onnx_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    from ecglens.cli import main

    paths = [str(ecglens.sample_path(i)) for i in (172, 3)]
    for runtime in ("torch", "onnx"):
        assert main(["predict", "protoecgnet", *paths, "-o", str(tmp_path / f"{runtime}.csv"), "--runtime", runtime,
                     "--no-progress"]) == 0
    import csv

    probs = {r: {(row["record"], row["statement"]): float(row["probability"])
                 for row in csv.DictReader(open(tmp_path / f"{r}.csv"))} for r in ("torch", "onnx")}
    assert probs["torch"].keys() == probs["onnx"].keys() and len(probs["torch"]) == 2 * 71
    assert max(abs(probs["torch"][k] - probs["onnx"][k]) for k in probs["torch"]) < 1e-4
