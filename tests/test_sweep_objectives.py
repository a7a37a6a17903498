"""Issue 16's sweep pieces without a Ray cluster: the hypervolume (pinned to known volumes), the light
rung evaluation against the suite, constraints, what Optuna is told, the reference control, the parent
run's hypervolume log, and the MO-ASHA settings of a search space."""

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

import coded_resnext as cr
from coded_resnext.orchestration.constraints import Constraint, ConstraintError
from coded_resnext.orchestration.search_space import SearchSpaceError, load_search_space
from coded_resnext.results.hypervolume import contributions, costs, hypervolume, nadir_reference, nondominated_ranks

ROOT = Path(__file__).resolve().parents[1]


# ---- hypervolume ------------------------------------------------------------------------------------
@pytest.mark.unit
def test_hypervolume_matches_volumes_worked_by_hand():
    ref = np.array([1.0, 1.0])
    assert hypervolume(np.array([[0.5, 0.5]]), ref) == pytest.approx(0.25)
    # two boxes 0.5 x 0.8 and 0.8 x 0.5 overlapping in 0.5 x 0.5: 0.4 + 0.4 - 0.25
    assert hypervolume(np.array([[0.5, 0.2], [0.2, 0.5]]), ref) == pytest.approx(0.55)
    cube = np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])  # three 1 x .5 x .5 slabs
    assert hypervolume(cube, np.ones(3)) == pytest.approx(3 * 0.25 - 3 * 0.125 + 0.125)
    assert hypervolume(np.array([[2.0, 0.0]]), ref) == 0.0  # worse than the reference: clipped, no volume
    assert hypervolume(np.empty((0, 2)), ref) == 0.0


@pytest.mark.unit
def test_contributions_are_what_each_point_alone_adds():
    points = np.array([[0.5, 0.2], [0.2, 0.5], [0.6, 0.6]])  # the third is dominated
    assert contributions(points, np.ones(2)) == pytest.approx([0.55 - 0.4, 0.55 - 0.4, 0.0])


@pytest.mark.unit
def test_costs_turn_maximized_objectives_and_missing_values():
    rows = [{"acc": 0.9, "size": 0.4}, {"acc": None, "size": 0.1}, {"size": float("nan")}]
    out = costs(rows, {"acc": "max", "size": "min"})
    assert out.tolist() == [[-0.9, 0.4], [math.inf, 0.1], [math.inf, math.inf]]
    assert nondominated_ranks(out).tolist() == [0, 0, 1]
    assert nadir_reference(out) == pytest.approx([-0.81, 0.44])  # 0.9 x the negative worst, 1.1 x the positive


# ---- the light evaluation at a rung --------------------------------------------------------------------
def _tiny_model_and_data():
    torch.manual_seed(0)
    model = cr.create_model("coded_resnext_mini", num_classes=10, in_chans=1).eval()
    x, y = torch.randn(30, 1, 28, 28), torch.arange(30) % 10
    return model, TensorDataset(x, y)


def _batches(dataset):
    return DataLoader(dataset, batch_size=16)


@pytest.mark.slow  # the whole suite, on 60 images: 10-40 s on a shared 2-core machine
def test_rung_evaluation_reports_every_default_objective_as_the_suite_does():
    from coded_resnext.evaluation import EvalSettings, SuiteData, run_suite
    from coded_resnext.evaluation.rung import rung_evaluation

    model, dataset = _tiny_model_and_data()
    settings = EvalSettings(
        binary_classes=3,
        binary_fit_samples=30,
        removal_samples=20,
        invariance_samples=0,
        early_exit_thresholds=11,
        binary_refit=False,
        binary_fit_augmented=False,
    )
    from coded_resnext.evaluation.binary import choose_classes

    classes = choose_classes(10, settings.binary_classes, 0)
    rung = rung_evaluation(model, dataset, torch.device("cpu"), settings, classes, loader=_batches)
    data = SuiteData(fit=dataset, val=dataset, loader=_batches)
    suite = run_suite(model, data, device=torch.device("cpu"), settings=settings)
    for key in (
        "val/accuracy",
        "binary/param_fraction",
        "early_exit/compute_at_99pct_accuracy",
        "binary/param_fraction_paper",
        "val/decode_accuracy/block_0",
    ):
        assert rung[key] == pytest.approx(suite.metrics[key]), key
    assert not any(k.startswith(("removal/", "binary/f1")) for k in rung)  # the costly parts wait for the end


