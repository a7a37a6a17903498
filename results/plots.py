"""Figures across runs (PNG): the trade-off scatter with its Pareto front, early-exit curves, per-class
binary precision/recall (the paper's Fig. 2b), ablations against mu and p_drop (Figs. 5/6) and
per-epoch curves. Each function takes the frames of ``results.runs``/``results.artifacts``, writes one
file and returns its path, or None when the data for it is not there (the report says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import re
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.font_manager import FontProperties
from optuna.visualization.matplotlib import plot_parallel_coordinate

from coded_resnext.results.ablation import t_interval
from coded_resnext.results.labels import short_number
from coded_resnext.results.pareto import Objective
from coded_resnext.results.runs import metric_values, numeric_param

DPI = 110
MAX_LINES = 8  # more curves than this on one axis are unreadable


@dataclass(frozen=True)
class Display:
    label: str
    scale: float = 1.0
    unit: str = ""

    def axis(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


DISPLAY = {
    "val/accuracy": Display("validation accuracy", 100, "%"),
    "binary/param_fraction": Display("binary-classifier parameters", 100, "% of the full network"),
    "binary/param_fraction_paper": Display("binary-classifier parameters, paper's count", 100, "% of the full network"),
    "binary/f1_mean": Display("binary-classifier F1, mean over classes", 100, "%"),
    "binary/refit_f1_mean": Display("binary F1 with the output row refit, mean", 100, "%"),
    "binary/full_f1_mean": Display("full network's one-vs-rest F1 (softmax), mean", 100, "%"),
    "binary/full_logit_f1_mean": Display("full network's one-vs-rest F1 by its logit, mean", 100, "%"),
    "binary/precision_mean": Display("binary precision, mean", 100, "%"),
    "binary/recall_mean": Display("binary recall, mean", 100, "%"),
    "binary/ood_precision_mean": Display("binary precision with OOD negatives, mean", 100, "%"),
    "early_exit/compute_at_99pct_accuracy": Display("compute keeping 99% of full accuracy", 100, "% of full FLOPs"),
    "early_exit/accuracy_at_half_compute": Display("accuracy at half the compute", 100, "%"),
    "loss.mu": Display("coding loss weight mu"),
    "loss.p_drop": Display("DropSubNNs probability p_drop"),
}


def display(key: str) -> Display:
    """How a metric is shown. A test-split figure (``test/...``, measured once by ``evaluate`` or at the end
    of a single run) is shown like its validation name and labelled as the test split's."""
    key = key.removeprefix("metrics.")
    if key.startswith("test/"):
        rest = key.removeprefix("test/")  # test/accuracy <- val/accuracy, test/binary/x <- binary/x
        base = next((b for b in (f"val/{rest}", rest) if b in DISPLAY), None)
        if base is not None:
            shown = DISPLAY[base]
            return Display("test split: " + shown.label.removeprefix("validation "), shown.scale, shown.unit)
    return DISPLAY.get(key, Display(key))


def _figure(width: float, height: float, panels: int = 1, **kwargs):
    """A figure laid out by matplotlib's constrained layout, which keeps legends placed ``outside`` the
    axes inside the figure (tight_layout lets them run off its edge and squeezes the axes)."""
    return plt.subplots(1, panels, figsize=(width, height), layout="constrained", squeeze=False, **kwargs)


LEGEND_FONT = 7  # points
# the room a legend entry takes besides its text, in font sizes: its marker (handlelength 2), the gap to the
# text (handletextpad 0.8), the gap to the next column (columnspacing 2) and the frame's padding
LEGEND_ENTRY_EXTRA = 5.5


def _wrap_to_width(text: str, width: float, measure) -> str:
    """``text`` in lines no wider than ``width`` (``measure(s)``: the drawn width of s), broken after a
    comma or a space (a run label's parameters stay whole); a single word wider than the line stays whole."""
    pieces = re.split(r"(?<=,) | (?=\()", text)  # after a comma, or before a parenthesis
    lines = [""]
    for piece in pieces:
        joined = f"{lines[-1]} {piece}" if lines[-1] else piece
        if lines[-1] and measure(joined) > width:
            lines.append(piece)
        else:
            lines[-1] = joined
    return "\n".join(lines)


