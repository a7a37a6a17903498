"""MO-ASHA: asynchronous successive halving over several objectives, as an ordinary Ray Tune scheduler.

ASHA (Li et al., 2020) stops a trial when it reaches a rung (epoch ``grace_period * reduction_factor**k``)
and is not in the top ``1 / reduction_factor`` of the trials recorded at that rung. Ray's ASHA, like every
Ray Tune scheduler, ranks by one metric (ray-project/ray#8018). MO-ASHA (Schmucker et al., 2021; Syne
Tune's ``MOASHA`` is the reference implementation) ranks by several: non-dominated sorting of the
objective vectors recorded at the rung, best front first.

Ties inside a front are broken by **hypervolume contribution** (the volume the front loses without the
point), not crowding distance. Rungs here hold a handful of trials, and crowding distance gives every
boundary point of a front an infinite distance, so on fronts of two or three points it ranks nothing;
the hypervolume contribution is finite for every point, and it is the quantity the sweep is judged by
(``sweep/hypervolume``), so the points promoted are the ones the front would miss most. Exact
duplicates (both contribute zero) fall back to arrival order, the earlier first.

Decisions are made once per trial and rung, when its first result at or past the rung arrives: it
continues when its place in the ranking of the rung's trials (itself included) is within the first
``n / reduction_factor`` (so the first trial at a rung always continues, as in Ray's ASHA). A result
missing an objective defers the decision to the trial's next result; a None or NaN value ranks as the
worst. A trial whose config has ``exempt_key`` set (a reference run) is never judged and never recorded.

Tune saves the searcher and the callbacks with the experiment, but not the scheduler
(``TuneController.save_to_dir``), so rung records would vanish on ``Tuner.restore``. Add
``scheduler.state_callback()`` to ``RunConfig.callbacks``: Tune then checkpoints the rung records with the
experiment and restores them before restored trials report again; a trial that re-reports a rung it was
already judged at (it resumed from an earlier checkpoint) gets the same decision again.
"""

from __future__ import annotations

import logging
import math
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune import Callback
from ray.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

from coded_resnext.results.hypervolume import contributions, nadir_reference, nondominated_ranks, reference_costs

logger = logging.getLogger(__name__)


@dataclass
class RungEntry:
    costs: tuple[float, ...]  # the objectives as costs (smaller is better; worst = +inf)
    arrival: int  # order of arrival over the whole scheduler (ties inside a front)
    decision: str  # TrialScheduler.CONTINUE or STOP


def rung_milestones(grace_period: float, max_t: float, reduction_factor: float) -> list[float]:
    """Rung levels ``grace_period * reduction_factor**k`` strictly below ``max_t`` (at max_t trials end)."""
    out = []
    level = float(grace_period)
    while level < max_t:
        out.append(level)
        level *= reduction_factor
    return out


def judged_epochs(grace_period: int, max_t: int | None, reduction_factor: float, epochs: int) -> tuple[int, ...]:
    """The epochs at which MO-ASHA judges a trial of ``epochs`` epochs: its rungs (a trial is judged at its
    first report at or past one) and its ``max_t`` when that ends trials early. A sweep's trials report every
    objective there (``trial.rung_epochs``), and the simulator charges the rung evaluation there."""
    max_t = min(max_t or epochs, epochs)
    grace = min(grace_period, max_t - 1)
    marks = {math.ceil(m) for m in rung_milestones(grace, max_t, reduction_factor)} if grace >= 1 else set()
    if max_t < epochs:
        marks.add(max_t)
    return tuple(sorted(marks))


