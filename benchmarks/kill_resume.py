"""Kill a smoke sweep's driver (kill -9 of its whole process group, Ray included) at random moments
(uniformly within ``--window`` seconds of its trials running, whatever Ray's start-up took),
resume it each time, and count what a crash could leave wrong once it is done:

- runs left RUNNING in MLflow, and Optuna trials left RUNNING in the study;
- trials trained again after they had finished (a FINISHED run whose end time changed later);
- trials lost (planned trials without a finished run of a finished Tune trial);
- metric steps logged twice;
and, for the record, the trial runs closed as KILLED on resume (a configuration the killed driver had
started but not yet recorded; the searcher ran another in its place) and the kills that landed within
3 s of a trial's start (the hard moment).

    python benchmarks/kill_resume.py --cycles 10 --seed 3          # about 20-30 minutes on 2 cores

Everything runs in a throwaway directory. Counts, not timings: a busy machine changes when the kills
land, not what they may leave behind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from _throwaway import run_in_throwaway_dir  # benchmarks/ itself, on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "kill-resume"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=10, help="kills, each followed by --resume")
    parser.add_argument("--trials", type=int, default=20, help="enough that the sweep outlives the kills")
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument(
        "--window", type=float, default=30.0, help="kill uniformly within this many seconds of trials running"
    )
    parser.add_argument("--seed", type=int, default=0, help="of the kill moments")
    parser.add_argument("--json", type=Path, help="also write the counts here")
    parser.add_argument("--keep", type=Path, help="work in this (new) directory and keep it, to look into")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if args.keep:
        args.keep.mkdir(parents=True)
        os.chdir(args.keep)
        _measure(args, args.keep.resolve())
        return
    run_in_throwaway_dir("kill-resume-", lambda work: _measure(args, work), args.json)


def _space(work: Path, args: argparse.Namespace) -> Path:
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
        "tune": {
            "name": EXPERIMENT,
            "algorithm": "motpe",
            "num_samples": args.trials,
            "max_concurrent_trials": args.concurrent,
        },
    }
    path = work / "space.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


class Watcher:
    """Reads the store: every trial run's first end time, and how young the newest run is."""

    def __init__(self, uri: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(uri)
        self.first_end: dict[str, int] = {}

    def trials(self) -> list:
        exp = self.client.get_experiment_by_name(EXPERIMENT)
        runs = self.client.search_runs([exp.experiment_id], max_results=1000) if exp else []
        return [r for r in runs if r.data.tags.get("role") == "trial"]

    def poll(self) -> list:
        with contextlib.suppress(Exception):  # the store may be mid-creation
            runs = self.trials()
            for run in runs:
                if run.info.status == "FINISHED":
                    self.first_end.setdefault(run.info.run_id, run.info.end_time)
            return runs
        return []


def _measure(args: argparse.Namespace, work: Path) -> dict:
    uri = f"sqlite:///{work / 'mlflow.db'}"
    space = _space(work, args)
    base = [sys.executable, "-m", "coded_resnext.orchestration.cli", "tune", str(space), "--tracking-uri", uri]
    rng = random.Random(args.seed)
    watcher = Watcher(uri)
    kills, hard_moments, crashes = 0, 0, 0
    resume = False
    log = open(work / "drivers.log", "w")  # noqa: SIM115 - closed below
    while kills < args.cycles:
        command = [*base, "--resume"] if resume else base
        offset = log.tell()
        driver = subprocess.Popen(command, cwd=work, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
        delay = rng.uniform(0, args.window)
        runs, at = [], None
        while driver.poll() is None and (at is None or time.monotonic() < at):
            runs = watcher.poll()
            if at is None and " started" in (work / "drivers.log").read_text()[offset:]:
                at = time.monotonic() + delay  # this driver's trials are running: kill within the window
            time.sleep(0.25)
        if driver.poll() is not None:  # the sweep ended before this kill
            print(f"driver ended by itself (exit {driver.returncode}) before kill {kills + 1}", flush=True)
            if driver.returncode == 0:
                break  # done: no more cycles
            if crashes >= 5:
                break
            crashes += 1  # e.g. Ray's out-of-memory killer on a crowded machine: resume, as a user would
            resume = True
            continue
        now_ms = time.time() * 1000
        young = [r for r in runs if r.info.status == "RUNNING" and now_ms - r.info.start_time < 3000]
        hard_moments += bool(young)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
        driver.wait()
        log.seek(0, os.SEEK_END)
        kills += 1
        resume = True
        print(
            f"kill {kills}: {len(runs)} trial runs so far{' (a trial had just started)' if young else ''}", flush=True
        )
    final = subprocess.run([*base, "--resume"] if resume else base, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    while final.returncode != 0 and crashes < 5:  # a crash (not a kill) at the end: resume, as a user would
        crashes += 1
        watcher.poll()
        final = subprocess.run([*base, "--resume"], cwd=work, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    watcher.poll()
    counts = _count(args, work, uri, watcher, kills, hard_moments, final.returncode)
    counts["driver_crashes_resumed"] = crashes
    return counts


def _count(args, work: Path, uri: str, watcher: Watcher, kills: int, hard: int, final_exit: int) -> dict:
    import optuna

    from coded_resnext.orchestration.reconcile import trial_statuses

    runs = watcher.trials()
    client = watcher.client
    running = [r for r in runs if r.info.status == "RUNNING"]
    retrained = [
        r for r in runs if r.info.run_id in watcher.first_end and r.info.end_time != watcher.first_end[r.info.run_id]
    ]
    statuses = trial_statuses(str(work / "runs" / "ray" / EXPERIMENT))
    finished_ids = {r.data.tags.get("trial_id") for r in runs if r.info.status == "FINISHED"}
    done = [t for t, status in statuses.items() if status == "TERMINATED" and t in finished_ids]
    duplicates = 0
    for run in runs:
        for key in ("train/loss", "val/accuracy"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            duplicates += len(steps) - len(set(steps))
    for trial_id, status in sorted(statuses.items()):
        mine = [r.info.status for r in runs if r.data.tags.get("trial_id") == trial_id]
        print(f"  trial {trial_id}: Tune {status}, MLflow {', '.join(mine) or 'no run'}")
    from coded_resnext.orchestration.searcher import carried_storage

    # the study as the experiment's last searcher checkpoint holds it
    study = optuna.load_study(study_name=EXPERIMENT, storage=carried_storage(str(work / "runs" / "ray" / EXPERIMENT)))
    states = [t.state.name for t in study.trials]
    counts = {
        "kills": kills,
        "kills_within_3s_of_a_trial_start": hard,
        "final_resume_exit_code": final_exit,
        "planned_trials": args.trials,
        "runs_left_running": len(running),
        "optuna_trials_left_running": states.count("RUNNING"),
        "trials_retrained_after_finishing": len(retrained),
        "trials_lost": args.trials - len(done),
        "metric_steps_logged_twice": duplicates,
        "trial_runs_closed_killed_on_resume": sum(r.info.status == "KILLED" for r in runs),
        "optuna_trials_failed_on_resume": states.count("FAIL"),
    }
    for key, value in counts.items():
        print(f"{key:>36}: {value}")
    return counts


if __name__ == "__main__":
    main()