def test_rung_evaluation_carries_every_default_objective():
    from coded_resnext.evaluation import EvalSettings
    from coded_resnext.evaluation.rung import rung_evaluation
    from coded_resnext.orchestration.search_space import DEFAULT_OBJECTIVES

    model, dataset = _tiny_model_and_data()
    settings = EvalSettings(early_exit_thresholds=5)
    rung = rung_evaluation(model, dataset, torch.device("cpu"), settings, [0, 1], loader=_batches)
    assert set(DEFAULT_OBJECTIVES) <= set(rung)
    assert all(math.isfinite(rung[k]) for k in DEFAULT_OBJECTIVES)


def test_architecture_metrics_on_the_meta_device_equal_the_built_models():
    from coded_resnext.evaluation.architecture import architecture_metrics

    model, _ = _tiny_model_and_data()
    with torch.device("meta"):
        meta = cr.create_model("coded_resnext_mini", num_classes=10, in_chans=1)
    assert architecture_metrics(meta, [0, 3, 7]) == pytest.approx(architecture_metrics(model, [0, 3, 7]))


# ---- constraints -----------------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "value", "ok", "violation"),
    [
        ("<= 0.5", 0.5, True, 0.0),
        ("<= 0.5", 0.6, False, 0.1),
        ("< 0.5", 0.5, False, 1e-12),
        (">= 0.3", 0.2, False, 0.1),
        ("> 0.3", 0.4, True, -0.1),
        ("<=0.5", 0.25, True, -0.25),
    ],
)
def test_constraints_parse_and_measure_their_violation_as_optuna_expects(text, value, ok, violation):
    c = Constraint.parse("binary/param_fraction", text)
    assert c.satisfied(value) is ok
    assert c.violation(value) == pytest.approx(violation)
    assert (c.violation(value) > 0) is not ok  # Optuna: feasible exactly when <= 0


@pytest.mark.unit
@pytest.mark.parametrize(
    ("metric", "text", "message"),
    [
        ("val/accuracy", ">= 0.9", "unknown metric; constraints are checked before training"),
        ("binary/param_fraction", "<= half", "cannot parse '<= half'"),
        ("binary/param_fraction", "0.5", "cannot parse"),
        ("binary/param_fraction", "== 0.5", "cannot parse"),
    ],
)
def test_bad_constraints_are_one_line_errors(metric, text, message):
    with pytest.raises(ConstraintError, match=message) as err:
        Constraint.parse(metric, text)
    assert "\n" not in str(err.value)


# ---- what Optuna is told ---------------------------------------------------------------------------
def _optuna_search(**kw):
    from ray import tune

    from coded_resnext.orchestration.optuna_search import SweepOptunaSearch

    search = SweepOptunaSearch(space={"x": tune.uniform(0, 1)}, metric=["acc", "size"], mode=["max", "min"], **kw)
    return search


def test_stopped_and_infeasible_trials_are_pruned_and_constraints_set():
    import optuna

    c = Constraint.parse("binary/param_fraction", "<= 0.5")
    search = _optuna_search(constraints=[c], budget=("epoch", 4))
    for trial_id in "abc":
        assert search.suggest(trial_id) is not None
    search.on_trial_complete("a", {"acc": 0.9, "size": 0.3, "epoch": 4, "binary/param_fraction": 0.4})
    search.on_trial_complete("b", {"acc": 0.2, "size": 0.3, "epoch": 1, "binary/param_fraction": 0.45})
    search.on_trial_complete("c", {"epoch": 0, "infeasible": 1.0, "binary/param_fraction": 0.6})
    trials = search._ot_study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.PRUNED,
    ]
    assert trials[0].values == [0.9, 0.3]
    assert [t.constraints["binary/param_fraction"] for t in trials] == pytest.approx([-0.1, -0.05, 0.1])


def test_without_a_budget_a_trial_is_complete_whatever_its_epoch():
    import optuna

    search = _optuna_search()
    search.suggest("a")
    search.on_trial_complete("a", {"acc": 0.9, "size": 0.3, "epoch": 1})
    assert search._ot_study.get_trials()[0].state == optuna.trial.TrialState.COMPLETE


