"""Driver-side Tune callbacks: one readable line per trial result, and MLflow run states kept honest.

Ray's own table reporter redraws the whole trial table on every update; a sweep of many short trials
becomes a flood. ``LineReporter`` prints one line per epoch result and one per finished trial instead.
``TrialRunCloser`` marks a trial's child run FINISHED/FAILED when Tune ends the trial (early-stopped
trials included), so no child run is left RUNNING.
"""

from __future__ import annotations

import sys
import time

from ray.tune import Callback

from orchestration.search_space import decode
from orchestration.tracking import RunTracker, find_runs


def _short(key: str) -> str:
    return key.split(".")[-1]


def _fmt(value) -> str:
    value = decode(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "gen(" + ",".join(f"{k}={v}" for k, v in value.items() if v is not None) + ")"
    return str(value)


class LineReporter(Callback):
    def __init__(self, searched: list[str], objectives: list[str], epochs: int, stream=None) -> None:
        self.searched = searched
        self.objectives = objectives
        self.epochs = epochs
        self.stream = stream
        self.started = time.monotonic()
        self.numbers: dict[str, int] = {}

    def _say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.0f}s] {text}", file=self.stream or sys.stdout, flush=True)

    def _label(self, trial) -> str:
        number = self.numbers.setdefault(trial.trial_id, len(self.numbers) + 1)
        params = " ".join(f"{_short(k)}={_fmt(trial.config.get(k))}" for k in self.searched)
        return f"trial {number:>2} ({params})"

    def on_trial_start(self, iteration, trials, trial, **info):
        self._say(f"{self._label(trial)} started")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        epoch = int(result.get("epoch", result.get("training_iteration", 0)))
        acc = result.get("val/accuracy")
        acc_text = f" val/accuracy {acc:.4f}" if acc is not None else ""
        self._say(f"{self._label(trial)} epoch {epoch}/{self.epochs}{acc_text}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        values = " ".join(f"{k} {last[k]:.4f}" for k in self.objectives if isinstance(last.get(k), int | float))
        stopped = " (stopped early)" if last.get("epoch", self.epochs) < self.epochs else ""
        self._say(f"{self._label(trial)} done{stopped}: {values}")

    def on_trial_error(self, iteration, trials, trial, **info):
        where = getattr(trial, "error_file", None) or trial.path
        self._say(f"{self._label(trial)} FAILED; error in {where}")


class TrialRunCloser(Callback):
    """Ends the MLflow child run of each trial Tune ends (the trial itself may have been stopped before
    it could)."""

    def __init__(self, tracking_uri: str, experiment: str, parent_run_id: str, epochs: int) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.parent_run_id = parent_run_id
        self.epochs = epochs

    def _close(self, trial, status: str) -> None:
        identity = {"trial_id": trial.trial_id, "mlflow.parentRunId": self.parent_run_id}
        for run in find_runs(self.tracking_uri, self.experiment, identity, statuses=("RUNNING",)):
            last = trial.last_result or {}
            close_run(
                self.tracking_uri,
                run.info.run_id,
                status,
                early_stopped=status == "FINISHED" and last.get("epoch", self.epochs) < self.epochs,
            )

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._close(trial, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._close(trial, "FAILED")


def close_run(uri: str, run_id: str, status: str, *, early_stopped: bool = False, **tags: str) -> None:
    """Mark another process's run ``status`` (with ``tags``) through the tracker's retries and buffer."""
    writer = RunTracker.attach(uri, run_id)
    if early_stopped:
        tags["early_stopped"] = "true"
    if tags:
        writer.set_tags(tags)
    writer.finish(status)
