"""Recorded learning curves: one row per (configuration, epoch), read from a Parquet file or a finished sweep.

Columns: ``config_id`` (0..n-1, the recording's trial order), ``trial_id`` (the recording's Tune trial),
``epoch`` (1..E), one column per searched key (the value as Tune handed it to the trial: a scheme mapping as
its ``json:`` string, numbers as numbers), one per metric (the sweep's objectives and a few more; NaN where a
metric was not logged that epoch), and three times:

* ``time/epoch_seconds``: the epoch's training and validation pass, as the trial logged it;
* ``time/rung_eval_seconds``: the light rung evaluation after it (NaN where none ran);
* ``seconds``: the epoch's wall time as the sweep saw it (from the previous epoch's report, or the trial's
  start for epoch 1, to this one's), the rung evaluation taken out; the last epoch's includes the whole
  evaluation suite, epoch 1's the trial's set-up.

The file's Parquet metadata (key ``coded_resnext.curves``, JSON) holds the provenance: the sweep, its git
commit, the command that regenerates it, seeds, sizes, what the recording cost.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from mlflow.tracking import MlflowClient

from coded_resnext.orchestration.constraints import ARCHITECTURE_METRICS, INFEASIBLE_KEY
from coded_resnext.orchestration.errors import UserError
from coded_resnext.orchestration.redaction import redact_uri
from coded_resnext.orchestration.search_space import encode, space_from_document
from coded_resnext.results.schema import Role, Tag

META_KEY = b"coded_resnext.curves"
CONFIG_ID = "config_id"
TRIAL_ID = Tag.TRIAL_ID
EPOCH = "epoch"
EPOCH_SECONDS = "time/epoch_seconds"
RUNG_SECONDS = "time/rung_eval_seconds"
SECONDS = "seconds"
TIME_COLUMNS = (EPOCH_SECONDS, RUNG_SECONDS, SECONDS)
EXTRA_METRICS = ("val/loss", "train/loss")  # kept beside the objectives: small, and useful to look at
# an epoch whose wall time exceeds this many times its logged time (and a minute) spans an interruption
# (a recording resumed later): its wall time is replaced by its logged time
GAP_FACTOR = 3.0


class CurvesError(UserError):
    """A curves file or a sweep that cannot be replayed; the message says why, in one line."""


def canonical(value: Any) -> Any:
    """A value in the form two configurations are compared in: numbers as rounded floats, ``json:`` strings
    with sorted keys, everything else as its string."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return round(float(value), 10)
    if isinstance(value, str) and value.startswith("json:"):
        return "json:" + json.dumps(json.loads(value[5:]), sort_keys=True)
    return str(value)


