"""Peak memory of one step, measured like time: on CUDA the caching allocator's own counters, on CPU
the allocation events of ``torch.profiler`` (``profile_memory=True``).

Both count only what the step itself allocates (activations, gradients, workspaces), from a baseline
of what was already live (weights, optimizer state), so coded, control and materialized models compare
by what their forward and backward passes need. ``allocated`` is the total volume allocated during
the step, freed or not: memory traffic through the allocator, which the materialized coded block
multiplies by building every branch output.

CPU: the PyTorch CPU allocator reports every allocation and free to the profiler when memory profiling
is on; the running sum of those events, in time order, is the live memory the step added, and its
maximum the peak. (There is no ``torch.cpu.max_memory_allocated``.) Blocks allocated before the
profiler started and freed during the step are not seen: call the step once before measuring, and
start it from a clean state (e.g. gradients set to None), as ``peak_memory`` expects.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile


@dataclass(frozen=True)
class MemoryUse:
    peak_bytes: int  # most memory the step held at once above its starting point
    allocated_bytes: int  # everything it allocated

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20

    @property
    def allocated_mib(self) -> float:
        return self.allocated_bytes / 2**20


def peak_memory(step: Callable[[], object], device: torch.device | str = "cpu") -> MemoryUse:
    """Peak and total allocation of one call of ``step`` on ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        return _cuda_peak(step, device)
    return _cpu_peak(step)


def _cuda_peak(step: Callable[[], object], device: torch.device) -> MemoryUse:
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    before = torch.cuda.memory_stats(device).get("allocated_bytes.all.allocated", 0)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    after = torch.cuda.memory_stats(device).get("allocated_bytes.all.allocated", 0)
    return MemoryUse(torch.cuda.max_memory_allocated(device) - base, after - before)


def _cpu_peak(step: Callable[[], object]) -> MemoryUse:
    # kineto logs "gpuGetDeviceCount failed" as an ERROR on every profile of a machine without a GPU;
    # read when the profiler starts, so quiet it here unless the user set the level
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    # every "[memory]" event is one allocation (> 0 bytes) or free (< 0) of the CPU allocator
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]"
    )
    live = peak = allocated = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
        allocated += max(nbytes, 0)
    return MemoryUse(peak, allocated)
