"""Download and verify against a local HTTP server on 127.0.0.1 (never the network), with scripted faults."""
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
from ecglens.datasets.download import PARTIAL_DIR
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


def _write_sums(root: Path, extra: str = "") -> None:
    lines = [f"{hashlib.sha256((root / rel).read_bytes()).hexdigest()}  {rel}" for rel in FILES]
    (root / "SHA256SUMS.txt").write_text(extra + "\n".join(lines) + "\n")


def _add_file(root: Path, rel: str, data: bytes, first: bool = True) -> None:
    """Serve one more file, listed before (or after) the others in SHA256SUMS.txt."""
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)
    line = f"{hashlib.sha256(data).hexdigest()}  {rel}\n"
    sums = (root / "SHA256SUMS.txt").read_text()
    (root / "SHA256SUMS.txt").write_text(line + sums if first else sums + line)


class _Handler(BaseHTTPRequestHandler):
    """Serves files under ``server.root`` with Range support and scripted faults (per relative path):
    ``status`` (an HTTP error every time), ``truncate_once``/``truncate_always`` (promise everything, send half,
    hang up), ``ignore_range``, ``wrong_range`` (answer a resume with the range from byte 0), ``endless`` (a
    body without length that never ends), ``huge_length`` (claim a length of 1 TB)."""

    def do_GET(self):
        srv = self.server
        rel = unquote(self.path.lstrip("/"))
        srv.requests.append((rel, self.headers.get("Range")))
        if rel in srv.status:
            self.send_error(srv.status[rel])
            return
        if rel in srv.endless:
            self._endless()
            return
        path = srv.root / rel
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if m and rel in srv.wrong_range:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes 0-{len(data) - 1}/{len(data)}")
        elif m and rel not in srv.ignore_range:
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
        self.send_header("Content-Length", str(10**12 if rel in srv.huge_length else len(body)))
        self.end_headers()
        if rel in srv.truncate_once or rel in srv.truncate_always or (rel in srv.wrong_range and not m):
            srv.truncate_once.discard(rel)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _endless(self):
        self.send_response(200)
        self.end_headers()
        try:
            for _ in range(20_000):  # bounded (1.3 GB) in case the client never hangs up
                self.wfile.write(b"x" * 65536)
        except OSError:  # the client hung up at its limit
            pass

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
    httpd.root, httpd.requests, httpd.status = root, [], {}
    httpd.truncate_once, httpd.truncate_always, httpd.ignore_range = set(), set(), set()
    httpd.wrong_range, httpd.endless, httpd.huge_length = set(), set(), set()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _fetch(server, dest, **kw):
    return download_ptbxl(dest, base_url=server.url, progress=False, timeout=5, backoff=0, **kw)


def _requests_for(server, rel) -> int:
    return len([p for p, _ in server.requests if p == rel])


def test_download_verifies_and_rerun_skips(server, tmp_path):
    dest = tmp_path / "dest"
    report = _fetch(server, dest)
    assert report["downloaded"] == len(FILES) and report["skipped_existing"] == 0 and report["failed"] == []
    assert report["refused"] == []
    for rel in FILES:
        assert (dest / rel).read_bytes() == (server.root / rel).read_bytes()
    assert not list(dest.rglob(PARTIAL_DIR))  # partial folders go once empty
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
    (target.parent / PARTIAL_DIR).mkdir(parents=True)
    (target.parent / PARTIAL_DIR / target.name).write_bytes(data[:100])
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
    assert not (tmp_path / "dest" / rel).exists() and not list((tmp_path / "dest").rglob(PARTIAL_DIR))

    sums, _ = parse_sha256sums((server.root / "SHA256SUMS.txt").read_text())
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


UNSAFE = {
    "NUL byte": "records100/a\x00b.dat",
    "trailing slash": "records100/",
    "absolute path": "/tmp/ecglens-escape.txt",
    "parent folder": "../escape.txt",
    "nested parent": "records100/../../escape.txt",
    "empty component": "records100//x.dat",
    "backslash": "records100\\x.dat",
    "component over 255 bytes": "records100/" + "n" * 300 + ".dat",
    "partial folder": f"records100/{PARTIAL_DIR}/x",
    "the list itself": "SHA256SUMS.txt",
}


@pytest.mark.parametrize("kind", list(UNSAFE))
def test_unsafe_name_is_refused_alone(kind):
    good = "a" * 64
    entries, refused = parse_sha256sums(f"{good}  x/y.dat\n{good}  {UNSAFE[kind]}\n{good} *z.hea\n")
    assert entries == {"x/y.dat": good, "z.hea": good}
    assert [(r["line"], r["path"]) for r in refused] == [(2, UNSAFE[kind])]


