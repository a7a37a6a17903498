"""The replay backend: a sweep's searcher and scheduler driven over recorded curves in simulated time.

An event-driven clock (the approach of Syne Tune's simulator backend; no Ray cluster, no MLflow, no sleeps):
``workers`` slots; a trial holds one from its start until it ends, and its epoch ``e`` reports at its start
plus the recorded wall times of epochs 1..e (``Curves``, ``seconds``), plus the light rung evaluation at the
epochs where the scheduler needs every objective (MO-ASHA's rungs). Reports are processed in time order (ties
in the order they were scheduled), exactly as Tune's controller processes them:

* new trials come from the sweep's own search algorithm (``make_searcher``: Ray's ``BasicVariantGenerator``
  for random search; ``SweepOptunaSearch`` behind a ``ConcurrencyLimiter`` and Tune's ``SearchGenerator`` for
  motpe, nsga2, with the Optuna study in memory), asked whenever fewer than ``workers`` trials are live;
  they are real ``ray.tune.experiment.Trial`` objects made by Tune's own trial factory;
* the scheduler (``FIFOScheduler``, Ray's ``ASHAScheduler``, the project's ``MultiObjectiveASHA``) gets
  ``on_trial_add``, picks what runs with ``choose_trial_to_run``, and decides on every result
  (``on_trial_result``); the searcher gets ``on_trial_result`` unless the decision is STOP, then both get
  ``on_trial_complete`` when a trial is stopped or ends its budget, in Tune's order
  (``TuneController._process_trial_result`` and ``stop_trial``);
* a searcher's configuration is looked up among the recorded ones; one nobody trained is an error, never a
  guess.

The sweep's progress is measured as the sweep measures it (``SweepHypervolume``): after every trial that ends,
the hypervolume of the front of the trials that trained their full budget, against the epochs trained by all
trials so far and against the simulated clock.

Assumptions (docs/searching.md): a trial's epochs take their recorded times whatever runs beside it (the
recording ran 2 at a time on 2 cores; a cluster's workers do not share cores); scheduling decisions and
starting a trial take no time; a repeated configuration replays the same curve (the recording trained each
once, with one seed).
"""

from __future__ import annotations

import heapq
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ray import tune
from ray.tune.experiment import Experiment, Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher, SearchGenerator
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.util import _set_search_properties_backwards_compatible

from coded_resnext.orchestration.moasha import MultiObjectiveASHA, judged_epochs
from coded_resnext.orchestration.search_space import TuneSection
from coded_resnext.orchestration.searcher import make_searcher
from coded_resnext.orchestration.simulation.curves import RUNG_SECONDS, SECONDS, TRIAL_ID, Curves, CurvesError
from coded_resnext.results.hypervolume import costs, hypervolume, nondominated_ranks, reference_costs
from coded_resnext.results.schema import Tag

REPLAY_KEY = "config_id"  # the replay searcher's one key: a recorded configuration's index
ALGORITHMS = ("random", "motpe", "nsga2", "replay")
SCHEDULERS = ("none", "asha", "moasha")
UNLIMITED = 10**6  # trials of a simulation bounded by epochs or seconds instead


