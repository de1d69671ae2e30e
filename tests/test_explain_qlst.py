"""The shipped qLST traversal network: loads with the shipped VAE and classifier, explains a bundled record,
refuses statements one median beat cannot carry, and shows the patient's own beat in its figures."""
import json

import numpy as np
import pytest

from ecglens.cli import main
from ecglens.models.qlst import load_qlst
from ecglens.pretrained import list_pretrained, pretrained_dir
from ecglens.samples import list_samples, sample_path
from ecglens.training import load_config, weights_digest


def test_shipped_qlst_names_shipped_models_with_their_exact_weights():
    assert {"qlst", "factorecg", "beat-blackbox"} <= set(list_pretrained())
    config = load_config(pretrained_dir("qlst"))
    assert config["vae"]["path"] == "factorecg" and config["classifier"]["path"] == "beat-blackbox"
    assert config["vae"]["sha256"] == weights_digest(pretrained_dir("factorecg"))
    assert config["classifier"]["sha256"] == weights_digest(pretrained_dir("beat-blackbox"))
    qlst = load_qlst("qlst")
    assert "NORM" in qlst.config.statements


@pytest.mark.slow
def test_explain_norm_sweep_moves_the_classifier_score_with_q(tmp_path):
    sample = list_samples()[0]
    out = tmp_path / "qlst"
    assert main(["explain", str(sample_path(sample.ecg_id, 100)), "--model", "qlst", "--statement", "NORM",
                 "--out", str(out), "--steps", "5"]) == 0
    result = json.loads((out / "explanation.json").read_text())
    (entry,) = result["statements"]
    assert entry["statement"] == "NORM" and entry["refused"] is False and result["warnings"] == []
    qs = [r["q"] for r in entry["sweep"]]
    achieved = [r["achieved"] for r in entry["sweep"]]
    assert qs == sorted(qs) and qs[0] == 0.0 and qs[-1] == 1.0
    # the traversal does what it was asked: higher queried scores give higher achieved scores
    assert np.corrcoef(qs, achieved)[0, 1] > 0.9
    assert (out / entry["figure"]).stat().st_size > 1000


@pytest.mark.slow
def test_rhythm_statement_is_refused_not_drawn(tmp_path, capsys):
    sample = list_samples()[0]
    out = tmp_path / "qlst"
    assert main(["explain", str(sample_path(sample.ecg_id, 100)), "--model", "qlst", "--statement", "AFIB",
                 "--out", str(out), "--steps", "3", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "AFIB: REFUSED" in printed and "atrial fibrillation" in printed
    result = json.loads((out / "explanation.json").read_text())
    assert result["statements"] == [] and result["files"] == []
    assert result["refused"] == [{"statement": "AFIB", "refused": True, "reason": result["warnings"][0]}]
    assert "median beat cannot show" in result["warnings"][0]
    assert [p.name for p in out.iterdir()] == ["explanation.json"]


def test_figure_draws_the_patients_own_beat_in_black(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from ecglens.explain.qlst import sweep_figure
    from ecglens.viz import paper

    rng = np.random.default_rng(0)
    sweep, own = rng.normal(size=(3, 12, 60)) * 0.1, rng.normal(size=(12, 60)) * 0.1
    drawn = {}
    monkeypatch.setattr(paper, "save_figure", lambda fig, path: drawn.setdefault("fig", fig))
    sweep_figure(sweep, own, 50.0, np.array([0.0, 0.5, 1.0]), "q", "title", 20)(tmp_path / "f.png")
    fig = drawn["fig"]
    lines = [c for ax in fig.axes for c in ax.collections if str(c.get_gid() or "").startswith("overlay:")]
    assert len(lines) == 12
    for coll in lines:
        assert len(coll.get_segments()) == 4  # three sweep beats and the patient's own, drawn last (on top)
        np.testing.assert_allclose(coll.get_colors()[-1], [0, 0, 0, 1])
        assert coll.get_linewidths()[-1] > coll.get_linewidths()[0]
    np.testing.assert_allclose(lines[0].get_segments()[-1][:, 1], own[0])
    assert any(t.get_text() == "patient's own median beat" for leg in fig.legends for t in leg.get_texts())
