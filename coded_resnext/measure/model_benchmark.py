"""Side-by-side speed of the coded model, its plain control, the materialized reference and the
extracted binary classifier, measured interleaved in one process.

Each round times one step of every variant in turn, so drift in machine load hits all of them
alike; the report gives medians and ratios, with parameter and FLOP fractions beside the time ratio
of the binary classifier. Nothing here asserts a time.

Memory is measured like time: the peak and the volume allocated during one train step and one
inference of coded, control and materialized (``measure.memory``), as MiB and ratios. Avoiding the
materialized N x C_out branch outputs is half of why the Gram-matrix block exists.

The binary classifier as extracted is pruned *and* made ready for inference (BatchNorms folded,
channels-last; ``extraction.fusion``). So that no one credits pruning with what folding does, the
full model is timed both as it is and with the same ``fuse_for_inference``, and the pruned
classifier both with and without it; the ratios name which is which.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from coded_resnext.extraction.classifiers import extract_binary_classifier
from coded_resnext.extraction.fusion import fuse_for_inference
from coded_resnext.measure.memory import MemoryUse, peak_memory
from coded_resnext.models import CodedResNeXt, create_model
from coded_resnext.models.accounting import flop_count, parameter_count

logger = logging.getLogger(__name__)


@dataclass
class BenchResult:
    preset: str
    batch_size: int
    image_size: int
    threads: int
    rounds: int
    allocator: str = "glibc default"  # see coded_resnext.measure.cpu_allocator
    train_layout: str = "channels-last"
    train_precision: str = "fp32"  # autocast of the train steps: fp32 (none) or bf16
    train_compiled: bool = False  # train steps' forward and loss through torch.compile
    median_ms: dict[str, float] = field(default_factory=dict)
    # Inference of the same networks with and without fuse_for_inference (see the module docstring).
    inference_variants_ms: dict[str, float] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    binary: dict[str, float] = field(default_factory=dict)
    # step -> {"peak_mib", "allocated_mib"}: one train step / one inference; and coded vs the others
    memory_mib: dict[str, dict[str, float]] = field(default_factory=dict)
    memory_ratios: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        lines = [
            f"preset {self.preset}, batch {self.batch_size}, {self.image_size}x{self.image_size}, "
            f"{self.threads} threads, {self.rounds} interleaved rounds (medians), allocator: {self.allocator}, "
            f"train steps {self.train_layout}, {self.train_precision}{', compiled' if self.train_compiled else ''}",
            "",
            f"{'step':<34}{'median ms':>12}",
        ]
        lines += [f"{name:<34}{ms:>12.2f}" for name, ms in {**self.median_ms, **self.inference_variants_ms}.items()]
        lines += ["", f"{'ratio':<42}{'value':>12}"]
        lines += [f"{name:<42}{value:>12.3f}" for name, value in self.ratios.items()]
        lines += ["", f"{'memory (one step, above its start)':<34}{'peak MiB':>12}{'allocated MiB':>15}"]
        lines += [f"{name:<34}{m['peak_mib']:>12.1f}{m['allocated_mib']:>15.1f}" for name, m in self.memory_mib.items()]
        lines += ["", f"{'memory ratio':<42}{'value':>12}"]
        lines += [f"{name:<42}{value:>12.3f}" for name, value in self.memory_ratios.items()]
        lines += ["", f"{'binary classifier (class 0)':<42}{'fraction':>12}"]
        lines += [f"{name:<42}{value:>12.3f}" for name, value in self.binary.items()]
        lines += [
            "",
            "infer/binary is the classifier as extracted: pruned, BatchNorms folded, channels-last.",
            "infer/coded fused is the full model with that same fuse_for_inference; infer/binary unfused",
            "is the pruned classifier without it. Compare binary with 'full fused' for what pruning buys.",
        ]
        return "\n".join(lines)


def default_image_size(model: CodedResNeXt) -> int:
    return 32 if model.config.stem == "cifar" else 160  # the paper trains ImageNet at 160x160


def train_step(
    model: CodedResNeXt, x: Tensor, y: Tensor, autocast: torch.dtype | None = None, compiled: bool = False
) -> Callable[[], None]:
    """Forward, coding loss, backward and SGD step, as the trainer runs them (``orchestration/training.py``:
    ``train.precision`` autocasts the forward, ``train.compile`` compiles forward and loss)."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)

    def forward_and_loss() -> Tensor:
        return model.loss(model.forward_with_aux(x), y)

    forward = torch.compile(forward_and_loss) if compiled else forward_and_loss

    def step() -> None:
        with torch.autocast(x.device.type, dtype=autocast, enabled=autocast is not None):
            loss = forward()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _inference(module: nn.Module, x: Tensor) -> Callable[[], None]:
    @torch.inference_mode()
    def step() -> None:
        module(x)

    return step


