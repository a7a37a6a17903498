"""Training one Coded ResNeXt from a ``RunConfig``: data -> model -> loop -> evaluation -> tracking.

Plain functions (``build_model``, ``train_epoch``, ``fit``) in the style of Ray's Train examples; the
MLflow calls go through ``RunTracker`` and the checkpoint calls through ``checkpoint.py``, so the loop
reads top to bottom. Checkpoints hold model, optimizer, scheduler, epoch, RNG states and the MLflow run
id; ``resume`` continues from the last one into the same MLflow run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from coded_resnext import CodedResNeXt, model_config
from coded_resnext.coding import CodingScheme, resolve_scheme
from coded_resnext.coding.defaults import GeneratedScheme
from coded_resnext.datasets import DatasetBundle, DataSpec, build_dataset, build_ood_dataset
from coded_resnext.datasets.sampling import stratified_subset
from coded_resnext.evaluation import SuiteData, evaluate, run_suite
from coded_resnext.evaluation.binary import choose_classes
from coded_resnext.evaluation.rung import rung_evaluation
from coded_resnext.evaluation.suite import SuiteResult
from coded_resnext.models.config import SCHEME_OFF, StageConfig
from coded_resnext.orchestration import acceleration
from coded_resnext.orchestration.acceleration import Precision
from coded_resnext.orchestration.checkpoint import save_checkpoint
from coded_resnext.orchestration.config import RunConfig, SchemeGenerator
from coded_resnext.orchestration.errors import UserError
from coded_resnext.orchestration.lineage import Lineage
from coded_resnext.orchestration.provenance import log_provenance
from coded_resnext.orchestration.sessions import LocalSession, Session
from coded_resnext.orchestration.system_metrics import start_on_every_rank
from coded_resnext.orchestration.tracking import RunTracker

Say = Callable[[str], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(preference: str) -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device=cuda but no GPU is visible; use train.device=auto or cpu")
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


# ---- building ---------------------------------------------------------------------------------------
def data_spec(cfg: RunConfig) -> DataSpec:
    d = cfg.data
    return DataSpec(
        name=d.name,
        root=d.root,
        download=d.download,
        val_fraction=d.val_fraction,
        split_seed=d.split_seed,
        randaugment=tuple(d.randaugment) if d.randaugment else None,
        randaugment_order=d.randaugment_order,
        augment=d.augment,
        image_size=d.image_size,
        limit_train=d.limit_train,
        limit_val=d.limit_val,
        limit_test=d.limit_test,
    )


def _scheme_spec(value: str | SchemeGenerator | None) -> str | GeneratedScheme | None:
    if isinstance(value, SchemeGenerator):  # branches, when given, resize the stage (see build_model)
        return GeneratedScheme(value.active, value.min_distance, value.seed)
    return value


def _stage_spec(cfg: RunConfig, stage: StageConfig) -> Any:
    """The config's scheme spec for ``stage``: one spec, or a tuple with one per block for scheme runs."""
    value = getattr(cfg.coding, stage.name)
    if not isinstance(value, list):
        return _scheme_spec(value)
    covered = sum(run.blocks for run in value)
    if covered != stage.depth:
        raise UserError(
            f"coding.{stage.name}: the runs cover {covered} blocks but stage {stage.name} of {cfg.model.name} has "
            f"{stage.depth}; make their blocks add up to {stage.depth}"
        )
    return tuple(_scheme_spec(run.scheme) for run in value for _ in range(run.blocks))


