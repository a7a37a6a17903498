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
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from coded_resnext import CodedResNeXt, model_config
from coded_resnext.coding import resolve_scheme
from coded_resnext.coding.defaults import GeneratedScheme
from coded_resnext.datasets import DatasetBundle, DataSpec, build_dataset, build_ood_dataset
from coded_resnext.evaluation import evaluate, run_suite
from coded_resnext.evaluation.suite import SuiteResult
from coded_resnext.models.config import SCHEME_OFF, StageConfig
from orchestration import acceleration
from orchestration.acceleration import Precision
from orchestration.checkpoint import save_checkpoint
from orchestration.config import RunConfig, SchemeGenerator
from orchestration.errors import UserError
from orchestration.lineage import Lineage
from orchestration.sessions import LocalSession, Session
from orchestration.tracking import RunTracker

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
        split_seed=cfg.seed,
        randaugment=tuple(d.randaugment) if d.randaugment else None,
        augment=d.augment,
        image_size=d.image_size,
        limit_train=d.limit_train,
        limit_val=d.limit_val,
    )


def _scheme_spec(value: str | SchemeGenerator | None) -> str | GeneratedScheme | None:
    if isinstance(value, SchemeGenerator):  # branches, when given, resize the stage (see build_model)
        return GeneratedScheme(value.active, value.min_distance, value.seed)
    return value


