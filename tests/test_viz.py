"""ECG paper figures: physical size, scale, calibration pulse, traces, shading, saving, beat panels."""
from __future__ import annotations

import matplotlib
import matplotlib.image
import numpy as np
import pytest
from matplotlib.collections import LineCollection

from ecglens.io.leads import STANDARD_LEADS
from ecglens.io.record import ECG
from ecglens.viz import paper_size_mm, plot_beats, plot_ecg, plot_overlay, save_figure

FS = 100.0


def _synthetic_ecg(duration=10.0, fs=FS, units="mV") -> ECG:
    """Twelve distinct deterministic leads: a sharp 'R' every 0.8 s plus a lead-specific slow wave."""
    t = np.arange(int(round(duration * fs))) / fs
    rows = []
    for k in range(12):
        r_waves = sum(np.exp(-((t - c) / 0.02) ** 2) for c in np.arange(0.4, duration, 0.8))
        rows.append((0.5 + 0.1 * k) * r_waves + 0.05 * k * np.sin(2 * np.pi * 0.3 * t + k))
    return ECG(np.array(rows), fs, STANDARD_LEADS, units=units, source="/somewhere/rec_42.hea",
               labels=("NORM", "SR"), metadata={"age": 60, "sex": "Male"})


def _line(fig, gid):
    lines = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == gid]
    assert len(lines) == 1, f"expected one line {gid!r}, found {len(lines)}"
    return lines[0]


def _texts(fig):
    return [t.get_text() for t in fig.texts]


@pytest.mark.parametrize("layout, height_mm", [("12x1", 14 + 12 * 25 + 8), ("3x4", 14 + 4 * 40 + 8)])
def test_figure_size_is_paper_size_in_mm(layout, height_mm):
    # 10 s at 25 mm/s = 250 mm, plus the 10 mm calibration lead-in, plus 5 mm margins each side
    fig = plot_ecg(_synthetic_ecg(), layout=layout)
    width, height = fig.get_size_inches() * 25.4
    assert width == pytest.approx(5 + 10 + 250 + 5)
    assert height == pytest.approx(height_mm)
    assert paper_size_mm(10.0, layout) == pytest.approx((width, height))


@pytest.mark.parametrize("dpi", [72, 200])
def test_one_mm_of_paper_is_one_mm_of_figure_at_any_dpi(dpi):
    fig = plot_ecg(_synthetic_ecg(), layout="12x1")
    fig.set_dpi(dpi)
    ax = fig.axes[0]
    (x0, y0), (x1, y1) = ax.transData.transform([(0, 0), (50, 20)])
    px_per_mm = dpi / 25.4
    assert (x1 - x0) == pytest.approx(50 * px_per_mm)
    assert (y1 - y0) == pytest.approx(20 * px_per_mm)


def test_calibration_pulse_is_1mv_by_200ms():
    fig = plot_ecg(_synthetic_ecg(), layout="3x4")
    for row in range(4):
        cal = _line(fig, f"calibration:{row}")
        x, y = np.asarray(cal.get_xdata()), np.asarray(cal.get_ydata())
        assert y.max() - y.min() == pytest.approx(10.0)  # 1 mV at 10 mm/mV
        top = x[y == y.max()]
        assert top.max() - top.min() == pytest.approx(5.0)  # 200 ms at 25 mm/s


def test_trace_is_the_signal_at_paper_scale_12x1():
    ecg = _synthetic_ecg()
    fig = plot_ecg(ecg, layout="12x1")
    line = _line(fig, "lead:V1")
    v1 = ecg.lead("V1").astype(np.float64)
    baseline = np.min(_line(fig, "calibration:6").get_ydata())  # V1 is the 7th row
    np.testing.assert_allclose(line.get_ydata(), baseline + 10.0 * v1, atol=1e-9)
    np.testing.assert_allclose(line.get_xdata(), 10.0 + np.arange(ecg.n_samples) / FS * 25.0)


