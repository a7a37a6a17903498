"""Wall-clock of ``EarlyExit`` against the full model with the same folding, beside its FLOP fraction
(DESIGN.md, performance stance: side by side in one process, interleaved, as ratios).

Both run fused (``fuse_for_inference``: BatchNorms folded, channels-last), so the ratio is what exiting
buys, not what folding does. At each batch size the inputs are cut into batches; one round times every
batch through the full model and then through the early exit, batch by batch, so drift in the
machine's load hits both alike; the report gives the median over rounds of each pass's total and the
ratio. The FLOP fraction is measured on the same samples: per sample, the FLOPs up to the coded block
where it left (``exit_compute_fractions``; 1 for the head) over the full forward's.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from coded_resnext.decoding import decode
from coded_resnext.early_exit import EarlyExit
from coded_resnext.evaluation.early_exit import exit_compute_fractions
from coded_resnext.fusion import fuse_for_inference
from coded_resnext.models import CodedResNeXt


@dataclass
class BatchTiming:
    batch_size: int
    samples: int
    full_ms_per_image: float
    early_exit_ms_per_image: float
    wall_clock_fraction: float  # early exit / full, medians over rounds of each pass's total
    flop_fraction: float
    exit_rate: float
    exits_per_block: list[int]  # samples leaving at each coded block, then at the head


@dataclass
class EarlyExitBenchResult:
    source: str
    thresholds: list[float]
    threads: int
    rounds: int
    allocator: str
    rows: list[BatchTiming] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)  # when targets are known: full and early exit

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        lines = [
            f"{self.source}: thresholds {[round(t, 4) for t in self.thresholds]}, {self.threads} threads, "
            f"{self.rounds} interleaved rounds (medians), allocator: {self.allocator}; both models fused, channels-last",
            "",
            f"{'batch':>6}{'samples':>9}{'full ms/img':>13}{'exit ms/img':>13}{'wall-clock':>12}{'FLOPs':>9}"
            f"{'exit rate':>11}  exits per coded block, head",
        ]
        for r in self.rows:
            lines.append(
                f"{r.batch_size:>6}{r.samples:>9}{r.full_ms_per_image:>13.3f}{r.early_exit_ms_per_image:>13.3f}"
                f"{r.wall_clock_fraction:>12.3f}{r.flop_fraction:>9.3f}{r.exit_rate:>11.3f}  {r.exits_per_block}"
            )
        if self.accuracy:
            lines += ["", "accuracy on these samples: " + ", ".join(f"{k} {v:.4f}" for k, v in self.accuracy.items())]
        lines += ["", "wall-clock and FLOPs are early exit / full model; goal at batch 64: wall-clock <= FLOPs + 0.10"]
        return "\n".join(lines)


@torch.no_grad()
def threshold_for_exit_rate(model: CodedResNeXt, inputs: Tensor, rate: float, batch_size: int = 256) -> float:
    """One threshold for every block such that about ``rate`` of ``inputs`` exit before the head: a sample
    exits when its largest confidence over the coded blocks reaches it."""
    model.eval()
    best = []
    for i in range(0, len(inputs), batch_size):
        energies = model.forward_with_aux(inputs[i : i + batch_size]).energies
        conf = [decode(e, info.scheme).confidence for e, info in zip(energies, model.coded_blocks, strict=True)]
        best.append(torch.stack(conf, 1).amax(1))
    return torch.quantile(torch.cat(best), 1.0 - rate).item()


def _timed(fn: Callable[[Tensor], object], x: Tensor) -> float:
    start = time.perf_counter()
    fn(x)
    return time.perf_counter() - start


@torch.inference_mode()
def run_early_exit_benchmark(
    model: CodedResNeXt,
    inputs: Tensor,
    threshold: float | Sequence[float],
    *,
    source: str,
    batch_sizes: Sequence[int] = (1, 64),
    samples_at_batch_1: int = 64,
    rounds: int = 5,
    warmup: int = 1,
    targets: Tensor | None = None,
    allocator: str = "glibc default",
    progress: Callable[[str], None] | None = None,
) -> EarlyExitBenchResult:
    """Time the fused full model and ``EarlyExit`` of it on ``inputs`` at each batch size."""
    full = fuse_for_inference(model)
    early = EarlyExit(full, threshold)
    fractions = exit_compute_fractions(full, inputs[:1])
    result = EarlyExitBenchResult(source, early.thresholds, torch.get_num_threads(), rounds, allocator)
    for batch_size in batch_sizes:
        count = min(len(inputs), samples_at_batch_1) if batch_size == 1 else len(inputs) // batch_size * batch_size
        if count == 0:
            raise ValueError(f"{len(inputs)} inputs are fewer than one batch of {batch_size}")
        batches = [inputs[i : i + batch_size] for i in range(0, count, batch_size)]
        exit_blocks = torch.cat([early(x).exit_block for x in batches])
        full_times, exit_times = [], []
        for r in range(warmup + rounds):
            full_total = exit_total = 0.0
            for x in batches:
                full_total += _timed(full, x)
                exit_total += _timed(early, x)
            if r >= warmup:
                full_times.append(full_total)
                exit_times.append(exit_total)
            if progress is not None:
                phase = f"warm-up {r + 1}/{warmup}" if r < warmup else f"round {r + 1 - warmup}/{rounds}"
                progress(f"batch {batch_size}: {phase}")
        full_s, exit_s = statistics.median(full_times), statistics.median(exit_times)
        result.rows.append(
            BatchTiming(
                batch_size,
                count,
                1e3 * full_s / count,
                1e3 * exit_s / count,
                exit_s / full_s,
                _flop_fraction(exit_blocks, fractions),
                (exit_blocks >= 0).float().mean().item(),
                [int((exit_blocks == b).sum()) for b in range(len(fractions))] + [int((exit_blocks < 0).sum())],
            )
        )
    if targets is not None:
        n = len(inputs)
        result.accuracy = {
            "full": (_predict(full, inputs) == targets[:n]).float().mean().item(),
            "early exit": (torch.cat([early(inputs[i : i + 64]).prediction for i in range(0, n, 64)]) == targets[:n])
            .float()
            .mean()
            .item(),
        }
    return result


def _flop_fraction(exit_blocks: Tensor, fractions: list[float]) -> float:
    per_sample = torch.tensor([*fractions, 1.0])[exit_blocks.where(exit_blocks >= 0, len(fractions))]
    return per_sample.mean().item()


def _predict(model: CodedResNeXt, inputs: Tensor) -> Tensor:
    return torch.cat([model(inputs[i : i + 64]).argmax(1) for i in range(0, len(inputs), 64)])
