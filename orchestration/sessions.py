"""Where a training loop runs: the same loop body, three places to checkpoint, report and sync.

- ``LocalSession``: the plain ``coded-resnext train`` process; checkpoints in ``runs/checkpoints/<hash>``.
- ``TuneSession``: a one-worker Tune trial running the loop in its own process; checkpoints go through
  ``ray.tune.report`` into the sweep's storage (a shared directory or an object store), so a restored
  trial resumes from ``ray.tune.get_checkpoint()``.
- ``TrainWorkerSession``: one rank of a Ray Train ``TorchTrainer``; every rank reports each epoch (Ray
  Train synchronizes on it), rank 0 alone attaches the checkpoint; ``all_reduce`` sums across ranks.

Ray is imported lazily, so the local path works without starting it.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import ray.train
import ray.train.torch
import ray.tune
import torch
import torch.distributed as dist
from ray.train import Checkpoint
from torch import nn

from coded_resnext.orchestration.checkpoint import load_latest_checkpoint, save_checkpoint
from coded_resnext.orchestration.errors import UserError

logger = logging.getLogger(__name__)


class Session(Protocol):
    rank: int
    world_size: int

    def restore(self) -> dict[str, Any] | None:
        """The last checkpoint's state, or None for a fresh start."""

    def report(self, metrics: dict[str, float], epoch: int, state: dict[str, Any] | None) -> None:
        """End of an epoch: hand over metrics and (when ``state`` is given) a checkpoint."""

    def all_reduce(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``values`` over all ranks."""

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module to train (DDP-wrapped across ranks)."""

    def device(self) -> torch.device | None:
        """The device this rank must use, when the runtime decides it (None: the config decides)."""

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a picklable object, e.g. the MLflow run id)."""


def _state_from_directory(directory: Path) -> dict[str, Any] | None:
    """The newest good checkpoint's state (a corrupt newer one is skipped, and said so)."""
    found = load_latest_checkpoint(directory)
    return None if found is None else found[1]


class _SingleProcess:
    rank = 0
    world_size = 1

    def all_reduce(self, values: torch.Tensor) -> torch.Tensor:
        return values

    def wrap(self, module: nn.Module) -> nn.Module:
        return module

    def device(self) -> torch.device | None:
        return None

    def broadcast(self, value: Any) -> Any:
        return value


class LocalSession(_SingleProcess):
    """Checkpoints in a local directory keyed by the config's hash; ``resume`` continues from them."""

    def __init__(self, directory: Path, resume: bool, epochs: int) -> None:
        self.directory = directory
        self.resume = resume
        self.epochs = epochs

    def restore(self) -> dict[str, Any] | None:
        found = load_latest_checkpoint(self.directory)
        if self.resume:
            if found is None:
                raise UserError(f"--resume: no checkpoint in {self.directory} for this config; run without --resume")
            last, state = found
            logger.info("resuming from %s (epoch %d of %d done)", last, state["epoch"] + 1, self.epochs)
            return state
        if found is not None:
            done = found[1]
            if done["epoch"] == self.epochs - 1:
                raise UserError(
                    f"this config was already trained to the end (MLflow run {done['run_id']}, checkpoints in "
                    f"{self.directory}); change something (e.g. --set seed=1) for another run, or delete that "
                    "directory to retrain"
                )
            raise UserError(
                f"checkpoints for this config already exist in {self.directory}; pass --resume to continue, "
                "or delete the directory to start over"
            )
        return None

    def report(self, metrics: dict[str, float], epoch: int, state: dict[str, Any] | None) -> None:
        if state is not None:
            save_checkpoint(self.directory, epoch, state)


def _ray_checkpoint_state(checkpoint) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return _state_from_directory(Path(directory))


def _report_with_checkpoint(report: Callable, metrics: dict[str, float], epoch: int, state: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp), epoch, state)
        report(metrics, checkpoint=Checkpoint.from_directory(tmp))  # uploaded before report returns


class TuneSession(_SingleProcess):
    """A one-worker trial inside Tune's trial process."""

    def restore(self) -> dict[str, Any] | None:
        return _ray_checkpoint_state(ray.tune.get_checkpoint())

    def report(self, metrics: dict[str, float], epoch: int, state: dict[str, Any] | None) -> None:
        if state is None:
            ray.tune.report(metrics)
        else:
            _report_with_checkpoint(ray.tune.report, metrics, epoch, state)


class TrainWorkerSession:
    """One rank of a Ray Train worker group (gloo on CPU, NCCL on GPU)."""

    def __init__(self) -> None:
        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()

    def restore(self) -> dict[str, Any] | None:
        return _ray_checkpoint_state(ray.train.get_checkpoint())

    def report(self, metrics: dict[str, float], epoch: int, state: dict[str, Any] | None) -> None:
        if state is not None and self.rank == 0:
            _report_with_checkpoint(ray.train.report, metrics, epoch, state)
        else:
            ray.train.report(metrics)

    def all_reduce(self, values: torch.Tensor) -> torch.Tensor:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def broadcast(self, value: Any) -> Any:
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def wrap(self, module: nn.Module) -> nn.Module:
        return ray.train.torch.prepare_model(module, parallel_strategy="ddp")

    def device(self) -> torch.device | None:
        return ray.train.torch.get_device()
