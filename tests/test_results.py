"""results/: run tables from MLflow, Parquet, Pareto fronts, ablation summaries, plots and the report."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from synthetic_runs import SyntheticSpec, write_synthetic_experiment

from coded_resnext.orchestration.cli import main as cli_main
from coded_resnext.results.ablation import summarize_ablation
from coded_resnext.results.artifacts import load_binary_classifiers, load_early_exit, load_histories
from coded_resnext.results.errors import ResultsError
from coded_resnext.results.pareto import Objective, pareto_front
from coded_resnext.results.parquet import read_parquet, write_parquet
from coded_resnext.results.report import ReportOptions, build_report
from coded_resnext.results.runs import load_runs


# ---- ablation summaries ----------------------------------------------------------------------------
def _ablation_runs() -> pd.DataFrame:
    rows = [
        # cell, seed, val/accuracy, binary/f1_mean
        ("control", "0", 0.90, None),
        ("control", "1", 0.92, None),
        ("control", "2", 0.91, None),
        ("loss.mu=3", "0", 0.93, 0.80),
        ("loss.mu=3", "1", 0.94, 0.82),
        ("loss.mu=3", "2", 0.95, 0.84),
        ("loss.mu=6", "0", 0.89, 0.85),
        ("loss.mu=6", "1", 0.90, None),  # missing metric: left out of f1's n
        ("loss.mu=6", "3", 0.99, 0.86),  # no control on seed 3: not paired
    ]
    return pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(len(rows))],
            "tags.ablation_cell": [r[0] for r in rows],
            "params.seed": [r[1] for r in rows],
            "metrics.val/accuracy": [r[2] for r in rows],
            "metrics.binary/f1_mean": [np.nan if r[3] is None else r[3] for r in rows],
        }
    )


@pytest.mark.unit
def test_ablation_summary_intervals_and_paired_deltas():
    table = summarize_ablation(_ablation_runs(), ["val/accuracy", "binary/f1_mean"])
    assert list(table["cell"].unique()) == ["control", "loss.mu=3", "loss.mu=6"]
    row = table.set_index(["cell", "metric"]).loc[("loss.mu=3", "val/accuracy")]
    assert row["n"] == 3
    assert row["mean"] == pytest.approx(0.94)
    assert row["std"] == pytest.approx(0.01)
    half = 4.302652729911275 * 0.01 / math.sqrt(3)  # t_{0.975, 2}
    assert (row["ci95_low"], row["ci95_high"]) == (pytest.approx(0.94 - half), pytest.approx(0.94 + half))
    # paired on the seed: differences 0.03, 0.02, 0.04
    assert row["n_pairs"] == 3
    assert row["delta_mean"] == pytest.approx(0.03)
    assert (row["delta_ci95_low"], row["delta_ci95_high"]) == (pytest.approx(0.03 - half), pytest.approx(0.03 + half))

    mu6 = table.set_index(["cell", "metric"]).loc[("loss.mu=6", "val/accuracy")]
    assert mu6["n"] == 3 and mu6["n_pairs"] == 2  # seed 3 has no control
    assert mu6["delta_mean"] == pytest.approx(((0.89 - 0.90) + (0.90 - 0.92)) / 2)

    f1 = table.set_index(["cell", "metric"]).loc[("loss.mu=6", "binary/f1_mean")]
    assert f1["n"] == 2 and f1["mean"] == pytest.approx(0.855)
    assert f1["n_pairs"] == 0 and math.isnan(f1["delta_mean"])  # the control has no F1
    control = table.set_index(["cell", "metric"]).loc[("control", "val/accuracy")]
    assert control["n"] == 3 and control["n_pairs"] == 0 and math.isnan(control["delta_mean"])


@pytest.mark.unit
def test_ablation_summary_single_seed_and_repeated_seed():
    runs = pd.DataFrame(
        {
            "tags.cell": ["control", "a", "a"],
            "params.seed": ["0", "0", "0"],  # the cell ran seed 0 twice: averaged before pairing
            "metrics.val/accuracy": [0.5, 0.6, 0.8],
        }
    )
    table = summarize_ablation(runs, ["metrics.val/accuracy"], cell_column="tags.cell").set_index("cell")
    assert table.loc["control", "n"] == 1 and math.isnan(table.loc["control", "ci95_low"])
    assert table.loc["a", "n_pairs"] == 1
    assert table.loc["a", "delta_mean"] == pytest.approx(0.2)
    assert math.isnan(table.loc["a", "delta_ci95_low"])  # one pair: no interval


@pytest.mark.unit
def test_ablation_summary_without_seeds_has_no_pairs():
    runs = pd.DataFrame({"tags.ablation_cell": ["control", "a", "a"], "metrics.val/accuracy": [0.5, 0.6, 0.7]})
    table = summarize_ablation(runs, ["val/accuracy"]).set_index("cell")
    assert table.loc["a", "mean"] == pytest.approx(0.65)
    assert table.loc["a", "n_pairs"] == 0 and math.isnan(table.loc["a", "delta_mean"])


# ---- a synthetic MLflow store ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """Experiments written with MlflowClient into a SQLite store: a sweep (some runs lack the binary and
    early-exit metrics and tables, one is still running), an ablation, single runs, and one with no
    finished run."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    sweep = write_synthetic_experiment(
        uri, SyntheticSpec("sweep", runs=12, kind="sweep", epochs=3, missing_every=4, unfinished=1, seed=1)
    )
    ablation = write_synthetic_experiment(uri, SyntheticSpec("ablation", runs=8, kind="ablation", seeds=2, seed=2))
    single = write_synthetic_experiment(uri, SyntheticSpec("single", runs=3, kind="single", tables=False, seed=3))
    write_synthetic_experiment(uri, SyntheticSpec("nothing-finished", runs=0, kind="single", unfinished=2))
    return {"uri": uri, "sweep": sweep, "ablation": ablation, "single": single}


