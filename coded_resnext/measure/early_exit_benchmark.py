"""Wall-clock of ``EarlyExit`` against the full model with the same folding, beside its FLOP fraction
(side by side in one process, interleaved, as ratios).

Both run fused (``fuse_for_inference``: BatchNorms folded, channels-last), so the ratio is what exiting
buys, not what folding does. At each batch size the inputs are cut into batches; one round times every
batch through the full model and then through the early exit, batch by batch, so drift in the
machine's load hits both alike; the report gives the median over rounds of each pass's total and the
ratio. The FLOP fraction is measured on the same samples: per sample, the FLOPs up to the coded block
where it left (``exit_compute_fractions``; 1 for the head) over the full forward's.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from coded_resnext.coding.decoding import decode
from coded_resnext.early_exit.network import EarlyExit
from coded_resnext.evaluation.early_exit import exit_compute_fractions
from coded_resnext.extraction.fusion import fuse_for_inference
from coded_resnext.models import CodedResNeXt

logger = logging.getLogger(__name__)


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
    # per coded block: the time of every sample leaving there (full batch) / full; see time_profile_fraction
    exit_time_fractions: list[float] = field(default_factory=list)
    # the wall-clock fraction if each sample cost the time of its exit point at the full batch size: the
    # network's own time profile, with no cost for shrinking batches (the FLOP fraction's counterpart in time)
    time_profile_fraction: float = 1.0
    # EarlyExit.predict over all these samples (survivors pooled across batches) / full; None at batch 1
    pooled_fraction: float | None = None


@dataclass
class EarlyExitBenchResult:
    source: str
    thresholds: list[float]
    threads: int
    rounds: int
    allocator: str
    exit_flop_fractions: list[float] = field(default_factory=list)  # FLOPs up to each coded block / full
    clock: str = "wall"  # or "thread-cpu" (see CLOCKS)
    rows: list[BatchTiming] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)  # when targets are known: full and early exit

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        lines = [
            f"{self.source}: thresholds {[round(t, 4) for t in self.thresholds]}, {self.threads} threads, "
            f"{self.rounds} interleaved rounds (medians, {self.clock} clock), allocator: {self.allocator}; "
            "both models fused, channels-last",
            "",
            f"{'batch':>6}{'samples':>9}{'full ms/img':>13}{'exit ms/img':>13}{'wall-clock':>12}{'pooled':>8}"
            f"{'FLOPs':>8}{'profile':>9}{'exit rate':>11}  exits per coded block, head",
        ]
        for r in self.rows:
            pooled = "-" if r.pooled_fraction is None else f"{r.pooled_fraction:.3f}"
            lines.append(
                f"{r.batch_size:>6}{r.samples:>9}{r.full_ms_per_image:>13.3f}{r.early_exit_ms_per_image:>13.3f}"
                f"{r.wall_clock_fraction:>12.3f}{pooled:>8}{r.flop_fraction:>8.3f}{r.time_profile_fraction:>9.3f}"
                f"{r.exit_rate:>11.3f}  {r.exits_per_block}"
            )
        flops = [round(f, 3) for f in self.exit_flop_fractions]
        lines += ["", f"{'batch':>6}  time of every sample leaving at coded block 0, 1, ... / full (FLOPs: {flops})"]
        lines += [f"{r.batch_size:>6}  {[round(f, 3) for f in r.exit_time_fractions]}" for r in self.rows]
        if self.accuracy:
            lines += ["", "accuracy on these samples: " + ", ".join(f"{k} {v:.4f}" for k, v in self.accuracy.items())]
        lines += [
            "",
            "wall-clock, FLOPs: early exit / full model (goal at batch 64: wall-clock <= FLOPs + 0.10). pooled: the",
            "same samples through EarlyExit.predict, which pools the samples that go on across batches so every",
            "segment runs on full batches. profile: the wall-clock fraction if each sample cost the time of its",
            "exit point at the full batch size (what the network's own time profile allows); wall-clock minus",
            "profile is what running deep segments on shrunken batches costs.",
        ]
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


@torch.no_grad()
def thresholds_for_block_exit_rate(
    model: CodedResNeXt, inputs: Tensor, rate: float, batch_size: int = 256
) -> list[float]:
    """One threshold per coded block such that about ``rate`` of the samples that reach each coded block
    leave there (e.g. 0.5: half leave at the first, a quarter of all at the second, ...): the same exit
    pattern on every net, whatever its confidences, so random-weight nets compare."""
    model.eval()
    confidences = []
    for i in range(0, len(inputs), batch_size):
        energies = model.forward_with_aux(inputs[i : i + batch_size]).energies
        conf = [decode(e, info.scheme).confidence for e, info in zip(energies, model.coded_blocks, strict=True)]
        confidences.append(torch.stack(conf, 1))
    table = torch.cat(confidences)  # (S, L)
    reaching = torch.ones(len(table), dtype=torch.bool)
    thresholds = []
    for block in range(table.shape[1]):
        here = table[reaching, block]
        if len(here) == 0:  # nobody left: never exit here
            thresholds.append(math.inf)
            continue
        # leave when confidence >= the (1 - rate) quantile; 'higher' keeps exact ties from overshooting
        threshold = torch.quantile(here, 1.0 - rate, interpolation="higher").item() if rate > 0 else math.inf
        thresholds.append(threshold)
        reaching &= table[:, block] < threshold
    return thresholds


CLOCKS: dict[str, Callable[[], float]] = {
    "wall": time.perf_counter,
    # CPU time of the calling thread: with one intra-op thread, the time the work took, whatever else the
    # machine runs (a preempted thread's clock stops); with more threads it misses the other threads' work
    "thread-cpu": time.thread_time,
}


def _timed(fn: Callable[[Tensor], object], x: Tensor, clock: Callable[[], float]) -> float:
    if x.is_cuda:  # a GPU runs kernels asynchronously: time the work, not its launch
        torch.cuda.synchronize(x.device)
    start = clock()
    fn(x)
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    return clock() - start


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
    clock: str = "wall",
) -> EarlyExitBenchResult:
    """Time the fused full model and ``EarlyExit`` of it on ``inputs`` at each batch size, and beside them
    an early exit forced at each coded block in turn (every sample leaves there: the time profile)."""
    full = fuse_for_inference(model)
    early = EarlyExit(full, threshold)
    blocks = len(early.thresholds)
    variants = {"full": full, "early exit": early}
    for b in range(blocks):  # every sample leaves at coded block b
        variants[f"exit {b}"] = EarlyExit(full, [-math.inf if i == b else math.inf for i in range(blocks)])
    fractions = exit_compute_fractions(full, inputs[:1])
    result = EarlyExitBenchResult(
        source, early.thresholds, torch.get_num_threads(), rounds, allocator, fractions, clock=clock
    )
    for batch_size in batch_sizes:
        count = min(len(inputs), samples_at_batch_1) if batch_size == 1 else len(inputs) // batch_size * batch_size
        if count == 0:
            raise ValueError(f"{len(inputs)} inputs are fewer than one batch of {batch_size}")
        batches = [inputs[i : i + batch_size] for i in range(0, count, batch_size)]
        pooled = {} if batch_size == 1 else {"pooled": lambda b=batch_size, n=count: early.predict(inputs[:n], b)}
        seconds = _interleaved(variants, batches, rounds, warmup, CLOCKS[clock], pooled)
        exit_blocks = torch.cat([early(x).exit_block for x in batches])
        exits = [int((exit_blocks == b).sum()) for b in range(blocks)] + [int((exit_blocks < 0).sum())]
        exit_times = [seconds[f"exit {b}"] / seconds["full"] for b in range(blocks)]
        profile = sum(n * t for n, t in zip(exits, [*exit_times, 1.0], strict=True)) / count
        result.rows.append(
            BatchTiming(
                batch_size,
                count,
                1e3 * seconds["full"] / count,
                1e3 * seconds["early exit"] / count,
                seconds["early exit"] / seconds["full"],
                _flop_fraction(exit_blocks, fractions),
                (exit_blocks >= 0).float().mean().item(),
                exits,
                exit_times,
                profile,
                seconds["pooled"] / seconds["full"] if pooled else None,
            )
        )
    if targets is not None:
        result.accuracy = _accuracies(full, early, inputs, targets)
    return result


def _interleaved(
    variants: dict,
    batches: list[Tensor],
    rounds: int,
    warmup: int,
    clock: Callable[[], float],
    whole: dict[str, Callable[[], object]],
) -> dict[str, float]:
    """Per variant, the median over rounds of the time to run every batch; in each round the variants
    take turns batch by batch, so drift in the machine's load hits them alike. ``whole`` runs take all
    the batches at once, once per round."""
    totals: dict[str, list[float]] = {name: [] for name in [*variants, *whole]}
    for r in range(warmup + rounds):
        round_total = dict.fromkeys(totals, 0.0)
        for x in batches:
            for name, module in variants.items():
                round_total[name] += _timed(module, x, clock)
        for name, run in whole.items():
            round_total[name] = _timed(lambda _x, run=run: run(), batches[0], clock)
        if r >= warmup:
            for name, seconds in round_total.items():
                totals[name].append(seconds)
        phase = f"warm-up {r + 1}/{warmup}" if r < warmup else f"round {r + 1 - warmup}/{rounds}"
        logger.info("batch %d: %s", len(batches[0]), phase)
    return {name: statistics.median(t) for name, t in totals.items()}


def _accuracies(full: nn.Module, early: EarlyExit, inputs: Tensor, targets: Tensor) -> dict[str, float]:
    n, step = len(inputs), 64
    full_pred = torch.cat([full(inputs[i : i + step]).argmax(1) for i in range(0, n, step)])
    exit_pred = torch.cat([early(inputs[i : i + step]).prediction for i in range(0, n, step)])
    return {
        "full": (full_pred == targets[:n]).float().mean().item(),
        "early exit": (exit_pred == targets[:n]).float().mean().item(),
    }


def _flop_fraction(exit_blocks: Tensor, fractions: list[float]) -> float:
    per_sample = torch.tensor([*fractions, 1.0])[exit_blocks.where(exit_blocks >= 0, len(fractions))]
    return per_sample.mean().item()
