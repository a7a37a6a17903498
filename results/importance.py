"""Which searched parameters mattered, per objective: Optuna's fANOVA importance over the finished runs,
and Optuna's parallel-coordinates plot of them.

The runs are read back into an in-memory Optuna study (one trial per run: its varying params with their
observed range or choices as distributions, the objectives as values), so the analysis works for any
experiment, whether its searcher was Optuna, a grid, or single runs.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.importance import FanovaImportanceEvaluator, get_param_importances

from coded_resnext.results.labels import short_value
from coded_resnext.results.pareto import Objective
from coded_resnext.results.runs import metric_values

MIN_RUNS = 4  # fewer runs than this say nothing about importance


def _numeric(column: pd.Series) -> pd.Series | None:
    values = pd.to_numeric(column.astype("string").str.lower().replace({"true": "1", "false": "0"}), errors="coerce")
    return values.astype("float64") if values.notna().all() else None


def study_from_runs(runs: pd.DataFrame, params: Sequence[str], objectives: Sequence[Objective]):
    """An in-memory Optuna study of the runs that have every objective; None when too few do."""
    values = pd.DataFrame({o.metric: metric_values(runs, o.metric.removeprefix("metrics.")) for o in objectives})
    keep = values.notna().all(axis=1)
    if keep.sum() < MIN_RUNS or not params:
        return None
    distributions, columns = {}, {}
    for key in params:
        raw = runs.loc[keep, f"params.{key}"]
        numeric = _numeric(raw)
        if numeric is not None and numeric.nunique() > 2:
            distributions[key] = FloatDistribution(float(numeric.min()), float(numeric.max()))
            columns[key] = numeric
        else:
            text = pd.Series([short_value(key, v) for v in raw], index=raw.index, dtype="string")  # plot labels
            distributions[key] = CategoricalDistribution(sorted(set(text)))
            columns[key] = text
    optuna.logging.set_verbosity(logging.WARNING)
    study = optuna.create_study(directions=["maximize" if o.direction == "max" else "minimize" for o in objectives])
    for index in values.index[keep]:
        trial = optuna.trial.create_trial(
            params={key: (float if isinstance(distributions[key], FloatDistribution) else str)(columns[key][index])
                    for key in params},
            distributions=distributions,
            values=[float(values.at[index, o.metric]) for o in objectives],
        )  # fmt: skip
        study.add_trial(trial)
    return study


def param_importances(study, objectives: Sequence[Objective], seed: int = 0) -> pd.DataFrame:
    """param x objective: the share of each objective's variance the param explains (fANOVA; columns sum to 1)."""
    table = {}
    params = list(study.trials[0].params)
    for i, objective in enumerate(objectives):
        with warnings.catch_warnings():  # Optuna marks its importance API experimental
            warnings.simplefilter("ignore")
            try:
                found = get_param_importances(
                    study, evaluator=FanovaImportanceEvaluator(seed=seed), target=lambda t, i=i: t.values[i]
                )
            except RuntimeError:  # the objective did not vary over these runs: nothing to explain
                found = {}
        table[objective.metric] = pd.Series(found, index=params, dtype="float64")
    return pd.DataFrame(table, index=params)
