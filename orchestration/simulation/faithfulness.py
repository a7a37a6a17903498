"""Is the simulation what a real sweep does? A real Ray Tune run against its simulation, decision by decision.

The real run: local Ray, Tune's own controller, the real scheduler (``make_scheduler``: the project's
``MultiObjectiveASHA``, Ray's ``ASHAScheduler``), the configurations in a fixed order
(``BasicVariantGenerator`` with them as ``points_to_evaluate``, at most ``workers`` at a time), and a trainable
that replays each configuration's recorded curve: it sleeps each epoch's recorded wall time multiplied by
``scale`` and reports the epoch's recorded metrics. The simulation: the same curves, order, scheduler and
worker count on the event clock (times multiplied by the same ``scale``, so both see the same schedule).

Compared: for every configuration and rung, whether the trial reached the rung and, if so, was stopped there
or continued (read off the epochs each trial trained: a trial stopped at a rung ends there). Agreement is the
share of (configuration, rung) pairs reached in either run on which the two agree. The real run has what the
simulation leaves out (Ray's scheduling latency, trial start-up, result delivery); results closer in time than
those may arrive in the other order and tip a decision.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray.tune
from ray import tune
from ray.tune.search.basic_variant import BasicVariantGenerator

from coded_resnext.orchestration.ray_runtime import ray_session
from coded_resnext.orchestration.simulation.curves import Curves
from coded_resnext.orchestration.simulation.engine import Arm, Budget, Simulation, make_scheduler, rung_epochs
from coded_resnext.orchestration.simulation.scenario import judged_epochs


@dataclass
class Agreement:
    pairs: int  # (configuration, rung) pairs reached in either run
    agreed: int
    per_rung: dict[int, tuple[int, int]]  # rung -> (pairs, agreed)
    real: dict[int, int]  # configuration -> epochs trained, real run
    simulated: dict[int, int]
    real_seconds: float  # the real run's wall time
    simulated_seconds: float  # the simulation's makespan on its clock (scaled like the real run's sleeps)

    @property
    def share(self) -> float:
        return self.agreed / self.pairs if self.pairs else 1.0

    def describe(self) -> str:
        rungs = "; ".join(f"rung {r}: {a}/{p}" for r, (p, a) in sorted(self.per_rung.items()))
        return (
            f"{self.agreed} of {self.pairs} stop/continue decisions agree ({self.share:.1%}; {rungs}); the real run "
            f"took {self.real_seconds:.0f} s, the simulation's clock {self.simulated_seconds:.0f} s"
        )


def decisions(epochs_trained: Mapping[int, int], rungs: Sequence[int], max_t: int) -> dict[tuple[int, int], str]:
    """(configuration, rung) -> CONTINUE or STOP, read off the epochs each trial trained."""
    out = {}
    for config, trained in epochs_trained.items():
        for rung in rungs:
            if trained < rung:
                break
            out[(config, rung)] = "STOP" if trained == rung and rung < max_t else "CONTINUE"
    return out


def compare(
    curves: Curves,
    arm: Arm,
    objectives: Mapping[str, str],
    reference_point: Sequence[float],
    *,
    workers: int,
    order: Sequence[int],
    epochs: int | None = None,
    scale: float | None = None,
    seconds_per_epoch: float = 0.5,
    moasha_reference: Sequence[float] | None = None,
) -> Agreement:
    """Run ``order`` for real and simulated under ``arm`` (algorithm ``replay``) and compare their decisions.
    ``scale`` (default: one that makes the median epoch last ``seconds_per_epoch``) compresses the sleeps."""
    epochs = epochs or curves.epochs
    seconds = curves.metric("seconds")
    scale = scale or seconds_per_epoch / float(np.median(seconds[list(order), :epochs]))
    scaled = _scaled(curves, scale)
    arm = Arm("replay", arm.scheduler, arm.grace_period, arm.reduction_factor, arm.max_t, arm.metric, arm.mode)
    simulation = Simulation(
        scaled, arm, objectives, reference_point, workers=workers, seed=0, budget=Budget(trials=len(order)),
        epochs=epochs, order=list(order), moasha_reference=moasha_reference,
    )  # fmt: skip
    simulated = simulation.run()
    sim_epochs = {t["config_id"]: t["epochs"] for t in simulated.trials}
    started = time.perf_counter()
    real_epochs = real_run(
        scaled, arm, objectives, workers=workers, order=order, epochs=epochs, reference=moasha_reference
    )
    real_seconds = time.perf_counter() - started
    rungs = judged_epochs(arm, epochs) or rung_epochs(arm, epochs)
    max_t = simulation.max_t
    real_d, sim_d = decisions(real_epochs, rungs, max_t), decisions(sim_epochs, rungs, max_t)
    per_rung: dict[int, tuple[int, int]] = {}
    for key in set(real_d) | set(sim_d):
        pairs, agreed = per_rung.get(key[1], (0, 0))
        per_rung[key[1]] = (pairs + 1, agreed + int(real_d.get(key) == sim_d.get(key)))
    return Agreement(
        pairs=sum(p for p, _a in per_rung.values()),
        agreed=sum(a for _p, a in per_rung.values()),
        per_rung=per_rung,
        real=real_epochs,
        simulated=sim_epochs,
        real_seconds=real_seconds,
        simulated_seconds=simulated.seconds,
    )


def _scaled(curves: Curves, scale: float) -> Curves:
    frame = curves.frame.copy()
    for column in ("seconds", "time/epoch_seconds", "time/rung_eval_seconds"):
        if column in frame:
            frame[column] = frame[column] * scale
    return Curves(frame, curves.keys, curves.meta)


def _replay(config: dict[str, Any], table: dict[str, Any]) -> None:
    """The real run's trainable: one recorded configuration's curve, epoch by epoch, in (scaled) real time."""

    cid = int(config["config_id"])
    for epoch in range(1, table["epochs"] + 1):
        time.sleep(table["durations"][cid][epoch - 1])
        metrics = {name: values[cid][epoch - 1] for name, values in table["metrics"].items()}
        ray.tune.report({k: v for k, v in metrics.items() if v == v} | {"epoch": epoch})


def real_run(
    curves: Curves,
    arm: Arm,
    objectives: Mapping[str, str],
    *,
    workers: int,
    order: Sequence[int],
    epochs: int,
    reference: Sequence[float] | None = None,
) -> dict[int, int]:
    """Tune for real (local Ray) over ``order``; configuration -> epochs it trained."""

    rungs = set(rung_epochs(arm, epochs))
    seconds = curves.metric("seconds")
    rung_seconds = np.nan_to_num(curves.metric("time/rung_eval_seconds"), nan=0.0)
    durations = [
        [float(seconds[c, e - 1] + (rung_seconds[c, e - 1] if e in rungs else 0.0)) for e in range(1, epochs + 1)]
        for c in range(curves.n)
    ]
    names = list(dict.fromkeys([*objectives, *([arm.metric] if arm.scheduler == "asha" else [])]))
    table = {
        "epochs": epochs,
        "durations": durations,
        "metrics": {m: curves.metric(m)[:, :epochs].tolist() for m in names},
    }
    scheduler = make_scheduler(arm, objectives, epochs, reference)
    search = BasicVariantGenerator(points_to_evaluate=[{"config_id": c} for c in order], max_concurrent=workers)
    with tempfile.TemporaryDirectory(prefix="crx-faithful-") as storage, ray_session(None, num_cpus=max(2, workers)):
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(_replay, table=table), {"cpu": 1}),
            param_space={"config_id": tune.choice(list(order))},
            tune_config=tune.TuneConfig(
                search_alg=search, scheduler=scheduler, num_samples=len(order), reuse_actors=True
            ),
            run_config=tune.RunConfig(name="faithfulness", storage_path=storage, verbose=0),
        )
        grid = tuner.fit()
        return {int(r.config["config_id"]): int((r.metrics or {}).get("epoch", 0)) for r in grid}