def build_model(cfg: RunConfig, num_classes: int, in_chans: int, schemes: dict[str, Any] | None = None) -> CodedResNeXt:
    """The configured model; ``schemes`` (per stage: a spec, or one per block) replaces the config's coding section.

    A stage whose scheme has another branch count than the preset (generator ``branches``, or a named
    scheme such as ``paper:cifar100/8/20`` on a 10-branch stage) gets that many branches, same width each.
    """
    stages = model_config(cfg.model.name).stages
    stage_names = [stage.name for stage in stages]
    if schemes is None:
        schemes = {}
        for item in dataclasses.fields(cfg.coding):
            value = getattr(cfg.coding, item.name)
            if value is None:
                continue
            if item.name not in stage_names:
                raise UserError(
                    f"coding.{item.name}: model {cfg.model.name} has no stage {item.name}; its stages are {stage_names}"
                )
            schemes[item.name] = _stage_spec(cfg, stages[stage_names.index(item.name)])
    overrides = {} if cfg.loss.mu is None else {"coding_loss_weight": cfg.loss.mu}  # None: the preset's own mu
    config = model_config(
        cfg.model.name,
        num_classes,
        in_chans=in_chans,
        width_multiplier=cfg.model.width_multiplier,
        control=cfg.model.control,
        energy_impl=cfg.model.energy_impl,
        label_smoothing=cfg.loss.label_smoothing,
        branch_merge=cfg.model.branch_merge,
        mask_grads=cfg.model.mask_grads,
        expand_init=cfg.model.expand_init,
        coding_loss_power=cfg.loss.power,
        coding_loss_threshold=cfg.loss.threshold,
        drop_prob=cfg.loss.p_drop,
        schemes=schemes,
        **overrides,
    )
    resized = tuple(_stage_for_scheme(stage, schemes.get(stage.name), cfg.coding) for stage in config.stages)
    model = CodedResNeXt(dataclasses.replace(config, stages=resized))
    count, block = len(model.coded_blocks), cfg.eval.removal_block
    if block is not None and count and not -count <= block < count:
        # checked here, before training, rather than when the evaluation suite reaches it
        raise UserError(
            f"eval.removal_block={block}: model {cfg.model.name} has {count} coded blocks; "
            f"give 0..{count - 1}, -1 for the last, or null for all of them"
        )
    return model


def _stage_for_scheme(stage: StageConfig, spec: Any, coding) -> StageConfig:
    """``stage`` with the branch count of its schemes (all of a stage's schemes must agree on it)."""
    value = getattr(coding, stage.name, None)
    raw = [run.scheme for run in value] if isinstance(value, list) else [value]
    specs = list(spec) if isinstance(spec, tuple | list) else [spec]
    sizes = [size for size in map(_scheme_size, raw + specs) if size is not None]
    if len({branches for branches, _ in sizes}) > 1:
        raise UserError(
            f"coding.{stage.name}: the schemes inside one stage must have one branch count, got "
            f"{sorted({branches for branches, _ in sizes})}"
        )
    if not sizes or sizes[0] == (stage.num_branches, stage.num_active):
        return stage
    branches, active = sizes[0]
    return dataclasses.replace(stage, num_branches=branches, num_active=active)


def _scheme_size(spec: Any) -> tuple[int, int] | None:
    """(branches, active) a stage spec asks for, or None when the stage decides."""
    if isinstance(spec, SchemeGenerator) and spec.branches:
        return spec.branches, spec.active
    if isinstance(spec, CodingScheme):
        return spec.num_branches, spec.num_active
    if isinstance(spec, str) and spec != SCHEME_OFF:
        scheme = resolve_scheme(spec)
        return scheme.num_branches, scheme.num_active
    return None


@dataclass
class CosineSchedule:
    """The lr factor (of ``optim.lr``) at a training step: linear warm-up from ``warmup_lr_init``, then
    cosine decay to ``lr_min`` over all ``epochs``, as timm's ``CosineLRScheduler`` (``warmup_prefix=False``),
    which the authors' ImageNet run used; with no warm-up it is the ``CosineAnnealingLR`` of their CIFAR code.

    ``schedule_step`` / ``warmup_step`` = ``epoch`` hold the lr for a whole epoch (the authors' code steps
    its schedulers once per epoch), ``batch`` moves it every step. A callable object rather than a lambda,
    so ``LambdaLR`` saves it with the scheduler state; ``tests/test_recipes.py`` checks it against timm.
    """

    lr: float
    lr_min: float
    epochs: int
    steps_per_epoch: int
    warmup_epochs: float = 0.0
    warmup_lr_init: float = 0.0
    schedule_step: str = "epoch"
    warmup_step: str = "epoch"

    def lr_at(self, step: int) -> float:
        exact = step / self.steps_per_epoch  # epochs done, fractional

        def at(unit: str) -> float:
            return exact if unit == "batch" else float(math.floor(exact))

        if self.warmup_epochs > 0 and at(self.warmup_step) < self.warmup_epochs:
            return self.warmup_lr_init + at(self.warmup_step) * (self.lr - self.warmup_lr_init) / self.warmup_epochs
        progress = min(at(self.schedule_step) / self.epochs, 1.0)
        return self.lr_min + 0.5 * (self.lr - self.lr_min) * (1 + math.cos(math.pi * progress))

    def __call__(self, step: int) -> float:
        return self.lr_at(step) / self.lr


