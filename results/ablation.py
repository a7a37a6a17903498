"""Summaries of an ablation: per cell and metric, the mean over seeds with a 95% t-interval, and the
paired difference to the control cell on the same seeds.

Pairing on the seed removes the seed-to-seed variance that the cell and the control share (same data
split, same initialization stream), so a small effect can be significant even when the two cells'
intervals overlap. The paper reports single runs; the intervals are ours.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from coded_resnext.results.schema import CONTROL_CELL, Tag, tag_column

SUMMARY_COLUMNS = [
    "cell",
    "metric",
    "n",
    "mean",
    "std",
    "ci95_low",
    "ci95_high",
    "delta_mean",
    "delta_ci95_low",
    "delta_ci95_high",
    "n_pairs",
]


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, sample std, low, high) of a Student t interval; NaN where fewer than two values allow none."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean = float(values.mean())
    if n == 1:
        return mean, math.nan, math.nan, math.nan
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, df=n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def paired_difference(cell: pd.Series, control: pd.Series) -> tuple[float, float, float, int]:
    """(mean, low, high, pairs) of ``cell - control`` over the seeds both have: each a per-seed value
    indexed by seed. Pairing removes the seed-to-seed variance the two share (module docstring)."""
    diffs = (cell - control).dropna()  # aligned on the seed: only seeds both have
    mean, _, low, high = t_interval(diffs.to_numpy())
    return mean, low, high, len(diffs)


def metric_column(runs: pd.DataFrame, metric: str) -> str | None:
    """The frame's column for ``metric``, given as ``val/accuracy`` or ``metrics.val/accuracy``."""
    for name in (metric, f"metrics.{metric}"):
        if name in runs.columns:
            return name
    return None


def summarize_ablation(
    runs: pd.DataFrame,
    metrics: list[str],
    cell_column: str = tag_column(Tag.ABLATION_CELL),
    seed_column: str = "params.seed",
    control_cell: str = CONTROL_CELL,
) -> pd.DataFrame:
    """One row per (cell, metric): ``n``, ``mean``, ``std``, ``ci95_low``/``ci95_high`` (t-interval over
    the runs of the cell), and ``delta_mean``, ``delta_ci95_low``/``delta_ci95_high``, ``n_pairs``: the
    paired difference cell minus control over the seeds both have (runs repeating a seed in a cell are
    averaged first). The control's own delta is NaN with ``n_pairs`` 0, as is every delta when there is
    no control or no seed column. Missing metric values are left out, so ``n`` counts the runs that
    have the metric. Cells keep the order they first appear in, the control first.
    """
    if cell_column not in runs.columns:
        raise KeyError(f"no column {cell_column!r} in the runs frame; columns are {sorted(runs.columns)}")
    cells = [c for c in pd.unique(runs[cell_column].dropna())]
    if control_cell in cells:
        cells.remove(control_cell)
        cells.insert(0, control_cell)
    has_seed = seed_column in runs.columns
    rows = []
    for metric in metrics:
        column = metric_column(runs, metric)
        values = pd.to_numeric(runs[column], errors="coerce") if column else pd.Series(np.nan, index=runs.index)
        frame = pd.DataFrame({"cell": runs[cell_column], "value": values})
        if has_seed:
            frame["seed"] = runs[seed_column].astype(str)
        frame = frame.dropna(subset=["value"])
        per_seed = frame.groupby(["cell", "seed"])["value"].mean() if has_seed else pd.Series(dtype=float)
        paired_cells = set(per_seed.index.get_level_values("cell")) if has_seed else set()
        control = per_seed.xs(control_cell, level="cell") if control_cell in paired_cells else None
        for cell in cells:
            mean, std, low, high = t_interval(frame.loc[frame["cell"] == cell, "value"].to_numpy())
            delta = (math.nan, math.nan, math.nan, 0)
            if control is not None and cell != control_cell and cell in paired_cells:
                delta = paired_difference(per_seed.xs(cell, level="cell"), control)
            rows.append(
                {
                    "cell": cell,
                    "metric": metric,
                    "n": int((frame["cell"] == cell).sum()),
                    "mean": mean,
                    "std": std,
                    "ci95_low": low,
                    "ci95_high": high,
                    "delta_mean": delta[0],
                    "delta_ci95_low": delta[1],
                    "delta_ci95_high": delta[2],
                    "n_pairs": delta[3],
                }
            )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).astype({"n": "int64", "n_pairs": "int64"})
