"""What a simulation may replay: the curves against the search space and the arm, checked before anything runs.

A searcher must only be able to propose configurations that were trained, so every searched key of the space
must be a ``choice`` (or ``grid``) over recorded values and every combination of them recorded (the recorded
benchmark is such a grid: ``search_spaces/quickstart_curves.yaml``); ``replay`` runs the recorded
configurations themselves and needs no such space. A scheduler needs at every epoch where it judges a trial
the metrics it ranks by: MO-ASHA every objective at its rungs, ASHA its metric.
"""

from __future__ import annotations

import itertools
import math

from coded_resnext.orchestration.search_space import encode
from coded_resnext.orchestration.simulation.curves import Curves, CurvesError
from coded_resnext.orchestration.simulation.engine import Arm, rung_epochs


def judged_epochs(arm: Arm, epochs: int) -> tuple[int, ...]:
    """Epochs at which ``arm``'s scheduler judges a trial (and so reads its metrics then)."""
    if arm.scheduler == "moasha":
        return rung_epochs(arm, epochs)
    if arm.scheduler == "asha":  # Ray's rungs grace * rf**k below max_t = epochs + 1 (the sweep's setting)
        marks, level = set(), float(arm.grace_period)
        while level < epochs + 1:
            marks.add(min(math.ceil(level), epochs))
            level *= arm.reduction_factor
        return tuple(sorted(marks))
    return ()


def check(curves: Curves, space, arm: Arm, where: str) -> None:
    """One line for the first reason ``curves`` cannot be replayed under ``space`` and ``arm``."""
    objectives = list(space.tune.objectives)
    needed = objectives + ([arm.metric] if arm.scheduler == "asha" and arm.metric not in objectives else [])
    curves.require_columns(list(space.domains), needed, where)
    epochs = space.base_config().train.epochs
    if epochs > curves.epochs:
        raise CurvesError(
            f"{where}: the space trains {epochs} epochs but the curves hold {curves.epochs}: give the space the "
            "curves were recorded with"
        )
    if arm.algorithm != "replay":
        _check_recorded_space(curves, space, where)
    judged = judged_epochs(arm, epochs)
    if arm.scheduler == "moasha":
        curves.require_per_epoch(objectives, judged, "MO-ASHA ranks every objective at its rungs", where)
    elif arm.scheduler == "asha":
        curves.require_per_epoch([arm.metric], judged, f"ASHA ranks {arm.metric} at its rungs", where)
    curves.require_per_epoch(objectives, [epochs], "the front is measured at the full budget", where)


def _check_recorded_space(curves: Curves, space, where: str) -> None:

    values = {}
    for key, domain in space.domains.items():
        if domain.kind not in ("choice", "grid"):
            raise CurvesError(
                f"search.{key}: a {domain.kind} domain can propose values nobody trained; the simulator searches "
                "choice domains over recorded values (search_spaces/quickstart_curves.yaml), or use --algorithm replay"
            )
        values[key] = [encode(v) for v in domain.values]
    combos = list(itertools.product(*values.values()))
    missing = [c for c in combos if curves.lookup(dict(zip(values, c, strict=True))) is None]
    if missing:
        shown = ", ".join(f"{k}={v!r}" for k, v in zip(values, missing[0], strict=True))
        raise CurvesError(
            f"{where}: {len(missing)} of the space's {len(combos)} configurations were never recorded (e.g. {shown}); "
            "a searcher could propose them: search only recorded values, or use --algorithm replay"
        )