def make_optimizer(model: nn.Module, cfg: RunConfig, steps_per_epoch: int):
    """SGD + Nesterov and the lr schedule of ``CosineSchedule`` (PAPER.md section 5), stepped every batch.

    ``optim.decay_norm_and_bias: false`` leaves BatchNorm parameters and biases out of weight decay, as
    timm's optimizer factory does by default (the authors' ImageNet run); their CIFAR code decays all.
    """
    o = cfg.optim
    if o.decay_norm_and_bias:
        params = model.parameters()
    else:
        from timm.optim import param_groups_weight_decay  # the grouping the authors' ImageNet run used

        params = param_groups_weight_decay(model, o.weight_decay)
    opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    schedule = CosineSchedule(
        o.lr,
        o.lr_min,
        cfg.train.epochs,
        max(1, steps_per_epoch),
        o.warmup_epochs,
        o.warmup_lr_init,
        o.schedule_step,
        o.warmup_step,
    )
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def train_loader(
    bundle: DatasetBundle, cfg: RunConfig, epoch: int, rank: int = 0, world_size: int = 1, device_type: str = "cpu"
) -> DataLoader:
    """Rank ``rank``'s shuffled loader, at ``epoch``: the order depends only on (seed, epoch), so resume
    replays it, and ranks see disjoint shards of one permutation; the global batch is split evenly.
    One loader serves every epoch (``loader.sampler.set_epoch``), so its worker processes persist."""
    sampler = DistributedSampler(
        bundle.train, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.seed * 100_003, drop_last=True
    )
    sampler.set_epoch(epoch)
    per_rank = cfg.optim.batch_size // world_size
    t = cfg.train
    workers = acceleration.loader_workers(t.loader_workers, device_type, t.cpus_per_worker)
    return DataLoader(
        bundle.train,
        batch_size=per_rank,
        sampler=sampler,
        drop_last=len(sampler) > per_rank,
        **acceleration.loader_options(workers, device_type, t.prefetch_factor),
    )


def eval_loader(dataset, cfg: RunConfig, device_type: str = "cpu") -> DataLoader:
    workers = acceleration.loader_workers(cfg.train.loader_workers, device_type, cfg.train.cpus_per_worker)
    return DataLoader(dataset, batch_size=max(cfg.optim.batch_size, 256), shuffle=False, num_workers=workers)


# ---- the loop -----------------------------------------------------------------------------------
class Progress:
    """A tqdm bar per epoch on a terminal; one summary line per epoch otherwise."""

    def __init__(self, mode: str, epochs: int) -> None:
        self.bar_mode = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self.quiet = mode == "none"
        self.epochs = epochs

    def wrap(self, loader, epoch: int):
        if not self.bar_mode:
            return loader
        from tqdm import tqdm

        return tqdm(loader, desc=f"epoch {epoch + 1}/{self.epochs}", leave=False, file=sys.stderr, dynamic_ncols=True)

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)


