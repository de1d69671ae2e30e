"""Each model's provenance for the report: training data, version, calibration and evaluation, from its config."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def model_provenance(model) -> dict[str, Any]:
    """What the page says about where a loaded model comes from (``None`` where its config does not say)."""
    config = model.config or {}
    training = config.get("training") or {}
    data = training.get("data") or (config.get("data") or {}).get("identity") or {}
    root = data.get("root")
    calibration = config.get("calibration") or {}
    facts = calibration.get("facts") or {}
    not_assessable = calibration.get("not_assessable") or []
    labels = calibration.get("labels") or config.get("labels") or []
    out = {
        "name": model.name,
        "kind": model.kind.name,
        "version": config.get("ecglens_version"),
        "saved": config.get("saved"),
        "label_set": config.get("label_set"),
        "statements": len(model.labels),
        "training_data": None if not root else f"PTB-XL ({Path(str(root)).name})",
        "folds": training.get("folds"),
        "validation_fold": training.get("fold_val"),
        "n_train": training.get("n_train"),
        "n_val": training.get("n_val"),
        "calibration": None if not calibration else {
            "method": calibration.get("method"), "fold": facts.get("fold"), "n_validation": facts.get("n_validation"),
            "assessable": len(labels) - len(not_assessable), "statements": len(labels)},
        "evaluation": config.get("evaluation"),
    }
    classifier = config.get("classifier")
    if model.kind.name == "qlst" and isinstance(classifier, dict):
        out["explains"] = classifier.get("path")
        out["vae"] = (config.get("vae") or {}).get("path")
    return out