def test_trace_is_the_signal_at_paper_scale_3x4():
    ecg = _synthetic_ecg()
    fig = plot_ecg(ecg, layout="3x4")
    line = _line(fig, "lead:V1")  # third column: 5.0-7.5 s, first row
    baseline = np.min(_line(fig, "calibration:0").get_ydata())
    np.testing.assert_allclose(line.get_ydata(), baseline + 10.0 * ecg.lead("V1")[500:750], atol=1e-6)
    np.testing.assert_allclose(line.get_xdata()[[0, -1]], [10.0 + 5.0 * 25, 10.0 + 7.49 * 25])
    rhythm = _line(fig, "rhythm:II")
    assert len(rhythm.get_xdata()) == ecg.n_samples


def test_footer_and_header():
    fig = plot_ecg(_synthetic_ecg(), layout="12x1")
    texts = _texts(fig)
    assert "25 mm/s  10 mm/mV  100 Hz" in texts
    assert "rec_42.hea" in texts
    assert any("NORM, SR" in t for t in texts)


def test_non_mv_units_are_drawn_at_10mm_per_unit_and_marked():
    ecg = _synthetic_ecg(units="adu")
    fig = plot_ecg(ecg, layout="12x1")
    assert any("10 mm/a.u." in t for t in _texts(fig))
    y = np.asarray(_line(fig, "lead:I").get_ydata())
    assert np.ptp(y) == pytest.approx(10.0 * np.ptp(ecg.lead("I")), rel=1e-6)


def test_long_record_in_3x4_says_what_is_shown():
    fig = plot_ecg(_synthetic_ecg(duration=30.0), layout="3x4")
    assert (fig.get_size_inches() * 25.4)[0] == pytest.approx(270)
    assert any("first 10 s of 30 s" in t for t in _texts(fig))


def _shades(fig, gid):
    return [p for ax in fig.axes for p in ax.patches if p.get_gid() == gid]


def test_shade_one_lead_and_all_leads():
    fig = plot_ecg(_synthetic_ecg(), layout="12x1",
                   shade=[("V1", 2.0, 2.5, "prototype 3", "tab:blue"), (None, 6.0, 6.4, None, "red")])
    (v1,) = _shades(fig, "shade:V1")
    assert v1.get_x() == pytest.approx(10 + 2.0 * 25)
    assert v1.get_width() == pytest.approx(0.5 * 25)
    cal = np.min(_line(fig, "calibration:6").get_ydata())
    assert v1.get_y() <= cal <= v1.get_y() + v1.get_height()  # on the V1 row
    everywhere = _shades(fig, "shade:*")
    assert len(everywhere) == 12
    assert all(p.get_x() == pytest.approx(10 + 6.0 * 25) and p.get_width() == pytest.approx(10) for p in everywhere)


def test_shade_in_3x4_follows_the_lead_and_rejects_hidden_windows():
    fig = plot_ecg(_synthetic_ecg(), layout="3x4", shade=[("II", 1.0, 3.0, "x", "green")])
    spans = sorted((p.get_y(), p.get_x(), p.get_width()) for p in _shades(fig, "shade:II"))
    # the II cell (0-2.5 s) is clipped at its column's end; the rhythm strip shows the whole window
    assert [(x, w) for _, x, w in spans] == [pytest.approx((35.0, 50.0)), pytest.approx((35.0, 37.5))]
    with pytest.raises(ValueError, match="not visible"):
        plot_ecg(_synthetic_ecg(), layout="3x4", shade=[("V1", 1.0, 2.0, "x", "green")])
    with pytest.raises(ValueError, match="unknown lead"):
        plot_ecg(_synthetic_ecg(), shade=[("V7", 1.0, 2.0, "x", "green")])


def test_save_png_creates_only_that_file(tmp_path):
    out = tmp_path / "figs" / "ecg.png"
    plot_ecg(_synthetic_ecg(), out, layout="3x4", dpi=100)
    assert out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["figs", "figs/ecg.png"]
    width, height = matplotlib.image.imread(out).shape[1::-1]
    assert abs(width - 270 / 25.4 * 100) <= 1 and abs(height - 182 / 25.4 * 100) <= 1