class _Recorder:
    metric, mode = "acc", "max"

    def __init__(self):
        self.calls = []

    def suggest(self, trial_id):
        self.calls.append(("suggest", trial_id))
        return {"x": 0.5}

    def on_trial_result(self, trial_id, result):
        self.calls.append(("result", trial_id))

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.calls.append(("complete", trial_id))


def test_the_reference_control_is_suggested_first_and_hidden_from_the_searcher():
    from coded_resnext.orchestration.reference_control import WithReferenceControl

    inner = _Recorder()
    search = WithReferenceControl(inner, {"x": "base", "reference_control": True})
    assert search.suggest("ref") == {"x": "base", "reference_control": True}
    assert search.suggest("t1") == {"x": 0.5}
    for trial_id in ("ref", "t1"):
        search.on_trial_result(trial_id, {"acc": 1.0})
        search.on_trial_complete(trial_id, {"acc": 1.0})
    assert inner.calls == [("suggest", "t1"), ("result", "t1"), ("complete", "t1")]
    restored = WithReferenceControl(_Recorder(), {})
    restored.set_state(search.get_state())  # how Tune checkpoints a wrapper (SearchGenerator.save_to_dir)
    assert restored.suggest("t2") == {"x": 0.5}  # the reference is not handed out twice after a resume


# ---- the parent run's hypervolume log ---------------------------------------------------------------
def _ended(trial_id, last, **config):
    return SimpleNamespace(trial_id=trial_id, last_result=last, config=config)


@pytest.mark.slow  # an MLflow SQLite store: 5-15 s on a shared machine
def test_the_parent_run_logs_hypervolume_of_full_budget_trials_and_all_epochs(tmp_path):
    from mlflow.tracking import MlflowClient

    from coded_resnext.orchestration.tracking import RunTracker
    from coded_resnext.orchestration.tune_callbacks import SweepHypervolume

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = RunTracker(uri, "hv", run_name="sweep")
    objectives = {"acc": "max", "size": "min"}
    cb = SweepHypervolume(uri, "hv", parent.run_id, objectives, [0.0, 1.0], ("epoch", 4), "reference_control")
    trials = {
        "a": _ended("a", {"epoch": 4, "acc": 0.8, "size": 0.5}),  # box 0.8 x 0.5
        "stopped": _ended("stopped", {"epoch": 1, "acc": 0.99, "size": 0.01}),  # not a finished model
        "ref": _ended("ref", {"epoch": 4, "acc": 0.99, "size": 0.02}, reference_control=True),
        "infeasible": _ended("infeasible", {"epoch": 0, "infeasible": 1.0, "size": 0.9}),
        "b": _ended("b", {"epoch": 4, "acc": 0.5, "size": 0.2}),  # box 0.5 x 0.8, overlap 0.5 x 0.5
    }
    for t in trials.values():
        cb.on_trial_result(0, [], t, t.last_result)
    for name in ("a", "stopped", "ref", "infeasible"):
        cb.on_trial_complete(0, [], trials[name])
    saved = cb.get_state()  # resume: Tune restores the callback's state into the unpickled copy
    resumed = SweepHypervolume(uri, "hv", parent.run_id, objectives, [0.0, 1.0], ("epoch", 4), "reference_control")
    resumed.set_state(saved)
    resumed.on_trial_complete(0, [], trials["b"])
    resumed.on_experiment_end([])
    client = MlflowClient(uri)
    hv = sorted((m.step, m.value) for m in client.get_metric_history(parent.run_id, "sweep/hypervolume"))
    used = sorted((m.step, m.value) for m in client.get_metric_history(parent.run_id, "sweep/epochs_used"))
    assert [step for step, _ in hv] == [1, 2, 3, 4, 5]  # one point per ended trial, continued after the resume
    assert [v for _, v in hv] == pytest.approx([0.4, 0.4, 0.4, 0.4, 0.4 + 0.4 - 0.25])
    assert used[-1] == (5, 4 + 1 + 4 + 0 + 4)  # every trial's epochs, stopped and reference included


