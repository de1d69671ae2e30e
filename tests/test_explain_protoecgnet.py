"""ProtoECGNet explanations on a tiny projected model built from synthetic records (no PTB-XL)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ecglens.cli import main
from ecglens.errors import ECGError
from ecglens.api import load_model
from ecglens.explain import explainer_for
from ecglens.explain.protoecgnet import format_text
from ecglens.io.leads import STANDARD_LEADS
from ecglens.io.record import ECG
from ecglens.models import load_classifier
from ecglens.models.protoecgnet import BranchConfig, ProtoECGNet, ProtoECGNetConfig
from ecglens.models.protoecgnet.projection import (
    Gallery,
    calibrate_from_latents,
    collect_latents,
    project_prototypes,
)
from ecglens.preprocess import FixLength, Pipeline, Resample, Standardize
from ecglens.samples import sample_path
from ecglens.training import save_checkpoint

LABELS = ("SR", "AFIB", "LVH", "IMI", "NORM")  # rhythm, rhythm, global?, morphology, global per the table


def _tiny_model() -> ProtoECGNet:
    branches = {
        "rhythm": BranchConfig(kind="1d", widths=(8, 8), time_strides=(2, 4), kernel=5, prototype_channels=8,
                               prototypes_per_class=2, prototype_mode="pooled"),
        "morphology": BranchConfig(kind="2d", widths=(8, 16), time_strides=(2, 4), lead_strides=(2, 2), kernel=5,
                                   prototype_channels=16, prototypes_per_class=2, prototype_mode="partial"),
        "global": BranchConfig(kind="2d", widths=(4, 4), time_strides=(2, 4), lead_strides=(2, 2), kernel=5,
                               prototype_channels=4, prototypes_per_class=2, prototype_mode="full"),
    }
    return ProtoECGNet(ProtoECGNetConfig(labels=LABELS, branches=branches))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 24
    raw = (0.3 * rng.standard_normal((n, 12, 1000))).astype(np.float32)  # "mV"
    pipeline = Pipeline((Resample(100.0), Standardize(), FixLength(10.0)))
    display = Pipeline((Resample(100.0), FixLength(10.0)))
    x = np.stack([pipeline.apply_signal(r, 100.0)[0] for r in raw])
    y = (rng.random((n, len(LABELS))) < 0.4).astype(np.float32)
    y[:2] = 1.0  # every statement has positives
    ids = list(range(1000, 1000 + n))
    model = _tiny_model()
    model.train()
    with torch.no_grad():  # batch-norm statistics from the data
        model(torch.from_numpy(x))
    model.eval()
    latents = collect_latents(model, x)
    rows = project_prototypes(model, latents, y, ids)
    calibrate_from_latents(model, latents)
    labels_of = {i: [LABELS[j] for j in np.flatnonzero(row)] for i, row in zip(ids, y)}
    gallery = Gallery.build(rows, lambda e: display.apply_signal(raw[e - 1000], 100.0)[0],
                            lambda e: labels_of[e], 100.0)
    directory = tmp_path_factory.mktemp("proto-explain") / "model"
    config = {"kind": "protoecgnet", "model": model.config.to_dict(), "pipeline": pipeline.to_dict(),
              "display_pipeline": display.to_dict(), "labels": list(LABELS), "label_set": "test",
              "head": "masked fusion", "training": {}}
    save_checkpoint(directory, model, config)
    gallery.save(directory)
    return directory


def _explain(model_dir, ecg, **options) -> dict:
    return load_model(model_dir).explain(ecg, **options).data


def _source_ecg(gallery: Gallery, p: int) -> ECG:
    _, signal = gallery.source(p)
    return ECG(signal, 100.0, STANDARD_LEADS, units="mV", source=f"gallery-{p}")


def test_logit_is_bias_plus_listed_contributions(model_dir, tmp_path):
    ecg = _source_ecg(Gallery.load(model_dir), 0)
    result = _explain(model_dir, ecg, top=1000, threshold=0.0)
    assert {s["statement"] for s in result["statements"]} == set(LABELS)
    for s in result["statements"]:
        listed = sum(it["contribution"] for it in s["top_prototypes"])
        assert s["logit"] == pytest.approx(s["bias"] + listed, abs=1e-5)
        assert s["logit"] == pytest.approx(s["bias"] + s["sum_contributions"], abs=1e-5)
        assert s["probability"] == pytest.approx(1 / (1 + np.exp(-s["logit"])), abs=1e-6)
        for it in s["top_prototypes"]:
            assert it["contribution"] == pytest.approx(it["weight"] * it["normalized_similarity"], abs=1e-5)
    assert result["faithfulness"]["satisfied"] and result["faithfulness"]["max_error"] < 1e-5
    # the classifier adapter gives the same probabilities
    clf = load_classifier(model_dir, device="cpu")
    p = clf.predict_proba(ecg)
    assert np.allclose(p, [result["probabilities"][s] for s in LABELS], atol=1e-5)


def test_masking_the_matched_window_lowers_similarity(model_dir, tmp_path):
    gallery = Gallery.load(model_dir)
    p = next(r["id"] for r in gallery.prototypes if r["branch"] == "morphology" and r["projected"])
    row = gallery.prototypes[p]
    ecg = _source_ecg(gallery, p)
    result = _explain(model_dir, ecg, top=1000, statements=(row["label"],), threshold=1.1)
    entry = next(s for s in result["statements"] if s["statement"] == row["label"])
    item = next(it for it in entry["top_prototypes"] if it["prototype"] == p)
    assert item["similarity"] == pytest.approx(1.0, abs=1e-4)  # its own source
    assert item["query_window"]["start_s"] == pytest.approx(item["source"]["start_s"])
    from ecglens.models.protoecgnet.classifier import model_from_checkpoint
    from ecglens.training import load_checkpoint
    state, config = load_checkpoint(model_dir)
    model = model_from_checkpoint(state, config)
    x = torch.from_numpy(np.array(load_classifier(model_dir, device="cpu").preprocess(ecg)))[None]
    a, b = (round(item["query_window"][k] * 100) for k in ("start_s", "end_s"))
    masked = x.clone()
    masked[..., a:b] = 0.0
    w = item["query_window"]["latent_start"]
    with torch.no_grad():
        before = model(x).similarity_maps["morphology"][0, row["index"]]
        after = model(masked).similarity_maps["morphology"][0, row["index"]]
    assert after[w] < before[w] - 1e-4  # the matched window itself
    assert after.max() < before.max() - 1e-4  # and the prototype's score (best window anywhere)


@pytest.mark.slow
def test_json_round_trip_and_figures(model_dir, tmp_path):
    ecg = _source_ecg(Gallery.load(model_dir), 1)
    explanation = load_model(model_dir).explain(ecg, top=2, threshold=0.0, statements=("IMI",))
    assert not any(tmp_path.iterdir())  # explaining writes nothing
    explanation.save(tmp_path)
    result = explanation.data
    assert json.loads((tmp_path / "explanation.json").read_text()) == json.loads(json.dumps(result))
    assert sorted(p.name for p in tmp_path.glob("*.png")) == result["files"] == sorted(explanation.figures)
    for s in result["statements"]:
        assert (tmp_path / s["figure"]).stat().st_size > 1000
        assert len(s["top_prototypes"]) <= 2
        for it in s["top_prototypes"]:
            assert (tmp_path / it["source_figure"]).is_file()
            assert it["source"]["labels"] and it["prototype_label"] in it["source"]["labels"]
    text = format_text(result)
    assert "faithfulness" in text and "IMI" in text


def test_unknown_statement_and_wrong_leads(model_dir, tmp_path):
    ecg = _source_ecg(Gallery.load(model_dir), 0)
    with pytest.raises(ECGError, match="unknown statement"):
        _explain(model_dir, ecg, statements=("XYZ",))
    bad = ECG(ecg.signal[:3], 100.0, ("I", "II", "III"), units="mV")
    with pytest.raises(ECGError, match="12 standard leads"):
        _explain(model_dir, bad)


def test_cli_explains_a_bundled_sample(model_dir, tmp_path, capsys):
    assert explainer_for("protoecgnet").__name__ == "ecglens.explain.protoecgnet"
    out = tmp_path / "cli"
    rc = main(["explain", str(sample_path(3).with_suffix(".hea")), "--model", str(model_dir), "--out", str(out),
               "--no-figures", "--top", "2"])
    assert rc == 0
    assert "faithfulness" in capsys.readouterr().out
    assert json.loads((out / "explanation.json").read_text())["kind"] == "protoecgnet"
