"""``extract --early-exit`` and ``bench early-exit``: the operating point read off a run's validation
curve, the archive written, logged to the run and registered, and the benchmark's figures."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from coded_resnext.orchestration.cli import main
from coded_resnext.orchestration.errors import UserError
from coded_resnext.orchestration.operating_point import operating_point, parse_threshold

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

CURVE = [
    {"threshold": 0.1, "accuracy": 0.70, "compute_fraction": 0.40, "exit_rate": 0.95},
    {"threshold": 0.3, "accuracy": 0.895, "compute_fraction": 0.55, "exit_rate": 0.70},
    {"threshold": 0.4, "accuracy": 0.905, "compute_fraction": 0.60, "exit_rate": 0.60},
    {"threshold": 0.5, "accuracy": 0.905, "compute_fraction": 0.60, "exit_rate": 0.60},
    {"threshold": 0.6, "accuracy": 0.91, "compute_fraction": 0.80, "exit_rate": 0.30},
    {"threshold": math.inf, "accuracy": 0.91, "compute_fraction": 1.0, "exit_rate": 0.0},
]


def test_operating_point_is_the_least_compute_row_keeping_the_share_of_full_accuracy():
    point = operating_point(CURVE, 0.99)  # 0.99 * 0.91 = 0.9009: rows 0.4 and 0.5 qualify at 0.60 compute
    assert point.threshold == 0.5  # of equal compute, the higher threshold (exits less)
    assert (point.accuracy, point.full_accuracy, point.compute_fraction) == (0.905, 0.91, 0.60)
    assert operating_point(CURVE, 0.98).threshold == 0.3
    assert operating_point(CURVE, 1.0).threshold == 0.6
    assert operating_point(CURVE, 0.5).threshold == 0.1
    with pytest.raises(UserError, match="no row at threshold inf"):
        operating_point(CURVE[:-1], 0.99)


def test_parse_threshold():
    assert parse_threshold("0.25") == 0.25 and parse_threshold("inf") == math.inf
    assert parse_threshold("0.3, 0.2,inf,1") == [0.3, 0.2, math.inf, 1.0]
    for bad in ("x", "0.3,,0.2", "nan"):
        with pytest.raises(UserError, match="--threshold"):
            parse_threshold(bad)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One smoke run on synthetic data: a checkpoint and a validation early-exit curve in MLflow."""
    from coded_resnext.orchestration.config import load_config, smoke_test_config
    from coded_resnext.orchestration.training import fit

    tmp = tmp_path_factory.mktemp("run")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        overrides = ["data.name=synthetic", "train.epochs=1", "train.progress=none", f"tracking.uri={uri}"]
        cfg = smoke_test_config(load_config(None, [*overrides, "eval.binary_classes=0", "tracking.log_model=false"]))
        result = fit(cfg, checkpoint_root=tmp / "ckpt")
    finally:
        os.chdir(cwd)
    return uri, result.run_id, tmp


@pytest.mark.slow
def test_extract_early_exit_writes_logs_and_registers_the_operating_point(finished_run, tmp_path, monkeypatch, capsys):
    import mlflow
    from mlflow.tracking import MlflowClient

    from coded_resnext import EarlyExit
    from coded_resnext.early_exit.export import load_early_exit
    from coded_resnext.extraction.fusion import fuse_for_inference
    from coded_resnext.orchestration.build import model_from_checkpoint
    from coded_resnext.orchestration.operating_point import load_run_checkpoint, run_curve

    uri, run_id, run_dir = finished_run
    monkeypatch.chdir(run_dir)  # the run's local artifact store
    out = tmp_path / "early.pt2"
    argv = ["extract", "--run-id", run_id, "--early-exit", "--at-accuracy", "0.98", "--out", str(out)]
    assert main([*argv, "--tracking-uri", uri, "--register", "early-exit-test"]) == 0
    printed = capsys.readouterr().out
    assert "keeping 98% of the full validation accuracy" in printed

    client = MlflowClient(uri)
    point = operating_point(run_curve(client, run_id), 0.98)
    loaded = load_early_exit(out)
    assert loaded.thresholds == [point.threshold] * 4
    assert loaded.manifest["operating_point"]["compute_fraction"] == point.compute_fraction
    logged = {f.path for f in client.list_artifacts(run_id, "early_exit/at-accuracy-0.98")}
    assert logged == {"early_exit/at-accuracy-0.98/early.pt2", "early_exit/at-accuracy-0.98/operating_point.json"}

    model = model_from_checkpoint(load_run_checkpoint(client, run_id, uri))
    x = torch.randn(24, 1, 28, 28)
    expected = EarlyExit(fuse_for_inference(model), point.threshold)(x)
    got = loaded(x)
    assert torch.equal(got.prediction, expected.prediction) and torch.equal(got.exit_block, expected.exit_block)

    mlflow.set_tracking_uri(uri)
    served = mlflow.pyfunc.load_model("models:/early-exit-test/1").predict(x.numpy())
    assert list(served.columns) == ["prediction", "exit_block"]
    assert served["prediction"].tolist() == expected.prediction.tolist()
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_bench_early_exit_on_a_run(finished_run, tmp_path, monkeypatch, capsys):
    uri, run_id, run_dir = finished_run
    monkeypatch.chdir(run_dir)
    out = tmp_path / "bench.json"
    argv = ["bench", "early-exit", "--run-id", run_id, "--tracking-uri", uri, "--samples", "32"]
    argv += ["--samples-at-batch-1", "4", "--batch-sizes", "1", "16", "--rounds", "1", "--json", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert [r["batch_size"] for r in data["rows"]] == [1, 16]
    assert data["operating_point"]["at_accuracy"] == 0.99
    for row in data["rows"]:
        assert 0 < row["flop_fraction"] <= 1 and row["wall_clock_fraction"] > 0
        assert sum(row["exits_per_block"]) == row["samples"]
        assert (row["pooled_fraction"] is None) == (row["batch_size"] == 1)
    assert set(data["accuracy"]) == {"full", "early exit"}
    assert "wall-clock" in capsys.readouterr().out


def test_bench_early_exit_on_a_preset(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "early-exit", "--preset", "coded_resnext_mini", "--samples", "16", "--samples-at-batch-1", "2"]
    argv += ["--batch-sizes", "1", "8", "--rounds", "1", "--warmup", "0", "--image-size", "16", "--exit-rate", "0.5"]
    assert main([*argv, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["rows"][1]["exit_rate"] == pytest.approx(0.5, abs=0.2)
    assert data["operating_point"] is None and len(data["thresholds"]) == 4