def train_epoch(
    step: nn.Module,
    loader,
    opt,
    scheduler,
    device: torch.device,
    progress_wrap=None,
    session: Session | None = None,
    precision: Precision | None = None,
) -> dict[str, float]:
    """One pass over ``loader`` with ``step`` (a ``TrainStep``, maybe DDP-wrapped or compiled) under
    ``precision`` (default: ``train.precision=auto``); returns the epoch's mean losses (classification and
    coding apart) and accuracy, averaged over all ranks."""
    step.train()
    precision = precision or acceleration.resolve_precision("auto", device)
    sums = torch.zeros(5, dtype=torch.float64, device=device)  # loss, classification, coding, correct, seen
    for x, y in progress_wrap(loader) if progress_wrap else loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last)  # NHWC convs: faster on GPUs and on CPU (oneDNN)
        with precision.autocast():
            out = step(x, y)
        opt.zero_grad(set_to_none=True)
        precision.backward_and_step(out["total"], opt)
        scheduler.step()
        n = len(y)
        with torch.no_grad():
            sums += torch.stack(
                [
                    out["total"].detach().double() * n,
                    out["classification"].detach().double() * n,
                    out["coding"].detach().double() * n,
                    (out["logits"].argmax(1) == y).sum().double(),
                    torch.tensor(float(n), dtype=torch.float64, device=device),
                ]
            )
    if session is not None:
        sums = session.all_reduce(sums)
    loss, classification, coding, correct, _ = (sums / sums[4].clamp_min(1)).tolist()
    return {
        "train/loss": loss,
        "train/classification_loss": classification,
        "train/coding_loss": coding,
        "train/accuracy": correct,
        "train/lr": opt.param_groups[0]["lr"],
    }


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": json.dumps(random.getstate()),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))


@dataclass
class FitResult:
    run_id: str
    metrics: dict[str, float]
    checkpoint_dir: Path
    suite: SuiteResult | None


@dataclass
class LoopResult:
    run_id: str | None  # rank 0's MLflow run (None on other ranks)
    metrics: dict[str, float]
    suite: SuiteResult | None


def checkpoint_dir_for(cfg: RunConfig, root: Path = Path("runs") / "checkpoints") -> Path:
    return root / cfg.experiment_hash


def fit(
    cfg: RunConfig,
    *,
    resume: bool = False,
    checkpoint_root: Path = Path("runs") / "checkpoints",
    tracking_uri: str | None = None,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
) -> FitResult:
    """Train, evaluate and track one run in this process; returns the final metrics."""
    progress = Progress(cfg.train.progress, cfg.train.epochs)
    ckpt_dir = checkpoint_dir_for(cfg, checkpoint_root)
    session = LocalSession(ckpt_dir, resume, progress.say, cfg.train.epochs)
    lineage = Lineage(tracking_uri=tracking_uri, parent_run_id=parent_run_id, tags=dict(tags or {}))
    result = train_loop(cfg, session, lineage, progress, measure_test=True)  # a single run: test once, at its end
    assert result.run_id is not None  # rank 0
    return FitResult(result.run_id, result.metrics, ckpt_dir, result.suite)


class TrainStep(nn.Module):
    """The model plus its loss, so a DDP wrapper sees one forward that returns everything backward needs.

    (Calling ``forward_with_aux`` on a DDP-wrapped model would bypass DDP's forward and its gradient
    hooks.) Returns one dict: the three loss terms and the logits.
    """

    def __init__(self, model: CodedResNeXt) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model.forward_with_aux(x, targets=y)  # targets: for model.mask_grads
        parts = self.model.loss_parts(out, y)
        return {
            "total": parts.total,
            "classification": parts.classification,
            "coding": parts.coding,
            "logits": out.logits,
        }


def shard(dataset, rank: int, world_size: int):
    """Rank ``rank``'s share of ``dataset`` for evaluation: every ``world_size``-th sample, no padding, so
    summing over ranks counts each sample once."""
    if world_size == 1:
        return dataset
    return Subset(dataset, range(rank, len(dataset), world_size))


def distributed_evaluate(model, val_set, cfg: RunConfig, device, session: Session) -> dict[str, float]:
    """Validation metrics over the validation set (a stratified sample of ``eval.limit_val`` images when
    set, the same on every rank and epoch): each rank its shard, means weighted by counts."""
    part = shard(stratified_subset(val_set, cfg.eval.limit_val, cfg.seed), session.rank, session.world_size)
    metrics = evaluate(model, eval_loader(part, cfg, device.type), device)
    if session.world_size == 1:
        return metrics
    count = len(part)
    keys = sorted(metrics)
    values = torch.tensor([metrics[k] * count for k in keys] + [count], dtype=torch.float64, device=device)
    totals = session.all_reduce(values).cpu()
    return {k: (totals[i] / totals[-1]).item() for i, k in enumerate(keys)}


