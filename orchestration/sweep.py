"""A sweep: a search space run on Ray Tune, one nested MLflow child run per trial under one parent.

Trials (Ray Train V2 style): a trial function builds the trial's run config; one worker runs the loop
in the trial's own process (``TuneSession``: checkpoints through ``ray.tune.report``), more workers
launch a ``TorchTrainer`` whose rank 0 reports to Tune through ``TuneReportCallback``. The trainer's run
is named after the trial id, so a restored trial's trainer resumes from its own last checkpoint.

Searchers: random / grid (``BasicVariantGenerator``), Optuna TPE, and multi-objective Optuna (NSGA-II or
multi-objective TPE).
Optuna studies live in ``tune.searcher_storage`` (default: a SQLite file beside the sweep's local state,
``runs/tune/<name>.optuna.db``; on a cluster the MLflow server's PostgreSQL), so ``--extend`` continues the
same study, from any driver: the sampler sees every earlier trial (``searcher.py``).

Issue 16: ``tune.scheduler: moasha`` (``moasha.py``; its rung epochs report every objective), ``tune.constraints``
checked on the architecture before a trial trains (``end_if_infeasible``), ``sweep/hypervolume`` on the parent
run (``tune_callbacks.SweepHypervolume``) and ``tune.reference_control`` (one plain-control trial, hidden from the
searcher by ``reference_control.WithReferenceControl``).

Lifecycle: ``--resume`` restores the Tune experiment (finished trials are not re-run; unfinished and
errored ones continue from their checkpoints) and reattaches the parent run, found by its tags; child
runs the restored experiment does not know (a driver killed right after a trial started) are closed as
KILLED and their Optuna trials failed (``reconcile.py``). ``--extend N`` adds N trials as a follow-up Tune
experiment under the same parent run. A sweep interrupted by Ctrl-C says so, on its parent run too (runs
done, the ``--resume`` command), and closes its interrupted child runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coded_resnext.orchestration.constraints import INFEASIBLE_KEY, parse_constraints, violated
from coded_resnext.orchestration.errors import UserError
from coded_resnext.orchestration.lineage import Lineage
from coded_resnext.orchestration.ray_runtime import storage_uri
from coded_resnext.orchestration.redaction import redact_uri
from coded_resnext.orchestration.search_space import CELL_KEY, SearchSpace, decode, default_reference_point, encode
from coded_resnext.orchestration.searcher import (
    OPTUNA_ALGORITHMS,
    check_study,
    fail_orphans,
    make_searcher,
    storage_url,
)
from coded_resnext.orchestration.tracking import RunTracker, default_tracking_uri, find_runs

REFERENCE_KEY = "reference_control"  # the reference-control trial's config flag, and its MLflow tag


@dataclass
class TrialContext:
    """What every trial needs besides its sampled values (shipped once with ``tune.with_parameters``)."""

    space: SearchSpace
    tracking_uri: str
    parent_run_id: str
    storage_path: str
    experiment_name: str  # the Tune experiment (the sweep's name, or name-extK)
    smoke_test: bool = False

    @property
    def rung_epochs(self) -> tuple[int, ...]:
        return rung_epochs(self.space, self.smoke_test)


def run_trial(sampled: dict[str, Any], ctx: TrialContext) -> None:
    """Tune's trainable: one trial = one training run, nested under the sweep's parent run."""
    import ray.tune
    import torch

    from coded_resnext.orchestration.config import smoke_test_config
    from coded_resnext.orchestration.sessions import TuneSession
    from coded_resnext.orchestration.training import Progress, train_loop

    reference = bool(sampled.get(REFERENCE_KEY))
    cfg = reference_control_config(ctx.space) if reference else ctx.space.trial_config(sampled)
    if ctx.smoke_test:
        cfg = smoke_test_config(cfg)
    cfg.train = dataclasses.replace(cfg.train, progress="none")
    trial_id = ray.tune.get_context().get_trial_id()
    cfg.tracking = dataclasses.replace(
        cfg.tracking, uri=ctx.tracking_uri, run_name=cfg.tracking.run_name or f"{ctx.experiment_name}-{trial_id}"
    )
    lineage = Lineage(
        tracking_uri=ctx.tracking_uri,
        parent_run_id=ctx.parent_run_id,
        trial_id=trial_id,
        tags={"sweep": ctx.space.name, "tune_experiment": ctx.experiment_name},
    )
    if CELL_KEY in sampled:
        lineage.tags[CELL_KEY] = sampled[CELL_KEY]
    if reference:
        lineage.tags[REFERENCE_KEY] = "true"
    elif ctx.space.tune.constraints and end_if_infeasible(cfg, lineage, parse_constraints(ctx.space.tune.constraints)):
        return
    if cfg.train.num_workers == 1:
        torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
        train_loop(cfg, TuneSession(), lineage, Progress("none", cfg.train.epochs), rung_epochs=ctx.rung_epochs)
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    from coded_resnext.orchestration.ray_train import make_trainer

    trainer = make_trainer(
        cfg,
        lineage,
        storage_path=ctx.storage_path,
        name=f"{ctx.experiment_name}-train-{trial_id}",
        callbacks=[TuneReportCallback()],
        rung_epochs=ctx.rung_epochs,
    )
    trainer.fit()


def trial_resources(cfg) -> dict[str, float]:
    """A one-worker trial trains in the trial process (its CPUs/GPUs); a multi-worker trial's process
    only drives the trainer (a token CPU share), whose workers hold the resources."""
    if cfg.train.num_workers > 1:
        # No CPU (a token CPU share would not fit beside a full-CPU rank on a 1-CPU node); Tune refuses an
        # empty request, so ask for a little memory. The ranks' bundles carry the real resources.
        return {"cpu": 0, "memory": 64 * 2**20}
    return {"cpu": cfg.train.cpus_per_worker, "gpu": cfg.train.gpus_per_worker}


def rung_epochs(space: SearchSpace, smoke_test: bool = False) -> tuple[int, ...]:
    """Epochs whose report must carry every objective: MO-ASHA's rungs (a trial is judged at its first
    report at or past one) and its max_t when that ends trials before train.epochs; with tune.record_curves,
    every epoch (learning curves for the simulator)."""
    t = space.tune
    if t.scheduler != "moasha" and not t.record_curves:
        return ()
    from coded_resnext.orchestration.moasha import rung_milestones

    epochs = space.base_config().train.epochs
    if smoke_test:
        from coded_resnext.orchestration.config import smoke_test_config

        epochs = smoke_test_config(space.base_config()).train.epochs
    if t.record_curves:  # every epoch (the last one runs the whole suite anyway): curves for the simulator
        return tuple(range(1, epochs))
    max_t = min(t.max_t or epochs, epochs)
    grace = min(t.grace_period, max_t - 1)
    marks = {math.ceil(m) for m in rung_milestones(grace, max_t, t.reduction_factor)} if grace >= 1 else set()
    if max_t < epochs:
        marks.add(max_t)
    return tuple(sorted(marks))


def reference_control_config(space: SearchSpace):
    """The reference control: the sweep's base config (nothing searched applied) as a plain ResNeXt."""
    cfg = space.base_config()
    cfg.model = dataclasses.replace(cfg.model, control=True)
    return cfg


