"""Hypervolume of a set of objective vectors, and each point's share of it (its exclusive contribution).

The hypervolume is the volume of objective space that a set of points dominates, bounded by a reference
point that every useful point beats: one number that grows whenever the Pareto front improves anywhere,
which is why a multi-objective search reports it as its progress. The volume itself comes from Optuna
(``optuna._hypervolume.compute_hypervolume``, the exact WFG algorithm its samplers and its
``plot_hypervolume_history`` use); Optuna has no public function for it, so it is imported in this one
place and pinned by a test with known volumes. Everything here works on *costs*: objectives turned so
that smaller is better (``costs``), missing or non-finite values as +inf (worse than anything).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from optuna._hypervolume import compute_hypervolume

from coded_resnext.results.pareto import dominance_counts


def costs(rows: Sequence[Mapping[str, float | None]], objectives: Mapping[str, str]) -> np.ndarray:
    """(n, m) costs of ``rows`` over ``objectives`` (metric -> "max" | "min"): maximized ones negated,
    missing / None / NaN values +inf."""
    out = np.full((len(rows), len(objectives)), np.inf)
    for i, row in enumerate(rows):
        for j, (metric, mode) in enumerate(objectives.items()):
            value = row.get(metric)
            if value is not None and np.isfinite(float(value)):
                out[i, j] = -float(value) if mode == "max" else float(value)
    return out


def reference_costs(reference: Sequence[float], objectives: Mapping[str, str]) -> np.ndarray:
    """A reference point given in the objectives' own units (as a user writes it), as costs."""
    return np.array(
        [-float(r) if mode == "max" else float(r) for r, mode in zip(reference, objectives.values(), strict=True)]
    )


def nadir_reference(points: np.ndarray) -> np.ndarray:
    """A reference point just worse than the worst finite cost of each objective: Optuna's TPE rule
    (1.1 x the worst, or 0.9 x when it is negative; 1e-12 instead of 0), over finite values only; an
    objective without any finite value gets 1e-12."""
    reference = np.zeros(points.shape[1])
    for j, column in enumerate(np.asarray(points, dtype=float).T):
        finite = column[np.isfinite(column)]
        worst = float(finite.max()) if len(finite) else 0.0
        reference[j] = max(1.1 * worst, 0.9 * worst)
    reference[reference == 0] = 1e-12
    return reference


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """The volume dominated by ``points`` (costs) and bounded by ``reference``; points no better than the
    reference in some objective add nothing (they are clipped to it)."""
    points = np.asarray(points, dtype=float).reshape(-1, len(reference))
    if not len(points):
        return 0.0
    return float(compute_hypervolume(np.minimum(points, reference), np.asarray(reference, dtype=float)))


def contributions(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each point's exclusive hypervolume contribution: the volume lost if it alone were removed
    (0 for a dominated point or an exact duplicate)."""
    points = np.asarray(points, dtype=float)
    total = hypervolume(points, reference)
    keep = np.ones(len(points), dtype=bool)
    out = np.zeros(len(points))
    for i in range(len(points)):
        keep[i] = False
        out[i] = total - hypervolume(points[keep], reference)
        keep[i] = True
    return np.maximum(out, 0.0)  # floating-point noise below zero


def nondominated_ranks(points: np.ndarray) -> np.ndarray:
    """Non-dominated sorting: 0 for the front, 1 for the front once that is removed, and so on. Equal
    vectors do not dominate each other; +inf compares as worse than any finite cost.

    The dominance relation is computed once (n x n) and the fronts peeled off by counting down each point's
    dominators (Deb et al.'s fast non-dominated sort): MO-ASHA ranks a rung at every decision, and a simulated
    sweep at cluster scale holds hundreds of trials at its first rung."""
    points = np.asarray(points, dtype=float)
    n = len(points)
    ranks = np.zeros(n, dtype=np.int64)
    if n == 0:
        return ranks
    if n > 4096:  # the (n, n, m) comparison would not fit in memory comfortably: chunked counts, peeled
        return _peeled_ranks(points)
    no_worse = np.ones((n, n), dtype=bool)
    better = np.zeros((n, n), dtype=bool)
    for column in points.T:  # objective by objective: numpy reduces a short last axis slowly
        no_worse &= column[:, None] <= column[None, :]
        better |= column[:, None] < column[None, :]
    dominates = no_worse & better  # [i, j]: i dominates j
    counts = dominates.sum(0)
    remaining = np.ones(n, dtype=bool)
    rank = 0
    while remaining.any():
        front = remaining & (counts == 0)
        ranks[front] = rank
        remaining &= ~front
        counts = counts - dominates[front].sum(0)
        rank += 1
    return ranks


def _peeled_ranks(points: np.ndarray) -> np.ndarray:
    ranks = np.zeros(len(points), dtype=np.int64)
    remaining = np.arange(len(points))
    rank = 0
    while len(remaining):
        counts = dominance_counts(points[remaining])
        ranks[remaining[counts == 0]] = rank
        remaining = remaining[counts > 0]
        rank += 1
    return ranks
