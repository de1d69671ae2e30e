"""``ecglens demo`` runs end to end on the bundled records and every shipped model."""
import json

import pytest

from ecglens.cli import main
from ecglens.models.registry import checkpoint_kinds
from ecglens.pretrained import list_pretrained, pretrained_dir
from ecglens.samples import list_samples
from ecglens.training.checkpoint import load_config


@pytest.mark.slow
def test_demo_writes_a_summary_for_every_record_and_shipped_classifier(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [r["ecg_id"] for r in summary["records"]] == [s.ecg_id for s in list_samples()]
    assert all(r["prepared_shape"] == [12, 1000] for r in summary["records"])
    classifiers = [n for n in list_pretrained() if checkpoint_kinds()[load_config(pretrained_dir(n))["kind"]].predicts]
    assert sorted(summary["models"]) == sorted(classifiers)
    for entry in summary["models"].values():
        assert len(entry["top"]) == len(list_samples())
    assert (tmp_path / "ecg_172.png").stat().st_size > 10_000
    assert "bundled PTB-XL records" in capsys.readouterr().out