# ---- search-space settings ---------------------------------------------------------------------------
def _space(tmp_path, tune: dict, search=None, **config) -> Path:
    doc = {
        "base": str(ROOT / "search_spaces" / "quickstart_train.yaml"),
        "config": {"data": {"name": "synthetic", "ood": None}, "train": {"epochs": 4}, **config},
        "search": search or {"loss.mu": {"uniform": [1, 8]}},
        "tune": tune,
    }
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.unit
@pytest.mark.parametrize(
    ("tune", "message"),
    [
        ({"scheduler": "hyperband"}, "tune.scheduler: must be one of"),
        ({"algorithm": "motpe", "scheduler": "moasha", "objectives": {"val/accuracy": "max"}}, "with one, use asha"),
        ({"algorithm": "optuna", "scheduler": "moasha"}, "algorithm optuna optimizes one metric"),
        ({"algorithm": "motpe", "scheduler": "moasha", "grace_period": 4}, "grace_period=4 must be below tune.max_t=4"),
        ({"algorithm": "motpe", "scheduler": "moasha", "max_t": 6}, "max_t=6 exceeds train.epochs=4"),
        ({"algorithm": "motpe", "constraints": {"val/accuracy": ">= 0.5"}}, "tune.constraints.val/accuracy: unknown"),
        ({"algorithm": "motpe", "constraints": {"binary/param_fraction": "<= x"}}, "cannot parse"),
        ({"algorithm": "motpe", "reference_point": [0, 1]}, "reference_point: needs one value per objective"),
        (
            {"algorithm": "motpe", "objectives": {"val/accuracy": "max", "val/loss": "min"}},
            "tune.reference_point: needed for objectives outside",
        ),
        ({"algorithm": "optuna", "scheduler": "asha", "reference_control": True}, "ASHA would stop the control"),
    ],
)
def test_moasha_settings_are_validated_before_ray_starts(tmp_path, tune, message):
    with pytest.raises(SearchSpaceError, match=message) as err:
        load_search_space(_space(tmp_path, tune))
    assert "\n" not in str(err.value)


@pytest.mark.unit
def test_searching_the_epochs_is_refused_with_moasha(tmp_path):
    path = _space(tmp_path, {"algorithm": "random", "scheduler": "moasha"}, search={"train.epochs": {"choice": [2, 4]}})
    with pytest.raises(SearchSpaceError, match="same budget"):
        load_search_space(path)


def test_moasha_sweep_wiring(tmp_path):
    from coded_resnext.orchestration.moasha import MultiObjectiveASHA
    from coded_resnext.orchestration.search_space import DEFAULT_OBJECTIVES
    from coded_resnext.orchestration.sweep import Sweep, reference_suggestion
    from coded_resnext.orchestration.trial import REFERENCE_KEY, reference_control_config, rung_epochs

    tune = {"algorithm": "random", "scheduler": "moasha", "reference_control": True, "max_t": 3}
    space = load_search_space(_space(tmp_path, tune, tracking={"experiment": "w"}))
    assert space.tune.multi_objective  # random + moasha: the default three objectives
    scheduler = Sweep(space, f"sqlite:///{tmp_path / 'x.db'}")._scheduler()
    assert isinstance(scheduler, MultiObjectiveASHA)
    assert scheduler._max_t == 3 and scheduler._stop_last_trials  # max_t 3 < 4 epochs: stopped at 3
    assert scheduler._exempt_key == REFERENCE_KEY and list(scheduler._rungs) == [1.0, 2.0]
    assert rung_epochs(space) == (1, 2, 3)  # the rungs, and max_t: trials stopped there need every objective
    assert rung_epochs(space, smoke_test=True) == (1,)  # smoke: 2 epochs, one rung
    assert reference_suggestion(space) == {"loss.mu": 6.0, REFERENCE_KEY: True}
    assert reference_control_config(space).model.control
    unlimited = load_search_space(_space(tmp_path, {**tune, "max_t": None}))
    assert not Sweep(unlimited, f"sqlite:///{tmp_path / 'x.db'}")._scheduler()._stop_last_trials  # ends by itself
    assert Sweep(unlimited, "sqlite:///x.db")._progress_objectives() == dict(DEFAULT_OBJECTIVES)
    plain_random = load_search_space(_space(tmp_path, {"algorithm": "random"}))
    assert Sweep(plain_random, "sqlite:///x.db")._progress_objectives() == dict(DEFAULT_OBJECTIVES)  # benchmark arm
    tpe = load_search_space(_space(tmp_path, {"algorithm": "optuna"}))
    assert Sweep(tpe, "sqlite:///x.db")._progress_objectives() is None  # one metric: no hypervolume


