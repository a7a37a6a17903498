"""The Pareto front of runs over several objectives, each maximized or minimized.

Run a dominates run b when a is at least as good on every objective and strictly better on one. Runs
with equal objective vectors do not dominate each other, so ties are on the front together. A missing
value counts as worse than any present one (``missing="worst"``: a control run without an early-exit
figure can still be on the front for its accuracy) or takes the run out of the comparison
(``missing="exclude"``: neither on the front nor dominating). Every run stays in the returned frame:
``pareto_rank`` 1 is the front, 2 the front once rank 1 is removed, and so on (non-dominated sorting);
``dominated_by`` counts the runs that dominate it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from coded_resnext.results import schema
from coded_resnext.results.ablation import metric_column
from coded_resnext.results.schema import Metric


@dataclass(frozen=True)
class Objective:
    metric: str  # a metric key (``val/accuracy``) or a frame column (``metrics.val/accuracy``)
    direction: Literal["max", "min"]
    missing: Literal["worst", "exclude"] = "worst"
    label: str = ""  # axis and table label; the metric key when empty

    def __post_init__(self) -> None:
        if self.direction not in ("max", "min"):
            raise ValueError(f"objective {self.metric}: direction {self.direction!r} is not 'max' or 'min'")
        if self.missing not in ("worst", "exclude"):
            raise ValueError(f"objective {self.metric}: missing={self.missing!r} is not 'worst' or 'exclude'")

    @property
    def name(self) -> str:
        return self.label or self.metric


_LABELS = {
    Metric.VAL_ACCURACY: "validation accuracy",
    Metric.BINARY_PARAM_FRACTION: "binary-classifier parameter fraction",
    Metric.EARLY_EXIT_COMPUTE_99: "compute at 99% of full accuracy",
}
# The search's default objectives (schema.DEFAULT_OBJECTIVES) as a front's objectives, with their labels.
DEFAULT_OBJECTIVES = tuple(Objective(m, d, label=_LABELS[m]) for m, d in schema.DEFAULT_OBJECTIVES.items())  # type: ignore[arg-type]


def parse_objective(text: str) -> Objective:
    """``val/accuracy:max`` or ``binary/param_fraction:min`` (the command line's form)."""
    metric, _, direction = text.rpartition(":")
    if not metric or direction not in ("max", "min"):
        raise ValueError(f"objective {text!r}: expected METRIC:max or METRIC:min, e.g. val/accuracy:max")
    return Objective(metric, direction)  # type: ignore[arg-type]


def _costs(runs: pd.DataFrame, objectives: Sequence[Objective]) -> tuple[np.ndarray, np.ndarray]:
    """(costs to minimize with missing values as +inf, rows taking part)."""
    costs = np.empty((len(runs), len(objectives)))
    included = np.ones(len(runs), dtype=bool)
    for j, obj in enumerate(objectives):
        column = metric_column(runs, obj.metric)
        values = (
            pd.to_numeric(runs[column], errors="coerce").to_numpy(dtype=float) if column else np.full(len(runs), np.nan)
        )
        missing = ~np.isfinite(values)
        costs[:, j] = np.where(missing, np.inf, -values if obj.direction == "max" else values)
        if obj.missing == "exclude":
            included &= ~missing
    return costs, included


def dominance_counts(costs: np.ndarray, chunk: int = 512) -> np.ndarray:
    """For each row, how many rows dominate it (all costs <=, one <), in chunks to bound memory."""
    counts = np.zeros(len(costs), dtype=np.int64)
    for start in range(0, len(costs), chunk):
        block = costs[start : start + chunk]  # (b, m) candidates dominated by the rows of ``costs``
        no_worse = (costs[None, :, :] <= block[:, None, :]).all(-1)  # (b, n)
        better = (costs[None, :, :] < block[:, None, :]).any(-1)
        counts[start : start + chunk] = (no_worse & better).sum(1)
    return counts


def pareto_front(runs: pd.DataFrame, objectives: Sequence[Objective] = DEFAULT_OBJECTIVES) -> pd.DataFrame:
    """``runs`` with ``pareto_front`` (bool), ``pareto_rank`` (1 = front; NA when excluded) and
    ``dominated_by`` (NA when excluded) added; rows and their order unchanged."""
    if not objectives:
        raise ValueError("pareto_front needs at least one objective")
    costs, included = _costs(runs, objectives)
    out = runs.copy()
    ranks = np.zeros(len(runs), dtype=np.int64)
    dominated = np.zeros(len(runs), dtype=np.int64)
    idx = np.flatnonzero(included)
    if len(idx):
        dominated[idx] = dominance_counts(costs[idx])
        remaining = idx
        rank = 1
        while len(remaining):
            counts = dominance_counts(costs[remaining])
            front = remaining[counts == 0]
            if not len(front):  # a strict order always has an undominated run; without one this loops forever
                raise RuntimeError(
                    f"Pareto ranking: every one of {len(remaining)} runs is dominated, so dominance "
                    "is not a strict order (are equal runs counted as dominating each other?)"
                )
            ranks[front] = rank
            remaining = remaining[counts > 0]
            rank += 1
    out["pareto_rank"] = pd.array(np.where(included, ranks, 0), dtype="Int64")
    out.loc[~included, "pareto_rank"] = pd.NA
    out["dominated_by"] = pd.array(dominated, dtype="Int64")
    out.loc[~included, "dominated_by"] = pd.NA
    out["pareto_front"] = (out["pareto_rank"] == 1).fillna(False).astype(bool)
    return out