@dataclass
class Curves:
    """The recorded curves as arrays: ``metric(name)[config_id, epoch - 1]``."""

    frame: pd.DataFrame
    keys: list[str]  # the searched keys (columns)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frame = self.frame.sort_values([CONFIG_ID, EPOCH]).reset_index(drop=True)
        self.frame = frame
        ids = frame[CONFIG_ID].to_numpy()
        self.n = int(ids.max()) + 1 if len(ids) else 0
        self.epochs = int(frame[EPOCH].max()) if len(frame) else 0
        counts = frame.groupby(CONFIG_ID)[EPOCH].nunique()
        if len(counts) != self.n or (counts != self.epochs).any():
            short = counts[counts != self.epochs]
            first = int(short.index[0]) if len(short) else "?"
            raise CurvesError(
                f"curves: every configuration needs epochs 1..{self.epochs}; configuration {first} has "
                f"{int(counts.get(first, 0)) if first != '?' else 0} (a sweep with trials stopped early?)"
            )
        self._arrays: dict[str, np.ndarray] = {}
        first_rows = frame[frame[EPOCH] == 1].set_index(CONFIG_ID).sort_index()
        self.configs: list[dict[str, Any]] = [
            {k: _plain(first_rows.at[i, k]) for k in self.keys} for i in range(self.n)
        ]
        self.trial_ids = [str(first_rows.at[i, TRIAL_ID]) for i in range(self.n)] if TRIAL_ID in frame else []
        self.index: dict[tuple, int] = {}
        for i, config in enumerate(self.configs):
            self.index.setdefault(self.identity(config), i)

    # ---- lookups ----------------------------------------------------------------------------------
    def identity(self, config: Mapping[str, Any]) -> tuple:
        return tuple(canonical(config.get(k)) for k in self.keys)

    def lookup(self, config: Mapping[str, Any]) -> int | None:
        """The recorded configuration a searcher's ``config`` is (its searched keys), or None."""
        return self.index.get(self.identity(config))

    def metric(self, name: str) -> np.ndarray:
        """(configurations, epochs) of ``name``; NaN where it was not logged."""
        if name not in self._arrays:
            if name not in self.frame.columns:
                raise CurvesError(f"curves: no column {name!r}")
            values = pd.to_numeric(self.frame[name], errors="coerce").to_numpy(dtype=float)
            self._arrays[name] = values.reshape(self.n, self.epochs)
        return self._arrays[name]

    def has(self, name: str) -> bool:
        return name in self.frame.columns

    # ---- checks against what a simulation needs -----------------------------------------------------
    def require_columns(self, keys: Sequence[str], metrics: Sequence[str], where: str) -> None:
        """One line naming the first searched key or metric the curves lack."""
        missing_keys = [k for k in keys if k not in self.frame.columns]
        if missing_keys:
            raise CurvesError(
                f"{where}: has no column for the searched key {missing_keys[0]!r} (it records "
                f"{', '.join(self.keys) or 'no keys'}): curves of another search space?"
            )
        missing = [m for m in metrics if m not in self.frame.columns or self.frame[m].isna().all()]
        if missing:
            raise CurvesError(
                f"{where}: has no values of the objective {missing[0]!r} (metrics: "
                f"{', '.join(c for c in self.frame.columns if '/' in c and c not in TIME_COLUMNS)})"
            )

    def require_per_epoch(self, metrics: Sequence[str], epochs: Sequence[int], why: str, where: str) -> None:
        """Every configuration has ``metrics`` at ``epochs`` (1-based), else one line saying which is missing."""
        for name in metrics:
            values = self.metric(name)
            for epoch in epochs:
                column = values[:, epoch - 1]
                if np.isnan(column).any():
                    config = int(np.flatnonzero(np.isnan(column))[0])
                    raise CurvesError(
                        f"{where}: no per-epoch curve of {name!r} (configuration {config} has none at epoch {epoch}); "
                        f"{why}; record curves with tune.record_curves: true"
                    )


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---- files -------------------------------------------------------------------------------------------
def write_curves(frame: pd.DataFrame, path: Path, provenance: Mapping[str, Any]) -> Path:
    """The curves as one Parquet file (zstd), sorted by configuration and epoch, provenance in its metadata."""

    frame = frame.sort_values([CONFIG_ID, EPOCH]).reset_index(drop=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {**(table.schema.metadata or {}), META_KEY: json.dumps(provenance, default=str).encode()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(meta), path, compression="zstd")
    return path


def read_curves(path: Path) -> Curves:
    """A curves file written by ``write_curves`` (``benchmarks/record_curves.py export``)."""

    path = Path(path)
    if not path.is_file():
        raise CurvesError(f"--curves {path}: no such file")
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several kinds for a file that is not Parquet
        raise CurvesError(f"--curves {path}: not a Parquet file ({' '.join(str(err).split())[:120]})") from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    meta = json.loads(raw) if raw else {}
    frame = table.to_pandas()
    for column in (CONFIG_ID, EPOCH):
        if column not in frame.columns:
            raise CurvesError(f"--curves {path}: no {column!r} column; not a curves file (benchmarks/record_curves.py)")
    keys = meta.get("keys") or [c for c in frame.columns if "." in c and "/" not in c]
    return Curves(frame, list(keys), meta)


# ---- from MLflow --------------------------------------------------------------------------------------
def find_sweep(uri: str, name: str, experiment: str | None = None):
    """The newest parent run of the sweep ``name`` (tag ``role=sweep``) in the store at ``uri``."""

    client = MlflowClient(uri)
    if experiment:
        found = client.get_experiment_by_name(experiment)
        experiments = [found] if found else []
    else:
        experiments = client.search_experiments()
    ids = [e.experiment_id for e in experiments]
    runs = []
    if ids:
        where = f"tags.{Tag.ROLE} = '{Role.SWEEP}' and tags.{Tag.SWEEP} = '{name}'"
        runs = client.search_runs(ids, where, order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise CurvesError(f"--from-sweep {name}: no sweep of that name in {redact_uri(uri)} (see coded-resnext report)")
    return client, runs[0]


def sweep_space(client, parent):
    """The search space a sweep ran, from its parent run's artifacts: ``search_space.yaml`` with the resolved
    ``base_config.yaml`` in place of its base (the base file may have moved or changed since)."""

    texts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("search_space.yaml", "base_config.yaml"):
            try:
                texts[name] = Path(client.download_artifacts(parent.info.run_id, name, tmp)).read_text()
            except Exception:  # MLflow raises several kinds for a missing artifact
                raise CurvesError(
                    f"sweep run {parent.info.run_id}: no {name} artifact: not a sweep's parent run"
                ) from None
    raw = yaml.safe_load(texts["search_space.yaml"]) or {}
    raw = {**raw, "base": None, "config": yaml.safe_load(texts["base_config.yaml"]) or {}}
    path = Path(parent.data.params.get("search_space.path", "search_space.yaml"))
    return space_from_document(raw, path, texts["search_space.yaml"])


def export_sweep_curves(space, uri: str, name: str, *, experiment: str | None = None) -> tuple[pd.DataFrame, dict]:
    """The curves of the finished full-budget sweep ``name`` (one row per trial and epoch) and its provenance.

    Refused in one line: a sweep that is not finished, one whose trials were stopped early or lack epochs.
    Metrics the architecture alone fixes (``binary/param_fraction``...) are logged once, at the end; they do
    not change with training, so every epoch gets that value. Other objectives are NaN at epochs they were
    not logged (a sweep without ``tune.record_curves``); ``Curves.require_per_epoch`` says so when a
    scheduler needs them.
    """

    client, parent = find_sweep(uri, name, experiment)
    status = parent.info.status
    if status != "FINISHED":
        raise CurvesError(
            f"sweep {name!r} is not finished (its run is {status}): finish it first (coded-resnext tune SPACE --resume)"
        )
    children = client.search_runs(
        [parent.info.experiment_id],
        f"tags.{Tag.PARENT_RUN} = '{parent.info.run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=50000,
    )
    trials, skipped = [], {"reference": 0, Tag.INFEASIBLE: 0, "failed": 0}
    for run in children:
        tags = run.data.tags
        if tags.get(Tag.ROLE) != Role.TRIAL:
            continue
        if Tag.REFERENCE_CONTROL in tags:
            skipped["reference"] += 1
        elif tags.get(INFEASIBLE_KEY) == "true":
            skipped[Tag.INFEASIBLE] += 1
        elif run.info.status != "FINISHED":
            skipped["failed"] += 1
        else:
            trials.append(run)
    stopped = [r for r in trials if r.data.tags.get(Tag.EARLY_STOPPED) == "true"]
    if stopped:
        raise CurvesError(
            f"sweep {name!r}: {len(stopped)} of its trials were stopped early (scheduler {space.tune.scheduler}); "
            "a replay needs every trial's full-budget curve: give a sweep run with scheduler none"
        )
    if not trials:
        raise CurvesError(f"sweep {name!r} has no finished trials to replay")
    epochs = space.base_config().train.epochs
    objectives = dict(space.tune.objectives)
    metrics = list(dict.fromkeys([*objectives, space.tune.metric, *EXTRA_METRICS]))
    rows = []
    for config_id, run in enumerate(trials):
        values = {key: _param_value(space, key, run.data.params.get(key)) for key in space.domains}
        histories = {m: _by_epoch(client.get_metric_history(run.info.run_id, m)) for m in metrics}
        times = {m: _by_epoch(client.get_metric_history(run.info.run_id, m)) for m in (EPOCH_SECONDS, RUNG_SECONDS)}
        logged = times[EPOCH_SECONDS]
        if len(logged) < epochs:
            raise CurvesError(
                f"sweep {name!r}: trial {run.data.tags.get(Tag.TRIAL_ID, run.info.run_id)} has {len(logged)} of "
                f"{epochs} epochs: no per-epoch curves to replay"
            )
        stamps = {e: stamp for e, (_v, stamp) in logged.items()}
        previous = run.info.start_time
        for epoch in range(1, epochs + 1):
            row: dict[str, Any] = {CONFIG_ID: config_id, TRIAL_ID: run.data.tags.get(Tag.TRIAL_ID, run.info.run_id)}
            row[EPOCH] = epoch
            row.update(values)
            for m in metrics:
                value = histories[m].get(epoch, (math.nan, 0))[0]
                if math.isnan(value) and m in ARCHITECTURE_METRICS and histories[m]:
                    value = histories[m][max(histories[m])][0]  # fixed by the architecture: the same every epoch
                row[m] = value
            epoch_s = logged[epoch][0]
            rung_s = times[RUNG_SECONDS].get(epoch, (math.nan, 0))[0]
            wall = (stamps[epoch] - previous) / 1000.0 - (0.0 if math.isnan(rung_s) else rung_s)
            if wall > GAP_FACTOR * epoch_s and wall > epoch_s + 60 and epoch < epochs:
                wall = epoch_s  # an interruption between two epochs (resumed later), not the epoch's time
            row.update({EPOCH_SECONDS: epoch_s, RUNG_SECONDS: rung_s, SECONDS: max(wall, epoch_s)})
            previous = stamps[epoch]
            rows.append(row)
    frame = pd.DataFrame(rows)
    provenance = _provenance(space, parent, trials, skipped, uri, frame, metrics)
    return frame, provenance


def _by_epoch(history) -> dict[int, tuple[float, int]]:
    """Metric history -> {epoch (1-based): (value, timestamp ms)}; a step logged twice (a resumed trial) keeps
    the first, whose time is the epoch's own."""
    out: dict[int, tuple[float, int]] = {}
    for m in sorted(history, key=lambda m: m.timestamp):
        out.setdefault(int(m.step) + 1, (float(m.value), int(m.timestamp)))
    return out


def _param_value(space, key: str, text: str | None) -> Any:
    """The Tune value of searched ``key`` from the trial run's MLflow param (the flattened config's string)."""

    domain = space.domains[key]
    if text is None:
        raise CurvesError(f"a trial run has no param {key!r}: not a run of this search space")
    if domain.kind in ("choice", "grid"):
        for value in domain.values:
            shown = space.trial_config({key: encode(value)}).flat().get(key)
            if str(shown) == text or _same_number(shown, text):
                return encode(value)
        raise CurvesError(f"a trial run's {key}={text!r} is none of the space's values {list(domain.values)}")
    try:
        number = float(text)
    except ValueError:
        raise CurvesError(f"a trial run's {key}={text!r} is not a number ({domain.kind} domain)") from None
    return int(number) if domain.kind == "randint" else number


def _same_number(a: Any, text: str) -> bool:
    try:
        return math.isclose(float(a), float(text), rel_tol=1e-9)
    except (TypeError, ValueError):
        return False


def _provenance(space, parent, trials, skipped, uri, frame, metrics) -> dict[str, Any]:

    cfg = space.base_config()
    info = parent.info
    trial_seconds = [
        (r.info.end_time - r.info.start_time) / 1000.0 for r in trials if r.info.end_time and r.info.start_time
    ]
    dirty = sorted({r.data.tags.get("git_dirty", "unknown") for r in trials})
    return {
        Tag.SWEEP: space.name,
        "parent_run_id": info.run_id,
        "tracking_uri": redact_uri(uri),
        Tag.GIT_COMMIT: parent.data.tags.get(Tag.GIT_COMMIT, "unknown"),
        "git_dirty": ",".join(dirty),
        "command": f"coded-resnext tune {space.path.name}",
        "search_space": space.text,
        "search_space_hash": space.hash,
        "keys": list(space.domains),
        "objectives": dict(space.tune.objectives),
        "reference_point": space.tune.reference_point,
        "metrics": metrics,
        "epochs": cfg.train.epochs,
        "configurations": len(trials),
        "skipped_trials": skipped,
        "seeds": {"training": cfg.seed, "data_split": cfg.data.split_seed, "searcher": space.tune.seed},
        "sizes": {
            "train_images": cfg.data.limit_train,
            "val_images": cfg.eval.limit_val,
            "batch_size": cfg.optim.batch_size,
            "model": cfg.model.name,
        },
        "concurrent_trials": space.tune.max_concurrent_trials,
        "recording_wall_seconds": (info.end_time - info.start_time) / 1000.0 if info.end_time else None,
        "trial_seconds_total": float(np.sum(trial_seconds)),
        "epoch_seconds_median": float(frame[EPOCH_SECONDS].median()),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
