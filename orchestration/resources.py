"""Whether a run's configuration fits its device, decided before anything is allocated.

A model whose width multiplier asks for terabytes, or a batch whose activations cannot fit, would
otherwise end in the allocator's ``RuntimeError: DefaultCPUAllocator: can't allocate memory`` (or CUDA's
out-of-memory error) after its MLflow run was opened. ``check_fits`` estimates the training footprint on
the meta device (``coded_resnext.measure.training_footprint``: weights, gradients, optimizer state, one
batch's activations) and compares it with the memory the device has available now (psutil on CPU,
``torch.cuda.mem_get_info`` on a GPU); a configuration that cannot fit is a one-line ``ResourceError``
naming the key (``model.width_multiplier``, ``model.name`` or ``optim.batch_size``) and the sizes. In a
sweep such a trial ends infeasible, as one that fails a constraint (``trial.py``). The allocator's own
error, should the estimate miss (other processes take the memory meanwhile), is turned into the same
kind of line by ``out_of_memory_error``.
"""

from __future__ import annotations

import psutil
import torch

from coded_resnext.measure import TrainingFootprint, training_footprint
from coded_resnext.orchestration.build import build_model
from coded_resnext.orchestration.config import RunConfig
from coded_resnext.orchestration.errors import UserError

_OOM_MARKERS = ("can't allocate memory", "out of memory", "not enough memory", "Cannot allocate memory")


class ResourceError(UserError):
    """A configuration that cannot be allocated on its device; the message names the key and the size.
    ``before_allocation``: found by the estimate, before the run allocated or recorded anything."""

    def __init__(self, message: str, *, before_allocation: bool = False) -> None:
        super().__init__(message)
        self.before_allocation = before_allocation


def size(n: float) -> str:
    """Bytes for a person: 3.2 TiB, 512.0 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def available_memory(device: torch.device) -> int:
    """Bytes the device can give a run now: free GPU memory, or the host's available memory."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return int(psutil.virtual_memory().available)


def footprint(cfg: RunConfig, num_classes: int, in_chans: int, image_size: int, world_size: int = 1):
    """The training footprint of one rank of a run of ``cfg`` (its share of the global batch)."""
    per_rank = max(1, cfg.optim.batch_size // world_size)
    with torch.device("meta"):
        model = build_model(cfg, num_classes, in_chans)
    slots = 1 if cfg.optim.momentum > 0 else 0  # SGD's momentum buffer
    return training_footprint(model, (per_rank, in_chans, image_size, image_size), slots)


def check_fits(
    cfg: RunConfig,
    num_classes: int,
    in_chans: int,
    image_size: int,
    device: torch.device,
    world_size: int = 1,
    available: int | None = None,
) -> TrainingFootprint:
    """The footprint, or a one-line ``ResourceError`` when it exceeds what ``device`` has available."""
    fp = footprint(cfg, num_classes, in_chans, image_size, world_size)
    available = available_memory(device) if available is None else available
    if fp.total <= available:
        return fp
    if fp.fixed > available:  # the model alone does not fit, whatever the batch
        key = (
            f"model.width_multiplier={cfg.model.width_multiplier:g}"
            if cfg.model.width_multiplier != 1
            else f"model.name={cfg.model.name}"
        )
        fix = "a smaller width multiplier or preset"
    else:
        key = f"optim.batch_size={cfg.optim.batch_size}"
        fix = "a smaller batch"
    raise ResourceError(
        f"{key}: training needs about {size(fp.total)} ({size(fp.fixed)} for weights, gradients and optimizer "
        f"state, {size(fp.activations)} of activations for {max(1, cfg.optim.batch_size // world_size)} images) "
        f"but {device.type} has {size(available)} available; choose {fix}",
        before_allocation=True,
    )


def is_out_of_memory(err: BaseException) -> bool:
    """The allocator could not allocate: torch's OutOfMemoryError, or a RuntimeError/MemoryError saying so."""
    if isinstance(err, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(err, RuntimeError) and any(marker in str(err) for marker in _OOM_MARKERS)


def out_of_memory_error(cfg: RunConfig, err: BaseException) -> ResourceError:
    """The one line for an allocator failure the estimate did not foresee."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
    return ResourceError(
        f"model.width_multiplier={cfg.model.width_multiplier:g}, optim.batch_size={cfg.optim.batch_size}: "
        f"ran out of memory ({first}); choose a smaller batch or width multiplier, or free memory"
    )
