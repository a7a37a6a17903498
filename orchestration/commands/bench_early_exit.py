"""``coded-resnext bench early-exit``: wall-clock of the early-exit network vs the full model, beside FLOPs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from coded_resnext import list_models
from coded_resnext.orchestration.commands.options import check_option
from coded_resnext.orchestration.errors import UserError

DEFAULT_EXIT_RATE = 0.5
DEFAULT_AT_ACCURACY = 0.99


def register(bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser(
        "early-exit",
        help="wall-clock of the early-exit network vs the full model, at batch 1 and 64, beside its FLOP fraction",
        description=(
            "Times coded_resnext.EarlyExit (each sample stops at the first coded block whose Eq. 7 confidence "
            "reaches the threshold) against the full model with the same BatchNorm folding, interleaved batch by "
            "batch in one process, and prints per batch size the time per image of both, their ratio (wall-clock "
            "fraction) beside the FLOP fraction and exit rate on the same samples. A trained model (--run-id, "
            "--checkpoint) runs on its run's validation images, at the threshold of its validation curve that "
            f"keeps --at-accuracy (default {DEFAULT_AT_ACCURACY}) of the full accuracy; a --preset has random "
            f"weights and inputs, and by default a threshold that lets --exit-rate (default {DEFAULT_EXIT_RATE}) "
            "of the samples exit."
        ),
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help=f"random-weight model preset, one of: {', '.join(list_models())}")
    source.add_argument("--run-id", help="MLflow run whose final checkpoint and validation data to use")
    source.add_argument("--checkpoint", type=Path, help="checkpoint file (its run's data is used)")
    point = p.add_mutually_exclusive_group()
    point.add_argument("--threshold", metavar="T", help="confidence threshold: a number, or one per coded block")
    point.add_argument("--exit-rate", type=float, metavar="R", help="the threshold at which this share exits early")
    point.add_argument(
        "--block-exit-rate",
        type=float,
        metavar="R",
        help="one threshold per coded block, at which this share of the samples reaching each block leaves there "
        "(0.5: half at the first, a quarter at the second, ...)",
    )
    point.add_argument("--at-accuracy", type=float, metavar="A", help="runs: keep this share of the full accuracy")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64], help="batch sizes to time (default 1 64)")
    p.add_argument("--samples", type=int, default=512, help="images timed at batch > 1 (default 512)")
    p.add_argument("--samples-at-batch-1", type=int, default=64, help="images timed one at a time (default 64)")
    p.add_argument("--rounds", type=int, default=5, help="timed interleaved rounds (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--image-size", type=int, default=None, help="--preset input size (default 32 CIFAR, 160 ImageNet)")
    p.add_argument("--num-classes", type=int, default=None, help="--preset classes (default: the preset's)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--malloc", choices=("retain", "default"), default="retain", help="as for bench model")
    p.add_argument(
        "--clock",
        choices=("wall", "thread-cpu"),
        default="wall",
        help="'wall' (default), or 'thread-cpu': the CPU time of this thread, which a busy shared machine does "
        "not inflate; use it with --threads 1 (it does not see other threads' work)",
    )
    p.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI for --run-id (default: sqlite under runs/)"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    p.set_defaults(run=_run)


def _check(args: argparse.Namespace) -> None:
    for key in ("samples", "samples_at_batch_1", "rounds"):
        check_option(f"--{key.replace('_', '-')}", getattr(args, key))
    for size in args.batch_sizes:
        check_option("--batch-sizes", size)
    if max(args.batch_sizes) > args.samples:
        raise UserError(f"--samples {args.samples} is fewer than one batch of {max(args.batch_sizes)}; raise it")
    check_option("--exit-rate", args.exit_rate)
    check_option("--block-exit-rate", args.block_exit_rate)
    if args.at_accuracy is not None and args.preset:
        raise UserError("--at-accuracy reads a run's validation curve; give --run-id or --checkpoint, or --exit-rate")
    if args.preset and args.preset not in list_models():
        raise UserError(f"unknown preset {args.preset!r}; choose one of: {', '.join(list_models())}")
    if args.json is not None and not args.json.parent.exists():
        raise UserError(f"directory {args.json.parent} for --json does not exist; create it first")
    if args.clock == "thread-cpu" and args.threads != 1:
        raise UserError("--clock thread-cpu measures one thread's CPU time; give --threads 1 with it")


def _run(args: argparse.Namespace) -> int:
    import torch

    from coded_resnext.measure.early_exit_benchmark import (
        run_early_exit_benchmark,
        threshold_for_exit_rate,
        thresholds_for_block_exit_rate,
    )
    from coded_resnext.orchestration.operating_point import check_at_accuracy, check_threshold_count, parse_threshold

    _check(args)
    threshold = parse_threshold(args.threshold) if args.threshold is not None else None
    if args.at_accuracy is not None:
        check_at_accuracy(args.at_accuracy)
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator = _allocator(args.malloc)
    model, inputs, targets, source, point = _source(args, threshold)
    if not model.coded_blocks:
        raise UserError(f"{source} has no coded blocks (a control?): nothing can exit early")
    if threshold is None and point is not None:
        threshold = point.threshold
    elif threshold is None and args.block_exit_rate is not None:
        threshold = thresholds_for_block_exit_rate(model, inputs, args.block_exit_rate)
        source += f", thresholds for exit rate {args.block_exit_rate} at each coded block"
    elif threshold is None:
        rate = args.exit_rate or DEFAULT_EXIT_RATE
        threshold = threshold_for_exit_rate(model, inputs, rate)
        source += f", threshold for exit rate {rate}"
    check_threshold_count(threshold, len(model.coded_blocks))
    result = run_early_exit_benchmark(
        model,
        inputs,
        threshold,
        source=source,
        batch_sizes=args.batch_sizes,
        samples_at_batch_1=args.samples_at_batch_1,
        rounds=args.rounds,
        warmup=args.warmup,
        targets=targets,
        allocator=allocator,
        clock=args.clock,
    )
    print(result.table())
    if args.json is not None:
        data = result.to_dict() | {"operating_point": point.to_dict() if point else None}
        args.json.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def _allocator(choice: str) -> str:
    if choice != "retain":
        return "glibc default"
    from coded_resnext.measure.cpu_allocator import retain_freed_memory

    return "glibc, freed memory retained" if retain_freed_memory() else "unchanged (not glibc)"


def _source(args: argparse.Namespace, threshold):
    """(model, inputs, targets or None, description, operating point or None)."""
    import torch

    from coded_resnext import create_model
    from coded_resnext.measure.model_benchmark import default_image_size

    if args.preset:
        torch.manual_seed(0)
        model = create_model(args.preset, args.num_classes).eval()
        size = args.image_size or default_image_size(model)
        inputs = torch.randn(args.samples, model.config.in_chans, size, size)
        return model, inputs, None, f"preset {args.preset} (random weights and inputs, {size}x{size})", None
    return _trained_source(args, threshold)


def _trained_source(args: argparse.Namespace, threshold):
    import torch
    import yaml
    from mlflow.tracking import MlflowClient

    from coded_resnext.datasets import build_dataset
    from coded_resnext.orchestration.build import data_spec, model_from_checkpoint
    from coded_resnext.orchestration.checkpoint import load_checkpoint
    from coded_resnext.orchestration.config import config_from_dict
    from coded_resnext.orchestration.operating_point import load_run_checkpoint, operating_point, run_curve
    from coded_resnext.orchestration.store import open_store

    uri = open_store(args.tracking_uri)
    client = MlflowClient(uri)
    state = load_run_checkpoint(client, args.run_id, uri) if args.run_id else load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(state)
    run_id = args.run_id or state.get("run_id")
    point = None
    if threshold is None and args.exit_rate is None and args.block_exit_rate is None:
        point = operating_point(run_curve(client, run_id), args.at_accuracy or DEFAULT_AT_ACCURACY)
    cfg = config_from_dict(yaml.safe_load(state["config"]))
    val = build_dataset(data_spec(cfg)).val
    count = min(len(val), args.samples)
    images, labels = zip(*(val[i] for i in range(count)), strict=True)
    source = f"run {run_id} ({cfg.model.name} on {cfg.data.name}, {count} validation images)"
    if point is not None:
        source += f", the point keeping {point.at_accuracy:g} of its validation accuracy"
    return model, torch.stack(images), torch.tensor(labels), source, point
