"""results/: run tables from MLflow, Parquet, Pareto fronts, ablation summaries, plots and the report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from results.ablation import summarize_ablation


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
