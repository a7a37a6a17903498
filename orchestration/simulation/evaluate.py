"""Many simulated sweeps (arms x worker counts x seeds) and what they say, with 95% intervals over seeds.

Intervals are Student t intervals over seeds (``results.ablation.t_interval``, the code the ablations use); a
difference between two arms is paired on the seed (same searcher seed, same worker count), which removes what
the two share (random search with the same seed proposes the same configurations in the same order).
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd

from coded_resnext.orchestration.search_space import default_reference_point
from coded_resnext.orchestration.simulation.curves import Curves
from coded_resnext.orchestration.simulation.engine import Arm, Budget, Outcome, Simulation
from coded_resnext.results.ablation import t_interval


@dataclass(frozen=True)
class Task:
    arm: Arm
    workers: int
    seed: int
    budget: Budget
    nominal_trials: int
    label: str = ""  # the arm's name in tables (default: arm.label)

    @property
    def name(self) -> str:
        return self.label or self.arm.label


@dataclass
class Scenario:
    """What every simulated sweep of a study shares: the curves and the search space (objectives, reference point,
    the trials' epochs, Tune's search space over recorded values)."""

    curves: Curves
    space: Any  # SearchSpace

    @property
    def objectives(self) -> dict[str, str]:
        return dict(self.space.tune.objectives)

    @property
    def reference_point(self) -> list[float]:

        return list(self.space.tune.reference_point or default_reference_point(self.objectives))

    @property
    def epochs(self) -> int:
        return self.space.base_config().train.epochs

    def param_space(self) -> dict[str, Any]:
        return {key: domain.to_tune(False) for key, domain in self.space.domains.items()}

    def simulation(self, task: Task, **kw) -> Simulation:
        return Simulation(
            self.curves,
            task.arm,
            self.objectives,
            self.reference_point,
            workers=task.workers,
            seed=task.seed,
            budget=task.budget,
            param_space=self.param_space(),
            epochs=self.epochs,
            nominal_trials=task.nominal_trials,
            moasha_reference=self.space.tune.reference_point,
            **kw,
        )


_SCENARIO: Scenario | None = None


def _init(scenario: Scenario) -> None:
    global _SCENARIO
    _SCENARIO = scenario

    logging.getLogger("ray.tune").setLevel(logging.ERROR)  # Optuna/Tune chatter about each of thousands of trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _run(task: Task) -> tuple[Task, Outcome]:
    assert _SCENARIO is not None
    outcome = _SCENARIO.simulation(task).run()
    outcome.decisions = []  # the decisions of thousands of sweeps are not kept
    return task, outcome


def simulate_many(
    scenario: Scenario,
    tasks: Sequence[Task],
    processes: int = 1,
    progress: Callable[[Task, Outcome], None] | None = None,
) -> list[tuple[Task, Outcome]]:
    """Every task's simulated sweep; ``processes`` > 1 spreads them over processes (spawned: each imports Ray's
    Tune and Optuna once)."""
    out = []
    if processes <= 1:
        _init(scenario)
        for task in tasks:
            out.append(_run(task))
            if progress:
                progress(*out[-1])
        return out

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        processes, mp_context=context, initializer=_init, initargs=(scenario,)
    ) as pool:
        futures = [pool.submit(_run, task) for task in tasks]
        for future in concurrent.futures.as_completed(futures):
            out.append(future.result())
            if progress:
                progress(*out[-1])
    order = {id(task): i for i, task in enumerate(tasks)}
    return sorted(out, key=lambda pair: order.get(id(pair[0]), 0))


def default_processes() -> int:
    return max(1, min(2, os.cpu_count() or 1))


# ---- figures ---------------------------------------------------------------------------------------------
def interval(values: Iterable[float]) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of a 95% t interval over the finite values."""

    array = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    mean, _std, low, high = t_interval(array)
    return mean, low, high, len(array)


