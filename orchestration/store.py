"""The tracking store: where it is by default, set-up under a lock, retries, and the one lookup of runs.

A local SQLite store is created and migrated once, under a file lock (``prepare_store``), so commands
started together on a fresh machine do not race through MLflow's schema migrations. Every call to a store
is retried with exponential backoff on connection errors, timeouts, 429 and 5xx (``call_with_retry``);
``find_runs`` is the one lookup of runs by tags (a trial's earlier run, a sweep's parent, a trial's run to
close, the children of a sweep to reconcile on resume). Writes go through ``tracking.RunTracker``.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from coded_resnext.orchestration.errors import UserError
from coded_resnext.orchestration.redaction import redact, redact_uri

DEFAULT_RUNS_DIR = Path("runs")


class TrackingError(UserError):
    """The tracking store refused a call or stayed unreachable; the message says which and what to do."""


def default_tracking_uri(runs_dir: Path = DEFAULT_RUNS_DIR) -> str:
    """The SQLite store under the working directory, used when no tracking URI is given (created only when
    a command opens it: ``prepare_store``)."""
    return f"sqlite:///{(runs_dir / 'mlflow.db').resolve()}"


def is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


_PREPARED: set[str] = set()


def prepare_store(uri: str) -> None:
    """Create and migrate a local SQLite store once, under an exclusive file lock beside it.

    MLflow creates the schema (alembic migrations) the first time a process opens a store; two processes
    doing so at once on a file that does not exist yet both migrate and crash ("Online migration expected
    to match one row", "duplicate column name: step"). Under the lock the first process migrates and the
    others find the schema done. Servers and other stores migrate themselves; once per process and URI.
    A directory that cannot be created or a store MLflow cannot open is a one-line ``TrackingError``.
    """
    if not uri.startswith("sqlite:///") or uri in _PREPARED:
        return
    db = Path(uri.removeprefix("sqlite:///"))
    shown = redact_uri(uri)
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        with open(db.with_name(db.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                MlflowClient(uri).search_experiments(max_results=1)  # opening the store runs its migrations
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    except OSError as err:
        raise TrackingError(
            f"tracking store {shown}: cannot create or lock it ({err.strerror or err}); pass --tracking-uri with a "
            "directory you can write to"
        ) from None
    except MlflowException as err:
        raise TrackingError(f"tracking store {shown} cannot be opened ({failure_reason(err)})") from None
    _PREPARED.add(uri)


def open_store(uri: str | None) -> str:
    """The tracking URI a command uses, ready: ``uri`` (else the default ``runs/mlflow.db`` under the
    working directory, which the command names in its output), a fresh local store created and migrated
    under the lock. Every entry point that reads or writes runs calls it first, so any mix of commands
    started at once on a store that does not exist yet works."""
    resolved = uri or default_tracking_uri()
    prepare_store(resolved)
    return resolved


# An MLflow server whose own database is overloaded answers 400 BAD_REQUEST, not 503: a SQLAlchemy pool
# timeout ("QueuePool limit of size 5 overflow 10 reached, connection timed out"), PostgreSQL out of
# connections, a locked SQLite file. Not the client's mistake: retried like a 503 (found by
# benchmarks/tracking_load.py with 64 writers, where treating it as a refusal dropped four trials' metrics).
_OVERLOADED_STORE = ("QueuePool limit", "too many clients", "remaining connection slots", "database is locked")


def is_transient(err: BaseException) -> bool:
    """Worth retrying: the store was unreachable, timed out, overloaded (429, or its database out of
    connections) or failed inside (5xx)."""
    if isinstance(err, MlflowException):
        status = err.get_http_status_code()
        return status == 429 or status >= 500 or any(marker in str(err) for marker in _OVERLOADED_STORE)
    response = getattr(err, "response", None)  # requests.HTTPError from an artifact upload
    if response is not None and getattr(response, "status_code", None) is not None:
        return response.status_code == 429 or response.status_code >= 500
    if isinstance(err, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return True
    return isinstance(err, ConnectionError | TimeoutError)


def failure_reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return redact(f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__)


class StoreUnavailable(Exception):
    """A transient failure of the store, carrying its cause (``RunTracker`` buffers on it)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(failure_reason(cause))
        self.cause = cause


def call_with_retry(
    fn: Callable[[], Any],
    *,
    what: str,
    display_uri: str,
    deadline: float,
    retry_base: float = 0.5,
    retry_max: float = 30.0,
    on_retry: Callable[[], None] | None = None,
) -> Any:
    """``fn()``, retried with exponential backoff on transient failures until ``deadline``; a refusal or
    a store that stays down is a ``TrackingError`` naming ``what``."""
    delay = retry_base
    started = time.monotonic()
    while True:
        try:
            return fn()
        except Exception as err:
            if not is_transient(err):
                if isinstance(err, MlflowException):
                    raise TrackingError(f"could not {what} at {display_uri}: {failure_reason(err)}") from None
                raise
            if time.monotonic() + delay > deadline:
                raise TrackingError(
                    f"could not {what}: tracking store {display_uri} unreachable for "
                    f"{time.monotonic() - started:.0f} s ({failure_reason(err)}); start the server or check --tracking-uri"
                ) from None
            if on_retry is not None:
                on_retry()
            time.sleep(delay)
            delay = min(delay * 2, retry_max)


def _quote(value: str) -> str:
    """A string literal of MLflow's search syntax, which has no escapes: single or double quotes."""
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise TrackingError(f"cannot search for a tag value holding both kinds of quote: {value!r}")


def find_runs(
    uri: str,
    experiment: str,
    tags: dict[str, str],
    *,
    statuses: tuple[str, ...] | None = None,
    newest_first: bool = True,
    timeout: float = 120.0,
) -> list[Run]:
    """Every run of ``experiment`` whose tags equal ``tags`` (all of them), optionally only in ``statuses``,
    newest first; an empty list when the experiment does not exist. Reads are retried like writes.

    The one lookup of runs by tags: a trial's earlier run (lineage), a sweep's parent, a trial's run to
    close, the children of a sweep to reconcile on resume.
    """
    prepare_store(uri)
    client = MlflowClient(uri)
    where = " and ".join(f"tags.`{key}` = {_quote(value)}" for key, value in tags.items())
    order = ["attributes.start_time DESC" if newest_first else "attributes.start_time ASC"]

    def search() -> list[Run]:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return []
        runs: list[Run] = []
        token = None
        while True:
            page = client.search_runs([exp.experiment_id], where, max_results=1000, order_by=order, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    runs = call_with_retry(
        search, what=f"search runs of {experiment!r}", display_uri=redact_uri(uri), deadline=time.monotonic() + timeout
    )
    return [r for r in runs if statuses is None or r.info.status in statuses]
