"""Random images in the real on-disk formats of CIFAR-10/100 (torchvision's pickled batches) and of an
ImageNet-style tree, for running the paper recipes' exact data pipelines where the real data is not at hand.

The files cannot match torchvision's published md5s: ``skip_cifar_md5`` keeps its existence check and
drops the hash, in this process (DataLoader workers forked from it inherit it).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """``root/cifar-10-batches-py/``: five train batches, test_batch, batches.meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    per_batch = -(-n_train // 5)
    for b in range(5):
        n = max(0, min(per_batch, n_train - b * per_batch))
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        _pickle(folder / f"data_batch_{b + 1}", {"data": data, "labels": rng.integers(0, 10, n).tolist()})
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    _pickle(folder / "test_batch", {"data": test, "labels": rng.integers(0, 10, n_test).tolist()})
    _pickle(folder / "batches.meta", {"label_names": [f"class_{k}" for k in range(10)]})


def write_cifar100(root: Path, n_train: int, n_test: int, seed: int = 1) -> None:
    """``root/cifar-100-python/``: train, test and meta with fine and coarse labels."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n)
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        _pickle(folder / split, {"data": data, "fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist()})
    names = {"fine_label_names": [f"fine_{k}" for k in range(100)], "coarse_label_names": [str(k) for k in range(20)]}
    _pickle(folder / "meta", names)


def write_image_tree(root: Path, classes: int, per_class: int, size: tuple[int, int] = (80, 64), seed: int = 2) -> None:
    """``root/<class>/<i>.JPEG``: ``classes`` folders of ``per_class`` random RGB JPEGs each."""
    rng = np.random.default_rng(seed)
    for k in range(classes):
        folder = root / f"n{k:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.JPEG", quality=90)


def skip_cifar_md5() -> None:
    import torchvision.datasets.cifar as tv_cifar

    tv_cifar.check_integrity = lambda fpath, md5=None: os.path.isfile(fpath)
