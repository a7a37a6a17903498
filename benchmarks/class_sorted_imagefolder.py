"""A `coded-resnext train` run on a class-sorted ImageFolder: does every class get training samples?

torchvision's ``ImageFolder`` lists files class by class, so "the first N training images" are one or
two classes; the evaluation suite now draws every subsample seeded and class-stratified. This writes
Fashion-MNIST (Debian's copy) as an ImageNet-style tree (``train/<class>/*.png``, ``val/<class>/*.png``,
val/ being the test split), trains the mini net on it, and prints each class's binary-classifier fit
samples, threshold and F1 on validation and test. Everything lands in a throwaway directory.

    python benchmarks/class_sorted_imagefolder.py                 # about 10 minutes on 2 cores
    python benchmarks/class_sorted_imagefolder.py --per-class 100 --epochs 1 --binary-fit-samples 200   # a minute
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from _throwaway import run_in_throwaway_dir  # benchmarks/ itself, on sys.path when run as a script


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=600, help="training images per class (default 600)")
    parser.add_argument("--test-per-class", type=int, default=100, help="test images per class (default 100)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--binary-fit-samples", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    run_in_throwaway_dir("class-sorted-imagefolder-", lambda work: _measure(args, work), args.json)


def _write_tree(root: Path, per_class: int, test_per_class: int) -> list[str]:
    import numpy as np
    from PIL import Image

    from coded_resnext.datasets.fashion_mnist import CLASS_NAMES, find_files, read_split

    files = find_files(None)
    if files is None:
        raise SystemExit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist")
    names = [name.replace("/", "-") for name in CLASS_NAMES]
    for split, images_key, labels_key, count in (
        ("train", "train_images", "train_labels", per_class),
        ("val", "test_images", "test_labels", test_per_class),
    ):
        images, labels = read_split(files[images_key], files[labels_key])
        for k, name in enumerate(names):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i, index in enumerate(np.flatnonzero(labels == k)[:count]):
                Image.fromarray(images[index]).save(folder / f"{i:05d}.png")
    return names


def _measure(args: argparse.Namespace, work: Path) -> dict:
    from coded_resnext.orchestration.config import load_config
    from coded_resnext.orchestration.training import fit

    names = _write_tree(work / "tree", args.per_class, args.test_per_class)
    cfg = load_config(
        None,
        [
            "data.name=imagefolder",
            f"data.root={work / 'tree'}",
            "data.image_size=28",
            "data.ood=null",
            "model.name=coded_resnext_mini",
            f"train.epochs={args.epochs}",
            "train.progress=line",
            "optim.batch_size=64",
            "optim.warmup_epochs=0.25",
            "optim.warmup_step=batch",
            f"eval.binary_fit_samples={args.binary_fit_samples}",
            "eval.invariance_samples=0",
            "eval.removal_samples=500",
            "tracking.log_model=false",
            f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
            "tracking.experiment=class-sorted",
        ],
    )
    result = fit(cfg, checkpoint_root=work / "ckpt")
    figures: dict = {"classes": len(names), "val_accuracy": result.metrics["val/accuracy"]}
    figures["test_accuracy"] = result.metrics.get("test/accuracy")
    for table in ("binary_classifiers", "test_binary_classifiers"):
        rows = result.suite.tables[table]
        print(f"\n{table}: class, fit positives, threshold, F1")
        for r in rows:
            print(f"  {names[r['class']]:<12} {r['fit_positives']:>5} {r['threshold']:>9.4f} {r['f1']:.3f}")
        figures[table] = {
            "fit_positives": [r["fit_positives"] for r in rows],
            "finite_thresholds": sum(math.isfinite(r["threshold"]) for r in rows),
            "f1_mean": sum(r["f1"] for r in rows) / len(rows),
        }
    return figures


if __name__ == "__main__":
    main()
