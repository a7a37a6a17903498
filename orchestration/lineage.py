"""Which MLflow run a training run writes to: its own, a trial nested under a sweep, or one to reattach.

A trial is identified by its Tune trial id (stable across ``tune --resume``), kept as the run's
``trial_id`` tag. Resuming looks the run up by (parent, trial id), so a trial restarted after a crash
continues its own child run even when it died before its first checkpoint; a checkpoint's run id wins
when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlflow.tracking import MlflowClient

from orchestration.tracking import RunTracker


@dataclass
class Lineage:
    tracking_uri: str | None = None  # None: the config's tracking.uri, else the local SQLite store
    parent_run_id: str | None = None  # the sweep's (or ablation's) parent run
    trial_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def find_trial_run(self, uri: str, experiment: str) -> str | None:
        if not (self.parent_run_id and self.trial_id):
            return None
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return None
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.trial_id = '{self.trial_id}' and tags.mlflow.parentRunId = '{self.parent_run_id}'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def open(self, uri: str | None, experiment: str, run_name: str | None, run_id: str | None, tags: dict[str, str]):
        """The run tracker: ``run_id`` (from a checkpoint) if given, else this trial's earlier run, else new."""
        uri = self.tracking_uri or uri
        all_tags = {**tags, **self.tags}
        if self.trial_id:
            all_tags["trial_id"] = self.trial_id
        if run_id is None and uri is not None:
            run_id = self.find_trial_run(uri, experiment)
        return RunTracker(
            uri, experiment, run_id=run_id, run_name=run_name, tags=all_tags, parent_run_id=self.parent_run_id
        )