def test_name_that_is_both_file_and_folder_is_refused():
    good = "b" * 64
    text = f"{good}  dup\n{good}  keep.dat\n{good}  dup/inner.dat\n{good}  dup/deeper/x.dat\nnothex  file\n"
    entries, refused = parse_sha256sums(text)
    assert entries == {"keep.dat": good}
    assert [(r["line"], r["path"]) for r in refused] == [(1, "dup"), (3, "dup/inner.dat"), (4, "dup/deeper/x.dat"),
                                                         (5, "nothex  file")]
    assert all("file and a folder" in r["reason"] for r in refused[:3]) and "sha256" in refused[3]["reason"]
    with pytest.raises(ECGError, match="lists no usable file"):
        parse_sha256sums(f"{good}  ../x\n")


def test_unsafe_names_are_listed_while_the_others_download(server, tmp_path):
    good = "c" * 64
    _write_sums(server.root, "".join(f"{good}  {name}\n" for name in UNSAFE.values()) + f"{good}  dup\n{good}  dup/x\n")
    dest = tmp_path / "deep" / "dest"
    report = _fetch(server, dest)
    assert report["downloaded"] == len(FILES) and report["failed"] == []
    assert sorted(r["path"] for r in report["refused"]) == sorted([*UNSAFE.values(), "dup", "dup/x"])
    assert [rel for rel, _ in server.requests] == ["SHA256SUMS.txt", *FILES]  # nothing unsafe was even asked for
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "deep" / "escape.txt").exists()
    assert not Path("/tmp/ecglens-escape.txt").exists()
    assert (dest / "SHA256SUMS.txt").is_file()  # listing itself never deletes it
    assert not verify_dir(dest)["passed"] and len(verify_dir(dest)["refused"]) == len(UNSAFE) + 2


def test_wrong_range_on_resume_ends_in_a_bounded_error(server, tmp_path):
    rel = "records100/00000/00001_lr.dat"
    server.wrong_range.add(rel)  # every transfer drops halfway; every resume gets bytes from 0
    report = _fetch(server, tmp_path / "dest", retries=4)
    assert [f["path"] for f in report["failed"]] == [rel]
    assert "failed 5 times" in report["failed"][0]["reason"] and "range" in report["failed"][0]["reason"]
    assert _requests_for(server, rel) == 5
    assert report["downloaded"] == len(FILES) - 1
    assert not (tmp_path / "dest" / rel).exists() and not list((tmp_path / "dest").rglob(PARTIAL_DIR))


def test_server_errors_are_retried_a_bounded_number_of_times(server, tmp_path):
    rel = "scp_statements.csv"
    server.status[rel] = 503
    report = _fetch(server, tmp_path / "dest", retries=2)
    assert [f["path"] for f in report["failed"]] == [rel] and "HTTP 503" in report["failed"][0]["reason"]
    assert _requests_for(server, rel) == 3


def test_repeated_drops_with_progress_still_end(server, tmp_path):
    rel = "records100/00000/00001_lr.dat"
    server.truncate_always.add(rel)  # each resume gets half of what is left: progress, but never the end
    report = _fetch(server, tmp_path / "dest", retries=3)
    assert [f["path"] for f in report["failed"]] == [rel] and "connection closed" in report["failed"][0]["reason"]
    assert _requests_for(server, rel) == 4


def test_endless_body_stops_at_the_size_limit(server, tmp_path):
    rel = "records100/00000/00001_lr.dat"
    server.endless.add(rel)
    report = _fetch(server, tmp_path / "dest", max_bytes=300_000)
    assert [f["path"] for f in report["failed"]] == [rel]
    assert "more than the limit of 300000 bytes" in report["failed"][0]["reason"]
    assert _requests_for(server, rel) == 1  # over the limit is final, not retried
    assert report["downloaded"] == len(FILES) - 1 and not list((tmp_path / "dest").rglob(PARTIAL_DIR))


def test_declared_length_over_the_limit_is_refused_before_the_body(server, tmp_path):
    rel = "scp_statements.csv"
    server.huge_length.add(rel)
    report = _fetch(server, tmp_path / "dest")
    assert [f["path"] for f in report["failed"]] == [rel]
    assert f"is {10**12} bytes, over the limit" in report["failed"][0]["reason"]


