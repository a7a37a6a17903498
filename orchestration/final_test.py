"""The test split, used once: measure a finished run (or a finished sweep's Pareto front) on it.

Searches select on the validation split; nothing they choose has seen the test split. This is the one
place, besides the end of a single ``coded-resnext train``, that measures it: ``coded-resnext evaluate``
rebuilds a run's model from its final checkpoint, refits what the evaluation suite fits on training
samples (thresholds, refit rows; early-exit operating points on the validation split), measures the
test split at those settings and logs the figures to the run as ``test/...`` with the tables as
``tables/test_*.csv``. A run that already has test figures is refused unless ``force``: measuring
again and again on the test split is how it stops being one.

Every check (the run exists and finished, has a checkpoint, has no test figures yet; a sweep exists,
finished, has a front) happens before anything is written, so a refused request leaves the store as
it was.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import yaml
from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from coded_resnext.datasets import build_dataset
from coded_resnext.evaluation import as_test_metric, run_suite
from coded_resnext.orchestration.build import data_spec, model_from_checkpoint, resolve_device, suite_data
from coded_resnext.orchestration.checkpoint import load_checkpoint
from coded_resnext.orchestration.config import config_from_dict
from coded_resnext.orchestration.errors import UserError
from coded_resnext.orchestration.provenance import data_inputs
from coded_resnext.orchestration.store import find_runs
from coded_resnext.orchestration.tracking import RunTracker
from coded_resnext.results.ablation import summarize_ablation
from coded_resnext.results.pareto import Objective, pareto_front
from coded_resnext.results.runs import load_runs
from coded_resnext.results.schema import PARENT_ROLES, Role, Tag, tag_column
from coded_resnext.results.sweep_progress import off_the_front, unfinished_models

logger = logging.getLogger(__name__)

TESTED_TAG = Tag.TEST_EVALUATED  # when a run's test figures were measured (and by what)


@dataclass
class TestPlan:
    """One run to measure, checked: its id, experiment and final status, its checkpoint and data."""

    run_id: str
    experiment: str
    status: str
    state: dict  # the final checkpoint's state
    bundle: object  # the run's DatasetBundle, with a test split
    forced: bool


def _get_run(client: MlflowClient, run_id: str) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException:
        raise UserError(
            f"run {run_id}: no such run at {client.tracking_uri}; check the id and --tracking-uri"
        ) from None


def plan_run(client: MlflowClient, run_id: str, work: Path, *, force: bool, data_cache: dict | None = None) -> TestPlan:
    """Check that ``run_id`` can be measured: finished, not measured yet (unless ``force``), a final
    checkpoint (fetched into ``work``) and a dataset with a test split (``data_cache``: bundles by spec)."""

    run = _get_run(client, run_id)
    status = run.info.status
    if status != "FINISHED":
        raise UserError(f"run {run_id} is {status}; only a finished run is measured on the test split")
    if "test/accuracy" in run.data.metrics and not force:
        when = run.data.tags.get(TESTED_TAG, "earlier")
        raise UserError(
            f"run {run_id} already has test figures ({when}); the test split is measured once: pass --force "
            "to measure it again"
        )
    try:
        stored = [a.path for a in client.list_artifacts(run_id, "checkpoint") if a.path.endswith(".pt")]
    except (MlflowException, OSError):
        stored = []
    if not stored:
        raise UserError(f"run {run_id} has no final checkpoint artifact (checkpoint/*.pt); it cannot be measured")
    work.mkdir(parents=True, exist_ok=True)
    local = Path(client.download_artifacts(run_id, sorted(stored)[-1], str(work)))
    files = [local]
    state = load_checkpoint(files[-1])
    spec = data_spec(config_from_dict(yaml.safe_load(state["config"])))
    cache = {} if data_cache is None else data_cache
    if spec not in cache:
        cache[spec] = build_dataset(spec)
    if cache[spec].test is None:
        raise UserError(f"run {run_id}: dataset {spec.name} has no test split (an imagefolder needs a val/ folder)")
    experiment = client.get_experiment(run.info.experiment_id).name
    return TestPlan(run_id, experiment, status, state, cache[spec], force)


def measure(plan: TestPlan, tracking_uri: str, device: str = "auto") -> dict[str, float]:
    """Measure the plan's run on the test split and log ``test/...`` metrics and tables to it."""

    state, bundle = plan.state, plan.bundle
    model = model_from_checkpoint(state)
    cfg = config_from_dict(yaml.safe_load(state["config"]))  # the run's own config, as trained
    target = resolve_device(device)
    model.to(target, memory_format=torch.channels_last)
    data = suite_data(bundle, cfg, test=True)
    data.measure_val = False  # the validation split only chooses the early-exit operating points
    logger.info("run %s: measuring the test split (%d images)", plan.run_id, len(bundle.test))
    result = run_suite(model, data, device=target, settings=cfg.eval, seed=cfg.seed)
    metrics = {k: v for k, v in result.metrics.items() if k.startswith("test/")}
    step = state["epoch"]
    if plan.forced:  # a later measurement: the next step, so the history keeps both
        earlier = MlflowClient(tracking_uri).get_metric_history(plan.run_id, "test/accuracy")
        step = max([step - 1, *(m.step for m in earlier)]) + 1
    tracker = RunTracker.attach(tracking_uri, plan.run_id)  # writes only: the run's status stays as it is
    try:
        tracker.log_metrics(metrics, step=step)
        tracker.log_inputs(data_inputs(cfg.data.name, cfg.data.root, {"test": bundle.test}))
        with tempfile.TemporaryDirectory() as tmp:
            tables = Path(tmp) / "tables"
            tables.mkdir()
            for name, rows in result.tables.items():
                if name.startswith("test_") and rows:
                    pd.DataFrame(rows).to_csv(tables / f"{name}.csv", index=False)
            tracker.log_artifacts(tables, "tables")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        tracker.set_tags({TESTED_TAG: f"{stamp} by coded-resnext evaluate{' --force' if plan.forced else ''}"})
    finally:
        tracker.close()
    return metrics


