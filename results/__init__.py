"""Tracked runs -> tables (pandas, Parquet), Pareto fronts, ablation summaries, plots and a report.

The public names load lazily, so ``import results.ablation`` does not pull in matplotlib or MLflow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_runs": "results.runs",
    "ResultsError": "results.errors",
    "load_binary_classifiers": "results.artifacts",
    "load_early_exit": "results.artifacts",
    "load_histories": "results.artifacts",
    "write_parquet": "results.parquet",
    "read_parquet": "results.parquet",
    "pareto_front": "results.pareto",
    "Objective": "results.pareto",
    "summarize_ablation": "results.ablation",
    "build_report": "results.report",
    "ReportOptions": "results.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'results' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