@torch.no_grad()
def param_divergence(model: nn.Module, session: Session) -> float:
    """Sum over ranks of each rank's largest |parameter - mean over ranks|: 0.0 when DDP kept every
    rank's weights identical (a cheap end-of-epoch check: one all-reduce of the flat weights)."""
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    mean = session.all_reduce(flat) / session.world_size
    own = (flat - mean).abs().max().reshape(1)
    return session.all_reduce(own).item()


def checkpoint_due(cfg: RunConfig, epoch: int) -> bool:
    """A checkpoint after ``epoch`` (0-based): every ``train.checkpoint_every`` epochs and after the last."""
    return (epoch + 1) % cfg.train.checkpoint_every == 0 or epoch == cfg.train.epochs - 1


def suite_due(cfg: RunConfig, epoch: int) -> bool:
    """The whole evaluation suite after ``epoch`` besides the last: every ``eval.every`` epochs (0: never)."""
    return bool(cfg.eval.every) and (epoch + 1) % cfg.eval.every == 0


def train_loop(
    cfg: RunConfig,
    session: Session,
    lineage: Lineage,
    progress: Progress,
    *,
    measure_test: bool = False,
    rung_epochs: Collection[int] = (),
) -> LoopResult:
    """The training loop shared by every place a run can execute (see ``sessions.py``).

    ``measure_test``: a single run (``coded-resnext train``) measures the test split once, at its end,
    with what train and val fixed; a search's trials and an ablation's cells never do (they select).
    ``rung_epochs`` (1-based; a multi-objective scheduler's rungs): those epochs' reports also carry every
    objective of a search (``rung_metrics``).
    """
    chief = session.rank == 0
    state = session.restore()
    done = session.broadcast(lineage.finished_metrics(cfg.tracking.uri, cfg.tracking.experiment) if chief else None)
    if done is not None:  # a trial that had finished before its sweep's driver died: report, do not retrain
        progress.say("this trial's MLflow run had already finished; reporting its final metrics")
        session.report({**done, "epoch": cfg.train.epochs}, cfg.train.epochs - 1, None)
        return LoopResult(None, done, None)
    device = session.device() or resolve_device(cfg.train.device)
    precision = acceleration.resolve_precision(cfg.train.precision, device)
    acceleration.set_determinism(cfg.train.deterministic, device)
    seed_everything(cfg.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    bundle = build_dataset(data_spec(cfg))
    if bundle.val is None and bundle.test is None:
        raise UserError(
            f"data.val_fraction is 0 and {cfg.data.name} at data.root={cfg.data.root} has no test split: nothing "
            "to evaluate on; set data.val_fraction in (0, 1)"
        )
    schemes = None if state is None else resume_schemes(cfg, state, bundle.num_classes, bundle.in_chans)
    model = build_model(cfg, bundle.num_classes, bundle.in_chans, schemes)
    model = model.to(device, memory_format=torch.channels_last)
    model = acceleration.sync_batchnorm(model, cfg.train.sync_batchnorm, session.world_size)
    step_module = acceleration.compile_step(session.wrap(TrainStep(model)), cfg.train.compile)
    loader = train_loader(bundle, cfg, 0, session.rank, session.world_size, device.type)
    opt, scheduler = make_optimizer(model, cfg, len(loader))
    start_epoch = 0
    run_id = None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if precision.scaler is not None and "grad_scaler" in state:
            precision.scaler.load_state_dict(state["grad_scaler"])
        start_epoch = state["epoch"] + 1
        run_id = state["run_id"]
        _set_rng_state(state["rng"])
    elif session.rank:
        # DropSubNNs masks: drawn independently on every rank (rank 0 keeps the single-process stream).
        torch.manual_seed(cfg.seed + 1_000_003 * session.rank)

    tracker = None
    if chief:
        tags = {"role": "trial", "experiment_hash": cfg.experiment_hash}
        name = cfg.tracking.run_name or f"{cfg.model.name}-{cfg.experiment_hash[:8]}"
        tracker = lineage.open(cfg.tracking.uri, cfg.tracking.experiment, name, run_id, tags)
        progress.say(f"MLflow run {tracker.run_id} in experiment {cfg.tracking.experiment!r} at {tracker.display_uri}")
        params = cfg.flat()
        params["loss.mu"] = model.config.coding_loss_weight  # the weight used (``loss.mu: null``: the preset's)
        params.update({f"scheme.{stage}": h for stage, h in model.scheme_hashes().items()})
        params.update(
            {"model.params": sum(p.numel() for p in model.parameters()), "data.num_classes": bundle.num_classes}
        )
        params.update({f"data.{role}_size": n for role, n in bundle.sizes().items()})
        tracker.log_params(params)
        _log_config_artifacts(tracker, cfg, model)
        splits = {"train": bundle.train_eval, "val": bundle.val, "test": bundle.test if measure_test else None}
        log_provenance(tracker, cfg.data.name, cfg.data.root, splits)
    side = start_on_every_rank(cfg.tracking, session, tracker, lineage.tracking_uri or cfg.tracking.uri)

    metrics: dict[str, float] = {}
    suite = None
    try:
        for epoch in range(start_epoch, cfg.train.epochs):
            started = time.perf_counter()
            loader.sampler.set_epoch(epoch)
            wrap = functools.partial(progress.wrap, epoch=epoch)
            metrics = train_epoch(step_module, loader, opt, scheduler, device, wrap, session, precision)
            if session.world_size > 1:
                metrics["ddp/param_divergence"] = param_divergence(model, session)
            if bundle.val is not None:  # val_fraction 0 (the paper's protocol): no per-epoch validation
                metrics.update(distributed_evaluate(model, bundle.val, cfg, device, session))
            metrics["time/epoch_seconds"] = time.perf_counter() - started
            metrics["epoch"] = epoch + 1
            last_epoch = epoch == cfg.train.epochs - 1
            every = suite_due(cfg, epoch) and bundle.val is not None  # without val, nothing to measure before the end
            checkpoint = checkpoint_due(cfg, epoch)
            state = None
            if chief:
                if last_epoch or every:
                    suite = _suite(model, bundle, cfg, device, progress, test=measure_test and last_epoch)
                    metrics.update(suite.metrics)
                elif epoch + 1 in rung_epochs:
                    metrics.update(rung_metrics(model, bundle, cfg, device))
                # Log before checkpointing: a crash in between replays this epoch from the previous
                # checkpoint (deterministically), and the tracker drops the steps it already has.
                tracker.log_metrics(metrics, step=epoch)
                if checkpoint:
                    state = _state(model, opt, scheduler, epoch, tracker.run_id, cfg, bundle.image_size)
                    if precision.scaler is not None:
                        state["grad_scaler"] = precision.scaler.state_dict()
                if last_epoch:  # everything the run records lands before the final report
                    _finish_run(
                        tracker,
                        suite,
                        bundle,
                        state,
                        model,
                        eval_loader(bundle.train_eval, cfg, device.type),
                        cfg,
                        progress,
                    )
                progress.say(_epoch_line(epoch, cfg.train.epochs, metrics))
            session.report(metrics, epoch, state)
    except KeyboardInterrupt:
        if tracker is not None:
            tracker.finish("KILLED")
        raise
    except SystemExit as stop:
        # A scheduler stopping a Tune trial ends its training thread with sys.exit(0) inside ray.tune.report:
        # not a failure. Send what is buffered and leave the run's state to the driver (TrialRunCloser).
        if tracker is not None:
            if stop.code in (None, 0):
                tracker.flush()
            else:
                tracker.finish("FAILED")
        raise
    except BaseException:
        if tracker is not None:
            tracker.finish("FAILED")
        raise
    finally:
        if side is not None:  # another rank's system metrics, into rank 0's run
            side.close()
    return LoopResult(tracker.run_id if tracker else None, metrics, suite)


def _finish_run(tracker, suite, bundle, state, model, examples, cfg: RunConfig, progress: Progress) -> None:
    _log_suite_artifacts(tracker, suite, bundle, progress)
    if any(key.startswith("test/") for key in suite.metrics):
        from coded_resnext.orchestration.final_test import TESTED_TAG

        tracker.set_tags({TESTED_TAG: time.strftime("%Y-%m-%d %H:%M:%S UTC by coded-resnext train", time.gmtime())})
    with tempfile.TemporaryDirectory() as tmp:
        final = save_checkpoint(Path(tmp), state["epoch"], state)
        tracker.log_artifact(final, "checkpoint")
    if cfg.tracking.log_model:
        progress.say("logging the model to MLflow")
        example, _ = next(iter(examples))
        device = next(model.parameters()).device
        tracker.log_model(model.cpu().eval(), example[:2].cpu())
        model.to(device)
    tracker.finish("FINISHED")


def _state(model, opt, scheduler, epoch: int, run_id: str, cfg: RunConfig, image_size: int) -> dict[str, Any]:
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "run_id": run_id,
        "rng": _rng_state(),
        "config": cfg.to_yaml(),
        "experiment_hash": cfg.experiment_hash,
        "num_classes": model.num_classes,
        "in_chans": model.config.in_chans,
        "image_size": image_size,
        "schemes": json.dumps(saved_schemes(model)),
    }