@dataclass(frozen=True)
class Arm:
    """One way to run a sweep: a searcher and a scheduler with its settings.

    ``scheduler``: none (FIFO: every trial trains its full budget), asha (Ray's ASHAScheduler on ``metric``),
    moasha (``MultiObjectiveASHA`` over the objectives). ``replay`` runs the recorded configurations in their
    recorded order (Ray's ``BasicVariantGenerator`` with them as ``points_to_evaluate``): a finished sweep's
    own trials under another scheduler.
    """

    algorithm: str = "random"
    scheduler: str = "none"
    grace_period: int = 1
    reduction_factor: float = 3.0
    max_t: int | None = None  # moasha: epochs a trial trains at most (default: the recorded epochs)
    metric: str = "val/accuracy"  # asha's one metric
    mode: str = "max"

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise CurvesError(f"--algorithm {self.algorithm}: choose one of {', '.join(ALGORITHMS)}")
        if self.scheduler not in SCHEDULERS:
            raise CurvesError(f"--scheduler {self.scheduler}: choose one of {', '.join(SCHEDULERS)}")
        if self.grace_period < 1:
            raise CurvesError(f"--grace-period {self.grace_period}: must be >= 1 epoch")
        if not self.reduction_factor > 1:
            raise CurvesError(f"--reduction-factor {self.reduction_factor:g}: must be > 1")

    @property
    def label(self) -> str:
        if self.scheduler == "none":
            return self.algorithm
        name = "MO-ASHA" if self.scheduler == "moasha" else "ASHA"
        grace = f", grace {self.grace_period}" if self.grace_period != 1 else ""
        prefix = "" if self.algorithm == "replay" else f"{self.algorithm}+"
        return f"{prefix}{name} rf {self.reduction_factor:g}{grace}"

    @property
    def stops_early(self) -> bool:
        return self.scheduler in ("asha", "moasha")


@dataclass(frozen=True)
class Budget:
    """When a simulated sweep ends: after ``trials`` trials (Tune's ``num_samples``), or once ``epochs`` epochs
    have been used or ``seconds`` have passed on the simulated clock (trials still running are cut off there,
    as a stopper would); whichever comes first."""

    trials: int | None = None
    epochs: float | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.trials is None and self.epochs is None and self.seconds is None:
            raise CurvesError("a simulation needs a budget: --trials, --epoch-budget or --time-budget")
        for name, value in (
            ("--trials", self.trials),
            ("--epoch-budget", self.epochs),
            ("--time-budget", self.seconds),
        ):
            if value is not None and not value > 0:
                raise CurvesError(f"{name} {value}: must be > 0")


@dataclass
class Outcome:
    """What one simulated sweep did."""

    arm: Arm
    workers: int
    seed: int
    history: list[tuple[float, float, float, int]]  # (seconds, epochs used, hypervolume, trials ended)
    trials: list[dict[str, Any]]  # per trial: config_id, start, end, epochs, stopped
    decisions: list[tuple[int, int, int, str]]  # (trial number, config_id, epoch, decision) for every result
    front: list[int]  # config ids on the final front
    wall_seconds: float  # what the simulation itself took
    cut: bool = False  # ended by the epoch or time budget with trials still running

    @property
    def hypervolume(self) -> float:
        return self.history[-1][2]

    @property
    def epochs(self) -> float:
        return self.history[-1][1]

    @property
    def seconds(self) -> float:
        return self.history[-1][0]

    def hypervolume_at(self, epochs: float | None = None, seconds: float | None = None) -> float:
        """The hypervolume once ``epochs`` epochs were used (or ``seconds`` passed): the last logged value at or
        before it (a step function, as the sweep logs it)."""
        column, limit = (1, epochs) if epochs is not None else (0, seconds)
        value = 0.0
        for row in self.history:
            if row[column] > limit + 1e-9:
                break
            value = row[2]
        return value

    def first_reaching(self, target: float, column: str = "epochs") -> float | None:
        """Epochs (or seconds) used when the hypervolume first reached ``target``; None if it never did."""
        index = 1 if column == "epochs" else 0
        for row in self.history:
            if row[2] >= target - 1e-12:
                return row[index]
        return None


class SimController:
    """What Ray's schedulers read of the ``TuneController``: its trials (``choose_trial_to_run`` walks them)."""

    def __init__(self) -> None:
        self.trials: list = []

    def get_trials(self) -> list:
        return self.trials

    def get_live_trials(self) -> set:

        return {t for t in self.trials if t.status not in (Trial.TERMINATED, Trial.ERROR)}


def rung_epochs(arm: Arm, epochs: int) -> tuple[int, ...]:
    """Epochs whose report carries every objective under ``arm`` (and so pays the light rung evaluation): MO-ASHA's
    rungs and its max_t below the recorded epochs, as ``trial.rung_epochs`` gives them for a sweep."""
    if arm.scheduler != "moasha":
        return ()
    return judged_epochs(arm.grace_period, arm.max_t, arm.reduction_factor, epochs)


