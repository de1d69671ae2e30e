"""The shipped qLST traversal network: loads with the shipped VAE and classifier, and explains a bundled record."""
import json

import numpy as np

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
    assert "AFIB" in qlst.config.statements and "NORM" in qlst.config.statements


def test_explain_afib_sweep_moves_the_classifier_score_with_q(tmp_path):
    sample = list_samples()[0]
    out = tmp_path / "qlst"
    assert main(["explain", str(sample_path(sample.ecg_id, 100)), "--model", "qlst", "--statement", "AFIB",
                 "--out", str(out), "--steps", "5"]) == 0
    result = json.loads((out / "explanation.json").read_text())
    (entry,) = result["statements"]
    assert entry["statement"] == "AFIB"
    qs = [r["q"] for r in entry["sweep"]]
    achieved = [r["achieved"] for r in entry["sweep"]]
    assert qs == sorted(qs) and qs[0] == 0.0 and qs[-1] == 1.0
    # the traversal does what it was asked: higher queried scores give higher achieved scores
    assert np.corrcoef(qs, achieved)[0, 1] > 0.9
    assert (out / entry["figure"]).stat().st_size > 1000
