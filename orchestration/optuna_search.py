"""Ray's ``OptunaSearch`` with labels in the study, so the study outlives the driver that made it."""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch


class TaggedOptunaSearch(OptunaSearch):
    """Labels the study with the space's hash and every Optuna trial with the Tune trial it serves
    (``_ot_study`` and ``_ot_trials`` are Ray's: the study, and Tune trial id -> Optuna trial); see
    ``orchestration/searcher.py`` for why."""

    space_hash: str | None = None
    hash_attr = "search_space_hash"
    trial_attr = "tune_trial_id"

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)
        if self.space_hash and self.hash_attr not in self._ot_study.user_attrs:
            self._ot_study.set_user_attr(self.hash_attr, self.space_hash)

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        trial = self._ot_trials.get(trial_id)
        if trial is not None and self.trial_attr not in trial.user_attrs:
            trial.set_user_attr(self.trial_attr, trial_id)
        return config