def test_listed_part_file_is_not_clobbered_by_a_partial_download(server, tmp_path):
    rel = "records100/00000/00001_lr.dat"
    _add_file(server.root, rel + ".part", b"a file that happens to end in .part\n" * 50)
    server.truncate_once.add(rel)  # x's download is interrupted and resumed after x.part is in place
    dest = tmp_path / "dest"
    target = dest / rel
    (target.parent / PARTIAL_DIR).mkdir(parents=True)
    (target.parent / PARTIAL_DIR / (target.name + ".part")).write_bytes(b"x.part's own partial")
    report = _fetch(server, dest)
    assert report["failed"] == [] and report["downloaded"] == len(FILES) + 1
    for name in (rel, rel + ".part"):
        assert (dest / name).read_bytes() == (server.root / name).read_bytes()
    assert verify_dir(dest)["passed"]


def test_symlinks_in_the_destination_are_never_followed(server, tmp_path):
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "file.txt").write_bytes(b"keep me")
    (outside / "partial.txt").write_bytes(b"keep me too")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "records100").symlink_to(outside / "dir", target_is_directory=True)
    (dest / "scp_statements.csv").symlink_to(outside / "file.txt")
    hr = "records500/00000/00001_hr.hea"
    (dest / hr).parent.joinpath(PARTIAL_DIR).mkdir(parents=True)
    (dest / hr).parent.joinpath(PARTIAL_DIR, "00001_hr.hea").symlink_to(outside / "partial.txt")
    server.truncate_once.add(hr)

    report = _fetch(server, dest)
    failed = {f["path"]: f["reason"] for f in report["failed"]}
    assert sorted(failed) == ["records100/00000/00001_lr.dat", "records100/00000/00001_lr.hea"]
    assert all("records100 is a symbolic link" in reason for reason in failed.values())
    assert list((outside / "dir").iterdir()) == []
    assert (outside / "file.txt").read_bytes() == b"keep me"
    assert (outside / "partial.txt").read_bytes() == b"keep me too"
    for rel in ("scp_statements.csv", hr):
        assert not (dest / rel).is_symlink() and (dest / rel).read_bytes() == (server.root / rel).read_bytes()

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / PARTIAL_DIR).symlink_to(outside / "dir", target_is_directory=True)
    with pytest.raises(ECGError, match="is a symbolic link"):
        download_file(server.url + hr, tmp_path / "other" / "x.hea", None, timeout=5)
    assert list((outside / "dir").iterdir()) == []


class _Interrupting:
    """A partial file whose first write stores 100 bytes and then raises KeyboardInterrupt (Ctrl-C mid-transfer)."""

    def __init__(self, fh):
        self.fh = fh

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    def write(self, block):
        self.fh.write(block[:100])
        raise KeyboardInterrupt


def test_interrupted_run_keeps_its_partial_file(server, tmp_path, monkeypatch):
    from ecglens.datasets import download as download_module

    rel = "records100/00000/00001_lr.dat"
    real_open = download_module._open_partial
    target = tmp_path / "dest" / rel
    monkeypatch.setattr(download_module, "_open_partial", lambda part, append: _Interrupting(real_open(part, append)))
    with pytest.raises(KeyboardInterrupt):
        download_file(server.url + rel, target, None, timeout=5)
    assert (target.parent / PARTIAL_DIR / target.name).stat().st_size == 100
    monkeypatch.undo()
    download_file(server.url + rel, target, hashlib.sha256((server.root / rel).read_bytes()).hexdigest(), timeout=5)
    assert server.requests[-1] == (rel, "bytes=100-") and target.read_bytes() == (server.root / rel).read_bytes()


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


def test_cli_lists_refused_names_and_fails(server, tmp_path, capsys):
    _write_sums(server.root, f"{'d' * 64}  ../escape.txt\n")
    dest = tmp_path / "dest"
    assert _cli(["data", "download", "ptb-xl", str(dest), "--base-url", server.url, "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "1 unsafe name(s) in the checksum list refused" in captured.out
    assert "REFUSED line 1 '../escape.txt': has an empty, '.' or '..' component" in captured.err
    assert _cli(["data", "verify", str(dest), "--quiet"]) == 1
    assert "REFUSED line 1" in capsys.readouterr().err


def test_cli_info_and_cache_on_local_set(ptbxl_dir, tmp_path, capsys):
    from test_ptbxl import copy_subset

    root = copy_subset(ptbxl_dir, tmp_path / "p", list(range(1, 31)))
    assert _cli(["data", "info", str(root), "--rate", "500"]) == 0
    out = capsys.readouterr().out
    assert "30 of 30 listed records available" in out
    assert _cli(["data", "cache", str(root), "--rate", "100", "--cache", str(tmp_path / "c"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count(str(tmp_path / "c")) == 3 and "MiB" in out