def run_benchmark(
    preset: str,
    batch_size: int,
    rounds: int = 10,
    warmup: int = 2,
    image_size: int | None = None,
    num_classes: int | None = None,
    allocator: str = "glibc default",
    train_channels_last: bool = True,
    train_precision: str = "fp32",
    train_compiled: bool = False,
) -> BenchResult:
    """Time train steps (coded, control, materialized) and inference (those plus the binary
    classifier of class 0), interleaved for ``rounds`` rounds after ``warmup`` rounds."""
    torch.manual_seed(0)
    # By default trained as the trainer trains (orchestration/training.py): channels-last, which on
    # CPU is about 1.4x faster per step than contiguous NCHW for these nets.
    layout = torch.channels_last if train_channels_last else torch.contiguous_format
    coded = create_model(preset, num_classes).to(memory_format=layout)
    control = create_model(preset, num_classes, control=True).to(memory_format=layout)
    materialized = create_model(preset, num_classes, energy_impl="materialized").to(memory_format=layout)
    materialized.load_state_dict(coded.state_dict())
    size = image_size or default_image_size(coded)
    x = torch.randn(batch_size, coded.config.in_chans, size, size)
    y = torch.randint(0, coded.num_classes, (batch_size,))

    autocast = {"fp32": None, "bf16": torch.bfloat16}[train_precision]
    # Training steps change the weights; inference uses separate eval-mode copies so the binary
    # classifier is extracted from exactly the weights the full model runs with.
    infer_coded = create_model(preset, num_classes).eval()
    infer_control = create_model(preset, num_classes, control=True).eval()
    infer_materialized = create_model(preset, num_classes, energy_impl="materialized").eval()
    infer_materialized.load_state_dict(infer_coded.state_dict())
    binary = extract_binary_classifier(infer_coded, 0)  # pruned, folded, channels-last
    binary_unfused = extract_binary_classifier(infer_coded, 0, fuse=False)
    coded_fused = fuse_for_inference(infer_coded)

    steps: dict[str, Callable[[], None]] = {
        "train/coded": train_step(coded.train(), x, y, autocast, train_compiled),
        "train/control": train_step(control.train(), x, y, autocast, train_compiled),
        "train/materialized": train_step(materialized.train(), x, y, autocast, train_compiled),
        "infer/coded": _inference(infer_coded, x),
        "infer/control": _inference(infer_control, x),
        "infer/materialized": _inference(infer_materialized, x),
        "infer/binary": _inference(binary, x),
        "infer/coded fused": _inference(coded_fused, x),
        "infer/binary unfused": _inference(binary_unfused, x),
    }
    variants = ("infer/coded fused", "infer/binary unfused")
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(warmup + rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
        phase = "warm-up" if r < warmup else "round"
        logger.info("%s %d/%d", phase, r + 1 - (0 if r < warmup else warmup), warmup if r < warmup else rounds)

    med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    result = BenchResult(
        preset,
        batch_size,
        size,
        torch.get_num_threads(),
        rounds,
        allocator,
        "channels-last" if train_channels_last else "contiguous",
        train_precision,
        train_compiled,
        median_ms={name: ms for name, ms in med.items() if name not in variants},
        inference_variants_ms={name: med[name] for name in variants},
    )
    result.ratios = {
        "train coded / control": med["train/coded"] / med["train/control"],
        "train materialized / coded": med["train/materialized"] / med["train/coded"],
        "infer coded / control": med["infer/coded"] / med["infer/control"],
        "infer materialized / coded": med["infer/materialized"] / med["infer/coded"],
        "infer binary / full as-is": med["infer/binary"] / med["infer/coded"],
        "infer binary / full fused (same folding)": med["infer/binary"] / med["infer/coded fused"],
        "infer binary unfused / full as-is": med["infer/binary unfused"] / med["infer/coded"],
        "infer full fused / full as-is": med["infer/coded fused"] / med["infer/coded"],
    }
    memory = _memory(steps, {"train/coded": coded, "train/control": control, "train/materialized": materialized})
    result.memory_mib = {name: {"peak_mib": m.peak_mib, "allocated_mib": m.allocated_mib} for name, m in memory.items()}
    result.memory_ratios = _memory_ratios(memory)
    one = x[:1]
    result.binary = {
        "time vs full as-is": result.ratios["infer binary / full as-is"],
        "time vs full fused (same folding)": result.ratios["infer binary / full fused (same folding)"],
        # FLOPs of one image: the full model as-is recomputes its expand Gram matrices every forward
        # (once per batch, so they weigh more here than at batch 32); fused models precompute them
        "FLOPs": flop_count(binary, one) / flop_count(infer_coded, one),
        "FLOPs vs full fused": flop_count(binary, one) / flop_count(coded_fused, one),
        # sizes of the pruned net with its BatchNorms, counted as the full model's are
        "parameters (all)": parameter_count(binary_unfused) / parameter_count(infer_coded),
        "parameters (paper's accounting)": parameter_count(binary_unfused, paper_accounting=True)
        / parameter_count(infer_coded, paper_accounting=True),
    }
    return result


MEMORY_STEPS = (
    "train/coded",
    "train/control",
    "train/materialized",
    "infer/coded",
    "infer/control",
    "infer/materialized",
)


def _memory(steps: dict[str, Callable[[], None]], trained: dict[str, nn.Module]) -> dict[str, MemoryUse]:
    """One measured call of each step; train steps start without gradients (freed blocks from before the
    measurement would be invisible to the CPU profiler, see ``measure.memory``)."""
    out = {}
    for name in MEMORY_STEPS:
        if name in trained:
            trained[name].zero_grad(set_to_none=True)
        out[name] = peak_memory(steps[name])
    return out


def _memory_ratios(memory: dict[str, MemoryUse]) -> dict[str, float]:
    ratios = {}
    for kind in ("train", "infer"):
        coded, control, materialized = (memory[f"{kind}/{v}"] for v in ("coded", "control", "materialized"))
        ratios[f"{kind} peak coded / control"] = coded.peak_bytes / control.peak_bytes
        ratios[f"{kind} peak materialized / coded"] = materialized.peak_bytes / coded.peak_bytes
        ratios[f"{kind} allocated coded / control"] = coded.allocated_bytes / control.allocated_bytes
        ratios[f"{kind} allocated materialized / coded"] = materialized.allocated_bytes / coded.allocated_bytes
    return ratios
