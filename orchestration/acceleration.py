"""How the train step uses the hardware: mixed precision, ``torch.compile``, SyncBatchNorm, determinism
and data loading. Each is a ``train.*`` setting (``orchestration/config.py``); this file turns them
into torch calls, so the loop in ``training.py`` stays the loop.

Everything here runs on CPU too, so it is tested on this project's CPU-only CI; the GPU-only parts
(the fp16 gradient scaler, cuDNN and cuBLAS flags, pinned memory) are exercised by
``benchmarks/gpu_check.py`` on a machine with a GPU.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
from torch import nn

from coded_resnext.layers.sync_batchnorm import SyncBatchNorm2d
from coded_resnext.orchestration.errors import UserError

# cuBLAS needs a fixed workspace to be deterministic (CUDA docs, "Results reproducibility");
# it is read when the first cuBLAS handle is made, so it is set before any CUDA work.
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"
MAX_AUTO_LOADER_WORKERS = 8


@dataclass
class Precision:
    """Autocast dtype (None: fp32) and, for fp16 on CUDA, the gradient scaler."""

    name: str  # fp32 | bf16 | fp16, resolved from the config's auto
    device_type: str
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward_and_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        """``loss.backward(); opt.step()``, through the scaler when there is one (fp16: small gradients
        would underflow; the scaler skips a step whose gradients overflowed and lowers its scale)."""
        if self.scaler is None:
            loss.backward()
            opt.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)
        self.scaler.update()


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``train.precision`` on ``device``: ``auto`` is bf16 on a GPU that has it, else fp32; fp16 needs CUDA."""
    if name == "auto":
        name = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise UserError(
            f"train.precision=fp16 needs a CUDA GPU (its gradient scaler), but this run is on {device.type}; "
            "use train.precision=bf16 (autocast works on CPU) or fp32"
        )
    if name == "fp32":
        return Precision(name, device.type, None)
    if name == "bf16":
        return Precision(name, device.type, torch.bfloat16)
    return Precision(name, device.type, torch.float16, torch.amp.GradScaler("cuda"))


def compile_step(step: nn.Module, enabled: bool, backend: str = "inductor") -> nn.Module:
    """``torch.compile`` of the train step (forward and loss; backward through AOTAutograd, including the
    coded block's hand-written one). The model's evaluation keeps running eagerly."""
    return torch.compile(step, backend=backend) if enabled else step


def sync_batchnorm(model: nn.Module, enabled: bool, world_size: int) -> nn.Module:
    """With ``enabled`` and more than one rank, BatchNorm statistics over the global batch
    (``coded_resnext.layers.sync_batchnorm``: torch's SyncBatchNorm has no CPU kernels)."""
    if not enabled or world_size == 1:
        return model

    return SyncBatchNorm2d.convert(model)


def set_determinism(enabled: bool, device: torch.device) -> None:
    """``train.deterministic``: deterministic algorithms everywhere, cuDNN's too, and cuBLAS's fixed
    workspace. Off: cuDNN may benchmark convolution algorithms (input sizes are fixed per run)."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC_WORKSPACE)
    # warn_only: an op with no deterministic version warns once instead of ending a long run
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = device.type == "cuda" and not enabled


def loader_workers(configured: int | None, device_type: str, cpus_per_worker: float = 1.0) -> int:
    """``train.loader_workers``, or when it is null: none on CPU (the model's own threads already use the
    cores; see ``benchmarks/loader_throughput.py``), and on a GPU one per CPU of this rank but one, up to 8."""
    if configured is not None:
        return configured
    if device_type != "cuda":
        return 0
    if cpus_per_worker > 1:  # a Ray Train rank: the CPUs it was given
        cpus = int(cpus_per_worker)
    else:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        cpus = affinity // max(1, torch.cuda.device_count())
    return max(1, min(MAX_AUTO_LOADER_WORKERS, cpus - 1))


def loader_options(workers: int, device_type: str, prefetch_factor: int) -> dict:
    """DataLoader keywords that keep a GPU fed: pinned host memory (asynchronous copies with
    ``non_blocking``), workers kept alive between epochs, and batches prepared ahead."""
    options: dict = {"num_workers": workers, "pin_memory": device_type == "cuda"}
    if workers > 0:
        options.update(persistent_workers=True, prefetch_factor=prefetch_factor)
    return options
