"""FactorECG explanations with the shipped pretrained model on the bundled samples."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ecglens.cli import main
from ecglens.errors import ECGError
from ecglens.api import load_model
from ecglens.io import ECG, STANDARD_LEADS
from ecglens.models import load_classifier, resolve_checkpoint
from ecglens.pretrained import list_pretrained
from ecglens.samples import load_sample, sample_path

RBBB_SAMPLE = 172  # PTB-XL: CRBBB, LAFB, SR


@pytest.fixture(scope="module")
def model_dir():
    assert "factorecg" in list_pretrained()
    return resolve_checkpoint("factorecg")


@pytest.fixture(scope="module")
def clf(model_dir):
    return load_classifier(model_dir, device="cpu")


def test_explanation_is_faithful_and_complete(model_dir, clf, tmp_path):
    ecg = load_sample(RBBB_SAMPLE)
    result = load_model(model_dir).explain(ecg, top=2, threshold=0.5)
    result.save(tmp_path)
    result = result.data
    saved = json.loads((tmp_path / "explanation.json").read_text())
    assert saved["faithfulness"]["satisfied"] and saved["faithfulness"]["max_error"] <= 1e-6
    assert saved["calibrated_probabilities"] == pytest.approx(dict(zip(clf.labels, clf.predict_ecgs([ecg])[0])),
                                                              abs=1e-9)
    with clf.raw():
        assert saved["probabilities"] == pytest.approx(dict(zip(clf.labels, clf.predict_ecgs([ecg])[0])), abs=1e-9)
    z = np.array([f["value_std"] for f in saved["factors"]])
    assert [f["factor"] for f in saved["factors"]] == clf.standardizer.indices
    assert all(0 <= f["percentile"] <= 100 for f in saved["factors"])
    explained = [s["statement"] for s in saved["statements"]]
    calibrated = saved["calibrated_probabilities"]
    assert explained == sorted((n for n, p in calibrated.items() if p >= 0.5), key=lambda n: -calibrated[n])
    for s in saved["statements"]:
        j = clf.labels.index(s["statement"])
        # The invariant recomputed here from the stored model: all factors, not only the top ones.
        logit = clf.factor_models.intercept[j] + clf.factor_models.coef[j] @ z
        assert abs(logit - s["logit"]) <= 1e-6
        assert abs(s["intercept"] + s["sum_contributions"] - s["logit"]) <= 1e-6
        assert 1 / (1 + np.exp(-s["logit"])) == pytest.approx(s["probability"], abs=1e-9)
        top = s["top_contributions"]
        assert len(top) == 2 and abs(top[0]["contribution"]) >= abs(top[1]["contribution"])
        for c in top:
            assert c["contribution"] == pytest.approx(c["coefficient"] * c["value_std"])
            assert c["description"].startswith(f"factor {c['factor']}")
        path = s["toward_normal"]
        assert path["logits"][-1] <= path["logits"][0]  # moving toward normal lowers the statement's logit
        assert (tmp_path / path["figure"]).is_file()
    assert {t["factor"] for t in result["traversals"]} <= {c["factor"] for s in saved["statements"] for c in s["top_contributions"]}
    for name in [t["figure"] for t in result["traversals"]] + [result["figures"]["beat_reconstruction"]]:
        assert (tmp_path / name).stat().st_size > 10_000
    assert 0 < saved["reconstruction"]["mae_uv"] < 200


def test_percentiles_follow_the_stored_population(clf):
    q = np.asarray(clf.population["quantiles"])
    median = q[:, 50]
    np.testing.assert_allclose(clf.percentiles(median), 50.0, atol=1e-9)
    assert np.all(clf.percentiles(q[:, 0] - 1) == 0) and np.all(clf.percentiles(q[:, -1] + 1) == 100)


def test_forced_statement_and_errors(model_dir, clf, tmp_path):
    ecg = load_sample(RBBB_SAMPLE)
    probs = dict(zip(clf.labels, clf.predict_ecgs([ecg])[0]))
    low = min(probs, key=probs.get)
    model = load_model(model_dir)
    explanation = model.explain(ecg, threshold=1.01, statements=(low,))
    assert [s["statement"] for s in explanation.data["statements"]] == [low]
    explanation.save(tmp_path, figures=False)
    assert not list(tmp_path.glob("*.png"))
    with pytest.raises(ECGError, match="unknown statement"):
        model.explain(ecg, statements=("NOPE",))
    flat = ECG(np.zeros((12, 1000), np.float32), 100.0, STANDARD_LEADS, source="flat.npy")
    with pytest.raises(ECGError, match="flat.npy"):
        model.explain(flat)


def test_explain_command_with_the_shipped_model(tmp_path, capsys):
    rc = main(["explain", str(sample_path(RBBB_SAMPLE)), "--model", "factorecg", "--out", str(tmp_path),
               "--no-figures", "--json", "--top", "1"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "factorecg" and result["faithfulness"]["satisfied"]
    assert (tmp_path / "explanation.json").is_file()
    assert all(len(s["top_contributions"]) == 1 for s in result["statements"])
