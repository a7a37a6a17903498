"""One reference-control trial in a sweep that no searcher sees (``tune.reference_control``, see ``sweep.py``):
a plain ResNeXt with the sweep's base config and budget, the baseline the report draws beside the front."""

from __future__ import annotations

from typing import Any

from ray.tune.search import Searcher


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
