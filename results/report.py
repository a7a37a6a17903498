"""The report of an experiment (a sweep, an ablation, or single runs): Parquet tables, figures,
``report.md`` and a self-contained ``report.html``. It reads runs and writes files, never MLflow: the
``report`` command attaches it to the sweep's parent run (``Report.parent_runs``).

    out/report.md, out/report.html          the report (the HTML embeds its figures)
    out/plots/*.png                         the figures
    out/parquet/<table>/experiment_id=*/    runs, binary_classifiers, early_exit_curve, histories
    out/pareto.csv, out/ablation.csv        this report's front and ablation summary

Whatever is missing (a metric, a run's tables, a control cell) leaves out only what needs it, with a note
in the report; only an unknown experiment or one without finished runs stops it (``ResultsError``).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException

from coded_resnext.results.ablation import summarize_ablation
from coded_resnext.results.artifacts import (
    load_binary_classifiers,
    load_early_exit,
    load_histories,
    load_table,
    local_artifact_dir,
)
from coded_resnext.results.document import Block, Cell, Document, to_html, to_markdown
from coded_resnext.results.importance import param_importances, study_from_runs
from coded_resnext.results.labels import PARAM_NAMES, short_run_names, short_value
from coded_resnext.results.paper import TABLE2, compare_table2, table2_display
from coded_resnext.results.pareto import DEFAULT_OBJECTIVES, Objective
from coded_resnext.results.parquet import ParquetWrite, write_parquet
from coded_resnext.results.plots import (
    ablation_plot,
    binary_precision_recall,
    display,
    early_exit_curves,
    epoch_curves,
    front_scatter,
    hypervolume_plot,
    parallel_coordinates,
)
from coded_resnext.results.run_plots import energy_heatmaps_from_table
from coded_resnext.results.runs import (
    ResultsError,
    client_for,
    load_runs,
    metric_values,
    numeric_param,
    run_status_counts,
)
from coded_resnext.results.schema import CONTROL_CELL, Tag, tag_column
from coded_resnext.results.sweep_progress import hypervolume_histories, ranked_runs, reference_runs

logger = logging.getLogger(__name__)

# A test-split figure sits beside its validation one; its column appears only where some run has it
# (``coded-resnext evaluate``, or the end of a single ``train``).
SUMMARY_METRICS = (
    "val/accuracy",
    "test/accuracy",
    "binary/param_fraction",
    "binary/param_fraction_paper",
    "binary/f1_mean",
    "test/binary/f1_mean",
    "binary/refit_f1_mean",
    "binary/ood_precision_mean",
    "early_exit/compute_at_99pct_accuracy",
    "test/early_exit/compute_at_99pct_accuracy",
    "early_exit/accuracy_at_half_compute",
)
ABLATION_METRICS = (
    "val/accuracy",
    "binary/f1_mean",
    "binary/param_fraction",
    "early_exit/compute_at_99pct_accuracy",
)
# parameters worth a column when they vary across runs, and their short names in legends


@dataclass(frozen=True)
class ReportOptions:
    tracking_uri: str | None = None  # None: MLflow's default (MLFLOW_TRACKING_URI or ./mlruns)
    parent_run_id: str | None = None  # only this sweep's or ablation's trials
    objectives: tuple[Objective, ...] = DEFAULT_OBJECTIVES
    top: int = 10  # rows in the best-runs table
    ablation_metrics: tuple[str, ...] = ABLATION_METRICS


@dataclass
class Report:
    out_dir: Path
    markdown: Path
    html: Path
    runs: int
    figures: list[Path] = field(default_factory=list)
    parquet: dict[str, ParquetWrite] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    parent_runs: list[str] = field(default_factory=list)  # the sweeps/ablations the reported runs belong to


# ---- pieces --------------------------------------------------------------------------------------------
def varying_params(runs: pd.DataFrame) -> list[str]:
    """The ``PARAM_NAMES`` keys whose values differ between runs, in that order."""
    return [k for k in PARAM_NAMES if f"params.{k}" in runs.columns and runs[f"params.{k}"].nunique(dropna=False) > 1]


def run_labels(runs: pd.DataFrame) -> pd.Series:
    """run id -> "00003 (mu=3.81, c3=gen 4 d4)": the short run name and the parameters that vary."""
    keys = varying_params(runs)
    names = short_run_names(runs["run_name"].fillna(runs["run_id"].str[:8]))
    labels = {}
    for (_, run), name in zip(runs.iterrows(), names, strict=True):
        values = [
            f"{PARAM_NAMES[k]}={short_value(k, run[f'params.{k}'])}"
            for k in keys
            if k != "seed" and pd.notna(run[f"params.{k}"])
        ]
        labels[run["run_id"]] = f"{name} ({', '.join(values)})" if values else str(name)
    return pd.Series(labels, dtype="string")


def _percent(values: pd.Series, metric: str) -> pd.Series:
    return values * display(metric).scale


def metric_column(metric: str) -> str:
    """A metric's column name in the tables: its name and display unit."""
    d = display(metric)
    return f"{metric}{f' ({d.unit.split()[0]})' if d.unit else ''}"


