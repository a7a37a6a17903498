"""Tracked runs -> tables (pandas, Parquet), Pareto fronts, ablation summaries, plots and a report.

The public names load lazily, so ``import results.ablation`` does not pull in matplotlib or MLflow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_runs": "coded_resnext.results.runs",
    "ResultsError": "coded_resnext.results.errors",
    "load_binary_classifiers": "coded_resnext.results.artifacts",
    "load_early_exit": "coded_resnext.results.artifacts",
    "load_histories": "coded_resnext.results.artifacts",
    "write_parquet": "coded_resnext.results.parquet",
    "read_parquet": "coded_resnext.results.parquet",
    "pareto_front": "coded_resnext.results.pareto",
    "Objective": "coded_resnext.results.pareto",
    "summarize_ablation": "coded_resnext.results.ablation",
    "build_report": "coded_resnext.results.report",
    "ReportOptions": "coded_resnext.results.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'results' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