def test_load_runs_shape_and_types(store):
    runs = load_runs("sweep", tracking_uri=store["uri"])
    assert len(runs) == 12  # finished trials only: not the parent, not the running trial
    assert set(runs["run_id"]) == set(store["sweep"][:12])
    assert list(runs.columns[:9]) == [
        "run_id", "experiment_id", "experiment", "run_name", "status", "start_time", "end_time", "artifact_uri",
        "parent_run_id",
    ]  # fmt: skip
    assert (runs["status"] == "FINISHED").all()
    assert runs["parent_run_id"].nunique() == 1 and runs["parent_run_id"].notna().all()
    assert (runs["tags.role"] == "trial").all()
    assert runs["params.loss.mu"].dtype == "string"
    assert runs["metrics.val/accuracy"].dtype == "float64"
    assert str(runs["start_time"].dt.tz) == "UTC"
    # three of the twelve lack the binary metrics: NaN, not dropped
    assert runs["metrics.binary/param_fraction"].isna().sum() == 3

    everything = load_runs("sweep", tracking_uri=store["uri"], statuses=None, include_parents=True)
    assert len(everything) == 14 and (everything["tags.role"] == "sweep").sum() == 1
    parent = runs["parent_run_id"].iloc[0]
    assert len(load_runs("sweep", tracking_uri=store["uri"], parent_run_id=parent)) == 12
    assert load_runs("sweep", tracking_uri=store["uri"], parent_run_id="nope").empty
    singles = load_runs("single", tracking_uri=store["uri"])
    assert len(singles) == 3 and singles["parent_run_id"].isna().all()


def test_unknown_experiment_names_the_existing_ones(store):
    with pytest.raises(ResultsError, match=r"no experiment named 'swep'.*sweep"):
        load_runs("swep", tracking_uri=store["uri"])


def test_long_tables_from_artifacts_and_histories(store):
    runs = load_runs("sweep", tracking_uri=store["uri"])
    binary = load_binary_classifiers(runs, store["uri"])
    with_tables = runs.loc[runs["metrics.binary/param_fraction"].notna(), "run_id"]
    assert set(binary["run_id"]) == set(with_tables)
    assert len(binary) == 10 * len(with_tables)  # one row per class
    assert {"class", "precision", "recall", "f1", "ood_precision", "param_fraction"} <= set(binary.columns)
    one = runs[runs["run_id"] == with_tables.iloc[0]].iloc[0]
    assert binary.loc[binary["run_id"] == one["run_id"], "f1"].mean() == pytest.approx(one["metrics.binary/f1_mean"])

    curves = load_early_exit(runs, store["uri"])
    assert set(curves["run_id"]) == set(with_tables)
    assert {"threshold", "accuracy", "compute_fraction", "exit_rate"} <= set(curves.columns)

    history = load_histories(runs, store["uri"], keys=("val/accuracy", "train/loss"))
    assert len(history) == len(runs) * 2 * 3  # runs x keys x epochs
    last = history[(history["key"] == "val/accuracy") & (history["step"] == 2)].set_index("run_id")["value"]
    final = runs.set_index("run_id")["metrics.val/accuracy"]
    assert np.allclose(last.sort_index(), final.sort_index())