def runs_table(runs: pd.DataFrame, objectives: Sequence[Objective], param_keys: Sequence[str]) -> pd.DataFrame:
    """Display frame: run (its id as a tooltip), the ``param_keys`` (short labels, full values as
    tooltips), summary metrics (in display units), Pareto rank. Columns are ``SUMMARY_METRICS`` after the
    objectives: add a metric there to add a column."""
    names = short_run_names(runs["run_name"].fillna(runs["run_id"].str[:8]))
    out = pd.DataFrame({"run": [Cell(str(n), str(r)) for n, r in zip(names, runs["run_id"], strict=True)]})
    for key in param_keys:
        out[PARAM_NAMES[key]] = [Cell(short_value(key, v), str(v)) for v in runs[f"params.{key}"]]
    metrics = list(dict.fromkeys([o.metric.removeprefix("metrics.") for o in objectives] + list(SUMMARY_METRICS)))
    for metric in metrics:
        values = metric_values(runs, metric)
        if values.notna().any():
            out[metric_column(metric)] = _percent(values, metric).to_numpy()
    if "pareto_rank" in runs.columns:
        out["Pareto rank"] = runs["pareto_rank"].to_numpy()
    return out.reset_index(drop=True)


def abbreviations(runs: pd.DataFrame, param_keys: Sequence[str]) -> str | None:
    """What the short labels of the tables stand for (the coding schemes), one line; None if nothing is short."""
    pairs = []
    for key in param_keys:
        for value in sorted(set(runs[f"params.{key}"].dropna().astype(str))):
            short = short_value(key, value)
            if key.startswith("coding.") and short != value:
                pairs.append(f"{PARAM_NAMES[key]} {short} = {value}")
    return "Schemes: " + "; ".join(dict.fromkeys(pairs)) + "." if pairs else None


def _runs_table_block(doc: Document, runs: pd.DataFrame, objectives, param_keys) -> None:
    doc.table(runs_table(runs, objectives, param_keys))
    legend = abbreviations(runs, param_keys)
    if legend:
        doc.legend(legend)


def ablation_display(summary: pd.DataFrame) -> pd.DataFrame:
    def interval(mean, low, high, scale, signed=False):
        if pd.isna(mean):
            return "–"
        fmt = "{:+.2f}" if signed else "{:.2f}"
        text = fmt.format(mean * scale)
        return f"{text} [{low * scale:.2f}, {high * scale:.2f}]" if pd.notna(low) else text

    rows = []
    for _, r in summary.iterrows():
        scale = display(r["metric"]).scale
        rows.append(
            {
                "cell": r["cell"],
                "metric": r["metric"],
                "n": r["n"],
                "mean [95% CI]": interval(r["mean"], r["ci95_low"], r["ci95_high"], scale),
                "paired delta vs control [95% CI]": interval(
                    r["delta_mean"], r["delta_ci95_low"], r["delta_ci95_high"], scale, signed=True
                ),
                "pairs": r["n_pairs"],
            }
        )
    return pd.DataFrame(rows)


