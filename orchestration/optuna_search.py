"""Ray's ``OptunaSearch`` as a sweep needs it: a study that outlives its driver, and what Optuna is told.

* Labels: the study records the search space's hash and every Optuna trial the Tune trial it serves
  (``_ot_study`` and ``_ot_trials`` are Ray's: the study, and Tune trial id -> Optuna trial), so another
  space under the same name is refused and a killed driver's orphans are found on resume (``searcher.py``).
* Stopped and infeasible trials: Ray tells Optuna every ended trial as COMPLETE with its last result, so a
  trial MO-ASHA stopped at epoch 1 would enter the study as if its one-epoch accuracy were final; here a
  trial that did not reach the full budget (or ended infeasible) is told PRUNED, which is what Optuna's own
  pruners record and what its TPE sampler ranks below complete trials.
* Constraints: Ray has no path for them, and Optuna 5 deprecates the samplers' ``constraints_func`` for
  ``Trial.set_constraint``, which this class calls on the study's trial from the trial's reported metrics
  before telling it, so TPE and NSGA-II rank infeasible trials last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from coded_resnext.orchestration.constraints import INFEASIBLE_KEY, Constraint


class SweepOptunaSearch(OptunaSearch):
    """``OptunaSearch`` with the labels, PRUNED for stopped and infeasible trials, and constraint values.

    Args beyond OptunaSearch's:
        constraints: bounds whose violation (``Constraint.violation`` of the reported metric) is set on
            every trial that reports the metric.
        budget: (result key, value) of a full budget, e.g. ("epoch", 4): a trial ending below it was stopped.
        space_hash: recorded on the study (``hash_attr``).
    """

    hash_attr = "search_space_hash"
    trial_attr = "tune_trial_id"

    def __init__(
        self,
        *args,
        constraints: Sequence[Constraint] = (),
        budget: tuple[str, float] | None = None,
        space_hash: str | None = None,
        **kw,
    ):
        self._constraints = list(constraints)
        self._budget = budget
        self.space_hash = space_hash  # before Ray's __init__, which sets the study up when given a space
        super().__init__(*args, **kw)

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)
        if self.space_hash and self.hash_attr not in self._ot_study.user_attrs:
            self._ot_study.set_user_attr(self.hash_attr, self.space_hash)

    @property
    def study_storage(self):
        """The Optuna storage of this searcher's study (in memory unless a database was given)."""
        return self._ot_study._storage

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        trial = self._ot_trials.get(trial_id)
        if trial is not None and self.trial_attr not in trial.user_attrs:
            trial.set_user_attr(self.trial_attr, trial_id)
        return config

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
