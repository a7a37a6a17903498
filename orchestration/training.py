"""Training one Coded ResNeXt from a ``RunConfig``: data -> model -> loop -> evaluation -> tracking.

Plain functions (``build_model``, ``train_epoch``, ``fit``) in the style of Ray's Train examples; the
MLflow calls go through ``RunTracker`` and the checkpoint calls through ``checkpoint.py``, so the loop
reads top to bottom. Checkpoints hold model, optimizer, scheduler, epoch, RNG states and the MLflow run
id; ``resume`` continues from the last one into the same MLflow run.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Subset
from tqdm import tqdm

from coded_resnext import CodedResNeXt
from coded_resnext.datasets import DatasetBundle, build_dataset
from coded_resnext.datasets.sampling import stratified_subset
from coded_resnext.evaluation import evaluate, run_suite
from coded_resnext.evaluation.binary import choose_classes
from coded_resnext.evaluation.rung import rung_evaluation
from coded_resnext.evaluation.suite import SuiteResult
from coded_resnext.orchestration import acceleration
from coded_resnext.orchestration.acceleration import Precision
from coded_resnext.orchestration.build import (
    build_model,
    data_spec,
    eval_loader,
    resolve_device,
    resume_schemes,
    seed_everything,
    suite_data,
    train_loader,
)
from coded_resnext.orchestration.checkpoint import restore_rng_state, training_state
from coded_resnext.orchestration.config import RunConfig
from coded_resnext.orchestration.errors import UserError
from coded_resnext.orchestration.lineage import Lineage
from coded_resnext.orchestration.optimizer import make_optimizer
from coded_resnext.orchestration.resources import check_fits, is_out_of_memory, out_of_memory_error
from coded_resnext.orchestration.run_records import finish_run, log_run_start
from coded_resnext.orchestration.sessions import LocalSession, Session
from coded_resnext.orchestration.tracking import start_on_every_rank
from coded_resnext.results.schema import Metric, Role, Tag

logger = logging.getLogger(__name__)


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

        return tqdm(loader, desc=f"epoch {epoch + 1}/{self.epochs}", leave=False, file=sys.stderr, dynamic_ncols=True)

    def say(self, message: str) -> None:
        """A progress line (``logger.info``), unless ``train.progress: none``."""
        if not self.quiet:
            logger.info(message)


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
    session = LocalSession(ckpt_dir, resume, cfg.train.epochs)
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
    with what train and val fixed; a search's trials and an ablation's cells never do (they select). A
    single run also keeps the fuller suite (whole removal curves, per-run plots); a trial's suite measures
    every figure the search ranks and the report shows (``run_evaluation``).
    ``rung_epochs`` (1-based; a multi-objective scheduler's rungs): those epochs' reports also carry every
    objective of a search (``rung_metrics``).

    A configuration that cannot fit its device is a ``ResourceError`` before the model is allocated and
    before its MLflow run is opened (``resources.check_fits``); an allocator failure the estimate missed
    becomes the same kind of one-line error, its run marked FAILED.
    """
    try:
        return _train_loop(cfg, session, lineage, progress, measure_test=measure_test, rung_epochs=rung_epochs)
    except BaseException as err:
        if is_out_of_memory(err):
            raise out_of_memory_error(cfg, err) from None
        raise


