"""The options of ``ecglens train protoecgnet`` (torch-free), and the recipe names they choose from."""
from __future__ import annotations

import argparse
from typing import Any

from ...errors import ConfigError
from ...statements import GROUP_COLUMNS
from ..options import add_training_options
from .branches import BRANCHES
from .config import FUSIONS

NORMALIZE = ("standardize", "scale")
LOSS_FORMS = ("ours", "paper")
EPOCH_STAGES = ("warmup", "joint", "refine", "last_layer", "fusion")  # the stages that train for a number of epochs
TRUNK_EPOCH_STAGES = ("finetune", "refine")  # the same with --trunk


def parse_counts(text: str, option: str, example: str, names: tuple[str, ...] | None = None,
                 kind: type = int) -> dict[str, Any]:
    """``"a=2, b=10"`` -> {"a": 2, "b": 10} (``names``: the names allowed; ``kind``: int, or float for e.g. seconds);
    ConfigError naming ``option`` on a bad item."""
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, value = (part.strip() for part in item.partition("="))
        digits = value.replace(".", "", 1) if kind is float else value  # non-negative numbers only
        number = kind(value) if digits.isdigit() else None
        if not name or (names is not None and name not in names) or number is None:
            raise ConfigError(None, f"{option}: bad item {item!r}; use e.g. {example}")
        out[name] = number
    return out


def parse_stage_epochs(text: str, trunk: bool = False) -> dict[str, int]:
    """``"warmup=2,joint=10"`` -> {"warmup_epochs": 2, "joint_epochs": 10}; with ``trunk`` the trunk stages'
    (``"finetune=30,refine=10"``); ConfigError on a bad item."""
    names, example = (TRUNK_EPOCH_STAGES, "finetune=30,refine=10") if trunk else \
        (EPOCH_STAGES, "warmup=2,joint=10,refine=4,last_layer=20,fusion=20")
    return {f"{k}_epochs": v for k, v in parse_counts(text, "--epochs-per-stage", example, names).items()}


def parse_trunk_stages(text: str) -> dict[str, int]:
    """``"morphology=3"`` -> {"morphology": 3}: the trunk stage a branch reads; ConfigError on a bad item."""
    return parse_counts(text, "--trunk-stages", "morphology=3")


def parse_prototype_counts(text: str) -> dict[str, int]:
    """``"morphology=9"`` -> {"morphology": 9}: prototypes per class of a branch; ConfigError on a bad item."""
    return parse_counts(text, "--prototypes-per-class", "rhythm=5,morphology=18,global=7", BRANCHES)


def parse_prototype_seconds(text: str) -> dict[str, float]:
    """``"morphology=0.5"`` -> {"morphology": 0.5}: how long a branch's partial prototypes are; ConfigError on a bad
    item."""
    return parse_counts(text, "--prototype-seconds", "morphology=0.5", BRANCHES, float)


def parse_head_l1(text: str) -> tuple[float, ...]:
    """``"0.0005,0.001"`` -> (0.0005, 0.001): the related head's L1 weights to try; ConfigError on a bad item."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 0:
        raise ConfigError(None, f"--head-l1 takes L1 weights >= 0 separated by commas, e.g. 0.0005,0.001; got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ecglens train protoecgnet``."""
    add_training_options(parser, out="run directory: one sub-directory per stage; the final model goes to "
                                     "RUN_DIR/model", resume="skip finished stages and continue an interrupted one",
                         val_fold=True, max_records="use only the first N training/validation records (tests)")
    parser.add_argument("--epochs-per-stage", default="", metavar="SPEC",
                        help="e.g. warmup=2,joint=20,refine=20,last_layer=30,fusion=30 (defaults as shown); with --trunk "
                             "finetune=30,refine=10")
    parser.add_argument("--head", default="dense", choices=FUSIONS,
                        help="fusion head of RUN_DIR/model (default dense; related: case-based, a statement reads "
                             "its own and its co-occurring statements' prototypes); each other one goes to "
                             "RUN_DIR/model-<other>")
    parser.add_argument("--related-groups", default=None, choices=GROUP_COLUMNS,
                        help="the related head also relates every two statements of one PTB-XL diagnostic class "
                             "(subclass), e.g. posterior MI to the other MIs, besides the co-occurring ones")
    parser.add_argument("--normalize", default="scale", choices=NORMALIZE,
                        help="amplitude normalisation: training-set per-lead scale (default) or per-record standardize")
    parser.add_argument("--losses", default="ours", choices=LOSS_FORMS,
                        help="prototype loss forms: ours (co-occurrence as an exemption from pushing, diversity "
                             "within a class) or paper (Jaccard-weighted pull/push, diversity over every pair, branch "
                             "last layers frozen until their own stage)")
    parser.add_argument("--prototypes-per-class", default="", metavar="SPEC",
                        help="prototypes per statement of a branch, e.g. morphology=9 (default rhythm=3,morphology=3,"
                             "global=5; the paper's rhythm=5,morphology=18,global=7)")
    parser.add_argument("--prototype-seconds", default="", metavar="SPEC",
                        help="how long a branch's partial (sliding) prototypes are, e.g. morphology=0.5 (default 1 s; "
                             "the window a match shows)")
    parser.add_argument("--trunk", default=None, metavar="BASELINE",
                        help="train on this trained baseline's body and preprocessing (checkpoint, run directory or "
                             "shipped name; same labels and training folds), with it as the distillation teacher: "
                             "fine-tune, projection, refine, reprojection, related head (how the shipped model was "
                             "made; its head is related)")
    parser.add_argument("--trunk-stages", default=None, metavar="SPEC",
                        help="with --trunk: the body's residual stage a branch reads (default morphology=3; other "
                             "branches the last)")
    parser.add_argument("--distill", type=float, default=None,
                        help="with --trunk: weight of the cross-entropy against the baseline's probabilities "
                             "(default 3)")
    parser.add_argument("--push-every", type=int, default=None, metavar="N",
                        help="with --trunk: also project the prototypes every N fine-tune epochs (default 0: only "
                             "after it)")
    parser.add_argument("--loop-l1", type=float, default=None,
                        help="with --trunk: L1 on the related head's weights from other statements' prototypes while "
                             "the network trains, so each statement's evidence settles on its own prototypes "
                             "(default 0.001)")
    parser.add_argument("--head-l1", default=None, metavar="LIST",
                        help="with --trunk: the L1 weights the final related head is re-fitted at; the best on the "
                             "validation fold whose explanations stay case-based is kept (default "
                             "0.0005,0.0007,0.001,0.0015,0.002)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per process (default 1: faster than 2 for these small convolutions)")
