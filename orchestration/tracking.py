"""MLflow tracking of one run, through ``MlflowClient`` (no global active-run state).

Metrics go in batches (``log_batch``): one call per epoch rather than one per metric (a call to a
server costs ~60 ms). A resumed run reattaches to its MLflow run and never logs a (metric, step) twice:
steps at or below the last logged step of a key are dropped, so re-running an interrupted epoch does
not duplicate it.

A tracking server can go away (restarted, a network blip, a 503 under load) while training goes on.
Every client call is retried with exponential backoff on connection errors, timeouts, 429 and 5xx.
Metrics, params, tags and artifacts go through one ordered queue: when the server stays down they are
buffered (artifacts copied aside, since callers delete their temporary files) and training continues;
each later call tries again once its backoff has elapsed, and ``flush()`` (called by ``finish``) waits
for the server, up to ``flush_timeout``. Resending is idempotent: a metric keeps the timestamp it was
given when first queued, and MLflow stores an identical (key, step, timestamp, value) once, so a batch
whose reply was lost is not duplicated; params and tags are set-if-absent and artifacts overwrite.

Every MLflow write of the project goes through this module: a run's own tracker, and ``RunTracker.attach``
for another run (closing a trial's run from the driver, attaching a report to a sweep's parent). The store
itself (its default location, set-up under a lock, retries, the lookup of runs by tags) is ``store.py``.

Nothing the tracker records carries a secret: param and tag values and text artifacts pass through
``redaction.redact`` (URI credentials, credential environment variables); a binary artifact that holds
one is not uploaded.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import mlflow.pytorch
import torch
from mlflow.entities import DatasetInput, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from coded_resnext.orchestration.git_checkout import git_commit
from coded_resnext.orchestration.redaction import contains_secret, redact, redact_uri
from coded_resnext.orchestration.store import (
    DEFAULT_RUNS_DIR,
    StoreUnavailable,
    TrackingError,
    call_with_retry,
    default_tracking_uri,
    failure_reason,
    is_local,
    is_transient,
    prepare_store,
)
from coded_resnext.orchestration.system_metrics import SystemMetrics
from coded_resnext.results.schema import MODEL_DEVELOPMENT, Tag

logger = logging.getLogger(__name__)

_TEXT_SUFFIXES = {
    ".yaml", ".yml", ".json", ".txt", ".csv", ".md", ".log", ".toml", ".ini", ".cfg", ".html", ".patch", ".diff"
}  # fmt: skip


@dataclass
class _Item:
    """One queued call: metrics, params, tags or an artifact; ``send`` is safe to repeat."""

    kind: str
    send: Callable[[], None]
    size: int = 1
    spool: Callable[[], None] | None = None  # copy local files aside before the caller deletes them


@dataclass
class TrackerStats:
    """What the tracker went through (for tests and the closing log line)."""

    calls: int = 0  # client calls attempted, retries included
    retries: int = 0  # calls repeated after a transient failure
    outages: int = 0  # times the store became unreachable and items were buffered
    buffered_max: int = 0  # the most items waiting at once
    sent: dict[str, int] = field(default_factory=dict)  # items delivered, by kind


class RunTracker:
    """One MLflow run: created, reattached by id (resume), or attached to as a writer only (``attach``)."""

    def __init__(
        self,
        uri: str | None,
        experiment: str | None,
        *,
        run_id: str | None = None,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
        retry_base: float = 0.5,
        retry_max: float = 30.0,
        connect_timeout: float = 300.0,
        flush_timeout: float = 600.0,
        reattach: bool = True,
    ) -> None:
        self.uri = uri or default_tracking_uri()
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.connect_timeout = connect_timeout
        self.flush_timeout = flush_timeout if not is_local(self.uri) else min(flush_timeout, 60.0)
        self.stats = TrackerStats()
        self._pending: deque[_Item] = deque()
        self._failures = 0
        self._retry_at = 0.0
        self._down_since: float | None = None
        self._spool: Path | None = None
        self._lock = threading.RLock()  # the system-metrics thread logs through the same queue
        self._monitor = None
        if self.uri.startswith(("http://", "https://")):
            # This class retries (with backoff) and buffers; MLflow's own retry loop would block
            # training for minutes per call first. A user's explicit setting still wins.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        deadline = time.monotonic() + connect_timeout
        try:
            self._call_until(lambda: prepare_store(self.uri), deadline, "open the tracking store")
            self.client = MlflowClient(self.uri)
        except MlflowException as err:
            raise TrackingError(
                f"tracking URI {self.display_uri} is not usable ({failure_reason(err)}); "
                "use sqlite:///path/mlflow.db or http(s)://host:port"
            ) from None
        self._floor: dict[str, int] = {}
        self._param_keys: set[str] = set()  # params already sent or queued (MLflow params are write-once)
        if run_id is not None and not reattach:  # a writer for a run someone else manages
            self.experiment_id = None
            self.run_id = run_id
            return
        all_tags = dict(tags or {})
        all_tags.setdefault(Tag.GIT_COMMIT, git_commit())
        if parent_run_id:
            all_tags[Tag.PARENT_RUN] = parent_run_id
        all_tags = {k: redact(str(v)) for k, v in all_tags.items()}
        if experiment is None:
            raise ValueError("RunTracker: an experiment is needed to create or reattach a run")
        self.experiment_id = self._call_until(lambda: self._experiment_id(experiment), deadline, "open the experiment")
        if run_id is None:
            run = self._call_until(
                lambda: self.client.create_run(
                    self.experiment_id, run_name=redact(run_name) if run_name else None, tags=all_tags
                ),
                deadline,
                "create a run",
            )
            self.run_id = run.info.run_id
        else:
            self.run_id = run_id
            self._call_until(lambda: self._reattach(run_id), deadline, f"reattach to run {run_id}")
            self.set_tags(all_tags)

    @classmethod
    def attach(cls, uri: str, run_id: str, **kwargs: Any) -> RunTracker:
        """A tracker that writes to the existing run ``run_id`` without reattaching to it: its status,
        tags and metric history are left alone until this tracker writes (closing a trial's run from the
        driver, a report attached to a parent, a rank's system metrics)."""
        return cls(uri, None, run_id=run_id, reattach=False, **kwargs)

    @property
    def display_uri(self) -> str:
        """The tracking URI with any credentials masked, for messages."""
        return redact_uri(self.uri)

    def _experiment_id(self, name: str) -> str:
        """The experiment's id, creating it (tagged as model development, so MLflow's UI opens it on its runs
        table) when it does not exist. An experiment without a kind (created by an older version, or by
        MLflow's defaults) gets the tag too; a kind someone chose is left alone."""
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if Tag.EXPERIMENT_KIND not in exp.tags:
                self.client.set_experiment_tag(exp.experiment_id, Tag.EXPERIMENT_KIND, MODEL_DEVELOPMENT)
            return exp.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):  # artifacts beside the SQLite store, wherever it is (not the cwd)
            location = (Path(self.uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
        elif is_local(self.uri):
            location = (DEFAULT_RUNS_DIR / "artifacts").resolve().as_uri()
        try:
            return self.client.create_experiment(
                name, artifact_location=location, tags={Tag.EXPERIMENT_KIND: MODEL_DEVELOPMENT}
            )
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":  # another trial created it first
                raise
            return self.client.get_experiment_by_name(name).experiment_id

    def _reattach(self, run_id: str) -> None:
        run = self.client.get_run(run_id)
        self.client.update_run(run_id, status="RUNNING")
        self._param_keys = set(run.data.params)
        for key in run.data.metrics:
            history = self.client.get_metric_history(run_id, key)
            self._floor[key] = max((m.step for m in history), default=-1)

    # ---- calling the store -----------------------------------------------------------------------
    def _once(self, fn: Callable[[], Any]) -> Any:
        self.stats.calls += 1
        try:
            return fn()
        except Exception as err:
            if is_transient(err):
                raise StoreUnavailable(err) from err
            raise

    def _call_until(self, fn: Callable[[], Any], deadline: float, what: str) -> Any:
        """``fn()``, retried with exponential backoff on transient failures until ``deadline``."""

        def once() -> Any:
            self.stats.calls += 1
            return fn()

        def retried() -> None:
            self.stats.retries += 1

        return call_with_retry(
            once,
            what=what,
            display_uri=self.display_uri,
            deadline=deadline,
            retry_base=self.retry_base,
            retry_max=self.retry_max,
            on_retry=retried,
        )

    def _enqueue(self, item: _Item) -> None:
        with self._lock:
            self._pending.append(item)
            self.stats.buffered_max = max(self.stats.buffered_max, len(self._pending))
            self._drain()
            if self._pending and item.spool is not None:  # FIFO: if anything waits, this item does too
                item.spool()

    def _drain(self) -> bool:
        """Send queued items in order while the store answers; True when nothing is left waiting."""
        if self._pending and time.monotonic() < self._retry_at:
            return False  # still backing off: do not slow training down by knocking again
        while self._pending:
            item = self._pending[0]
            if self._failures:
                self.stats.retries += 1
            try:
                self._once(item.send)
            except StoreUnavailable as err:
                self._failures += 1
                self._retry_at = time.monotonic() + min(self.retry_base * 2 ** (self._failures - 1), self.retry_max)
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    self.stats.outages += 1
                    logger.warning(
                        "tracking store %s unreachable (%s); buffering metrics and artifacts and retrying with "
                        "backoff while training continues",
                        self.display_uri,
                        err,
                    )
                for waiting in self._pending:  # the caller may delete its files before the store is back
                    if waiting.spool is not None:
                        waiting.spool()
                return False
            except Exception as err:  # a refusal (4xx) or a bug: not retried, not left to block the queue
                self._pending.popleft()
                if isinstance(err, MlflowException) or getattr(err, "response", None) is not None:
                    raise TrackingError(f"the tracking store refused {item.kind} ({failure_reason(err)})") from None
                raise
            self._pending.popleft()
            self.stats.sent[item.kind] = self.stats.sent.get(item.kind, 0) + item.size
        if self._down_since is not None:
            logger.warning(
                "tracking store %s is back after %.0f s; buffered items flushed",
                self.display_uri,
                time.monotonic() - self._down_since,
            )
            self._down_since = None
        self._failures = 0
        self._retry_at = 0.0
        return True

    def _locked_drain(self) -> bool:
        with self._lock:
            return self._drain()

    def pending(self) -> int:
        """Items buffered, waiting for the store."""
        return len(self._pending)

    def flush(self, timeout: float | None = None) -> None:
        """Wait (retrying with backoff) until every buffered item is delivered, or raise after ``timeout``."""
        deadline = time.monotonic() + (self.flush_timeout if timeout is None else timeout)
        while not self._locked_drain():
            now = time.monotonic()
            if now >= deadline:
                count = sum(item.size for item in self._pending)
                kept = f" (unsent artifacts kept in {self._spool})" if self._spool is not None else ""
                raise TrackingError(
                    f"tracking store {self.display_uri} still unreachable; {count} buffered values were not "
                    f"logged to run {self.run_id}{kept}; bring the server back and rerun with --resume"
                )
            time.sleep(max(0.0, min(self._retry_at, deadline) - now) + 0.01)

    # ---- logging -------------------------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        """Log params the run does not have yet (a resumed run keeps its first values; MLflow refuses
        to change one). Resending a batch whose reply was lost is harmless: same key, same value."""
        fresh = [Param(k, redact(str(v))[:6000]) for k, v in params.items() if k not in self._param_keys]
        self._param_keys.update(p.key for p in fresh)
        for i in range(0, len(fresh), 100):  # MLflow takes at most 100 params per batch
            chunk = fresh[i : i + 100]
            self._enqueue(
                _Item("params", lambda chunk=chunk: self.client.log_batch(self.run_id, params=chunk), len(chunk))
            )

    def set_experiment_tags(self, tags: dict[str, str]) -> None:
        """Tags of the run's experiment (e.g. a saved view of the runs table, ``sweep_summary.runs_view``)."""
        if self.experiment_id is None:
            raise ValueError("set_experiment_tags: this tracker was attached to a run, not opened in an experiment")
        experiment_id = self.experiment_id
        for key, value in tags.items():
            text = redact(str(value))
            self._enqueue(
                _Item("tags", lambda key=key, text=text: self.client.set_experiment_tag(experiment_id, key, text))
            )

    def set_tags(self, tags: dict[str, str]) -> None:
        batch = [RunTag(k, redact(str(v))) for k, v in tags.items()]
        self._enqueue(_Item("tags", lambda: self.client.log_batch(self.run_id, tags=batch), len(batch)))

    def last_step(self, key: str) -> int:
        """The last step logged (or queued) for metric ``key`` in this run; -1 if none."""
        return self._floor.get(key, -1)

    def log_metrics(self, metrics: dict[str, float], step: int) -> int:
        """Queue finite metrics at ``step`` as one batch and send what the store takes; returns how many
        were accepted (new (key, step) pairs), whether sent now or buffered."""
        now = int(time.time() * 1000)
        with self._lock:
            batch = [
                Metric(k, float(v), now, step)
                for k, v in metrics.items()
                if v is not None and math.isfinite(float(v)) and step > self._floor.get(k, -1)
            ]
            for m in batch:
                self._floor[m.key] = step
            for i in range(0, len(batch), 1000):
                chunk = batch[i : i + 1000]
                self._enqueue(
                    _Item("metrics", lambda chunk=chunk: self.client.log_batch(self.run_id, metrics=chunk), len(chunk))
                )
        return len(batch)

    def next_step(self, prefix: str) -> int:
        """The first step after every step logged so far under keys starting with ``prefix``."""
        with self._lock:
            return 1 + max((step for key, step in self._floor.items() if key.startswith(prefix)), default=-1)

    def log_inputs(self, inputs: list[DatasetInput]) -> None:
        """Record datasets the run used (MLflow dataset inputs); MLflow stores a (name, digest) once."""
        self._enqueue(_Item("inputs", lambda: self.client.log_inputs(self.run_id, datasets=inputs), len(inputs)))

    def start_system_metrics(self, interval: float, node_id: str | None = None) -> None:
        """Sample CPU, memory, disk, network (and GPU) every ``interval`` s into this run as ``system/...``
        (``system/<node_id>/...`` for one rank of several), until ``finish``/``close``."""
        if self._monitor is None:
            self._monitor = SystemMetrics(self, interval, node_id)
            self._monitor.start()

    def _stop_system_metrics(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.finish()

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._log_files(Path(path), artifact_path, directory=False)

    def log_artifacts(self, directory: Path, artifact_path: str | None = None) -> None:
        self._log_files(Path(directory), artifact_path, directory=True)

    def _spool_dir(self) -> Path:
        if self._spool is None:
            self._spool = Path(tempfile.mkdtemp(prefix="coded-resnext-tracking-"))
        return self._spool

    def _log_files(self, path: Path, artifact_path: str | None, directory: bool) -> None:
        if not (path.is_dir() if directory else path.is_file()):
            raise TrackingError(f"{path}: no such {'directory' if directory else 'file'} to log as an artifact")
        clean = self._without_secrets(path, directory)
        if clean is None:  # a single file that holds a credential: nothing to upload
            return
        source = {"path": clean}
        if not source["path"].exists():  # a single binary file holding a credential: left out, said so
            return

        def send() -> None:
            if directory:
                self.client.log_artifacts(self.run_id, str(source["path"]), artifact_path)
            else:
                self.client.log_artifact(self.run_id, str(source["path"]), artifact_path)

        def spool() -> None:
            current = source["path"]
            if self._spool is not None and self._spool in current.parents:
                return
            copy = Path(tempfile.mkdtemp(dir=self._spool_dir())) / current.name
            if directory:
                shutil.copytree(current, copy)
            else:
                shutil.copy2(current, copy)
            source["path"] = copy

        files = sum(1 for p in path.rglob("*") if p.is_file()) if directory else 1
        self._enqueue(_Item("artifacts", send, files, spool))

    def _without_secrets(self, path: Path, directory: bool) -> Path | None:
        """``path`` itself when no file in it holds a secret; else a spooled copy with text files
        redacted and binary files that hold one left out (and said so); None if nothing is left."""
        files = sorted(p for p in path.rglob("*") if p.is_file()) if directory else [path]
        dirty = [p for p in files if contains_secret(p.read_bytes())]
        if not dirty:
            return path
        copy_root = Path(tempfile.mkdtemp(dir=self._spool_dir())) / path.name
        if directory:
            shutil.copytree(path, copy_root)
        else:
            shutil.copy2(path, copy_root)
        for original in dirty:
            target = copy_root / original.relative_to(path) if directory else copy_root
            text = None
            if original.suffix.lower() in _TEXT_SUFFIXES:
                try:
                    text = original.read_text()
                except UnicodeDecodeError:
                    text = None
            if text is not None:
                target.write_text(redact(text))
            else:
                target.unlink()
                logger.warning("artifact %s holds a credential and is not uploaded; remove it from the file", original)
        return copy_root if copy_root.exists() else None

    def log_model(
        self, model: Any, example: Any, name: str = "model", registered_model_name: str | None = None
    ) -> None:
        """Log a torch module with ``mlflow.pytorch`` so ``mlflow.pytorch.load_model`` gets it back.

        Saved as a torch.export program ("pt2"), traced on ``example``: loading it unpickles nothing.
        Needs the store up: buffered items are flushed first, then the upload is retried with backoff.
        """
        self.flush()
        with torch.no_grad():
            output = model(example)
        signature = infer_signature(example.numpy(), output.numpy())  # tensor specs, as pt2 requires

        def upload() -> None:
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

        self._call_until(upload, time.monotonic() + self.flush_timeout, "log the model")

    def log_pyfunc_model(
        self,
        python_model: Any,
        artifacts: dict[str, str],
        example: Any,
        output: Any,
        name: str = "model",
        registered_model_name: str | None = None,
    ) -> None:
        """Log an ``mlflow.pyfunc`` model (``python_model`` with its ``artifacts`` files) and register it on
        request; the run's status is what it was before (a finished run stays FINISHED). Retried like
        ``log_model``."""
        self.flush()
        signature = infer_signature(example, output)

        def upload() -> None:
            status = self.client.get_run(self.run_id).info.status
            mlflow.set_tracking_uri(self.uri)
            with mlflow.start_run(run_id=self.run_id):
                mlflow.pyfunc.log_model(
                    name=name,
                    python_model=python_model,
                    artifacts=artifacts,
                    signature=signature,
                    input_example=example,
                    registered_model_name=registered_model_name,
                )
            self.client.update_run(self.run_id, status=status)  # leaving the context marked it FINISHED

        self._call_until(upload, time.monotonic() + self.flush_timeout, "log the model")

    def close(self) -> None:
        """Stop sampling system metrics and flush everything buffered; the run's status is left alone."""
        try:
            self._stop_system_metrics()
            self.flush()
        finally:
            self._drop_spool()

    def _drop_spool(self) -> None:
        """Remove the copies of artifacts made aside (redacted, or kept while the store was down) once
        nothing waits to be sent; while something does, they stay for the next flush."""
        if self._spool is not None and not self._pending:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None

    def finish(self, status: str = "FINISHED") -> None:
        """Flush everything buffered, then mark the run ``status``."""
        try:
            self._stop_system_metrics()
            self.flush()
            self._call_until(
                lambda: self.client.set_terminated(self.run_id, status=status),
                time.monotonic() + self.flush_timeout,
                f"mark run {self.run_id} {status}",
            )
        finally:
            self._drop_spool()


def start_on_every_rank(settings, session, tracker, uri: str | None):
    """System metrics of every rank of a run into rank 0's run (``settings``: the config's tracking
    section). Rank 0 samples through its own tracker; every other rank attaches a writer to rank 0's run
    (its id broadcast from rank 0) under node id ``rank<i>``. Returns that writer (None on rank 0 and when
    sampling is off); ``close()`` it when the rank is done."""
    run_id = session.broadcast(tracker.run_id if tracker is not None else None) if session.world_size > 1 else None
    if not settings.system_metrics:
        return None
    node_id = f"rank{session.rank}" if session.world_size > 1 else None
    if tracker is not None:
        tracker.start_system_metrics(settings.system_metrics_interval, node_id)
        return None
    if run_id is None or uri is None:
        return None
    writer = RunTracker.attach(uri, run_id)
    writer.start_system_metrics(settings.system_metrics_interval, node_id)
    return writer