class MultiObjectiveASHA(FIFOScheduler):
    """Asynchronous successive halving ranking by non-dominated sorting (see the module docstring).

    Args:
        objectives: metric name -> "max" | "min", at least two (for one, use Ray's ASHAScheduler).
        time_attr: the result key counting progress (monotonic), e.g. "training_iteration" or "epoch".
        max_t: trials stop when ``time_attr`` reaches it.
        grace_period: the first rung; must be below ``max_t``.
        reduction_factor: keep the top 1/reduction_factor at each rung.
        reference_point: the hypervolume reference for tie-breaking, in the objectives' units (default:
            just worse than the worst value recorded at the rung).
        exempt_key: a config key; trials whose config sets it truthy are neither judged nor recorded.
    """

    def __init__(
        self,
        objectives: Mapping[str, str],
        *,
        time_attr: str = "training_iteration",
        max_t: float = 100,
        grace_period: float = 1,
        reduction_factor: float = 2,
        reference_point: Sequence[float] | None = None,
        exempt_key: str | None = None,
        stop_last_trials: bool = True,
    ) -> None:
        super().__init__()
        objectives = dict(objectives)
        if len(objectives) < 2:
            raise ValueError(
                f"MO-ASHA ranks several objectives; got {list(objectives)}: for one objective use ASHA (ASHAScheduler)"
            )
        bad = {k: v for k, v in objectives.items() if v not in ("max", "min")}
        if bad:
            raise ValueError(f"objective modes must be 'max' or 'min', got {bad}")
        if not 0 < grace_period < max_t:
            raise ValueError(f"need 0 < grace_period < max_t, got grace_period={grace_period}, max_t={max_t}")
        if not reduction_factor > 1:
            raise ValueError(f"reduction_factor must be > 1, got {reduction_factor}")
        if reference_point is not None and len(reference_point) != len(objectives):
            raise ValueError(
                f"reference_point has {len(reference_point)} values for {len(objectives)} objectives {list(objectives)}"
            )
        self._objectives = objectives
        self._time_attr = time_attr
        self._max_t = max_t
        self._reduction_factor = float(reduction_factor)
        self._reference = None if reference_point is None else reference_costs(reference_point, objectives)
        self._exempt_key = exempt_key
        self._stop_last_trials = stop_last_trials
        self._rungs: dict[float, dict[str, RungEntry]] = {
            m: {} for m in rung_milestones(grace_period, max_t, reduction_factor)
        }
        self._arrivals = 0
        self._num_stopped = 0

    # ---- Tune's interface ---------------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        """Tune passes TuneConfig's single metric/mode here; this scheduler has its own objectives."""
        return metric is None and mode is None

    def on_trial_result(self, tune_controller, trial, result: dict[str, Any]) -> str:
        if self._exempt(trial) or self._time_attr not in result:
            return TrialScheduler.CONTINUE
        now = result[self._time_attr]
        if now >= self._max_t and self._stop_last_trials:
            return TrialScheduler.STOP
        reached = [m for m in self._rungs if m <= now]
        if not reached:
            return TrialScheduler.CONTINUE
        rung = self._rungs[max(reached)]
        if trial.trial_id in rung:  # judged here before (e.g. a resumed trial replaying the epoch)
            return rung[trial.trial_id].decision
        if any(key not in result for key in self._objectives):
            return TrialScheduler.CONTINUE  # judged at its next result that carries every objective
        decision = self._judge(rung, trial.trial_id, self._costs(result))
        if decision == TrialScheduler.STOP:
            self._num_stopped += 1
        return decision

    def debug_string(self) -> str:
        rungs = ", ".join(f"{m:g}: {len(r)} recorded" for m, r in self._rungs.items())
        return f"Using MO-ASHA over {list(self._objectives)}: num_stopped={self._num_stopped}; rungs {rungs}"

    # ---- ranking ------------------------------------------------------------------------------------
    def _exempt(self, trial) -> bool:
        return bool(self._exempt_key and (getattr(trial, "config", None) or {}).get(self._exempt_key))

    def _costs(self, result: dict[str, Any]) -> tuple[float, ...]:
        out = []
        for key, mode in self._objectives.items():
            try:
                value = float(result.get(key))
            except (TypeError, ValueError):  # None, or not a number
                value = math.nan
            out.append(math.inf if math.isnan(value) else (-value if mode == "max" else value))
        return tuple(out)

    def _judge(self, rung: dict[str, RungEntry], trial_id: str, costs: tuple[float, ...]) -> str:
        rung[trial_id] = RungEntry(costs, self._arrivals, TrialScheduler.CONTINUE)
        self._arrivals += 1
        if not self._in_top_share(rung, trial_id):
            rung[trial_id].decision = TrialScheduler.STOP
        return rung[trial_id].decision

    def _in_top_share(self, rung: Mapping[str, RungEntry], trial_id: str) -> bool:
        """Whether ``trial_id``'s place in ``ranking(rung)`` is within the first ``n / reduction_factor``,
        found without ranking everyone: the hypervolume contributions (the costly part: one volume per point)
        are computed only when the cut runs through the trial's own front."""
        ids = list(rung)
        points = np.array([rung[i].costs for i in ids], dtype=float)
        fronts = nondominated_ranks(points)
        me = ids.index(trial_id)
        ahead = int((fronts < fronts[me]).sum())  # trials in better fronts
        members = np.flatnonzero(fronts == fronts[me])
        cut = len(ids) / self._reduction_factor
        if ahead >= cut:
            return False  # its place is at least `ahead`
        if ahead + len(members) - 1 < cut:
            return True  # its place is at most the last of its front
        reference = self._reference if self._reference is not None else nadir_reference(points)
        order = self._front_order(members, points, [rung[i].arrival for i in ids], reference)
        return ahead + order.index(me) < cut

    def ranking(self, rung: Mapping[str, RungEntry]) -> list[str]:
        """Trial ids of a rung, best first: by front, then by hypervolume contribution inside the front,
        then by arrival."""
        ids = list(rung)
        points = np.array([rung[i].costs for i in ids], dtype=float)
        fronts = nondominated_ranks(points)
        reference = self._reference if self._reference is not None else nadir_reference(points)
        arrivals = [rung[i].arrival for i in ids]
        order: list[str] = []
        for front in np.unique(fronts):
            members = np.flatnonzero(fronts == front)
            order += [ids[k] for k in self._front_order(members, points, arrivals, reference)]
        return order

    @staticmethod
    def _front_order(members: np.ndarray, points: np.ndarray, arrivals: Sequence[int], reference) -> list[int]:
        """The indices ``members`` (one front) best first: larger hypervolume contribution, then earlier arrival.
        Contributions are compared relative to the front's largest, rounded, so floating-point noise does not
        decide a tie."""
        share = contributions(points[members], reference)
        scale = share.max() if share.max() > 0 else 1.0
        share = np.round(share / scale, 9)
        ranked = sorted(range(len(members)), key=lambda k: (-share[k], arrivals[members[k]]))
        return [int(members[k]) for k in ranked]

    # ---- state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        rungs = {m: {t: (e.costs, e.arrival, e.decision) for t, e in r.items()} for m, r in self._rungs.items()}
        return {"rungs": rungs, "arrivals": self._arrivals, "num_stopped": self._num_stopped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["rungs"]
        if set(saved) != set(self._rungs):
            raise ValueError(f"saved rungs {sorted(saved)} differ from this scheduler's {sorted(self._rungs)}")
        self._rungs = {m: {t: RungEntry(*e) for t, e in r.items()} for m, r in saved.items()}
        self._arrivals = state["arrivals"]
        self._num_stopped = state["num_stopped"]

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.state_dict(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.load_state_dict(pickle.load(f))

    def state_callback(self) -> SchedulerState:
        """The callback that checkpoints this scheduler with the Tune experiment (see the module docstring)."""
        return SchedulerState(self)


class SchedulerState(Callback):
    """Carries a scheduler's ``save``/``restore`` state in Tune's experiment checkpoint, which holds the
    searcher and the callbacks but not the scheduler. Tune pickles the scheduler and this callback together
    (``tuner.pkl``), so after ``Tuner.restore`` it still refers to the restored scheduler."""

    def __init__(self, scheduler: TrialScheduler) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict[str, bytes]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "scheduler.pkl"
            self.scheduler.save(str(path))
            return {"scheduler": path.read_bytes()}

    def set_state(self, state: dict[str, bytes]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "scheduler.pkl"
            path.write_bytes(state["scheduler"])
            self.scheduler.restore(str(path))
        logger.info("restored the scheduler's state: %s", self.scheduler.debug_string())


__all__ = ["MultiObjectiveASHA", "RungEntry", "SchedulerState", "rung_milestones"]
