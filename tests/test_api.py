"""The public API: load_model -> Model.predict (typed Prediction) and Model.explain (typed Explanation)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import ecglens
from ecglens.io.leads import STANDARD_LEADS
from ecglens.models.prediction import Prediction
from ecglens.samples import load_sample


def test_top_level_names():
    for name in ("read_ecg", "load_model", "list_models", "evaluate", "ECG", "Pipeline", "ECGError", "ConfigError",
                 "Model", "Prediction", "Explanation"):
        assert getattr(ecglens, name) is not None
    assert issubclass(ecglens.ConfigError, ecglens.ECGError) and issubclass(ecglens.ConfigError, ValueError)
    with pytest.raises(AttributeError):
        ecglens.no_such_name


def test_prediction_calls_follow_per_statement_thresholds():
    p = Prediction(["a", "b"], ["X", "Y", "Z"], [[0.2, 0.6, 0.9], [0.5, 0.1, 0.3]], [0.5, 0.7, 0.25],
                   skipped=[(1, "no beat")])
    assert p.calls.tolist() == [[False, False, True], [False, False, False]]  # skipped record: no call
    assert p.called(0) == ["Z"] and p.top(0, 2) == [("Z", 0.9), ("Y", 0.6)]
    frame = p.to_frame()
    assert frame.shape == (2, 3) and frame.loc["a", "Y"] == 0.6
    long = p.to_frame(long=True)
    assert len(long) == 6 and long["positive"].sum() == 1 and long["threshold"].tolist()[:3] == [0.5, 0.7, 0.25]
    doc = json.loads(p.to_json())
    assert doc["records"][0]["called"] == ["Z"] and doc["records"][1]["not_judged"] == "no beat"
    assert doc["skipped"]["count"] == 1 and doc["thresholds"]["Z"] == 0.25


def test_predict_one_and_many_match_the_classifier():
    model = ecglens.load_model("baseline")
    ecgs = [load_sample(172), load_sample(3)]
    many = model.predict(ecgs)
    one = model.predict(ecgs[0])
    assert many.labels == model.labels and len(many) == 2
    np.testing.assert_allclose(one.probabilities[0], many.probabilities[0], atol=1e-6)
    np.testing.assert_allclose(many.probabilities, model.loaded.predict_ecgs(ecgs), atol=1e-6)
    np.testing.assert_array_equal(many.thresholds, model.loaded.thresholds)


def test_a_record_a_model_cannot_judge_raises_or_is_listed():
    model = ecglens.load_model("factorecg")
    flat = ecglens.ECG(np.zeros((12, 1000), np.float32), 100.0, STANDARD_LEADS, source="flat.npy")
    with pytest.raises(ecglens.ECGError, match="flat.npy"):
        model.predict(flat)
    p = model.predict([load_sample(172), flat], on_error="skip")
    assert [row for row, _ in p.skipped] == [1] and np.isnan(p.probabilities[1]).all()
    assert np.isfinite(p.probabilities[0]).all() and not p.calls[1].any()


def test_explain_writes_nothing_until_saved(tmp_path):
    model = ecglens.load_model("factorecg")
    explanation = model.explain(load_sample(172), top=1)
    assert explanation.kind == "factorecg" and explanation.figures
    assert json.loads(explanation.to_json()) == json.loads(json.dumps(explanation.data))
    assert not any(tmp_path.iterdir())
    explanation.save(tmp_path / "a", figures=False)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["explanation.json"]


def test_saving_into_a_reused_directory_removes_the_earlier_figures(tmp_path):
    model = ecglens.load_model("qlst")
    first = model.explain(load_sample(172), statements=["AFIB"], top=1)
    first.figures = {name: first.figures[name] for name in list(first.figures)[:1]}  # draw one: fast
    first.save(tmp_path)
    drawn = set(first.figures)
    assert drawn <= {p.name for p in tmp_path.iterdir()}
    second = model.explain(load_sample(3), statements=["SR"], top=1)
    second.figures = {"other.png": lambda path: path.write_bytes(b"x")}
    second.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"explanation.json", "other.png"}


def test_shipped_models_declare_their_thresholds():
    for name in ecglens.list_models():
        model = ecglens.load_model(name)
        if model.can_predict:
            t = model.loaded.thresholds
            assert t.shape == (len(model.labels),) and ((t >= 0) & (t <= 1)).all()


def test_not_assessable_statements_are_never_called_and_parts_concatenate():
    p = Prediction(["a", "b", "c"], ["X", "Y"], [[0.9, 0.9], [0.1, 0.9], [0.9, 0.1]], [0.5, 0.5],
                   skipped=[(2, "noise")], assessable=[True, False])
    assert p.calls.tolist() == [[True, False], [False, False], [False, False]]
    assert p.to_dict()["not_assessable"] == ["Y"]
    part = p.select([2, 0])
    assert part.records == ["c", "a"] and part.skipped == [(0, "noise")] and part.calls[1, 0]
    whole = Prediction.concat([p.select([0, 1]), p.select([2])])
    assert whole.records == p.records and whole.skipped == p.skipped
    np.testing.assert_array_equal(whole.calls, p.calls)


def test_a_flagged_record_gets_no_call_but_keeps_its_probabilities():
    model = ecglens.load_model("baseline")
    ecg = load_sample(172)
    scaled = ecglens.ECG(ecg.signal * 1000, ecg.sampling_rate, ecg.leads, source="uv-read-as-mv")
    p = model.predict([ecg, scaled])
    assert p.quality[0]["judgeable"] and not p.quality[1]["judgeable"]
    assert p.calls[0].any() and not p.calls[1].any() and np.isfinite(p.probabilities[1]).all()
    assert "units" in p.to_dict()["records"][1]["quality"]["flags"]
    assert model.predict(scaled, quality=False).calls.any()  # without the check the garbage would be called
    explanation = ecglens.load_model("factorecg").explain(scaled)
    assert explanation.data["quality"]["flags"] and explanation.text.startswith("WARNING")


def test_an_interrupted_save_leaves_no_partial_figure(tmp_path):
    explanation = ecglens.load_model("factorecg").explain(load_sample(172), top=1)
    names = list(explanation.figures)

    def dies(path):
        path.write_bytes(b"half a png")
        raise KeyboardInterrupt

    explanation.figures = {names[0]: explanation.figures[names[0]], names[1]: dies}
    with pytest.raises(KeyboardInterrupt):
        explanation.save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [names[0]]  # the finished figure, no partial one, no JSON