def saved_schemes(model: CodedResNeXt) -> dict[str, Any]:
    """Per stage with coded blocks, its scheme as a dict; a stage whose scheme changes inside it, a list
    with one entry per block (a dict, or null for a plain block). ``model_from_checkpoint`` reads both."""
    out: dict[str, Any] = {}
    for stage, per_block in model.block_schemes.items():
        if len(set(per_block)) == 1:
            out[stage] = per_block[0].to_dict()
        else:
            out[stage] = [None if s is None else s.to_dict() for s in per_block]
    return out


def _saved_stage(entry: Any) -> Any:
    if isinstance(entry, list):
        return tuple(SCHEME_OFF if e is None else CodingScheme.from_dict(e) for e in entry)
    return CodingScheme.from_dict(entry)


def _saved_schemes(cfg: RunConfig, state: dict[str, Any]) -> dict[str, Any]:
    """Per stage of the model, the checkpoint's scheme as codewords (one per block for a split stage), or "off"."""
    saved = {stage: _saved_stage(entry) for stage, entry in json.loads(state["schemes"]).items()}
    return {stage.name: saved.get(stage.name, SCHEME_OFF) for stage in model_config(cfg.model.name).stages}


def _block_hashes(model: CodedResNeXt) -> dict[str, list[str]]:
    """Per stage, each block's scheme content hash ("off" for a plain block)."""
    return {
        stage: [SCHEME_OFF if s is None else s.content_hash for s in per_block]
        for stage, per_block in model.block_schemes.items()
    }


