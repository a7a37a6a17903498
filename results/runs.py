"""One row per tracked run, in the column convention of ``mlflow.search_runs``.

Columns: ``run_id``, ``experiment_id``, ``experiment``, ``run_name``, ``status``, ``start_time``,
``end_time`` (UTC timestamps), ``artifact_uri``, ``parent_run_id`` (the sweep or ablation a trial belongs
to; missing for single runs), then ``params.<key>`` (strings, as MLflow stores them), ``metrics.<key>``
(the final, i.e. latest, value of each metric) and ``tags.<key>``. Parameters stay strings so the frame
round-trips exactly; ``numeric_param`` reads one as numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pandas as pd
from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from coded_resnext.results.errors import ResultsError
from coded_resnext.results.schema import PARENT_ROLES, Tag, tag_column

PARENT_TAG = Tag.PARENT_RUN
BASE_COLUMNS = [
    "run_id",
    "experiment_id",
    "experiment",
    "run_name",
    "status",
    "start_time",
    "end_time",
    "artifact_uri",
    "parent_run_id",
]


def client_for(tracking_uri: str | None) -> MlflowClient:
    return MlflowClient(tracking_uri) if tracking_uri else MlflowClient()


def find_experiment(client: MlflowClient, experiment: str):
    """The experiment by name (or id); a ResultsError naming the ones that exist otherwise."""
    try:
        found = client.get_experiment_by_name(experiment)
        if found is None and experiment.isdigit():
            found = client.get_experiment(experiment)
    except MlflowException as err:
        if "RESOURCE_DOES_NOT_EXIST" not in str(err.error_code):
            raise ResultsError(f"cannot read the MLflow store at {client.tracking_uri}: {err.message}") from err
        found = None
    if found is not None and found.lifecycle_stage == "deleted":
        raise ResultsError(f"experiment {experiment!r} at {client.tracking_uri} is deleted; restore it first")
    if found is None:
        names = sorted(e.name for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY))
        listing = ", ".join(names) if names else "none"
        raise ResultsError(f"no experiment named {experiment!r} at {client.tracking_uri}; experiments there: {listing}")
    return found


def _row(run: Run, experiment: str) -> dict:
    info, data = run.info, run.data
    row = {
        "run_id": info.run_id,
        "experiment_id": info.experiment_id,
        "experiment": experiment,
        "run_name": info.run_name,
        "status": info.status,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "artifact_uri": info.artifact_uri,
        "parent_run_id": data.tags.get(PARENT_TAG),
    }
    row.update({f"params.{k}": v for k, v in data.params.items()})
    row.update({f"metrics.{k}": v for k, v in data.metrics.items()})
    row.update({f"tags.{k}": v for k, v in data.tags.items()})
    return row


def search_all(client: MlflowClient, experiment_id: str, filter_string: str = "") -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def runs_frame(runs: list[Run], experiment: str) -> pd.DataFrame:
    """The frame of ``runs``: typed columns (strings, float metrics, UTC times), sorted by start time."""
    frame = pd.DataFrame([_row(r, experiment) for r in runs])
    for column in BASE_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    for column in ("start_time", "end_time"):
        frame[column] = pd.to_datetime(frame[column], unit="ms", utc=True)
    metric_columns = sorted(c for c in frame.columns if c.startswith("metrics."))
    string_columns = [c for c in frame.columns if c not in metric_columns and c not in ("start_time", "end_time")]
    frame[metric_columns] = frame[metric_columns].astype("float64")
    frame[string_columns] = frame[string_columns].astype("string")
    rest = sorted(c for c in frame.columns if c not in BASE_COLUMNS and c not in metric_columns)
    params = [c for c in rest if c.startswith("params.")]
    tags = [c for c in rest if c.startswith("tags.")]
    frame = frame[BASE_COLUMNS + params + metric_columns + tags]
    return frame.sort_values(["start_time", "run_id"], kind="stable").reset_index(drop=True)


def load_runs(
    experiment: str,
    tracking_uri: str | None = None,
    *,
    parent_run_id: str | None = None,
    statuses: Sequence[str] | None = ("FINISHED",),
    include_parents: bool = False,
) -> pd.DataFrame:
    """The experiment's runs, one row each (see the module docstring for the columns).

    ``parent_run_id`` keeps the trials of one sweep or ablation; ``statuses`` keeps runs in those states
    (None: all); parent runs (``tags.role`` sweep or ablation) are left out unless ``include_parents``.
    Raises ResultsError for an unknown experiment; an experiment without matching runs gives an empty
    frame with the base columns (``run_status_counts`` says what is there instead).
    """
    client = client_for(tracking_uri)
    exp = find_experiment(client, experiment)
    filters = []
    if parent_run_id:
        filters.append(f"tags.`{PARENT_TAG}` = '{parent_run_id}'")
    runs = search_all(client, exp.experiment_id, " and ".join(filters))
    if statuses is not None:
        runs = [r for r in runs if r.info.status in statuses]
    if not include_parents:
        runs = [r for r in runs if r.data.tags.get(Tag.ROLE) not in PARENT_ROLES]
    if not runs:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in BASE_COLUMNS})
    return runs_frame(runs, exp.name)


def run_status_counts(experiment: str, tracking_uri: str | None = None) -> Counter:
    """How many runs of the experiment are in each status (parents included)."""
    client = client_for(tracking_uri)
    exp = find_experiment(client, experiment)
    return Counter(r.info.status for r in search_all(client, exp.experiment_id))


def load_parent_runs(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """The experiment's sweep and ablation parent runs, any status."""
    frame = load_runs(experiment, tracking_uri, statuses=None, include_parents=True)
    role = tag_column(Tag.ROLE)
    if role not in frame.columns:
        return frame.iloc[0:0]
    return frame[frame[role].isin(PARENT_ROLES)].reset_index(drop=True)


def numeric_param(runs: pd.DataFrame, key: str) -> pd.Series:
    """``params.<key>`` as numbers (``true``/``false`` as 1/0; anything else unparsable as NaN)."""
    column = f"params.{key}"
    if column not in runs.columns:
        return pd.Series(float("nan"), index=runs.index, dtype="float64")
    text = runs[column].astype("string").str.lower().replace({"true": "1", "false": "0"})
    return pd.to_numeric(text, errors="coerce").astype("float64")


def metric_values(runs: pd.DataFrame, key: str) -> pd.Series:
    """``metrics.<key>`` as floats, NaN where a run lacks it (or the column is absent)."""
    column = f"metrics.{key}"
    if column not in runs.columns:
        return pd.Series(float("nan"), index=runs.index, dtype="float64")
    return runs[column].astype("float64")