def make_scheduler(arm: Arm, objectives: Mapping[str, str], epochs: int, reference_point: Sequence[float] | None):
    """The scheduler a sweep builds for ``arm`` (``Sweep._scheduler``'s settings; tests compare the two)."""

    if arm.scheduler == "moasha":
        max_t = min(arm.max_t or epochs, epochs)
        grace = min(arm.grace_period, max_t - 1)
        if grace < 1:
            return FIFOScheduler()
        return MultiObjectiveASHA(
            dict(objectives),
            time_attr="epoch",
            max_t=max_t,
            grace_period=grace,
            reduction_factor=arm.reduction_factor,
            reference_point=reference_point,
            exempt_key=Tag.REFERENCE_CONTROL,
            stop_last_trials=max_t < epochs,
        )
    if arm.scheduler == "asha":
        return ASHAScheduler(
            time_attr="epoch",
            metric=arm.metric,
            mode=arm.mode,
            max_t=epochs + 1,  # as the sweep: never stop at the last epoch (its report carries the suite)
            grace_period=arm.grace_period,
            reduction_factor=arm.reduction_factor,
        )
    return FIFOScheduler()


def _never_called(config):  # the Experiment's trainable: the simulation runs no trainable
    raise RuntimeError("a simulated trial does not run")


def make_search_algorithm(
    arm: Arm,
    param_space: dict[str, Any],
    objectives: Mapping[str, str],
    *,
    workers: int,
    seed: int,
    nominal_trials: int,
    trials: int,
    storage: str,
    order: Sequence[int] = (),
    epochs: int,
):
    """Tune's search algorithm for ``arm`` as a sweep builds it (``make_searcher``), its study in memory, wrapped
    and given the search space the way ``tune.run`` does; ``trials`` is ``num_samples``, ``nominal_trials`` what
    the samplers are configured with (TPE's start-up trials: the same for every arm)."""

    if arm.algorithm == "replay":
        param_space = {REPLAY_KEY: tune.choice(list(order))}
        search = BasicVariantGenerator(
            points_to_evaluate=[{REPLAY_KEY: i} for i in order], max_concurrent=workers, random_state=seed
        )
        trials = min(trials, len(order))
    else:
        section = TuneSection(
            algorithm=arm.algorithm,
            num_samples=nominal_trials,
            max_concurrent_trials=workers,
            objectives=dict(objectives),
            seed=seed,
        )
        budget = ("epoch", min(arm.max_t or epochs, epochs)) if arm.stops_early else None
        search = make_searcher(section, dict(objectives), 0, "simulation", "simulated", budget=budget, in_memory=True)
    if isinstance(search, Searcher):
        search = SearchGenerator(search)
    _set_search_properties_backwards_compatible(search.set_search_properties, None, None, param_space)
    search.add_configurations(
        [Experiment(name="simulation", run=_never_called, config=param_space, num_samples=trials, storage_path=storage)]
    )
    return search