def copy_energy_heatmaps(runs: pd.DataFrame, out_dir: Path, tracking_uri: str | None) -> tuple[list[Path], str | None]:
    """The energy heatmaps of the best-accuracy run (the first of the 5 best that has them): drawn from its
    ``energy_by_class`` table (a search's trials log the table, not the plots), else the PNGs it logged."""
    client = client_for(tracking_uri)
    ranked = runs.assign(_acc=metric_values(runs, "val/accuracy")).sort_values("_acc", ascending=False)
    for _, run in ranked.head(5).iterrows():
        table = load_table(ranked.loc[[run.name]], "energy_by_class", tracking_uri)
        if "energy" in table.columns:
            drawn = energy_heatmaps_from_table(table, out_dir, prefix="best_")
            if drawn:
                return drawn, run["run_id"]
        try:
            names = [a.path for a in client.list_artifacts(run["run_id"], "plots")]
        except (MlflowException, OSError):
            continue
        names = sorted(n for n in names if Path(n).name.startswith("energy_heatmap_block_"))
        if not names:
            continue
        copied = []
        local = local_artifact_dir(run["artifact_uri"])
        for name in names:
            target = out_dir / f"best_{Path(name).name}"
            try:
                if local is not None:
                    shutil.copyfile(local / name, target)
                else:
                    shutil.copyfile(client.download_artifacts(run["run_id"], name, str(out_dir)), target)
            except (MlflowException, OSError):
                continue
            copied.append(target)
        if copied:
            return copied, run["run_id"]
    return [], None