def resume_schemes(cfg: RunConfig, state: dict[str, Any], num_classes: int, in_chans: int) -> dict[str, Any]:
    """The schemes a resumed run is built with: the checkpoint's. The codewords are non-persistent
    buffers, so loading the weights into a model with another scheme would go unnoticed; a config that
    now asks for another scheme (a generator change, an edited scheme file) is an error naming both."""
    saved = _saved_schemes(cfg, state)
    with torch.device("meta"):  # both models' schemes, without allocating either
        asked = _block_hashes(build_model(cfg, num_classes, in_chans))
        was = _block_hashes(build_model(cfg, num_classes, in_chans, saved))
    for stage in sorted(set(asked) | set(was)):
        old, new = was.get(stage, [SCHEME_OFF]), asked.get(stage, [SCHEME_OFF])
        if old != new:
            show = lambda hashes: hashes[0] if len(set(hashes)) == 1 else "/".join(hashes)  # noqa: E731
            raise UserError(
                f"coding.{stage}: the checkpoint was trained with scheme {show(old)} but the config now gives scheme "
                f"{show(new)}; resuming would train another code on the old weights, so start this run over "
                "(remove its checkpoints) instead of resuming"
            )
    return saved


def model_from_checkpoint(state: dict[str, Any]) -> CodedResNeXt:
    """Rebuild the trained model from a checkpoint alone: its config, its schemes (as codewords, so a
    moved scheme file or a regenerated scheme cannot change it) and its weights."""
    import yaml

    from coded_resnext.orchestration.config import config_from_dict

    cfg = config_from_dict(yaml.safe_load(state["config"]))
    model = build_model(cfg, state["num_classes"], state["in_chans"], _saved_schemes(cfg, state))
    model.load_state_dict(state["model"])
    return model.eval()


