"""The description check: a factor whose traversal moves its described property agrees, the opposite does not."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ecglens.models.factorecg.data import BeatSettings
from ecglens.models.factorecg.factor_check import check_descriptions
from ecglens.models.factorecg.factors import FactorStandardizer


class _Decoder(nn.Module):
    """Latent dim 0 raises sample 60 of lead 0; dim 1 changes nothing."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def decode(self, z):
        out = torch.zeros(len(z), 12, 120)
        out[:, 0, 60] = z[:, 0]
        return out


def _measure(beats, rr, rate, r_index):
    return np.stack([beats[:, 0, 60], np.full(len(beats), 1.0)], axis=1), ["T amplitude I", "ST level I"]


def test_check_descriptions_agree_disagree_and_rate():
    std = FactorStandardizer(latent_dim=2, indices=[0, 1], mean=[0.0, 0.0], std=[1.0, 1.0])
    assoc = {"0": [{"property": "T amplitude I", "rho": 0.6}, {"property": "heart rate", "rho": 0.5}],
             "1": [{"property": "heart rate", "rho": -0.4}, {"property": "ST level I", "rho": 0.3}]}
    spread = {"T amplitude I": 1.0, "ST level I": 0.1}
    out = check_descriptions(_Decoder(), std, assoc, BeatSettings(), spread, _measure, ["T amplitude I", "ST level I"])
    assert out["0"]["passes"] and out["0"]["checked"][0]["verdict"] == "agrees"
    assert out["0"]["checked"][1]["verdict"] == "not in one beat"
    assert out["1"]["checked"][1]["verdict"] == "not measurable" and not out["1"]["judged"]
    flipped = check_descriptions(_Decoder(), std, {"0": [{"property": "T amplitude I", "rho": -0.6}]},
                                 BeatSettings(), spread, _measure, ["T amplitude I", "ST level I"])
    assert not flipped["0"]["passes"] and flipped["0"]["checked"][0]["verdict"] == "disagrees"