# ---- Parquet -------------------------------------------------------------------------------------------
def test_parquet_round_trip_appends_only_new_runs(store, tmp_path):
    runs = load_runs("sweep", tracking_uri=store["uri"])
    first = write_parquet(runs.iloc[:5], tmp_path)
    assert (first.rows_written, first.rows_skipped) == (5, 0)
    assert any(p.name.startswith("experiment_id=") for p in (tmp_path / "runs").iterdir())  # partitioned
    again = write_parquet(runs, tmp_path)
    assert (again.rows_written, again.rows_skipped) == (7, 5)
    assert write_parquet(runs, tmp_path).rows_written == 0
    back = read_parquet(tmp_path)
    pd.testing.assert_frame_equal(back, runs)  # same rows, order, columns and dtypes

    binary = load_binary_classifiers(runs, store["uri"]).merge(runs[["run_id", "experiment_id"]], on="run_id")
    write_parquet(binary, tmp_path, "binary_classifiers")
    write_parquet(binary, tmp_path, "binary_classifiers")
    pd.testing.assert_frame_equal(read_parquet(tmp_path, "binary_classifiers"), binary)


@pytest.mark.unit
def test_parquet_keeps_row_order_across_partitions(tmp_path):
    # One write lands in two partition directories; the frame's interleaved order must come back.
    frame = pd.DataFrame(
        {
            "run_id": pd.array(["a", "b", "c", "d", "e"], dtype="string"),
            "experiment_id": pd.array(["2", "1", "2", "1", "2"], dtype="string"),
            "metrics.x": [5.0, 4.0, 3.0, 2.0, 1.0],
        }
    )
    write_parquet(frame.iloc[:3], tmp_path, "t")
    write_parquet(frame, tmp_path, "t")
    back = read_parquet(tmp_path, "t")
    assert back["run_id"].tolist() == ["a", "b", "c", "d", "e"]
    pd.testing.assert_frame_equal(back, frame)


@pytest.mark.unit
def test_parquet_keeps_columns_that_appear_later(tmp_path):
    a = pd.DataFrame({"run_id": pd.array(["a"], dtype="string"), "metrics.x": [1.0], "params.p": ["1"]})
    b = pd.DataFrame({"run_id": pd.array(["b"], dtype="string"), "metrics.x": [2.0], "tags.new": ["t"]})
    b["tags.new"] = b["tags.new"].astype("string")
    write_parquet(a, tmp_path, "t")
    write_parquet(b, tmp_path, "t")
    back = read_parquet(tmp_path, "t")
    assert list(back["run_id"]) == ["a", "b"]
    assert back["tags.new"].dtype == "string" and back["tags.new"].isna().tolist() == [True, False]
    assert back["metrics.x"].tolist() == [1.0, 2.0]
    with pytest.raises(ResultsError, match="no Parquet dataset"):
        read_parquet(tmp_path, "missing")


# ---- Pareto --------------------------------------------------------------------------------------------
def _frame(acc, size):
    return pd.DataFrame({"run_id": [f"r{i}" for i in range(len(acc))], "metrics.acc": acc, "metrics.size": size})


OBJ = (Objective("acc", "max"), Objective("size", "min"))


# The ranking peels fronts off until no run remains; counting ties as dominating empties a front, which
# pareto_front refuses at once (and the timeouts catch any other way of never finishing).
@pytest.mark.unit
@pytest.mark.timeout(30)
def test_pareto_ties_missing_values_and_ranks():
    # r0 and r1 tie (both on the front); r2 is dominated by both; r3 is best on size alone;
    # r4 lacks its size: worst there, so r0, r1 and r3 do not dominate it (its accuracy is higher)... unless
    # one is at least as accurate: r4's accuracy 0.9 equals r0's, so r0 dominates it.
    runs = _frame([0.9, 0.9, 0.8, 0.5, 0.9], [0.4, 0.4, 0.5, 0.1, np.nan])
    out = pareto_front(runs, OBJ)
    assert out["pareto_front"].tolist() == [True, True, False, True, False]
    assert out["dominated_by"].tolist() == [0, 0, 2, 0, 2]
    assert out["pareto_rank"].tolist() == [1, 1, 2, 1, 2]
    assert list(out["run_id"]) == list(runs["run_id"])  # every run kept, in order

    excluded = pareto_front(runs, (Objective("acc", "max"), Objective("size", "min", missing="exclude")))
    assert excluded["pareto_front"].tolist() == [True, True, False, True, False]
    assert excluded["pareto_rank"].isna().tolist() == [False, False, False, False, True]

    lone = pareto_front(_frame([0.95, 0.9], [np.nan, 0.3]), OBJ)  # most accurate but no size: still on the front
    assert lone["pareto_front"].tolist() == [True, True]


