"""Data-parallel training of one configuration on a Ray Train ``TorchTrainer``.

Each rank runs ``training.train_loop`` with a ``TrainWorkerSession``: a ``DistributedSampler`` shard of
every epoch's permutation, DDP gradient sync (gloo on CPU, NCCL on GPU), validation summed over ranks,
and rank 0 alone logging to MLflow and attaching checkpoints. ``FailureConfig(max_failures)`` restarts
the group from the last reported checkpoint when a worker dies; the checkpoint carries the MLflow run
id, so the restarted rank 0 continues the same run and the tracker drops steps it already has. A run
that is not a trial gets a ``run_key`` here, once per trainer, so a group restarted before its first
checkpoint was registered finds its run by that tag instead of creating a second one (``lineage.py``).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from ray.train import FailureConfig, ScalingConfig
from ray.train import RunConfig as RayRunConfig
from ray.train.torch import TorchTrainer

from coded_resnext.orchestration import logs
from coded_resnext.orchestration.config import RunConfig, config_from_dict
from coded_resnext.orchestration.lineage import Lineage
from coded_resnext.orchestration.sessions import TrainWorkerSession
from coded_resnext.orchestration.training import Progress, train_loop


def worker_loop(loop_config: dict[str, Any]) -> None:
    """The function every Ray Train worker runs."""
    cfg = config_from_dict(loop_config["config"])
    session = TrainWorkerSession()
    if session.rank == 0:  # its progress lines reach the driver's console (Ray forwards worker output)
        logs.configure(loop_config.get("log_level", logs.NORMAL))
    progress = Progress(cfg.train.progress if session.rank == 0 else "none", cfg.train.epochs)
    train_loop(
        cfg,
        session,
        Lineage(**loop_config["lineage"]),
        progress,
        measure_test=loop_config["measure_test"],
        rung_epochs=loop_config.get("rung_epochs", ()),
    )


def make_trainer(
    cfg: RunConfig,
    lineage: Lineage,
    *,
    storage_path: str,
    name: str,
    callbacks: list | None = None,
    measure_test: bool = False,
    rung_epochs: tuple[int, ...] = (),
):
    """A ``TorchTrainer`` for ``cfg`` (``cfg.train.num_workers`` ranks). Re-creating it with the same
    ``name`` and ``storage_path`` resumes from that run's last checkpoint (Ray Train V2).
    ``measure_test``: a single ``train`` run's end measures the test split (a trial's never does)."""
    if not lineage.identity():
        lineage = dataclasses.replace(lineage, run_key=uuid.uuid4().hex)
    t = cfg.train
    resources = {"CPU": t.cpus_per_worker}
    if t.gpus_per_worker:
        resources["GPU"] = t.gpus_per_worker
    return TorchTrainer(
        worker_loop,
        train_loop_config={
            "config": cfg.to_dict(),
            "lineage": dataclasses.asdict(lineage),
            "measure_test": measure_test,
            "rung_epochs": rung_epochs,
        },
        scaling_config=ScalingConfig(
            num_workers=t.num_workers, use_gpu=t.gpus_per_worker > 0, resources_per_worker=resources
        ),
        run_config=RayRunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=FailureConfig(max_failures=t.max_failures),
            callbacks=callbacks or [],
        ),
    )
