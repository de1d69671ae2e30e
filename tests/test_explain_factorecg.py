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
from ecglens.statements import beyond_one_beat

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
    x = np.concatenate([z, [r["value_std"] for r in saved["rhythm_features"]]])
    assert [r["feature"] for r in saved["rhythm_features"]] == clf.factor_models.features
    linear = clf.factor_models.trees is None
    for s in saved["statements"]:
        j = clf.labels.index(s["statement"])
        # The invariant recomputed here from the stored model: all inputs, not only the top ones.
        logit = (clf.factor_models.intercept[j] + clf.factor_models.coef[j] @ x if linear
                 else clf.factor_models.decision_function(x[None])[0, j])
        assert abs(logit - s["logit"]) <= 1e-6
        assert abs(s["intercept"] + s["sum_contributions"] - s["logit"]) <= 1e-6
        assert 1 / (1 + np.exp(-s["logit"])) == pytest.approx(s["probability"], abs=1e-9)
        top = s["top_contributions"]
        assert len(top) == 2 and abs(top[0]["contribution"]) >= abs(top[1]["contribution"])
        for c in top:
            if linear:
                assert c["contribution"] == pytest.approx(c["coefficient"] * c["value_std"])
            if c["kind"] == "factor":
                assert c["description"].startswith(f"factor {c['factor']}")
            else:
                assert c["factor"] in clf.factor_models.features
        assert s["beyond_one_beat"] == (s["statement"] in beyond_one_beat())
        if s["beyond_one_beat"]:
            assert "toward_normal" not in s  # a beat moved toward normal says nothing about the rhythm
            assert s["assessable"] == clf.judges_rhythm or not s["assessable"]
            continue
        path = s["toward_normal"]
        assert path["logits"][-1] <= path["logits"][0]  # moving toward normal lowers the statement's logit
        assert (tmp_path / path["figure"]).is_file()
    assert {t["factor"] for t in result["traversals"]} <= {c["factor"] for s in saved["statements"] for c in s["top_contributions"]}
    value = {f["factor"]: f["value_std"] for f in saved["factors"]}
    for t in saved["traversals"]:  # the record's own value is one of the drawn steps, inside the drawn range
        assert t["values_sd"][t["patient_index"]] == t["patient_value_sd"] == value[t["factor"]]
        assert t["values_sd"][0] <= min(-3.0, t["patient_value_sd"]) and t["values_sd"][-1] >= max(3.0, t["patient_value_sd"])
    for name in [t["figure"] for t in result["traversals"]] + [result["figures"]["beat_reconstruction"]]:
        assert (tmp_path / name).stat().st_size > 10_000
    assert 0 < saved["reconstruction"]["mae_uv"] < 200


def test_traversal_figure_marks_the_patient():
    import matplotlib.pyplot as plt

    from ecglens.explain.factorecg import traversal_plot
    from ecglens.models.factorecg.traverse import traversal_values

    values, own = traversal_values(-4.3)
    rng = np.random.default_rng(0)
    beats = rng.normal(size=(len(values), 12, 120)) * 0.1
    fig = traversal_plot(beats, 100.0, values, own, "t", 40)
    lines = {ln.get_gid(): ln for ax in fig.axes for ln in ax.lines if (ln.get_gid() or "").startswith("patient:")}
    assert set(lines) == {f"patient:{lead}" for lead in STANDARD_LEADS} | {"patient:colorbar"}
    np.testing.assert_allclose(lines["patient:V1"].get_ydata(), beats[own, STANDARD_LEADS.index("V1")])
    np.testing.assert_allclose(lines["patient:V1"].get_xdata(), -0.4 + np.arange(120) / 100)
    assert lines["patient:colorbar"].get_ydata()[0] == -4.3
    plt.close(fig)


def test_beat_models_mark_statements_beyond_one_beat(clf):
    blackbox = load_classifier(resolve_checkpoint("beat-blackbox"), device="cpu")
    beyond = set(beyond_one_beat())
    assert set(blackbox.beyond_beat) == beyond & set(blackbox.labels) and "AFIB" in blackbox.beyond_beat
    assert not blackbox.judges_rhythm
    assessable = dict(zip(blackbox.labels, blackbox.assessable))
    assert not any(assessable[s] for s in blackbox.beyond_beat)  # reported, never called
    assert any(assessable.values())
    prediction = load_model("beat-blackbox").predict([load_sample(RBBB_SAMPLE)])
    assert not prediction.calls[0][[blackbox.labels.index(s) for s in blackbox.beyond_beat]].any()
    mine = dict(zip(clf.labels, clf.assessable))
    calibrated = dict(zip(clf.labels, clf.calibration.assessable))
    for s in clf.beyond_beat:  # FactorECG judges them only from rhythm features
        assert mine[s] == (clf.judges_rhythm and calibrated[s])


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


def test_explanation_of_gradient_boosted_factor_models_is_faithful(model_dir):
    """The trees form: each input's TreeSHAP value; the logit is the expected logit plus all of them."""
    from ecglens.models.factorecg.factors import FactorModelConfig, FactorModels

    gbt = load_classifier(model_dir, device="cpu")
    fm = gbt.factor_models
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, len(fm.inputs)))
    y = (rng.random((300, len(fm.statements))) < 1 / (1 + np.exp(-2 * x[:, [0] * len(fm.statements)]))).astype(int)
    gbt.factor_models = FactorModels(fm.statements, fm.factor_indices, FactorModelConfig(kind="gbt", gbt_max_iter=5),
                                     features=fm.features).fit(x, y)
    data = _explain_with(gbt, model_dir, load_sample(RBBB_SAMPLE))
    assert data["faithfulness"]["satisfied"] and "TreeSHAP" in data["faithfulness"]["invariant"]
    assert data["statements"]
    for s in data["statements"]:
        assert s["intercept"] == pytest.approx(gbt.factor_models.base_value(s["statement"]))
        assert abs(s["intercept"] + s["sum_contributions"] - s["logit"]) <= 1e-6
        assert all(c["coefficient"] is None for c in s["top_contributions"])


def _explain_with(clf, model_dir, ecg):
    from ecglens.explain import ExplainOptions
    from ecglens.explain.factorecg import explain

    return explain(clf, model_dir, ecg, ExplainOptions(top=3, threshold=0.0, limit=3)).data