@pytest.mark.unit
@pytest.mark.timeout(30)
def test_pareto_equal_runs_share_every_rank_they_reach():
    runs = _frame([0.9, 0.8, 0.9, 0.8, 0.7], [0.4, 0.5, 0.4, 0.5, 0.6])  # two pairs of equal runs, then one
    out = pareto_front(runs, OBJ)
    assert out["pareto_rank"].tolist() == [1, 2, 1, 2, 3]
    assert out["dominated_by"].tolist() == [0, 2, 0, 2, 4]


@pytest.mark.unit
@pytest.mark.timeout(30)
def test_pareto_matches_brute_force():
    rng = np.random.default_rng(0)
    acc = rng.integers(0, 5, 60).astype(float)  # small integers: many ties
    size = rng.integers(0, 5, 60).astype(float)
    size[::7] = np.nan
    out = pareto_front(_frame(acc, size), OBJ)
    cost = np.stack([-acc, np.where(np.isnan(size), np.inf, size)], 1)
    for i in range(60):
        dominators = sum(bool((cost[j] <= cost[i]).all() and (cost[j] < cost[i]).any()) for j in range(60) if j != i)
        assert out["dominated_by"].iloc[i] == dominators
        assert out["pareto_front"].iloc[i] == (dominators == 0)


# ---- the report ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep_report(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return build_report("sweep", out, ReportOptions(tracking_uri=store["uri"])), out


def test_report_writes_tables_figures_and_attaches_to_the_parent(store, sweep_report):
    report, out = sweep_report
    assert report.runs == 12
    names = {p.name for p in report.figures}
    assert {"pareto_front.png", "early_exit_front.png", "binary_precision_recall.png", "epoch_curves.png"} <= names
    assert "best_energy_heatmap_block_0.png" in names
    assert {"ablation_mu.png", "ablation_p_drop.png"} & names  # the sweep varies mu and p_drop
    for path in report.figures:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = report.html.read_text()
    assert html.count('src="data:image/png;base64,') == len(report.figures)  # self-contained
    markdown = report.markdown.read_text()
    for path in report.figures:
        assert f"](plots/{path.name})" in markdown
    assert "## Best runs" in markdown and "## Pareto front" in markdown and "## Against the paper's Table 2" in markdown
    assert "| CIFAR-10 | 94.41 |" in markdown
    # partial data is reported, not fatal
    assert any("1 RUNNING" in n for n in report.notes)
    assert any("3 of 12 runs have no binary/param_fraction" in n for n in report.notes)
    assert "3 of 12 runs have no tables/binary_classifiers.csv" in markdown

    assert read_parquet(out / "parquet", "runs")["run_id"].nunique() == 12
    assert len(read_parquet(out / "parquet", "histories")) == 12 * 4 * 3
    pareto = pd.read_csv(out / "pareto.csv")
    assert len(pareto) == 12 and pareto["pareto_front"].any()

    client = MlflowClient(store["uri"])
    parent = load_runs("sweep", tracking_uri=store["uri"])["parent_run_id"].iloc[0]
    assert report.parent_runs == [parent]
    assert not client.list_artifacts(parent, "report")  # results/ writes files, never MLflow
    from coded_resnext.orchestration.commands.report import attach_report  # the report command attaches it

    assert attach_report(report, store["uri"]) == [parent]
    attached = {a.path for a in client.list_artifacts(parent, "report")}
    assert {"report/report.html", "report/report.md", "report/plots"} <= attached
    assert client.get_run(parent).info.status == "FINISHED"  # attaching leaves the parent's state alone


def test_report_rerun_appends_nothing(store, sweep_report):
    _, out = sweep_report
    again = build_report("sweep", out, ReportOptions(tracking_uri=store["uri"]))
    assert all(w.rows_written == 0 for w in again.parquet.values())
    assert len(read_parquet(out / "parquet", "runs")) == 12


