"""A sweep's own records beside its trials': the reference-control run drawn as a baseline, runs kept off
the front, and the parent run's hypervolume against epochs used (``sweep/hypervolume``,
``sweep/epochs_used``, logged after every trial that ends; see ``orchestration/tune_callbacks.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from coded_resnext.results.plots import _save, display, plt
from coded_resnext.results.runs import client_for, metric_values

REFERENCE_TAG = "tags.reference_control"  # the sweep's plain-control trial (tune.reference_control)
INFEASIBLE_TAG = "tags.infeasible"  # ended before training: a constraint on its architecture failed
EARLY_STOPPED_TAG = "tags.early_stopped"  # stopped by a scheduler: its objectives are a partly trained model's


def _tagged(runs: pd.DataFrame, column: str) -> pd.Series:
    if column not in runs.columns:
        return pd.Series(False, index=runs.index)
    return runs[column].astype(str).str.lower().eq("true")


def off_the_front(runs: pd.DataFrame) -> pd.Series:
    """Runs that take no part in the Pareto front: the reference control, infeasible and early-stopped trials."""
    return _tagged(runs, REFERENCE_TAG) | _tagged(runs, INFEASIBLE_TAG) | _tagged(runs, EARLY_STOPPED_TAG)


def unfinished_models(runs: pd.DataFrame) -> pd.Series:
    """Runs whose model did not train its full budget: infeasible and early-stopped trials."""
    return _tagged(runs, INFEASIBLE_TAG) | _tagged(runs, EARLY_STOPPED_TAG)


def reference_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[_tagged(runs, REFERENCE_TAG)]


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


def hypervolume_histories(parent_run_ids: list[str], tracking_uri: str | None) -> dict[str, pd.DataFrame]:
    """Per parent run: ``epochs_used`` and ``hypervolume`` by step (empty when the sweep logged none)."""
    client = client_for(tracking_uri)
    out = {}
    for parent in parent_run_ids:
        hv = {m.step: m.value for m in client.get_metric_history(parent, "sweep/hypervolume")}
        used = {m.step: m.value for m in client.get_metric_history(parent, "sweep/epochs_used")}
        steps = sorted(set(hv) & set(used))
        if steps:
            out[parent] = pd.DataFrame({"epochs_used": [used[s] for s in steps], "hypervolume": [hv[s] for s in steps]})
    return out


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
    return _save(fig, path)
