"""Tracked runs -> tables (pandas, Parquet), Pareto fronts, ablation summaries, plots and a report.

The public names load lazily, so ``import results.ablation`` does not pull in matplotlib or MLflow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "summarize_ablation": "results.ablation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'results' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
