"""Every entry point on a tracking store that does not exist yet, several commands started at once.

MLflow migrates a new SQLite store (alembic) the first time a process opens it; two processes doing so at
once crash ("Online migration expected to match one row", "duplicate column name: step"). Every command
opens its store through ``store.open_store`` (a file lock around the migrations), so each of these ends
with its result or one ``coded-resnext: error:`` line, never a traceback. The commands run as separate
processes, as a user would start them, released together once they are all imported and waiting.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
QUICK = {
    "data": {"name": "synthetic", "ood": None, "limit_train": 128, "limit_val": 64},
    "train": {"epochs": 1, "progress": "none"},
    "optim": {"batch_size": 32, "warmup_epochs": 0.0},
    "tracking": {"experiment": "fresh", "log_model": False, "system_metrics": False},
    "eval": {
        "binary_classes": 2,
        "binary_fit_samples": 64,
        "invariance_samples": 16,
        "removal_samples": 64,
        "early_exit_thresholds": 5,
        "limit_val": 64,
    },
}

# Waits for a go file, then runs the CLI: every process has imported the CLI and its command's modules and
# reaches the store within milliseconds of the others, as commands started by a script would on a fast disk.
LAUNCH = """
import os, sys, time
from coded_resnext.orchestration import cli, store, tracking  # noqa: F401  (import before the start line)
import mlflow.tracking  # noqa: F401
go = sys.argv[1]
while not os.path.exists(go):
    time.sleep(0.01)
sys.exit(cli.main(sys.argv[2:]))
"""


def _start(commands: list[list[str]], cwd: Path) -> list[subprocess.Popen]:
    go = cwd / "go"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LAUNCH, str(go), *argv],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in commands
    ]
    return procs


def _release_and_collect(procs: list[subprocess.Popen], cwd: Path, timeout: float) -> list[tuple[int, str, str]]:
    import time

    time.sleep(20)  # every process past its imports (they are heavy on a busy machine)
    (cwd / "go").touch()
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results.append((proc.returncode, out, err))
    return results


def _one_line_or_success(command: list[str], code: int, out: str, err: str) -> None:
    assert "Traceback" not in err and "Traceback" not in out, (command, err[-3000:])
    if code != 0:
        lines = [line for line in err.splitlines() if line.startswith("coded-resnext: error:")]
        assert code == 2 and len(lines) == 1, (command, code, err[-3000:])


@pytest.mark.slow
def test_commands_started_together_on_a_store_that_does_not_exist_yet(tmp_path):
    store = tmp_path / "new" / "mlflow.db"
    uri = f"sqlite:///{store}"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(QUICK))
    commands = [
        *(["report", "fresh", "--out", str(tmp_path / f"report{i}"), "--tracking-uri", uri] for i in range(3)),
        ["evaluate", "--run-id", "0123456789abcdef", "--tracking-uri", uri],
        ["extract", "--run-id", "0123456789abcdef", "--class", "0", "--out", str(tmp_path / "c.pt2"),
         "--tracking-uri", uri],
        ["train", str(config), "--tracking-uri", uri, "--checkpoint-root", str(tmp_path / "ckpt")],
    ]  # fmt: skip
    assert not store.parent.exists()
    results = _release_and_collect(_start(commands, tmp_path), tmp_path, timeout=600)
    for command, (code, out, err) in zip(commands, results, strict=True):
        _one_line_or_success(command, code, out, err)
    assert results[-1][0] == 0, results[-1][2][-3000:]  # the training run was recorded
    runs = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("fresh").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlruns").exists()  # nothing in the cwd


@pytest.mark.slow
@pytest.mark.ray
def test_sweeps_and_an_ablation_started_together_on_a_store_that_does_not_exist_yet(tmp_path):
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    base = dict(QUICK, tracking={**QUICK["tracking"], "experiment": "fresh-sweeps"})
    space = {"base": str(ROOT / "search_spaces" / "quickstart_train.yaml"), "config": base}
    (tmp_path / "a.yaml").write_text(
        yaml.safe_dump({**space, "search": {"loss.mu": {"choice": [1.0]}}, "tune": {"num_samples": 1}})
    )
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({**space, "grid": {"loss.mu": [1.0]}, "seeds": [0]}))
    common = ["--tracking-uri", uri, "--num-cpus", "1"]
    commands = [
        ["tune", str(tmp_path / "a.yaml"), "--storage-path", str(tmp_path / "ray-a"), *common],
        ["ablate", str(tmp_path / "b.yaml"), "--storage-path", str(tmp_path / "ray-b"), *common],
        ["report", "fresh-sweeps", "--out", str(tmp_path / "report"), "--tracking-uri", uri],
    ]
    results = _release_and_collect(_start(commands, tmp_path), tmp_path, timeout=800)
    for command, (code, out, err) in zip(commands, results, strict=True):
        _one_line_or_success(command, code, out, err)
    assert results[0][0] == 0 and results[1][0] == 0, [r[2][-2000:] for r in results]
