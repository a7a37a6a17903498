"""Constraints known before training: bounds on what the architecture alone fixes.

``tune.constraints: {binary/param_fraction: "<= 0.5"}`` is checked when a trial's configuration is built
(on the meta device: no weights, no data), before it trains. An infeasible trial ends at once, its MLflow
run tagged ``infeasible``, and the searcher is told through Optuna's ``Trial.set_constraint`` (see
``optuna_search.py``). Only metrics the architecture determines can be constrained this way; a bound on
accuracy would need the training it is meant to save.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from coded_resnext.orchestration.errors import UserError
from coded_resnext.results.schema import Metric

# What ``coded_resnext.evaluation.architecture.architecture_metrics`` reports before training.
ARCHITECTURE_METRICS = ("binary/param_fraction", "binary/param_fraction_paper", "model/params")
INFEASIBLE_KEY = Metric.INFEASIBLE  # in the one result an infeasible trial reports (1.0); also Tag.INFEASIBLE
_BOUND = re.compile(r"^\s*(<=|>=|<|>)\s*([^\s].*?)\s*$")


class ConstraintError(UserError):
    """A constraint that cannot be checked; the message names the key."""


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: Literal["<=", "<", ">=", ">"]
    bound: float

    @classmethod
    def parse(cls, metric: str, text: object) -> Constraint:
        where = f"tune.constraints.{metric}"
        if metric not in ARCHITECTURE_METRICS:
            raise ConstraintError(
                f"{where}: unknown metric; constraints are checked before training, on what the architecture "
                f"fixes: {', '.join(ARCHITECTURE_METRICS)}"
            )
        match = _BOUND.match(str(text))
        bound = _number(match.group(2)) if match else None
        if bound is None:
            raise ConstraintError(f'{where}: cannot parse {text!r}; write an operator and a number, e.g. "<= 0.5"')
        return cls(metric, match.group(1), bound)  # type: ignore[arg-type]

    def satisfied(self, value: float) -> bool:
        return {"<=": value <= self.bound, "<": value < self.bound, ">=": value >= self.bound, ">": value > self.bound}[
            self.op
        ]

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 feasible, > 0 by how much it is violated (a strict bound that is met
        exactly is violated by the smallest positive amount)."""
        excess = value - self.bound if self.op in ("<=", "<") else self.bound - value
        if not self.satisfied(value):
            return max(excess, 1e-12)
        return min(excess, 0.0)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_constraints(spec: Mapping[str, object]) -> list[Constraint]:
    return [Constraint.parse(metric, text) for metric, text in spec.items()]


def violated(constraints: list[Constraint], metrics: Mapping[str, float]) -> list[str]:
    """One phrase per violated constraint, e.g. 'binary/param_fraction = 0.532, needs <= 0.5'."""
    return [
        f"{c.metric} = {metrics[c.metric]:.4g}, needs {c.op} {c.bound:g}"
        for c in constraints
        if not c.satisfied(metrics[c.metric])
    ]
