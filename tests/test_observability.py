"""Observability and provenance: one path for every MLflow write, system metrics, what a run was made
from, the searcher's study and its reconciliation on resume, and a fresh store under concurrent first use.
All without Ray (the Ray end-to-end cases are in test_sweep_recovery.py)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from mlflow.tracking import MlflowClient

from coded_resnext.orchestration.store import find_runs
from coded_resnext.orchestration.tracking import RunTracker
from coded_resnext.results.schema import MODEL_DEVELOPMENT, Tag

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parents[1]

# MLflow calls that write, and the modules allowed to make them (the tracking layer).
MLFLOW_WRITES = {
    "set_tag", "set_tags", "set_terminated", "log_artifact", "log_artifacts", "log_batch", "log_metric",
    "log_metrics", "log_param", "log_params", "create_run", "create_experiment", "update_run", "log_inputs",
    "log_input", "delete_run", "delete_tag", "delete_experiment", "log_model", "start_run", "end_run",
    "log_dict", "log_text", "log_figure", "log_table", "set_experiment_tag",
}  # fmt: skip
TRACKING_LAYER = {"orchestration/tracking.py"}


def mlflow_write_sites(root: Path) -> list[str]:
    """``file:line call`` of every MLflow write (a client's or the ``mlflow`` module's) in the product
    code (orchestration/, results/) outside the tracking layer."""
    sites = []
    for path in sorted([*root.glob("orchestration/**/*.py"), *root.glob("results/**/*.py")]):
        rel = path.relative_to(root).as_posix()
        if rel in TRACKING_LAYER:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MLFLOW_WRITES:
                owner = node.func.value
                name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
                if "client" in name.lower() or name == "mlflow":
                    sites.append(f"{rel}:{node.lineno} {name}.{node.func.attr}")
    return sites


def test_no_mlflow_write_bypasses_the_tracking_layer(tmp_path):
    assert mlflow_write_sites(ROOT) == []
    # the scan sees a raw write where one is added (so the check above can fail)
    (tmp_path / "orchestration").mkdir()
    (tmp_path / "orchestration" / "x.py").write_text("def f(client):\n    client.set_terminated('r', 'FINISHED')\n")
    assert mlflow_write_sites(tmp_path) == ["orchestration/x.py:2 client.set_terminated"]  # not a citation


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the module (creating one costs seconds); each test has its own experiment."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_find_runs_matches_every_tag_and_status_newest_first(tmp_path, monkeypatch, store):
    monkeypatch.chdir(tmp_path)
    uri = store
    first = RunTracker(uri, "lookup", tags={"role": "trial", "sweep": "a"})
    time.sleep(0.01)
    second = RunTracker(uri, "lookup", tags={"role": "trial", "sweep": "a"})
    RunTracker(uri, "lookup", tags={"role": "trial", "sweep": "b's"})
    first.finish()
    assert [r.info.run_id for r in find_runs(uri, "lookup", {"sweep": "a"})] == [second.run_id, first.run_id]
    assert [r.info.run_id for r in find_runs(uri, "lookup", {"sweep": "a"}, statuses=("RUNNING",))] == [second.run_id]
    assert len(find_runs(uri, "lookup", {"sweep": "b's", "role": "trial"})) == 1  # quotes in values
    assert find_runs(uri, "lookup", {"sweep": "a", "role": "sweep"}) == []
    assert find_runs(uri, "no-such-experiment", {"sweep": "a"}) == []


def test_experiments_the_project_opens_are_tagged_as_model_development(tmp_path, monkeypatch, store):
    """MLflow 3's UI opens an experiment on the view its kind tag names; untagged, it opened the quickstart's
    on a GenAI tracing page. A new experiment gets the kind, an untagged old one too, a chosen one stays."""
    monkeypatch.chdir(tmp_path)
    client = MlflowClient(store)
    RunTracker(store, "kind-new")
    old = client.create_experiment("kind-old")  # as an older version (or MLflow's defaults) left it
    chosen = client.create_experiment("kind-chosen", tags={Tag.EXPERIMENT_KIND: "finetuning"})
    RunTracker(store, "kind-old")
    RunTracker(store, "kind-chosen")
    kind = lambda name: client.get_experiment_by_name(name).tags.get(Tag.EXPERIMENT_KIND)  # noqa: E731
    assert kind("kind-new") == kind("kind-old") == MODEL_DEVELOPMENT == "custom_model_development"
    assert kind("kind-chosen") == "finetuning" and old != chosen


class _FlakyClient:
    """Makes ``names`` of MlflowClient raise a connection error the first ``failures`` times in all."""

    def __init__(self, monkeypatch, names: tuple[str, ...], failures: int) -> None:
        self.failures = failures
        self.calls = 0
        for name in names:
            real = getattr(MlflowClient, name)
            monkeypatch.setattr(MlflowClient, name, self._wrap(real))

    def _wrap(self, real):
        def call(client, *args, **kwargs):
            self.calls += 1
            if self.failures:
                self.failures -= 1
                raise requests.exceptions.ConnectionError("Connection refused (injected)")
            return real(client, *args, **kwargs)

        return call


def test_the_trial_run_closer_closes_through_the_tracker_and_rides_out_an_outage(tmp_path, monkeypatch, store):
    from coded_resnext.orchestration.tune_callbacks import TrialRunCloser

    monkeypatch.chdir(tmp_path)
    uri = store
    parent = RunTracker(uri, "closer", tags={"role": "sweep"})
    child = RunTracker(uri, "closer", tags={"role": "trial", "trial_id": "t1"}, parent_run_id=parent.run_id)
    closer = TrialRunCloser(uri, "closer", parent.run_id, epochs=4)
    flaky = _FlakyClient(monkeypatch, ("set_terminated", "log_batch", "search_runs"), failures=2)
    closer.on_trial_complete(0, [], SimpleNamespace(trial_id="t1", last_result={"epoch": 2}))
    assert flaky.failures == 0 and flaky.calls > 2  # it failed twice and went on
    run = MlflowClient(uri).get_run(child.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["early_stopped"] == "true"
    assert MlflowClient(uri).get_run(parent.run_id).info.status == "RUNNING"  # only the trial's run


def test_system_metrics_sample_into_the_run_through_an_outage_and_continue_after_resume(tmp_path, monkeypatch, store):
    monkeypatch.chdir(tmp_path)
    uri = store
    tracker = RunTracker(uri, "system", retry_base=0.01, retry_max=0.05)
    flaky = _FlakyClient(monkeypatch, ("log_batch",), failures=0)
    tracker.start_system_metrics(0.05)
    time.sleep(0.3)
    flaky.failures = 5  # the store goes away for a while: samples are buffered, not lost
    time.sleep(0.3)
    tracker.finish()
    key = "system/cpu_utilization_percentage"
    steps = [m.step for m in tracker.client.get_metric_history(tracker.run_id, key)]
    assert len(steps) >= 6 and sorted(steps) == list(range(len(steps)))  # each step once, none missing
    assert {"system/system_memory_usage_megabytes", "system/disk_usage_percentage"} <= set(
        tracker.client.get_run(tracker.run_id).data.metrics
    )
    again = RunTracker(uri, "system", run_id=tracker.run_id)  # a resumed run continues the steps
    again.start_system_metrics(0.05)
    time.sleep(0.15)
    again.finish()
    more = sorted(m.step for m in again.client.get_metric_history(tracker.run_id, key))
    assert more[: len(steps)] == sorted(steps) and more == list(range(len(more))) and len(more) > len(steps)


def test_a_rank_writes_its_system_metrics_under_its_node_id_into_rank_0s_run(tmp_path, monkeypatch, store):
    from coded_resnext.orchestration.config import TrackingSection
    from coded_resnext.orchestration.tracking import start_on_every_rank

    monkeypatch.chdir(tmp_path)
    uri = store
    chief = RunTracker(uri, "ranks")
    settings = TrackingSection(system_metrics_interval=0.05)
    rank1 = SimpleNamespace(rank=1, world_size=2, broadcast=lambda _value: chief.run_id)
    writer = start_on_every_rank(settings, rank1, None, uri)
    time.sleep(0.2)
    writer.close()
    metrics = chief.client.get_run(chief.run_id).data.metrics
    assert "system/rank1/cpu_utilization_percentage" in metrics
    assert chief.client.get_run(chief.run_id).info.status == "RUNNING"  # the rank does not end rank 0's run
    off = TrackingSection(system_metrics=False)
    assert start_on_every_rank(off, rank1, None, uri) is None
    with pytest.raises(Exception, match="system_metrics_interval: must be > 0"):
        TrackingSection(system_metrics_interval=0)


def test_provenance_records_environment_code_and_a_data_digest_that_tells_runs_apart(tmp_path, monkeypatch, store):
    from coded_resnext.datasets import DataSpec, build_dataset
    from coded_resnext.orchestration.provenance import log_provenance

    monkeypatch.chdir(tmp_path)
    uri = store

    def run(limit_train: int, seed: int = 0) -> str:
        bundle = build_dataset(DataSpec("synthetic", limit_train=limit_train, split_seed=seed))
        tracker = RunTracker(uri, "provenance")
        log_provenance(tracker, "synthetic", None, {"train": bundle.train_eval, "val": bundle.val})
        tracker.finish()
        return tracker.run_id

    client = MlflowClient(uri)
    a, b, c = run(64), run(64), run(96)
    inputs = {r: {i.tags[0].value: i.dataset for i in client.get_run(r).inputs.dataset_inputs} for r in (a, b, c)}
    assert set(inputs[a]) == {"train", "val"}
    assert json.loads(inputs[a]["train"].profile)["num_samples"] == 64
    assert inputs[a]["train"].digest == inputs[b]["train"].digest  # the same data: the same digest
    assert inputs[a]["train"].digest != inputs[c]["train"].digest  # other indices: another digest
    assert inputs[a]["val"].digest != inputs[a]["train"].digest
    tags = client.get_run(a).data.tags
    assert tags["python_version"] and tags["torch_version"] and tags["git_dirty"] in ("true", "false")
    files = {f.path for f in client.list_artifacts(a, "environment")}
    assert "environment/requirements.txt" in files
    assert ("environment/git_diff.patch" in files) == (tags["git_dirty"] == "true")
    requirements = Path(client.download_artifacts(a, "environment/requirements.txt", str(tmp_path))).read_text()
    assert "torch==" in requirements and "mlflow==" in requirements


@pytest.mark.slow  # three interpreters each import MLflow and migrate: tens of seconds on 2 busy cores
def test_a_fresh_sqlite_store_survives_concurrent_first_use(tmp_path):
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    code = (
        "import sys; from coded_resnext.orchestration.tracking import RunTracker; "
        f"t = RunTracker({uri!r}, 'together', run_name=sys.argv[1]); t.finish(); print(t.run_id)"
    )
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, f"p{i}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(3)
    ]  # fmt: skip
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-800:] for _, err in results]
    runs = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("together").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["p0", "p1", "p2"]


def test_a_restarted_worker_group_finds_its_run_by_its_run_key(tmp_path, monkeypatch, store):
    from coded_resnext.orchestration.config import load_config
    from coded_resnext.orchestration.lineage import Lineage
    from coded_resnext.orchestration.ray_train import make_trainer

    monkeypatch.chdir(tmp_path)
    uri = store
    cfg = load_config(None, ["data.name=synthetic", "train.num_workers=2", f"tracking.uri={uri}"])
    trainer = make_trainer(cfg, Lineage(), storage_path=str(tmp_path / "ray"), name="key")
    key = trainer.train_loop_config["lineage"]["run_key"]
    assert key  # drawn once per trainer: every worker group it restarts carries the same one
    lineage = Lineage(**trainer.train_loop_config["lineage"])
    first = lineage.open(uri, "ddp", "run", None, {"role": "trial"})  # the first group, killed before a checkpoint
    again = lineage.open(uri, "ddp", "run", None, {"role": "trial"})  # the restarted group: no checkpoint either
    assert again.run_id == first.run_id
    other = Lineage(
        **make_trainer(cfg, Lineage(), storage_path=str(tmp_path / "ray"), name="k2").train_loop_config["lineage"]
    )
    assert other.open(uri, "ddp", "run", None, {}).run_id != first.run_id  # another trainer: its own run


def test_a_trial_whose_run_already_finished_reports_it_instead_of_training_again(tmp_path, monkeypatch, store):
    from coded_resnext.orchestration.config import load_config
    from coded_resnext.orchestration.lineage import Lineage
    from coded_resnext.orchestration.training import Progress, train_loop

    monkeypatch.chdir(tmp_path)
    uri = store
    cfg = load_config(
        None, ["data.name=synthetic", "train.epochs=3", f"tracking.uri={uri}", "tracking.experiment=done"]
    )
    lineage = Lineage(tracking_uri=uri, parent_run_id="p", trial_id="t7")
    finished = lineage.open(uri, "done", "trial", None, {"role": "trial"})
    finished.log_metrics({"val/accuracy": 0.75, "binary/param_fraction": 0.5}, step=2)
    finished.finish()
    reported = []
    session = SimpleNamespace(
        rank=0, world_size=1, restore=lambda: None, broadcast=lambda v: v,
        report=lambda metrics, epoch, state: reported.append((metrics, epoch, state)),
    )  # fmt: skip
    result = train_loop(cfg, session, lineage, Progress("none", 3))
    ((metrics, epoch, state),) = reported
    assert metrics["val/accuracy"] == 0.75 and metrics["epoch"] == 3 and epoch == 2 and state is None
    assert result.suite is None  # nothing trained, nothing evaluated
    assert [m.step for m in MlflowClient(uri).get_metric_history(finished.run_id, "val/accuracy")] == [2]


# ---- the searcher's study ------------------------------------------------------------------------------
def _space(tmp_path: Path, name: str = "study", algorithm: str = "motpe", **tune) -> Path:
    import yaml

    doc = {
        "base": str(ROOT / "search_spaces" / "quickstart_train.yaml"),
        "config": {"data": {"name": "synthetic", "ood": None}, "tracking": {"experiment": name}},
        "search": {"loss.mu": {"uniform": [1.0, 6.0]}},
        "tune": {"name": name, "algorithm": algorithm, "num_samples": 2, **tune},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_resume_closes_runs_and_fails_optuna_trials_the_restored_experiment_does_not_know(
    tmp_path, monkeypatch, store, log_lines
):
    import optuna

    import coded_resnext.orchestration.sweep as sweep_module
    from coded_resnext.orchestration.search_space import load_search_space
    from coded_resnext.orchestration.searcher import TRIAL_ATTR, storage_url
    from coded_resnext.orchestration.sweep import Sweep

    monkeypatch.chdir(tmp_path)
    uri = store
    url = f"sqlite:///{tmp_path / 'study.db'}"
    sweep = Sweep(load_search_space(_space(tmp_path, searcher_storage=url)), uri)
    parent = sweep.open_parent(None)
    runs = {
        trial_id: RunTracker(uri, "study", tags={"role": "trial", "trial_id": trial_id}, parent_run_id=parent.run_id)
        for trial_id in ("known", "orphan")
    }
    assert storage_url(sweep.space.tune.searcher_storage) == url
    study = optuna.create_study(study_name="study", storage=url, directions=["maximize", "minimize", "minimize"])
    for trial_id in ("known", "orphan"):
        study.ask().set_user_attr(TRIAL_ATTR, trial_id)
    monkeypatch.setattr(sweep_module, "trial_statuses", lambda path: {"known": "RUNNING"})
    sweep._reconcile(parent.run_id, "restored-experiment")
    said = [line for line in log_lines if line.startswith("reconciled")]
    client = MlflowClient(uri)
    orphan = client.get_run(runs["orphan"].run_id)
    assert (
        orphan.info.status == "KILLED" and "killed before Tune recorded this trial" in orphan.data.tags["killed_reason"]
    )
    assert client.get_run(runs["known"].run_id).info.status == "RUNNING"  # Tune resumes it into this run
    states = {t.user_attrs[TRIAL_ATTR]: t.state.name for t in optuna.load_study(study_name="study", storage=url).trials}
    assert states == {"known": "RUNNING", "orphan": "FAIL"}
    assert said and "1 trial run(s)" in said[0] and "1 Optuna trial(s)" in said[0]
    parent.finish()


def test_the_planned_trial_count_and_the_resume_command(tmp_path, monkeypatch):
    from coded_resnext.orchestration.ablation import load_ablation, smoke_test_ablation
    from coded_resnext.orchestration.search_space import load_search_space
    from coded_resnext.orchestration.sweep import Sweep

    monkeypatch.chdir(tmp_path)
    space, _ = load_ablation(ROOT / "search_spaces" / "ablation_mu_pdrop.yaml")
    sweep = Sweep(space, _uri(tmp_path), smoke_test=True)
    cells, seeds = len(space.cells), len(space.domains["seed"].values)
    assert sweep.planned_trials(1) == cells * seeds == 30  # the ablation's 30 runs, not "1 trial"
    command = sweep.resume_command()
    assert command.startswith("coded-resnext ablate ") and command.endswith(
        "--resume --tracking-uri " + _uri(tmp_path) + " --smoke-test"
    )
    smoke_test_ablation(space)
    assert Sweep(space, _uri(tmp_path)).planned_trials(1) == 4 and next(iter(space.cells)) == "control"
    grid = Sweep(load_search_space(_space(tmp_path, "g", "grid", num_samples=2)), _uri(tmp_path))
    assert grid.planned_trials(2) == 2  # a uniform domain is sampled, not a grid dimension


def test_close_removes_the_redacted_copies_it_made(tmp_path, monkeypatch, store):
    """A run's tracker that ends with ``close`` (a trial's, an attached writer's) leaves no spool behind."""
    monkeypatch.chdir(tmp_path)
    tracker = RunTracker(store, "spool")
    secret = tmp_path / "config.yaml"
    secret.write_text("tracking: {uri: 'http://alice:hunter2@mlflow.example:5000'}\n")
    tracker.log_artifact(secret)
    spool = tracker._spool
    assert spool is not None and spool.exists()  # the redacted copy
    tracker.close()
    assert not spool.exists()
    uploaded = tracker.client.download_artifacts(tracker.run_id, "config.yaml", str(tmp_path / "down"))
    assert "hunter2" not in Path(uploaded).read_text()
    tracker.finish()


def test_a_sqlite_stores_artifacts_land_beside_it_not_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "elsewhere" / "mlflow.db"
    tracker = RunTracker(f"sqlite:///{store}", "beside")
    note = tmp_path / "note.txt"
    note.write_text("hello\n")
    tracker.log_artifact(note)
    tracker.finish()
    assert (store.parent / "artifacts").is_dir() and not (tmp_path / "runs").exists()
    assert list((store.parent / "artifacts").rglob("note.txt"))
