"""qLST on a tiny VAE and a toy classifier whose score is a known function of the beat."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from ecglens.beats import ecg_simulate
from ecglens.errors import ECGError
import ecglens
from ecglens.io.leads import STANDARD_LEADS
from ecglens.io.record import ECG
from ecglens.models.factorecg import (
    BeatClassifier,
    BeatClassifierConfig,
    FactorVAE,
    FactorVAEConfig,
)
from ecglens.models.factorecg.data import BeatSettings
from ecglens.models.qlst import (
    QLST,
    CallableAdapter,
    QLSTConfig,
    QueryDataset,
    TraversalNetwork,
    evaluate_queries,
    learnable_statements,
    line_search,
    load_classifier_adapter,
    load_qlst,
    load_vae_checkpoint,
    nearest_real_uv,
    nn_two_sample_accuracy,
    optimize_latent,
    realism_to_real,
    sample_targets,
    success_rate,
    train_qlst,
)
from ecglens.preprocess import Pipeline, Resample
from ecglens.training import load_checkpoint, save_checkpoint

SETTINGS = BeatSettings(beat_rate=50.0, before=0.4, after=0.4)  # 40 samples, R at 20
R = SETTINGS.r_index


def tiny_vae():
    torch.manual_seed(0)
    cfg = FactorVAEConfig(beat_samples=SETTINGS.beat_samples, sampling_rate=SETTINGS.beat_rate, latent_dim=4,
                          channels=(8, 8), kernel_sizes=(5, 3), hidden_dim=16)
    return FactorVAE(cfg).eval()


@pytest.fixture(scope="module")
def toy():
    """A tiny VAE, latents, and a classifier scoring sigmoid of lead II's amplitude at R (standardised)."""
    torch.set_num_threads(1)
    vae = tiny_vae()
    z = torch.randn(2000, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feat = vae.decode(z)[:, 1, R]
    m, s = float(feat.mean()), float(feat.std())

    def qrs_amplitude_score(beats, context=None):
        return torch.sigmoid(2.0 * (beats[:, 1, R:R + 1] - m) / s)

    clf = CallableAdapter(qrs_amplitude_score, ["QRSII"])
    cfg = QLSTConfig(statements=("QRSII",), latent_dim=4, hidden=(64, 64), epochs=6, batch_size=64,
                     queries_per_epoch=2048, val_queries=256, patience=None, lr=3e-3)
    qlst, result = train_qlst(vae, clf, z[:1500], z[1500:], cfg, progress=False)
    return vae, clf, qlst, result


def held_out(n=300, seed=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.zeros(n, dtype=torch.long), torch.rand(n, generator=g)


def test_untrained_network_leaves_the_beat():
    cfg = QLSTConfig(statements=("A", "B"), latent_dim=4)
    net = TraversalNetwork(cfg)
    dz = net(torch.randn(5, 4), torch.rand(5, 2), torch.tensor([0, 1, 0, 1, 0]), torch.rand(5))
    assert torch.equal(dz, torch.zeros(5, 4))


def test_each_move_reads_the_score_of_the_beat_reached_so_far():
    vae = tiny_vae()
    step = torch.tensor([0.5, -0.25, 0.0, 1.0])
    seen = []

    class Recorder(torch.nn.Module):  # a fixed step that records the (z, scores) it is shown
        def forward(self, z, scores, statement, q):
            seen.append((z.clone(), scores.clone()))
            return step.expand_as(z)

    clf = CallableAdapter(lambda beats, context=None: torch.sigmoid(beats[:, 1, R:R + 1]), ["B"])
    qlst = QLST(TraversalNetwork(QLSTConfig(statements=("B",), latent_dim=4, moves=3)), vae, clf)
    z = torch.randn(5, 4)
    x0, s0, z_end = qlst.traverse(z, torch.zeros(5, dtype=torch.long), torch.rand(5), network=Recorder())
    assert torch.allclose(z_end, z + 3 * step)
    assert len(seen) == 3
    for k, (zk, sk) in enumerate(seen):
        assert torch.allclose(zk, z + k * step)
        with torch.no_grad():
            assert torch.allclose(sk, torch.sigmoid(vae.decode(zk)[:, 1, R:R + 1]), atol=1e-6)
    assert torch.allclose(s0, seen[0][1])


@pytest.mark.slow
def test_step_calibration_lands_closer_to_the_target_along_the_same_direction(toy):
    vae, clf, trained, _ = toy
    z, s, q = held_out(200, seed=3)
    raw = QLST(trained.network, vae, clf, replace(trained.config, calibration_steps=0))
    calibrated = QLST(trained.network, vae, clf, replace(trained.config, calibration_steps=8))
    a, b = raw.explain(z, s, q), calibrated.explain(z, s, q)
    err_a, err_b = (a.score_after - q).abs(), (b.score_after - q).abs()
    assert torch.all(err_b <= err_a + 1e-6)  # the network's own step is kept unless something lands closer
    assert success_rate(b.score_after.numpy(), q.numpy()) >= success_rate(a.score_after.numpy(), q.numpy())
    # only the length of the step changes, not its direction
    cos = torch.nn.functional.cosine_similarity(a.dz, b.dz, dim=1)
    moved = (a.dz.norm(dim=1) > 1e-6) & (b.dz.norm(dim=1) > 1e-6)
    assert torch.allclose(cos[moved], torch.ones(int(moved.sum())), atol=1e-4)
    scale = b.dz.norm(dim=1)[moved] / a.dz.norm(dim=1)[moved]
    assert float(scale.min()) >= 0 and float(scale.max()) <= trained.config.max_step_scale + 1e-5


@pytest.mark.slow
def test_traversal_network_answers_held_out_queries(toy):
    _, _, qlst, result = toy
    z, s, q = held_out()
    ex = qlst.explain(z, s, q)
    before = success_rate(ex.score_before.numpy(), q.numpy())
    after = success_rate(ex.score_after.numpy(), q.numpy())
    assert before < 0.3  # not moving answers about a fifth of U(0, 1) queries
    assert after > 0.45 and after > 2 * before
    # the achieved score follows the query
    assert np.corrcoef(ex.score_after.numpy(), q.numpy())[0, 1] > 0.8
    assert result.history[-1]["val_success"] > result.history[0]["val_success"]


@pytest.mark.slow
def test_optimizer_baseline_hits_targets(toy):
    vae, clf, qlst, _ = toy
    z, s, _ = held_out(60, seed=3)
    q = torch.linspace(0.2, 0.8, 60)
    ex = optimize_latent(vae, clf, z, s, q, qlst.config, steps=100, lr=0.05)
    assert success_rate(ex.score_after.numpy(), q.numpy()) >= 0.8
    assert torch.allclose(ex.z, z + ex.dz)


@pytest.mark.slow
def test_evaluate_queries_compares_methods_under_the_same_line_search(toy):
    vae, _, qlst, _ = toy
    z, s, q = held_out(100)
    with torch.no_grad():
        real = vae.decode(torch.randn(100, 4))
    records = np.arange(100)
    res = evaluate_queries(qlst, z, s, q, inputs=real, records=records, real=real.numpy(), baseline_steps=50,
                           line_search_steps={"none": 0, "bisection": 6})
    for name in ("qlst", "optimize"):
        for policy, steps in (("none", 0), ("bisection", 6)):
            r = res[name][policy]
            assert 0 <= r["success_rate"] <= 1 and r["proximity_uv"] > 0 and np.isfinite(r["prior_log_density"])
            assert r["consistency_uv"] > 0 and r["queries"] == 100 and r["line_search_steps"] == steps
            assert r["proximity_input_uv"] > 0 and 0 <= r["nn_accuracy"] <= 1 and r["nn_real_uv"] > 0
        # the line search never lands farther from the target than the method's own step
        assert res[name]["bisection"]["mean_abs_error"] <= res[name]["none"]["mean_abs_error"] + 1e-6
    # qLST without the line search is its network alone
    raw = qlst.explain(z, s, q, calibration_steps=0)
    assert res["qlst"]["none"]["success_rate"] == success_rate(raw.score_after.numpy(), q.numpy())
    assert res["speedup"]["none"] > 5


def test_line_search_by_hand():
    # score(a) = 0.2 + 0.3 a (a = 0 is the start): q = 0.35 lies between a = 0 and 1 -> bisection finds a = 0.5;
    # q = 0.65 lies between a = 1 and 2 -> a = 1.5; q = 0.95 is beyond a = 2 -> the top scale; q = 0.5 -> a = 1
    q = torch.tensor([0.35, 0.65, 0.95, 0.5])
    a = line_search(lambda a: 0.2 + 0.3 * a, q, torch.full((4,), 0.2), steps=10, max_scale=2.0)
    assert torch.allclose(a, torch.tensor([0.5, 1.5, 2.0, 1.0]), atol=2e-3)
    # no steps: only a = 1 and a = 2 are tried
    a0 = line_search(lambda a: 0.2 + 0.3 * a, q, torch.full((4,), 0.2), steps=0, max_scale=2.0)
    assert torch.equal(a0, torch.tensor([1.0, 1.0, 2.0, 1.0]))


def test_realism_to_real_by_hand():
    real = np.zeros((4, 1, 2), dtype=np.float32)
    real[:, 0, 0] = [0.0, 1.0, 2.0, 3.0]  # beats on a line: RMSE between rows i and j = |i - j| / sqrt(2) mV
    # a beat made from record 0 that equals record 0's real beat: its nearest *other* real beat is record 1
    got = nearest_real_uv(real[:1], np.array([0]), real)
    assert got[0] == pytest.approx(1e3 / np.sqrt(2), rel=1e-6)
    # beats equal to real ones (each made from another record) cannot be told apart: every nearest neighbour
    # is its twin from the other sample, so the 1-NN accuracy is 0
    shifted = real[[1, 2, 3, 0]]
    assert nn_two_sample_accuracy(shifted, np.arange(4), real) == pytest.approx(0.0)
    # beats far from every real beat are always told apart
    far = real + 100.0
    assert nn_two_sample_accuracy(far, np.arange(4), real) == 1.0
    r = realism_to_real(far, np.arange(4), real)
    assert r["nn_accuracy"] == 1.0 and r["nn_real_ratio"] > 10
    assert r["real_nn_real_uv"] == pytest.approx(1e3 / np.sqrt(2), rel=1e-6)


@pytest.mark.slow
def test_paper_variant_trains_on_input_beats_and_needs_them(toy):
    vae, clf, _, _ = toy
    z = torch.randn(300, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        beats = vae.decode(z) + 0.05 * torch.randn(300, 12, SETTINGS.beat_samples)  # "real" beats: decoded + noise
    cfg = QLSTConfig(statements=("QRSII",), latent_dim=4, hidden=(16,), epochs=1, batch_size=32,
                     queries_per_epoch=64, val_queries=32, patience=None, proximity="paper",
                     proximity_reference="input", w_proximity=30.0, moves=1, calibration_steps=0)
    with pytest.raises(ECGError, match="real beats"):
        train_qlst(vae, clf, z[:200], z[200:], cfg, progress=False)
    _, result = train_qlst(vae, clf, z[:200], z[200:], cfg, beats_train=beats[:200], beats_val=beats[200:],
                           progress=False)
    assert np.isfinite(result.history[-1]["train_loss"])
    # the baseline optimises the same objective: it needs the input beats too
    zq, sq, qq = z[:5], torch.zeros(5, dtype=torch.long), torch.rand(5)
    with pytest.raises(ValueError, match="real beats"):
        optimize_latent(vae, clf, zq, sq, qq, cfg, steps=2)
    ex = optimize_latent(vae, clf, zq, sq, qq, cfg, steps=2, beats=beats[:5])
    assert ex.beats.shape == beats[:5].shape


def test_query_dataset_and_targets():
    z = torch.randn(10, 3)
    a = QueryDataset(z, 2, 50, 0.3, seed=5)
    b = QueryDataset(z, 2, 50, 0.3, seed=5)
    for i in (0, 17, 49):
        assert a[i].keys() == {"z", "statement", "q"} and all(torch.equal(a[i][k], b[i][k]) for k in a[i])
    item = QueryDataset(z, 2, 5, 0.3, r_peaks=torch.zeros(10, 4, dtype=torch.long), beats=torch.ones(10, 12, 7))[0]
    assert item["r_peaks"].shape == (4,) and item["beat"].shape == (12, 7)
    with pytest.raises(ECGError, match="beat rows"):
        QueryDataset(z, 2, 5, 0.3, beats=torch.ones(9, 12, 7))
    q = sample_targets(20000, 1.0, torch.Generator().manual_seed(0))
    assert ((q <= 0.1) | (q >= 0.9)).all()
    q = sample_targets(20000, 0.0, torch.Generator().manual_seed(0))
    assert abs(float(q.mean()) - 0.5) < 0.02


def test_statements_one_beat_cannot_carry_are_left_out_or_refused():
    assert learnable_statements((), ("NORM", "AFIB", "LVH", "PVC", "SR")) == (("NORM", "LVH"), ("AFIB", "PVC", "SR"))
    assert learnable_statements(("LVH",), ("NORM", "LVH")) == (("LVH",), ())
    with pytest.raises(ECGError, match=r"AFIB \(atrial fibrillation\)"):
        learnable_statements(("LVH", "AFIB"), ("NORM", "AFIB", "LVH"))


def _checkpoints(tmp_path):
    vae = tiny_vae()
    vae_dir = save_checkpoint(tmp_path / "vae", vae, {"kind": "factorecg-vae", "vae": vae.config.to_dict(),
                                                       "beat": SETTINGS.to_dict()})
    torch.manual_seed(2)
    labels = ["A", "B"]
    model = BeatClassifier(BeatClassifierConfig.from_vae_config(vae.config, len(labels), dropout=0.0))
    clf_dir = save_checkpoint(tmp_path / "clf", model, {
        "kind": "beat-blackbox", "model": model.config.to_dict(), "beat": SETTINGS.to_dict(), "labels": labels,
        "pipeline": Pipeline((Resample(100.0),)).to_dict(), "training": {"label_prevalence": {"A": 0.3, "B": 0.1}}})
    return vae_dir, clf_dir


@pytest.mark.slow
def test_checkpoint_round_trip_and_explanation(tmp_path):
    vae_dir, clf_dir = _checkpoints(tmp_path)
    vae, vae_id, beat = load_vae_checkpoint(vae_dir)
    adapter, _ = load_classifier_adapter(clf_dir, beat)
    cfg = QLSTConfig(statements=("B",), latent_dim=4, hidden=(16,), epochs=2, batch_size=32, queries_per_epoch=64,
                     val_queries=32, patience=None)
    z = torch.randn(40, 4)
    qlst, _ = train_qlst(vae, adapter, z[:30], z[30:], cfg, run_dir=tmp_path / "run", progress=False,
                         identity={"vae": vae_id, "classifier": adapter.identity, "beat": beat})
    loaded = load_qlst(tmp_path / "run")
    assert loaded.config == cfg
    assert loaded.checkpoint["classifier"]["kind"] == "beat-blackbox"
    zq, sq, qq = held_out(8)
    a, b = qlst.explain(zq, sq, qq), loaded.explain(zq, sq, qq)
    assert torch.allclose(a.dz, b.dz, atol=1e-6) and torch.allclose(a.score_after, b.score_after, atol=1e-6)

    sig, _ = ecg_simulate(duration=10, sampling_rate=500, heart_rate=70, seed=4)
    ecg = ECG(sig, 500.0, STANDARD_LEADS, source="sim")
    model = ecglens.load_model(tmp_path / "run")
    out = tmp_path / "explain"
    explanation = model.explain(ecg, qlst_steps=5)
    written = json.loads(explanation.save(out).read_text())
    assert written["statements"][0]["statement"] == "B"
    sweep = written["statements"][0]["sweep"]
    assert [round(r["q"], 2) for r in sweep] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all(0 <= r["achieved"] <= 1 for r in sweep)
    assert {c["segment"] for c in written["statements"][0]["segments"]} <= {"P", "QRS", "ST", "T"}
    assert (out / written["statements"][0]["figure"]).stat().st_size > 1000
    assert written["classifier"]["path"] == "../../clf"  # stored relative to the qLST checkpoint
    assert (tmp_path / "run" / "model" / written["classifier"]["path"]).resolve() == clf_dir.resolve()
    assert "achieved" in explanation.text

    assert written["refused"] == [] and written["warnings"] == [] and written["statements"][0]["refused"] is False

    # a statement one median beat cannot carry is refused with a reason, not drawn
    refused = model.explain(ecg, statements=["AFIB", "B"], qlst_steps=3)
    assert [r["statement"] for r in refused.data["refused"]] == ["AFIB"] and refused.data["refused"][0]["refused"]
    assert "atrial fibrillation" in refused.data["warnings"][0] and "REFUSED" in refused.text
    assert [e["statement"] for e in refused.data["statements"]] == ["B"] and len(refused.figures) == 1

    s = model.explain(ecg, qlst_target=0.9, qlst_steps=3).data["statements"][0]
    assert s["sweep"][0]["q"] == pytest.approx(s["score_decoded"], abs=1e-6) and s["sweep"][-1]["q"] == pytest.approx(0.9)

    # the network only fits the classifier it was trained with: other weights in that place are refused
    state, config = load_checkpoint(clf_dir)
    save_checkpoint(clf_dir, {k: v + 0.01 for k, v in state.items()}, config)
    with pytest.raises(ECGError, match="other weights"):
        load_qlst(tmp_path / "run")


def test_registered_in_cli():
    from ecglens.models.registry import get_kind, train_commands

    assert "qlst" in train_commands() and get_kind("qlst").explainer == "ecglens.explain.qlst"


@pytest.mark.slow
def test_explanation_through_a_record_classifier(tmp_path):
    """A 10-s baseline classifier is explained via re-synthesis at the record's own R peaks."""
    from ecglens.models.baseline.config import BaselineConfig
    from ecglens.models.xresnet1d import XResNet1d, XResNetConfig
    from ecglens.models.qlst import RecordClassifierAdapter

    vae_dir, _ = _checkpoints(tmp_path)
    recipe = BaselineConfig(model=XResNetConfig(layers=(1, 1), expansion=1, widths=(8, 8), stem=(8, 8, 8),
                                                head_hidden=None, head_dropout=0.0))
    torch.manual_seed(3)
    net = XResNet1d(2, recipe.model)
    clf_dir = save_checkpoint(tmp_path / "baseline", net, {
        "kind": "baseline", "recipe": recipe.to_dict(), "labels": ["A", "B"],
        "pipeline": recipe.base_pipeline().to_dict(), "label_set": "toy"})
    vae, vae_id, beat = load_vae_checkpoint(vae_dir)
    adapter, _ = load_classifier_adapter(clf_dir, beat)
    assert isinstance(adapter, RecordClassifierAdapter) and adapter.identity["kind"] == "baseline"
    cfg = QLSTConfig(statements=("A",), latent_dim=4, hidden=(16,), epochs=1, batch_size=16, queries_per_epoch=16,
                     val_queries=16, patience=None)
    train_qlst(vae, adapter, torch.randn(20, 4), torch.randn(10, 4), cfg, run_dir=tmp_path / "run", progress=False,
               identity={"vae": vae_id, "classifier": adapter.identity, "beat": beat})
    sig, _ = ecg_simulate(duration=10, sampling_rate=500, heart_rate=70, seed=5)
    result = ecglens.load_model(tmp_path / "run").explain(ECG(sig, 500.0, STANDARD_LEADS, source="sim"),
                                                          qlst_steps=3).data
    assert result["scored_on"].startswith("re-synthesised")
    s = result["statements"][0]
    assert 0 <= s["score_record"] <= 1 and 0 <= s["score_beat"] <= 1 and len(s["sweep"]) == 3


@pytest.mark.slow
def test_references_resolve_relative_to_the_checkpoint_not_the_working_directory(tmp_path, monkeypatch):
    """A moved run still loads, and a same-named folder in the working directory cannot stand in."""
    import json
    import shutil

    from ecglens.models.qlst.loading import relative_references
    from ecglens.pretrained import pretrained_dir

    tree = tmp_path / "tree"
    for name in ("qlst", "factorecg", "beat-blackbox"):
        shutil.copytree(pretrained_dir(name), tree / "deps" / name if name != "qlst" else tree / "run" / "model")
    config_path = tree / "run" / "model" / "config.json"
    config = json.loads(config_path.read_text())
    config["vae"]["path"] = str((tree / "deps" / "factorecg").resolve())
    config["classifier"]["path"] = str((tree / "deps" / "beat-blackbox").resolve())
    config = relative_references(config, tree / "run" / "model")
    assert config["vae"]["path"] == "../../deps/factorecg"
    config_path.write_text(json.dumps(config))

    moved = tmp_path / "elsewhere"
    shutil.move(str(tree), str(moved))
    decoy = tmp_path / "cwd"
    (decoy / "deps" / "factorecg").mkdir(parents=True)  # what a lookup from the working directory would find
    (decoy / "deps" / "factorecg" / "config.json").write_text("{}")
    monkeypatch.chdir(decoy)
    qlst = load_qlst(moved / "run")
    assert qlst.config.statements and qlst.record_classifier is not None