def build_model(cfg: RunConfig, num_classes: int, in_chans: int, schemes: dict[str, Any] | None = None) -> CodedResNeXt:
    """The configured model; ``schemes`` (per stage) replaces the config's coding section.

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
            schemes[item.name] = _scheme_spec(value)
    config = model_config(
        cfg.model.name,
        num_classes,
        in_chans=in_chans,
        width_multiplier=cfg.model.width_multiplier,
        control=cfg.model.control,
        energy_impl=cfg.model.energy_impl,
        coding_loss_weight=cfg.loss.mu,
        coding_loss_power=cfg.loss.power,
        coding_loss_threshold=cfg.loss.threshold,
        drop_prob=cfg.loss.p_drop,
        schemes=schemes,
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
    branches = None
    generator = getattr(coding, stage.name, None)
    if isinstance(generator, SchemeGenerator) and generator.branches:
        branches, active = generator.branches, generator.active
    elif isinstance(spec, str) and spec != SCHEME_OFF:
        scheme = resolve_scheme(spec)
        branches, active = scheme.num_branches, scheme.num_active
    if branches is None or (branches, active) == (stage.num_branches, stage.num_active):
        return stage
    return dataclasses.replace(stage, num_branches=branches, num_active=active)


def make_optimizer(model: nn.Module, cfg: RunConfig, steps_per_epoch: int):
    """SGD + Nesterov; per-step linear warm-up then cosine decay to ``lr_min`` (PAPER.md section 5)."""
    o = cfg.optim
    opt = torch.optim.SGD(
        model.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
    )
    total = max(1, cfg.train.epochs * steps_per_epoch)
    warmup = min(round(o.warmup_epochs * steps_per_epoch), total - 1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=o.lr_min)
    if warmup == 0:
        return opt, cosine
    ramp = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / warmup, total_iters=warmup)
    return opt, torch.optim.lr_scheduler.SequentialLR(opt, [ramp, cosine], milestones=[warmup])


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
    result = train_loop(cfg, session, lineage, progress)
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
        out = self.model.forward_with_aux(x)
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
    """Validation metrics over the whole validation set: each rank its shard, means weighted by counts."""
    limit = cfg.eval.limit_val
    local_limit = None if limit is None else -(-limit // session.world_size)
    part = shard(val_set, session.rank, session.world_size)
    metrics = evaluate(model, eval_loader(part, cfg, device.type), device, local_limit)
    if session.world_size == 1:
        return metrics
    count = min(len(part), local_limit) if local_limit is not None else len(part)
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


def train_loop(cfg: RunConfig, session: Session, lineage: Lineage, progress: Progress) -> LoopResult:
    """The training loop shared by every place a run can execute (see ``sessions.py``)."""
    chief = session.rank == 0
    device = session.device() or resolve_device(cfg.train.device)
    precision = acceleration.resolve_precision(cfg.train.precision, device)
    acceleration.set_determinism(cfg.train.deterministic, device)
    state = session.restore()
    seed_everything(cfg.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    bundle = build_dataset(data_spec(cfg))
    model = build_model(cfg, bundle.num_classes, bundle.in_chans).to(device, memory_format=torch.channels_last)
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
        params.update({f"scheme.{stage}": h for stage, h in model.scheme_hashes().items()})
        params.update(
            {"model.params": sum(p.numel() for p in model.parameters()), "data.num_classes": bundle.num_classes}
        )
        tracker.log_params(params)
        _log_config_artifacts(tracker, cfg, model)

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
            metrics.update(distributed_evaluate(model, bundle.val, cfg, device, session))
            metrics["time/epoch_seconds"] = time.perf_counter() - started
            metrics["epoch"] = epoch + 1
            last_epoch = epoch == cfg.train.epochs - 1
            every = cfg.eval.every and (epoch + 1) % cfg.eval.every == 0
            checkpoint = (epoch + 1) % cfg.train.checkpoint_every == 0 or last_epoch
            state = None
            if chief:
                if last_epoch or every:
                    suite = _suite(model, bundle, cfg, device, progress)
                    metrics.update(suite.metrics)
                # Log before checkpointing: a crash in between replays this epoch from the previous
                # checkpoint (deterministically), and the tracker drops the steps it already has.
                tracker.log_metrics(metrics, step=epoch)
                if checkpoint:
                    state = _state(model, opt, scheduler, epoch, tracker.run_id, cfg, bundle.image_size)
                    if precision.scaler is not None:
                        state["grad_scaler"] = precision.scaler.state_dict()
                if last_epoch:  # everything the run records lands before the final report
                    _finish_run(tracker, suite, bundle, state, model, eval_loader(bundle.val, cfg), cfg, progress)
                progress.say(_epoch_line(epoch, cfg.train.epochs, metrics))
            session.report(metrics, epoch, state)
    except KeyboardInterrupt:
        if tracker is not None:
            tracker.finish("KILLED")
        raise
    except BaseException:
        if tracker is not None:
            tracker.finish("FAILED")
        raise
    return LoopResult(tracker.run_id if tracker else None, metrics, suite)


def _finish_run(tracker, suite, bundle, state, model, val, cfg: RunConfig, progress: Progress) -> None:
    _log_suite_artifacts(tracker, suite, bundle, progress)
    with tempfile.TemporaryDirectory() as tmp:
        final = save_checkpoint(Path(tmp), state["epoch"], state)
        tracker.log_artifact(final, "checkpoint")
    if cfg.tracking.log_model:
        progress.say("logging the model to MLflow")
        example, _ = next(iter(val))
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
        "schemes": json.dumps({stage: s.to_dict() for stage, s in model.schemes.items()}),
    }


def model_from_checkpoint(state: dict[str, Any]) -> CodedResNeXt:
    """Rebuild the trained model from a checkpoint alone: its config, its schemes (as codewords, so a
    moved scheme file or a regenerated scheme cannot change it) and its weights."""
    import yaml

    from coded_resnext.coding import CodingScheme
    from orchestration.config import config_from_dict

    cfg = config_from_dict(yaml.safe_load(state["config"]))
    saved = {stage: CodingScheme.from_dict(entry) for stage, entry in json.loads(state["schemes"]).items()}
    stages = [stage.name for stage in model_config(cfg.model.name).stages]
    model = build_model(cfg, state["num_classes"], state["in_chans"], {s: saved.get(s, SCHEME_OFF) for s in stages})
    model.load_state_dict(state["model"])
    return model.eval()


def _epoch_line(epoch: int, epochs: int, m: dict[str, float]) -> str:
    decode = [v for k, v in m.items() if k.startswith("val/decode_accuracy/")]
    last = f" decode(last) {decode[-1]:.4f}" if decode else ""
    return (
        f"epoch {epoch + 1}/{epochs}: loss {m['train/loss']:.4f} (coding {m['train/coding_loss']:.4f}) "
        f"val acc {m['val/accuracy']:.4f} loss {m['val/loss']:.4f}{last} [{m['time/epoch_seconds']:.0f}s]"
    )


def _suite(model, bundle: DatasetBundle, cfg: RunConfig, device, progress: Progress) -> SuiteResult:
    ood = None
    if cfg.data.ood:
        ood_data = build_ood_dataset(cfg.data.ood, bundle, root=cfg.data.root, download=cfg.data.download)
        ood = eval_loader(ood_data, cfg, device.type)
    return run_suite(
        model,
        val_loader=eval_loader(bundle.val, cfg, device.type),
        fit_loader=eval_loader(bundle.train_eval, cfg, device.type),
        device=device,
        settings=cfg.eval,
        ood_loader=ood,
        seed=cfg.seed,
        progress=progress.say,
    )


def _log_config_artifacts(tracker: RunTracker, cfg: RunConfig, model: CodedResNeXt) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "config.yaml").write_text(cfg.to_yaml())
        schemes = {stage: s.to_dict() for stage, s in model.schemes.items()}
        (tmp_path / "coding_schemes.json").write_text(json.dumps(schemes, indent=1))
        tracker.log_artifacts(tmp_path)


def _log_suite_artifacts(tracker: RunTracker, suite: SuiteResult, bundle: DatasetBundle, progress: Progress) -> None:
    import pandas as pd

    from results.run_plots import write_run_plots

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
