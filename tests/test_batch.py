"""Batch prediction into Parquet parts: same output as Model.predict, resume, shards, Dask and Ray engines."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

import ecglens
from ecglens import batch
from ecglens.errors import ECGError
from ecglens.samples import list_samples, sample_path

MODEL = "baseline"
PART_SIZE = 4


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[str]:
    """The bundled samples plus one unreadable file."""
    bad = tmp_path_factory.mktemp("bad") / "broken.hea"
    bad.write_text("not a WFDB header\n")
    return [str(sample_path(s.ecg_id)) for s in list_samples()] + [str(bad)]


@pytest.fixture(scope="module")
def model():
    return ecglens.load_model(MODEL)


@pytest.fixture(scope="module")
def reference(model, inputs):
    """``Model.predict`` on the readable records, in the sorted order the batch uses."""
    readable = [p for p in sorted(inputs) if not p.endswith("broken.hea")]
    return readable, model.predict([ecglens.read_ecg(p) for p in readable], on_error="skip")


@pytest.fixture(scope="module")
def local_run(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return out, batch.run_batch(MODEL, inputs, out, part_size=PART_SIZE, progress=False)


def _assert_matches(frame, reference) -> None:
    readable, prediction = reference
    rows = frame.set_index("record").loc[readable]
    np.testing.assert_allclose(rows[prediction.labels].to_numpy(), prediction.probabilities, rtol=0, atol=1e-6)
    assert [list(c) for c in rows["called"]] == [sorted(prediction.called(i), key=prediction.labels.index)
                                                 for i in range(len(prediction))]
    assert list(rows["judgeable"]) == [q["judgeable"] for q in prediction.quality]


def test_local_output_equals_model_predict(local_run, reference, inputs):
    out, result = local_run
    frame = batch.read_output(out)
    assert list(frame["record"]) == sorted(inputs)  # every input has a row, in sorted order
    _assert_matches(frame, reference)
    broken = frame[frame["record"].str.endswith("broken.hea")].iloc[0]
    assert broken["problem"] and np.isnan(broken[reference[1].labels].to_numpy(dtype=float)).all()
    assert result.parts_total == result.parts_run == -(-len(inputs) // PART_SIZE)
    assert result.rows == len(inputs)


def test_manifest_lists_parts_and_failures(local_run, inputs):
    out, result = local_run
    manifest = json.loads((out / batch.MANIFEST).read_text())
    assert manifest["parts_total"] == manifest["parts_done"] == len(manifest["parts"]) == result.parts_total
    assert manifest["inputs_total"] == manifest["rows"] == len(inputs)
    failed = [f for e in manifest["parts"] for f in e["failures"]]
    assert [f["record"] for f in failed] == [p for p in inputs if p.endswith("broken.hea")]
    assert failed[0]["problem"] and result.failures == failed
    for entry, part in zip(manifest["parts"], batch.plan_parts(inputs, PART_SIZE)):
        assert entry["input_hash"] == part.input_hash and entry["inputs"] == len(part.paths)
        assert batch.read_entry(out / entry["file"]) == entry


def test_rerun_skips_finished_parts(local_run, inputs):
    out, _ = local_run
    again = batch.run_batch(MODEL, inputs, out, part_size=PART_SIZE, progress=False)
    assert again.parts_run == 0 and again.parts_skipped == again.parts_total


def test_killed_run_resumes_only_missing_parts(inputs, tmp_path, monkeypatch, reference):
    real, calls = batch.write_part, []

    def killed_at_part_2(model, part, outdir, model_name):
        if part.index == 2:
            raise KeyboardInterrupt  # the run dies here, as a kill would
        calls.append(part.index)
        return real(model, part, outdir, model_name)

    monkeypatch.setattr(batch, "write_part", killed_at_part_2)
    with pytest.raises(KeyboardInterrupt):
        batch.run_batch(MODEL, inputs, tmp_path, part_size=PART_SIZE, progress=False)
    assert calls == [0, 1]
    manifest = json.loads((tmp_path / batch.MANIFEST).read_text())
    assert [e["status"] for e in manifest["parts"]] == ["done", "done", "pending", "pending"]

    def counted(model, part, outdir, model_name):
        calls.append(part.index)
        return real(model, part, outdir, model_name)

    monkeypatch.setattr(batch, "write_part", counted)
    calls.clear()
    result = batch.run_batch(MODEL, inputs, tmp_path, part_size=PART_SIZE, progress=False)
    assert calls == [2, 3] and result.parts_skipped == 2 and result.parts_run == 2
    _assert_matches(batch.read_output(tmp_path), reference)


def test_failed_part_is_listed_and_retried(inputs, tmp_path, monkeypatch):
    real = batch.write_part

    def broken_part_1(model, part, outdir, model_name):
        if part.index == 1:
            raise RuntimeError("disk full")
        return real(model, part, outdir, model_name)

    monkeypatch.setattr(batch, "write_part", broken_part_1)
    with pytest.raises(ECGError, match=r"part-000001\.parquet: part-000001: RuntimeError: disk full"):
        batch.run_batch(MODEL, inputs, tmp_path, part_size=PART_SIZE, progress=False)
    manifest = json.loads((tmp_path / batch.MANIFEST).read_text())
    assert [e["status"] for e in manifest["parts"]] == ["done", "error", "done", "done"]
    monkeypatch.setattr(batch, "write_part", real)
    assert batch.run_batch(MODEL, inputs, tmp_path, part_size=PART_SIZE, progress=False).parts_run == 1


def test_shards_partition_the_parts(inputs, tmp_path):
    parts = batch.plan_parts(inputs, 3)
    for n in (1, 2, 3, 7):
        shards = [batch.shard_parts(parts, (k, n)) for k in range(1, n + 1)]
        indices = sorted(p.index for s in shards for p in s)
        assert indices == list(range(len(parts)))  # every part once, in exactly one shard
    taken = [batch.run_batch(MODEL, inputs, tmp_path, part_size=3, shard=(k, 2), progress=False) for k in (1, 2)]
    assert [t.parts_run for t in taken] == [len(batch.shard_parts(parts, (k, 2))) for k in (1, 2)]
    manifest = json.loads((tmp_path / batch.MANIFEST).read_text())
    assert manifest["parts_done"] == len(parts) and manifest["rows"] == len(inputs)


def test_plan_is_deterministic_and_refuses_other_settings(inputs, local_run):
    assert batch.plan_parts(inputs, PART_SIZE) == batch.plan_parts(reversed(inputs), PART_SIZE)
    out, _ = local_run
    with pytest.raises(ECGError, match="part_size"):
        batch.run_batch(MODEL, inputs, out, part_size=PART_SIZE + 1, progress=False)
    with pytest.raises(ECGError, match="K/N"):
        batch.parse_shard("3/2")
    with pytest.raises(ECGError, match="no such file"):
        batch.run_batch(MODEL, ["/nonexistent/records"], out, part_size=PART_SIZE, progress=False)


def test_cli(inputs, tmp_path, monkeypatch, capsys):
    from ecglens import cli
    from ecglens.cli import predict_batch

    monkeypatch.setitem(cli.COMMANDS, "predict-batch", "batch prediction")
    parser = argparse.ArgumentParser()
    predict_batch.register(parser.add_subparsers())
    args = parser.parse_args(["predict-batch", MODEL, *inputs, "-o", str(tmp_path), "--part-size", "5",
                              "--shard", "1/1", "--no-progress"])
    assert args.func(args) == 2  # the broken file is counted
    err = capsys.readouterr().err
    assert "broken.hea" in err and "1 of 13 file(s)" in err
    assert len(list(tmp_path.glob("part-*.parquet"))) == 3


@pytest.mark.slow
def test_dask_two_workers_same_output(inputs, local_run, tmp_path):
    from dask.distributed import LocalCluster

    local = batch.read_output(local_run[0])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        result = batch.run_batch(MODEL, inputs, tmp_path, engine="dask", part_size=PART_SIZE,
                                 scheduler=cluster.scheduler_address, progress=False)
    assert result.parts_run == result.parts_total
    dask = batch.read_output(tmp_path)
    labels = [c for c in local.columns if c not in ("record", "called", "judgeable", "quality_flags", "problem")]
    assert list(dask["record"]) == list(local["record"])
    np.testing.assert_allclose(dask[labels].to_numpy(), local[labels].to_numpy(), rtol=0, atol=1e-6)
    assert dask.drop(columns=labels).astype(str).equals(local.drop(columns=labels).astype(str))


@pytest.mark.slow
def test_ray_actor_pool_same_output(inputs, local_run, tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'ecglens[ray]')")
    local = batch.read_output(local_run[0])
    result = batch.run_batch(MODEL, inputs, tmp_path, engine="ray", workers=2, part_size=PART_SIZE, progress=False)
    assert result.parts_run == result.parts_total
    assert batch.read_output(tmp_path).astype(str).equals(local.astype(str))