@pytest.mark.unit
def test_the_quickstart_runs_a_reference_control():
    space = load_search_space(ROOT / "search_spaces" / "quickstart.yaml")
    assert space.tune.reference_control


# ---- the report --------------------------------------------------------------------------------------
@pytest.mark.unit
def test_the_report_keeps_the_reference_infeasible_and_stopped_runs_off_the_front(tmp_path):
    import pandas as pd

    from coded_resnext.results.pareto import DEFAULT_OBJECTIVES
    from coded_resnext.results.plots import front_scatter, hypervolume_plot
    from coded_resnext.results.sweep_progress import ranked_runs, reference_runs

    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "ref", "infeasible", "stopped"],
            "metrics.val/accuracy": [0.80, 0.70, 0.95, None, 0.99],
            "metrics.binary/param_fraction": [0.50, 0.40, 0.30, 0.90, 0.10],
            "metrics.early_exit/compute_at_99pct_accuracy": [0.6, 0.5, 0.2, None, 0.1],
            "tags.reference_control": [None, None, "true", None, None],
            "tags.infeasible": [None, None, None, "true", None],
            "tags.early_stopped": [None, None, None, None, "true"],
        }
    )
    ranked = ranked_runs(runs, DEFAULT_OBJECTIVES)
    assert ranked["run_id"].tolist() == runs["run_id"].tolist()  # rows and order kept
    assert ranked["pareto_front"].tolist() == [True, True, False, False, False]  # though ref and stopped dominate
    assert ranked["pareto_rank"].isna().tolist() == [False, False, True, True, True]
    assert reference_runs(runs)["run_id"].tolist() == ["ref"]
    assert front_scatter(ranked, DEFAULT_OBJECTIVES, tmp_path / "front.png", baseline=reference_runs(runs)).exists()
    curve = pd.DataFrame({"epochs_used": [4.0, 9.0], "hypervolume": [0.1, 0.3]})
    assert hypervolume_plot({"parent": curve}, tmp_path / "hv.png").exists()
    assert hypervolume_plot({}, tmp_path / "none.png") is None


@pytest.mark.slow  # an MLflow SQLite store
def test_an_extension_continues_the_parents_hypervolume_log(tmp_path):
    from coded_resnext.orchestration.sweep import Sweep
    from coded_resnext.orchestration.tracking import RunTracker

    space = load_search_space(_space(tmp_path, {"algorithm": "motpe"}, tracking={"experiment": "ext"}))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = RunTracker(uri, "ext", run_name="sweep")
    parent.log_metrics({"sweep/epochs_used": 7.0, "sweep/hypervolume": 0.2}, step=3)
    objectives = {"val/accuracy": 0.8, "binary/param_fraction": 0.5, "early_exit/compute_at_99pct_accuracy": 0.6}
    for trial_id, tags in [
        ("full", {}),
        ("stopped", {"early_stopped": "true"}),
        ("ref", {"reference_control": "true"}),
        ("infeasible", {"infeasible": "true"}),
    ]:
        child = RunTracker(
            uri, "ext", parent_run_id=parent.run_id, tags={"role": "trial", "trial_id": trial_id, **tags}
        )
        child.log_metrics(objectives, step=3)
        child.finish()
    parent.flush()
    prior = Sweep(space, uri).hypervolume_prior(parent.run_id)
    assert prior["ended"] == 3 and prior["epochs_before"] == 7.0
    assert list(prior["points"]) == ["full"] and prior["points"]["full"] == pytest.approx(objectives)


