"""One train step (forward, coding loss, backward, SGD) of the coded model and its plain control under
fp32 and bf16 autocast, eager and torch.compile'd, interleaved round by round in one process, channels-last
as the trainer trains. Prints medians, coded / control per variant (goal: <= 1.05), and bf16 / fp32 and
compiled / eager per model.

    python benchmarks/train_step_variants.py                                   # 10x11d, batch 32
    python benchmarks/train_step_variants.py --preset coded_resnext_mini --batch-size 128 --no-compile

Compiling takes minutes on CPU (inductor builds C++), once per model and precision, before the rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="coded_resnext29_10x11d")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--clock",
        choices=("wall", "thread-cpu"),
        default="wall",
        help="thread-cpu: this thread's CPU time, not inflated by a busy machine (use with --threads 1)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    import torch

    from coded_resnext import create_model
    from coded_resnext.measure.cpu_allocator import retain_freed_memory
    from coded_resnext.measure.model_benchmark import default_image_size, train_step

    retain_freed_memory()
    clock = time.thread_time if args.clock == "thread-cpu" else time.perf_counter
    if args.clock == "thread-cpu" and args.threads != 1:
        parser.error("--clock thread-cpu needs --threads 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    probe = create_model(args.preset)
    size = default_image_size(probe)
    x = torch.randn(args.batch_size, probe.config.in_chans, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, probe.num_classes, (args.batch_size,))
    steps = {}
    for compiled in (False,) if args.no_compile else (False, True):
        for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            for variant in ("coded", "control"):
                torch.manual_seed(0)
                model = create_model(args.preset, control=variant == "control").to(memory_format=torch.channels_last)
                name = f"{variant} {precision} {'compiled' if compiled else 'eager'}"
                steps[name] = train_step(model.train(), x, y, dtype, compiled)
                started = time.perf_counter()
                steps[name]()  # compiles here
                print(f"  {name}: first step {time.perf_counter() - started:.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(args.warmup + args.rounds):
        for name, step in steps.items():
            started = clock()
            step()
            if r >= args.warmup:
                times[name].append(clock() - started)
        print(f"  round {r + 1}/{args.warmup + args.rounds}", flush=True)
    med = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    ratios = {}
    for name in med:
        variant, precision, mode = name.split()
        if variant == "coded":
            ratios[f"coded / control, {precision} {mode}"] = med[name] / med[f"control {precision} {mode}"]
        if precision == "bf16":
            ratios[f"bf16 / fp32, {variant} {mode}"] = med[name] / med[f"{variant} fp32 {mode}"]
        if mode == "compiled":
            ratios[f"compiled / eager, {variant} {precision}"] = med[name] / med[f"{variant} {precision} eager"]
    out = {"preset": args.preset, "batch": args.batch_size, "rounds": args.rounds, "threads": torch.get_num_threads()}
    out["clock"] = args.clock
    out |= {"median_ms": med, "ratios": ratios}
    print(
        f"\n{args.preset}, batch {args.batch_size}, {out['threads']} threads, {args.rounds} rounds (medians, {args.clock})"
    )
    print("\n".join(f"  {k:<36}{v:>10.1f} ms" for k, v in med.items()))
    print("\n".join(f"  {k:<36}{v:>10.3f}" for k, v in ratios.items()))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