def reference_suggestion(space: SearchSpace) -> dict[str, Any]:
    """The reference trial's Tune config: the flag, and each searched key at its base value ("base" when
    the base leaves it unset), so the trial table shows what it ran."""
    flat = space.base_config().flat()
    out: dict[str, Any] = {key: encode(flat[key]) if flat.get(key) is not None else "base" for key in space.domains}
    out[REFERENCE_KEY] = True
    return out


def architecture_before_training(cfg) -> dict[str, float]:
    """The architecture metrics (constraints.ARCHITECTURE_METRICS) of ``cfg``'s model, built on the meta
    device: no weights allocated; the data is read only when its class count is not known by name."""
    import torch

    from coded_resnext.evaluation.architecture import architecture_metrics
    from coded_resnext.evaluation.binary import choose_classes
    from coded_resnext.orchestration.search_space import KNOWN_SHAPES
    from coded_resnext.orchestration.training import build_model, data_spec

    shape = KNOWN_SHAPES.get(cfg.data.name)
    if shape is None:
        from coded_resnext.datasets import build_dataset

        bundle = build_dataset(data_spec(cfg))
        shape = (bundle.num_classes, bundle.in_chans)
    classes, chans = shape
    with torch.device("meta"):
        model = build_model(cfg, classes, chans)
    return architecture_metrics(model, choose_classes(classes, cfg.eval.binary_classes, cfg.seed))


