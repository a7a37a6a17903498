"""Measuring speed and memory: the coded model against its control, the materialized reference and the
extracted binary classifier (``model_benchmark``), an early exit against the full model
(``early_exit_benchmark``), the peak memory of one step (``memory``), what training a model will hold,
estimated on the meta device before anything is allocated (``footprint``), and glibc's allocator set to
keep freed memory (``cpu_allocator``).

Every comparison is side by side in one process, interleaved, and reported as ratios; nothing here
asserts a time. Parameter and FLOP counts are not here but with the models (``models.accounting``),
since the evaluation suite reports them too.
"""

from coded_resnext.measure.cpu_allocator import retain_freed_memory
from coded_resnext.measure.early_exit_benchmark import (
    BatchTiming,
    EarlyExitBenchResult,
    run_early_exit_benchmark,
    threshold_for_exit_rate,
)
from coded_resnext.measure.footprint import TrainingFootprint, training_footprint
from coded_resnext.measure.memory import MemoryUse, peak_memory
from coded_resnext.measure.model_benchmark import BenchResult, default_image_size, run_benchmark, train_step

__all__ = [
    "BatchTiming",
    "BenchResult",
    "EarlyExitBenchResult",
    "MemoryUse",
    "TrainingFootprint",
    "default_image_size",
    "peak_memory",
    "retain_freed_memory",
    "run_benchmark",
    "run_early_exit_benchmark",
    "threshold_for_exit_rate",
    "train_step",
    "training_footprint",
]
