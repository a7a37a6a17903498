"""Sweeps on Ray Tune end to end: nested MLflow runs, the multi-objective searcher, resume and extend,
ablations, and search-space validation (the last without Ray)."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from coded_resnext.orchestration.cli import main
from coded_resnext.orchestration.search_space import SearchSpaceError, load_search_space

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parents[1]


def _space(tmp_path: Path, name: str, search: dict, tune: dict, **config) -> Path:
    doc = {
        "base": str(ROOT / "search_spaces" / "quickstart_train.yaml"),
        "config": {
            "data": {"name": "synthetic", "ood": None},
            "train": {"epochs": 2},
            "tracking": {"experiment": name, "log_model": False},
            **config,
        },
        "search": search,
        "tune": {"name": name, **tune},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _runs(uri: str, experiment: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id]) if exp else []


def _steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


# ---- validation before launch (no Ray) ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("search", "tune", "message"),
    [
        ({"loss.mu": {"uniform": [3, 1]}}, {}, "low < high"),
        ({"loss.nope": {"choice": [1]}}, {}, "loss.nope: unknown key"),
        ({"loss.p_drop": {"choice": [0.1, 1.5]}}, {}, "p_drop"),
        ({"coding.c3": {"choice": ["paper:cifar100/8/20"]}}, {}, "100"),  # 100-class scheme, 10 classes
        ({"seed": {"grid": [0, 1]}}, {"algorithm": "nsga2"}, "grid values need"),
        ({"loss.mu": {"normal": [0, 1]}}, {}, "unknown domain"),
        ({"loss.mu": {"choice": [1]}}, {"algorithm": "annealing"}, "tune.algorithm"),
        ({"train.num_workers": {"choice": [1, 3]}}, {}, "split evenly"),
    ],
)
def test_search_space_is_validated_before_anything_launches(tmp_path, search, tune, message):
    path = _space(tmp_path, "bad", search, tune)
    with pytest.raises(SearchSpaceError, match=message) as err:
        load_search_space(path)
    assert "\n" not in str(err.value)


def test_shipped_search_spaces_load(tmp_path):
    for path in sorted((ROOT / "search_spaces").glob("*.yaml")):
        text = path.read_text()
        if "search:" in text:
            space = load_search_space(path)
            assert space.domains, path
        elif "grid:" in text or "variants:" in text:
            from coded_resnext.orchestration.ablation import load_ablation

            space, metrics = load_ablation(path)
            assert "control" in space.cells and metrics, path


# ---- sweeps on Ray -----------------------------------------------------------------------------------
@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.ray
@pytest.mark.slow
def test_multi_objective_sweep_nests_runs_refuses_rerun_and_extends_with_history(in_tmp, capsys):
    uri = f"sqlite:///{in_tmp / 'mlflow.db'}"
    search = {"loss.mu": {"loguniform": [1, 10]}, "coding.c3": {"choice": ["paper:cifar10/5/10", {"active": 4}]}}
    path = _space(in_tmp, "mo", search, {"algorithm": "nsga2", "num_samples": 2, "max_concurrent_trials": 2})
    assert main(["tune", str(path), "--smoke-test", "--tracking-uri", uri]) == 0
    out, progress = capsys.readouterr()  # the result on stdout, the progress lines on stderr
    assert progress.count(" done: ") == 2 and "MLflow parent run" in out

    client, runs = _runs(uri, "mo")
    parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert len(parents) == 1 and len(trials) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.params["tune.algorithm"] == "nsga2"
    for run in trials:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id and run.data.tags["trial_id"]
        for key in ("val/accuracy", "binary/param_fraction", "early_exit/compute_at_99pct_accuracy"):
            assert key in run.data.metrics, key
        assert not [k for k in run.data.metrics if k.startswith("test/")]  # a trial selects: no test split
        assert _steps(client, run.info.run_id, "val/accuracy") == [0, 1]
    assert {r.data.params["loss.mu"] for r in trials}.__len__() == 2  # the searcher sampled two points

    # Running it again is refused, with the way out in one line.
    assert main(["tune", str(path), "--smoke-test", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert "--resume" in err and "--extend" in err and "\n" not in err
    # ... but a sweep of the same name in another storage path and store starts afresh: nothing is shared
    import dataclasses

    from coded_resnext.orchestration.sweep import Sweep

    elsewhere = load_search_space(path)
    elsewhere.tune = dataclasses.replace(elsewhere.tune, storage_path=str(in_tmp / "elsewhere"))
    assert Sweep(elsewhere, f"sqlite:///{in_tmp / 'other.db'}", smoke_test=True).check() == ([], None)

    # Extending adds trials under the same parent; the Optuna study holds the earlier ones too.
    assert main(["tune", str(path), "--smoke-test", "--tracking-uri", uri, "--extend", "1"]) == 0
    client, runs = _runs(uri, "mo")
    trials = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert len(trials) == 3 and {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    assert not [r for r in runs if r.info.status == "RUNNING"]
    import optuna

    from coded_resnext.orchestration.searcher import carried_storage

    # the study travelled with the Tune experiments (their searcher checkpoints), not beside the driver
    assert not (in_tmp / "runs" / "tune").exists()
    (summary,) = optuna.study.get_all_study_summaries(carried_storage(str(in_tmp / "runs" / "ray" / "mo-ext1")))
    assert summary.n_trials == 3
    assert "searcher's study: with the Tune experiment" in capsys.readouterr().out

    # The finished sweep's front, measured once on the test split; its parent gets val beside test.
    capsys.readouterr()
    assert main(["evaluate", "--sweep", "mo", "--front", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    client, runs = _runs(uri, "mo")
    measured = [r for r in runs if r.data.tags.get("role") == "trial" and "test/accuracy" in r.data.metrics]
    assert measured and "test/accuracy" in out and "val/accuracy" in out
    assert all(r.info.status == "FINISHED" and "test/binary/param_fraction" in r.data.metrics for r in measured)
    (parent,) = [r for r in runs if r.data.tags.get("role") == "sweep"]
    assert parent.info.status == "FINISHED" and "front_test.csv" in [
        a.path for a in client.list_artifacts(parent.info.run_id)
    ]
    assert main(["evaluate", "--sweep", "mo", "--front", "--tracking-uri", uri]) == 2  # once
    assert "already has test figures" in capsys.readouterr().err


@pytest.mark.ray
@pytest.mark.slow
def test_ablation_runs_cells_and_control_per_seed_and_summarizes(in_tmp, capsys):
    uri = f"sqlite:///{in_tmp / 'mlflow.db'}"
    doc = {
        "base": str(ROOT / "search_spaces" / "quickstart_train.yaml"),
        "config": {
            "data": {"name": "synthetic", "ood": None},
            "train": {"epochs": 1},
            "tracking": {"experiment": "abl", "log_model": False},
            "eval": {"binary_classes": 2},
        },
        "variants": {"c3_off": {"coding.c3": "off"}},
        "seeds": [0, 1],
        "metrics": ["val/accuracy", "train/accuracy", "binary/param_fraction"],
        "tune": {"max_concurrent_trials": 2},
    }
    path = in_tmp / "abl.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["ablate", str(path), "--smoke-test", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    client, runs = _runs(uri, "abl")
    (parent,) = [r for r in runs if r.data.tags.get("role") == "ablation"]
    trials = [r for r in runs if r.data.tags.get("role") == "trial"]
    cells = sorted(
        (r.data.tags["ablation_cell"], r.data.params["seed"], r.data.params["model.control"]) for r in trials
    )
    assert cells == [
        ("c3_off", "0", "False"),
        ("c3_off", "1", "False"),
        ("control", "0", "True"),
        ("control", "1", "True"),
    ]
    assert "ablation_summary.csv" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    import pandas as pd

    table = pd.read_csv(client.download_artifacts(parent.info.run_id, "ablation_summary.csv", str(in_tmp)))
    row = table[(table.cell == "c3_off") & (table.metric == "binary/param_fraction")].iloc[0]
    assert row.n == 2 and row.n_pairs == 2 and row.delta_mean < 0  # coded: a smaller binary classifier
    assert "c3_off" in out and "control" in out
    assert not [k for r in trials for k in r.data.metrics if k.startswith("test/")]  # cells select: no test

    # Every cell and seed measured once on the test split afterwards, with the paired summary of it.
    assert main(["evaluate", "--sweep", "abl", "--all", "--tracking-uri", uri]) == 0
    client, runs = _runs(uri, "abl")
    assert all("test/accuracy" in r.data.metrics for r in runs if r.data.tags.get("role") == "trial")
    test_table = pd.read_csv(client.download_artifacts(parent.info.run_id, "ablation_summary_test.csv", str(in_tmp)))
    row = test_table[(test_table.cell == "c3_off") & (test_table.metric == "test/binary/param_fraction")].iloc[0]
    assert row.n_pairs == 2 and row.delta_mean < 0
    assert "test/train/accuracy" not in set(test_table.metric)  # a training figure has no test counterpart


@pytest.mark.ray
@pytest.mark.slow
def test_killed_driver_resumes_without_rerunning_finished_trials(in_tmp):
    uri = f"sqlite:///{in_tmp / 'mlflow.db'}"
    search = {"loss.mu": {"choice": [1.0, 3.0, 6.0]}}
    path = _space(
        in_tmp, "resume", search, {"algorithm": "grid", "max_concurrent_trials": 1}, **{"eval": {"binary_classes": 2}}
    )
    command = [
        sys.executable,
        "-m",
        "coded_resnext.orchestration.cli",
        "tune",
        str(path),
        "--smoke-test",
        "--tracking-uri",
        uri,
        "--num-cpus",
        "1",
    ]
    driver = subprocess.Popen(
        command, cwd=in_tmp, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # kill once one trial has finished and another has started
            if driver.poll() is not None:
                pytest.fail("the sweep finished before it could be interrupted")
            _, runs = _runs(uri, "resume")
            trials = [r for r in runs if r.data.tags.get("role") == "trial"]
            if any(r.info.status == "FINISHED" for r in trials) and len(trials) >= 2:
                break
            time.sleep(1)
        else:
            pytest.fail("no trial finished in time")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started (its session)
        driver.wait()
    client, runs = _runs(uri, "resume")
    finished_before = {
        r.data.tags["trial_id"]: r.info.run_id
        for r in runs
        if r.data.tags.get("role") == "trial" and r.info.status == "FINISHED"
    }

    resumed = subprocess.run([*command, "--resume"], cwd=in_tmp, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    client, runs = _runs(uri, "resume")
    trials = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert sorted(r.data.params["loss.mu"] for r in trials) == ["1.0", "3.0", "6.0"]  # one run per trial
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert all(r.info.status == "FINISHED" for r in runs)
    for trial_id, run_id in finished_before.items():  # finished trials were not re-run
        assert resumed.stdout.count(trial_id) <= 1
        assert _steps(client, run_id, "val/accuracy") == [0, 1]
    for run in trials:
        assert _steps(client, run.info.run_id, "train/loss") == [0, 1]  # no step logged twice


def test_asha_stops_on_the_epoch_counter_and_never_cuts_the_final_report(tmp_path):
    from coded_resnext.orchestration.sweep import Sweep

    tune = {"algorithm": "optuna", "scheduler": "asha", "grace_period": 1, "num_samples": 4}
    space = load_search_space(_space(tmp_path, "asha", {"loss.mu": {"uniform": [1, 8]}}, tune))
    scheduler = Sweep(space, f"sqlite:///{tmp_path / 'x.db'}")._scheduler()
    assert scheduler._time_attr == "epoch" and scheduler._metric == "val/accuracy" and scheduler._mode == "max"
    assert scheduler._max_t == space.base_config().train.epochs + 1  # the last epoch carries the suite's metrics