def end_if_infeasible(cfg, lineage: Lineage, constraints) -> bool:
    """Check ``constraints`` on the architecture before training; an infeasible trial gets its MLflow run
    (tagged ``infeasible``, with the reason and the architecture metrics), reports once to Tune (the
    metrics and ``infeasible`` = 1, which the searcher turns into Optuna constraints) and ends."""
    import ray.tune

    metrics = architecture_before_training(cfg)
    broken = violated(constraints, metrics)
    if not broken:
        return False
    tags = {"role": "trial", "experiment_hash": cfg.experiment_hash, INFEASIBLE_KEY: "true"}
    tags["infeasible_reason"] = "; ".join(broken)
    tracker = lineage.open(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.run_name, None, tags)
    tracker.log_params(cfg.flat())
    tracker.log_metrics(metrics, step=0)
    tracker.finish("FINISHED")
    ray.tune.report({**metrics, "epoch": 0, INFEASIBLE_KEY: 1.0})
    return True


@dataclass
class SweepOutcome:
    parent_run_id: str
    experiment_path: str
    trials: list[dict[str, Any]]  # one row per trial: id, status, sampled values, objectives
    failed: int
    planned: int | None = None  # trials this Tune experiment was to run (None: unknown)
    interrupted: bool = False  # stopped (Ctrl-C) before every planned trial finished
    done: int | None = None  # trials finished (or failed) when it stopped
    resume_command: str = ""