def _epoch_line(epoch: int, epochs: int, m: dict[str, float]) -> str:
    decode = [v for k, v in m.items() if k.startswith("val/decode_accuracy/")]
    last = f" decode(last) {decode[-1]:.4f}" if decode else ""
    val = f" val acc {m['val/accuracy']:.4f} loss {m['val/loss']:.4f}" if "val/accuracy" in m else " (no val split)"
    test = f" test acc {m['test/accuracy']:.4f}" if "test/accuracy" in m else ""
    return (
        f"epoch {epoch + 1}/{epochs}: loss {m['train/loss']:.4f} (coding {m['train/coding_loss']:.4f}){val}{last}"
        f"{test} [{m['time/epoch_seconds']:.0f}s]"
    )


def rung_metrics(model, bundle: DatasetBundle, cfg: RunConfig, device) -> dict[str, float]:
    """The light evaluation at a rung epoch (``coded_resnext.evaluation.rung``), timed as ``time/rung_eval_seconds``."""
    started = time.perf_counter()
    classes = choose_classes(model.num_classes, cfg.eval.binary_classes, cfg.seed)  # the suite's classes
    loader = lambda dataset: eval_loader(dataset, cfg, device.type)  # noqa: E731
    metrics = rung_evaluation(model, bundle.val, device, cfg.eval, classes, seed=cfg.seed, loader=loader)
    metrics["time/rung_eval_seconds"] = time.perf_counter() - started
    return metrics


def suite_data(bundle: DatasetBundle, cfg: RunConfig, *, test: bool, device_type: str = "cpu") -> SuiteData:
    """What the evaluation suite reads for a run of ``cfg``: the test split only when ``test``."""
    ood = None
    if cfg.data.ood:
        ood = build_ood_dataset(cfg.data.ood, bundle, root=cfg.data.root, download=cfg.data.download)
    return SuiteData(
        fit=bundle.train_eval,
        val=bundle.val,
        test=bundle.test if test else None,
        ood=ood,
        loader=lambda dataset: eval_loader(dataset, cfg, device_type),
    )


def _suite(model, bundle: DatasetBundle, cfg: RunConfig, device, progress: Progress, *, test: bool) -> SuiteResult:
    data = suite_data(bundle, cfg, test=test, device_type=device.type)
    return run_suite(model, data, device=device, settings=cfg.eval, seed=cfg.seed, progress=progress.say)


def _log_config_artifacts(tracker: RunTracker, cfg: RunConfig, model: CodedResNeXt) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "config.yaml").write_text(cfg.to_yaml())
        schemes = {stage: s.to_dict() for stage, s in model.schemes.items()}
        (tmp_path / "coding_schemes.json").write_text(json.dumps(schemes, indent=1))
        tracker.log_artifacts(tmp_path)


def _log_suite_artifacts(tracker: RunTracker, suite: SuiteResult, bundle: DatasetBundle, progress: Progress) -> None:
    import pandas as pd

    from coded_resnext.results.run_plots import write_run_plots

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        tables = tmp_path / "tables"
        tables.mkdir()
        for name, rows in suite.tables.items():
            if rows:
                pd.DataFrame(rows).to_csv(tables / f"{name}.csv", index=False)
        plots = tmp_path / "plots"
        written = write_run_plots(suite, plots, class_names=bundle.class_names)
        progress.say(f"evaluation: {len(suite.tables)} tables, {len(written)} plots logged")
        tracker.log_artifacts(tables, "tables")
        tracker.log_artifacts(plots, "plots")