@dataclass
class Simulation:
    """One simulated sweep of ``arm`` over ``curves`` with ``workers`` trials at a time (see the module docstring).

    ``param_space``: Tune's search space (the space's ``param_space()``, whose choices hold only recorded values);
    ignored by ``replay``, which runs ``order`` (default: the recorded order). ``epochs``: the trials' full budget
    (the space's train.epochs; at most the recorded epochs).
    """

    curves: Curves
    arm: Arm
    objectives: Mapping[str, str]
    reference_point: Sequence[float]
    workers: int
    seed: int
    budget: Budget
    param_space: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    nominal_trials: int | None = None
    order: Sequence[int] | None = None
    moasha_reference: Sequence[float] | None = None  # tune.reference_point for MO-ASHA's tie-breaks (None: nadir)
    on_result: Callable | None = None  # (trial, result, decision) after each result: tests and the faithfulness check

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise CurvesError(f"--workers {self.workers}: needs at least 1 worker")
        self.epochs = int(self.epochs or self.curves.epochs)
        if self.epochs > self.curves.epochs:
            raise CurvesError(
                f"the trials train {self.epochs} epochs but the curves hold {self.curves.epochs}: give the space the "
                "curves were recorded with (its train.epochs)"
            )
        self.max_t = min(self.arm.max_t or self.epochs, self.epochs) if self.arm.scheduler == "moasha" else self.epochs
        self._rungs = set(rung_epochs(self.arm, self.epochs))
        names = list(self.objectives)
        logged = [c for c in self.curves.frame.columns if "/" in c and not c.startswith("time/")]
        wanted = [*names, self.arm.metric] if self.arm.scheduler == "asha" else names
        metrics = list(dict.fromkeys([*wanted, *logged]))
        self._values = {m: self.curves.metric(m) for m in metrics}
        self._seconds = self.curves.metric(SECONDS)
        rung = self.curves.metric(RUNG_SECONDS) if self.curves.has(RUNG_SECONDS) else np.zeros_like(self._seconds)
        self._rung_seconds = np.nan_to_num(rung, nan=0.0)
        self._objective_values = np.stack([self.curves.metric(m) for m in names], axis=-1)  # (n, epochs, m)
        self._reference = reference_costs(self.reference_point, self.objectives)

    # ---- the event loop ------------------------------------------------------------------------------
    def run(self) -> Outcome:

        started = time.perf_counter()
        order = list(self.order) if self.order is not None else list(range(self.curves.n))
        trials_cap = self.budget.trials or UNLIMITED
        scheduler = make_scheduler(self.arm, self.objectives, self.epochs, self.moasha_reference)
        controller = SimController()
        clock, epochs_used, ended, seq, started_count = 0.0, 0, 0, 0, 0
        heap: list[tuple[float, int, int, int]] = []  # (time, sequence, trial number, epoch)
        running: dict[int, dict[str, Any]] = {}
        records: list[dict[str, Any]] = []
        by_trial: dict[str, int] = {}
        decisions: list[tuple[int, int, int, str]] = []
        points: list[np.ndarray] = []
        front_ids: list[int] = []
        history = [(0.0, 0.0, 0.0, 0)]
        current_hv = 0.0
        cut = False
        with tempfile.TemporaryDirectory(prefix="crx-sim-") as storage:
            search = make_search_algorithm(
                self.arm,
                self.param_space,
                self.objectives,
                workers=self.workers,
                seed=self.seed,
                nominal_trials=self.nominal_trials or self.budget.trials or self.curves.n,
                trials=trials_cap,
                storage=storage,
                order=order,
                epochs=self.epochs,
            )
            while True:
                stop_asking = (self.budget.epochs is not None and epochs_used >= self.budget.epochs) or (
                    self.budget.seconds is not None and clock >= self.budget.seconds
                )
                # Tune asks its search algorithm for trials while it has room (the searchers' own concurrency
                # limit, max_concurrent_trials = workers, is what bounds it), then lets the scheduler pick.
                while not stop_asking and len(records) - started_count < self.workers:
                    trial = search.next_trial()
                    if trial is None:
                        break
                    config_id = self._config_id(trial)
                    by_trial[trial.trial_id] = len(records)
                    records.append({TRIAL_ID: trial.trial_id, "config_id": config_id, "start": None, "end": None,
                                    "epochs": 0, "stopped": False, "tune_trial": trial})  # fmt: skip
                    controller.trials.append(trial)
                    scheduler.on_trial_add(controller, trial)
                while len(running) < self.workers:
                    trial = scheduler.choose_trial_to_run(controller)
                    if trial is None:
                        break
                    trial.set_status(Trial.RUNNING)
                    started_count += 1
                    number = by_trial[trial.trial_id]
                    records[number]["start"] = clock
                    running[number] = records[number]
                    heapq.heappush(heap, (clock + self._duration(records[number]["config_id"], 1), seq, number, 1))
                    seq += 1
                if not heap:
                    break
                when, _s, number, epoch = heapq.heappop(heap)
                if self.budget.seconds is not None and when > self.budget.seconds:
                    clock, cut = self.budget.seconds, True
                    break
                clock = when
                record = records[number]
                trial = record["tune_trial"]
                config_id = record["config_id"]
                result = self._result(config_id, epoch, clock - record["start"], trial.trial_id)
                decision = scheduler.on_trial_result(controller, trial, result)
                if decision != TrialScheduler.STOP:
                    search.on_trial_result(trial.trial_id, result)
                trial.update_last_result(result)
                epochs_used += 1
                record["epochs"] = epoch
                decisions.append((number, config_id, epoch, decision))
                if self.on_result is not None:
                    self.on_result(trial, result, decision)
                finished = epoch >= self.max_t
                if decision == TrialScheduler.STOP or finished:
                    # Tune's stop_trial: the scheduler, then the searcher, see the trial's last result
                    scheduler.on_trial_complete(controller, trial, result)
                    search.on_trial_complete(trial.trial_id, result=result)
                    trial.set_status(Trial.TERMINATED)
                    record.update(end=clock, stopped=not (epoch >= self.epochs))
                    del running[number]
                    ended += 1
                    if epoch >= self.epochs:  # trained its full budget: on the front's candidates
                        points.append(self._objective_costs(config_id, epoch))
                        front_ids.append(config_id)
                        current_hv = hypervolume(np.array(points), self._reference)
                    history.append((clock, float(epochs_used), current_hv, ended))
                else:
                    heapq.heappush(heap, (clock + self._duration(config_id, epoch + 1), seq, number, epoch + 1))
                    seq += 1
                if self.budget.epochs is not None and epochs_used >= self.budget.epochs and running:
                    cut = True
                    break
            if cut or running:
                history.append((clock, float(epochs_used), current_hv, ended))
        front = _front(points, front_ids)
        for record in records:
            record.pop("tune_trial", None)
        return Outcome(
            self.arm, self.workers, self.seed, history, records, decisions, front, time.perf_counter() - started, cut
        )

    # ---- pieces ---------------------------------------------------------------------------------------
    def _config_id(self, trial) -> int:
        if self.arm.algorithm == "replay":
            return int(trial.config[REPLAY_KEY])
        config_id = self.curves.lookup(trial.config)
        if config_id is None:
            shown = ", ".join(f"{k}={trial.config.get(k)!r}" for k in self.curves.keys)
            raise CurvesError(f"the searcher proposed a configuration nobody trained ({shown}); the simulation stops")
        return config_id

    def _duration(self, config_id: int, epoch: int) -> float:
        seconds = float(self._seconds[config_id, epoch - 1])
        if epoch in self._rungs:
            seconds += float(self._rung_seconds[config_id, epoch - 1])
        return seconds

    def _result(self, config_id: int, epoch: int, elapsed: float, trial_id: str) -> dict[str, Any]:
        result: dict[str, Any] = {
            name: float(values[config_id, epoch - 1])
            for name, values in self._values.items()
            if not math.isnan(values[config_id, epoch - 1])
        }
        result.update(
            epoch=epoch,
            training_iteration=epoch,
            time_this_iter_s=self._duration(config_id, epoch),
            time_total_s=elapsed,
            done=False,
            trial_id=trial_id,
        )
        return result

    def _objective_costs(self, config_id: int, epoch: int) -> np.ndarray:
        row = {m: self._objective_values[config_id, epoch - 1, j] for j, m in enumerate(self.objectives)}
        return costs([row], self.objectives)[0]


def _front(points: list[np.ndarray], ids: list[int]) -> list[int]:

    if not points:
        return []
    ranks = nondominated_ranks(np.array(points))
    return sorted({ids[i] for i in np.flatnonzero(ranks == 0)})
