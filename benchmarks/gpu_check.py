"""One script that checks the GPU path on a machine with a GPU, in under 5 minutes:

    python benchmarks/gpu_check.py                 # on a GPU machine: the full check
    python benchmarks/gpu_check.py --tiny          # anywhere, in seconds: the same code on a tiny net

It prints
1. train throughput (images/s) of the CIFAR-10 net (coded_resnext29_10x11d) coded vs its plain control at
   batch 128, bf16 autocast, channels-last, eager and torch.compile'd, and the coded / control ratios
   (the train step is the trainer's own: ``TrainStep``, ``acceleration.resolve_precision``/``compile_step``);
2. inference time of class 0's binary classifier and of the early-exit network (threshold for an exit
   rate of 0.5) against the full model with the same BatchNorm folding;
   and ``bench early-exit``'s table on that net at batch 1, 16, 64 and 256, with thresholds at which 25, 50
   and 75% of the samples reaching each coded block leave there: the wall-clock fraction of the full model's
   time beside the FLOP fraction and the time profile (the time of each sample's exit point at the full
   batch), and wall-clock minus profile (routing: what shrinking batches cost; on a GPU each exit also
   waits on the host for the batch's decisions). The CPU figures, and what to look for here, are in
   docs/early_exit_and_gpu.md;
3. where 2 GPUs exist, one 2-rank NCCL data-parallel train step (DDP + SyncBatchNorm2d) and whether the
   ranks' weights agree after it (``--ddp`` forces it, with gloo on CPU).

Without a GPU it runs the tiny version of all of it (a 2-block net, batch 8, ``torch.compile`` with the
eager backend: Dynamo's capture of the train step without inductor's C++ build, which takes minutes on
CPU; ``tests/test_acceleration.py`` checks compiled against eager numerically), which CI runs, so the
script cannot rot. Nothing here asserts a speed: it prints figures and ratios; the run fails only if something breaks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from coded_resnext import CodedResNeXt, CodedResNeXtConfig, EarlyExit, StageConfig, create_model
from coded_resnext.extraction import extract_binary_classifier
from coded_resnext.extraction.fusion import fuse_for_inference
from coded_resnext.measure.early_exit_benchmark import (
    run_early_exit_benchmark,
    threshold_for_exit_rate,
    thresholds_for_block_exit_rate,
)
from coded_resnext.orchestration import acceleration
from coded_resnext.orchestration.training import TrainStep


@dataclass(frozen=True)
class Plan:
    """What to run: the full check on a GPU, or its tiny twin anywhere."""

    name: str
    batch: int
    image_size: int
    steps: int
    warmup: int
    compile_backend: str
    make_model: Callable[..., CodedResNeXt]
    exit_batches: tuple[int, ...] = (1, 16, 64, 256)  # the early-exit table's batch sizes
    exit_rates: tuple[float, ...] = (0.25, 0.5, 0.75)  # ... and its exit rates at each coded block
    exit_samples: int = 512  # images timed at batch > 1 (64 at batch 1)


def _paper_net(control: bool = False) -> CodedResNeXt:
    return create_model("coded_resnext29_10x11d", 10, control=control)


def _tiny_net(control: bool = False) -> CodedResNeXt:
    stages = (StageConfig("c2", 1, 16, 2, 4, 4, stride=2), StageConfig("c3", 1, 32, 2, 10, 5, stride=2))
    return CodedResNeXt(CodedResNeXtConfig(num_classes=10, stages=stages, stem_channels=8, control=control))


FULL = Plan("coded_resnext29_10x11d", 128, 32, steps=20, warmup=3, compile_backend="inductor", make_model=_paper_net)
TINY = Plan(
    "tiny 2-block net", 8, 16, steps=3, warmup=1, compile_backend="eager", make_model=_tiny_net,
    exit_batches=(1, 4), exit_rates=(0.5,), exit_samples=16,
)  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(
    fns: dict[str, Callable[[], object]], device: torch.device, steps: int, warmup: int
) -> dict[str, float]:
    """Median seconds of each function, called in turn round by round (drift hits them alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + steps):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def train_throughput(plan: Plan, device: torch.device, precision: str = "bf16") -> dict:
    """Images/s of one train step (forward, loss, backward, SGD) of coded and control, eager and compiled."""
    amp = acceleration.resolve_precision(precision, device)
    x = torch.randn(plan.batch, 3, plan.image_size, plan.image_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (plan.batch,), device=device)
    out: dict = {"precision": amp.name, "batch": plan.batch}
    steps = {}
    for compiled in (False, True):
        for variant in ("coded", "control"):
            torch.manual_seed(0)
            model = plan.make_model(control=variant == "control").to(device, memory_format=torch.channels_last)
            step = acceleration.compile_step(TrainStep(model).train(), compiled, plan.compile_backend)
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)

            def one_step(step=step, opt=opt) -> None:
                with amp.autocast():
                    loss = step(x, y)["total"]
                opt.zero_grad(set_to_none=True)
                amp.backward_and_step(loss, opt)

            name = f"{variant} {'compiled' if compiled else 'eager'}"
            started = time.perf_counter()
            one_step()  # compiles here
            _sync(device)
            out[f"{name} first step s"] = time.perf_counter() - started
            steps[name] = one_step
    seconds = _median_seconds(steps, device, plan.steps, plan.warmup)
    for name, s in seconds.items():
        out[f"{name} images/s"] = plan.batch / s
    for kind in ("eager", "compiled"):
        out[f"coded / control time, {kind}"] = seconds[f"coded {kind}"] / seconds[f"control {kind}"]
    for variant in ("coded", "control"):
        out[f"compiled / eager time, {variant}"] = seconds[f"{variant} compiled"] / seconds[f"{variant} eager"]
    return out


