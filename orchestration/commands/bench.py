"""``coded-resnext bench model``: coded vs control vs materialized, and binary vs full, side by side;
``bench early-exit`` (``bench_early_exit.py``): the early-exit network vs the full model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from coded_resnext import list_models
from coded_resnext.orchestration.commands import bench_early_exit
from coded_resnext.orchestration.commands.options import check_option
from coded_resnext.orchestration.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="TARGET")
    model = bench_sub.add_parser(
        "model",
        help="train-step and inference times of coded, control, materialized and binary models",
        description=(
            "Times one train step (forward, coding loss, backward, SGD step) of the coded model, its plain "
            "control and the materialized reference, and inference of those and of class 0's binary "
            "classifier, interleaved round by round in one process on random data. Prints medians and "
            "ratios, with the binary classifier's parameter and FLOP fractions beside its time ratio. The "
            "classifier as extracted has its BatchNorms folded and channels-last weights, so the full model is "
            "also timed with the same folding (fuse_for_inference) and the pruned classifier without it: "
            "'binary / full fused' is what pruning alone buys, 'binary / full as-is' what extraction buys."
        ),
    )
    model.add_argument("--preset", required=True, help=f"model preset, one of: {', '.join(list_models())}")
    model.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    model.add_argument("--rounds", type=int, default=10, help="timed interleaved rounds (default 10)")
    model.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    model.add_argument("--image-size", type=int, default=None, help="input size (default 32 CIFAR, 160 ImageNet)")
    model.add_argument("--num-classes", type=int, default=None, help="classes (default: the preset's)")
    model.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    model.add_argument(
        "--malloc",
        choices=("retain", "default"),
        default="retain",
        help="'retain' (default) makes glibc keep freed tensor memory for reuse instead of page-faulting "
        "activations in on every forward (coded_resnext.measure.cpu_allocator); 'default' leaves glibc as it is",
    )
    model.add_argument(
        "--train-layout",
        choices=("channels-last", "contiguous"),
        default="channels-last",
        help="memory layout of the timed train steps: 'channels-last' (default) is how the trainer trains; "
        "'contiguous' (NCHW) is a model as create_model returns it",
    )
    model.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="autocast of the timed train steps, as train.precision (default fp32; bf16 works on CPU)",
    )
    model.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the train steps' forward and loss, as train.compile (compiling takes minutes on CPU)",
    )
    model.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    model.set_defaults(run=_run)
    bench_early_exit.register(bench_sub)


def _run(args: argparse.Namespace) -> int:
    import torch

    from coded_resnext.measure.model_benchmark import run_benchmark

    if args.preset not in list_models():
        raise UserError(f"unknown preset {args.preset!r}; choose one of: {', '.join(list_models())}")
    for key in ("batch_size", "rounds"):
        check_option(f"--{key.replace('_', '-')}", getattr(args, key))
    if args.json is not None and not args.json.parent.exists():
        raise UserError(f"directory {args.json.parent} for --json does not exist; create it first")
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator = "glibc default"
    if args.malloc == "retain":
        from coded_resnext.measure.cpu_allocator import retain_freed_memory

        allocator = "glibc, freed memory retained" if retain_freed_memory() else "unchanged (not glibc)"
    result = run_benchmark(
        args.preset,
        args.batch_size,
        rounds=args.rounds,
        warmup=args.warmup,
        image_size=args.image_size,
        num_classes=args.num_classes,
        allocator=allocator,
        train_channels_last=args.train_layout == "channels-last",
        train_precision=args.precision,
        train_compiled=args.compile,
    )
    print(result.table())
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_dict(), indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0