# ---- one real sweep on Ray ---------------------------------------------------------------------------
@pytest.mark.ray
@pytest.mark.slow
def test_a_moasha_sweep_with_constraints_and_a_reference_control(tmp_path, monkeypatch):
    import optuna
    from mlflow.tracking import MlflowClient

    from coded_resnext.orchestration.cli import main

    monkeypatch.chdir(tmp_path)
    tune = {
        "algorithm": "motpe",
        "num_samples": 4,
        "max_concurrent_trials": 2,
        "name": "mo",
        "seed": 0,
        "scheduler": "moasha",
        "reference_control": True,
        "constraints": {"binary/param_fraction": "<= 0.52"},
    }
    search = {
        "coding.c3": {"choice": ["paper:cifar10/5/10", {"active": 8, "min_distance": 2}]},  # 0.50 / 0.54
        "loss.mu": {"uniform": [1.0, 8.0]},
    }
    path = _space(
        tmp_path,
        tune,
        search=search,
        train={"epochs": 3},
        tracking={"experiment": "mo", "log_model": False},
        data={"name": "synthetic", "ood": None, "limit_train": 256},
        optim={"batch_size": 64, "warmup_epochs": 0},
        eval={
            "binary_classes": 2,
            "binary_fit_samples": 64,
            "limit_val": 128,
            "removal_samples": 32,
            "invariance_samples": 0,
            "early_exit_thresholds": 5,
        },
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["tune", str(path), "--tracking-uri", uri, "--num-cpus", "2"]) == 0

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("mo").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("role") == "sweep")
    trials = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert len(trials) == 5 and all(r.info.status == "FINISHED" for r in runs)  # early stops are not failures
    epochs = {r.data.tags["trial_id"]: len(client.get_metric_history(r.info.run_id, "train/loss")) for r in trials}
    (reference,) = [r for r in trials if r.data.tags.get("reference_control") == "true"]
    assert epochs[reference.data.tags["trial_id"]] == 3 and reference.data.params["model.control"] == "True"
    infeasible = [r for r in trials if r.data.tags.get("infeasible") == "true"]
    assert infeasible and all(r.data.metrics["binary/param_fraction"] > 0.52 for r in infeasible)
    assert all(epochs[r.data.tags["trial_id"]] == 0 and "infeasible_reason" in r.data.tags for r in infeasible)
    trained = [r for r in trials if r not in infeasible and r is not reference]
    for run in trained:  # the rung epoch (1) reported every objective
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "early_exit/compute_at_99pct_accuracy")]
        assert steps[0] == 0, run.data.tags
    from coded_resnext.orchestration.searcher import carried_storage

    study = optuna.load_study(study_name=None, storage=carried_storage(str(tmp_path / "runs" / "ray" / "mo")))
    told = study.get_trials()
    assert len(told) == 4  # the reference control never reached the searcher
    pruned = [t for t in told if t.state == optuna.trial.TrialState.PRUNED]
    stopped = [r for r in trained if r.data.tags.get("early_stopped") == "true"]
    assert len(pruned) == len(infeasible) + len(stopped)
    assert sum(t.constraints["binary/param_fraction"] > 0 for t in told) == len(infeasible)
    hv = sorted((m.step, m.value) for m in client.get_metric_history(parent.info.run_id, "sweep/hypervolume"))
    used = max(client.get_metric_history(parent.info.run_id, "sweep/epochs_used"), key=lambda m: m.step)
    assert [s for s, _ in hv] == [1, 2, 3, 4, 5] and hv[-1][1] > 0
    assert used.value == sum(epochs.values())
    from coded_resnext.orchestration.final_test import sweep_front

    candidates = set(sweep_front(client, "mo").front["run_id"])  # what `evaluate --sweep mo --front` would test
    assert candidates and candidates <= {r.info.run_id for r in trained if r not in stopped}


@pytest.mark.slow  # trains one tiny epoch and writes an MLflow SQLite store
def test_a_scheduler_stopping_a_trial_is_not_a_failure_and_rung_epochs_report_every_objective(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from coded_resnext.orchestration.config import load_config, smoke_test_config
    from coded_resnext.orchestration.lineage import Lineage
    from coded_resnext.orchestration.search_space import DEFAULT_OBJECTIVES
    from coded_resnext.orchestration.sessions import _SingleProcess
    from coded_resnext.orchestration.training import Progress, train_loop

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [
        "data.name=synthetic",
        "data.ood=null",
        "train.epochs=3",
        "train.progress=none",
        f"tracking.uri={uri}",
        "tracking.experiment=stop",
        "tracking.log_model=false",
    ]
    cfg = smoke_test_config(load_config(None, overrides))
    reports = []

    class StoppedAfterOneEpoch(_SingleProcess):
        def restore(self):
            return None

        def report(self, metrics, epoch, state):
            reports.append(metrics)
            raise SystemExit(0)  # what ray.tune.report does in a trial the scheduler stopped

    with pytest.raises(SystemExit):
        train_loop(cfg, StoppedAfterOneEpoch(), Lineage(), Progress("none", 3), rung_epochs=(1,))
    assert set(DEFAULT_OBJECTIVES) <= set(reports[0]) and "time/rung_eval_seconds" in reports[0]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("stop").experiment_id])
    assert run.info.status == "RUNNING"  # left for TrialRunCloser to end FINISHED and tag early_stopped
    assert "early_exit/compute_at_99pct_accuracy" in run.data.metrics  # the rung epoch's objectives were logged


