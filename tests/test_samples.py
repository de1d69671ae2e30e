"""The bundled PTB-XL samples: index, files and labels."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from ecglens.errors import ECGError
from ecglens.io import STANDARD_LEADS
from ecglens.samples import list_samples, load_sample, sample_path, samples_dir

EXPECTED = {
    3: "NORM", 504: "NORM", 351: "AFIB", 4117: "AFIB", 449: "AFLT", 267: "IMI", 418: "AMI",
    310: "ASMI", 286: "CLBBB", 172: "CRBBB", 138: "LVH", 219: "PVC",
}


def test_index_lists_the_dozen():
    infos = list_samples()
    assert [s.ecg_id for s in infos] == sorted(EXPECTED)
    for s in infos:
        assert EXPECTED[s.ecg_id] in s.labels and s.labels == tuple(sorted(s.scp_codes))
        assert s.rates == ((100, 500) if s.ecg_id <= 500 else (100,))
        assert 1 <= s.strat_fold <= 10 and s.sex in (0, 1)


@pytest.mark.parametrize("info", list_samples(), ids=lambda s: str(s.ecg_id))
def test_every_sample_loads_at_every_rate(info):
    for rate in info.rates:
        ecg = load_sample(info.ecg_id, rate)
        assert ecg.signal.shape == (12, 10 * rate) and ecg.sampling_rate == rate and ecg.leads == STANDARD_LEADS
        assert EXPECTED[info.ecg_id] in ecg.labels and ecg.labels == info.labels
        assert ecg.metadata["ecg_id"] == info.ecg_id and ecg.metadata["strat_fold"] == info.strat_fold
        assert np.isfinite(ecg.signal).all()


def test_both_rates_show_the_same_ecg():
    lo, hi = load_sample(3, 100), load_sample(3, 500)
    # the 100 Hz file is PTB-XL's downsampled 500 Hz file: averaging 5-sample blocks comes close
    approx = hi.signal.reshape(12, 1000, 5).mean(axis=2)
    assert np.corrcoef(approx.ravel(), lo.signal.ravel())[0, 1] > 0.95


def test_sample_path_errors():
    with pytest.raises(ECGError, match="no bundled sample"):
        sample_path(99999)
    with pytest.raises(ECGError, match="no 500 Hz version"):
        sample_path(4117, 500)


def test_files_are_unchanged_ptbxl_copies(ptbxl_dir):
    sums = dict(reversed(line.split(maxsplit=1)) for line in (ptbxl_dir / "SHA256SUMS.txt").read_text().splitlines())
    root = samples_dir()
    files = sorted(p for p in root.rglob("*") if p.suffix in (".hea", ".dat"))
    assert len(files) == 44
    for f in files:
        assert sums[f.relative_to(root).as_posix()] == hashlib.sha256(f.read_bytes()).hexdigest()


def test_total_size_under_3mb():
    assert sum(p.stat().st_size for p in samples_dir().rglob("*") if p.is_file()) < 3_000_000
