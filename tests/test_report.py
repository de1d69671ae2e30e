"""The clinician report: figures on ECG paper, one self-contained page per record, the index, the CLI and PDF."""
import re
from html import unescape

import numpy as np
import pytest

from ecglens.cli import main
from ecglens.errors import ECGError
from ecglens.report import ReportOptions, write_reports
from ecglens.report.figures import ecg_paper_svg, window_svg
from ecglens.report.pdf import find_chromium, html_to_pdf
from ecglens.statements import beyond_one_beat
from report_helpers import record_files, shared_reporter

SECTIONS = ("header", "measurements", "ecg", "statements", "protoecgnet", "factorecg", "qlst", "how-to-read", "models")


def _trace_moves(svg: str) -> list[np.ndarray]:
    """The traces of an SVG sheet: absolute points in mm (paths are 0.01 mm relative moves)."""
    out = []
    for d in re.findall(r'<path d="M(-?\d+) (-?\d+)l([-\d ]+)" transform="scale\(0.01\)"', svg):
        steps = np.array(d[2].split(), dtype=float).reshape(-1, 2)
        out.append(np.vstack([[float(d[0]), float(d[1])], steps]).cumsum(axis=0) / 100)
    return out


@pytest.mark.parametrize("speed,gain", [(25, 10), (50, 20)])
def test_paper_is_drawn_at_the_chosen_speed_and_gain(speed, gain):
    rate, n = 500, 5000
    signal = np.zeros((12, n), dtype=np.float32)
    signal[1, 2500:] = 1.0  # lead II steps up by 1 mV at 5 s
    from ecglens.io.leads import STANDARD_LEADS

    svg = ecg_paper_svg(signal, rate, STANDARD_LEADS, speed=speed, gain=gain)
    width = float(re.search(r'width="([\d.]+)mm"', svg).group(1))
    assert width >= 10 * speed  # the 10-s rhythm strip at true size
    traces = _trace_moves(svg)
    assert len(traces) == 13  # 3 rows x 4 columns + the rhythm strip
    strip = traces[-1]
    assert np.isclose(strip[-1, 0] - strip[0, 0], (n - 1) / rate * speed, atol=0.02)  # mm per second
    assert np.isclose(strip[0, 1] - strip[-1, 1], gain, atol=0.02)  # 1 mV is `gain` mm (up)
    assert f"{speed:g} mm/s" in svg and f"{gain:g} mm/mV" in svg


def test_matched_windows_zoom_short_windows_and_strip_long_ones():
    from ecglens.io.leads import STANDARD_LEADS

    x = np.random.default_rng(0).normal(0, 0.1, (12, 1000))
    short = window_svg(x, 100, STANDARD_LEADS, 2.0, 3.0)
    assert all(f">{lead}</text>" in short for lead in STANDARD_LEADS) and "50 mm/s" in short
    whole = window_svg(x, 100, STANDARD_LEADS, 0.0, 10.0)
    assert ">II</text>" in whole and ">V1</text>" not in whole and "25 mm/s" in whole


def test_options_are_checked():
    with pytest.raises(ECGError, match="speed"):
        ReportOptions(speed=500)
    with pytest.raises(ECGError, match="sweeps"):
        ReportOptions(sweeps=-1)


