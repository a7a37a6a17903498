"""Which MLflow run a training run writes to: its own, a trial nested under a sweep, or one to reattach.

A trial is identified by its Tune trial id (stable across ``tune --resume``), kept as the run's
``trial_id`` tag; a data-parallel ``train`` by a ``run_key`` tag its driver draws once and hands to every
worker group it starts. Resuming looks the run up by those tags (``store.find_runs``), so a trial or a
worker group restarted after a crash continues its own run even when it died before its first checkpoint
was registered (Ray Train registers a reported checkpoint only when its controller next polls the
workers, every 2 s: a worker killed in between restarts from the checkpoint before, or from none). A
checkpoint's run id wins when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlflow.entities import Run

from coded_resnext.orchestration.store import find_runs
from coded_resnext.orchestration.tracking import RunTracker
from coded_resnext.results.schema import Tag


@dataclass
class Lineage:
    tracking_uri: str | None = None  # None: the config's tracking.uri, else the local SQLite store
    parent_run_id: str | None = None  # the sweep's (or ablation's) parent run
    trial_id: str | None = None
    run_key: str | None = None  # one data-parallel `train` across its worker-group restarts
    tags: dict[str, str] = field(default_factory=dict)

    def identity(self) -> dict[str, str]:
        """The tags that find this run again (empty: a plain run, found only through its checkpoint)."""
        if self.trial_id and self.parent_run_id:
            return {Tag.TRIAL_ID: self.trial_id, Tag.PARENT_RUN: self.parent_run_id}
        if self.run_key:
            return {Tag.RUN_KEY: self.run_key}
        return {}

    def find_run(self, uri: str, experiment: str) -> Run | None:
        identity = self.identity()
        if not identity:
            return None
        runs = find_runs(uri, experiment, identity)
        return runs[0] if runs else None

    def find_trial_run(self, uri: str, experiment: str) -> str | None:
        run = self.find_run(uri, experiment)
        return run.info.run_id if run else None

    def finished_metrics(self, uri: str | None, experiment: str) -> dict[str, float] | None:
        """A trial's final metrics when its run already FINISHED: Tune restored it from an experiment
        snapshot older than its end (the driver was killed in between), and it must not train again."""
        uri = self.tracking_uri or uri
        if not (self.trial_id and uri):
            return None
        run = self.find_run(uri, experiment)
        if run is None or run.info.status != "FINISHED":
            return None
        return dict(run.data.metrics)

    def open(self, uri: str | None, experiment: str, run_name: str | None, run_id: str | None, tags: dict[str, str]):
        """The run tracker: ``run_id`` (from a checkpoint) if given, else this run's earlier run, else new."""
        uri = self.tracking_uri or uri
        all_tags = {**tags, **self.tags}
        if self.trial_id:
            all_tags[Tag.TRIAL_ID] = self.trial_id
        if self.run_key:
            all_tags[Tag.RUN_KEY] = self.run_key
        if run_id is None and uri is not None:
            run_id = self.find_trial_run(uri, experiment)
        return RunTracker(
            uri, experiment, run_id=run_id, run_name=run_name, tags=all_tags, parent_run_id=self.parent_run_id
        )
