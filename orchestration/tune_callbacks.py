"""Driver-side Tune callbacks: one readable line per trial result, and MLflow run states kept honest.

Ray's own table reporter redraws the whole trial table on every update; a sweep of many short trials
becomes a flood. ``LineReporter`` prints one line per epoch result and one per finished trial instead.
``TrialRunCloser`` marks a trial's child run FINISHED/FAILED when Tune ends the trial (early-stopped
trials included), so no child run is left RUNNING.
"""

from __future__ import annotations

import logging
import math
import time

from ray.tune import Callback

from coded_resnext.orchestration.search_space import decode
from coded_resnext.orchestration.store import find_runs
from coded_resnext.orchestration.tracking import RunTracker
from coded_resnext.results.hypervolume import costs, hypervolume, nondominated_ranks, reference_costs
from coded_resnext.results.schema import Metric, Tag

logger = logging.getLogger(__name__)


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
    """A progress line per trial event (started, each epoch, done, failed), with the time since the sweep began."""

    def __init__(self, searched: list[str], objectives: list[str], epochs: int) -> None:
        self.searched = searched
        self.objectives = objectives
        self.epochs = epochs
        self.started = time.monotonic()
        self.numbers: dict[str, int] = {}

    def _say(self, text: str) -> None:
        logger.info("[%6.0fs] %s", time.monotonic() - self.started, text)

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
        identity = {Tag.TRIAL_ID: trial.trial_id, Tag.PARENT_RUN: self.parent_run_id}
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
        tags[Tag.EARLY_STOPPED] = "true"
    if tags:
        writer.set_tags(tags)
    writer.finish(status)


class SweepHypervolume(Callback):
    """After every trial that ends, logs the sweep's progress to its parent run: ``sweep/hypervolume`` of
    the front of the trials that trained their full budget (stopped, failed, infeasible and reference
    trials are not on it: their objectives are not a finished model's), ``sweep/epochs_used`` (epochs
    trained by every trial so far, those included: they all cost compute) and ``sweep/front_size``; the
    step is the number of trials ended. The counts travel with Tune's experiment checkpoint (``get_state``),
    so ``--resume`` continues them; an extension starts from ``prior`` (``Sweep.hypervolume_prior``).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        parent_run_id: str,
        objectives: dict[str, str],
        reference: list[float],
        budget: tuple[str, float],
        exclude_key: str,
        prior: dict | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.parent_run_id = parent_run_id
        self.objectives = objectives
        self.reference = reference
        self.budget = budget
        self.exclude_key = exclude_key
        self.state = {"epochs": {}, "points": {}, "ended": 0, "epochs_before": 0.0, **(prior or {})}
        self._tracker = None

    def __getstate__(self):  # pickled into tuner.pkl: no live tracker
        return {**self.__dict__, "_tracker": None}

    def get_state(self) -> dict:
        return {"progress": self.state}

    def set_state(self, state: dict) -> None:
        self.state = state["progress"]

    def on_trial_result(self, iteration, trials, trial, result, **info):
        key = self.budget[0]
        if isinstance(result.get(key), int | float):
            epochs = self.state["epochs"]
            epochs[trial.trial_id] = max(epochs.get(trial.trial_id, 0), result[key])

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        key, full = self.budget
        counted = (
            last.get(key, 0) >= full
            and not last.get(Metric.INFEASIBLE)
            and not (trial.config or {}).get(self.exclude_key)
            and all(isinstance(last.get(k), int | float) and math.isfinite(last[k]) for k in self.objectives)
        )
        if counted:
            self.state["points"][trial.trial_id] = {k: float(last[k]) for k in self.objectives}
        self._log()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._log()

    def progress(self) -> dict[str, float]:
        points = costs(list(self.state["points"].values()), self.objectives)
        reference = reference_costs(self.reference, self.objectives)
        return {
            "sweep/hypervolume": hypervolume(points, reference),
            "sweep/epochs_used": self.state["epochs_before"] + sum(self.state["epochs"].values()),
            "sweep/front_size": int((nondominated_ranks(points) == 0).sum()) if len(points) else 0,
        }

    def _log(self) -> None:
        self.state["ended"] += 1
        if self._tracker is None:
            self._tracker = RunTracker.attach(self.tracking_uri, self.parent_run_id)  # writes only
        self._tracker.log_metrics(self.progress(), step=self.state["ended"])

    def on_experiment_end(self, trials, **info):
        if self._tracker is not None:
            self._tracker.flush()