@pytest.mark.slow
def test_report_page_has_every_section_with_figures_and_no_network(tmp_path):
    reporter = shared_reporter(tmp_path)
    report = reporter.build_file(record_files()[0])
    html = report.html
    for section in SECTIONS:
        assert f'data-section="{section}"' in html, section
    # figures inline: the paper, the median beat, prototype windows (SVG) and the explanation drawings (PNG)
    for figure in ("ecg-paper", "median-beat", "matched-window", "prototype-source", "factor-percentiles",
                   "toward-normal", "traversal", "qlst-sweep"):
        assert f'data-figure="{figure}"' in html, figure
    assert html.count("data:image/png;base64,") >= 3
    # nothing on the page can reach the network: no URL but the SVG namespace, and a CSP that forbids it
    text = re.sub(r'data:[^"]*', "", html)
    assert set(re.findall(r"\w+://[\w.-]+", text)) <= {"http://www.w3.org"}
    assert not re.search(r'(?:src|href)="(?!#|data:|[\w-]+\.html)', html)
    assert "default-src 'none'" in unescape(html)
    assert len(html.encode()) < 5e6
    data = report.data
    m = data["measurements"]
    assert m["available"] and 40 < m["heart_rate"] < 150 and 80 < m["qrs_duration_ms"] < 200
    rows = {r["code"]: r for r in data["statements"]["rows"]}
    assert rows["CRBBB"]["n_called"] >= 1 and "right bundle branch block" in rows["CRBBB"]["name"]
    assert ">complete right bundle branch block<" in html
    for r in rows.values():  # the calls follow each model's stored threshold and assessable statements
        for cell in r["cells"]:
            if cell is not None:
                assert cell["called"] == (cell["assessable"] and cell["probability"] >= cell["threshold"])
    assert any(r["not_assessable"] for r in rows.values()) and "not assessable" in html
    proto = next(s for s in data["sections"] if s["kind"] == "protoecgnet")
    assert proto["statements"] and all(len(e["evidence"]) <= 3 for e in proto["statements"])
    assert "raises the log-odds of" in html or "lowers the log-odds of" in html  # FactorECG's contributions
    _assert_prototypes_in_the_explainers_words(proto, html)
    assert not proto["long_record"] and 'data-figure="deciding-window"' not in html  # a 10-s record: one window
    factor = next(s for s in data["sections"] if s["kind"] == "factorecg")
    assert factor["traversals"]
    for t in factor["traversals"]:  # the caption gives the drawn range, which holds the patient's own value
        lo, hi = t["range_sd"]
        assert (lo, hi) == (t["values_sd"][0], t["values_sd"][-1]) and lo <= t["value_std"] <= hi
        assert f"Factor {t['factor']} from {lo:+.1f} to {hi:+.1f} SD" in html
        assert t["widened"] == (lo < -3 or hi > 3)
    assert "from -3 to +3 SD, the other factors" not in html
    qlst = next(s for s in data["sections"] if s["kind"] == "qlst")
    swept = [s["statement"] for s in qlst["statements"]]
    assert swept and not set(swept) & beyond_one_beat()  # rhythm statements are never swept...
    blackbox = {r["code"]: r["cells"][[c["model"] for c in data["statements"]["columns"]].index(qlst["classifier"])]
                for r in data["statements"]["rows"]}
    lowest = min(blackbox[s]["probability"] for s in swept)
    qlst_model = next(m for m in reporter.models if m.kind.name == "qlst")
    for s in set(qlst_model.labels) & beyond_one_beat():  # ...but named when they rank above a sweep
        if blackbox[s]["probability"] >= lowest:
            assert any(s in w and "cannot be judged from one beat" in w for w in qlst["warnings"]), s
    assert {p["name"] for p in data["models"]} >= {"baseline", "protoecgnet", "factorecg", "qlst"}


@pytest.mark.slow
def test_a_long_record_shows_each_statements_deciding_window(tmp_path):
    from dataclasses import replace

    from ecglens.io import read_ecg
    from ecglens.report import Reporter

    ecg = read_ecg(record_files()[0])
    ecg = replace(ecg, signal=np.concatenate([ecg.signal] * 3, axis=1))  # 30 s: scored by 10-s windows
    report = Reporter(["protoecgnet"], workdir=tmp_path).build(ecg, name="long")
    html = report.html
    proto = next(s for s in report.data["sections"] if s["kind"] == "protoecgnet")
    assert "error" not in proto and proto["long_record"] and proto["record_s"] == pytest.approx(30.0)
    _assert_prototypes_in_the_explainers_words(proto, html)
    assert html.count('data-figure="deciding-window"') == len(proto["statements"]) > 0
    for e in proto["statements"]:
        w = e["window"]
        assert not w["whole_record"] and w["end_s"] - w["start_s"] == pytest.approx(10.0)
        assert e["summary"].startswith(f"decided by the window {w['start_s']:.2f}-{w['end_s']:.2f} s")
        assert f"{e['statement']} is decided by {w['start_s']:.2f}-{w['end_s']:.2f} s of this 30.0 s record" in html
        for ev in e["evidence"]:  # every match lies in its statement's deciding window
            q = ev["query_window"]
            assert w["start_s"] - 1e-6 <= q["start_s"] <= q["end_s"] <= w["end_s"] + 1e-6
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


