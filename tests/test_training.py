"""Training one run end to end on synthetic data: MLflow contents, checkpoints, resume, determinism."""

import dataclasses
import os
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

import coded_resnext.orchestration.build as build
import coded_resnext.orchestration.sessions as sessions
import coded_resnext.orchestration.training as training
from coded_resnext.orchestration.checkpoint import list_checkpoints, load_checkpoint
from coded_resnext.orchestration.config import load_config, smoke_test_config

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
pytestmark = pytest.mark.slow


def _cfg(tmp_path: Path, *extra: str):
    overrides = [
        "data.name=synthetic",
        "data.ood=digits",
        "train.progress=none",
        "train.epochs=2",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "tracking.experiment=test",
        *extra,
    ]
    return smoke_test_config(load_config(None, overrides))


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default artifact root runs/artifacts lands in tmp


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished smoke run shared by the tests that only read it."""
    tmp_path = tmp_path_factory.mktemp("trained")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        cfg = _cfg(tmp_path)
        yield cfg, training.fit(cfg, checkpoint_root=tmp_path / "ckpt")
    finally:
        os.chdir(cwd)


def test_run_logs_metrics_params_artifacts_and_a_loadable_model(trained):
    cfg, result = trained
    client = MlflowClient(cfg.tracking.uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["role"] == "trial" and run.data.tags["experiment_hash"] == cfg.experiment_hash
    params = run.data.params
    assert params["model.name"] == "coded_resnext_mini" and params["loss.mu"] == "6.0"
    assert params["data.name"] == "synthetic" and params["train.epochs"] == "2" and params["seed"] == "0"
    assert len(params["scheme.c3"]) == 16
    metrics = run.data.metrics
    for key in (
        "train/loss",
        "train/coding_loss",
        "val/accuracy",
        "val/loss",
        "val/decode_accuracy/block_3",
        "binary/param_fraction",
        "binary/param_fraction_paper",
        "binary/f1_mean",
        "binary/precision_mean",
        "binary/recall_mean",
        "binary/ood_precision_mean",
        "binary/refit_f1_mean",
        "binary/refit_ood_precision_mean",
        "binary/full_f1_mean",
        "binary/full_logit_f1_mean",
        "early_exit/compute_at_99pct_accuracy",
        "removal/active_drop",
        "removal/inactive_drop",
        "invariance/decode_agreement/block_0",
        "invariance/energy_cosine/block_3",
        # a single run measures the test split once, at its end, with what train and val fixed
        "test/accuracy",
        "test/loss",
        "test/decode_accuracy/block_3",
        "test/binary/f1_mean",
        "test/binary/refit_f1_mean",
        "test/early_exit/compute_at_99pct_accuracy",
        "test/early_exit/accuracy_kept_at_99pct",
        "test/removal/active_drop",
        "time/train_s",  # where the run's time went: all epochs' training, and the end-of-run suite
        "time/evaluation_s",
    ):
        assert key in metrics, key
    epochs = sum(m.value for m in client.get_metric_history(result.run_id, "time/epoch_seconds"))
    assert metrics["time/train_s"] == pytest.approx(epochs) and metrics["time/evaluation_s"] > 0
    assert [m.step for m in client.get_metric_history(result.run_id, "test/accuracy")] == [1]  # the last epoch only
    assert "coded-resnext train" in run.data.tags["test_evaluated"]
    # the roles' sizes (smoke limits: 512 train images, 256 val, 256 test)
    assert (params["data.val_fraction"], params["data.train_size"]) == ("0.1", "512")
    assert (params["data.val_size"], params["data.test_size"]) == ("200", "256")
    assert [m.step for m in client.get_metric_history(result.run_id, "val/accuracy")] == [0, 1]
    assert 0.45 < metrics["binary/param_fraction"] < 0.55
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "coding_schemes.json", "plots", "tables", "checkpoint"} <= artifacts
    plots = {Path(a.path).name for a in client.list_artifacts(result.run_id, "plots")}
    assert {
        "early_exit_curve.png",
        "binary_precision_recall.png",
        "binary_score_histograms.png",
        "removal_curves.png",
        "energy_heatmap_block_0.png",
    } <= plots
    tables = {Path(a.path).name for a in client.list_artifacts(result.run_id, "tables")}
    assert {"binary_classifiers.csv", "early_exit_curve.csv", "binary_score_histograms.csv"} <= tables
    assert {
        "test_binary_classifiers.csv",
        "test_early_exit_curve.csv",
        "test_early_exit_operating_points.csv",
    } <= tables
    # the logged model loads back and computes what the trained model computes
    mlflow.set_tracking_uri(cfg.tracking.uri)
    model_uri = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")[0].model_uri
    loaded = mlflow.pytorch.load_model(model_uri)
    state = load_checkpoint(list_checkpoints(result.checkpoint_dir)[-1])
    original = build.model_from_checkpoint(state)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), original(x), rtol=1e-4, atol=1e-5)


def test_resume_continues_the_same_run_without_duplicate_steps_and_same_final_metrics(tmp_path, monkeypatch):
    reference = training.fit(_cfg(tmp_path, "tracking.experiment=reference"), checkpoint_root=tmp_path / "a")

    cfg = _cfg(tmp_path, "tracking.experiment=interrupted")
    real_save = sessions.save_checkpoint  # the local session's checkpoint write

    def crash_after_first_checkpoint(directory, epoch, state):
        real_save(directory, epoch, state)
        raise KeyboardInterrupt  # as if killed right after epoch 0's checkpoint

    monkeypatch.setattr(sessions, "save_checkpoint", crash_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        training.fit(cfg, checkpoint_root=tmp_path / "b")
    monkeypatch.setattr(sessions, "save_checkpoint", real_save)
    with pytest.raises(training.UserError, match="pass --resume"):
        training.fit(cfg, checkpoint_root=tmp_path / "b")
    resumed = training.fit(cfg, resume=True, checkpoint_root=tmp_path / "b")

    client = MlflowClient(cfg.tracking.uri)
    runs = client.search_runs([client.get_experiment_by_name("interrupted").experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id == resumed.run_id and runs[0].info.status == "FINISHED"
    for key in ("val/accuracy", "train/loss"):
        steps = [m.step for m in client.get_metric_history(resumed.run_id, key)]
        assert sorted(steps) == [0, 1], (key, steps)
    for key, value in reference.metrics.items():
        if not key.startswith("time/"):
            assert resumed.metrics[key] == pytest.approx(value, abs=1e-6), key


def test_same_seed_gives_identical_metrics(tmp_path):
    cfg = _cfg(tmp_path, "train.epochs=1", "tracking.log_model=false")
    one = training.fit(cfg, checkpoint_root=tmp_path / "x")
    two = training.fit(dataclasses.replace(cfg), checkpoint_root=tmp_path / "y")
    differing = {k for k in one.metrics if not k.startswith("time/") and one.metrics[k] != two.metrics[k]}
    assert not differing


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(training.UserError, match="no checkpoint"):
        training.fit(_cfg(tmp_path), resume=True, checkpoint_root=tmp_path / "none")


@pytest.mark.parametrize("source", ["checkpoint", "run-id"])
def test_extract_writes_the_binary_classifier_of_a_trained_run(trained, tmp_path, source):
    from coded_resnext.orchestration.cli import main

    cfg, result = trained
    checkpoint = list_checkpoints(result.checkpoint_dir)[-1]
    out = tmp_path / "class2.pt2"
    where = ["--checkpoint", str(checkpoint)] if source == "checkpoint" else ["--run-id", result.run_id]
    assert main(["extract", *where, "--class", "2", "--out", str(out), "--tracking-uri", cfg.tracking.uri]) == 0
    binary = torch.export.load(out).module()
    model = build.model_from_checkpoint(load_checkpoint(checkpoint))
    x = torch.randn(5, 1, 28, 28)
    expected = model.forward_with_aux(x, keep_paths_of=2).logits[:, 2]
    torch.testing.assert_close(binary(x), expected, rtol=1e-4, atol=1e-5)


def test_extract_refit_writes_the_classifier_refit_on_the_runs_training_data(trained, tmp_path, capsys):
    import yaml

    from coded_resnext import extract_binary_classifier
    from coded_resnext.datasets import build_dataset
    from coded_resnext.evaluation import collect
    from coded_resnext.evaluation.binary import fit_binary_classifiers
    from coded_resnext.evaluation.refit import with_score_row
    from coded_resnext.evaluation.suite import binary_fit_set
    from coded_resnext.orchestration.cli import main
    from coded_resnext.orchestration.config import config_from_dict

    _, result = trained
    checkpoint = list_checkpoints(result.checkpoint_dir)[-1]
    out = tmp_path / "class2_refit.pt2"
    args = ["extract", "--checkpoint", str(checkpoint), "--class", "2", "--out", str(out), "--refit"]
    assert main([*args, "--refit-samples", "300"]) == 0
    assert "output row refit on 300 training samples" in capsys.readouterr().out
    state = load_checkpoint(checkpoint)
    model = build.model_from_checkpoint(state)
    cfg = config_from_dict(yaml.safe_load(state["config"]))
    binary = extract_binary_classifier(model, 2)
    # the row the run's suite refits: its augmented fit sample, 9 negatives per positive over 10 draws
    data = build.suite_data(build_dataset(build.data_spec(cfg)), cfg, test=False)
    fit_set = binary_fit_set(data, dataclasses.replace(cfg.eval, binary_fit_samples=300), cfg.seed)
    cpu = torch.device("cpu")
    (fitted,) = fit_binary_classifiers(model, [2], fit_set, data.loader, collect(model, data.loader(fit_set), cpu), cpu)
    expected = with_score_row(binary, *fitted.refit_row)
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(torch.export.load(out).module()(x), expected(x))
        assert not torch.allclose(expected(x), binary(x), atol=1e-3)
    assert (
        main(["extract", "--checkpoint", str(checkpoint), "--class", "2", "--out", str(out), "--refit-samples", "300"])
        == 2
    )
    assert "--refit-samples 300: give it with --refit" in capsys.readouterr().err


def test_extract_rejects_a_class_out_of_range(trained, tmp_path, capsys):
    from coded_resnext.orchestration.cli import main

    _, result = trained
    checkpoint = list_checkpoints(result.checkpoint_dir)[-1]
    assert main(["extract", "--checkpoint", str(checkpoint), "--class", "10", "--out", str(tmp_path / "x.pt2")]) == 2
    assert "--class 10 out of range" in capsys.readouterr().err


def test_a_trial_never_measures_the_test_split(tmp_path):
    """Only a single run's end (and ``evaluate``) measures test: a search's trials select, so they must not."""
    from coded_resnext.orchestration.lineage import Lineage

    cfg = _cfg(tmp_path, "train.epochs=1", "tracking.log_model=false")
    session = sessions.LocalSession(tmp_path / "ckpt", False, 1)
    result = training.train_loop(cfg, session, Lineage(), training.Progress("none", 1))  # as a trial runs it
    assert "val/accuracy" in result.metrics and "binary/f1_mean" in result.metrics
    assert not [k for k in result.metrics if k.startswith("test/")]
    run = MlflowClient(cfg.tracking.uri).get_run(result.run_id)
    assert not [k for k in run.data.metrics if k.startswith("test/")] and "test_evaluated" not in run.data.tags


def test_evaluate_measures_a_run_once_and_again_only_with_force(trained, capsys, tmp_path):
    from coded_resnext.orchestration.cli import main

    cfg, result = trained
    client = MlflowClient(cfg.tracking.uri)
    before = client.get_run(result.run_id).data.metrics["test/accuracy"]
    args = ["evaluate", "--run-id", result.run_id, "--tracking-uri", cfg.tracking.uri]
    assert main(args) == 2  # the train run's end measured it already
    assert "already has test figures" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert "test/accuracy" in capsys.readouterr().out
    run = client.get_run(result.run_id)
    history = client.get_metric_history(result.run_id, "test/accuracy")
    assert sorted(m.step for m in history) == [1, 2]  # the new measurement beside the first, not over it
    assert run.data.metrics["test/accuracy"] == pytest.approx(before)  # same model, same data: same figure
    assert run.info.status == "FINISHED" and "--force" in run.data.tags["test_evaluated"]
    # measured at what train and val chose: the training samples' thresholds, the val curve's operating points
    tables = Path(client.download_artifacts(result.run_id, "tables", str(tmp_path)))
    for val_table, key in (("binary_classifiers", "class"), ("early_exit_operating_points", "operating_point")):
        chosen = pd.read_csv(tables / f"{val_table}.csv").set_index(key)["threshold"]
        used = pd.read_csv(tables / f"test_{val_table}.csv").set_index(key)["threshold"]
        assert len(chosen) >= 2, val_table
        pd.testing.assert_series_equal(used.sort_index(), chosen.sort_index(), check_exact=False, rtol=1e-6)
