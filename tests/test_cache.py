"""The memory-mapped signal cache: build once, reopen, key changes, resume, batching, damage detection."""
from __future__ import annotations

import json
import os
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


def test_changed_record_file_makes_the_cache_stale(tmp_path):
    files = tmp_path / "records"
    files.mkdir()
    for rid in IDS:
        np.save(files / f"{rid}.npy", synthetic(rid))
    sources = lambda rid: [files / f"{rid}.npy"]  # noqa: E731
    load = Counting(lambda rid: np.load(files / f"{rid}.npy"))
    cache = SignalCache(tmp_path / "c")
    first, _, _ = cache.get_or_build(PARTS, IDS, load, progress=False, sources=sources)
    assert len(load.calls) == 20
    cache.get_or_build(PARTS, IDS, load, progress=False, sources=sources)
    assert len(load.calls) == 20  # unchanged files: reopened

    np.save(files / "107.npy", synthetic(107) * 2)  # same size, new content and mtime
    st = os.stat(files / "107.npy")
    os.utime(files / "107.npy", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    second, _, _ = cache.get_or_build(PARTS, IDS, load, progress=False, sources=sources)
    assert len(load.calls) == 40  # rebuilt under a new key, the stale rows never served
    assert second.filename != first.filename
    np.testing.assert_array_equal(second[7], synthetic(107) * 2)
    keyed = cache.path_for(PARTS, IDS, sources)
    assert keyed == cache.path_for(PARTS, IDS[::-1], sources) != cache.path_for(PARTS, IDS)


def test_each_chunk_has_a_checksum(tmp_path):
    cache = SignalCache(tmp_path, chunk_size=6)
    cache.get_or_build(PARTS, IDS, synthetic, progress=False)
    index = json.loads((cache.path_for(PARTS, IDS) / "index.json").read_text())
    assert [c[:2] for c in index["chunks"]] == [[0, 6], [6, 12], [12, 18], [18, 20]]
    assert len({c[2] for c in index["chunks"]}) == 4


def _with_skipped(rid):
    if rid == 103:
        raise ECGError("rec103.dat", "unreadable")
    return synthetic(rid)


def _signal_offset(directory) -> int:
    return np.load(directory / "signals.npy", mmap_mode="r").offset


def _poke(directory, row, data: bytes):
    """Overwrite the start of one row of signals.npy in place, as damage on disk would."""
    with open(directory / "signals.npy", "r+b") as fh:
        fh.seek(_signal_offset(directory) + row * 12 * 50 * 4)
        fh.write(data)


def _zero_header(directory):
    with open(directory / "signals.npy", "r+b") as fh:
        fh.write(bytes(_signal_offset(directory)))


def _swap_rows(directory, a, b):
    signals = np.load(directory / "signals.npy", mmap_mode="r+")
    signals[[a, b]] = signals[[b, a]]
    signals.flush()


def _edit_index(change):
    def damage(directory):
        index = json.loads((directory / "index.json").read_text())
        (directory / "index.json").write_text(json.dumps(change(index)))
    return damage


def _shift_ids(index):
    """Move the skipped id into the rows and skip the last one instead: same id set, rows shifted."""
    return {**index, "ids": list(range(100, 119)), "skipped": [[119, "x"]]}


DAMAGE = {
    "zeroed row": (lambda d: _poke(d, 4, bytes(12 * 50 * 4)), "signals.npy", "rows 0-4 .* do not match their checksum"),
    "overwritten bytes": (lambda d: _poke(d, 13, b"\x7f" * 16), "signals.npy", "rows 11-16 .* checksum"),
    "swapped rows": (lambda d: _swap_rows(d, 1, 2), "signals.npy", "checksum"),
    "rows shifted against ids": (_edit_index(_shift_ids), "signals.npy", "shifted"),
    "ids rotated": (_edit_index(lambda i: {**i, "ids": i["ids"][1:] + i["ids"][:1]}), "index.json", "not sorted"),
    "an id dropped": (_edit_index(lambda i: {**i, "ids": i["ids"][1:], "shape": [18, 12, 50]}), "index.json",
                      "not exactly"),
    "foreign id": (_edit_index(lambda i: {**i, "ids": i["ids"][:-1] + [500]}), "index.json", "not exactly"),
    "rows and shape disagree": (_edit_index(lambda i: {**i, "shape": [18, 12, 50]}), "index.json", "disagrees"),
    "shape unlike the file": (_edit_index(lambda i: {**i, "shape": [19, 12, 49]}), "signals.npy", "index expects"),
    "chunk missing": (_edit_index(lambda i: {**i, "chunks": i["chunks"][1:]}), "index.json", "do not cover"),
    "index not json": (lambda d: (d / "index.json").write_text("{broken"), "index.json", "malformed"),
    "index a list": (lambda d: (d / "index.json").write_text("[1, 2]"), "index.json", "malformed"),
    "index lacks chunks": (_edit_index(lambda i: {k: v for k, v in i.items() if k != "chunks"}), "index.json",
                           "KeyError"),
    "old format": (_edit_index(lambda i: {**i, "format": 1}), "index.json", "format 1"),
    "signals deleted": (lambda d: (d / "signals.npy").unlink(), "signals.npy", "unreadable"),
    "signals truncated": (lambda d: os.truncate(d / "signals.npy", 5000), "signals.npy", "unreadable"),
    "signals header zeroed": (_zero_header, "signals.npy", "unreadable"),
    "signals wrong dtype": (lambda d: np.save(d / "signals.npy", np.zeros((20, 12, 50))), "signals.npy", "float64"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damage_is_reported_never_served(tmp_path, name):
    damage, culprit, problem = DAMAGE[name]
    cache = SignalCache(tmp_path, chunk_size=6)
    cache.get_or_build(PARTS, IDS, _with_skipped, progress=False)
    directory = cache.path_for(PARTS, IDS)
    damage(directory)
    load = Counting()
    with pytest.raises(ECGError, match=problem) as err:
        cache.get_or_build(PARTS, IDS, load, progress=False)
    assert err.value.path == str(directory / culprit)
    assert f"delete {directory} to rebuild" in str(err.value)
    assert load.calls == []  # reported, not silently rebuilt over


def test_resumed_build_over_a_damaged_partial_file_is_caught(tmp_path):
    cache = SignalCache(tmp_path, chunk_size=5)
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build(PARTS, IDS, Counting(fail_at=13, exc=KeyboardInterrupt), progress=False)
    _poke(cache.path_for(PARTS, IDS), 2, bytes(64))  # a row written before the interruption
    with pytest.raises(ECGError, match="rows 0-4 .* checksum"):
        cache.get_or_build(PARTS, IDS, Counting(), progress=False)


def test_unusable_progress_file_restarts_the_build(tmp_path):
    cache = SignalCache(tmp_path, chunk_size=5)
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build(PARTS, IDS, Counting(fail_at=13, exc=KeyboardInterrupt), progress=False)
    (cache.path_for(PARTS, IDS) / "progress.json").write_text(json.dumps({"n": 20}))
    load = Counting()
    signals, ids, _ = cache.get_or_build(PARTS, IDS, load, progress=False)
    assert load.calls == IDS and ids == IDS
    np.testing.assert_array_equal(signals[19], synthetic(119))


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