@torch.inference_mode()
def inference_times(plan: Plan, device: torch.device) -> dict:
    """Binary classifier and early exit against the full model, all fused (BatchNorms folded, channels-last)."""
    torch.manual_seed(0)
    model = plan.make_model().to(device).eval()
    x = torch.randn(plan.batch, 3, plan.image_size, plan.image_size, device=device)
    full = fuse_for_inference(model)
    binary = extract_binary_classifier(model, 0)
    early = EarlyExit(full, threshold_for_exit_rate(model, x, 0.5))
    exits = early(x).exit_block
    modules = {"full": full, "binary": binary, "early exit": early}
    times = _median_seconds({name: (lambda m=m: m(x)) for name, m in modules.items()}, device, plan.steps, plan.warmup)
    return {
        "batch": plan.batch,
        **{f"{name} ms": 1e3 * s for name, s in times.items()},
        "binary / full time": times["binary"] / times["full"],
        "early exit / full time": times["early exit"] / times["full"],
        "early exit rate": (exits >= 0).float().mean().item(),
    }


@torch.inference_mode()
def early_exit_table(plan: Plan, device: torch.device) -> list[dict]:
    """``bench early-exit --block-exit-rate R --batch-sizes ...`` on this device (wall clock, synchronized):
    one row per exit rate and batch size."""
    torch.manual_seed(0)
    model = plan.make_model().to(device).eval()
    inputs = torch.randn(plan.exit_samples, 3, plan.image_size, plan.image_size, device=device)
    rows = []
    for rate in plan.exit_rates:
        thresholds = thresholds_for_block_exit_rate(model, inputs, rate)
        result = run_early_exit_benchmark(
            model,
            inputs,
            thresholds,
            source=f"{plan.name}, exit rate {rate} at each coded block",
            batch_sizes=plan.exit_batches,
            samples_at_batch_1=min(64, plan.exit_samples),
            rounds=plan.steps,
            warmup=plan.warmup,
        )
        for r in result.rows:
            rows.append(
                {
                    "rate": rate,
                    "batch": r.batch_size,
                    "wall-clock": r.wall_clock_fraction,
                    "FLOPs": r.flop_fraction,
                    "profile": r.time_profile_fraction,
                    "routing": r.wall_clock_fraction - r.time_profile_fraction,
                    "pooled": r.pooled_fraction,
                    "full ms/img": r.full_ms_per_image,
                }
            )
    return rows


