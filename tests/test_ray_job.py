"""A sweep launched as a Ray Job, the way docs/cluster.md launches one on a cluster:

    ray job submit --address http://HEAD:8265 --working-dir . -- coded-resnext tune SPACE.yaml ...

against a running local cluster (``ray start --head`` with its dashboard, whose job server runs the
driver on the head, in the working directory Ray uploaded). The sweep must join that cluster (not start a
Ray of its own inside the job) and record everything where it was told to.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from servers import free_port

ROOT = Path(__file__).resolve().parents[1]
RAY = [sys.executable, "-m", "ray.scripts.scripts"]  # the `ray` command of this interpreter's Ray


def _stop_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    time.sleep(1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # raylet, GCS and dashboard of the head this test started


@pytest.mark.slow
@pytest.mark.ray
def test_a_sweep_submitted_as_a_ray_job_runs_on_the_cluster_from_the_uploaded_working_directory(tmp_path):
    work = tmp_path / "job"  # what `--working-dir .` uploads: the space and its base config
    work.mkdir()
    (work / "train.yaml").write_text((ROOT / "search_spaces" / "quickstart_train.yaml").read_text())
    space = {
        "base": "train.yaml",  # relative: resolved in the uploaded copy, on the head
        "config": {
            "data": {"name": "synthetic", "ood": None, "limit_train": 256, "limit_val": 128},
            "train": {"epochs": 1},
            "optim": {"batch_size": 64, "warmup_epochs": 0.0},
            "tracking": {"experiment": "job", "log_model": False, "system_metrics": False},
            "eval": {"binary_classes": 2, "binary_fit_samples": 64, "invariance_samples": 16,
                     "removal_samples": 64, "early_exit_thresholds": 5, "limit_val": 128},
        },
        "search": {"loss.mu": {"choice": [1.0, 3.0]}},
        "tune": {"name": "job", "algorithm": "random", "num_samples": 2, "max_concurrent_trials": 2},
    }  # fmt: skip
    (work / "space.yaml").write_text(yaml.safe_dump(space))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    port, dashboard = free_port(), free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}
    # Ray's token authentication, as a cluster has it: the head, the job client and the job's driver share one
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"  # coded-resnext on the head
    head = subprocess.Popen(
        [*RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
         "--include-dashboard=true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
         "--disable-usage-stats", "--block"],
        cwd=tmp_path, env=env, start_new_session=True, stdout=open(tmp_path / "head.log", "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # the job server answers once the dashboard is up
            with contextlib.suppress(Exception), urllib.request.urlopen(f"http://127.0.0.1:{dashboard}/api/version"):
                break
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            time.sleep(1)
        for _ in range(60):  # the dashboard answers before the head's agent that runs jobs is up: Ray says retry
            submitted = subprocess.run(
                [*RAY, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--working-dir", ".", "--",
                 "coded-resnext", "tune", "space.yaml", "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray")],
                cwd=work, env=env, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            if "No available agent to submit job" not in submitted.stderr + submitted.stdout:
                break
            time.sleep(2)
    finally:
        _stop_group(head)
    log = submitted.stdout + submitted.stderr
    assert submitted.returncode == 0 and "succeeded" in log, log[-4000:]
    assert "Started a local Ray instance" not in log  # the sweep joined the cluster it was submitted to
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("job").experiment_id])
    assert sorted(r.data.tags.get("role") for r in runs) == ["sweep", "trial", "trial"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert (tmp_path / "ray" / "job").is_dir() and not (work / "runs").exists()  # where it was told, nothing local
