"""The report and the viewer in a real browser: Debian's Chromium driven by Selenium through chromedriver.

Every section renders with its figures, the console stays free of errors, no request leaves 127.0.0.1
(pages opened from disk request nothing but data URIs), a bad upload gets a clear message, an oversized one
is refused, and 20 concurrent requests are served. Screenshots go to the test's temporary directory.
Skips with the reason when Chromium, chromedriver or Selenium is absent (``make test`` installs them where
it can: ``.ci/install-browser.sh``).
"""
import json
import shutil
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from ecglens.explain.ratings import read_ratings
from report_helpers import record_files, shared_reporter, small_gallery

pytestmark = pytest.mark.slow
SECTIONS = ("header", "measurements", "ecg", "statements", "protoecgnet", "factorecg", "qlst", "how-to-read", "models")
UPLOAD_LIMIT = 300_000
LOCAL = ("http://127.0.0.1:", "data:", "file://", "about:blank")


def _browser_paths():
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver; "
                    "make test runs .ci/install-browser.sh)")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    return chromium, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, chromedriver = _browser_paths()
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--window-size=1300,1100", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    try:
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=chromedriver))
    except Exception as exc:  # a browser that is installed but cannot start here
        pytest.skip(f"Chromium could not be started: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    driver.set_page_load_timeout(600)
    driver.get("about:blank")
    _logs(driver)  # what the browser loaded for itself at start (its new-tab page) is not the pages' doing
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _browser_paths()
    uvicorn = pytest.importorskip("uvicorn")
    from ecglens.report.server import Viewer, create_app
    from ecglens.samples import samples_dir

    work = tmp_path_factory.mktemp("viewer")
    small_gallery(work / "gallery")
    viewer = Viewer(work, shared_reporter(work), records=samples_dir() / "records100", gallery_model="protoecgnet",
                    max_upload_bytes=UPLOAD_LIMIT)
    srv = uvicorn.Server(uvicorn.Config(create_app(viewer), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the viewer did not start"
        time.sleep(0.05)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", viewer
    srv.should_exit = True
    thread.join(timeout=30)


def _logs(driver) -> tuple[list[str], list[str]]:
    """(console errors, requested URLs) since the last call."""
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return errors, urls


def _check_page(driver, shot, expect_errors=()):
    """No console error (but the expected ones) and no request beyond 127.0.0.1; a screenshot."""
    driver.save_screenshot(str(shot))
    errors, urls = _logs(driver)
    errors = [e for e in errors if not any(x in e for x in expect_errors)]
    assert errors == [], errors
    assert [u for u in urls if not u.startswith(LOCAL)] == []
    return urls


def _submit(driver, button, until: str, timeout: float = 600):
    """Click a form's button and wait for the page it leads to (an element matching ``until``)."""
    from selenium.webdriver.support.ui import WebDriverWait

    button.click()
    WebDriverWait(driver, timeout).until(lambda d: d.find_elements("css selector", until))


def _check_report(driver):
    """Every section is there and every figure drew: inline SVG with a size, PNG decoded."""
    for section in SECTIONS:
        assert driver.find_elements("css selector", f'[data-section="{section}"]'), section
    figures = driver.execute_script("""
        return Array.from(document.querySelectorAll('[data-figure]')).map(function (f) {
          var svg = f.querySelector('svg'), img = f.querySelector('img'), r = (svg || img || f).getBoundingClientRect();
          return {kind: f.dataset.figure, w: r.width, h: r.height,
                  decoded: img ? (img.complete && img.naturalWidth > 0) : !!svg};
        });""")
    kinds = {f["kind"] for f in figures}
    assert kinds >= {"ecg-paper", "median-beat", "matched-window", "prototype-source", "factor-percentiles",
                     "traversal", "qlst-sweep"}, kinds
    drawn = [f for f in figures if f["decoded"]]
    assert all(f["w"] > 50 and f["h"] > 20 for f in drawn), [f for f in drawn if f["w"] <= 50 or f["h"] <= 20]
    assert len(drawn) >= len(figures) - sum(1 for f in figures if f["kind"] == "prototype-source")


def test_reports_from_disk_render_every_section_offline_and_the_index_sorts(browser, tmp_path):
    from selenium.webdriver.support.ui import Select

    from ecglens.report import write_reports

    result = write_reports([record_files(3)[0], record_files()[0]], tmp_path / "out", shared_reporter(tmp_path))
    browser.get(result["index"].resolve().as_uri())
    order = "return Array.from(document.querySelectorAll('#index-table tbody tr')).map(r => r.dataset.record)"
    Select(browser.find_element("id", "sort-by")).select_by_value("CRBBB")
    assert browser.execute_script(order)[0] == "00172_lr.hea"  # the CRBBB record first
    browser.find_element("css selector", 'th[data-key=""]').click()
    assert browser.execute_script(order) == ["00003_lr.hea", "00172_lr.hea"]  # back to record order
    _check_page(browser, tmp_path / "index.png")
    browser.find_element("link text", "00172_lr.hea").click()
    _check_report(browser)
    urls = _check_page(browser, tmp_path / "report.png")
    assert urls and all(u.startswith(("file://", "data:")) for u in urls)


def test_viewer_upload_messages_gallery_and_concurrency(browser, server, tmp_path):
    base, viewer = server
    browser.get(base + "/")
    _check_page(browser, tmp_path / "home.png")

    # a good upload (header and signal file together), kept: its report
    hea, dat = record_files()
    browser.find_element("id", "file").send_keys(f"{hea}\n{dat}")
    browser.find_element("name", "keep").click()
    _submit(browser, browser.find_element("id", "submit"), '[data-section="models"]')
    _check_report(browser)
    _check_page(browser, tmp_path / "upload-report.png")

    # a bad file: a clear message, no traceback
    bad = tmp_path / "garbage.hea"
    bad.write_text("this is not a WFDB header\n")
    browser.get(base + "/")
    browser.find_element("id", "file").send_keys(str(bad))
    _submit(browser, browser.find_element("id", "submit"), "#message")
    message = browser.find_element("id", "message").text
    assert message.startswith("garbage.hea:") and "Traceback" not in browser.page_source
    _check_page(browser, tmp_path / "bad-upload.png", expect_errors=("status of 400",))

    # an oversized one: refused with the limit named
    big = tmp_path / "big.csv"
    big.write_bytes(b"0," * (UPLOAD_LIMIT // 2 + 1000))
    browser.get(base + "/")
    browser.find_element("id", "file").send_keys(str(big))
    _submit(browser, browser.find_element("id", "submit"), "#message")
    assert "larger than the 0.3 MB limit" in browser.find_element("id", "message").text
    _check_page(browser, tmp_path / "oversized.png", expect_errors=("status of 413",))

    # the review form: a rating reaches ratings.csv in the shared schema
    browser.get(base + "/gallery")
    form = browser.find_element("css selector", '[data-prototype="morphology/0"] form')
    from selenium.webdriver.support.ui import Select

    Select(form.find_element("name", "representativeness")).select_by_visible_text("5")
    Select(form.find_element("name", "clarity")).select_by_visible_text("3")
    form.find_element("name", "comment").send_keys("typical RSR'")
    _submit(browser, form.find_element("css selector", "button"), "#saved")
    assert "Rating of prototype morphology/0 saved" in browser.find_element("id", "saved").text
    assert browser.execute_script("return document.querySelector('img').naturalWidth") > 0
    _check_page(browser, tmp_path / "gallery.png")
    rating = read_ratings(viewer.directory / "ratings.csv")[-1]
    assert (rating.prototype, rating.representativeness, rating.clarity, rating.comment) == (
        "morphology/0", 5, 3, "typical RSR'")

    # 20 concurrent requests on loopback, all served
    paths = ["/", "/records", "/gallery", "/uploads/00172_lr", "/gallery/img/morphology_001.png"] * 4
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def fetch(path):
        with opener.open(base + path, timeout=120) as response:
            return response.status, len(response.read())

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(fetch, paths))
    assert [status for status, _ in results] == [200] * 20 and all(size > 0 for _, size in results)
    kept = sorted(p.name for p in viewer.directory.iterdir())
    assert kept == ["gallery", "ratings.csv", "uploads"]  # nothing else written, no upload folder left