def _legend_below(fig, ax, count: int) -> None:
    """One legend under the axes, inside the figure: a line per run, as many columns as fit (one per run up
    to 3, else one), each label wrapped to its column's width so that no legend runs past the figure's
    edges (matplotlib's legend does not wrap: a row of long run labels was cut off at both ends)."""
    handles, labels = ax.get_legend_handles_labels()
    ncols = 1 if count > 3 else count
    renderer = fig.canvas.get_renderer()
    font = FontProperties(size=LEGEND_FONT)
    scale = fig.dpi / 72  # points to the renderer's pixels
    column = fig.bbox.width / ncols - LEGEND_ENTRY_EXTRA * LEGEND_FONT * scale
    measure = lambda s: renderer.get_text_width_height_descent(s, font, ismath=False)[0]  # noqa: E731
    wrapped = [_wrap_to_width(label, column, measure) for label in labels]
    fig.legend(handles, wrapped, loc="outside lower center", fontsize=LEGEND_FONT, ncols=ncols)


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` (its folder made), close it, and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def front_scatter(
    runs: pd.DataFrame, objectives: Sequence[Objective], path: Path, baseline: pd.DataFrame | None = None
) -> Path | None:
    """y: the first objective, x: the second, colour: the third; front runs ringed and joined; ``baseline``
    runs (a sweep's reference control) drawn as a dashed line at their accuracy."""
    if len(objectives) < 2 or "pareto_front" not in runs.columns:
        return None
    ydisp, xdisp = display(objectives[0].metric), display(objectives[1].metric)
    y = metric_values(runs, objectives[0].metric.removeprefix("metrics.")) * ydisp.scale
    x = metric_values(runs, objectives[1].metric.removeprefix("metrics.")) * xdisp.scale
    shown = x.notna() & y.notna()
    if not shown.any():
        return None
    fig, ax = plt.subplots(figsize=(7, 5))
    front = runs["pareto_front"].to_numpy(bool) & shown.to_numpy()
    colour = None
    if len(objectives) > 2:
        cdisp = display(objectives[2].metric)
        colour = metric_values(runs, objectives[2].metric.removeprefix("metrics.")) * cdisp.scale
    if colour is not None and colour[shown].notna().any():
        points = ax.scatter(x[shown], y[shown], c=colour[shown], cmap="viridis_r", s=28, alpha=0.85, zorder=2)
        fig.colorbar(points, ax=ax, label=cdisp.axis())
    else:
        ax.scatter(x[shown], y[shown], c="tab:blue", s=28, alpha=0.85, zorder=2)
    order = np.argsort(x[front].to_numpy())
    ax.plot(x[front].to_numpy()[order], y[front].to_numpy()[order], color="tab:red", lw=1, alpha=0.6, zorder=1)
    ax.scatter(
        x[front],
        y[front],
        s=90,
        facecolors="none",
        edgecolors="tab:red",
        lw=1.5,
        zorder=3,
        label=f"Pareto front ({int(front.sum())} runs)",
    )
    if baseline is not None and not baseline.empty:
        draw_baseline(
            ax, baseline, objectives[0].metric.removeprefix("metrics."), objectives[1].metric.removeprefix("metrics.")
        )
    hidden = int((~shown).sum())
    note = f"; {hidden} runs without both values not shown" if hidden else ""
    ax.set_title(f"{len(runs)} runs: accuracy vs binary-classifier size{note}", fontsize=10)
    ax.set_xlabel(xdisp.axis())
    ax.set_ylabel(ydisp.axis())
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def early_exit_curves(curves: pd.DataFrame, labels: pd.Series, path: Path) -> Path | None:
    """Accuracy vs mean compute of the runs in ``labels`` (run id -> legend text)."""
    if curves.empty or "compute_fraction" not in curves.columns:
        return None
    fig, axes = _figure(7.5, 4.5 + 0.16 * min(len(labels), MAX_LINES))
    ax = axes[0][0]
    drawn = 0
    for run_id, label in labels.items():
        mine = curves[curves["run_id"] == run_id].sort_values("compute_fraction")
        if mine.empty or drawn >= MAX_LINES:
            continue
        ax.plot(mine["compute_fraction"] * 100, mine["accuracy"] * 100, marker=".", label=label)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("mean compute (% of the full network's FLOPs)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("early exit at the first confident coded block: Pareto-front runs", fontsize=10)
    _legend_below(fig, ax, drawn)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def binary_precision_recall(binary: pd.DataFrame, labels: pd.Series, path: Path) -> Path | None:
    """Per-class precision vs recall of the extracted binary classifiers (Fig. 2b): in-distribution
    negatives, and out-of-distribution negatives when the runs measured them."""
    if binary.empty or not {"precision", "recall"} <= set(binary.columns):
        return None
    has_ood = "ood_precision" in binary.columns and binary["ood_precision"].notna().any()
    panels = [("precision", "in-distribution negatives")]
    if has_ood:
        panels.append(("ood_precision", "out-of-distribution negatives"))
    fig, axes = _figure(5.2 * len(panels), 5 + 0.16 * min(len(labels), MAX_LINES), len(panels))
    drawn = 0
    for run_id, label in list(labels.items())[:MAX_LINES]:
        mine = binary[binary["run_id"] == run_id]
        if mine.empty:
            continue
        drawn += 1
        for ax, (column, _) in zip(axes[0], panels, strict=True):
            ax.scatter(mine["recall"] * 100, mine[column] * 100, s=22, alpha=0.8, label=label)
    if not drawn:
        plt.close(fig)
        return None
    for ax, (_, title) in zip(axes[0], panels, strict=True):
        ax.set_xlim(-2, 102)
        ax.set_ylim(-2, 102)
        ax.set_xlabel("recall (%)")
        ax.set_ylabel("precision (%)")
        ax.set_title(f"binary classifiers, one point per class:\n{title}", fontsize=10)
        ax.grid(alpha=0.3)
    _legend_below(fig, axes[0][0], drawn)
    return save_figure(fig, path)


def _interval_rows(runs: pd.DataFrame, x: pd.Series, metric: str) -> pd.DataFrame:
    values = metric_values(runs, metric)
    rows = []
    for value in sorted(x.dropna().unique()):
        mean, _, low, high = t_interval(values[(x == value) & values.notna()].to_numpy())
        rows.append({"x": value, "mean": mean, "low": low, "high": high})
    return pd.DataFrame(rows, columns=["x", "mean", "low", "high"])


def ablation_plot(
    runs: pd.DataFrame, param: str, metrics: Sequence[str], path: Path, series_param: str | None = None
) -> Path | None:
    """``metrics`` against the numeric parameter ``param``: mean over runs (seeds) with a 95% t-interval;
    one line per value of ``series_param``; the plain control (``model.control``) as a band."""
    control = numeric_param(runs, "model.control") == 1
    coded = runs[~control]
    x = numeric_param(coded, param)
    if x.nunique() < 2:
        return None
    series = numeric_param(coded, series_param) if series_param else pd.Series(np.nan, index=coded.index)
    groups = sorted(series.dropna().unique())[:6] if series.notna().any() else [None]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4.2), squeeze=False)
    xdisp = display(param)
    for ax, metric in zip(axes[0], metrics, strict=True):
        mdisp = display(metric)
        for group in groups:
            mask = series == group if group is not None else pd.Series(True, index=coded.index)
            table = _interval_rows(coded[mask], x[mask], metric).dropna(subset=["mean"])
            if table.empty:
                continue
            err = np.vstack([table["mean"] - table["low"], table["high"] - table["mean"]]) * mdisp.scale
            label = f"{series_param.split('.')[-1]} = {short_number(group)}" if group is not None else "coded"
            ax.errorbar(
                table["x"], table["mean"] * mdisp.scale, yerr=np.nan_to_num(err), marker="o", capsize=3, label=label
            )
        base = metric_values(runs[control], metric).dropna()
        if len(base):
            mean, _, low, high = t_interval(base.to_numpy())
            ax.axhline(mean * mdisp.scale, color="grey", ls="--", lw=1, label=f"control (plain ResNeXt, n={len(base)})")
            if np.isfinite(low):
                ax.axhspan(low * mdisp.scale, high * mdisp.scale, color="grey", alpha=0.15)
        ax.set_xlabel(xdisp.axis())
        ax.set_ylabel(mdisp.axis())
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7)
    fig.suptitle(f"effect of {xdisp.label}: mean over the runs at each value (seeds), 95% t-intervals", fontsize=10)
    return save_figure(fig, path)


def epoch_curves(histories: pd.DataFrame, labels: pd.Series, path: Path) -> Path | None:
    """Validation accuracy and training loss per epoch of the runs in ``labels``."""
    panels = [("val/accuracy", "validation accuracy (%)", 100), ("train/loss", "training loss (CE + mu * coding)", 1)]
    if histories.empty:
        return None
    fig, grid = _figure(11, 4.2 + 0.16 * min(len(labels), MAX_LINES), 2)
    axes = grid[0]
    drawn = 0
    for run_id, label in list(labels.items())[:MAX_LINES]:
        mine = histories[histories["run_id"] == run_id]
        if mine.empty:
            continue
        drawn += 1
        for ax, (key, _, scale) in zip(axes, panels, strict=True):
            h = mine[mine["key"] == key].sort_values("step")
            ax.plot(h["step"] + 1, h["value"] * scale, marker=".", label=label)
    if not drawn:
        plt.close(fig)
        return None
    for ax, (_, ylabel, _) in zip(axes, panels, strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    _legend_below(fig, axes[0], drawn)
    fig.suptitle("per-epoch curves of the Pareto-front runs", fontsize=10)
    return save_figure(fig, path)


def parallel_coordinates(study, objective: Objective, params: Sequence[str], path: Path) -> Path | None:
    """Optuna's parallel-coordinates plot of the runs (``importance.study_from_runs``): one line per run
    across the searched params, coloured by ``objective`` (the study's first value)."""

    if study is None or len(params) < 1:
        return None
    with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
        warnings.simplefilter("ignore")
        ax = plot_parallel_coordinate(
            study, params=list(params), target=lambda t: t.values[0], target_name=display(objective.metric).label
        )
    fig = ax.figure
    fig.set_size_inches(max(7.0, 1.6 * (len(params) + 1)), 4.6)
    ax.set_title(
        f"{len(study.trials)} runs across the searched parameters, coloured by {display(objective.metric).label}",
        fontsize=10,
    )
    return save_figure(fig, path)


def draw_baseline(ax, baseline: pd.DataFrame, y_metric: str, x_metric: str) -> None:
    """The reference control on a front scatter: its accuracy as a dashed line, its point as a star."""
    ydisp, xdisp = display(y_metric), display(x_metric)
    for _, row in baseline.iterrows():
        y = metric_values(row.to_frame().T, y_metric).iloc[0] * ydisp.scale
        x = metric_values(row.to_frame().T, x_metric).iloc[0] * xdisp.scale
        if pd.isna(y):
            continue
        ax.axhline(y, color="black", ls="--", lw=1, alpha=0.7, label=f"plain control, same budget ({y:.1f})")
        if pd.notna(x):
            ax.scatter([x], [y], marker="*", s=160, color="black", zorder=4)


def hypervolume_plot(histories: dict[str, pd.DataFrame], path: Path) -> Path | None:
    """The sweep's progress: hypervolume of the finished trials' front against epochs trained by all trials."""
    if not histories:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for parent, frame in histories.items():
        ax.step(frame["epochs_used"], frame["hypervolume"], where="post", marker="o", ms=3, label=f"sweep {parent[:8]}")
    ax.set_xlabel("epochs used (all trials so far)")
    ax.set_ylabel("hypervolume of the front")
    top = max(float(np.nanmax(f["hypervolume"])) for f in histories.values())
    ax.set_ylim(0, top * 1.1 if top > 0 else 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