def test_save_rejects_unknown_suffix(tmp_path):
    fig = plot_ecg(_synthetic_ecg())
    with pytest.raises(ValueError, match="unsupported figure type"):
        save_figure(fig, tmp_path / "ecg.jpg")
    assert list(tmp_path.iterdir()) == []


def test_no_pyplot_figures_leak():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot_ecg(_synthetic_ecg())
    plot_beats(np.zeros((12, 60)), FS, STANDARD_LEADS)
    assert plt.get_fignums() == before


def _beats(k=5, n=60):
    rng = np.random.default_rng(0)
    median = np.stack([np.exp(-((np.arange(n) - 25) / 3.0) ** 2) * (0.5 + 0.1 * i) for i in range(12)])
    return median, median[None] + 0.05 * rng.standard_normal((k, 12, n))


def test_plot_beats_panels_lines_and_scale():
    median, beats = _beats(k=5, n=60)
    fig = plot_beats(median, FS, STANDARD_LEADS, beats, title="median beat")
    assert len(fig.axes) == 12
    for ax, lead, m in zip(fig.axes, STANDARD_LEADS, median):
        (grey,) = [c for c in ax.collections if c.get_gid() == "beats"]
        assert len(grey.get_segments()) == 5
        np.testing.assert_allclose(_line(fig, f"median:{lead}").get_ydata(), m)
        lo, hi = ax.get_ylim()
        assert lo <= beats[:, STANDARD_LEADS.index(lead)].min() and hi >= beats[:, STANDARD_LEADS.index(lead)].max()
    # 0.6 s at 50 mm/s = 30 mm wide panels; 1 mV is 10 mm tall
    fig.set_dpi(100)
    ax = fig.axes[0]
    (x0, y0), (x1, y1) = ax.transData.transform([(0, 0), (0.2, 1.0)])
    assert (x1 - x0) == pytest.approx(10 / 25.4 * 100) and (y1 - y0) == pytest.approx(10 / 25.4 * 100)
    assert ax.get_position().width * fig.get_size_inches()[0] * 25.4 == pytest.approx(30)
    with pytest.raises(ValueError, match="like the median"):
        plot_beats(median, FS, STANDARD_LEADS, beats[:, :, :50])


def test_plot_overlay_colours_follow_values(tmp_path):
    median, _ = _beats()
    seq = np.stack([median * s for s in (0.6, 0.8, 1.0, 1.2)])
    values = [-2.0, -1.0, 1.0, 2.0]
    out = tmp_path / "overlay.svg"
    fig = plot_overlay(seq, FS, STANDARD_LEADS, values, cmap="viridis", colorbar_label="factor 7",
                       path=out, segments=[("QRS", 0.2, 0.3), ("ST", 0.3, 0.45)])
    assert out.stat().st_size > 0
    panels = [ax for ax in fig.axes if any(c.get_gid() == f"overlay:{lead}" for c in ax.collections for lead in STANDARD_LEADS)]
    assert len(panels) == 12
    expected = matplotlib.colormaps["viridis"](np.array([0.0, 0.25, 0.75, 1.0]))
    for ax in panels:
        (coll,) = [c for c in ax.collections if isinstance(c, LineCollection) and str(c.get_gid()).startswith("overlay:")]
        colors = coll.get_colors()
        assert len(coll.get_segments()) == 4
        assert len({tuple(c) for c in np.round(colors, 6)}) == 4
        np.testing.assert_allclose(colors, expected)
        assert sorted(p.get_gid() for p in ax.patches if str(p.get_gid()).startswith("segment:")) == ["segment:QRS", "segment:ST"]
    colorbar_axes = [ax for ax in fig.axes if ax.get_ylabel() == "factor 7"]
    assert len(colorbar_axes) == 1
    with pytest.raises(ValueError, match="one value per beat"):
        plot_overlay(seq, FS, STANDARD_LEADS, values[:3])