def _table(title: str, rows: list[dict]) -> str:
    head = "".join(f"{k:>12}" for k in rows[0])
    body = ["".join(f"{v:>12.3f}" if isinstance(v, float) else f"{v!s:>12}" for v in row.values()) for row in rows]
    return "\n".join([f"\n{title}", head, *body])


def _ddp_rank(rank: int, plan: Plan, backend: str, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model = plan.make_model().to(device, memory_format=torch.channels_last)
        model = acceleration.sync_batchnorm(model, True, world_size=2)
        ids = [rank] if device.type == "cuda" else None
        step = torch.nn.parallel.DistributedDataParallel(TrainStep(model), device_ids=ids)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        torch.manual_seed(1 + rank)  # each rank its own data
        x = torch.randn(plan.batch, 3, plan.image_size, plan.image_size, device=device)
        x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (plan.batch,), device=device)
        started = time.perf_counter()
        loss = step(x, y)["total"]
        loss.backward()
        opt.step()
        _sync(device)
        seconds = time.perf_counter() - started
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        others = [torch.empty_like(flat) for _ in range(2)]
        dist.all_gather(others, flat)
        divergence = (others[0] - others[1]).abs().max().item()
        if rank == 0:
            Path(out_dir, "ddp.json").write_text(json.dumps({"step s": seconds, "param divergence": divergence}))
    finally:
        dist.destroy_process_group()


def ddp_step(plan: Plan, backend: str) -> dict:
    """One DDP + SyncBatchNorm2d train step on 2 ranks (spawned), with the ranks' weight divergence after it."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_ddp_rank, args=(plan, backend, f"{tmp}/init", tmp), nprocs=2, join=True)
        return {"backend": backend, **json.loads(Path(tmp, "ddp.json").read_text())}


def run(tiny: bool = False, ddp: bool | None = None, say: Callable[[str], None] = print) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    plan = TINY if tiny or device.type != "cuda" else FULL
    started = time.perf_counter()
    say(f"gpu_check: {plan.name} on {_describe(device)}, torch {torch.__version__}")
    report: dict = {"device": _describe(device), "plan": plan.name}
    report["train"] = train_throughput(plan, device)
    say(_lines("train step (bf16 autocast, channels-last)", report["train"]))
    report["inference"] = inference_times(plan, device)
    say(_lines("inference (all with BatchNorms folded, channels-last)", report["inference"]))
    report["early_exit"] = early_exit_table(plan, device)
    say(
        _table(
            "early exit / full model (routing = wall-clock - profile; goals: wall-clock <= FLOPs + 0.10 at batch 64, routing <= 0.05)",
            report["early_exit"],
        )
    )
    two_gpus = device.type == "cuda" and torch.cuda.device_count() >= 2
    if ddp or (ddp is None and two_gpus):
        report["ddp"] = ddp_step(plan, "nccl" if two_gpus else "gloo")
        say(_lines("2-rank data-parallel step (DDP + SyncBatchNorm2d)", report["ddp"]))
    else:
        say("\n2-rank data-parallel step: skipped (needs 2 GPUs; --ddp runs it with gloo on CPU)")
    report["seconds"] = time.perf_counter() - started
    say(f"\ndone in {report['seconds']:.0f} s")
    return report


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} x{torch.cuda.device_count()}"
    return f"CPU ({torch.get_num_threads()} threads)"


def _lines(title: str, values: dict) -> str:
    body = [f"  {k:<40}{v:>12.3f}" if isinstance(v, float) else f"  {k:<40}{v!s:>12}" for k, v in values.items()]
    return "\n".join([f"\n{title}", *body])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the tiny version (the default without a GPU)")
    parser.add_argument("--ddp", action="store_true", default=None, help="run the 2-rank step even without 2 GPUs")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    report = run(args.tiny, args.ddp)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
