"""Regenerate the golden outputs of the shipped models (run only for a deliberate re-ship).

    .venv/bin/python tests/golden/regenerate.py

Writes ``tests/golden/shipped_models.json``: every shipped classifier's
probabilities on every bundled sample record (read at its highest rate, as
``ecglens demo`` does), both the network's own and the calibrated ones that
``predict`` returns (so a re-calibration moves only the latter), and qLST's
default sweep on one record.
``tests/test_golden.py`` recomputes them and compares within ``ATOL``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).with_name("shipped_models.json")
ATOL = 1e-5  # float32 inference on CPU: thread count and summation order move outputs by ~1e-7
QLST_RECORD = 172
COMMAND = "python tests/golden/regenerate.py"


def compute() -> dict:
    """The golden document, computed with the public API from the shipped models and bundled samples."""
    import ecglens
    from ecglens.samples import list_samples, load_sample

    records = {s.ecg_id: load_sample(s.ecg_id, sampling_rate=max(s.rates)) for s in list_samples()}
    doc: dict = {"command": COMMAND, "atol": ATOL, "records": [int(e) for e in records], "models": {}}
    for name in ecglens.list_models():
        model = ecglens.load_model(name)
        if model.can_predict:
            pred = model.predict(list(records.values()))
            with model.loaded.raw():
                network = model.predict(list(records.values()))
            doc["models"][name] = {"labels": list(pred.labels),
                                   "probabilities": np.round(pred.probabilities, 7).tolist(),
                                   "network_probabilities": np.round(network.probabilities, 7).tolist()}
        else:
            doc["models"][name] = {"qlst": _qlst_answers(model, records[QLST_RECORD])}
    return doc


def _qlst_answers(model, ecg) -> dict:
    """qLST's default sweep per statement on one record: (target q, achieved score, beat change in uV)."""
    data = model.explain(ecg).data
    return {"record": QLST_RECORD,
            "sweeps": {s["statement"]: [[round(x["q"], 7), round(x["achieved"], 7), round(x["proximity_uv"], 4)]
                                        for x in s["sweep"]] for s in data["statements"]}}


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(compute(), indent=1) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)