def per_seed(
    results: Sequence[tuple[Task, Outcome]], reference: str, full_epochs: Mapping[int, float], goal_hv: float = 0.95
) -> pd.DataFrame:
    """One row per simulated sweep: its figures, and those relative to the ``reference`` arm's sweep with the
    same seed and worker count (the full-budget search): hypervolume at fractions of the full budget's epochs,
    the epochs it needed to reach ``goal_hv`` of the reference's final hypervolume, the paired differences.

    ``full_epochs``: workers -> the full-budget search's epochs (the budget every arm is measured against)."""
    refs = {(t.workers, t.seed): o for t, o in results if t.name == reference}
    rows = []
    for task, outcome in results:
        ref = refs.get((task.workers, task.seed))
        budget = full_epochs.get(task.workers, outcome.epochs)
        row: dict[str, Any] = {
            "arm": task.name,
            "workers": task.workers,
            "seed": task.seed,
            "hypervolume": outcome.hypervolume,
            "epochs": outcome.epochs,
            "seconds": outcome.seconds,
            "trials": len(outcome.trials),
            "distinct_configs": len({t["config_id"] for t in outcome.trials}),
            "stopped": sum(bool(t["stopped"]) for t in outcome.trials),
            "full_budget_trials": sum(t["end"] is not None and not t["stopped"] for t in outcome.trials),
            "sim_seconds": outcome.wall_seconds,
        }
        for fraction in (0.25, 0.4, 0.5, 1.0):
            row[f"hv_at_{fraction:g}"] = outcome.hypervolume_at(epochs=fraction * budget)
        if ref is not None and ref.hypervolume > 0:
            target = ref.hypervolume
            row["hv_of_reference"] = outcome.hypervolume / target
            row["epochs_of_reference"] = outcome.epochs / ref.epochs
            row["seconds_of_reference"] = outcome.seconds / ref.seconds if ref.seconds else math.nan
            row["hv_at_0.4_of_reference"] = row["hv_at_0.4"] / target
            reached = outcome.first_reaching(goal_hv * target)
            row["epochs_to_goal"] = reached / budget if reached is not None else math.inf
            seconds = outcome.first_reaching(goal_hv * target, column="seconds")
            row["seconds_to_goal"] = seconds / ref.seconds if seconds is not None else math.inf
            row["delta_hv_at_0.5"] = row["hv_at_0.5"] - ref.hypervolume_at(epochs=0.5 * budget)
            row["delta_hv_at_half_time"] = outcome.hypervolume_at(seconds=0.5 * ref.seconds) - ref.hypervolume_at(
                seconds=0.5 * ref.seconds
            )
        rows.append(row)
    return pd.DataFrame(rows)


SUMMARY = {  # column -> what the table calls it
    "hypervolume": "final hypervolume",
    "hv_of_reference": "of the full-budget search's",
    "epochs_of_reference": "epochs used, of the full-budget search's",
    "seconds_of_reference": "simulated wall-clock, of the full-budget search's",
    "hv_at_0.4_of_reference": "at 40% of its epochs, of its final",
    "epochs_to_goal": "epochs to 95% of its final (of its epochs)",
    "delta_hv_at_0.5": "hypervolume at half its epochs, minus its",
    "delta_hv_at_half_time": "at half its wall-clock, minus its",
    "epochs": "epochs used",
    "seconds": "simulated seconds",
    "distinct_configs": "configurations trained",
}


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Per arm and worker count: mean and 95% interval over seeds of each figure (``epochs_to_goal``: seeds that
    never reached it are counted in ``never`` and left out of the mean)."""
    rows = []
    for (arm, workers), group in frame.groupby(["arm", "workers"], sort=False):
        row: dict[str, Any] = {"arm": arm, "workers": workers, "seeds": len(group)}
        for column in SUMMARY:
            if column not in group:
                continue
            values = group[column].to_numpy(dtype=float)
            mean, low, high, _n = interval(values)
            row[column] = mean
            row[f"{column}_low"] = low
            row[f"{column}_high"] = high
            if column == "epochs_to_goal":
                row["never"] = int(np.isinf(values).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def curve_band(
    results: Sequence[tuple[Task, Outcome]], grid: np.ndarray, column: str = "epochs", scale: Mapping | None = None
) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per (arm, workers): the mean hypervolume and its 95% interval over seeds at each point of ``grid`` (epochs,
    or seconds with ``column="seconds"``; ``scale``: (workers, seed) -> divisor of the grid's unit, e.g. the
    full-budget search's epochs, so grid values are fractions)."""
    groups: dict[tuple[str, int], list[np.ndarray]] = {}
    for task, outcome in results:
        factor = scale[(task.workers, task.seed)] if scale else 1.0
        values = np.array(
            [outcome.hypervolume_at(**{"epochs" if column == "epochs" else "seconds": x * factor}) for x in grid]
        )
        groups.setdefault((task.name, task.workers), []).append(values)
    out = {}
    for key, curves in groups.items():
        stack = np.stack(curves)
        means, lows, highs = [], [], []
        for column_values in stack.T:
            mean, low, high, _n = interval(column_values)
            means.append(mean)
            lows.append(low)
            highs.append(high)
        out[key] = (np.array(means), np.array(lows), np.array(highs))
    return out
