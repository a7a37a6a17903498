"""The trial side of a sweep: what runs inside a Tune trial's process.

One trial = one training run, nested under the sweep's parent MLflow run. A one-worker trial trains in the
trial's own process (``TuneSession``: checkpoints through ``ray.tune.report``); more workers launch a
``TorchTrainer`` whose rank 0 reports to Tune through ``TuneReportCallback``, named after the trial id so a
restored trial's trainer resumes from its own last checkpoint. Before training, a trial checks the
search's constraints on its architecture (built on the meta device) and ends as infeasible when one fails.

The driver side (the Tuner, the searcher, the parent run, resume and extend) is ``sweep.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import ray.tune
import torch
from ray.tune.integration.ray_train import TuneReportCallback

from coded_resnext.datasets import build_dataset, dataset_shape
from coded_resnext.evaluation.architecture import architecture_metrics
from coded_resnext.evaluation.binary import choose_classes
from coded_resnext.orchestration.build import build_model, data_spec
from coded_resnext.orchestration.config import smoke_test_config
from coded_resnext.orchestration.constraints import INFEASIBLE_KEY, parse_constraints, violated
from coded_resnext.orchestration.lineage import Lineage
from coded_resnext.orchestration.moasha import judged_epochs
from coded_resnext.orchestration.ray_train import make_trainer
from coded_resnext.orchestration.resources import ResourceError
from coded_resnext.orchestration.search_space import CELL_KEY, SearchSpace
from coded_resnext.orchestration.sessions import TuneSession
from coded_resnext.orchestration.training import Progress, train_loop
from coded_resnext.results.labels import describe, trial_run_name
from coded_resnext.results.schema import Role, Tag

REFERENCE_KEY = Tag.REFERENCE_CONTROL  # the reference-control trial's config flag, and its MLflow tag


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
    reference = bool(sampled.get(REFERENCE_KEY))
    cfg = reference_control_config(ctx.space) if reference else ctx.space.trial_config(sampled)
    if ctx.smoke_test:
        cfg = smoke_test_config(cfg)
    cfg.train = dataclasses.replace(cfg.train, progress="none")
    trial_id = ray.tune.get_context().get_trial_id()
    name = cfg.tracking.run_name or trial_run_name(trial_id, trial_description(ctx, sampled, cfg))
    cfg.tracking = dataclasses.replace(cfg.tracking, uri=ctx.tracking_uri, run_name=name)
    lineage = Lineage(
        tracking_uri=ctx.tracking_uri,
        parent_run_id=ctx.parent_run_id,
        trial_id=trial_id,
        tags={Tag.SWEEP: ctx.space.name, Tag.TUNE_EXPERIMENT: ctx.experiment_name},
    )
    if CELL_KEY in sampled:
        lineage.tags[CELL_KEY] = sampled[CELL_KEY]
    if reference:
        lineage.tags[REFERENCE_KEY] = "true"
    elif ctx.space.tune.constraints and end_if_infeasible(cfg, lineage, parse_constraints(ctx.space.tune.constraints)):
        return
    if cfg.train.num_workers == 1:
        torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
        try:
            train_loop(cfg, TuneSession(), lineage, Progress("none", cfg.train.epochs), rung_epochs=ctx.rung_epochs)
        except ResourceError as err:
            if not err.before_allocation:
                raise
            end_infeasible(cfg, lineage, str(err), architecture_before_training(cfg))  # as a failed constraint
        return

    trainer = make_trainer(
        cfg,
        lineage,
        storage_path=ctx.storage_path,
        name=f"{ctx.experiment_name}-train-{trial_id}",
        callbacks=[TuneReportCallback()],
        rung_epochs=ctx.rung_epochs,
    )
    trainer.fit()


def trial_description(ctx: TrialContext, sampled: dict[str, Any], cfg) -> str:
    """What the trial ran, in short: the searched keys' values (``c3=gen 4 d4, mu=3.81``), an ablation's
    cell, or the reference control."""
    if sampled.get(REFERENCE_KEY):
        return "reference control: plain ResNeXt, base config"
    flat = cfg.flat()
    values = {k: flat[k] for k in ctx.space.domains if k in flat}
    cell = f"cell {sampled[CELL_KEY]}" if CELL_KEY in sampled else ""
    return ", ".join(part for part in (cell, describe(values)) if part) or "base config"


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

    epochs = space.base_config().train.epochs
    if smoke_test:
        epochs = smoke_test_config(space.base_config()).train.epochs
    if t.record_curves:  # every epoch (the last one runs the whole suite anyway): curves for the simulator
        return tuple(range(1, epochs))
    return judged_epochs(t.grace_period, t.max_t, t.reduction_factor, epochs)


def reference_control_config(space: SearchSpace):
    """The reference control: the sweep's base config (nothing searched applied) as a plain ResNeXt."""
    cfg = space.base_config()
    cfg.model = dataclasses.replace(cfg.model, control=True)
    return cfg


def architecture_before_training(cfg) -> dict[str, float]:
    """The architecture metrics (constraints.ARCHITECTURE_METRICS) of ``cfg``'s model, built on the meta
    device: no weights allocated; the data is read only when its class count is not known by name."""
    shape = dataset_shape(cfg.data.name)
    if shape is None:
        bundle = build_dataset(data_spec(cfg))
        shape = (bundle.num_classes, bundle.in_chans)
    classes, chans = shape
    with torch.device("meta"):  # the extracted classifiers too: a model of terabytes is measured, not allocated
        model = build_model(cfg, classes, chans)
        return architecture_metrics(model, choose_classes(classes, cfg.eval.binary_classes, cfg.seed))


def end_if_infeasible(cfg, lineage: Lineage, constraints) -> bool:
    """Check ``constraints`` on the architecture before training; an infeasible trial gets its MLflow run
    (tagged ``infeasible``, with the reason and the architecture metrics), reports once to Tune (the
    metrics and ``infeasible`` = 1, which the searcher turns into Optuna constraints) and ends."""
    metrics = architecture_before_training(cfg)
    broken = violated(constraints, metrics)
    if not broken:
        return False
    end_infeasible(cfg, lineage, "; ".join(broken), metrics)
    return True


def end_infeasible(cfg, lineage: Lineage, reason: str, metrics: dict[str, float]) -> None:
    """End a trial that cannot or must not train (a failed constraint, a configuration too large for its
    device): its MLflow run, tagged ``infeasible`` with ``reason`` and ``metrics``, finished at once, and
    one report to Tune with ``infeasible`` = 1, which the searcher tells Optuna as a pruned trial."""
    tags = {Tag.ROLE: Role.TRIAL, Tag.EXPERIMENT_HASH: cfg.experiment_hash, Tag.INFEASIBLE: "true"}
    tags[Tag.INFEASIBLE_REASON] = reason
    tracker = lineage.open(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.run_name, None, tags)
    tracker.log_params(cfg.flat())
    tracker.log_metrics(metrics, step=0)
    tracker.finish("FINISHED")
    ray.tune.report({**metrics, "epoch": 0, INFEASIBLE_KEY: 1.0})
