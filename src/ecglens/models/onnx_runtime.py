"""Run a ``Classifier``'s network through onnxruntime instead of torch.

``OnnxNetwork`` wraps an ``onnxruntime.InferenceSession`` as a module with the
contract the ``Classifier`` uses, (n, 12, t) tensor -> (n, k) logits tensor, so
windowing, preprocessing, beat extraction and calibration are unchanged.
``use_onnx(clf)`` swaps it in (exporting the network in memory unless an
exported file is given); FactorECG keeps its torch decoder for explanations and
encodes through the session (see ``ecglens.models.export``).
"""
from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from ..errors import ECGError
from .classifier import Classifier
from .export import INPUT, export_bytes, network


def _session(model: bytes | str | os.PathLike, threads: int | None):
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ECGError(None, "the ONNX runtime needs onnxruntime: pip install 'ecglens[onnx]'") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else os.fspath(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
        raise ECGError(None if isinstance(model, bytes) else source, f"not a usable ONNX model: {exc}") from exc


class OnnxNetwork(nn.Module):
    """An ONNX model as a torch-callable network: ``forward`` returns its first output on the input's device."""

    def __init__(self, model: bytes | str | os.PathLike, threads: int | None = None):
        super().__init__()
        self.session = _session(model, threads)
        shape = self.session.get_inputs()[0].shape
        self.input_shape = tuple(shape[1:])

    def run(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every output of the model for a (n, c, t) float32 tensor."""
        feed = {INPUT: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)}
        return [torch.from_numpy(out).to(x.device) for out in self.session.run(None, feed)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)[0]


class OnnxEncoder(nn.Module):
    """A FactorVAE whose ``encode`` runs through ONNX; ``decode`` and ``config`` stay the torch VAE's."""

    def __init__(self, onnx: OnnxNetwork, vae: nn.Module):
        super().__init__()
        self.onnx, self.vae, self.config = onnx, vae, vae.config

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.onnx.run(x)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z)


def use_onnx(clf: Classifier, model: bytes | str | os.PathLike | None = None, threads: int | None = None,
             source=None) -> Classifier:
    """Make ``clf`` run its network through onnxruntime; returns ``clf``.

    ``model`` is an exported file (``ecglens export``) or its bytes; by default the network is exported in
    memory. A model whose input does not match the classifier's is an ECGError naming ``source``.
    """
    if model is None:
        model = export_bytes(clf, source)
    onnx = OnnxNetwork(model, threads)
    _, length, outputs = network(clf)
    if onnx.input_shape != (12, length) or len(onnx.session.get_outputs()) != len(outputs):
        raise ECGError(source, f"the ONNX model takes {onnx.input_shape} with "
                               f"{len(onnx.session.get_outputs())} output(s); this classifier needs (12, {length}) "
                               f"with {len(outputs)}")
    from .factorecg.classifier import FactorECGClassifier

    if isinstance(clf, FactorECGClassifier):
        clf.model = clf.vae = OnnxEncoder(onnx, clf.vae)
    else:
        clf.model = onnx
    return clf


__all__ = ["OnnxEncoder", "OnnxNetwork", "use_onnx"]
