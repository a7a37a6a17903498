"""Keeping the MLflow store honest about a sweep's trials when its driver stops early.

Tune restores a sweep from its last experiment snapshot. A driver killed (kill -9 of its process group)
right after a trial started can leave that trial's child run RUNNING although the snapshot never knew
the trial: the restored sweep runs another configuration instead, and nothing would ever close the run.
``close_child_runs`` closes such runs as KILLED with a ``killed_reason`` tag; the Optuna trial they
belonged to is failed by ``searcher.fail_orphans``. A Ctrl-C ends ``Tuner.fit`` normally, with
unfinished trials: ``unfinished`` finds them, so the sweep can say it was interrupted and close their runs.
"""

from __future__ import annotations

from collections.abc import Callable

from ray.tune import ExperimentAnalysis, Tuner

from coded_resnext.orchestration.store import find_runs
from coded_resnext.orchestration.tune_callbacks import close_run
from coded_resnext.results.schema import Tag

DONE = ("TERMINATED", "ERROR")


def trial_statuses(experiment_path: str) -> dict[str, str]:
    """Tune trial id -> status in the experiment's last snapshot (empty when there is none yet)."""
    if not Tuner.can_restore(experiment_path):
        return {}
    return {trial.trial_id: trial.status for trial in ExperimentAnalysis(experiment_path).trials}


def unfinished(statuses: dict[str, str]) -> list[str]:
    return [trial_id for trial_id, status in statuses.items() if status not in DONE]


def close_child_runs(
    uri: str,
    experiment: str,
    parent_run_id: str,
    select: Callable[[str], bool],
    status: str,
    reason: str,
    among: tuple[str, ...] = ("RUNNING",),
) -> list[str]:
    """Close (as ``status``, tag ``killed_reason``) every trial run under ``parent_run_id`` in a status of
    ``among`` whose trial id ``select`` picks; returns their trial ids."""
    closed = []
    for run in find_runs(uri, experiment, {Tag.PARENT_RUN: parent_run_id}, statuses=among):
        trial_id = run.data.tags.get(Tag.TRIAL_ID, "")
        if select(trial_id):
            close_run(uri, run.info.run_id, status, killed_reason=reason)
            closed.append(trial_id)
    return closed
