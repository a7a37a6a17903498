"""The driver side of a sweep: a search space run on Ray Tune, one nested MLflow child run per trial under
one parent run. What runs inside a trial is ``trial.py``.

Searchers: random / grid (``BasicVariantGenerator``), Optuna TPE, and multi-objective Optuna (NSGA-II or
multi-objective TPE). An Optuna study travels with the sweep's Tune experiment (Tune checkpoints the
searcher into the storage path; ``tune.searcher_storage`` puts it in a database instead), so ``--resume``
and ``--extend`` continue the same study, from any driver: the sampler sees every earlier trial
(``searcher.py``).

Early stopping and the sweep's progress: ``tune.scheduler: moasha`` (``moasha.py``; its rung epochs report
every objective), ``tune.constraints`` checked on the architecture before a trial trains
(``trial.end_if_infeasible``), ``sweep/hypervolume`` on the parent run (``tune_callbacks.SweepHypervolume``)
and ``tune.reference_control`` (one plain-control trial, hidden from the searcher by
``reference_control.WithReferenceControl``).

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
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from coded_resnext.orchestration.config import smoke_test_config
from coded_resnext.orchestration.constraints import parse_constraints
from coded_resnext.orchestration.errors import UserError
from coded_resnext.orchestration.moasha import MultiObjectiveASHA
from coded_resnext.orchestration.ray_runtime import check_storage, storage_uri
from coded_resnext.orchestration.reconcile import close_child_runs, trial_statuses, unfinished
from coded_resnext.orchestration.redaction import redact_uri
from coded_resnext.orchestration.search_space import CELL_KEY, SearchSpace, decode, default_reference_point, encode
from coded_resnext.orchestration.searcher import (
    OPTUNA_ALGORITHMS,
    carried_storage,
    check_study,
    fail_orphans,
    make_searcher,
    storage_url,
)
from coded_resnext.orchestration.store import call_with_retry, default_tracking_uri, find_runs
from coded_resnext.orchestration.sweep_summary import SweepFacts, runs_view, sweep_note, try_standing
from coded_resnext.orchestration.tracking import RunTracker
from coded_resnext.orchestration.trial import REFERENCE_KEY, TrialContext, run_trial, trial_resources
from coded_resnext.orchestration.tune_callbacks import LineReporter, SweepHypervolume, TrialRunCloser
from coded_resnext.results.schema import Role, Tag

logger = logging.getLogger(__name__)


def reference_suggestion(space: SearchSpace) -> dict[str, Any]:
    """The reference trial's Tune config: the flag, and each searched key at its base value ("base" when
    the base leaves it unset), so the trial table shows what it ran."""
    flat = space.base_config().flat()
    out: dict[str, Any] = {key: encode(flat[key]) if flat.get(key) is not None else "base" for key in space.domains}
    out[REFERENCE_KEY] = True
    return out


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
    # every finished trial run of the sweep (extensions: the earlier ones too) with its front and reference
    # marks (sweep_summary.standing); None when the store could not be read
    standing: pd.DataFrame | None = None
    experiment_id: str | None = None  # the MLflow experiment of the parent run (for links to its UI)
    locations: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (what, where) it kept its state


class Sweep:
    def __init__(self, space: SearchSpace, tracking_uri: str | None, smoke_test: bool = False) -> None:
        self.space = space
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.smoke_test = smoke_test
        self.storage_path = storage_uri(space.tune.storage_path, Path("runs") / "ray")
        self.base_cfg = space.base_config()
        if smoke_test:
            self.base_cfg = smoke_test_config(self.base_cfg)

    # ---- naming and state ------------------------------------------------------------------------
    def experiment_name(self, extension: int) -> str:
        """The Tune experiment of the sweep (0) or of its ``extension``-th extension."""
        return self.space.name if extension == 0 else f"{self.space.name}-ext{extension}"

    def experiment_names(self) -> list[str]:
        """The sweep's Tune experiments that exist in storage: the sweep itself, then its extensions."""
        names = []
        for k in range(0, 1000):
            name = self.experiment_name(k)
            if not tune.Tuner.can_restore(f"{self.storage_path}/{name}"):
                break
            names.append(name)
        return names

    def find_parent(self) -> str | None:
        tags = {Tag.ROLE: self.space.role, Tag.SWEEP: self.space.name, Tag.STORAGE_PATH: self.storage_path}
        runs = find_runs(self.tracking_uri, self.base_cfg.tracking.experiment, tags)
        return runs[0].info.run_id if runs else None

    def open_parent(self, run_id: str | None) -> RunTracker:
        tracker = RunTracker(
            self.tracking_uri,
            self.base_cfg.tracking.experiment,
            run_id=run_id,
            run_name=f"{self.space.role}-{self.space.name}",
            tags={Tag.ROLE: self.space.role, Tag.SWEEP: self.space.name, Tag.STORAGE_PATH: self.storage_path},
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

    def facts(self) -> SweepFacts:
        return SweepFacts(
            name=self.space.name,
            role=self.space.role,
            experiment=self.base_cfg.tracking.experiment,
            tracking_uri=redact_uri(self.tracking_uri),
            default_tracking_uri=self.tracking_uri == default_tracking_uri(),
            algorithm=self.space.tune.algorithm,
            searched=[k for k in self.space.domains if k != CELL_KEY],
            space_path=str(self.space.path),
            objectives=self._objectives(),
        )

    def describe(self, parent: RunTracker, status: str, ranked: pd.DataFrame | None = None) -> None:
        """The parent run's description in MLflow's UI (``sweep_summary.sweep_note``)."""
        parent.set_tags({Tag.NOTE: sweep_note(self.facts(), parent.run_id, status, ranked, parent.experiment_id)})

    def _objectives(self) -> dict[str, str]:
        t = self.space.tune
        return dict(t.objectives) if t.multi_objective else {t.metric: t.mode}

    # ---- Tune objects ---------------------------------------------------------------------------
    def _searcher(self, extension: int):
        t = self.space.tune
        carried = None
        if extension and t.algorithm in OPTUNA_ALGORITHMS and self.searcher_url is None:
            # the study as the previous experiment's last checkpoint left it (it holds every earlier trial)
            carried = carried_storage(f"{self.storage_path}/{self.experiment_name(extension - 1)}")
        return make_searcher(
            t,
            self._objectives(),
            extension,
            self.space.name,
            self.space.hash,
            constraints=parse_constraints(t.constraints),
            budget=("epoch", self._max_t()) if t.scheduler == "moasha" else None,
            reference=reference_suggestion(self.space) if self._adds_reference(extension) else None,
            carried=carried,
        )

    @property
    def searcher_url(self) -> str | None:
        """The Optuna study's database, when one was given (None: random and grid, or a study that travels
        with the Tune experiment's checkpoints)."""
        if self.space.tune.algorithm not in OPTUNA_ALGORITHMS:
            return None
        return storage_url(self.space.tune.searcher_storage)

    def planned_trials(self, samples: int) -> int:
        """Trials a Tune experiment of ``samples`` samples runs: each sample over every grid combination."""
        exhaustive = self.space.tune.algorithm == "grid"
        combos = 1
        for domain in self.space.domains.values():
            if domain.kind == "grid" or (exhaustive and domain.kind == "choice"):
                combos *= len(domain.values)
        return samples * combos

    def locations(self) -> list[tuple[str, str]]:
        """Where the sweep keeps its state, each with whether it is a default under the working directory
        (said in the closing summary: the one case a sweep writes into the directory it was started from)."""
        cwd_default = "the default, under the working directory; {} to put it elsewhere"
        tracking = self.tracking_uri
        if self.tracking_uri == default_tracking_uri():
            tracking += f" ({cwd_default.format('--tracking-uri')})"
        storage = self.storage_path
        if not self.space.tune.storage_path:
            storage += f" ({cwd_default.format('--storage-path')})"
        out = [("tracking store", redact_uri(tracking)), ("Tune storage", storage)]
        if self.space.tune.algorithm in OPTUNA_ALGORITHMS:
            url = self.searcher_url
            out.append(
                ("searcher's study", redact_uri(url) if url else "with the Tune experiment (searcher-state-*.pkl)")
            )
        return out

    def resume_command(self) -> str:
        """The command line that finishes this sweep after an interruption."""
        command = "ablate" if self.space.role == Role.ABLATION else "tune"
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

        return ASHAScheduler(
            time_attr="epoch",
            metric=t.metric,
            mode=t.mode,
            max_t=self.base_cfg.train.epochs + 1,  # never stop at the last epoch: its report carries the suite
            grace_period=t.grace_period,
            reduction_factor=t.reduction_factor,
        )

    def _trainable(self, ctx: TrialContext):
        space = self.space
        smoke = self.smoke_test

        def resources(sampled: dict[str, Any]) -> dict[str, float]:
            cfg = space.trial_config(sampled)
            if smoke:
                cfg = smoke_test_config(cfg)
            return trial_resources(cfg)

        return tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), resources)

    def _callbacks(self, parent_run_id: str) -> list:
        return [
            LineReporter(list(self.space.domains), list(self._objectives()), self.base_cfg.train.epochs),
            TrialRunCloser(
                self.tracking_uri, self.base_cfg.tracking.experiment, parent_run_id, self.base_cfg.train.epochs
            ),
        ]

    def _tuner(self, name: str, parent_run_id: str, num_samples: int, extension: int):
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
        client = MlflowClient(self.tracking_uri)
        history = client.get_metric_history(parent_run_id, "sweep/epochs_used")
        last = max(history, key=lambda m: m.step, default=None)
        parent = client.get_run(parent_run_id)
        children = client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.`{Tag.PARENT_RUN}` = '{parent_run_id}'"
        )
        objectives = self._progress_objectives() or {}
        points = {}
        for run in children:
            tags, metrics = run.data.tags, run.data.metrics
            skip = tags.get(Tag.EARLY_STOPPED) == "true" or tags.get(Tag.INFEASIBLE) == "true" or REFERENCE_KEY in tags
            if run.info.status == "FINISHED" and not skip and all(k in metrics for k in objectives):
                points[tags.get(Tag.TRIAL_ID, run.info.run_id)] = {k: metrics[k] for k in objectives}
        return {"points": points, "ended": last.step if last else 0, "epochs_before": last.value if last else 0.0}

    # ---- commands -------------------------------------------------------------------------------
    def check(self, resume: bool = False, extend: int | None = None) -> tuple[list[str], str | None]:
        """The sweep's existing Tune experiments and parent run; refuses a resume or extension of
        nothing, and a fresh start over an existing sweep. Needs no running Ray."""
        check_storage(self.storage_path)
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
            check_study(self.searcher_url, self.space.name, self.space.hash, continuing=bool(resume or extend))
        elif parent_id is not None and self.space.tune.algorithm in OPTUNA_ALGORITHMS:
            self._check_same_space(parent_id)
        return existing, parent_id

    def _check_same_space(self, parent_id: str) -> None:
        """A study carried with the experiment was made by the space whose hash the parent run records:
        continuing it with another space would feed the sampler trials from a different search."""
        client = MlflowClient(self.tracking_uri)
        params = call_with_retry(
            lambda: client.get_run(parent_id).data.params,
            what="read the sweep's parent run",
            display_uri=redact_uri(self.tracking_uri),
            deadline=time.monotonic() + 120,
        )
        found = params.get("search_space.hash")
        if found is not None and found != self.space.hash:
            raise UserError(
                f"sweep {self.space.name!r} in {self.storage_path} was made by another search space (hash {found}, "
                f"this one {self.space.hash}); set tune.name (or --name) for a new sweep, or restore the space it was "
                "made with"
            )

    def run(self, resume: bool = False, extend: int | None = None) -> SweepOutcome:
        existing, parent_id = self.check(resume, extend)
        parent = self.open_parent(parent_id if (resume or extend) else None)
        extension = len(existing) if extend else 0
        name = existing[-1] if resume else self.space.name if not extend else f"{self.space.name}-ext{extension}"
        path = f"{self.storage_path}/{name}"
        parent.set_experiment_tags(runs_view(self.facts(), parent.run_id))  # the runs table the links open
        action = "resumed" if resume else f"extending by {extend} trial(s)" if extend else "running"
        self.describe(parent, f"{action} (Tune experiment `{name}`); the front below is of the trials finished so far")
        try:
            if resume or extend:
                self._reconcile(parent.run_id, path if resume else None)
            if resume:
                logger.info("resuming sweep %r (%s) from %s", self.space.name, name, path)
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
                parent.set_tags({f"{Tag.PLANNED_TRIALS}.{name}": str(planned)})
                logger.info(
                    "sweep %r: %d trial(s), %s search over %s; MLflow parent run %s",
                    self.space.name,
                    planned,
                    self.space.tune.algorithm,
                    ", ".join(self.space.domains) or "nothing",
                    parent.run_id,
                )
                tuner = self._tuner(name, parent.run_id, samples, extension)
            grid = tuner.fit()
        except KeyboardInterrupt:  # a second Ctrl-C, or one before Tune took over
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
        outcome.experiment_id = parent.experiment_id
        experiment = self.base_cfg.tracking.experiment
        outcome.locations = self.locations()
        if self._interrupted(outcome, parent):
            outcome.standing = try_standing(self.tracking_uri, experiment, parent.run_id, self._objectives())
            status = f"interrupted after {outcome.done} of {outcome.planned or '?'} trials; continue with "
            self.describe(parent, f"{status}`{outcome.resume_command}`", outcome.standing)
            parent.finish("KILLED")
            return outcome
        parent.set_tags({Tag.INTERRUPTED: "false", Tag.RUNS_DONE: f"{len(rows)}/{outcome.planned or len(rows)}"})
        self._log_summary(parent, rows)
        outcome.standing = try_standing(self.tracking_uri, experiment, parent.run_id, self._objectives())
        self.describe(parent, f"finished: {len(rows)} trials, {failed} failed", outcome.standing)
        parent.finish("FINISHED" if not failed else "FAILED")
        return outcome

    def _planned(self, parent: RunTracker, name: str) -> int | None:
        parent.flush()  # the tag written at the start, if it waited for the store
        tags = call_with_retry(
            lambda: parent.client.get_run(parent.run_id).data.tags,
            what="read the parent run",
            display_uri=parent.display_uri,
            deadline=time.monotonic() + 60,
        )
        value = tags.get(f"{Tag.PLANNED_TRIALS}.{name}")
        return int(value) if value and value.isdigit() else None

    def _reconcile(self, parent_run_id: str, experiment_path: str | None) -> None:
        """Before resuming ``experiment_path`` (or extending: None): close the child runs no restored trial
        will continue, and fail their Optuna trials."""
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
            logger.info(
                "reconciled: %d trial run(s) the killed driver left RUNNING closed as KILLED (%s); %d Optuna "
                "trial(s) marked failed",
                len(closed),
                ", ".join(closed) or "none",
                failed,
            )

    def _close_interrupted(self, parent_run_id: str, path: str, select) -> list[str]:
        reason = f"interrupted (Ctrl-C) before it finished; continue with: {self.resume_command()}"
        # FAILED too: the Ctrl-C reaches the trial's process, whose loop then fails its own run
        return close_child_runs(
            self.tracking_uri, self.base_cfg.tracking.experiment, parent_run_id, select, "KILLED", reason,
            among=("RUNNING", "FAILED"),
        )  # fmt: skip

    def _interrupted(self, outcome: SweepOutcome, parent: RunTracker) -> bool:
        """Tune ends ``fit`` normally on Ctrl-C, with trials unfinished: say so, close their runs, tag the
        parent with what is done and how to go on (the caller marks it KILLED). True when that was the case."""
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
        outcome.trials = [r for r in outcome.trials if r[Tag.TRIAL_ID] not in waiting]
        parent.set_tags(
            {Tag.INTERRUPTED: "true", Tag.RUNS_DONE: f"{done}/{planned}", Tag.RESUME_COMMAND: outcome.resume_command}
        )
        return True

    def _summarize(self, grid) -> list[dict[str, Any]]:
        rows = []
        objectives = self._objectives()
        for result in grid:
            metrics = result.metrics or {}
            row = {
                Tag.TRIAL_ID: metrics.get(Tag.TRIAL_ID) or Path(result.path).name,
                "status": "ERROR" if result.error else "OK",
            }
            row.update({k: decode(v) for k, v in (result.config or {}).items()})
            row.update({k: metrics.get(k) for k in objectives})
            row["epochs_done"] = metrics.get("epoch")
            rows.append(row)
        return rows

    def _log_summary(self, parent: RunTracker, rows: list[dict[str, Any]]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "trials.csv"
            pd.DataFrame(rows).to_csv(path, index=False)
            parent.log_artifact(path)
        parent.log_metrics(
            {"sweep/trials": len(rows), "sweep/failed": sum(r["status"] == "ERROR" for r in rows)}, step=0
        )
