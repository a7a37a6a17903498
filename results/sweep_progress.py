"""A sweep's own records beside its trials': the reference-control run drawn as a baseline, runs kept off
the front and the front of the rest (``ranked_runs``: the report's, the sweep's closing list's and its
parent run's description's), and the parent run's hypervolume against epochs used (``sweep/hypervolume``,
``sweep/epochs_used``, logged after every trial that ends; see ``orchestration/tune_callbacks.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from coded_resnext.results.pareto import Objective, pareto_front
from coded_resnext.results.runs import client_for
from coded_resnext.results.schema import Tag, tag_column

REFERENCE_TAG = tag_column(Tag.REFERENCE_CONTROL)  # the sweep's plain-control trial (tune.reference_control)
INFEASIBLE_TAG = tag_column(Tag.INFEASIBLE)  # ended before training: a constraint on its architecture failed
EARLY_STOPPED_TAG = tag_column(Tag.EARLY_STOPPED)  # stopped by a scheduler: its objectives are a partly trained model's


def _tagged(runs: pd.DataFrame, column: str) -> pd.Series:
    if column not in runs.columns:
        return pd.Series(False, index=runs.index)
    return runs[column].astype(str).str.lower().eq("true")


def off_the_front(runs: pd.DataFrame) -> pd.Series:
    """Runs that take no part in the Pareto front: the reference control, infeasible and early-stopped trials."""
    return _tagged(runs, REFERENCE_TAG) | _tagged(runs, INFEASIBLE_TAG) | _tagged(runs, EARLY_STOPPED_TAG)


def ranked_runs(runs: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """``pareto_front`` over the runs that can be on a front; the reference control, infeasible and
    early-stopped trials stay in the table with no rank."""
    off = off_the_front(runs)
    ranked = pareto_front(runs[~off], objectives)
    if not off.any():
        return ranked
    rest = runs[off].assign(pareto_front=False, pareto_rank=pd.NA, dominated_by=pd.NA)
    rest = rest.astype({"pareto_rank": "Int64", "dominated_by": "Int64"})
    return pd.concat([ranked, rest]).loc[runs.index]


def unfinished_models(runs: pd.DataFrame) -> pd.Series:
    """Runs whose model did not train its full budget: infeasible and early-stopped trials."""
    return _tagged(runs, INFEASIBLE_TAG) | _tagged(runs, EARLY_STOPPED_TAG)


def reference_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[_tagged(runs, REFERENCE_TAG)]


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
