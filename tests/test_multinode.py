"""The sweep on a cluster that shares no disk (``benchmarks/multinode.py``): a Ray worker node in its own
mount namespace, tracking through an MLflow server (PostgreSQL store, artifacts proxied to an S3 stand-in),
the searcher on PostgreSQL, Tune storage on the S3 stand-in; the driver killed, the sweep resumed by a
fresh driver in another directory, the front evaluated and reported from a third."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(2400)
def test_a_sweep_across_nodes_without_a_shared_disk_survives_its_driver_and_keeps_nothing_local(tmp_path):
    from multinode import TRIALS, unavailable

    if reason := unavailable():
        pytest.skip(reason)
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "multinode.py"), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=2300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    f = json.loads(out.read_text())
    print("FIGURE multinode", json.dumps(f))
    assert f["trials_finished_before_the_kill"] >= 1 and f["interrupted_trial_epochs_before_the_kill"] >= 1
    assert f["resume_exit"] == 0 and f["evaluate_front_exit"] == 0 and f["report_exit"] == 0
    # nothing lost or doubled: one finished run per trial, none re-run, no step twice, none left RUNNING
    assert f["trial_runs"] == f["trial_runs_finished"] == TRIALS
    assert f["finished_trials_run_again"] == 0 and f["metric_steps_logged_twice"] == 0
    assert f["runs_left_running"] == 0
    assert f["interrupted_trial_finished_in_its_own_run"] and f["interrupted_trial_epochs_after"] == [0, 1]
    assert f["optuna_trial_states"].get("COMPLETE") == TRIALS and not f["optuna_trial_states"].get("RUNNING")
    # every checkpoint and artifact on the object store; the drivers' directories hold only the report
    assert f["checkpoints_on_s3"] >= TRIALS and f["tune_experiment_prefixes"] == ["multinode"]
    assert "searcher state" in f["objects"]["tune"] and "Tune experiment state" in f["objects"]["tune"]
    assert f["objects"]["mlflow"].get("MLflow artifact: checkpoint", 0) >= TRIALS
    assert f["files_in_driver_directories"]["a"] == [] and f["files_in_driver_directories"]["b"] == []
    assert all(name.startswith("report/") for name in f["files_in_driver_directories"]["c"])