# ---- what a sweep says at its end: the closing list and the parent's description ----------------------
def _standing_runs():
    import pandas as pd

    from coded_resnext.orchestration.sweep_summary import marked

    runs = pd.DataFrame(
        {
            "run_id": ["a" * 32, "b" * 32, "c" * 32, "d" * 32, "r" * 32],
            "run_name": [
                "00000 (c3=gen 4 d4, mu=3.81)",
                "00001 (c3=paper 5/10, mu=6)",
                "00002 (c3=gen 6 d4, mu=1.2)",
                "00003 (c3=gen 4 d4, mu=9.9)",
                "00004 (reference control: plain ResNeXt, base config)",
            ],
            "metrics.val/accuracy": [0.80, 0.82, 0.70, 0.78, 0.90],
            "metrics.binary/param_fraction": [0.45, 0.50, 0.40, 0.46, 1.0],
            "metrics.early_exit/compute_at_99pct_accuracy": [0.60, 0.70, 0.65, 0.61, None],
            "tags.reference_control": [None, None, None, None, "true"],
        }
    )
    return marked(
        runs, {"val/accuracy": "max", "binary/param_fraction": "min", "early_exit/compute_at_99pct_accuracy": "min"}
    )


def test_the_closing_list_marks_the_front_and_the_reference_control():
    import io

    from coded_resnext.orchestration.sweep import SweepOutcome
    from coded_resnext.orchestration.sweep_summary import print_outcome
    from coded_resnext.results.schema import DEFAULT_OBJECTIVES

    ranked = _standing_runs()
    # 00003 is dominated by 00000 (lower accuracy, larger classifier, more compute); the control is off the front
    assert ranked["pareto_front"].tolist() == [True, True, True, False, False]
    assert ranked["reference"].tolist() == [False, False, False, False, True]
    outcome = SweepOutcome("p" * 32, "/tmp/tune/q", [{"status": "OK"}] * 5, 0, standing=ranked, experiment_id="3")
    out = io.StringIO()
    print_outcome(outcome, dict(DEFAULT_OBJECTIVES), "sqlite:////tmp/m.db", "quickstart", out)
    lines = out.getvalue().splitlines()
    listed = [line for line in lines if line.startswith("  ")]
    # best first by accuracy; the reference control listed (its missing early-exit figure as a dash)
    assert [line.split(" (", 1)[0] for line in listed] == [
        "  R 00004",
        "  * 00001",
        "  * 00000",
        "    00003",
        "  * 00002",
    ]
    assert "early_exit/compute_at_99pct_accuracy=–" in listed[0] and "val/accuracy=0.8200" in listed[1]
    assert "Pareto front: 3 of 4 finished trials" in lines
    assert any("*: on the Pareto front" in line and "R: the reference control" in line for line in lines)
    view = (
        f"http://127.0.0.1:5000/#/experiments/3/runs?viewStateShareKey=sweep-{'p' * 32}&workflowType=machine_learning"
    )
    assert f"its trials:       {view}" in lines  # the runs table listing the trials (mlflow ui's address)


