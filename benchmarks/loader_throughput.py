"""Images/s of each recipe's training input pipeline (decode, augmentation, batching) with N loader workers,
the way the trainer builds its loader (``orchestration.acceleration.loader_options``: persistent workers,
prefetch; pinned memory on a GPU). How many loader processes a GPU needs to stay fed follows from it: a
train step's images/s (``benchmarks/gpu_check.py``) over one worker's.

    python benchmarks/loader_throughput.py                         # all recipes, 0, 1 and 2 workers
    python benchmarks/loader_throughput.py --recipes imagenet_paper --workers 0 4 8 16

Recipes are the search spaces' run configs. A dataset that is not on this machine is stood in for with the
recipe's own transform on data of its shape: random 32x32 RGB images for CIFAR (the same crop, flip,
RandAugment and normalization ``coded_resnext.datasets.cifar`` uses), and for ImageNet a temporary
ImageFolder tree of smooth synthetic JPEGs at 500x375 (about ImageNet's mean size), read through the real
``imagefolder`` builder, so JPEG decoding is counted. The table says which rows are stand-ins.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("quickstart_train", "cifar10_paper", "cifar100_paper", "imagenet_paper")
IMAGENET_SIZE = (500, 375)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), help="search_spaces/<name>.yaml run configs")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="loader processes to try")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per setting (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first (default 2)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="loader-bench-") as tmp:
        rows = [row for recipe in args.recipes for row in measure(recipe, args, Path(tmp))]
    print(f"\n{'recipe':<18}{'data':<34}{'batch':>7}{'workers':>9}{'images/s':>11}")
    for r in rows:
        print(f"{r['recipe']:<18}{r['data']:<34}{r['batch']:>7}{r['workers']:>9}{r['images_per_s']:>11.0f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def measure(recipe: str, args: argparse.Namespace, tmp: Path) -> list[dict]:
    from torch.utils.data import DataLoader

    from coded_resnext.orchestration import acceleration
    from coded_resnext.orchestration.config import load_config

    cfg = load_config(ROOT / "search_spaces" / f"{recipe}.yaml")
    dataset, description = _training_set(cfg, tmp)
    batch = cfg.optim.batch_size // cfg.train.num_workers  # one rank's share, as the trainer loads it
    rows = []
    for workers in args.workers:
        options = acceleration.loader_options(workers, "cpu", cfg.train.prefetch_factor)
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, **options)
        seen, started = 0, None
        for i, (x, _) in enumerate(_cycle(loader, args.warmup + args.batches)):
            if i == args.warmup:
                started = time.perf_counter()
            elif i > args.warmup:
                seen += len(x)
        seconds = time.perf_counter() - started
        row = {"recipe": recipe, "data": description, "batch": batch, "workers": workers}
        rows.append(row | {"images_per_s": seen / seconds})
        print(json.dumps(rows[-1]), flush=True)
        del loader  # ends its persistent workers
    return rows


def _cycle(loader, count: int):
    done = 0
    while True:
        for item in loader:
            yield item
            done += 1
            if done == count:
                return


def _training_set(cfg, tmp: Path):
    """The recipe's augmented training split, or a stand-in with its transform (see the module docstring)."""
    import dataclasses

    from coded_resnext.datasets import DataError, build_dataset
    from coded_resnext.orchestration.build import data_spec

    try:
        return build_dataset(data_spec(cfg)).train, cfg.data.name
    except DataError:
        pass
    if cfg.data.name in ("cifar10", "cifar100"):
        return _cifar_stand_in(cfg), f"{cfg.data.name} stand-in (random 32x32)"
    if cfg.data.name == "imagefolder":
        root = _jpeg_tree(tmp / "imagefolder", classes=4, per_class=100)
        spec = dataclasses.replace(data_spec(cfg), root=str(root))
        return build_dataset(spec).train, f"imagefolder stand-in ({IMAGENET_SIZE[0]}x{IMAGENET_SIZE[1]} JPEG)"
    raise SystemExit(f"{cfg.data.name}: not on this machine and no stand-in; skip the recipe")


def _cifar_stand_in(cfg):
    import numpy as np

    from coded_resnext.datasets.base import ArrayImages, TransformedSubset
    from coded_resnext.datasets.cifar import CIFAR10, CIFAR100, CIFAR_SIZE
    from coded_resnext.datasets.transforms import small_image_transforms

    which = CIFAR10 if cfg.data.name == "cifar10" else CIFAR100
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5000, CIFAR_SIZE, CIFAR_SIZE, 3), dtype=np.uint8)
    randaugment = tuple(cfg.data.randaugment) if cfg.data.randaugment else None
    # the parameters coded_resnext.datasets.cifar._build passes
    train_tf, _ = small_image_transforms(
        CIFAR_SIZE, which.mean, which.std, padding=4, flip=True, augment=cfg.data.augment, randaugment=randaugment
    )
    return TransformedSubset(ArrayImages(images, rng.integers(0, 10, 5000)), None, train_tf)


def _jpeg_tree(root: Path, classes: int, per_class: int) -> Path:
    """Smooth random RGB images (bilinear upsampling of 16x12 noise) saved as JPEG, quality 90."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / "train" / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
            small.resize(IMAGENET_SIZE, Image.BILINEAR).save(folder / f"{i}.jpg", quality=90)
    return root


if __name__ == "__main__":
    main()