# ---- sweeps -----------------------------------------------------------------------------------------
@dataclass
class SweepFront:
    parent: Run
    objectives: dict[str, str]  # metric -> max | min, as the sweep searched
    front: pd.DataFrame  # the front's trial runs (results.runs columns)


def find_sweep(client: MlflowClient, name: str) -> Run:
    """The most recent parent run of sweep or ablation ``name`` (tags role, sweep=name) in any experiment."""
    runs = [
        run
        for exp in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
        for role in PARENT_ROLES
        for run in find_runs(client.tracking_uri, exp.name, {Tag.ROLE: role, Tag.SWEEP: name})
    ]
    runs.sort(key=lambda run: run.info.start_time, reverse=True)
    if not runs:
        raise UserError(
            f"no sweep named {name!r} at {client.tracking_uri} (a sweep's name is tune.name or its file's stem)"
        )
    return runs[0]


def _finished_trials(client: MlflowClient, name: str) -> tuple[Run, dict[str, str], pd.DataFrame]:
    """(parent, objectives, finished trial runs) of a finished sweep or ablation."""
    parent = find_sweep(client, name)
    role = parent.data.tags.get(Tag.ROLE, Role.SWEEP)
    if parent.info.status != "FINISHED":
        command = "ablate ABLATION.yaml" if role == Role.ABLATION else "tune SPACE.yaml"
        raise UserError(
            f"{role} {name!r} is {parent.info.status}: its runs are not final; finish it first "
            f"(coded-resnext {command} --resume)"
        )
    objectives = json.loads(parent.data.params.get("tune.objectives", "{}")) or {"val/accuracy": "max"}
    experiment = client.get_experiment(parent.info.experiment_id).name
    runs = load_runs(experiment, client.tracking_uri, parent_run_id=parent.info.run_id)
    return parent, objectives, runs


def sweep_trials(client: MlflowClient, name: str) -> SweepFront:
    """Every finished trial of a finished sweep or ablation (an ablation's control cell included; a sweep's
    infeasible and early-stopped trials left out: they are no finished model)."""
    parent, objectives, runs = _finished_trials(client, name)
    runs = runs[~unfinished_models(runs)].reset_index(drop=True)
    if runs.empty:
        raise UserError(f"{parent.data.tags.get(Tag.ROLE, Role.SWEEP)} {name!r} has no finished trials to measure")
    return SweepFront(parent, objectives, runs)


def sweep_front(client: MlflowClient, name: str) -> SweepFront:
    """The finished sweep's Pareto front over its own objectives, judged on the validation figures."""
    parent, objectives, runs = _finished_trials(client, name)
    runs = runs[~off_the_front(runs)]  # the sweep's baseline, infeasible and early-stopped trials are no candidates
    if runs.empty:
        raise UserError(f"sweep {name!r} has no finished trials to choose a front from")
    ranked = pareto_front(runs, [Objective(k, v) for k, v in objectives.items()])
    front = ranked[ranked["pareto_front"]].reset_index(drop=True)
    if front.empty:
        raise UserError(f"sweep {name!r}: no trial reports its objectives {list(objectives)}")
    return SweepFront(parent, objectives, front)


def front_table(front: SweepFront, measured: dict[str, dict[str, float]]) -> pd.DataFrame:
    """One row per front run: each objective's validation figure beside its test figure."""
    rows = []
    for _, run in front.front.iterrows():
        row = {"run_id": run["run_id"], "run_name": run["run_name"]}
        for metric in front.objectives:
            test = as_test_metric(metric)
            row[metric] = run.get(f"metrics.{metric}")
            row[test] = measured.get(run["run_id"], {}).get(test, run.get(f"metrics.{test}"))
        rows.append(row)
    return pd.DataFrame(rows)


def ablation_test_summary(client: MlflowClient, front: SweepFront) -> pd.DataFrame | None:
    """An ablation's per-cell summary (mean, 95% interval, paired delta to the control) of the test figures
    of the metrics its ``ablation_summary.csv`` holds; None for a sweep or a parent without that table."""
    if front.parent.data.tags.get(Tag.ROLE) != Role.ABLATION:
        return None
    parent_id = front.parent.info.run_id
    if "ablation_summary.csv" not in [a.path for a in client.list_artifacts(parent_id)]:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        summary = pd.read_csv(client.download_artifacts(parent_id, "ablation_summary.csv", tmp))
    # training figures (train/...) have no test counterpart: the test summary leaves them out
    metrics = [as_test_metric(m) for m in dict.fromkeys(summary["metric"]) if not m.startswith("train/")]
    experiment = client.get_experiment(front.parent.info.experiment_id).name
    runs = load_runs(experiment, client.tracking_uri, parent_run_id=parent_id)
    return summarize_ablation(runs, metrics, cell_column=tag_column(Tag.ABLATION_CELL))
