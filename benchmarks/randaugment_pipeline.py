"""Images/s of the CIFAR-10 recipe's training data pipeline alone (no model), on CIFAR-format files.

    python benchmarks/randaugment_pipeline.py                  # about 2-4 minutes on 2 cores

RandAugment at the paper's strength (timm's rand-m4-n3) is CPU work done per image in the DataLoader's
workers; a GPU steps a ResNeXt-29 faster than a few cores can augment for it. This reads 10,000 random
32x32 images written in CIFAR-10's pickled format (real CIFAR-10 has 50,000: an epoch takes 5x as long)
through the recipe's own dataset (``search_spaces/cifar10_paper.yaml``: pad-4 crop, flip, timm RandAugment
3/4 after them, ToTensor, Normalize) with 2 loader workers and the recipe's per-GPU batch of 64, and,
side by side in the same run and interleaved over ``--rounds``: RandAugment before the crop (the authors'
CIFAR code), no RandAugment, and torchvision's RandAugment(3, 4) (what the recipe used before).

Prints images/s per pipeline (median over rounds), each as a ratio to the pipeline without RandAugment,
one epoch's wall time, and the machine's load (uptime) before and after: the machine may be shared.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _fake_data import skip_cifar_md5, write_cifar10  # benchmarks/ itself, on sys.path when run as a script
from _throwaway import run_in_throwaway_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000, help="training images written (real CIFAR-10: 50,000)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--batch-size", type=int, default=64, help="per-GPU batch of the recipe (512 over 8)")
    parser.add_argument("--rounds", type=int, default=2, help="epochs per pipeline, interleaved")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    run_in_throwaway_dir("randaugment-pipeline-", lambda work: _measure(args, work), args.json)


def _pipelines(work: Path) -> dict:
    from torchvision import transforms as T

    from coded_resnext.datasets import build_dataset
    from coded_resnext.orchestration.build import data_spec
    from coded_resnext.orchestration.config import load_config

    recipe = ROOT / "search_spaces" / "cifar10_paper.yaml"
    root = [f"data.root={work}", "data.download=false"]

    def train_set(*overrides: str):
        return build_dataset(data_spec(load_config(recipe, [*root, *overrides]))).train

    recipe_set = train_set()
    crop, flip, *_, to_tensor, normalize = recipe_set.transform.transforms
    torchvision_ra = T.Compose([crop, flip, T.RandAugment(num_ops=3, magnitude=4), to_tensor, normalize])
    return {
        "recipe (timm rand-m4-n3 after crop/flip)": recipe_set,
        "timm rand-m4-n3 before crop/flip (authors' CIFAR code)": train_set("data.randaugment_order=before_crop"),
        "no RandAugment (crop, flip)": train_set("data.randaugment=null"),
        "torchvision RandAugment(3, 4) (before this change)": recipe_set.with_transform(torchvision_ra),
    }


def _epoch_rate(dataset, workers: int, batch_size: int) -> tuple[float, float]:
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=False)
    started = time.perf_counter()
    seen = sum(len(y) for _, y in loader)
    seconds = time.perf_counter() - started
    return seen / seconds, seconds


def _measure(args: argparse.Namespace, work: Path) -> dict:
    import torch

    torch.set_num_threads(1)
    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    write_cifar10(work, n_train=args.images, n_test=100)
    skip_cifar_md5()
    pipelines = _pipelines(work)
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    seconds: dict[str, list[float]] = {name: [] for name in pipelines}
    for r in range(args.rounds):
        for name, dataset in pipelines.items():
            rate, secs = _epoch_rate(dataset, args.workers, args.batch_size)
            rates[name].append(rate)
            seconds[name].append(secs)
            print(f"round {r + 1}/{args.rounds}: {name}: {rate:,.0f} images/s", file=sys.stderr, flush=True)
    base = statistics.median(rates["no RandAugment (crop, flip)"])
    return {
        "images": args.images,
        "loader_workers": args.workers,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "images_per_s": {name: round(statistics.median(v)) for name, v in rates.items()},
        "images_per_s_per_worker": {name: round(statistics.median(v) / args.workers) for name, v in rates.items()},
        "epoch_seconds": {name: round(statistics.median(v), 2) for name, v in seconds.items()},
        "ratio_to_no_randaugment": {name: round(statistics.median(v) / base, 3) for name, v in rates.items()},
        "uptime_before": load_before,
        "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }


if __name__ == "__main__":
    main()