def test_the_parent_runs_description_says_the_sweep_its_front_and_how_to_get_the_report():
    from coded_resnext.orchestration.sweep_summary import SweepFacts, sweep_note
    from coded_resnext.results.schema import DEFAULT_OBJECTIVES, Role

    facts = SweepFacts(
        "quickstart", Role.SWEEP, "quickstart", "sqlite:////x/runs/mlflow.db", True, "motpe",
        ["coding.c3", "loss.mu"], "search_spaces/quickstart.yaml", dict(DEFAULT_OBJECTIVES),
    )  # fmt: skip
    note = sweep_note(facts, "p" * 32, "finished: 5 trials, 0 failed", _standing_runs(), "3")
    assert note.startswith("**Sweep `quickstart`**: motpe search over coding.c3, loss.mu")
    assert "**Status**: finished: 5 trials, 0 failed" in note
    rows = [line for line in note.splitlines() if line.startswith("| ")]
    assert rows[0] == "| trial | val/accuracy | binary/param_fraction | early_exit/compute_at_99pct_accuracy |"
    # the front best first, the reference control in italics beside it, the dominated trial left out
    assert [r.split(" (", 1)[0] for r in rows[1:]] == ["| *00004", "| 00001", "| 00000", "| 00002"]
    assert "00003" not in note
    assert f"coded-resnext report quickstart --parent {'p' * 32} --out reports/quickstart" in note
    assert "coded-resnext evaluate --sweep quickstart --front" in note
    assert f"](#/experiments/3/runs?viewStateShareKey=sweep-{'p' * 32}&workflowType=machine_learning)" in note
    elsewhere = SweepFacts(**{**facts.__dict__, "tracking_uri": "http://mlflow:5000", "default_tracking_uri": False})
    assert "--tracking-uri http://mlflow:5000" in sweep_note(elsewhere, "p" * 32, "running", None)
    assert "Pareto front" not in sweep_note(facts, "p" * 32, "running", None)  # nothing finished yet


def test_the_sweeps_view_of_the_runs_table_lists_its_trials_best_first_with_the_objectives():
    import json

    from coded_resnext.orchestration.sweep_summary import SweepFacts, runs_view
    from coded_resnext.results.schema import DEFAULT_OBJECTIVES, Role, Tag

    facts = SweepFacts(
        "q",
        Role.SWEEP,
        "q",
        "sqlite:///x.db",
        True,
        "motpe",
        ["coding.c3", "loss.mu"],
        "q.yaml",
        dict(DEFAULT_OBJECTIVES),
    )
    ((key, value),) = runs_view(facts, "f" * 32).items()
    assert key == f"mlflow.sharedViewState.sweep-{'f' * 32}" and key.startswith(Tag.SHARED_VIEW)
    assert json.loads(value) == {
        "searchFilter": f"tags.`mlflow.parentRunId` = '{'f' * 32}'",
        "orderByKey": "metrics.`val/accuracy`",
        "orderByAsc": False,
        "selectedColumns": [
            "metrics.`val/accuracy`",
            "metrics.`binary/param_fraction`",
            "metrics.`early_exit/compute_at_99pct_accuracy`",
            "params.`coding.c3`",
            "params.`loss.mu`",
        ],
    }


def test_a_trials_run_name_says_its_id_and_configuration():
    from coded_resnext.orchestration.search_space import encode
    from coded_resnext.orchestration.trial import REFERENCE_KEY, TrialContext, trial_description
    from coded_resnext.results.labels import short_run_names, trial_run_name

    space = load_search_space(ROOT / "search_spaces" / "quickstart.yaml")
    ctx = TrialContext(space, "sqlite:///x.db", "p", "/tmp", "quickstart")
    sampled = {
        "coding.c3": encode({"active": 4, "min_distance": 4}),
        "coding.c4": "paper:cifar10/3/10",
        "loss.mu": 3.8127361528716237,
        "loss.p_drop": 0.1,
        "model.width_multiplier": 1.25,
    }
    name = trial_run_name("f9730498", trial_description(ctx, sampled, space.trial_config(sampled)))
    assert name == "f9730498 (c3=gen 4 d4, c4=paper 3/10, mu=3.81, p_drop=0.1, width=1.25)"
    reference = trial_description(ctx, {REFERENCE_KEY: True}, space.base_config())
    assert reference == "reference control: plain ResNeXt, base config"
    import pandas as pd

    # the report's tables keep the number (they show the configuration in their own columns)
    assert short_run_names(pd.Series([name, f"00c0ffee ({reference})"])).tolist() == ["f9730498", "00c0ffee"]
    assert short_run_names(pd.Series(["quickstart-ab12c_00000", "quickstart-ab12c_00001"])).tolist() == [
        "ab12c_00000",
        "ab12c_00001",
    ]
