"""The prototype gallery (``explain.gallery``, ``ecglens prototypes``) on the shipped ProtoECGNet."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest

from ecglens.cli import main
from ecglens.errors import ECGError
from ecglens.explain.gallery import GalleryItem, read_gallery, write_gallery
from ecglens.explain.ratings import read_ratings
from ecglens.models.loading import load_any
from ecglens.models.protoecgnet.projection import Gallery


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """``ecglens prototypes protoecgnet -o DIR`` run once, end to end."""
    out = tmp_path_factory.mktemp("gallery") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(["prototypes", "protoecgnet", "-o", str(out), "--no-progress"])
    assert rc == 0
    assert printed.getvalue().startswith("219 prototypes (rhythm 48, morphology 156, global 15; 3 unprojected)")
    return out


@pytest.fixture(scope="module")
def shipped():
    clf, _, directory = load_any("protoecgnet", device="cpu")
    return clf.model.net, Gallery.load(directory)


def test_one_image_per_prototype_and_a_blank_sheet(drawn, shipped):
    net, _ = shipped
    items = read_gallery(drawn)
    assert all(isinstance(i, GalleryItem) for i in items)
    assert len(items) == sum(b.n_prototypes for b in net.branches.values()) == 219
    assert sorted(p.name for p in drawn.glob("*.png")) == sorted(i.image for i in items)
    assert len({i.image for i in items}) == len(items)
    assert all((drawn / i.image).stat().st_size > 5_000 for i in items)
    ratings = read_ratings(drawn / "ratings.csv")
    assert [(r.prototype, r.branch, r.statement) for r in ratings] == [(i.prototype, i.branch, i.statement) for i in items]
    assert all(r.representativeness is None and r.clarity is None and r.comment == "" for r in ratings)
    page = (drawn / "index.html").read_text()
    assert page.count("<img ") == len(items) and all(f'src="{i.image}"' in page for i in items)
    assert json.loads((drawn / "gallery.json").read_text())[0] == vars(items[0])


def test_items_describe_the_model_and_its_sources(drawn, shipped):
    net, gallery = shipped
    items = read_gallery(drawn)
    for item, row, info in zip(items, net.prototype_table(), gallery.prototypes):
        assert item.prototype == f"{row['branch']}/{row['index']}" and item.statement == row["label"]
        assert (item.branch, item.index) == (row["branch"], row["index"])
        if info["projected"]:
            assert item.source_record == str(info["ecg_id"]) and item.statement in item.source_labels
        else:
            assert item.source_record == "" and item.source_labels == []
    assert sum(not i.source_record for i in items) == 3  # the PRC(S) prototypes: no training record carries it


def test_snippets_span_the_receptive_field(drawn, shipped):
    from matplotlib.image import imread

    from ecglens.explain import PANEL_DPI, PANEL_GAP_MM, PANEL_GUTTER_MM, PANEL_MARGIN_MM
    from ecglens.explain.gallery import source_span
    from ecglens.viz import SPEED_MM_S

    net, gallery = shipped
    items = {i.prototype: i for i in read_gallery(drawn)}
    k = next(i for i, p in enumerate(gallery.prototypes) if p["branch"] == "morphology" and p["projected"])
    start, end = source_span(net, "morphology", gallery.prototypes[k]["window"])
    assert 0 < end - start < net.config.n_samples  # a window's receptive field, not the whole record
    seconds = (end - start) / gallery.sampling_rate
    mm = 2 * PANEL_MARGIN_MM + 2 * (PANEL_GUTTER_MM + seconds * SPEED_MM_S) + PANEL_GAP_MM  # limb and chest columns
    morphology = imread(drawn / items[f"morphology/{gallery.prototypes[k]['index']}"].image)
    assert morphology.shape[1] == pytest.approx(mm / 25.4 * PANEL_DPI, abs=2)


def test_bad_input_names_the_file(tmp_path):
    with pytest.raises(ECGError, match="gallery.json"):
        read_gallery(tmp_path)
    (tmp_path / "gallery.json").write_text(json.dumps([{"prototype": "rhythm/0"}]))
    with pytest.raises(ECGError, match=r"gallery.json.*item 0"):
        read_gallery(tmp_path)
    with pytest.raises(ECGError, match="no prototypes"):
        write_gallery("baseline", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_command_starts_without_torch():
    code = ("import sys; from ecglens.cli import build_parser; "
            "build_parser(['prototypes', 'protoecgnet', '-o', 'x']).parse_args(['prototypes', 'protoecgnet', '-o', 'x']); "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