def test_report_of_an_ablation_has_intervals_and_paired_deltas(store, tmp_path):
    report = build_report("ablation", tmp_path, ReportOptions(tracking_uri=store["uri"]))
    summary = pd.read_csv(tmp_path / "ablation.csv")
    assert set(summary["cell"]) == {
        "control", "loss.mu=3,loss.p_drop=0.1", "loss.mu=6,loss.p_drop=0.1", "loss.mu=6,loss.p_drop=0.0"
    }  # fmt: skip
    cell = summary[(summary["cell"] == "loss.mu=3,loss.p_drop=0.1") & (summary["metric"] == "val/accuracy")].iloc[0]
    assert cell["n"] == 2 and cell["n_pairs"] == 2 and cell["ci95_low"] < cell["mean"] < cell["ci95_high"]
    markdown = report.markdown.read_text()
    assert "## Ablation" in markdown and "paired delta vs control" in markdown


def test_report_of_single_runs_without_tables(store, tmp_path):
    report = build_report("single", tmp_path, ReportOptions(tracking_uri=store["uri"]))
    assert report.runs == 3 and report.parent_runs == []  # no parent to attach to
    names = {p.name for p in report.figures}
    assert "pareto_front.png" in names  # the metrics are there...
    assert not names & {"early_exit_front.png", "binary_precision_recall.png"}  # ...the tables are not
    assert any("figure left out for lack of data" in n for n in report.notes)
    assert report.html.exists()


def test_report_errors_are_one_line_messages(store, tmp_path, capsys):
    with pytest.raises(ResultsError, match=r"no finished trial runs \(runs there: 2 RUNNING\)"):
        build_report("nothing-finished", tmp_path, ReportOptions(tracking_uri=store["uri"]))
    for experiment in ("nothing-finished", "no-such-experiment"):
        code = cli_main(["report", experiment, "--out", str(tmp_path / "r"), "--tracking-uri", store["uri"]])
        err = capsys.readouterr().err
        assert code == 2
        assert err.startswith("coded-resnext: error: ") and "Traceback" not in err
    assert cli_main(["report", "sweep", "--out", str(tmp_path / "r"), "--tracking-uri", store["uri"],
                     "--objective", "val/accuracy"]) == 2  # fmt: skip
    assert "expected METRIC:max or METRIC:min" in capsys.readouterr().err


