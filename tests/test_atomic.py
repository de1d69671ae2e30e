"""Atomic outputs: a reader finds the previous file or the complete new one, never a partial one."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from ecglens.atomic import (atomic_dir, atomic_write, save_npy_atomic, write_bytes_atomic, write_json_atomic,
                            write_text_atomic)


def _listing(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_helpers_write_complete_files_with_the_usual_mode(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "héllo\n")
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    write_json_atomic(tmp_path / "c.json", {"x": [1, 2]}, indent=2)
    save_npy_atomic(tmp_path / "d.data", np.arange(6, dtype=np.float32).reshape(2, 3))
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": [1, 2]}
    np.testing.assert_array_equal(np.load(tmp_path / "d.data"), np.arange(6, dtype=np.float32).reshape(2, 3))
    assert _listing(tmp_path) == ["a.txt", "b.bin", "c.json", "d.data"]  # no temporaries, no ".npy" appended
    umask = os.umask(0)
    os.umask(umask)
    assert {(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {0o666 & ~umask}


@pytest.mark.parametrize("existing", [True, False])
def test_exception_mid_write_leaves_the_previous_file_or_none(tmp_path, existing):
    path = tmp_path / "out.csv"
    if existing:
        path.write_text("old\n")
    with pytest.raises(RuntimeError, match="stopped"):
        with atomic_write(path, "w", newline="") as fh:
            fh.write("new,partial\n" * 1000)
            fh.flush()
            raise RuntimeError("stopped mid-write")
    assert (path.read_text() == "old\n") if existing else not path.exists()
    assert _listing(tmp_path) == (["out.csv"] if existing else [])


def test_json_that_cannot_be_encoded_touches_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "x.json", {"a": object()})
    assert _listing(tmp_path) == []


def test_only_write_modes(tmp_path):
    with pytest.raises(ValueError, match="'w' or 'wb'"):
        with atomic_write(tmp_path / "x", "a"):
            pass


def test_sigkill_mid_write_leaves_the_old_file_and_the_next_write_cleans_up(tmp_path):
    path, ready = tmp_path / "out.bin", tmp_path / "ready"
    path.write_bytes(b"old")
    script = textwrap.dedent(f"""
        import pathlib, time
        from ecglens.atomic import atomic_write
        with atomic_write({str(path)!r}, "wb") as fh:
            fh.write(b"new" * 100_000)
            fh.flush()
            pathlib.Path({str(ready)!r}).touch()
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the writer never got mid-write"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.stderr.close()
    assert path.read_bytes() == b"old"
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".out.bin.tmp-")]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size == 300_000
    write_bytes_atomic(path, b"next")  # the dead writer's temporary goes with the next write of the same file
    assert _listing(tmp_path) == ["out.bin", "ready"] and path.read_bytes() == b"next"


def test_sweep_keeps_temporaries_of_running_processes_and_other_files(tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait(timeout=30)
    live = tmp_path / f".out.bin.tmp-{os.getpid()}-0000aaaa"
    dead = tmp_path / f".out.bin.tmp-{finished.pid}-0000bbbb"
    other = tmp_path / f".other.bin.tmp-{finished.pid}-0000cccc"
    for p in (live, dead, other):
        p.write_bytes(b"x")
    write_bytes_atomic(tmp_path / "out.bin", b"data")
    assert live.exists() and other.exists() and not dead.exists()


def test_long_names_still_get_a_temporary(tmp_path):
    path = tmp_path / ("n" * 250)
    write_text_atomic(path, "fits")
    assert path.read_text() == "fits" and _listing(tmp_path) == [path.name]


def test_atomic_dir_replaces_a_directory_as_a_whole(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as d:
        (d / "a").write_text("1")
        (d / "b").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "a").write_text("2")
            raise RuntimeError("stopped")
    assert [(target / n).read_text() for n in ("a", "b")] == ["1", "1"] and _listing(tmp_path) == ["ckpt"]
    with atomic_dir(target) as d:
        (d / "a").write_text("3")
    assert _listing(target) == ["a"] and (target / "a").read_text() == "3"  # b went with the old directory
    assert _listing(tmp_path) == ["ckpt"]


def test_failed_swap_restores_the_previous_directory(tmp_path, monkeypatch):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as d:
        (d / "a").write_text("old")
    real_replace, calls = os.replace, []

    def second_rename_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("device gone")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="device gone"):
        with atomic_dir(target) as d:
            (d / "a").write_text("new")
    assert (target / "a").read_text() == "old" and _listing(tmp_path) == ["ckpt"]
