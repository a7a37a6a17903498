"""Searcher pieces a sweep adds around Ray Tune's: what Optuna is told about stopped and infeasible trials,
and one reference-control trial that no searcher sees.

``SweepOptunaSearch`` is Ray's ``OptunaSearch`` with two things it lacks. Ray tells Optuna every ended
trial as COMPLETE with its last result, so a trial MO-ASHA stopped at epoch 1 would enter the study as if
its one-epoch accuracy were final; here a trial that did not reach the full budget (or ended infeasible)
is told PRUNED, which is what Optuna's own pruners record and what its TPE sampler ranks below complete
trials. And Ray has no path for constraints: Optuna 5 deprecates the samplers' ``constraints_func`` for
``Trial.set_constraint``, which this class calls on the study's trial (the one Ray asked for) from the
trial's reported metrics before telling it, so TPE and NSGA-II rank infeasible trials last.

``WithReferenceControl`` hands out one extra configuration first (the reference control; see
``sweep.py``) and keeps it, and its results, from the searcher it wraps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from orchestration.constraints import INFEASIBLE_KEY, Constraint


class SweepOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that tells stopped and infeasible trials PRUNED and sets constraint values.

    Args beyond OptunaSearch's:
        constraints: bounds whose violation (``Constraint.violation`` of the reported metric) is set on
            every trial that reports the metric.
        budget: (result key, value) of a full budget, e.g. ("epoch", 4): a trial ending below it was stopped.
    """

    def __init__(self, *args, constraints: Sequence[Constraint] = (), budget: tuple[str, float] | None = None, **kw):
        super().__init__(*args, **kw)
        self._constraints = list(constraints)
        self._budget = budget

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        study_trial = self._ot_trials.get(trial_id)
        if result and study_trial is not None and trial_id not in self._completed_trials:
            for c in self._constraints:
                if result.get(c.metric) is not None:
                    study_trial.set_constraint(c.metric, c.violation(float(result[c.metric])))
        if result and not error and self.stopped_early(result):
            result = None  # Ray's OptunaSearch tells a trial without values PRUNED
        super().on_trial_complete(trial_id, result, error)

    def stopped_early(self, result: dict) -> bool:
        if result.get(INFEASIBLE_KEY):
            return True
        if self._budget is None:
            return False
        key, full = self._budget
        return key in result and result[key] < full


class WithReferenceControl(Searcher):
    """The first suggestion is ``reference`` (a fixed configuration); every other one, and every result
    except the reference trial's, goes to ``searcher``."""

    def __init__(self, searcher: Searcher, reference: dict[str, Any]) -> None:
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.reference = dict(reference)
        self.reference_trial_id: str | None = None

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def suggest(self, trial_id: str) -> dict | None:
        if self.reference_trial_id is None:
            self.reference_trial_id = trial_id
            return dict(self.reference)
        return self.searcher.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id != self.reference_trial_id:
            self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id != self.reference_trial_id:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)

    # Tune saves a wrapper's own state (get_state) apart from the base searcher's (save), as it does for
    # ConcurrencyLimiter: see SearchGenerator.save_to_dir.
    def get_state(self) -> dict:
        return {"reference": dict(self.reference), "reference_trial_id": self.reference_trial_id}

    def set_state(self, state: dict) -> None:
        self.reference = state["reference"]
        self.reference_trial_id = state["reference_trial_id"]

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)
