"""Shared fixtures: the local PTB-XL set (skipped when absent) and bundled samples."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PTBXL_DIR = Path(os.environ.get("ECGLENS_PTBXL", REPO.parent / "shared" / "data" / "ptb-xl"))


def pytest_collection_modifyitems(items):
    """A test that uses the local PTB-XL set carries the ``ptbxl`` marker, whether or not it says so."""
    for item in items:
        if "ptbxl_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ptbxl)


@pytest.fixture(scope="session")
def ptbxl_dir() -> Path:
    """The local PTB-XL copy; tests using it skip with a reason when it is absent."""
    if not (PTBXL_DIR / "ptbxl_database.csv").is_file():
        pytest.skip(f"local PTB-XL set not found at {PTBXL_DIR} (set ECGLENS_PTBXL to point at one)")
    return PTBXL_DIR


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's cache writes inside pytest's temporary directory."""
    monkeypatch.setenv("ECGLENS_CACHE", str(tmp_path_factory.getbasetemp() / "ecglens-cache"))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread for torch tests: tiny convolutions only lose to OpenMP hand-offs on 2 cores."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def run_clean():
    """Run a command in a fresh process, without the torchrun variables of any outer launcher and with one OpenMP
    thread, and fail the test with its output tail if it fails."""
    import subprocess

    def run(cmd, cwd, timeout: float = 180):
        env = {k: v for k, v in os.environ.items()
               if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
        env["OMP_NUM_THREADS"] = "1"
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc

    return run
