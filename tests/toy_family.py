"""A toy model family for the registry tests: the whole family is this one module plus one registry line.

It declares a checkpoint kind whose loader rebuilds a linear classifier on the
per-lead standard deviation, and a train command (options here, torch-free;
``run`` fits nothing, it saves an untrained model, which is all the test needs).
"""
from __future__ import annotations

import argparse

from ecglens.models.registry import CheckpointKind, ModelFamily, TrainCommand

LABELS = ["NORM", "AFIB"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="checkpoint directory to write")


def build(path):
    """Write a toy checkpoint (weights + config) to ``path``."""
    import torch

    from ecglens.preprocess import Pipeline, Resample
    from ecglens.training import save_checkpoint

    torch.manual_seed(0)
    net = _Net()
    return save_checkpoint(path, net, {"kind": "toy", "labels": LABELS, "label_set": "toy",
                                       "pipeline": Pipeline((Resample(100.0),)).to_dict()})


def run(args) -> int:
    build(args.out)
    return 0


def _Net():
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(12, len(LABELS))

        def forward(self, x):
            return self.linear(x.std(dim=-1))

    return Net()


def load(state, config, path=None, device=None):
    from ecglens.models.classifier import Classifier
    from ecglens.models.loading import config_value, fit_weights
    from ecglens.preprocess import Pipeline

    net = fit_weights(_Net(), state, path)
    return Classifier(net, config_value(config, "labels", path, list),
                      config_value(config, "pipeline", path, Pipeline.from_dict), 100.0, 10.0,
                      config=config, device=device, source=path)


FAMILY = ModelFamily(
    name="toy",
    description="a linear model on per-lead standard deviations (registry test)",
    kinds=(CheckpointKind("toy", load="toy_family:load"),),
    train=(TrainCommand("toy", "write an untrained toy model", add_arguments="toy_family:add_arguments",
                        run="toy_family:run", function="toy_family:build", calibrate=False),),
    stages=("none",),
)
