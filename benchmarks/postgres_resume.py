"""A sweep on a running Ray head (``ray start --head``), its driver killed, resumed by a driver in another
working directory, with the Optuna study in PostgreSQL (a throwaway cluster on 127.0.0.1, as the tests
start it): prints whether any trial ran again and whether the searcher's history was kept.

    python benchmarks/postgres_resume.py                 # about 5-10 minutes on 2 cores

The driver is killed (kill -9 of its own process group: the Ray head lives on) once a trial has finished
and another has started. Everything runs in a throwaway directory; the Ray head and PostgreSQL are
stopped through the process groups this script started.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from _throwaway import run_in_throwaway_dir  # benchmarks/ itself, on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the PostgreSQL fixture the tests use
EXPERIMENT = "pg-resume"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="work in this (new) directory and keep it, to look into")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if args.keep:
        args.keep.mkdir(parents=True)
        os.chdir(args.keep)
        _measure(args, args.keep.resolve())
        return
    run_in_throwaway_dir("pg-resume-", lambda work: _measure(args, work), args.json)


def _space(work: Path, trials: int) -> Path:
    doc = {
        "base": str(ROOT / "search_spaces" / "quickstart_train.yaml"),
        "config": {  # smoke-sized trials (tune --smoke-test would also cap the sweep at 3 trials)
            "data": {"name": "synthetic", "ood": None, "limit_train": 512, "limit_val": 256},
            "train": {"epochs": 2},
            "optim": {"batch_size": 64, "warmup_epochs": 0.0},
            "tracking": {"experiment": EXPERIMENT, "log_model": False},
            "eval": {
                "binary_classes": 2,
                "binary_fit_samples": 256,
                "invariance_samples": 64,
                "removal_samples": 256,
                "early_exit_thresholds": 11,
                "limit_val": 256,
            },
        },
        "search": {"loss.mu": {"loguniform": [1.0, 12.0]}, "loss.p_drop": {"choice": [0.0, 0.1, 0.2]}},
        "tune": {"name": EXPERIMENT, "algorithm": "motpe", "num_samples": trials, "max_concurrent_trials": 1},
    }
    path = work / "space.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _stop_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _measure(args: argparse.Namespace, work: Path) -> dict:
    import optuna
    from mlflow.tracking import MlflowClient
    from servers import PostgresCluster, free_port

    uri = f"sqlite:///{work / 'mlflow.db'}"
    space = _space(work, args.trials)
    port = free_port()
    ray_bin = str(Path(sys.executable).with_name("ray"))
    # loopback only, and no token: the head, its driver and this script are the only parties, all local
    os.environ["RAY_AUTH_MODE"] = "disabled"
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
         "--include-dashboard=false", "--block"],
        cwd=work, start_new_session=True, stdout=open(work / "head.log", "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip
    try:
        with PostgresCluster() as pg:
            study_url = pg.create_database("optuna")
            command = [sys.executable, "-m", "coded_resnext.orchestration.cli", "tune", str(space),
                       "--address", f"127.0.0.1:{port}", "--tracking-uri", uri, "--storage-path", str(work / "shared"),
                       "--searcher-storage", study_url]  # fmt: skip
            first, second = work / "driver-a", work / "driver-b"
            first.mkdir()
            second.mkdir()
            client = MlflowClient(uri)

            def trials():
                with contextlib.suppress(Exception):
                    exp = client.get_experiment_by_name(EXPERIMENT)
                    runs = client.search_runs([exp.experiment_id]) if exp else []
                    return [r for r in runs if r.data.tags.get("role") == "trial"]
                return []

            time.sleep(5)  # the head's start-up
            log = open(work / "drivers.log", "w")  # noqa: SIM115 - closed below
            driver = subprocess.Popen(command, cwd=first, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline and driver.poll() is None:
                runs = trials()
                if any(r.info.status == "FINISHED" for r in runs) and len(runs) >= 2:
                    break
                time.sleep(0.5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(driver.pid, signal.SIGKILL)  # the driver only: the Ray head lives on
            driver.wait()
            if driver.returncode not in (-signal.SIGKILL, None) and driver.returncode != 0:
                raise SystemExit(f"the first driver failed (exit {driver.returncode}); see {work / 'drivers.log'}")
            before = {r.info.run_id: r.info.end_time for r in trials() if r.info.status == "FINISHED"}
            study_before = optuna.load_study(study_name=EXPERIMENT, storage=study_url).trials
            complete_before = {t.number for t in study_before if t.state.name == "COMPLETE"}
            print(f"killed the driver: {len(before)} trial(s) finished, {len(study_before)} in the study", flush=True)

            resumed = subprocess.run([*command, "--resume"], cwd=second, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            runs = trials()
            study_after = optuna.load_study(study_name=EXPERIMENT, storage=study_url).trials
            states = [t.state.name for t in study_after]
            rerun = [rid for rid, end in before.items() if client.get_run(rid).info.end_time != end]
            duplicates = sum(
                len(s) - len(set(s))
                for r in runs
                for s in [[m.step for m in client.get_metric_history(r.info.run_id, "train/loss")]]
            )
            figures = {
                "resume_exit_code": resumed.returncode,
                "trials_finished_before_the_kill": len(before),
                "finished_trials_run_again": len(rerun),
                "metric_steps_logged_twice": duplicates,
                "runs_left_running": sum(r.info.status == "RUNNING" for r in runs),
                "finished_trial_runs": sum(r.info.status == "FINISHED" for r in runs),
                "planned_trials": args.trials,
                "study_trials_before_kill": len(study_before),
                "study_complete_trials_kept": len(
                    complete_before & {t.number for t in study_after if t.state.name == "COMPLETE"}
                ),
                "study_complete_after": states.count("COMPLETE"),
                "study_failed_after": states.count("FAIL"),
                "study_running_after": states.count("RUNNING"),
                "study_in_second_cwd_locally": (second / "runs" / "tune").exists(),
            }
            for key, value in figures.items():
                print(f"{key:>36}: {value}")
            return figures
    finally:
        _stop_group(head)


if __name__ == "__main__":
    main()