def _with_experiment_id(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    if table.empty or "run_id" not in table.columns:
        return table
    return table.merge(runs[["run_id", "experiment_id"]], on="run_id", how="left")


# ---- the report ----------------------------------------------------------------------------------------
def _finished_runs(experiment: str, options: ReportOptions) -> tuple[pd.DataFrame, list[str]]:
    notes = []
    runs = load_runs(experiment, options.tracking_uri, parent_run_id=options.parent_run_id)
    counts = run_status_counts(experiment, options.tracking_uri)
    if runs.empty:
        scope = f" under parent run {options.parent_run_id}" if options.parent_run_id else ""
        if not counts:
            raise ResultsError(f"experiment {experiment!r} has no runs yet")
        states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        raise ResultsError(f"experiment {experiment!r} has no finished trial runs{scope} (runs there: {states})")
    unfinished = {s: n for s, n in counts.items() if s != "FINISHED"}
    if unfinished:
        notes.append(
            "left out runs that did not finish: " + ", ".join(f"{n} {s}" for s, n in sorted(unfinished.items()))
        )
    return runs, notes


def build_report(experiment: str, out_dir: Path, options: ReportOptions = ReportOptions()) -> Report:
    """Write the report of ``experiment``'s finished trial runs to ``out_dir`` (see the module docstring)."""
    out_dir = Path(out_dir)
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    runs, notes = _finished_runs(experiment, options)
    uri = options.tracking_uri
    logger.info("%d finished runs; reading their tables and histories", len(runs))
    report = Report(out_dir, out_dir / "report.md", out_dir / "report.html", len(runs), notes=notes)

    objectives = options.objectives
    for obj in objectives:
        have = int(metric_values(runs, obj.metric.removeprefix("metrics.")).notna().sum())
        if have < len(runs):
            report.notes.append(
                f"{len(runs) - have} of {len(runs)} runs have no {obj.metric}: "
                + ("ranked worst on it" if obj.missing == "worst" else "left out of the front")
            )
    ranked = ranked_runs(runs, objectives)
    ranked = (
        ranked.assign(_acc=metric_values(ranked, "val/accuracy"))
        .sort_values(["pareto_rank", "_acc"], ascending=[True, False], na_position="last")
        .drop(columns="_acc")
    )
    front = ranked[ranked["pareto_front"]]
    labels = run_labels(runs)
    front_labels = labels[front["run_id"].tolist()]

    binary = load_binary_classifiers(runs, uri)
    curves = load_early_exit(runs, uri)
    histories = load_histories(runs, uri)
    for name, table in (("binary_classifiers", binary), ("early_exit_curve", curves)):
        have = table["run_id"].nunique() if not table.empty else 0
        if have < len(runs):
            report.notes.append(f"{len(runs) - have} of {len(runs)} runs have no tables/{name}.csv")

    logger.info("writing Parquet tables")
    parquet_dir = out_dir / "parquet"
    report.parquet["runs"] = write_parquet(runs, parquet_dir, "runs")
    for name, table in (("binary_classifiers", binary), ("early_exit_curve", curves), ("histories", histories)):
        if not table.empty and len(table.columns) > 1:
            report.parquet[name] = write_parquet(_with_experiment_id(table, runs), parquet_dir, name)
    ranked.to_csv(out_dir / "pareto.csv", index=False)

    logger.info("drawing figures")
    doc = Document(f"Coded ResNeXt results: {experiment}")
    parents = sorted(set(runs["parent_run_id"].dropna()))
    kind = (
        "single runs"
        if not parents
        else f"trials of {len(parents)} parent run(s) ({', '.join(p[:8] for p in parents)})"
    )
    doc.paragraph(
        f"{len(runs)} finished runs ({kind}) from MLflow experiment `{experiment}`. "
        "Pareto objectives: " + ", ".join(f"{o.metric} ({o.direction})" for o in objectives) + "."
    )
    notes_at = len(doc.blocks)

    doc.heading("Best runs")
    doc.paragraph(f"The {min(options.top, len(runs))} runs with the highest validation accuracy.")
    best = ranked.assign(_acc=metric_values(ranked, "val/accuracy")).sort_values("_acc", ascending=False)
    _runs_table_block(doc, best.head(options.top), objectives, varying_params(runs))

    doc.heading("Pareto front")
    doc.paragraph(
        f"{len(front)} non-dominated runs (no other run is at least as good on every objective and better on one). "
        "All runs with their ranks are in pareto.csv."
    )
    _runs_table_block(doc, front, objectives, varying_params(runs))
    figures = [
        (
            front_scatter(ranked, objectives, plots / "pareto_front.png", baseline=reference_runs(runs)),
            "Accuracy vs binary-classifier size; the front ringed in red",
        ),
        (
            early_exit_curves(curves, front_labels, plots / "early_exit_front.png"),
            "Early exit: accuracy vs compute of the front's runs",
        ),
        (
            binary_precision_recall(binary, front_labels, plots / "binary_precision_recall.png"),
            "Per-class binary classifiers of the front's runs (paper's Fig. 2b)",
        ),
        (epoch_curves(histories, front_labels, plots / "epoch_curves.png"), "Per-epoch curves of the front's runs"),
    ]
    progress = hypervolume_histories(parents, uri)
    if progress:  # a multi-objective sweep's own progress log; single runs and ablations have none
        figures.append(
            (hypervolume_plot(progress, plots / "hypervolume.png"), "Sweep progress: hypervolume against epochs used")
        )
    for path, caption in figures:
        if path is None:
            report.notes.append(f"figure left out for lack of data: {caption}")
        else:
            doc.figure(path, caption)
            report.figures.append(path)

    _importance_section(doc, report, runs, objectives, plots)

    heatmaps, heat_run = copy_energy_heatmaps(runs, plots, uri)
    if heatmaps:
        doc.heading("Information paths of the best run")
        doc.paragraph(f"Mean normalized branch energy per class beside the codewords, run {labels[heat_run]}.")
        for path in heatmaps:
            doc.figure(path, f"Energy heatmap: {path.stem.removeprefix('best_')}")
        report.figures.extend(heatmaps)

    _ablation_section(doc, report, runs, options, plots)

    _table2_section(doc, report, runs)

    for i, text in enumerate(report.notes):
        doc.blocks.insert(notes_at + i, Block("note", text))

    report.markdown.write_text(to_markdown(doc, out_dir))
    report.html.write_text(to_html(doc))
    report.parent_runs = [options.parent_run_id] if options.parent_run_id else parents
    return report


def _table2_section(doc: Document, report: Report, runs: pd.DataFrame) -> None:
    """The paper's Table 2 beside these runs' test accuracy: mean over seeds, never a maximum."""
    table2 = compare_table2(runs)
    if table2.empty:
        return
    epochs = ", ".join(f"{row.dataset} {row.epochs}" for row in TABLE2.values())
    doc.heading("Against the paper's Table 2")
    doc.paragraph(
        "Top-1 accuracy on the test split: the paper's single runs beside these runs' test/accuracy (the paper "
        "recipes measure it at the end of a run with data.val_fraction 0; other runs get it from coded-resnext "
        "evaluate), per configuration the mean over its seeds with a 95% t-interval, never the best run; the "
        "gain is coded minus control paired by seed. The paper trains its recipes for "
        f"{epochs} epochs, so shorter runs will fall short of it."
    )
    doc.table(table2_display(table2))
    for dataset in table2.loc[(table2["coded_seeds"] + table2["control_seeds"]) == 0, "dataset"]:
        report.notes.append(
            f"Table 2: no {dataset} run has test/accuracy; measure the test split with coded-resnext evaluate"
        )


def _importance_section(doc: Document, report: Report, runs: pd.DataFrame, objectives, plots: Path) -> None:
    """Which parameters mattered for each objective (fANOVA), and every run across them."""
    params = varying_params(runs)
    study = study_from_runs(runs, params, objectives)
    if study is None:
        report.notes.append("too few runs with every objective, or nothing varied: no parameter importance")
        return
    doc.heading("Which parameters mattered")
    doc.paragraph(
        f"Share of each objective's variance over the {len(study.trials)} runs that each parameter explains "
        "(Optuna's fANOVA; each column sums to 1). With few runs these are rough."
    )
    table = param_importances(study, objectives)
    table.index = [PARAM_NAMES[k] for k in table.index]
    table.columns = [metric_column(c.removeprefix("metrics.")).split(" (")[0] for c in table.columns]
    doc.table(table.reset_index(names="parameter"))
    path = parallel_coordinates(study, objectives[0], params, plots / "parallel_coordinates.png")
    if path is not None:
        doc.figure(path, "Every run across the parameters that vary, coloured by the first objective")
        report.figures.append(path)


def _ablation_section(doc: Document, report: Report, runs: pd.DataFrame, options: ReportOptions, plots: Path) -> None:
    cell = tag_column(Tag.ABLATION_CELL)
    has_cells = cell in runs.columns and runs[cell].notna().any()
    if has_cells:
        summary = summarize_ablation(runs[runs[cell].notna()], list(options.ablation_metrics))
        summary = summary[summary["n"] > 0]
        summary.to_csv(report.out_dir / "ablation.csv", index=False)
        doc.heading("Ablation")
        doc.paragraph(
            "Mean over seeds with a 95% t-interval, and the difference to the control cell paired on the seed "
            "(percentage points for accuracies and fractions)."
        )
        if CONTROL_CELL not in set(runs[cell].dropna()):
            report.notes.append(f"the ablation has no {CONTROL_CELL!r} cell: no paired deltas")
        doc.table(ablation_display(summary))
    drawn = []
    for param, series in (("loss.mu", "loss.p_drop"), ("loss.p_drop", "loss.mu")):
        name = param.split(".")[-1]
        path = ablation_plot(runs, param, ["val/accuracy", "binary/f1_mean"], plots / f"ablation_{name}.png", series)
        if path is not None:
            drawn.append((path, f"Accuracy and binary F1 vs {name} (paper's Fig. {5 if name == 'mu' else 6})"))
    if drawn and not has_cells:
        doc.heading("Effect of mu and p_drop")
    for path, caption in drawn:
        doc.figure(path, caption)
        report.figures.append(path)
    if not drawn and numeric_param(runs, "loss.mu").nunique() < 2 and has_cells:
        report.notes.append("mu and p_drop take one value each: no ablation plots")
