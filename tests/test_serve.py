"""``ecglens serve``'s application through its test client: uploads, limits, browsing, the review form."""
import pytest

from ecglens.errors import ECGError
from ecglens.explain.ratings import read_ratings
from ecglens.report.server import UploadError, Viewer, check_files, main_file, parse_multipart
from report_helpers import record_files, shared_reporter, small_gallery

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


def test_multipart_bodies_are_parsed_in_memory():
    body = (b"--xx\r\nContent-Disposition: form-data; name=\"keep\"\r\n\r\n1\r\n"
            b"--xx\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.hea\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\nab\r\ncd\r\n--xx--\r\n")
    fields, files = parse_multipart(body, "multipart/form-data; boundary=xx")
    assert fields == {"keep": "1"} and files == [("a.hea", b"ab\r\ncd")]
    with pytest.raises(UploadError, match="multipart"):
        parse_multipart(body, "application/json")


@pytest.mark.parametrize("files,message", [
    ([], "no file"),
    ([("x.txt", b"1")], "unsupported file type '.txt'"),
    ([("a.hea", b"")], "empty"),
    ([(".hidden.hea", b"1")], "file names may hold"),
    ([(f"{i}.dat", b"1") for i in range(5)], "at most 4"),
])
def test_bad_uploads_are_named(files, message):
    with pytest.raises(UploadError, match=message):
        check_files(files)


def test_the_header_is_the_record_to_read():
    assert main_file(["r.dat", "r.hea"]) == "r.hea"
    assert main_file(["r.edf"]) == "r.edf"
    with pytest.raises(UploadError, match="one record at a time"):
        main_file(["a.hea", "b.hea"])


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from ecglens.report.server import create_app
    from ecglens.samples import samples_dir

    work = tmp_path_factory.mktemp("viewer")
    small_gallery(work / "gallery")
    viewer = Viewer(work, shared_reporter(work), records=samples_dir() / "records100", gallery_model="protoecgnet",
                    max_upload_bytes=300_000)
    with TestClient(create_app(viewer), raise_server_exceptions=False) as c:
        c.viewer = viewer
        yield c


def _upload(client, files, **fields):
    return client.post("/upload", files=[("file", (p.name, p.read_bytes())) for p in files], data=fields)


@pytest.mark.slow
def test_an_upload_gets_its_report_and_leaves_nothing_unless_kept(client):
    work = client.viewer.directory
    hea, dat = record_files()
    page = _upload(client, [hea, dat])
    assert page.status_code == 200 and 'data-section="protoecgnet"' in page.text and 'href="/"' in page.text
    assert ".upload-" not in page.text  # the page names the uploaded file, not the temporary folder it was read from
    assert sorted(p.name for p in work.iterdir()) == ["gallery"]  # nothing kept, no temporary folder left
    kept = _upload(client, [hea, dat], keep="1")
    assert kept.status_code == 200
    assert sorted(p.name for p in (work / "uploads" / "00172_lr").iterdir()) == ["00172_lr.dat", "00172_lr.hea",
                                                                               "report.html"]
    assert "00172_lr" in client.get("/").text and client.get("/uploads/00172_lr").status_code == 200


@pytest.mark.slow
def test_a_bad_upload_gets_a_clear_message_and_an_oversized_one_is_refused(client, tmp_path):
    bad = tmp_path / "garbage.hea"
    bad.write_text("this is not a WFDB header\n")
    page = _upload(client, [bad])
    assert page.status_code == 400 and "garbage.hea:" in page.text and "Traceback" not in page.text
    assert ".upload-" not in page.text  # the message names the uploaded file, not where it was read from
    big = tmp_path / "big.csv"
    big.write_bytes(b"0," * 200_000)
    page = _upload(client, [big])
    assert page.status_code == 413 and "larger than the 0.3 MB limit" in page.text
    assert not any(p.name.startswith(".upload-") for p in client.viewer.directory.iterdir())


@pytest.mark.slow
def test_browsing_a_folder_stays_inside_it(client):
    listing = client.get("/records")
    assert listing.status_code == 200 and "00000/00172_lr.hea" in listing.text
    page = client.get("/records/view", params={"path": "00000/00172_lr.hea"})
    assert page.status_code == 200 and 'data-section="statements"' in page.text
    for path in ("../../../etc/passwd", "/etc/passwd", "00000/missing.hea"):
        refused = client.get("/records/view", params={"path": path})
        assert refused.status_code == 400 and "not a record of the browsed folder" in refused.text
    assert client.get("/records/view").status_code == 400  # a missing parameter is a message, not a traceback


@pytest.mark.slow
def test_the_review_form_appends_ratings_in_the_shared_schema(client):
    page = client.get("/gallery")
    assert page.status_code == 200 and 'src="/gallery/img/morphology_000.png"' in page.text
    assert client.get("/gallery/img/morphology_000.png").headers["content-type"] == "image/png"
    assert client.get("/gallery/img/..%2Fgallery.json").status_code in (400, 404)
    saved = client.post("/gallery/rate", data={"prototype": "morphology/1", "representativeness": "4",
                                               "clarity": "2", "comment": "clear AF", "reviewer": "rr"},
                        follow_redirects=False)
    assert saved.status_code == 303 and "saved=morphology/1" in saved.headers["location"]
    bad = client.post("/gallery/rate", data={"prototype": "morphology/1", "representativeness": "9", "clarity": "2"})
    assert bad.status_code == 400 and "representativeness must be an integer from 1 to 5" in bad.text
    ratings = read_ratings(client.viewer.directory / "ratings.csv")
    assert [(r.prototype, r.statement, r.representativeness, r.clarity, r.comment) for r in ratings] == [
        ("morphology/1", "AFIB", 4, 2, "clear AF")]


def test_a_viewer_without_a_records_folder_says_so(tmp_path):
    viewer = Viewer(tmp_path, reporter=None)
    with pytest.raises(ECGError, match="--records"):
        viewer.record_path("x.hea")
