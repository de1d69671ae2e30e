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
    load_classifier_adapter,
    load_qlst,
    load_vae_checkpoint,
    optimize_latent,
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


def test_optimizer_baseline_hits_targets(toy):
    vae, clf, qlst, _ = toy
    z, s, _ = held_out(60, seed=3)
    q = torch.linspace(0.2, 0.8, 60)
    ex = optimize_latent(vae, clf, z, s, q, qlst.config, steps=100, lr=0.05)
    assert success_rate(ex.score_after.numpy(), q.numpy()) >= 0.8
    assert torch.allclose(ex.z, z + ex.dz)


def test_evaluate_queries_compares_methods(toy):
    vae, _, qlst, _ = toy
    z, s, q = held_out(100)
    with torch.no_grad():
        real = vae.decode(torch.randn(50, 4))
    res = evaluate_queries(qlst, z, s, q, real_beats=real, baseline_steps=50)
    for name in ("qlst", "optimize"):
        r = res[name]
        assert 0 <= r["success_rate"] <= 1 and r["proximity_uv"] > 0 and np.isfinite(r["prior_log_density"])
        assert r["consistency_uv"] > 0 and r["queries"] == 100
    assert res["speedup"] > 5
    assert res["real_consistency_uv"] > 0


def test_query_dataset_and_targets():
    z = torch.randn(10, 3)
    a = QueryDataset(z, 2, 50, 0.3, seed=5)
    b = QueryDataset(z, 2, 50, 0.3, seed=5)
    for i in (0, 17, 49):
        assert all(torch.equal(x, y) for x, y in zip(a[i], b[i]))
    item = QueryDataset(z, 2, 5, 0.3, r_peaks=torch.zeros(10, 4, dtype=torch.long))[0]
    assert len(item) == 4 and item[3].shape == (4,)
    q = sample_targets(20000, 1.0, torch.Generator().manual_seed(0))
    assert ((q <= 0.1) | (q >= 0.9)).all()
    q = sample_targets(20000, 0.0, torch.Generator().manual_seed(0))
    assert abs(float(q.mean()) - 0.5) < 0.02


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


def test_explanation_through_a_record_classifier(tmp_path):
    """A 10-s baseline classifier is explained via re-synthesis at the record's own R peaks."""
    from ecglens.models.baseline.config import BaselineConfig
    from ecglens.models.baseline.xresnet1d import XResNet1d, XResNetConfig
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
