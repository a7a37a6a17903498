"""Long tables read from the runs' artifacts (``tables/<name>.csv``, as ``orchestration.training`` logs
the evaluation suite) and from their metric histories, one frame for many runs with a ``run_id`` column.

Local artifact stores (``file:`` URIs, the default beside a SQLite store) are read in place; anything
else goes through ``MlflowClient.download_artifacts``. Runs without the table are skipped (the report
says which); a table that cannot be parsed counts as missing rather than stopping everything.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from coded_resnext.results.runs import client_for

TABLES = ("binary_classifiers", "early_exit_curve", "exit_points", "decode_accuracy", "removal_curve", "invariance")
HISTORY_KEYS = ("train/loss", "train/coding_loss", "val/loss", "val/accuracy")
HISTORY_COLUMNS = ["run_id", "key", "step", "value", "timestamp"]
_THREADS = 8  # artifact reads and history queries wait on I/O, not on the CPU


def local_artifact_dir(artifact_uri: str | None) -> Path | None:
    """The directory of a local artifact URI; None for remote stores."""
    if not artifact_uri:
        return None
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and artifact_uri[1] == ":"):  # plain (Windows) path
        return Path(artifact_uri)
    return None


def _read_one(client: MlflowClient, run_id: str, artifact_uri: str | None, relpath: str) -> pd.DataFrame | None:
    local = local_artifact_dir(artifact_uri)
    try:
        if local is not None:
            path = local / relpath
            return pd.read_csv(path) if path.is_file() else None
        with tempfile.TemporaryDirectory() as tmp:
            return pd.read_csv(client.download_artifacts(run_id, relpath, tmp))
    except (OSError, MlflowException, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None


def load_table(runs: pd.DataFrame, name: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """``tables/<name>.csv`` of every run that has it, stacked, with ``run_id`` as the first column."""
    client = client_for(tracking_uri)
    relpath = f"tables/{name}.csv"
    pairs = list(zip(runs["run_id"], runs.get("artifact_uri", [None] * len(runs)), strict=True))
    with ThreadPoolExecutor(_THREADS) as pool:
        tables = list(pool.map(lambda p: _read_one(client, p[0], p[1], relpath), pairs))
    frames = [t.assign(run_id=run_id) for (run_id, _), t in zip(pairs, tables, strict=True) if t is not None]
    if not frames:
        return pd.DataFrame({"run_id": pd.Series(dtype="string")})
    frame = pd.concat(frames, ignore_index=True)
    frame["run_id"] = frame["run_id"].astype("string")
    return frame[["run_id", *[c for c in frame.columns if c != "run_id"]]]


def load_binary_classifiers(runs: pd.DataFrame, tracking_uri: str | None = None) -> pd.DataFrame:
    """Per run and class: parameter fraction, threshold, precision/recall/F1 (in-distribution and OOD)."""
    return load_table(runs, "binary_classifiers", tracking_uri)


def load_early_exit(runs: pd.DataFrame, tracking_uri: str | None = None) -> pd.DataFrame:
    """Per run and confidence threshold: accuracy, mean compute fraction, exit rate."""
    return load_table(runs, "early_exit_curve", tracking_uri)


def load_histories(
    runs: pd.DataFrame, tracking_uri: str | None = None, keys: Sequence[str] = HISTORY_KEYS
) -> pd.DataFrame:
    """Per-epoch values: one row per (run, metric key, step) for the ``keys`` each run has."""
    client = client_for(tracking_uri)
    jobs: list[tuple[str, str]] = []
    for key in keys:
        column = f"metrics.{key}"
        if column in runs.columns:
            jobs += [(run_id, key) for run_id in runs.loc[runs[column].notna(), "run_id"]]

    def fetch(job: tuple[str, str]) -> list[tuple]:
        run_id, key = job
        try:
            return [(run_id, key, m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key)]
        except MlflowException:
            return []

    with ThreadPoolExecutor(_THREADS) as pool:
        rows = [row for chunk in pool.map(fetch, jobs) for row in chunk]
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    frame = frame.astype({"run_id": "string", "key": "string", "step": "int64", "value": "float64"})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    # a resumed run may hold a step twice (logged before a crash, then again): keep the latest value
    frame = frame.sort_values(["run_id", "key", "step", "timestamp"], kind="stable")
    return frame.drop_duplicates(["run_id", "key", "step"], keep="last").reset_index(drop=True)
