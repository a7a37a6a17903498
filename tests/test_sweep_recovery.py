"""A sweep whose driver dies at the hard moment, resumed elsewhere; a sweep interrupted with Ctrl-C.

- kill -9 of the driver's whole process group right after a trial starts (its MLflow run exists, Tune's
  snapshot may not know it), then ``--resume`` from another working directory with the Optuna study in
  PostgreSQL, or carried with the Tune experiment (the default): no run left RUNNING, no finished trial
  trained again, the study's history kept and its orphaned trial (if any) failed;
- Ctrl-C of an ablation: it says it was interrupted, on the parent run too, and closes its trial runs.
"""

from __future__ import annotations

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
from servers import PostgresCluster, postgres_unavailable

pytestmark = [pytest.mark.ray, pytest.mark.slow]
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "coded_resnext.orchestration.cli"]


def _trial_runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return [r for r in runs if r.data.tags.get("role") == "trial"]


def _start(command: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command, cwd=cwd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _wait_for(predicate, driver: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.poll() is not None:
            pytest.fail(f"the driver ended before {what}")
        with contextlib.suppress(Exception):  # the store may not exist yet
            if predicate():
                return
        time.sleep(0.25)
    pytest.fail(f"timed out waiting until {what}")


@pytest.mark.parametrize("study_in", ["postgresql", "tune-experiment"])
def test_a_driver_killed_right_after_a_trial_starts_resumes_from_elsewhere_with_the_study_kept(tmp_path, study_in):
    import optuna

    from coded_resnext.orchestration.searcher import carried_storage

    if reason := postgres_unavailable():
        pytest.skip(reason)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = tmp_path / "shared"
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "base": str(ROOT / "search_spaces" / "quickstart_train.yaml"),
                "config": {
                    "data": {"name": "synthetic", "ood": None},
                    "train": {"epochs": 2},
                    "tracking": {"experiment": "killed", "log_model": False, "system_metrics_interval": 2},
                    "eval": {"binary_classes": 2},
                },
                "search": {"loss.mu": {"uniform": [1.0, 8.0]}},
                "tune": {"name": "killed", "algorithm": "motpe", "num_samples": 3, "max_concurrent_trials": 1},
            }
        )
    )
    with PostgresCluster() as pg:
        study_url = pg.create_database("optuna")
        args = ["tune", str(space), "--smoke-test", "--tracking-uri", uri, "--storage-path", str(storage),
                "--num-cpus", "1"]  # fmt: skip
        if study_in == "postgresql":
            args += ["--searcher-storage", study_url]
        first, second = tmp_path / "head-a", tmp_path / "head-b"
        first.mkdir()
        second.mkdir()
        driver = _start([*CLI, *args], first)
        try:
            # the hard moment: the second trial has just created its run
            _wait_for(lambda: len(_trial_runs(uri, "killed")) >= 2, driver, 400, "a second trial started")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
            driver.wait()
        finished = {r.info.run_id: r.info.end_time for r in _trial_runs(uri, "killed") if r.info.status == "FINISHED"}
        assert finished, "no trial had finished before the kill"

        resumed = subprocess.run([*CLI, *args, "--resume"], cwd=second, capture_output=True, text=True, timeout=900)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        runs = _trial_runs(uri, "killed")
        assert not [r for r in runs if r.info.status == "RUNNING"]
        done = [r for r in runs if r.info.status == "FINISHED"]
        killed = [r for r in runs if r.info.status == "KILLED"]
        assert len(done) == 3 and len(runs) == len(done) + len(killed)
        assert all("killed before Tune recorded this trial" in r.data.tags["killed_reason"] for r in killed)
        for run_id, end_time in finished.items():  # finished before the kill: not trained again
            assert MlflowClient(uri).get_run(run_id).info.end_time == end_time
        for run in done:
            steps = [m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "train/loss")]
            assert sorted(steps) == [0, 1]
        if study_in == "postgresql":
            trials = optuna.load_study(study_name="killed", storage=study_url).trials
        else:  # the study as the experiment's last searcher checkpoint holds it, read from the storage path alone
            trials = optuna.load_study(study_name="killed", storage=carried_storage(str(storage / "killed"))).trials
        states = sorted(t.state.name for t in trials)
        assert states.count("COMPLETE") == 3 and "RUNNING" not in states
        # the orphan's Optuna trial, failed on resume; a study checkpointed with the experiment has no orphan:
        # what the driver asked for after its last checkpoint was never saved, in the study or the experiment
        assert states.count("FAIL") == (len(killed) if study_in == "postgresql" else 0)
        assert not (second / "runs").exists() and not (first / "runs").exists()  # nothing beside either driver


def test_ctrl_c_of_an_ablation_says_so_and_closes_its_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ablation = tmp_path / "abl.yaml"
    ablation.write_text(
        yaml.safe_dump(
            {
                "base": str(ROOT / "search_spaces" / "quickstart_train.yaml"),
                "config": {
                    "data": {"name": "synthetic", "ood": None},
                    "train": {"epochs": 2},
                    "tracking": {"experiment": "abl", "log_model": False},
                    "eval": {"binary_classes": 2},
                },
                "grid": {"loss.mu": [1, 3, 6]},
                "seeds": [0, 1, 2],
                "metrics": ["val/accuracy"],
                "tune": {"max_concurrent_trials": 1},
            }
        )
    )
    command = [*CLI, "ablate", str(ablation), "--smoke-test", "--tracking-uri", uri, "--num-cpus", "1"]
    driver = subprocess.Popen(command, cwd=tmp_path, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_for(
            lambda: any(r.info.status == "FINISHED" for r in _trial_runs(uri, "abl")) and len(_trial_runs(uri, "abl")) >= 2,
            driver, 400, "one run finished and the next started",
        )  # fmt: skip
        os.killpg(driver.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole foreground group
        out, err = driver.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    assert out.splitlines()[0] == "ablation 'abl': 2 cells (control included) x 2 seeds = 4 runs"  # smoke: a few
    assert "4 trial(s)" in err  # a progress line (stderr); the result goes to stdout
    assert driver.returncode == 130, err[-2000:]
    assert "INTERRUPTED: 1 of 4 trials done" in out and "coded-resnext ablate" in out and "--resume" in out
    assert "trials (0 failed)" not in out  # no summary as if the batch were complete
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("abl").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("role") == "ablation"]
    assert parent.info.status == "KILLED" and parent.data.tags["runs_done"] == "1/4"
    assert "--resume" in parent.data.tags["resume_command"]
    trials = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert sorted(r.info.status for r in trials) == ["FINISHED", "KILLED"]
    assert "interrupted" in next(r for r in trials if r.info.status == "KILLED").data.tags["killed_reason"]
