"""MLflow tracking of one run, through ``MlflowClient`` (no global active-run state).

Metrics go in batches (``log_batch``): one call per epoch rather than one per metric. A resumed run
reattaches to its MLflow run and never logs a (metric, step) twice: steps at or below the last logged
step of a key are dropped, so re-running an interrupted epoch does not duplicate it.
"""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

DEFAULT_RUNS_DIR = Path("runs")


def default_tracking_uri(runs_dir: Path = DEFAULT_RUNS_DIR) -> str:
    runs_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(runs_dir / 'mlflow.db').resolve()}"


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class RunTracker:
    """One MLflow run: created, or reattached by id (resume)."""

    def __init__(
        self,
        uri: str | None,
        experiment: str,
        *,
        run_id: str | None = None,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> None:
        self.uri = uri or default_tracking_uri()
        self.client = MlflowClient(self.uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            location = None
            if _is_local(self.uri):  # keep artifacts beside the local store, not in the cwd
                location = (DEFAULT_RUNS_DIR / "artifacts").resolve().as_uri()
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        else:
            self.experiment_id = exp.experiment_id
        self._floor: dict[str, int] = {}
        all_tags = dict(tags or {})
        all_tags.setdefault("git_commit", git_commit())
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        if run_id is None:
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
            self.run_id = run.info.run_id
        else:
            run = self.client.get_run(run_id)
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            for key in run.data.metrics:
                history = self.client.get_metric_history(run_id, key)
                self._floor[key] = max((m.step for m in history), default=-1)
            self.set_tags(all_tags)

    # ---- logging -------------------------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        existing = self.client.get_run(self.run_id).data.params
        fresh = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
        for i in range(0, len(fresh), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=fresh[i : i + 100])

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int) -> int:
        """Log finite metrics at ``step`` in one batch; returns how many were logged."""
        now = int(time.time() * 1000)
        batch = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if v is not None and math.isfinite(float(v)) and step > self._floor.get(k, -1)
        ]
        for i in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 1000])
        for m in batch:
            self._floor[m.key] = step
        return len(batch)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(directory), artifact_path)

    def log_model(
        self, model: Any, example: Any, name: str = "model", registered_model_name: str | None = None
    ) -> None:
        """Log a torch module with ``mlflow.pytorch`` so ``mlflow.pytorch.load_model`` gets it back.

        Saved as a torch.export program ("pt2"), traced on ``example``: loading it unpickles nothing.
        """
        import mlflow
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        with torch.no_grad():
            output = model(example)
        signature = infer_signature(example.numpy(), output.numpy())  # tensor specs, as pt2 requires
        mlflow.set_tracking_uri(self.uri)
        with mlflow.start_run(run_id=self.run_id):
            mlflow.pytorch.log_model(
                model,
                name=name,
                input_example=example.numpy(),
                signature=signature,
                serialization_format="pt2",
                registered_model_name=registered_model_name,
            )
        self.client.update_run(self.run_id, status="RUNNING")  # leaving the context marked it FINISHED

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)
