"""ProtoECGNet explanations: a tiny projected model built from synthetic records (no PTB-XL), then the shipped
model on a bundled record (receptive-field windows, percentiles, lead marking, the statement limit)."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from ecglens.api import load_model
from ecglens.cli import main
from ecglens.errors import ECGError
from ecglens.explain import ExplainOptions, explainer_for
from ecglens.explain.protoecgnet import format_text, load_similarity_reference, similarity_percentile
from ecglens.io.leads import STANDARD_LEADS
from ecglens.io.record import ECG
from ecglens.models import load_classifier
from ecglens.models.protoecgnet import BranchConfig, ProtoECGNet, ProtoECGNetConfig
from ecglens.models.protoecgnet.backbones import window_input_span
from ecglens.models.protoecgnet.model import Contributions
from ecglens.models.protoecgnet.projection import (
    Gallery,
    calibrate_from_latents,
    collect_latents,
    project_prototypes,
)
from ecglens.preprocess import FixLength, Pipeline, Resample, Standardize
from ecglens.samples import load_sample, sample_path
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
    result = _explain(model_dir, ecg, top=1000, threshold=0.0, limit=None)
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
    assert len(result["statements"]) == 4  # the default limit, "IMI" among them because it was asked for
    assert "IMI" in {s["statement"] for s in result["statements"]} and "not explained" in result["note"]
    for s in result["statements"]:
        assert (tmp_path / s["figure"]).stat().st_size > 1000  # every one is called at threshold 0
        assert len(s["top_prototypes"]) <= 2
        for it in s["top_prototypes"]:
            assert it["source"]["labels"] and it["prototype_label"] in it["source"]["labels"]
            assert it["similarity_percentile"] is None and "percentile not available" in it["words"]
    assert not result["similarity_reference"]["available"]  # this gallery holds no reference distribution
    text = format_text(result)
    assert "faithfulness" in text and "IMI" in text and "not available" in text


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


# --- the shipped model on a bundled record -------------------------------------------------------------------
RECORD = 310  # the shipped model calls four statements here (ALMI, ASMI, CRBBB, SR), morphology ones among them
LIMIT = 3  # one fewer than it calls, so the limit is seen at work

@pytest.fixture(scope="module")
def shipped():
    model = load_model("protoecgnet")
    return model, model.explain(load_sample(RECORD))


def test_explains_at_most_limit_statements(shipped):
    model, explanation = shipped
    assert ExplainOptions().limit == 4 and explanation.data["limit"] == 4
    result = model.explain(load_sample(RECORD), limit=LIMIT).data
    called = [s for s, p in result["calibrated_probabilities"].items()
              if p >= result["thresholds"][s] and model.loaded.assessable[model.labels.index(s)]]
    assert len(called) > LIMIT
    assert {s["statement"] for s in explanation.data["statements"]} == set(called)  # 4 called: all shown by default
    shown = [s["statement"] for s in result["statements"]]
    assert len(shown) == LIMIT and set(shown) <= set(called)
    probs = [result["calibrated_probabilities"][s] for s in shown]
    assert probs == sorted(probs, reverse=True) and min(probs) >= max(
        result["calibrated_probabilities"][s] for s in set(called) - set(shown))
    assert f"{len(called) - LIMIT} more called statement(s) not explained" in result["note"]
    everything = model.explain(load_sample(RECORD), limit=None, top=1).data
    assert {s["statement"] for s in everything["statements"]} == set(called)


def test_figures_only_for_called_or_asked_statements(shipped):
    model, _ = shipped
    ecg = load_sample(RECORD)
    nothing = model.explain(ecg, threshold=1.1, top=1)  # nothing called: the most probable one, no figure
    assert [s["figure"] for s in nothing.data["statements"]] == [None] and not nothing.figures
    drawn = model.explain(ecg, threshold=1.1, top=1, all_figures=True)
    assert len(drawn.figures) == 1 and drawn.data["statements"][0]["figure"] in drawn.figures
    asked = model.explain(ecg, threshold=1.1, top=1, statements=("AFIB",))
    assert [s["statement"] for s in asked.data["statements"]] == ["AFIB"]
    assert list(asked.figures) == [asked.data["statements"][0]["figure"]]


def test_windows_are_receptive_fields(shipped):
    model, explanation = shipped
    net = model.loaded.model.net
    n, rate = net.config.n_samples, net.config.sampling_rate
    seen = set()
    for s in explanation.data["statements"]:
        for it in s["top_prototypes"]:
            branch = net.branches[it["branch"]]
            q = it["query_window"]
            assert q["span"] == "receptive_field"
            if branch.mode == "pooled":
                want = (0, n)
            else:
                want = window_input_span(q["latent_start"], branch.prototype_layer.length, branch.time_geometry, n,
                                         "receptive_field")
            assert (round(q["start_s"] * rate), round(q["end_s"] * rate)) == want
            foot = (round(q["footprint_start_s"] * rate), round(q["footprint_end_s"] * rate))
            assert foot[0] >= want[0] and foot[1] <= want[1]
            seen.add(branch.mode)
            if branch.mode == "partial" and 0 < want[0] and want[1] < n:  # an interior window: wider than the footprint
                assert want[1] - want[0] == (branch.prototype_layer.length - 1) * branch.time_geometry.stride + \
                    branch.time_geometry.receptive_field > foot[1] - foot[0]
    assert "partial" in seen  # the record's morphology matches are the point of the test
    assert "receptive field" in explanation.data["windows"]


def test_percentiles_readable_and_monotone(shipped):
    model, explanation = shipped
    net = model.loaded.model.net
    reference, info = load_similarity_reference(model.directory, net)
    assert info["available"] and info["folds"] == list(range(1, 9)) and reference.shape == (219, 101)
    assert np.all(np.diff(reference, axis=1) >= 0)
    for s in explanation.data["statements"]:
        for it in s["top_prototypes"]:
            pct = it["similarity_percentile"]
            assert 0 <= pct <= 100 and "percentile of training matches" in it["words"]
            assert pct == pytest.approx(float(similarity_percentile(it["similarity"], reference[it["prototype"]])))
    for row in reference[[0, 60, 210]]:
        grid = np.linspace(row[0] - 0.05, row[-1] + 0.05, 400)
        pct = similarity_percentile(grid, row)
        assert np.all(np.diff(pct) >= 0) and pct[0] == 0 and pct[-1] == 100
        assert similarity_percentile(row[50], row) == pytest.approx(50, abs=1.5)
    other = copy.deepcopy(net)
    with torch.no_grad():
        other.branches["morphology"].prototype_layer.prototypes[0] += 0.1
    missing, why = load_similarity_reference(model.directory, other)
    assert missing is None and not why["available"] and "not available" in why["reason"]


def test_marked_leads_carry_the_match(shipped):
    model, explanation = shipped
    net = model.loaded.model.net
    x = torch.from_numpy(np.array(model.loaded.preprocess(load_sample(RECORD)), dtype=np.float32))
    item = next(it for s in explanation.data["statements"] for it in s["top_prototypes"] if it["branch"] == "morphology")
    drops = [d["similarity_drop"] for d in item["leads"]]
    assert len(drops) == 12 and drops == sorted(drops, reverse=True)
    assert item["marked_leads"] and item["marked_leads"] == [d["lead"] for d in item["leads"][:len(item["marked_leads"])]]
    lead = STANDARD_LEADS.index(item["marked_leads"][0])
    a, b = (round(item["query_window"][k] * 100) for k in ("start_s", "end_s"))
    blanked = x.clone()
    blanked[lead, a:b] = 0.0
    with torch.no_grad():
        before = net(x[None]).similarity_maps["morphology"][0, item["index"], item["query_window"]["latent_start"]]
        after = net(blanked[None]).similarity_maps["morphology"][0, item["index"], item["query_window"]["latent_start"]]
    assert float(before - after) == pytest.approx(item["leads"][0]["similarity_drop"], abs=1e-5) and before > after


def test_contributions_in_words_and_figure_size(shipped, tmp_path):
    _, explanation = shipped
    for s in explanation.data["statements"]:
        assert s["statement"] in s["summary"] and "own prototypes" in s["summary"]
        for it in s["top_prototypes"]:
            assert f"{it['contribution']:+.2f}" in it["words"] and f"the {s['statement']} logit" in it["words"]
            assert ("not one of" in it["words"]) == (not it["own_statement"])
            why = it["relation"]
            assert (why is None) == it["own_statement"]  # the shipped head is related: every other prototype has a reason
            if why is not None:
                assert why["jaccard"] or why["group"]
                assert ("co-occur in training" in it["words"]) == bool(why["jaccard"])
                assert ("both are" in it["words"]) == bool(why["group"])
    explanation.save(tmp_path)
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == len(explanation.data["statements"]) <= 4
    assert sum(p.stat().st_size for p in pngs) < 4_000_000  # was 11 MB in 21 figures before the limit


@pytest.mark.skipif("window_start" not in Contributions.__dataclass_fields__,
                    reason="the model scores one input-length window per record")
def test_a_long_record_is_explained_by_each_statements_deciding_window(tmp_path):
    import shutil

    from ecglens.pretrained import pretrained_dir

    directory = tmp_path / "whole-record"
    shutil.copytree(pretrained_dir("protoecgnet"), directory)
    config = json.loads((directory / "config.json").read_text())
    for key in ("pipeline", "display_pipeline"):  # read the whole record, as a whole-record checkpoint does
        config[key]["steps"] = [s for s in config[key]["steps"] if s["step"] != "fix_length"]
    (directory / "config.json").write_text(json.dumps(config))
    normal, crbbb = load_sample(3), load_sample(172)
    ecg = crbbb.with_signal(np.concatenate([normal.signal, crbbb.signal, normal.signal], axis=1))  # 30 s
    model = load_model(directory)
    result = model.explain(ecg, statements=("CRBBB",)).data
    assert result["record_s"] == pytest.approx(30.0)
    entry = next(s for s in result["statements"] if s["statement"] == "CRBBB")
    w = entry["window"]
    net = model.loaded.model.net
    windows, starts = net.record_windows(torch.from_numpy(np.array(model.loaded.preprocess(ecg), dtype=np.float32)))
    with torch.no_grad():
        deciding = int(starts[net.eval()(windows).logits[:, net.labels.index("CRBBB")].argmax()])
    rate = net.config.sampling_rate
    assert (w["start_s"], w["end_s"]) == (pytest.approx(deciding / rate), pytest.approx(deciding / rate + 10.0))
    assert 5.0 <= w["start_s"] <= 15.0  # at least half of it is the CRBBB record (10-20 s)
    assert not w["whole_record"] and f"decided by the window {w['start_s']:.2f}-{w['end_s']:.2f} s" in entry["summary"]
    for it in entry["top_prototypes"]:
        q = it["query_window"]
        assert w["start_s"] <= q["start_s"] < q["end_s"] <= w["end_s"]
    assert entry["logit"] == pytest.approx(entry["bias"] + entry["sum_contributions"], abs=1e-4)