@pytest.mark.slow
def test_a_record_in_the_wrong_units_is_reported_without_calls(tmp_path):
    from dataclasses import replace

    from ecglens.io import read_ecg

    ecg = read_ecg(record_files()[0])
    ecg = replace(ecg, signal=ecg.signal * 1000)  # microvolts read as millivolts
    report = shared_reporter(tmp_path).build(ecg, name="uv-as-mv")
    assert not report.data["quality"]["judgeable"] and "units" in report.data["quality"]["flags"]
    assert all(r["n_called"] == 0 for r in report.data["statements"]["rows"])
    assert "Abstention:" in report.html and "no statement is called" in report.html.lower()
    assert all("not judgeable" in s["error"] for s in report.data["sections"])  # no explanation drawn
    assert len(report.html.encode()) < 1e6  # traces are clipped at the paper's edge, not drawn metres tall


@pytest.mark.slow
def test_several_records_give_an_index_sortable_by_statement(tmp_path):
    good = record_files()[0]
    bad = tmp_path / "broken.hea"
    bad.write_text("not a header\n")
    out = tmp_path / "out"
    result = write_reports([good, record_files(3)[0], bad], out, shared_reporter(tmp_path))
    assert sorted(p.name for p in out.iterdir()) == ["00003_lr.html", "00172_lr.html", "index.html"]
    assert [s["record"] for s in result["skipped"]] == [str(bad)]
    index = (out / "index.html").read_text()
    assert 'href="00172_lr.html"' in index and 'href="00003_lr.html"' in index
    assert 'id="sort-by"' in index and "data-p-0=" in index and "broken.hea" in index
    assert not list(out.glob(".*"))  # no temporary file left behind


@pytest.mark.slow
def test_cli_report_writes_the_page_and_names_a_bad_file(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["report", str(record_files()[0]), "-o", str(out), "--models", "baseline", "--no-progress",
                 "--gain", "20"]) == 0
    page = out / "00172_lr.html"
    assert str(page) in capsys.readouterr().out
    html = page.read_text()
    assert "20 mm/mV" in html and 'data-section="statements"' in html and 'data-section="qlst"' not in html
    assert main(["report", str(tmp_path / "missing.hea"), "-o", str(out)]) == 2
    assert "missing.hea" in capsys.readouterr().err


@pytest.mark.slow
def test_pdf_through_headless_chromium(tmp_path):
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (make test installs it when it can: .ci/install-browser.sh)")
    page = tmp_path / "page.html"
    page.write_text("<!doctype html><html><body><h1>ECG</h1><svg width='50mm' height='20mm'></svg></body></html>")
    pdf = html_to_pdf(page, tmp_path / "page.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html", "page.pdf"]  # the profile is gone


def _assert_prototypes_in_the_explainers_words(proto: dict, html: str) -> None:
    """Every shown prototype in the ProtoECGNet explainer's sentence, its match given as a percentile among the
    training matches, never as a raw cosine similarity (nearly constant, 0.987-0.994, for the shipped model)."""
    text = unescape(html)
    assert "percentile of training matches" in text
    assert not re.search(r"similarity \d\.\d", text), re.search(r".{80}similarity \d\.\d.{20}", text)
    for e in proto["statements"]:
        assert e["summary"] and f"{e['summary'][:1].upper()}{e['summary'][1:]}." in text  # shown and own shares
        assert "of the evidence" in e["summary"] and f"{e['statement']}'s own prototypes" in e["summary"]
        for ev in e["evidence"]:
            assert ev["similarity_percentile"] is not None and 0 <= ev["similarity_percentile"] <= 100
            assert "percentile of training matches" in ev["words"] and f"This ECG {ev['words']}." in text
            assert "similarity" not in ev  # the raw value is left out of the page's data too