def _train_loop(
    cfg: RunConfig,
    session: Session,
    lineage: Lineage,
    progress: Progress,
    *,
    measure_test: bool,
    rung_epochs: Collection[int],
) -> LoopResult:
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
    check_fits(cfg, bundle.num_classes, bundle.in_chans, bundle.image_size, device, session.world_size)
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
        restore_rng_state(state["rng"])
    elif session.rank:
        # DropSubNNs masks: drawn independently on every rank (rank 0 keeps the single-process stream).
        torch.manual_seed(cfg.seed + 1_000_003 * session.rank)

    tracker = None
    if chief:
        tags = {Tag.ROLE: Role.TRIAL, Tag.EXPERIMENT_HASH: cfg.experiment_hash}
        name = cfg.tracking.run_name or f"{cfg.model.name}-{cfg.experiment_hash[:8]}"
        tracker = lineage.open(cfg.tracking.uri, cfg.tracking.experiment, name, run_id, tags)
        progress.say(f"MLflow run {tracker.run_id} in experiment {cfg.tracking.experiment!r} at {tracker.display_uri}")
        log_run_start(tracker, cfg, model, bundle, measure_test=measure_test)
    side = start_on_every_rank(cfg.tracking, session, tracker, lineage.tracking_uri or cfg.tracking.uri)

    metrics: dict[str, float] = {}
    suite = None
    train_seconds = float(state.get("train_seconds", 0.0)) if state is not None else 0.0  # earlier epochs' too
    try:
        for epoch in range(start_epoch, cfg.train.epochs):
            started = time.perf_counter()
            loader.sampler.set_epoch(epoch)
            wrap = functools.partial(progress.wrap, epoch=epoch)
            metrics = train_epoch(step_module, loader, opt, scheduler, device, wrap, session, precision)
            if session.world_size > 1:
                metrics["ddp/param_divergence"] = param_divergence(model, session)
            last_epoch = epoch == cfg.train.epochs - 1
            every = suite_due(cfg, epoch) and bundle.val is not None  # without val, nothing to measure before the end
            # the suite's pass over the same validation sample gives this epoch's validation metrics too
            suite_validates = (last_epoch or every) and session.world_size == 1
            if bundle.val is not None and not suite_validates:  # val_fraction 0: no per-epoch validation
                metrics.update(distributed_evaluate(model, bundle.val, cfg, device, session))
            metrics[Metric.EPOCH_SECONDS] = time.perf_counter() - started
            train_seconds += metrics[Metric.EPOCH_SECONDS]
            metrics["epoch"] = epoch + 1
            checkpoint = checkpoint_due(cfg, epoch)
            state = None
            if chief:
                if last_epoch or every:
                    evaluation_started = time.perf_counter()
                    suite = run_evaluation(
                        model, bundle, cfg, device, test=measure_test and last_epoch, full=measure_test
                    )
                    metrics.update(suite.metrics)
                    if last_epoch:  # where a run's time went: training (all epochs) and its end-of-run suite
                        metrics[Metric.TRAIN_SECONDS] = train_seconds
                        metrics[Metric.EVALUATION_SECONDS] = time.perf_counter() - evaluation_started
                elif epoch + 1 in rung_epochs:
                    metrics.update(rung_metrics(model, bundle, cfg, device))
                # Log before checkpointing: a crash in between replays this epoch from the previous
                # checkpoint (deterministically), and the tracker drops the steps it already has.
                tracker.log_metrics(metrics, step=epoch)
                if checkpoint:
                    state = training_state(model, opt, scheduler, epoch, tracker.run_id, cfg, bundle.image_size)
                    state["train_seconds"] = train_seconds
                    if precision.scaler is not None:
                        state["grad_scaler"] = precision.scaler.state_dict()
                if last_epoch:  # everything the run records lands before the final report
                    examples = eval_loader(bundle.train_eval, cfg, device.type)
                    finish_run(tracker, suite, bundle, state, model, examples, cfg, plots=measure_test)
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


def _epoch_line(epoch: int, epochs: int, m: dict[str, float]) -> str:
    decode = [v for k, v in m.items() if k.startswith("val/decode_accuracy/")]
    last = f" decode(last) {decode[-1]:.4f}" if decode else ""
    val = f" val acc {m['val/accuracy']:.4f} loss {m['val/loss']:.4f}" if "val/accuracy" in m else " (no val split)"
    test = f" test acc {m['test/accuracy']:.4f}" if "test/accuracy" in m else ""
    return (
        f"epoch {epoch + 1}/{epochs}: loss {m['train/loss']:.4f} (coding {m['train/coding_loss']:.4f}){val}{last}"
        f"{test} [{m[Metric.EPOCH_SECONDS]:.0f}s]"
    )


def rung_metrics(model, bundle: DatasetBundle, cfg: RunConfig, device) -> dict[str, float]:
    """The light evaluation at a rung epoch (``coded_resnext.evaluation.rung``), timed as ``time/rung_eval_seconds``."""
    started = time.perf_counter()
    classes = choose_classes(model.num_classes, cfg.eval.binary_classes, cfg.seed)  # the suite's classes
    loader = lambda dataset: eval_loader(dataset, cfg, device.type)  # noqa: E731
    metrics = rung_evaluation(model, bundle.val, device, cfg.eval, classes, seed=cfg.seed, loader=loader)
    metrics["time/rung_eval_seconds"] = time.perf_counter() - started
    return metrics


def run_evaluation(
    model, bundle: DatasetBundle, cfg: RunConfig, device, *, test: bool, full: bool = True
) -> SuiteResult:
    """The evaluation suite of a run of ``cfg`` on ``bundle`` (the test split only when ``test``); ``full``
    (a single run) adds the whole branch-removal curves (``run_suite``)."""
    data = suite_data(bundle, cfg, test=test, device_type=device.type)
    return run_suite(model, data, device=device, settings=cfg.eval, seed=cfg.seed, full=full)