class Sweep:
    def __init__(self, space: SearchSpace, tracking_uri: str | None, smoke_test: bool = False) -> None:
        self.space = space
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.smoke_test = smoke_test
        self.storage_path = storage_uri(space.tune.storage_path, Path("runs") / "ray")
        self.base_cfg = space.base_config()
        if smoke_test:
            from coded_resnext.orchestration.config import smoke_test_config

            self.base_cfg = smoke_test_config(self.base_cfg)

    # ---- naming and state ------------------------------------------------------------------------
    def experiment_names(self) -> list[str]:
        """The sweep's Tune experiments that exist in storage: the sweep itself, then its extensions."""
        from ray.tune import Tuner

        names = []
        for k in range(0, 1000):
            name = self.space.name if k == 0 else f"{self.space.name}-ext{k}"
            if not Tuner.can_restore(f"{self.storage_path}/{name}"):
                break
            names.append(name)
        return names

    def find_parent(self) -> str | None:
        tags = {"role": self.space.role, "sweep": self.space.name, "storage_path": self.storage_path}
        runs = find_runs(self.tracking_uri, self.base_cfg.tracking.experiment, tags)
        return runs[0].info.run_id if runs else None

    def open_parent(self, run_id: str | None) -> RunTracker:
        tracker = RunTracker(
            self.tracking_uri,
            self.base_cfg.tracking.experiment,
            run_id=run_id,
            run_name=f"{self.space.role}-{self.space.name}",
            tags={"role": self.space.role, "sweep": self.space.name, "storage_path": self.storage_path},
        )
        if self.base_cfg.tracking.system_metrics:  # the driver's machine (the head node) while the sweep runs
            tracker.start_system_metrics(self.base_cfg.tracking.system_metrics_interval)
        if run_id is None:
            t = self.space.tune
            params = {
                "search_space.hash": self.space.hash,
                "search_space.path": str(self.space.path),
                "search_space.keys": ",".join(self.space.domains),
                "tune.algorithm": t.algorithm,
                "tune.num_samples": t.num_samples,
                "tune.max_concurrent_trials": t.max_concurrent_trials,
                "tune.scheduler": t.scheduler,
                "tune.objectives": json.dumps(self._objectives()),
                "smoke_test": self.smoke_test,
            }
            params.update(
                {f"search.{k}": json.dumps(dataclasses.asdict(d), default=str) for k, d in self.space.domains.items()}
            )
            tracker.log_params(params)
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "search_space.yaml").write_text(self.space.text)
                (Path(tmp) / "base_config.yaml").write_text(self.base_cfg.to_yaml())
                tracker.log_artifacts(Path(tmp))
        return tracker

    def _objectives(self) -> dict[str, str]:
        t = self.space.tune
        return dict(t.objectives) if t.multi_objective else {t.metric: t.mode}

    # ---- Tune objects ---------------------------------------------------------------------------
    def _searcher(self, extension: int):
        t = self.space.tune
        return make_searcher(
            t,
            self._objectives(),
            extension,
            self.space.name,
            self.space.hash,
            constraints=parse_constraints(t.constraints),
            budget=("epoch", self._max_t()) if t.scheduler == "moasha" else None,
            reference=reference_suggestion(self.space) if self._adds_reference(extension) else None,
        )

    @property
    def searcher_url(self) -> str | None:
        """The Optuna study's database, for the Optuna searchers (None for random and grid)."""
        if self.space.tune.algorithm not in OPTUNA_ALGORITHMS:
            return None
        return storage_url(self.space.tune.searcher_storage, self.space.name)

    def planned_trials(self, samples: int) -> int:
        """Trials a Tune experiment of ``samples`` samples runs: each sample over every grid combination."""
        exhaustive = self.space.tune.algorithm == "grid"
        combos = 1
        for domain in self.space.domains.values():
            if domain.kind == "grid" or (exhaustive and domain.kind == "choice"):
                combos *= len(domain.values)
        return samples * combos

    def resume_command(self) -> str:
        """The command line that finishes this sweep after an interruption."""
        command = "ablate" if self.space.role == "ablation" else "tune"
        parts = ["coded-resnext", command, str(self.space.path), "--resume"]
        if command == "tune" and self.space.name != self.space.path.stem:
            parts += ["--name", self.space.name]
        if self.space.tune.storage_path:
            parts += ["--storage-path", self.space.tune.storage_path]
        if self.tracking_uri != default_tracking_uri():
            parts += ["--tracking-uri", redact_uri(self.tracking_uri)]
        if self.smoke_test:
            parts.append("--smoke-test")
        return " ".join(parts)

    def _scheduler(self):
        t = self.space.tune
        if t.scheduler == "moasha":
            return self._moasha()
        if t.scheduler != "asha":
            return None
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(
            time_attr="epoch",
            metric=t.metric,
            mode=t.mode,
            max_t=self.base_cfg.train.epochs + 1,  # never stop at the last epoch: its report carries the suite
            grace_period=t.grace_period,
            reduction_factor=t.reduction_factor,
        )

    def _trainable(self, ctx: TrialContext):
        from ray import tune

        space = self.space
        smoke = self.smoke_test

        def resources(sampled: dict[str, Any]) -> dict[str, float]:
            cfg = space.trial_config(sampled)
            if smoke:
                from coded_resnext.orchestration.config import smoke_test_config

                cfg = smoke_test_config(cfg)
            return trial_resources(cfg)

        return tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), resources)

    def _callbacks(self, parent_run_id: str) -> list:
        from coded_resnext.orchestration.tune_callbacks import LineReporter, TrialRunCloser

        return [
            LineReporter(list(self.space.domains), list(self._objectives()), self.base_cfg.train.epochs),
            TrialRunCloser(
                self.tracking_uri, self.base_cfg.tracking.experiment, parent_run_id, self.base_cfg.train.epochs
            ),
        ]

    def _tuner(self, name: str, parent_run_id: str, num_samples: int, extension: int):
        from ray import tune

        t = self.space.tune
        ctx = TrialContext(self.space, self.tracking_uri, parent_run_id, self.storage_path, name, self.smoke_test)
        scheduler = self._scheduler()
        return tune.Tuner(
            self._trainable(ctx),
            param_space=self.space.param_space(),
            tune_config=tune.TuneConfig(
                search_alg=self._searcher(extension),
                scheduler=scheduler,
                # concurrency: the searcher's limit (see _searcher); the reference control is one trial more
                num_samples=num_samples + int(self._adds_reference(extension)),
                # One-worker trials reuse their process (no new interpreter, torch import, data load per trial).
                reuse_actors=self.base_cfg.train.num_workers == 1,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=self.storage_path,
                callbacks=[
                    *self._callbacks(parent_run_id),
                    *self._progress_callbacks(parent_run_id, scheduler, extension),
                ],
                failure_config=tune.FailureConfig(max_failures=t.max_trial_failures),
                verbose=0,
            ),
        )

    # ---- MO-ASHA, hypervolume, reference control (issue 16) ----------------------------------------
    def _max_t(self) -> int:
        """Epochs a trial trains at most: tune.max_t, else train.epochs (a smoke test's shorter ones win)."""
        return min(self.space.tune.max_t or self.base_cfg.train.epochs, self.base_cfg.train.epochs)

    def _moasha(self):
        from coded_resnext.orchestration.moasha import MultiObjectiveASHA

        t = self.space.tune
        max_t = self._max_t()
        grace = min(t.grace_period, max_t - 1)  # a smoke test's 2 epochs keep one rung
        if grace < 1:
            return None  # 1-epoch trials: nothing to stop early
        return MultiObjectiveASHA(
            self._objectives(),
            time_attr="epoch",
            max_t=max_t,
            grace_period=grace,
            reduction_factor=t.reduction_factor,
            reference_point=t.reference_point,  # None: each rung's own worst values (see moasha.py)
            exempt_key=REFERENCE_KEY,
            # A trial ending at train.epochs ends by itself: stopping it at its last report would interrupt
            # the end of its run (as Sweep._scheduler's ASHA avoids with max_t = epochs + 1).
            stop_last_trials=max_t < self.base_cfg.train.epochs,
        )

    def _adds_reference(self, extension: int) -> bool:
        return self.space.tune.reference_control and extension == 0  # one per sweep, in its first experiment

    def _progress_callbacks(self, parent_run_id: str, scheduler, extension: int) -> list:
        """The scheduler's checkpoint carrier (MO-ASHA's rung records survive --resume) and, for several
        objectives, the parent run's hypervolume log."""
        callbacks = []
        if hasattr(scheduler, "state_callback"):
            callbacks.append(scheduler.state_callback())
        objectives = self._progress_objectives()
        if objectives:
            from coded_resnext.orchestration.tune_callbacks import SweepHypervolume

            callbacks.append(
                SweepHypervolume(
                    self.tracking_uri,
                    self.base_cfg.tracking.experiment,
                    parent_run_id,
                    objectives,
                    self.space.tune.reference_point or default_reference_point(objectives),
                    ("epoch", self._max_t()),
                    REFERENCE_KEY,
                    prior=self.hypervolume_prior(parent_run_id) if extension else None,
                )
            )
        return callbacks

    def _progress_objectives(self) -> dict[str, str] | None:
        """The objectives the hypervolume is measured over: a multi-objective sweep's, and tune.objectives for
        random and grid search too (they optimize nothing, so any trade-off can be measured on them)."""
        t = self.space.tune
        if t.multi_objective:
            return self._objectives()
        return dict(t.objectives) if t.algorithm in ("random", "grid") and len(t.objectives) >= 2 else None

    def hypervolume_prior(self, parent_run_id: str) -> dict:
        """What an extension's hypervolume log starts from: the parent's last step and epochs, and the
        objectives of the earlier trials that trained their full budget (read from MLflow)."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.tracking_uri)
        history = client.get_metric_history(parent_run_id, "sweep/epochs_used")
        last = max(history, key=lambda m: m.step, default=None)
        parent = client.get_run(parent_run_id)
        children = client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"
        )
        objectives = self._progress_objectives() or {}
        points = {}
        for run in children:
            tags, metrics = run.data.tags, run.data.metrics
            skip = tags.get("early_stopped") == "true" or tags.get(INFEASIBLE_KEY) == "true" or REFERENCE_KEY in tags
            if run.info.status == "FINISHED" and not skip and all(k in metrics for k in objectives):
                points[tags.get("trial_id", run.info.run_id)] = {k: metrics[k] for k in objectives}
        return {"points": points, "ended": last.step if last else 0, "epochs_before": last.value if last else 0.0}

    # ---- commands -------------------------------------------------------------------------------
    def check(self, resume: bool = False, extend: int | None = None) -> tuple[list[str], str | None]:
        """The sweep's existing Tune experiments and parent run; refuses a resume or extension of
        nothing, and a fresh start over an existing sweep. Needs no running Ray."""
        existing = self.experiment_names()
        parent_id = self.find_parent() if existing else None  # nothing in storage: leave the store untouched
        if resume or extend:
            if not existing or parent_id is None:
                raise UserError(
                    f"sweep {self.space.name!r}: nothing to {'resume' if resume else 'extend'} in {self.storage_path} "
                    f"(tracking {self.tracking_uri}); run it without --resume/--extend first"
                )
        elif existing:
            raise UserError(
                f"sweep {self.space.name!r} already exists in {self.storage_path}; pass --resume to finish it, "
                "--extend N to add trials, or set tune.name (or --name) for a new sweep"
            )
        if self.searcher_url is not None:
            given = self.space.tune.searcher_storage is not None
            check_study(
                self.searcher_url, self.space.name, self.space.hash, continuing=bool(resume or extend), given=given
            )
        return existing, parent_id

    def run(self, resume: bool = False, extend: int | None = None) -> SweepOutcome:
        from ray import tune

        existing, parent_id = self.check(resume, extend)
        parent = self.open_parent(parent_id if (resume or extend) else None)
        say = print
        extension = len(existing) if extend else 0
        name = existing[-1] if resume else self.space.name if not extend else f"{self.space.name}-ext{extension}"
        path = f"{self.storage_path}/{name}"
        try:
            if resume or extend:
                self._reconcile(parent.run_id, path if resume else None, say)
            if resume:
                say(f"resuming sweep {self.space.name!r} ({name}) from {path}")
                ctx = TrialContext(
                    self.space, self.tracking_uri, parent.run_id, self.storage_path, name, self.smoke_test
                )
                tuner = tune.Tuner.restore(
                    path,
                    trainable=self._trainable(ctx),
                    resume_unfinished=True,
                    resume_errored=True,
                    param_space=self.space.param_space(),
                )
            else:
                samples = extend or self.space.tune.num_samples
                planned = self.planned_trials(samples)
                parent.set_tags({f"planned_trials.{name}": str(planned)})
                say(
                    f"sweep {self.space.name!r}: {planned} trial(s), {self.space.tune.algorithm} search over "
                    f"{', '.join(self.space.domains) or 'nothing'}; MLflow parent run {parent.run_id}"
                )
                tuner = self._tuner(name, parent.run_id, samples, extension)
            grid = tuner.fit()
        except KeyboardInterrupt:  # a second Ctrl-C, or one before Tune took over
            from coded_resnext.orchestration.reconcile import trial_statuses, unfinished

            waiting = set(unfinished(trial_statuses(path)))
            self._close_interrupted(parent.run_id, path, lambda trial_id: trial_id in waiting)
            parent.finish("KILLED")
            raise
        except BaseException:
            parent.finish("FAILED")
            raise
        rows = self._summarize(grid)
        failed = sum(1 for r in rows if r["status"] == "ERROR")
        outcome = SweepOutcome(parent.run_id, path, rows, failed, self._planned(parent, name))
        if self._interrupted(outcome, parent):
            return outcome
        parent.set_tags({"interrupted": "false", "runs_done": f"{len(rows)}/{outcome.planned or len(rows)}"})
        self._log_summary(parent, rows)
        parent.finish("FINISHED" if not failed else "FAILED")
        return outcome

    def _planned(self, parent: RunTracker, name: str) -> int | None:
        from coded_resnext.orchestration.tracking import call_with_retry

        parent.flush()  # the tag written at the start, if it waited for the store
        tags = call_with_retry(
            lambda: parent.client.get_run(parent.run_id).data.tags,
            what="read the parent run",
            display_uri=parent.display_uri,
            deadline=time.monotonic() + 60,
        )
        value = tags.get(f"planned_trials.{name}")
        return int(value) if value and value.isdigit() else None

    def _reconcile(self, parent_run_id: str, experiment_path: str | None, say) -> None:
        """Before resuming ``experiment_path`` (or extending: None): close the child runs no restored trial
        will continue, and fail their Optuna trials."""
        from coded_resnext.orchestration.reconcile import close_child_runs, trial_statuses

        known = set(trial_statuses(experiment_path)) if experiment_path else set()
        reason = (
            "its sweep's driver was killed before Tune recorded this trial; the resumed sweep ran another "
            "configuration in its place"
        )
        experiment = self.base_cfg.tracking.experiment
        closed = close_child_runs(
            self.tracking_uri, experiment, parent_run_id, lambda trial_id: trial_id not in known, "KILLED", reason
        )
        failed = fail_orphans(self.searcher_url, self.space.name, known) if self.searcher_url else 0
        if closed or failed:
            say(
                f"reconciled: {len(closed)} trial run(s) the killed driver left RUNNING closed as KILLED "
                f"({', '.join(closed) or 'none'}); {failed} Optuna trial(s) marked failed"
            )

    def _close_interrupted(self, parent_run_id: str, path: str, select) -> list[str]:
        from coded_resnext.orchestration.reconcile import close_child_runs

        reason = f"interrupted (Ctrl-C) before it finished; continue with: {self.resume_command()}"
        # FAILED too: the Ctrl-C reaches the trial's process, whose loop then fails its own run
        return close_child_runs(
            self.tracking_uri, self.base_cfg.tracking.experiment, parent_run_id, select, "KILLED", reason,
            among=("RUNNING", "FAILED"),
        )  # fmt: skip

    def _interrupted(self, outcome: SweepOutcome, parent: RunTracker) -> bool:
        """Tune ends ``fit`` normally on Ctrl-C, with trials unfinished: say so, close their runs, mark the
        parent KILLED with what is done and how to go on. True when that was the case."""
        from coded_resnext.orchestration.reconcile import trial_statuses, unfinished

        statuses = trial_statuses(outcome.experiment_path)
        waiting = set(unfinished(statuses))
        done = len(statuses) - len(waiting)
        planned = outcome.planned if outcome.planned is not None else len(statuses)
        if not waiting and done >= planned:
            return False
        self._close_interrupted(parent.run_id, outcome.experiment_path, lambda trial_id: trial_id in waiting)
        outcome.interrupted = True
        outcome.done = done
        outcome.resume_command = self.resume_command()
        outcome.trials = [r for r in outcome.trials if r["trial_id"] not in waiting]
        parent.set_tags(
            {"interrupted": "true", "runs_done": f"{done}/{planned}", "resume_command": outcome.resume_command}
        )
        parent.finish("KILLED")
        return True

    def _summarize(self, grid) -> list[dict[str, Any]]:
        rows = []
        objectives = self._objectives()
        for result in grid:
            metrics = result.metrics or {}
            row = {
                "trial_id": metrics.get("trial_id") or Path(result.path).name,
                "status": "ERROR" if result.error else "OK",
            }
            row.update({k: decode(v) for k, v in (result.config or {}).items()})
            row.update({k: metrics.get(k) for k in objectives})
            row["epochs_done"] = metrics.get("epoch")
            rows.append(row)
        return rows

    def _log_summary(self, parent: RunTracker, rows: list[dict[str, Any]]) -> None:
        import pandas as pd

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "trials.csv"
            pd.DataFrame(rows).to_csv(path, index=False)
            parent.log_artifact(path)
        parent.log_metrics(
            {"sweep/trials": len(rows), "sweep/failed": sum(r["status"] == "ERROR" for r in rows)}, step=0
        )


def print_outcome(
    outcome: SweepOutcome, objectives: dict[str, str], tracking_uri: str, experiment: str, stream=None
) -> None:
    stream = stream or sys.stdout
    ok = [r for r in outcome.trials if r["status"] == "OK" and all(r.get(k) is not None for k in objectives)]
    if outcome.interrupted:
        print(
            f"\nINTERRUPTED: {outcome.done} of {outcome.planned or '?'} trials done; "
            f"continue with:\n  {outcome.resume_command}",
            file=stream,
        )
    else:
        print(f"\n{len(outcome.trials)} trials ({outcome.failed} failed)", file=stream)
    if ok:
        key, mode = next(iter(objectives.items()))
        best = sorted(ok, key=lambda r: r[key], reverse=mode == "max")[:5]
        print(f"best by {key}:", file=stream)
        for r in best:
            values = "  ".join(f"{k}={r[k]:.4f}" for k in objectives)
            print(f"  {r['trial_id']}: {values}", file=stream)
    print(f"\nMLflow parent run {outcome.parent_run_id} at {tracking_uri}", file=stream)
    print(f"Tune experiment: {outcome.experiment_path}", file=stream)
    if tracking_uri.startswith("sqlite:"):
        print(f"look at it with:  mlflow ui --backend-store-uri {tracking_uri}", file=stream)
    print(f"report:           coded-resnext report {experiment} --out report/", file=stream)
