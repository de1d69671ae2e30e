"""``ecglens export``: a classifier's network as an ONNX model."""
from __future__ import annotations

from . import COMMANDS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help=COMMANDS["export"],
        description="Export the network of a classifier to ONNX with a dynamic batch axis. Preprocessing, "
                    "sliding windows, median-beat extraction and calibration are not part of the graph (ecglens "
                    "runs them around the file: ecglens.models.onnx_runtime.use_onnx). qLST cannot be exported.")
    p.add_argument("model", metavar="MODEL",
                   help="a shipped model name (ecglens models), a checkpoint directory or a training run directory")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the ONNX file to write (e.g. model.onnx)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..api import load_model
    from ..models.export import export_onnx

    path = export_onnx(load_model(args.model, device="cpu"), args.output)
    print(f"wrote {path}")
    return 0
