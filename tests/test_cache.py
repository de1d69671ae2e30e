"""The memory-mapped signal cache: build once, reopen, key changes, resume, batching."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ecglens.datasets import PTBXL, SignalCache, cache_key, default_cache_dir, iter_batches
from ecglens.datasets import ptbxl as ptbxl_module
from ecglens.errors import ECGError
from ecglens.preprocess import Bandpass, FixLength, Pipeline

IDS = list(range(100, 120))  # 20 records
PARTS = {"pipeline": "test", "source_rate": 100}


def synthetic(rid, length=50):
    """A deterministic (12, length) record whose values encode its id."""
    return (np.arange(12 * length, dtype=np.float32).reshape(12, length) / 1000 + rid)


class Counting:
    def __init__(self, fn=synthetic, fail_at=None, exc=RuntimeError):
        self.calls, self.fn, self.fail_at, self.exc = [], fn, fail_at, exc

    def __call__(self, rid):
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            self.fail_at = None
            raise self.exc(f"stop at {rid}")
        self.calls.append(rid)
        return self.fn(rid)


def test_build_then_reopen_without_loading(tmp_path):
    cache = SignalCache(tmp_path, chunk_size=6)
    load = Counting()
    signals, ids, skipped = cache.get_or_build(PARTS, IDS[::-1], load, progress=False)
    assert load.calls == IDS  # built in sorted-id order
    assert ids == IDS and skipped == []
    assert isinstance(signals, np.memmap) and signals.shape == (20, 12, 50) and signals.dtype == np.float32
    assert not signals.flags.writeable
    with pytest.raises(ValueError):
        signals[0, 0, 0] = 1.0
    np.testing.assert_array_equal(signals[7], synthetic(IDS[7]))

    again = Counting()
    signals2, ids2, _ = SignalCache(tmp_path).get_or_build(PARTS, IDS, again, progress=False)
    assert again.calls == []
    np.testing.assert_array_equal(np.asarray(signals2), np.asarray(signals))
    directory = cache.path_for(PARTS, IDS)
    index = json.loads((directory / "index.json").read_text())
    assert index["complete"] and index["ids"] == IDS and index["shape"] == [20, 12, 50]
    assert not (directory / "progress.json").exists()


def test_key_depends_on_parts_and_id_set_not_order():
    assert cache_key(PARTS, [3, 1, 2]) == cache_key(PARTS, [1, 2, 3])
    assert cache_key(PARTS, [1, 2, 3]) != cache_key(PARTS, [1, 2, 4])
    assert cache_key(PARTS, [1, 2, 3]) != cache_key({**PARTS, "source_rate": 500}, [1, 2, 3])


def test_empty_or_duplicate_ids_are_refused(tmp_path):
    with pytest.raises(ECGError, match="empty"):
        SignalCache(tmp_path).get_or_build(PARTS, [], synthetic, progress=False)
    with pytest.raises(ECGError, match=r"duplicate record ids: \[101\]"):
        SignalCache(tmp_path).get_or_build(PARTS, [100, 101, 101], synthetic, progress=False)


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ECGLENS_CACHE", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    assert SignalCache().root == tmp_path / "x"


def test_interrupted_build_resumes_where_it_stopped(tmp_path):
    cache = SignalCache(tmp_path, chunk_size=5)
    first = Counting(fail_at=13, exc=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build(PARTS, IDS, first, progress=False)
    assert first.calls == IDS[:13]
    directory = cache.path_for(PARTS, IDS)
    assert not (directory / "index.json").exists()  # never mistaken for complete

    second = Counting()
    signals, ids, _ = cache.get_or_build(PARTS, IDS, second, progress=False)
    assert second.calls == IDS[13:]
    assert ids == IDS
    for i, rid in enumerate(IDS):
        np.testing.assert_array_equal(signals[i], synthetic(rid))


def test_killed_build_resumes_from_last_flushed_chunk(tmp_path):
    # os._exit skips every handler, like SIGKILL: only whole flushed chunks survive.
    script = textwrap.dedent(f"""
        import os, numpy as np
        from ecglens.datasets.cache import SignalCache
        n = 0
        def load(rid):
            global n
            n += 1
            if n == 13:
                os._exit(9)
            return (np.arange(600, dtype=np.float32).reshape(12, 50) / 1000 + rid)
        SignalCache({str(tmp_path)!r}, chunk_size=5).get_or_build({PARTS!r}, {IDS!r}, load, progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    cache = SignalCache(tmp_path, chunk_size=5)
    progress = json.loads((cache.path_for(PARTS, IDS) / "progress.json").read_text())
    assert progress["done"] == 10
    load = Counting()
    signals, ids, _ = cache.get_or_build(PARTS, IDS, load, progress=False)
    assert load.calls == IDS[10:]
    for i, rid in enumerate(IDS):
        np.testing.assert_array_equal(signals[i], synthetic(rid))


def test_unreadable_records_are_skipped_and_listed(tmp_path):
    def load(rid):
        if rid in (103, 111):
            raise ECGError(f"rec{rid}.dat", "truncated signal file")
        return synthetic(rid)

    signals, ids, skipped = SignalCache(tmp_path).get_or_build(PARTS, IDS, load, progress=False)
    assert [rid for rid, _ in skipped] == [103, 111]
    assert skipped[0][1] == "rec103.dat: truncated signal file"
    assert ids == [i for i in IDS if i not in (103, 111)]
    assert signals.shape == (18, 12, 50)
    for i, rid in enumerate(ids):
        np.testing.assert_array_equal(signals[i], synthetic(rid))
    # reopening keeps the report
    _, _, skipped2 = SignalCache(tmp_path).get_or_build(PARTS, IDS, Counting(), progress=False)
    assert skipped2 == skipped


def test_unequal_lengths_raise_naming_the_record(tmp_path):
    load = lambda rid: synthetic(rid, 60 if rid == 105 else 50)  # noqa: E731
    with pytest.raises(ECGError, match=r"rec-105\.hea: .*FixLength"):
        SignalCache(tmp_path).get_or_build(PARTS, IDS, load, progress=False, describe=lambda r: f"rec-{r}.hea")


def test_iter_batches_sequential_and_shuffled(tmp_path):
    signals, _, _ = SignalCache(tmp_path).get_or_build(PARTS, IDS, synthetic, progress=False)
    seq = list(iter_batches(signals, 8))
    assert [len(b) for b in seq] == [8, 8, 4]
    assert all(type(b) is np.ndarray and b.dtype == np.float32 and b.flags.c_contiguous and b.flags.writeable for b in seq)
    np.testing.assert_array_equal(np.concatenate(seq), np.asarray(signals))

    perm = np.random.default_rng(0).permutation(len(IDS))
    batches = list(iter_batches(signals, 6, perm))
    assert [len(b) for b in batches] == [6, 6, 6, 2]
    for k, b in enumerate(batches):
        np.testing.assert_array_equal(b, np.asarray(signals)[perm[6 * k:6 * k + 6]])
    with pytest.raises(ECGError, match="out of range"):
        next(iter_batches(signals, 4, [0, 20]))


# ---------------------------------------------------------------- through PTBXL.load on real records
@pytest.fixture
def small_ptbxl(tmp_path, ptbxl_dir):
    from test_ptbxl import copy_subset

    return PTBXL(copy_subset(ptbxl_dir, tmp_path / "ptbxl", list(range(1, 21))))


def test_ptbxl_load_uses_cache_and_pipeline_changes_key(small_ptbxl, tmp_path, monkeypatch):
    calls = []
    real_read = ptbxl_module.read_ecg

    def counting_read(path, **kw):
        calls.append(path)
        return real_read(path, **kw)

    monkeypatch.setattr(ptbxl_module, "read_ecg", counting_read)
    folds = range(1, 11)
    p1 = Pipeline((Bandpass(0.5, 40.0), FixLength(10)))
    a = small_ptbxl.load("all", folds=folds, pipeline=p1, cache_dir=tmp_path / "c", progress=False)
    assert len(calls) == 20 and a.signals.shape == (20, 12, 1000)
    b = small_ptbxl.load("all", folds=folds, pipeline=p1, cache_dir=tmp_path / "c", progress=False)
    assert len(calls) == 20  # reopened, nothing decoded
    np.testing.assert_array_equal(np.asarray(a.signals), np.asarray(b.signals))

    p2 = Pipeline((Bandpass(0.5, 30.0), FixLength(10)))
    c = small_ptbxl.load("all", folds=folds, pipeline=p2, cache_dir=tmp_path / "c", progress=False)
    assert len(calls) == 40  # new key: rebuilt, never the stale signals
    assert c.signals.filename != a.signals.filename
    assert not np.allclose(np.asarray(c.signals), np.asarray(a.signals))
    x, _ = p2.apply_signal(real_read(small_ptbxl.header_path(c.ecg_ids[3]), sampling_rate=100).signal, 100)
    np.testing.assert_allclose(c.signals[3], x)
    assert c.pipeline == p2 and c.label_names == small_ptbxl.label_names("all")
