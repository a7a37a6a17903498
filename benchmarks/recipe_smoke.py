"""``--smoke-test`` of each paper recipe through the real command line, on random data in the real formats.

    python benchmarks/recipe_smoke.py                         # all three; ImageNet's is the long one
    python benchmarks/recipe_smoke.py cifar10_paper           # one

Each runs ``coded-resnext train search_spaces/<recipe>.yaml --smoke-test`` in one process on the CPU
(``train.num_workers=1``, no GPU) with ``data.root`` pointing at random images written as CIFAR-10 and
CIFAR-100 batches (the out-of-distribution set included) or as an ImageNet tree of 1,000 class folders
(the published ImageNet schemes are for 1,000 classes). Everything else is the recipe's: the model
preset and its published schemes, timm RandAugment at the recipe's strength, crops and flips, the
optimizer, its per-epoch cosine schedule (and warm-up: a smoke test keeps up to one epoch of it), label
smoothing and weight-decay groups, and the evaluation suite; ``--smoke-test`` shrinks the data to 512
training images, 2 epochs and batch 64. The accuracy is that of random labels; the point is that the
recipe's whole pipeline runs. Prints per recipe the command, exit status, wall time and final metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

from _fake_data import skip_cifar_md5, write_cifar10, write_cifar100, write_image_tree
from _throwaway import run_in_throwaway_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RECIPES = ("cifar10_paper", "cifar100_paper", "imagenet_paper")
CPU = ["train.num_workers=1", "train.gpus_per_worker=0", "train.device=cpu", "train.progress=line"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="*", default=list(RECIPES), help=f"any of {', '.join(RECIPES)}")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.recipes) - set(RECIPES))
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {', '.join(RECIPES)}")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    run_in_throwaway_dir("recipe-smoke-", lambda work: _measure(args.recipes, work), args.json)


def _write_data(recipe: str, work: Path) -> Path:
    root = work / "data" / recipe
    if recipe.startswith("cifar"):
        write_cifar10(root, n_train=1000, n_test=400)
        write_cifar100(root, n_train=1000, n_test=400)
    else:  # 2 training images per class, so a class-stratified hold-out can take one
        write_image_tree(root / "train", classes=1000, per_class=2)
        write_image_tree(root / "val", classes=1000, per_class=1, seed=3)
    return root


def _run(recipe: str, work: Path) -> dict:
    from coded_resnext.orchestration.cli import main as cli

    root = _write_data(recipe, work)
    argv = [
        "train",
        str(ROOT / "search_spaces" / f"{recipe}.yaml"),
        "--smoke-test",
        *(x for kv in [*CPU, f"data.root={root}", "data.download=false"] for x in ("--set", kv)),
        "--tracking-uri",
        f"sqlite:///{work / 'mlflow.db'}",
        "--checkpoint-root",
        str(work / "checkpoints"),
    ]
    print(f"\n== {recipe}: coded-resnext {' '.join(argv)}", file=sys.stderr, flush=True)
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        status = cli(argv)
    seconds = time.perf_counter() - started
    text = out.getvalue()
    print(text, file=sys.stderr)
    metrics = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and "/" in parts[0]:
            with contextlib.suppress(ValueError):
                metrics[parts[0]] = float(parts[1])
    return {
        "command": "coded-resnext " + " ".join(argv),
        "exit_status": status,
        "seconds": round(seconds, 1),
        "metrics": {k: metrics[k] for k in sorted(metrics) if k.startswith(("train/", "val/accuracy"))},
    }


def _measure(recipes: list[str], work: Path) -> dict:
    skip_cifar_md5()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    results = {recipe: _run(recipe, work) for recipe in recipes}
    results["uptime_before"] = uptime
    results["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return results


if __name__ == "__main__":
    main()