def test_report_command_prints_where_the_report_is(store, tmp_path, capsys):
    out = tmp_path / "r"
    code = cli_main(
        ["report", "ablation", "--out", str(out), "--tracking-uri", store["uri"], "--no-attach", "--top", "3"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "8 runs" in printed and str(out / "report.html") in printed
    assert (out / "report.md").exists() and (out / "parquet" / "runs").is_dir()


@pytest.mark.unit
def test_runs_table_shows_test_figures_beside_validation_ones_only_where_runs_have_them():
    from coded_resnext.results.report import runs_table

    runs = pd.DataFrame(
        {
            "run_id": ["a", "b"],
            "run_name": ["r-a", "r-b"],
            "metrics.val/accuracy": [0.90, 0.80],
            "metrics.test/accuracy": [0.885, np.nan],  # only run a was measured on the test split
            "metrics.binary/f1_mean": [0.7, 0.6],
        }
    )
    table = runs_table(runs, [Objective("metrics.val/accuracy", "max")], [])
    columns = list(table.columns)
    assert columns.index("test/accuracy (%)") == columns.index("val/accuracy (%)") + 1
    assert table["test/accuracy (%)"].iloc[0] == pytest.approx(88.5) and pd.isna(table["test/accuracy (%)"].iloc[1])
    without = runs_table(runs.drop(columns="metrics.test/accuracy"), [Objective("metrics.val/accuracy", "max")], [])
    assert not any(c.startswith("test/") for c in without.columns)


# ---- labels and importance -----------------------------------------------------------------------------
@pytest.mark.unit
def test_short_labels_round_numbers_and_abbreviate_schemes():
    from coded_resnext.results.labels import short_run_names, short_value

    assert short_value("loss.mu", "3.8127361528716237") == "3.81" and short_value("loss.mu", "6.0") == "6"
    assert short_value("coding.c3", "generate:active=4,min_distance=4,seed=0") == "gen 4 d4"
    assert short_value("coding.c3", "generate:active=6,branches=12,min_distance=None,seed=1") == "gen 6/12 s1"
    assert short_value("coding.c3", "paper:cifar10/5/10") == "paper 5/10"
    assert short_value("model.name", "coded_resnext_mini") == "coded_resnext_mini"
    names = pd.Series(["quickstart-ab12c_00000", "quickstart-ab12c_00001"])
    assert short_run_names(names).tolist() == ["ab12c_00000", "ab12c_00001"]


@pytest.mark.unit
def test_importance_names_the_parameter_that_drives_each_objective():
    from coded_resnext.results.importance import param_importances, study_from_runs

    rng = np.random.default_rng(0)
    mu, p_drop = rng.uniform(1, 10, 40), rng.choice([0.0, 0.1, 0.2], 40)
    runs = pd.DataFrame(
        {
            "params.loss.mu": pd.Series(mu.astype(str), dtype="string"),
            "params.loss.p_drop": pd.Series(p_drop.astype(str), dtype="string"),
            "metrics.val/accuracy": 0.9 - 0.01 * mu + rng.normal(0, 1e-4, 40),  # driven by mu
            "metrics.binary/param_fraction": 0.5 + p_drop + rng.normal(0, 1e-4, 40),  # driven by p_drop
        }
    )
    objectives = (Objective("val/accuracy", "max"), Objective("binary/param_fraction", "min"))
    table = param_importances(study_from_runs(runs, ["loss.mu", "loss.p_drop"], objectives), objectives)
    assert table["val/accuracy"].idxmax() == "loss.mu" and table["val/accuracy"]["loss.mu"] > 0.9
    assert table["binary/param_fraction"].idxmax() == "loss.p_drop"
    assert study_from_runs(runs.head(3), ["loss.mu"], objectives) is None  # too few runs to say anything


@pytest.mark.parametrize("runs", [1, 3, 6])
def test_the_legends_under_the_cross_run_figures_stay_inside_them(monkeypatch, tmp_path, runs):
    """Quickstart run labels are long: a row of three ran past both edges of the early-exit, binary and
    per-epoch figures (cut off in the report); each label now wraps to its column."""
    from coded_resnext.results import plots

    drawn = []

    def keep(fig, path):
        fig.draw_without_rendering()  # constrained layout places the legend
        drawn.append((path.name, fig.bbox, fig.legends[0].get_window_extent(), fig.legends[0].get_texts()))
        return path

    monkeypatch.setattr(plots, "save_figure", keep)
    ids = [f"run{i}" for i in range(runs)]
    labels = pd.Series(
        {
            run: f"0000{i} (mu=3.8127361528716237, p_drop=0.1, c3=gen 4 d4, c4=paper 3/10, width=1.25, model=coded_resnext_mini)"
            for i, run in enumerate(ids)
        }
    )
    curves = pd.DataFrame(
        [{"run_id": r, "compute_fraction": c, "accuracy": 0.8 + c / 10} for r in ids for c in (0.4, 0.7, 1.0)]
    )
    binary = pd.DataFrame(
        [
            {"run_id": r, "class": k, "precision": 0.9, "recall": 0.8, "ood_precision": 0.95}
            for r in ids
            for k in range(3)
        ]
    )
    histories = pd.DataFrame(
        [
            {"run_id": r, "key": key, "step": s, "value": 0.5}
            for r in ids
            for key in ("val/accuracy", "train/loss")
            for s in range(3)
        ]
    )
    plots.early_exit_curves(curves, labels, tmp_path / "a.png")
    plots.binary_precision_recall(binary, labels, tmp_path / "b.png")
    plots.epoch_curves(histories, labels, tmp_path / "c.png")
    assert len(drawn) == 3
    for name, figure, legend, texts in drawn:
        assert figure.x0 <= legend.x0 and legend.x1 <= figure.x1, (name, legend, figure)
        assert legend.y0 >= figure.y0, name
        assert all("mu=3.81" in t.get_text() or "mu=3.8127361528716237" in t.get_text() for t in texts)
        assert len(texts) == runs


def test_the_report_draws_the_best_runs_information_paths_from_its_table(tmp_path):
    """A search's trials log the energy table, not the heatmap PNGs: the report draws them."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    write_synthetic_experiment(uri, SyntheticSpec("paths", runs=4, kind="sweep", epochs=2, energy_table=True))
    report = build_report("paths", tmp_path / "out", ReportOptions(tracking_uri=uri))
    (heatmap,) = [p for p in report.figures if p.name.startswith("best_energy_heatmap")]
    assert heatmap.name == "best_energy_heatmap_block_0.png" and heatmap.read_bytes()[:4] == b"\x89PNG"
    assert "Information paths of the best run" in report.markdown.read_text()
