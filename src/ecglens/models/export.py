"""ONNX export of a classifier's network part.

Only the torch network is exported, with a dynamic batch axis; preprocessing,
sliding windows, median-beat extraction and calibration stay in numpy, so an
exported network runs through ``ecglens.models.onnx_runtime`` inside the same
``Classifier``. What the graph computes per family:

- window classifiers (baseline, ProtoECGNet): (n, 12, window) -> logits (n, k);
- the median-beat black box: (n, 12, beat_samples) -> logits (n, k);
- FactorECG: (n, 12, beat_samples) -> the VAE posterior ``mu`` and ``logvar``
  (n, latent_dim); the factor standardiser and per-statement logistic models
  stay in numpy.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import torch
from torch import nn

from ..atomic import write_bytes_atomic
from ..errors import ECGError
from .classifier import Classifier

OPSET = 17
INPUT = "signal"


class PosteriorEncoder(nn.Module):
    """A FactorVAE's encoder as a plain network: (n, 12, T) mV -> (mu, logvar)."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vae.encode(x)


def network(clf: Classifier) -> tuple[nn.Module, int, list[str]]:
    """The module to export, its input length in samples and its output names."""
    from .factorecg.classifier import BeatModelClassifier, FactorECGClassifier

    if isinstance(clf, FactorECGClassifier):
        return PosteriorEncoder(clf.vae), clf.settings.beat_samples, ["mu", "logvar"]
    if isinstance(clf, BeatModelClassifier):
        return clf.model, clf.settings.beat_samples, ["logits"]
    return clf.model, clf.window, ["logits"]


def export_bytes(clf: Classifier, source=None) -> bytes:
    """The serialised ONNX model of ``clf``'s network (CPU, float32, dynamic batch axis).

    Anything but a ``Classifier`` (a qLST model) is an ECGError naming ``source``.
    """
    if not isinstance(clf, Classifier):
        raise ECGError(source, f"only classifiers can be exported to ONNX; a {type(clf).__name__} model cannot "
                               "(qLST answers queries, it predicts no probabilities)")
    module, length, outputs = network(clf)
    module = module.cpu().eval()
    example = torch.zeros(2, 12, length)
    buffer = io.BytesIO()
    try:
        with torch.no_grad():
            torch.onnx.export(module, (example,), buffer, input_names=[INPUT], output_names=outputs,
                              dynamic_axes={name: {0: "batch"} for name in [INPUT, *outputs]},
                              opset_version=OPSET, dynamo=False)
    finally:
        module.to(clf.device)
    return _with_metadata(buffer.getvalue(), clf)


def _with_metadata(data: bytes, clf: Classifier) -> bytes:
    """Stamp the checkpoint kind and the labels into the model's metadata."""
    import onnx

    model = onnx.load_from_string(data)
    for key, value in (("ecglens_kind", str(clf.config.get("kind"))), ("ecglens_labels", json.dumps(clf.labels))):
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def export_onnx(model, path: str | os.PathLike) -> Path:
    """Write the network of ``model`` (an ``ecglens.Model`` or a ``Classifier``) to ``path`` atomically."""
    return write_bytes_atomic(path, export_bytes(getattr(model, "loaded", model), getattr(model, "name", None)))


__all__ = ["PosteriorEncoder", "export_bytes", "export_onnx", "network"]
