"""Download and verify against a local HTTP server on 127.0.0.1 (never the network)."""
from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from ecglens.cli import data as data_cli
from ecglens.datasets import download_file, download_ptbxl, parse_sha256sums, verify_dir
from ecglens.errors import ECGError

FILES = {
    "scp_statements.csv": None,
    "records100/00000/00001_lr.hea": None,
    "records100/00000/00001_lr.dat": None,
    "records500/00000/00001_hr.hea": None,
}


def _synthetic_tree(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for k, rel in enumerate(FILES):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(bytes(range(256)) * (40 + 13 * k))


def _write_sums(root: Path) -> None:
    lines = [f"{hashlib.sha256((root / rel).read_bytes()).hexdigest()}  {rel}" for rel in FILES]
    (root / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n")


class _Handler(BaseHTTPRequestHandler):
    """Serves files under ``server.root`` with Range support and scripted faults."""

    def do_GET(self):
        srv = self.server
        rel = unquote(self.path.lstrip("/"))
        srv.requests.append((rel, self.headers.get("Range")))
        path = srv.root / rel
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if m and rel not in srv.ignore_range:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if rel in srv.truncate_once:  # promise everything, send half, hang up
            srv.truncate_once.discard(rel)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    _synthetic_tree(root)
    _write_sums(root)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.root, httpd.requests, httpd.truncate_once, httpd.ignore_range = root, [], set(), set()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _fetch(server, dest, **kw):
    return download_ptbxl(dest, base_url=server.url, progress=False, timeout=5, **kw)


def test_download_verifies_and_rerun_skips(server, tmp_path):
    dest = tmp_path / "dest"
    report = _fetch(server, dest)
    assert report["downloaded"] == len(FILES) and report["skipped_existing"] == 0 and report["failed"] == []
    for rel in FILES:
        assert (dest / rel).read_bytes() == (server.root / rel).read_bytes()
    assert not list(dest.rglob("*.part"))
    assert verify_dir(dest)["passed"]

    server.requests.clear()
    again = _fetch(server, dest)
    assert again["downloaded"] == 0 and again["skipped_existing"] == len(FILES)
    assert [rel for rel, _ in server.requests] == ["SHA256SUMS.txt"]


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    rel = "records100/00000/00001_lr.dat"
    size = (server.root / rel).stat().st_size
    server.truncate_once.add(rel)
    report = _fetch(server, tmp_path / "dest")
    assert report["failed"] == [] and report["downloaded"] == len(FILES)
    assert [r for p, r in server.requests if p == rel] == [None, f"bytes={size // 2}-"]
    assert (tmp_path / "dest" / rel).read_bytes() == (server.root / rel).read_bytes()


def test_server_ignoring_range_restarts_the_file(server, tmp_path):
    rel = "records100/00000/00001_lr.dat"
    server.truncate_once.add(rel)
    server.ignore_range.add(rel)
    report = _fetch(server, tmp_path / "dest")
    assert report["failed"] == []
    assert len([p for p, _ in server.requests if p == rel]) == 2
    assert (tmp_path / "dest" / rel).read_bytes() == (server.root / rel).read_bytes()


def test_partial_file_left_by_a_killed_run_is_continued(server, tmp_path):
    rel = "records100/00000/00001_lr.hea"
    data = (server.root / rel).read_bytes()
    target = tmp_path / "dest" / rel
    target.parent.mkdir(parents=True)
    target.with_name(target.name + ".part").write_bytes(data[:100])
    digest = hashlib.sha256(data).hexdigest()
    download_file(server.url + rel, target, digest, timeout=5)
    assert target.read_bytes() == data
    assert server.requests == [(rel, "bytes=100-")]


def test_corrupted_file_on_server_is_detected(server, tmp_path):
    rel = "records100/00000/00001_lr.dat"
    body = bytearray((server.root / rel).read_bytes())
    body[10] ^= 0xFF
    (server.root / rel).write_bytes(bytes(body))  # SHA256SUMS still has the original hash
    report = _fetch(server, tmp_path / "dest")
    assert report["downloaded"] == len(FILES) - 1
    assert [f["path"] for f in report["failed"]] == [rel]
    assert "sha256 mismatch" in report["failed"][0]["reason"] and "00001_lr.dat" in report["failed"][0]["reason"]
    assert len([p for p, _ in server.requests if p == rel]) == 2  # deleted and fetched once more
    assert not (tmp_path / "dest" / rel).exists() and not list((tmp_path / "dest").rglob("*.part"))

    sums = parse_sha256sums((server.root / "SHA256SUMS.txt").read_text())
    with pytest.raises(ECGError, match="00001_lr.dat: sha256 mismatch"):
        download_file(server.url + rel, tmp_path / "x" / "00001_lr.dat", sums[rel], timeout=5)


def test_missing_file_on_server_is_reported(server, tmp_path):
    (server.root / "scp_statements.csv").unlink()
    report = _fetch(server, tmp_path / "dest")
    assert [f["path"] for f in report["failed"]] == ["scp_statements.csv"]
    assert "HTTP 404" in report["failed"][0]["reason"]


def test_verify_detects_modified_and_missing(server, tmp_path):
    dest = tmp_path / "dest"
    _fetch(server, dest)
    (dest / "records100/00000/00001_lr.hea").write_text("changed\n")
    (dest / "scp_statements.csv").unlink()
    report = verify_dir(dest)
    assert report["checked"] == len(FILES) and report["ok"] == len(FILES) - 2
    assert report["missing"] == ["scp_statements.csv"]
    assert report["mismatched"] == ["records100/00000/00001_lr.hea"]
    assert not report["passed"]
    with pytest.raises(ECGError, match="SHA256SUMS.txt: missing"):
        verify_dir(tmp_path / "empty")


def test_sums_with_unsafe_paths_are_refused():
    good = "a" * 64
    assert parse_sha256sums(f"{good}  x/y.dat\n{good} *z.hea\n") == {"x/y.dat": good, "z.hea": good}
    for bad in (f"{good}  ../etc/passwd", f"{good}  /abs/path", "nothex  file"):
        with pytest.raises(ECGError):
            parse_sha256sums(bad + "\n")


def _cli(argv) -> int:
    parser = argparse.ArgumentParser(prog="ecglens")
    data_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_download_only_rate_and_verify_exit_codes(server, tmp_path, capsys):
    dest = tmp_path / "dest"
    assert _cli(["data", "download", "ptb-xl", str(dest), "--base-url", server.url, "--only-rate", "100", "--quiet"]) == 0
    assert (dest / "records100/00000/00001_lr.dat").is_file()
    assert not (dest / "records500").exists()
    # the 500 Hz header listed in SHA256SUMS is absent: verification fails
    assert _cli(["data", "verify", str(dest), "--quiet"]) == 1
    assert "MISSING records500/00000/00001_hr.hea" in capsys.readouterr().err
    shutil.copytree(server.root / "records500", dest / "records500")
    assert _cli(["data", "verify", str(dest), "--quiet"]) == 0


def test_cli_info_and_cache_on_local_set(ptbxl_dir, tmp_path, capsys):
    from test_ptbxl import copy_subset

    root = copy_subset(ptbxl_dir, tmp_path / "p", list(range(1, 31)))
    assert _cli(["data", "info", str(root), "--rate", "500"]) == 0
    out = capsys.readouterr().out
    assert "30 of 30 listed records available" in out
    assert _cli(["data", "cache", str(root), "--rate", "100", "--cache", str(tmp_path / "c"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count(str(tmp_path / "c")) == 3 and "MiB" in out
